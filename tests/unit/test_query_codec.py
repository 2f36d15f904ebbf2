"""The EC2/query codec against botocore's own serializers and parsers.

Requests are built by ``botocore.serialize`` and form-encoded the way ``AWSPreparedRequest`` does, so a
decode that drifts from the client's key rules fails here; responses are read back by
``botocore.parsers``, so XML that the SDK would misread fails here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

import botocore.session
import pytest
from botocore.model import OperationModel, ServiceModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import HealthCheck, given, settings, strategies as st

from taskvpc.api.service_models import service_spec
from taskvpc.domain.errors import ClientError
from taskvpc.wire import query
from taskvpc.wire.http import HttpRequest
from taskvpc.wire.shapes import Shape

# --------------------------------------------------------------------------------------------------
# botocore helpers
# --------------------------------------------------------------------------------------------------


@cache
def _model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def _op_model(service: str, operation: str) -> OperationModel:
    return _model(service).operation_model(operation)


def _botocore_body(service: str, operation: str, params: dict[str, Any]) -> bytes:
    """The request body botocore sends for ``params`` (serializer + AWSPreparedRequest._prepare_body)."""
    op_model = _op_model(service, operation)
    request = create_serializer(op_model.metadata["protocol"]).serialize_to_request(params, op_model)
    items = [(k.encode(), v.encode() if isinstance(v, str) else v) for k, v in request["body"].items()]
    return urlencode(items, doseq=True).encode()


def _decode(service: str, body: bytes, query_string: str = "") -> tuple[str, dict[str, Any]]:
    spec = service_spec(service)
    form = query.parse_form(body, query_string)
    operation = query.operation_for_action(spec, form)
    return operation.name, query.decode_params(spec, operation, form)


def _botocore_parse(service: str, operation: str, status: int, body: bytes) -> dict[str, Any]:
    op_model = _op_model(service, operation)
    parser = create_parser(op_model.metadata["protocol"])
    parsed: dict[str, Any] = parser.parse(
        {"status_code": status, "headers": {}, "body": body}, op_model.output_shape
    )
    return parsed


def _encode_and_parse(service: str, operation: str, result: dict[str, Any]) -> dict[str, Any]:
    spec = service_spec(service)
    response = query.encode_result(spec, spec.operations[operation], result, "req-1234")
    assert response.status == 200
    parsed = _botocore_parse(service, operation, 200, response.body)
    metadata = parsed.pop("ResponseMetadata")
    assert metadata["RequestId"] == "req-1234"
    return parsed


T0 = datetime(2026, 11, 27, 18, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 27, 18, 0, 1, 123000, tzinfo=UTC)

# --------------------------------------------------------------------------------------------------
# Requests: botocore serialize -> parse_form + decode_params gives back the same dict
# --------------------------------------------------------------------------------------------------

REQUEST_CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "ec2",
        "DescribeVpcs",
        {
            "Filters": [
                {"Name": "tag:Name", "Values": ["a b", "c&d=e", "ü+%"]},
                {"Name": "cidr-block-association.cidr-block", "Values": ["10.0.0.0/16"]},
            ],
            "VpcIds": ["vpc-1", "vpc-2"],
            "MaxResults": 5,
            "DryRun": False,
        },
    ),
    (
        "ec2",
        "CreateSecurityGroup",
        {
            "Description": "web <tier>",
            "GroupName": "web",
            "VpcId": "vpc-1",
            "TagSpecifications": [
                {
                    "ResourceType": "security-group",
                    "Tags": [{"Key": "Name", "Value": "web"}, {"Key": "env", "Value": ""}],
                }
            ],
            "DryRun": True,
        },
    ),
    (
        "ec2",
        "AuthorizeSecurityGroupIngress",
        {
            "GroupId": "sg-1",
            "IpPermissions": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 80,
                    "ToPort": 443,
                    "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "internal"}],
                    "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
                    "UserIdGroupPairs": [
                        {"GroupId": "sg-2", "UserId": "123456789012", "Description": "lb"},
                        {"GroupId": "sg-3"},
                    ],
                    "PrefixListIds": [{"PrefixListId": "pl-1"}],
                },
                {"IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            ],
        },
    ),
    (
        "ec2",
        "CreateNetworkInterface",
        {
            "SubnetId": "subnet-1",
            "Description": "task eni",
            "Groups": ["sg-1", "sg-2"],
            "PrivateIpAddresses": [
                {"PrivateIpAddress": "10.0.1.5", "Primary": True},
                {"PrivateIpAddress": "10.0.1.6", "Primary": False},
            ],
            "SecondaryPrivateIpAddressCount": 2,
            "Ipv6AddressCount": 1,
            "InterfaceType": "trunk",
            "ClientToken": "tok",
        },
    ),
    (
        "ec2",
        "ModifyNetworkInterfaceAttribute",
        {"NetworkInterfaceId": "eni-1", "SourceDestCheck": {"Value": False}, "Groups": ["sg-9"]},
    ),
    (
        "ec2",
        "CreateReservedInstancesListing",
        {
            "ClientToken": "t",
            "InstanceCount": 1,
            "ReservedInstancesId": "ri-1",
            "PriceSchedules": [
                {"CurrencyCode": "USD", "Price": 1.25, "Term": 2},
                {"Price": float("inf"), "Term": 1},
                {"Price": -1e-300},
            ],
        },
    ),
    (
        "elbv2",
        "CreateTargetGroup",
        {
            "Name": "tg",
            "Protocol": "HTTP",
            "Port": 80,
            "VpcId": "vpc-1",
            "HealthCheckEnabled": True,
            "HealthCheckPath": "/health?x=1&y=2",
            "HealthCheckIntervalSeconds": 30,
            "Matcher": {"HttpCode": "200-299"},
            "TargetType": "ip",
            "Tags": [{"Key": "k", "Value": "v"}],
        },
    ),
    (
        "elbv2",
        "RegisterTargets",
        {
            "TargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/tg/1",
            "Targets": [{"Id": "10.0.1.5", "Port": 8080}, {"Id": "10.0.1.6", "AvailabilityZone": "all"}],
        },
    ),
    (
        "elbv2",
        "AddTags",
        {"ResourceArns": ["arn:1", "arn:2"], "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b"}]},
    ),
    (
        "elbv2",
        "CreateListener",
        {
            "LoadBalancerArn": "arn:lb",
            "Protocol": "HTTPS",
            "Port": 443,
            "DefaultActions": [
                {
                    "Type": "authenticate-oidc",
                    "Order": 1,
                    "AuthenticateOidcConfig": {
                        "Issuer": "https://issuer",
                        "AuthorizationEndpoint": "https://a",
                        "TokenEndpoint": "https://t",
                        "UserInfoEndpoint": "https://u",
                        "ClientId": "c",
                        "AuthenticationRequestExtraParams": {"prompt": "login", "display": "page"},
                    },
                },
                {"Type": "forward", "TargetGroupArn": "arn:tg", "Order": 2},
            ],
        },
    ),
    ("elbv2", "DescribeTargetGroups", {"Names": []}),  # the query protocol sends an empty list
    ("sts", "GetCallerIdentity", {}),
    (
        "sts",
        "AssumeRole",
        {"RoleArn": "arn:aws:iam::1:role/role-name", "RoleSessionName": "sess", "DurationSeconds": 900},
    ),
]


@pytest.mark.parametrize(
    ("service", "operation", "params"), REQUEST_CASES, ids=[f"{s}.{o}" for s, o, _ in REQUEST_CASES]
)
def test_decode_inverts_botocore_serializer(service: str, operation: str, params: dict[str, Any]) -> None:
    body = _botocore_body(service, operation, params)
    assert _decode(service, body) == (operation, params)


def test_get_query_string_and_post_body_merge_first_value_wins() -> None:
    name, params = _decode(
        "ec2",
        b"VpcId.1=from-body&VpcId.2=vpc-2",
        "Action=DescribeVpcs&Version=2016-11-15&VpcId.1=from-query&X-Amz-Signature=abc",
    )
    assert (name, params) == ("DescribeVpcs", {"VpcIds": ["from-query", "vpc-2"]})
    assert query.parse_form(b"A=1&A=2&B&=x&&C=%E2%82%AC+x", "") == {"A": "1", "B": "", "": "x", "C": "€ x"}


def test_list_indices_sort_numerically_not_lexically() -> None:
    body = b"Action=DescribeVpcs&Version=2016-11-15&" + b"&".join(
        f"VpcId.{i}=v{i}".encode() for i in (10, 2, 1)
    )
    assert _decode("ec2", body)[1] == {"VpcIds": ["v1", "v2", "v10"]}


def test_decode_request_uses_body_for_post_and_query_string_for_get() -> None:
    spec = service_spec("sts")
    post = HttpRequest("POST", "/", "", {}, b"Action=GetCallerIdentity&Version=2011-06-15")
    get = HttpRequest("GET", "/", "Action=GetCallerIdentity&Version=2011-06-15", {})
    assert query.decode_request(spec, post)[0].name == "GetCallerIdentity"
    assert query.decode_request(spec, get)[0].name == "GetCallerIdentity"


# --------------------------------------------------------------------------------------------------
# Request errors
# --------------------------------------------------------------------------------------------------


def _error(service: str, body: bytes) -> ClientError:
    with pytest.raises(ClientError) as caught:
        _decode(service, body)
    return caught.value


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            b"Action=DescribeVpcs&Version=2016-11-15&Frobnicate=1",
            "UnknownParameter",
            "The parameter Frobnicate is not recognized",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&VpcId=vpc-1",
            "UnknownParameter",
            "The parameter VpcId is not recognized",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&Filter.Item.1.Name=x",
            "UnknownParameter",
            "The parameter Item is not recognized",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&Filter.1.Nme=x",
            "UnknownParameter",
            "The parameter Nme is not recognized",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&vpcId.1=x",
            "UnknownParameter",
            "The parameter vpcId is not recognized",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&MaxResults=ten",
            "InvalidParameterValue",
            "Invalid value 'ten' for maxResults.",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&MaxResults=1_0",
            "InvalidParameterValue",
            "Invalid value '1_0' for maxResults.",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&MaxResults=2147483648",
            "InvalidParameterValue",
            "Invalid value '2147483648' for maxResults.",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&DryRun=yes",
            "InvalidParameterValue",
            "Invalid value 'yes' for dryRun.",
        ),
        (
            b"Action=DescribeVpcs&Version=2016-11-15&VpcId.1=a&Filter.1.Value.1=b&DryRun=1",
            "InvalidParameterValue",
            "Invalid value '1' for dryRun.",
        ),
        (
            b"Action=NoSuchThing&Version=2016-11-15",
            "InvalidAction",
            "The action NoSuchThing is not valid for this web service.",
        ),
        (
            b"Action=DescribeTargetGroups&Version=2015-12-01",
            "NoSuchVersion",
            "The requested version (2015-12-01) of service AmazonEC2 does not exist",
        ),
        (b"Action=DescribeVpcs", "MissingParameter", "The request must contain the parameter Version"),
        (b"Version=2016-11-15", "MissingAction", "The request must contain the parameter Action"),
    ],
)
def test_ec2_request_errors(body: bytes, code: str, message: str) -> None:
    error = _error("ec2", body)
    assert (error.code, error.message, error.http_status) == (code, message, 400)


@pytest.mark.parametrize(
    ("service", "body", "code", "message"),
    [
        (
            "sts",
            b"Action=NoSuchAction&Version=2011-06-15",
            "InvalidAction",
            "Could not find operation NoSuchAction for version 2011-06-15",
        ),
        (
            "sts",
            b"Action=GetCallerIdentity",
            "InvalidAction",
            "Could not find operation GetCallerIdentity for version NO_VERSION_SPECIFIED",
        ),
        (
            "sts",
            b"Action=GetCallerIdentity&Version=",
            "InvalidAction",
            "Could not find operation GetCallerIdentity for version ",
        ),
        (
            "sts",
            b"Action=GetCallerIdentity&Version=2000-01-01&Version=2011-06-15",
            "InvalidAction",
            "Could not find operation GetCallerIdentity for version 2000-01-01",
        ),
        (
            "sts",
            b"Action=&Version=2011-06-15",
            "InvalidAction",
            "Could not find operation  for version 2011-06-15",
        ),
        ("sts", b"Version=2011-06-15", "InvalidAction", "Could not find operation  for version 2011-06-15"),
        (
            "sts",
            b"Action=AssumeRole&Version=2011-06-15&RoleArn=a&RoleSessionName=s&DurationSeconds=abc",
            "MalformedInput",
            "",
        ),
        (
            "sts",
            b"Action=AssumeRole&Version=2011-06-15&RoleArn=a&RoleSessionName=s&DurationSeconds=900.0",
            "MalformedInput",
            "",
        ),
        (
            "sts",
            b"Action=AssumeRole&Version=2011-06-15&RoleArn=a&RoleSessionName=s&DurationSeconds=2147483648",
            "MalformedInput",
            "",
        ),
        (
            "sts",
            b"Action=AssumeRole&Version=2011-06-15&RoleArn=a&RoleSessionName=s&DurationSeconds=",
            "MalformedInput",
            "missing value for decimal type",
        ),
        (
            "elbv2",
            b"Action=CreateTargetGroup&Version=2015-12-01&Name=t&HealthCheckEnabled=TRUE",
            "MalformedInput",
            "boolean must follow xsd1.1 definition",
        ),
        (
            "elbv2",
            b"Action=CreateTargetGroup&Version=2015-12-01&Name=t&HealthCheckEnabled=",
            "MalformedInput",
            "missing value for boolean type",
        ),
    ],
)
def test_query_request_errors(service: str, body: bytes, code: str, message: str) -> None:
    error = _error(service, body)
    assert (error.code, error.message, error.http_status) == (code, message, 400)


def test_query_services_ignore_unknown_parameters_and_accept_xsd_booleans() -> None:
    body = (
        b"Action=AssumeRole&Version=2011-06-15&RoleArn=a&RoleSessionName=s&Unknown=value"
        b"&DurationSeconds=%2B0900&PolicyArns.member.1.arn=p&PolicyArns.entry.1=x&Tags.member.x.Key=k"
    )
    assert _decode("sts", body) == (
        "AssumeRole",
        {"RoleArn": "a", "RoleSessionName": "s", "DurationSeconds": 900, "PolicyArns": [{"arn": "p"}]},
    )
    body = (
        b"Action=CreateTargetGroup&Version=2015-12-01&Name=t&HealthCheckEnabled=1&Matcher=x&Tags.member.1.K=v"
    )
    assert _decode("elbv2", body)[1] == {"Name": "t", "HealthCheckEnabled": True}


def test_dry_run_error_is_ec2s_412() -> None:
    error = query.dry_run_error()
    assert (error.code, error.message, error.http_status) == (
        "DryRunOperation",
        "Request would have succeeded, but DryRun flag is set.",
        412,
    )


# --------------------------------------------------------------------------------------------------
# Responses: encode_result -> botocore parser gives back the same dict
# --------------------------------------------------------------------------------------------------

VPC = {
    "CidrBlock": "10.0.0.0/16",
    "DhcpOptionsId": "dopt-1",
    "State": "available",
    "VpcId": "vpc-1",
    "OwnerId": "123456789012",
    "InstanceTenancy": "default",
    "CidrBlockAssociationSet": [
        {
            "AssociationId": "vpc-cidr-assoc-1",
            "CidrBlock": "10.0.0.0/16",
            "CidrBlockState": {"State": "associated"},
        }
    ],
    "Ipv6CidrBlockAssociationSet": [],
    "IsDefault": False,
    "Tags": [{"Key": "Name", "Value": "a <b> & 'c' \"d\"\r\n\ttab"}, {"Key": "empty", "Value": ""}],
}

RESULT_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("ec2", "DescribeVpcs", {"Vpcs": [VPC, {**VPC, "VpcId": "vpc-2", "IsDefault": True}], "NextToken": "n"}),
    ("ec2", "DescribeVpcs", {"Vpcs": []}),
    (
        "ec2",
        "DescribeSecurityGroups",
        {
            "SecurityGroups": [
                {
                    "Description": "web",
                    "GroupName": "web",
                    "GroupId": "sg-1",
                    "OwnerId": "123456789012",
                    "VpcId": "vpc-1",
                    "IpPermissions": [
                        {
                            "IpProtocol": "tcp",
                            "FromPort": 80,
                            "ToPort": 80,
                            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "all"}],
                            "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
                            "PrefixListIds": [],
                            "UserIdGroupPairs": [{"GroupId": "sg-2", "UserId": "123456789012"}],
                        }
                    ],
                    "IpPermissionsEgress": [
                        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "UserIdGroupPairs": []}
                    ],
                    "Tags": [],
                }
            ]
        },
    ),
    (
        "ec2",
        "CreateNetworkInterface",
        {
            "NetworkInterface": {
                "AvailabilityZone": "us-east-1a",
                "Description": "task",
                "Groups": [{"GroupId": "sg-1", "GroupName": "web"}],
                "InterfaceType": "interface",
                "MacAddress": "02:00:00:00:00:01",
                "NetworkInterfaceId": "eni-1",
                "OwnerId": "123456789012",
                "PrivateIpAddress": "10.0.1.5",
                "PrivateIpAddresses": [{"Primary": True, "PrivateIpAddress": "10.0.1.5"}],
                "Ipv6Addresses": [{"Ipv6Address": "2600::1"}],
                "RequesterManaged": False,
                "SourceDestCheck": True,
                "Status": "pending",
                "SubnetId": "subnet-1",
                "VpcId": "vpc-1",
                "Attachment": {
                    "AttachTime": T1,
                    "AttachmentId": "eni-attach-1",
                    "DeleteOnTermination": True,
                    "DeviceIndex": 1,
                    "Status": "attached",
                },
                "TagSet": [{"Key": "k", "Value": "v"}],
            },
            "ClientToken": "tok",
        },
    ),
    (
        "elbv2",
        "DescribeTargetGroups",
        {
            "TargetGroups": [
                {
                    "TargetGroupArn": "arn:tg",
                    "TargetGroupName": "tg",
                    "Protocol": "HTTP",
                    "Port": 80,
                    "VpcId": "vpc-1",
                    "HealthCheckEnabled": True,
                    "HealthCheckIntervalSeconds": 30,
                    "HealthCheckPath": "/",
                    "Matcher": {"HttpCode": "200"},
                    "LoadBalancerArns": ["arn:lb1", "arn:lb2"],
                    "TargetType": "ip",
                    "IpAddressType": "ipv4",
                }
            ],
            "NextMarker": "m",
        },
    ),
    (
        "elbv2",
        "DescribeListeners",
        {
            "Listeners": [
                {
                    "ListenerArn": "arn:l",
                    "Port": 443,
                    "DefaultActions": [
                        {
                            "Type": "authenticate-oidc",
                            "AuthenticateOidcConfig": {
                                "Issuer": "i",
                                "AuthorizationEndpoint": "a",
                                "TokenEndpoint": "t",
                                "UserInfoEndpoint": "u",
                                "ClientId": "c",
                                "AuthenticationRequestExtraParams": {"prompt": "login", "a&b": "<x>"},
                            },
                        }
                    ],
                }
            ]
        },
    ),
    ("elbv2", "AddTags", {}),
    (
        "sts",
        "GetCallerIdentity",
        {"UserId": "AIDA", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/u"},
    ),
    (
        "sts",
        "AssumeRole",
        {
            "Credentials": {
                "AccessKeyId": "AK",
                "SecretAccessKey": "s",
                "SessionToken": "t",
                "Expiration": T0,
            },
            "AssumedRoleUser": {"AssumedRoleId": "AROA:s", "Arn": "arn:aws:sts::1:assumed-role/r/s"},
        },
    ),
]


@pytest.mark.parametrize(
    ("service", "operation", "result"),
    RESULT_CASES,
    ids=[f"{s}.{o}.{i}" for i, (s, o, _) in enumerate(RESULT_CASES)],
)
def test_botocore_parses_encoded_result_back(service: str, operation: str, result: dict[str, Any]) -> None:
    assert _encode_and_parse(service, operation, result) == result


def test_ec2_response_bytes_look_like_ec2() -> None:
    spec = service_spec("ec2")
    response = query.encode_result(
        spec, spec.operations["DescribeVpcs"], {"Vpcs": [{"VpcId": "vpc-1"}]}, "r-1"
    )
    assert response.body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId>'
        b"<vpcSet><item><vpcId>vpc-1</vpcId></item></vpcSet></DescribeVpcsResponse>"
    )
    assert ("content-type", "text/xml;charset=UTF-8") in response.headers
    assert ("x-amzn-requestid", "r-1") in response.headers


def test_ec2_operation_without_output_returns_true() -> None:
    spec = service_spec("ec2")
    response = query.encode_result(spec, spec.operations["DeleteVpc"], {}, "r-1")
    assert response.body.endswith(b"<requestId>r-1</requestId><return>true</return></DeleteVpcResponse>")
    assert _botocore_parse("ec2", "DeleteVpc", 200, response.body)["ResponseMetadata"]["RequestId"] == "r-1"


def test_query_response_bytes_look_like_sts() -> None:
    spec = service_spec("sts")
    result = {"UserId": "U", "Account": "1", "Arn": "a"}
    response = query.encode_result(spec, spec.operations["GetCallerIdentity"], result, "r-1")
    assert response.body == (
        b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        b"<GetCallerIdentityResult><UserId>U</UserId><Account>1</Account><Arn>a</Arn></GetCallerIdentityResult>"
        b"<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    )
    assert ("content-type", "text/xml") in response.headers


def test_timestamps_accept_epoch_and_naive_and_write_milliseconds() -> None:
    result = {
        "Credentials": {"AccessKeyId": "a", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": 0.5}
    }
    parsed = _encode_and_parse("sts", "AssumeRole", result)
    assert parsed["Credentials"]["Expiration"] == datetime(1970, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    spec = service_spec("sts")
    naive = {**result, "Credentials": {**result["Credentials"], "Expiration": datetime(2026, 11, 27, 18, 0)}}
    body = query.encode_result(spec, spec.operations["AssumeRole"], naive, "r").body
    assert b"<Expiration>2026-11-27T18:00:00.000Z</Expiration>" in body


def test_unknown_members_and_nones_are_not_written() -> None:
    parsed = _encode_and_parse(
        "ec2", "DescribeVpcs", {"Vpcs": [{"VpcId": "v", "Bogus": 1, "CidrBlock": None}]}
    )
    assert parsed == {"Vpcs": [{"VpcId": "v"}]}


def test_characters_xml_cannot_carry_become_replacement_characters() -> None:
    parsed = _encode_and_parse("sts", "GetCallerIdentity", {"Arn": "a\x00b\x1fc\ud800d"})
    assert parsed == {"Arn": "a\ufffdb\ufffdc\ufffdd"}


# --------------------------------------------------------------------------------------------------
# Errors: botocore reads code, message and request id
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "operation", "error"),
    [
        ("ec2", "DescribeVpcs", ClientError("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist")),
        ("ec2", "RunInstances", query.dry_run_error()),
        ("ec2", "DescribeVpcs", query.unknown_parameter("Foo")),
        ("ec2", "DescribeVpcs", ClientError("X", "a <b> & c")),
        (
            "elbv2",
            "DescribeTargetGroups",
            ClientError("TargetGroupNotFound", "One or more target groups not found"),
        ),
        ("elbv2", "DescribeTargetGroups", ClientError("ValidationError", "1 validation error detected: x")),
        ("sts", "GetCallerIdentity", query.invalid_action(service_spec("sts"), "Nope", "2011-06-15")),
        ("sts", "AssumeRole", query.server_error(service_spec("sts"))),
        ("ec2", "DescribeVpcs", query.server_error(service_spec("ec2"))),
    ],
)
def test_botocore_parses_encoded_errors(service: str, operation: str, error: ClientError) -> None:
    spec = service_spec(service)
    response = query.encode_error(spec, error, "req-9")
    assert response.status == error.http_status
    parsed = _botocore_parse(service, operation, response.status, response.body)
    assert parsed["Error"]["Code"] == error.code
    assert parsed["Error"]["Message"] == error.message
    assert parsed["ResponseMetadata"]["RequestId"] == "req-9"
    if spec.protocol == "query":
        assert parsed["Error"]["Type"] == ("Sender" if error.sender_fault else "Receiver")


def test_query_dispatch_errors_use_the_awsfault_namespace_and_omit_an_empty_message() -> None:
    spec = service_spec("sts")
    body = query.encode_error(spec, query.malformed_input(), "r").body
    assert body == (
        b'<ErrorResponse xmlns="http://webservices.amazon.com/AWSFault/2005-15-09"><Error><Type>Sender</Type>'
        b"<Code>MalformedInput</Code></Error><RequestId>r</RequestId></ErrorResponse>"
    )
    validation = query.encode_error(spec, ClientError("ValidationError", "m"), "r").body
    assert b'xmlns="https://sts.amazonaws.com/doc/2011-06-15/"' in validation
    parsed = _botocore_parse("sts", "AssumeRole", 400, body)
    assert parsed["Error"]["Code"] == "MalformedInput"


def test_ec2_error_bytes_look_like_ec2() -> None:
    response = query.encode_error(service_spec("ec2"), query.unknown_parameter("Foo"), "r-1")
    assert response.body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>UnknownParameter</Code>'
        b"<Message>The parameter Foo is not recognized</Message></Error></Errors>"
        b"<RequestID>r-1</RequestID></Response>"
    )


# --------------------------------------------------------------------------------------------------
# Properties: random valid inputs/outputs built from the model survive the round trip
# --------------------------------------------------------------------------------------------------

_CHARS = st.characters(exclude_categories=["Cs"])
# Output text: XML 1.0 cannot carry most C0 controls, so AWS never sends them either.
_XML_CHARS = st.characters(
    exclude_categories=["Cs"], exclude_characters="".join(map(chr, range(32))) + "\ufffe\uffff"
) | st.sampled_from("\t\n\r&<>")
_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _strategy(shape: Shape, depth: int, *, output: bool) -> st.SearchStrategy[Any]:
    """Values botocore's ParamValidator accepts for ``shape`` (it checks required, types and ``min``)."""
    kind = shape.type
    if kind == "structure":
        required = {
            n: _strategy(m.shape, depth - 1, output=output)
            for n, m in shape.members.items()
            if n in shape.required
        }
        optional = (
            {
                n: _strategy(m.shape, depth - 1, output=output)
                for n, m in shape.members.items()
                if n not in shape.required
            }
            if depth > 0
            else {}
        )
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "list":
        assert shape.member is not None
        if depth <= 0 and not shape.min:
            return st.just([])
        return st.lists(
            _strategy(shape.member.shape, depth - 1, output=output), min_size=int(shape.min or 0), max_size=3
        )
    if kind == "map":
        assert shape.key is not None and shape.value is not None
        if depth <= 0:
            return st.just({})
        return st.dictionaries(
            _strategy(shape.key.shape, 0, output=output),
            _strategy(shape.value.shape, depth - 1, output=output),
            max_size=3,
        )
    if kind in ("string", "character"):
        alphabet = _XML_CHARS if output else _CHARS
        low = int(shape.min or 0)
        return st.text(alphabet, min_size=low, max_size=max(8, low))
    if kind in _BOUNDS:
        low, high = _BOUNDS[kind]
        return st.integers(max(low, int(shape.min)) if shape.min is not None else low, high)
    if kind in ("float", "double"):
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        moments = st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
        return (
            moments.map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)) if output else moments
        )
    if kind == "blob":
        return st.binary(max_size=8)
    raise AssertionError(kind)


