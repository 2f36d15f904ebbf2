"""Which use case answers which (service, operation). The API layer looks handlers up here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskvpc.control import sts
from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import eni_attributes, enis, regions, security_groups, sg_rules, subnets, tags, vpcs
from taskvpc.control.ecs import (
    account_settings,
    attributes,
    capacity_providers,
    clusters,
    container_instances,
    services,
    tagging,
    task_definitions,
    tasks,
)

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
        "RegisterContainerInstance": container_instances.register_container_instance,
        "DeregisterContainerInstance": container_instances.deregister_container_instance,
        "ListContainerInstances": container_instances.list_container_instances,
        "DescribeContainerInstances": container_instances.describe_container_instances,
        "UpdateContainerInstancesState": container_instances.update_container_instances_state,
        "PutAttributes": attributes.put_attributes,
        "ListAttributes": attributes.list_attributes,
        "DeleteAttributes": attributes.delete_attributes,
        "RunTask": tasks.run_task,
        "StartTask": tasks.start_task,
        "StopTask": tasks.stop_task,
        "DescribeTasks": tasks.describe_tasks,
        "ListTasks": tasks.list_tasks,
        "CreateService": services.create_service,
        "UpdateService": services.update_service,
        "DeleteService": services.delete_service,
        "DescribeServices": services.describe_services,
        "ListServices": services.list_services,
        "ListServicesByNamespace": services.list_services_by_namespace,
        "CreateCapacityProvider": capacity_providers.create_capacity_provider,
        "UpdateCapacityProvider": capacity_providers.update_capacity_provider,
        "DeleteCapacityProvider": capacity_providers.delete_capacity_provider,
        "DescribeCapacityProviders": capacity_providers.describe_capacity_providers,
        "PutClusterCapacityProviders": capacity_providers.put_cluster_capacity_providers,
    },
    "ec2": {
        "DescribeAvailabilityZones": regions.describe_availability_zones,
        "DescribeRegions": regions.describe_regions,
        "DescribeAccountAttributes": regions.describe_account_attributes,
        "CreateVpc": vpcs.create_vpc,
        "DescribeVpcs": vpcs.describe_vpcs,
        "DeleteVpc": vpcs.delete_vpc,
        "ModifyVpcAttribute": vpcs.modify_vpc_attribute,
        "DescribeVpcAttribute": vpcs.describe_vpc_attribute,
        "CreateSubnet": subnets.create_subnet,
        "DescribeSubnets": subnets.describe_subnets,
        "DeleteSubnet": subnets.delete_subnet,
        "ModifySubnetAttribute": subnets.modify_subnet_attribute,
        "CreateSecurityGroup": security_groups.create_security_group,
        "DescribeSecurityGroups": security_groups.describe_security_groups,
        "DeleteSecurityGroup": security_groups.delete_security_group,
        "AuthorizeSecurityGroupIngress": sg_rules.authorize_security_group_ingress,
        "AuthorizeSecurityGroupEgress": sg_rules.authorize_security_group_egress,
        "RevokeSecurityGroupIngress": sg_rules.revoke_security_group_ingress,
        "RevokeSecurityGroupEgress": sg_rules.revoke_security_group_egress,
        "DescribeSecurityGroupRules": sg_rules.describe_security_group_rules,
        "ModifySecurityGroupRules": sg_rules.modify_security_group_rules,
        "CreateNetworkInterface": enis.create_network_interface,
        "DescribeNetworkInterfaces": enis.describe_network_interfaces,
        "DeleteNetworkInterface": enis.delete_network_interface,
        "DescribeNetworkInterfaceAttribute": eni_attributes.describe_network_interface_attribute,
        "ModifyNetworkInterfaceAttribute": eni_attributes.modify_network_interface_attribute,
        "CreateTags": tags.create_tags,
        "DeleteTags": tags.delete_tags,
        "DescribeTags": tags.describe_tags,
    },
    "elbv2": {},
    "sts": {"GetCallerIdentity": sts.get_caller_identity},
}


def handler_for(service: str, operation: str) -> Handler | None:
    return HANDLERS.get(service, {}).get(operation)
