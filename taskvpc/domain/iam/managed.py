"""AWS managed policies that ECS users attach, as documents (``arn:aws:iam::aws:policy/...``).

They are AWS's published statements for the services taskvpc serves; ReadOnlyAccess and
AmazonECS_FullAccess are abridged to those services (the originals list hundreds of services).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ManagedPolicy:
    name: str
    path: str
    policy_id: str
    description: str
    document: dict[str, Any]

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::aws:policy{self.path}{self.name}"

    @property
    def text(self) -> str:
        return orjson.dumps(self.document).decode()


def _allow(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


_LOGS_AND_ECR = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
]

AWS_MANAGED: tuple[ManagedPolicy, ...] = (
    ManagedPolicy(
        "AdministratorAccess",
        "/",
        "ANPAIWMBCKSKIEE64ZLYK",
        "Provides full access to AWS services and resources.",
        _allow({"Effect": "Allow", "Action": "*", "Resource": "*"}),
    ),
    ManagedPolicy(
        "ReadOnlyAccess",
        "/",
        "ANPAILL3HVNFSB6DCOWYQ",
        "Provides read-only access to AWS services and resources.",
        _allow(
            {
                "Effect": "Allow",
                "Action": [
                    "ecs:Describe*",
                    "ecs:List*",
                    "ec2:Describe*",
                    "ec2:Get*",
                    "elasticloadbalancing:Describe*",
                    "iam:Get*",
                    "iam:List*",
                    "logs:Describe*",
                    "logs:Get*",
                    "logs:FilterLogEvents",
                    "sts:GetCallerIdentity",
                ],
                "Resource": "*",
            }
        ),
    ),
    ManagedPolicy(
        "AmazonECSTaskExecutionRolePolicy",
        "/service-role/",
        "ANPAJG4T4G4PV56DE72PY",
        "Provides access to other AWS service resources that are required to run Amazon ECS tasks",
        _allow({"Effect": "Allow", "Action": _LOGS_AND_ECR, "Resource": "*"}),
    ),
    ManagedPolicy(
        "AmazonEC2ContainerServiceforEC2Role",
        "/service-role/",
        "ANPAJLYJCVHC7TQHCSQDS",
        "Default policy for the Amazon EC2 Role for Amazon EC2 Container Service.",
        _allow(
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeTags",
                    "ecs:CreateCluster",
                    "ecs:DeregisterContainerInstance",
                    "ecs:DiscoverPollEndpoint",
                    "ecs:Poll",
                    "ecs:RegisterContainerInstance",
                    "ecs:StartTelemetrySession",
                    "ecs:UpdateContainerInstancesState",
                    "ecs:Submit*",
                    *_LOGS_AND_ECR,
                ],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": "ecs:TagResource",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"ecs:CreateAction": ["CreateCluster", "RegisterContainerInstance"]}
                },
            },
        ),
    ),
    ManagedPolicy(
        "AmazonECS_FullAccess",
        "/",
        "ANPAJ7S7AN6YQPTJC7IFK",
        "Provides administrative access to Amazon ECS resources (abridged to the services taskvpc serves).",
        _allow(
            {
                "Effect": "Allow",
                "Action": ["ecs:*", "ec2:Describe*", "elasticloadbalancing:*", "iam:ListRoles", "logs:*"],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "*",
                "Condition": {"StringLike": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
        ),
    ),
)

BY_ARN: dict[str, ManagedPolicy] = {policy.arn: policy for policy in AWS_MANAGED}