_MISSING: Any = object()


def _as_sent(shape: Shape, value: Any, protocol: str) -> Any:
    """What survives botocore's serializer: it writes nothing for an empty structure or map, nor (EC2)
    for an empty list; the query protocol writes ``Key=`` for an empty list."""
    kind = shape.type
    if kind == "structure":
        out = {
            k: v
            for k, v in ((k, _as_sent(shape.members[k].shape, v, protocol)) for k, v in value.items())
            if v is not _MISSING
        }
        return out or _MISSING
    if kind == "list":
        assert shape.member is not None
        if not value:
            return [] if protocol == "query" else _MISSING
        items = [
            v for v in (_as_sent(shape.member.shape, item, protocol) for item in value) if v is not _MISSING
        ]
        return items or _MISSING
    if kind == "map":
        assert shape.value is not None
        out = {
            k: v
            for k, v in ((k, _as_sent(shape.value.shape, v, protocol)) for k, v in value.items())
            if v is not _MISSING
        }
        return out or _MISSING
    return value


PROPERTY_INPUTS = [
    ("ec2", "DescribeVpcs"),
    ("ec2", "CreateSecurityGroup"),
    ("ec2", "AuthorizeSecurityGroupIngress"),
    ("ec2", "CreateNetworkInterface"),
    ("ec2", "ModifyNetworkInterfaceAttribute"),
    ("ec2", "CreateReservedInstancesListing"),  # doubles
    ("ec2", "ImportKeyPair"),  # a blob
    ("elbv2", "CreateTargetGroup"),
    ("elbv2", "CreateListener"),
    ("elbv2", "ModifyTargetGroupAttributes"),
    ("sts", "AssumeRole"),
]


