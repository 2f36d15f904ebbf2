"""Which use case answers which (service, operation). The API layer looks handlers up here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskvpc.control import sts
from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import account_settings, clusters, tagging, task_definitions

Handler = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]

HANDLERS: dict[str, dict[str, Handler]] = {
    "ecs": {
        "CreateCluster": clusters.create_cluster,
        "DescribeClusters": clusters.describe_clusters,
        "ListClusters": clusters.list_clusters,
        "DeleteCluster": clusters.delete_cluster,
        "UpdateCluster": clusters.update_cluster,
        "UpdateClusterSettings": clusters.update_cluster_settings,
        "RegisterTaskDefinition": task_definitions.register_task_definition,
        "DescribeTaskDefinition": task_definitions.describe_task_definition,
        "ListTaskDefinitions": task_definitions.list_task_definitions,
        "ListTaskDefinitionFamilies": task_definitions.list_task_definition_families,
        "DeregisterTaskDefinition": task_definitions.deregister_task_definition,
        "DeleteTaskDefinitions": task_definitions.delete_task_definitions,
        "TagResource": tagging.tag_resource,
        "UntagResource": tagging.untag_resource,
        "ListTagsForResource": tagging.list_tags_for_resource,
        "PutAccountSetting": account_settings.put_account_setting,
        "PutAccountSettingDefault": account_settings.put_account_setting_default,
        "ListAccountSettings": account_settings.list_account_settings,
        "DeleteAccountSetting": account_settings.delete_account_setting,
    },
    "ec2": {},
    "elbv2": {},
    "sts": {"GetCallerIdentity": sts.get_caller_identity},
}


def handler_for(service: str, operation: str) -> Handler | None:
    return HANDLERS.get(service, {}).get(operation)
