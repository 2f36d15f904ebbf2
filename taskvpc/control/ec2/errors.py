"""EC2's error codes and texts for the VPC model, in one place.

Each message carries where its exact text was seen (a public report quoting real EC2, or the EC2 API
reference's error-code list, "EC2 errors doc"); ``# unconfirmed`` marks text written by analogy.
Address and CIDR errors live with the pure IPAM in ``taskvpc.netmodel.ipam``.
"""

from __future__ import annotations

from taskvpc.domain.errors import ClientError

# Resource kind -> (NotFound code, Malformed code, the noun EC2 puts in "The <noun> ID '...' does not exist").
# The codes' casing differs per resource and clients match it literally (EC2 errors doc).
_CODES = {
    "vpc": ("InvalidVpcID.NotFound", "InvalidVpcID.Malformed", "vpc"),
    "subnet": ("InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed", "subnet"),
    "sg": ("InvalidGroup.NotFound", "InvalidGroupId.Malformed", "security group"),
    "eni": ("InvalidNetworkInterfaceID.NotFound", "InvalidNetworkInterfaceId.Malformed", "networkInterface"),
    "sgr": (
        "InvalidSecurityGroupRuleId.NotFound",
        "InvalidSecurityGroupRuleId.Malformed",
        "security group rule",
    ),
}


def malformed(prefix: str, value: str) -> ClientError:
    # 'Invalid id: "not-an-id" (expecting "vpc-...")' (InvalidVpcID.Malformed) and
    # 'Invalid id: "i-0d9566a2e1c8fe35d" (expecting "sg-...")' (InvalidGroupId.Malformed): CLI output quoted
    # in public repos; hashicorp/terraform-provider-aws#6104. Same sentence for subnet/eni/sgr # unconfirmed
    return ClientError(_CODES[prefix][1], f'Invalid id: "{value}" (expecting "{prefix}-...")')


def not_found(prefix: str, ids: list[str]) -> ClientError:
    code, _, noun = _CODES[prefix]
    if prefix == "sg":
        # "InvalidGroup.NotFound: The security group 'sg-0dcf748f4901c5334' does not exist" (terraform
        # provider comment quoting EC2); several missing groups: the first one named # unconfirmed
        return ClientError(code, f"The security group '{ids[0]}' does not exist")
    if prefix == "sgr":
        return ClientError(code, f"The security group rule ID '{ids[0]}' does not exist")  # unconfirmed
    if len(ids) == 1:
        # "The vpc ID 'vpc-088fb7c0a22060c10' does not exist" (CLI output, several public repos);
        # "The subnet ID '...' does not exist"; "The networkInterface ID 'eni-0d602b8415723c85d' does not
        # exist" (CLI output quoted in public repos, fog-aws)
        return ClientError(code, f"The {noun} ID '{ids[0]}' does not exist")
    # Plural as EC2 writes it for instances ("The instance IDs 'i-1, i-2' do not exist") # unconfirmed here
    return ClientError(code, f"The {noun} IDs '{', '.join(ids)}' do not exist")


def group_name_not_found(name: str, vpc_id: str) -> ClientError:
    # "The security group 'WebServerSecurityGroup' does not exist in default VPC 'vpc-06dd0cf5353d4b39e'"
    # (CloudFormation event text quoting EC2, public notes)
    return ClientError(
        "InvalidGroup.NotFound", f"The security group '{name}' does not exist in default VPC '{vpc_id}'"
    )


def group_duplicate(name: str, vpc_id: str) -> ClientError:
    # "An error occurred (InvalidGroup.Duplicate) when calling the CreateSecurityGroup operation: The security
    # group 'Public' already exists for VPC 'vpc-05f9507fbc9dcc1be'" (CLI transcript in a public repo)
    return ClientError(
        "InvalidGroup.Duplicate", f"The security group '{name}' already exists for VPC '{vpc_id}'"
    )


def group_name_reserved() -> ClientError:
    # In a VPC: "InvalidParameterValue: Cannot use reserved security group name: default" (openstack ec2-api,
    # which mirrors EC2; a cfn policy rule quoting the same text). EC2-Classic answered InvalidGroup.Reserved.
    return ClientError("InvalidParameterValue", "Cannot use reserved security group name: default")


def group_name_sg_prefix(name: str) -> ClientError:
    # "InvalidParameterValue: Value (sg-86c8964) for parameter GroupName is invalid. Group names may not be
    # in the format sg-*." pulumi/pulumi-awsx#328
    return ClientError(
        "InvalidParameterValue",
        f"Value ({name}) for parameter GroupName is invalid. Group names may not be in the format sg-*.",
    )


def no_default_vpc() -> ClientError:
    # "An error occurred (VPCIdNotSpecified) when calling the CreateSecurityGroup operation: No default VPC
    # for this user" (CLI transcript in a public repo)
    return ClientError("VPCIdNotSpecified", "No default VPC for this user")


def vpc_has_dependencies(vpc_id: str) -> ClientError:
    # "DependencyViolation: The vpc 'vpc-0d583caa141c170b6' has dependencies and cannot be deleted."
    # (terraform destroy output, several public repos)
    return ClientError("DependencyViolation", f"The vpc '{vpc_id}' has dependencies and cannot be deleted.")


def subnet_has_dependencies(subnet_id: str) -> ClientError:
    # "DependencyViolation: The subnet 'subnet-xxx' has dependencies and cannot be deleted." (CloudFormation
    # and Pulumi output quoted in public repos)
    return ClientError(
        "DependencyViolation", f"The subnet '{subnet_id}' has dependencies and cannot be deleted."
    )