@pytest.mark.parametrize(
    ("service", "operation"), PROPERTY_INPUTS, ids=[f"{s}.{o}" for s, o in PROPERTY_INPUTS]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_botocore_serialize_then_decode(service: str, operation: str, data: st.DataObject) -> None:
    spec = service_spec(service)
    shape = spec.operations[operation].input
    assert shape is not None
    params = data.draw(_strategy(shape, 4, output=False))
    expected = _as_sent(shape, params, spec.protocol)
    body = _botocore_body(service, operation, params)
    assert _decode(service, body) == (operation, {} if expected is _MISSING else expected)


PROPERTY_OUTPUTS = [
    ("ec2", "DescribeVpcs"),
    ("ec2", "DescribeSecurityGroups"),
    ("ec2", "DescribeNetworkInterfaces"),
    ("ec2", "DescribeReservedInstances"),  # doubles and timestamps
    ("elbv2", "DescribeTargetGroups"),
    ("elbv2", "DescribeListeners"),
    ("sts", "AssumeRole"),
]


@pytest.mark.parametrize(
    ("service", "operation"), PROPERTY_OUTPUTS, ids=[f"{s}.{o}" for s, o in PROPERTY_OUTPUTS]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_encode_then_botocore_parse(service: str, operation: str, data: st.DataObject) -> None:
    shape = service_spec(service).operations[operation].output
    assert shape is not None
    result = data.draw(_strategy(shape, 4, output=True))
    parsed = _encode_and_parse(service, operation, result)
    assert _same(parsed, result)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isinf(a) and math.isinf(b) and (a > 0) == (b > 0))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
