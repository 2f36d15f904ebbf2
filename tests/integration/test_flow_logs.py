"""EC2 flow logs (CreateFlowLogs, DescribeFlowLogs, DeleteFlowLogs) through boto3, and delivery of an
ENI's records into CloudWatch Logs, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.control.ec2.flow_logs import deliver_flow_records
from tests.integration.server import ACCOUNT_ID, REGION, Server, aws_error

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/flow-logs"


@pytest.fixture()
def network(ec2: Any) -> dict[str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
    return {"vpc": vpc, "subnet": subnet, "eni": eni["NetworkInterfaceId"], "ip": eni["PrivateIpAddress"]}


def create(ec2: Any, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ResourceType": "VPC",
        "TrafficType": "ALL",
        "LogGroupName": "flows",
        "DeliverLogsPermissionArn": ROLE,
        **overrides,
    }
    return dict(ec2.create_flow_logs(**{k: v for k, v in params.items() if v is not None}))


def fails(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    return aws_error(excinfo)


def test_create_describe_delete(ec2: Any, network: dict[str, str]) -> None:
    made = create(
        ec2,
        ResourceIds=[network["vpc"]],
        MaxAggregationInterval=60,
        TagSpecifications=[{"ResourceType": "vpc-flow-log", "Tags": [{"Key": "team", "Value": "net"}]}],
    )
    assert made["Unsuccessful"] == [] and len(made["FlowLogIds"]) == 1
    flow_log_id = made["FlowLogIds"][0]
    assert flow_log_id.startswith("fl-") and len(flow_log_id) == 20
    shown = ec2.describe_flow_logs(FlowLogIds=[flow_log_id])["FlowLogs"][0]
    assert shown["ResourceId"] == network["vpc"] and shown["TrafficType"] == "ALL"
    assert shown["LogDestinationType"] == "cloud-watch-logs" and shown["LogGroupName"] == "flows"
    assert shown["LogDestination"] == f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:flows"
    assert shown["DeliverLogsPermissionArn"] == ROLE and shown["DeliverLogsStatus"] == "SUCCESS"
    assert shown["FlowLogStatus"] == "ACTIVE" and shown["MaxAggregationInterval"] == 60
    assert shown["LogFormat"].startswith("${version} ${account-id} ${interface-id}")
    assert shown["Tags"] == [{"Key": "team", "Value": "net"}]
    assert abs(shown["CreationTime"].timestamp() - time.time()) < 60

    second = create(ec2, ResourceType="NetworkInterface", ResourceIds=[network["eni"]], TrafficType="REJECT")
    by_filter = ec2.describe_flow_logs(Filter=[{"Name": "traffic-type", "Values": ["REJECT"]}])["FlowLogs"]
    assert [f["FlowLogId"] for f in by_filter] == second["FlowLogIds"]
    by_resource = ec2.describe_flow_logs(Filter=[{"Name": "resource-id", "Values": [network["vpc"]]}])[
        "FlowLogs"
    ]
    assert [f["FlowLogId"] for f in by_resource] == [flow_log_id]
    assert (
        fails(ec2.describe_flow_logs, Filter=[{"Name": "nope", "Values": ["x"]}])[0]
        == "InvalidParameterValue"
    )

    deleted = ec2.delete_flow_logs(FlowLogIds=[flow_log_id, "fl-0123456789abcdef0"])
    assert deleted["Unsuccessful"] == [
        {
            "Error": {
                "Code": "InvalidFlowLogId.NotFound",
                "Message": "These flow log ids in the input list are not found: [TotalCount: 1] fl-0123456789abcdef0",
            },
            "ResourceId": "fl-0123456789abcdef0",
        }
    ]
    assert [f["FlowLogId"] for f in ec2.describe_flow_logs()["FlowLogs"]] == second["FlowLogIds"]


def test_unknown_resources_and_duplicates_are_unsuccessful_items(ec2: Any, network: dict[str, str]) -> None:
    create(ec2, ResourceIds=[network["vpc"]])
    again = create(ec2, ResourceIds=[network["vpc"], "vpc-0123456789abcdef0"])
    assert again["FlowLogIds"] == []
    codes = {item["ResourceId"]: item["Error"]["Code"] for item in again["Unsuccessful"]}
    assert codes == {network["vpc"]: "FlowLogAlreadyExists", "vpc-0123456789abcdef0": "InvalidVpcID.NotFound"}
    assert len(ec2.describe_flow_logs()["FlowLogs"]) == 1


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::bucket"}, "Unsupported"),
        ({"LogDestinationType": "kinesis-data-firehose"}, "Unsupported"),
        ({"TrafficType": None}, "MissingParameter"),
        ({"DeliverLogsPermissionArn": None}, "InvalidParameter"),
        ({"DeliverLogsPermissionArn": "not-an-arn"}, "InvalidParameter"),
        (
            {"LogDestination": "arn:aws:logs:us-east-1:123456789012:log-group:x"},
            "InvalidParameterCombination",
        ),
        ({"LogGroupName": None}, "MissingParameter"),
        ({"MaxAggregationInterval": 120}, "InvalidParameter"),
        ({"LogFormat": "${srcaddr} ${no-such-field}"}, "InvalidParameter"),
        ({"ResourceType": "TransitGateway"}, "InvalidParameter"),
        ({"ResourceIds": ["vpc-nothex"]}, "InvalidVpcID.Malformed"),
    ],
)
def test_refused_requests_change_nothing(
    ec2: Any, network: dict[str, str], overrides: dict[str, Any], code: str
) -> None:
    params = {"ResourceIds": [network["vpc"]], **overrides}
    params = {k: v for k, v in params.items() if v is not None}
    base = {
        "ResourceType": "VPC",
        "TrafficType": "ALL",
        "LogGroupName": "flows",
        "DeliverLogsPermissionArn": ROLE,
    }
    for key in [k for k, v in overrides.items() if v is None]:
        base.pop(key)
    assert fails(ec2.create_flow_logs, **{**base, **params})[0] == code
    assert ec2.describe_flow_logs()["FlowLogs"] == []


def test_log_destination_arn_names_the_group(ec2: Any, network: dict[str, str]) -> None:
    made = create(
        ec2,
        ResourceIds=[network["subnet"]],
        ResourceType="Subnet",
        LogGroupName=None,
        LogDestination=f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/vpc/flows:*",
    )
    shown = ec2.describe_flow_logs(FlowLogIds=made["FlowLogIds"])["FlowLogs"][0]
    assert shown["LogGroupName"] == "/vpc/flows"


def test_records_are_delivered_per_eni_by_traffic_type(
    api: Server, ec2: Any, network: dict[str, str]
) -> None:
    control_plane = getattr(api, "control_plane", None)
    if control_plane is None:
        pytest.skip("delivery is called in-process (the agent API will carry it)")
    logs = api.client("logs")
    create(ec2, ResourceIds=[network["vpc"]], LogGroupName="all-flows")
    create(
        ec2,
        ResourceType="Subnet",
        ResourceIds=[network["subnet"]],
        TrafficType="REJECT",
        LogGroupName="rejects",
    )
    custom = "${version} ${interface-id} ${srcaddr} ${dstport} ${action} ${vpc-id} ${subnet-id}"
    create(
        ec2,
        ResourceType="NetworkInterface",
        ResourceIds=[network["eni"]],
        LogGroupName="custom",
        LogFormat=custom,
    )
    start = int(time.time()) - 60
    accepted = {"srcaddr": "10.9.1.50", "dstaddr": network["ip"], "srcport": 40000, "dstport": 80, "protocol": 6,
                "packets": 10, "bytes": 840, "start": start, "end": start + 60, "action": "ACCEPT", "log-status": "OK"}  # fmt: skip
    rejected = {**accepted, "dstport": 22, "packets": 4, "bytes": 240, "action": "REJECT"}
    nodata = {"start": start + 60, "end": start + 120, "log-status": "NODATA"}
    ctx = control_plane.context(REGION, time.time())
    written = deliver_flow_records(ctx, network["eni"], [accepted, rejected, nodata])
    assert written == 3 + 2 + 3

    def lines(group: str) -> list[str]:
        page = logs.get_log_events(logGroupName=group, logStreamName=network["eni"], startFromHead=True)
        return [e["message"] for e in page["events"]]

    eni = network["eni"]
    assert lines("all-flows") == [
        f"2 {ACCOUNT_ID} {eni} 10.9.1.50 {network['ip']} 40000 80 6 10 840 {start} {start + 60} ACCEPT OK",
        f"2 {ACCOUNT_ID} {eni} 10.9.1.50 {network['ip']} 40000 22 6 4 240 {start} {start + 60} REJECT OK",
        f"2 {ACCOUNT_ID} {eni} - - - - - - - {start + 60} {start + 120} - NODATA",
    ]
    assert [line.split()[-2] for line in lines("rejects")] == ["REJECT", "-"]
    assert lines("custom")[0] == f"3 {eni} 10.9.1.50 80 ACCEPT {network['vpc']} {network['subnet']}"
    stream = logs.describe_log_streams(logGroupName="all-flows")["logStreams"][0]
    assert stream["logStreamName"] == eni and stream["firstEventTimestamp"] == start * 1000
    assert deliver_flow_records(ctx, "eni-0123456789abcdef0", [accepted]) == 0


def test_describe_flow_logs_max_results_below_one_is_refused(ec2: Any) -> None:
    # found by the API fuzzer: MaxResults=-1 was a 500 (the model gives DescribeFlowLogs no minimum)
    with pytest.raises(ClientError) as caught:
        ec2.describe_flow_logs(MaxResults=-1)
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