def group_has_dependent(group_id: str) -> ClientError:
    # "DependencyViolation: resource sg-01a2f9aef81a857f6 has a dependent object" (EKS tooling logs); EC2
    # answers the same whether an ENI carries the group or another group's rule references it.
    return ClientError("DependencyViolation", f"resource {group_id} has a dependent object")


def cannot_delete_default(group_id: str) -> ClientError:
    # 'CannotDelete: the specified group: "sg-..." name: "default" cannot be deleted by a user' (a cleanup
    # script in a public repo matches '"default" cannot be deleted by a user' in EC2's message)
    return ClientError(
        "CannotDelete", f'the specified group: "{group_id}" name: "default" cannot be deleted by a user'
    )


def eni_in_use(eni_id: str) -> ClientError:
    # DeleteNetworkInterface on an attached ENI: "InvalidParameterValue: Network interface 'eni-...' is
    # currently in use." gruntwork-io/cloud-nuke#431 and #1132 (2026), aws/amazon-vpc-cni-k8s#1399 (CloudTrail
    # errorCode Client.InvalidParameterValue). InvalidNetworkInterface.InUse ("Interface: [eni-...] in use.")
    # is what attaching an ENI that is in use answers.
    return ClientError("InvalidParameterValue", f"Network interface '{eni_id}' is currently in use.")


def requester_managed(eni_id: str) -> ClientError:
    # A user changing an ENI another service manages: "AuthFailure: You do not have permission to access the
    # specified resource." (detaching an EKS-managed ENI, aws/aws-k8s-tester#70); ModifyNetworkInterfaceAttribute
    # on an ECS task ENI fails with an auth error even as admin (cloud-custodian/cloud-custodian#3406).
    # The same for DeleteNetworkInterface on a detached one # unconfirmed
    del eni_id
    return ClientError("AuthFailure", "You do not have permission to access the specified resource.")


def groups_in_different_vpcs(group_id: str, subnet_id: str) -> ClientError:
    # "InvalidParameter: Security group sg-07cbbd1042f3c81b3 and subnet subnet-2c6ba676 belong to different
    # networks." (RunInstances, terraform output in a public repo; CreateNetworkInterface # unconfirmed)
    return ClientError(
        "InvalidParameter", f"Security group {group_id} and subnet {subnet_id} belong to different networks."
    )


def invalid_availability_zone(zone: str, valid: list[str]) -> ClientError:
    # "InvalidParameterValue: Value (us-west-1b) for parameter availabilityZone is invalid. Subnets can
    # currently only be created in the following availability zones: us-east-1a, us-east-1b, ..., us-east-1f."
    # (terraform output, 2025, public repo)
    return ClientError(
        "InvalidParameterValue",
        f"Value ({zone}) for parameter availabilityZone is invalid. Subnets can currently only be created in "
        f"the following availability zones: {', '.join(valid)}.",
    )


def invalid_availability_zone_id(zone_id: str) -> ClientError:
    return ClientError(
        "InvalidParameterValue", f"Value ({zone_id}) for parameter availabilityZoneId is invalid."
    )  # unconfirmed


def missing_parameter(name: str) -> ClientError:
    # "MissingParameter: The request must contain the parameter groupDescription" (EC2 wording, see
    # taskvpc.wire.validate); used for members the model leaves optional but EC2 requires in context.
    return ClientError("MissingParameter", f"The request must contain the parameter {name}")


def invalid_next_token(token: str) -> ClientError:
    return ClientError("InvalidNextToken", f"The token '{token}' is invalid.")  # unconfirmed wording


def invalid_id(value: str) -> ClientError:
    # CreateTags on an id of no known type: "InvalidID: The ID 'foo' is not valid" (EC2 errors doc names the
    # code; the text as openstack ec2-api writes it) # unconfirmed
    return ClientError("InvalidID", f"The ID '{value}' is not valid")


def protocol_not_given() -> ClientError:
    # A VPC rule without IpProtocol: EC2's text as the issue tracker of this project quotes it (#12);
    # the code InvalidParameterValue as for EC2's other "Invalid value '...' for ..." texts # unconfirmed
    return ClientError(
        "InvalidParameterValue",
        "Invalid value 'null' for protocol. VPC security group rules must specify protocols explicitly.",
    )


def group_id_malformed(value: str) -> ClientError:
    # A malformed group-id *filter* value (DescribeSecurityGroupRules): real EC2 answered
    # "InvalidGroupId.Malformed: The security group ID '' is malformed" (localstack/localstack#9059,
    # CLI output against AWS); ids given as parameters get the "Invalid id" text of ``malformed``.
    return ClientError("InvalidGroupId.Malformed", f"The security group ID '{value}' is malformed")


def invalid_parameter_value(message: str) -> ClientError:
    return ClientError("InvalidParameterValue", message)


def tag_value_null() -> ClientError:
    return ClientError(
        "InvalidParameterValue", "Tag value cannot be null. Use empty string instead."
    )  # unconfirmed


def reserved_tag_key(key: str) -> ClientError:
    # EC2 refuses user tags under the aws: prefix # unconfirmed wording
    return ClientError(
        "InvalidParameterValue",
        f"Value ( {key} ) for parameter key is invalid. Tag keys starting with 'aws:' are reserved for internal use",
    )


def tag_limit_exceeded() -> ClientError:
    # 50 user tags per resource (EC2 User Guide "Tag restrictions") # unconfirmed code/wording
    return ClientError("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
