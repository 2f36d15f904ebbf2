"""Tables of the control plane's durable state (SQLAlchemy Core; Alembic owns the DDL history).

Every row carries the region it lives in: state is kept per region, as on AWS. Resource bodies are kept
as JSON documents in their wire form, beside the columns that queries filter or sort on.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

clusters = Table(
    "clusters",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("region", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    Column("arn", String(512), nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("region", "name", name="uq_clusters_region_name"),
)

task_definitions = Table(
    "task_definitions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("region", String(32), nullable=False),
    Column("family", String(255), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("arn", String(512), nullable=False),
    Column("status", String(32), nullable=False),
    Column("registered_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("region", "family", "revision", name="uq_task_definitions_family_revision"),
    Index("ix_task_definitions_arn", "arn"),
    Index("ix_task_definitions_region_status", "region", "status", "family", "revision"),
)

tags = Table(
    "tags",
    metadata,
    Column("region", String(32), nullable=False),
    Column("resource_arn", String(1024), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

account_settings = Table(
    "account_settings",
    metadata,
    Column("region", String(32), primary_key=True),
    # The principal the setting is for; the account default is stored under the root principal.
    Column("principal_arn", String(512), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("region", String(32), primary_key=True),
    Column("operation", String(64), primary_key=True),
    Column("token", String(128), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)


# ---- EC2: the VPC model (revision 0002) -----------------------------------------------------------
# Ids are EC2's own ('vpc-0123456789abcdef0'). Anything a query filters on or a constraint guards is a
# column; the rest of a resource is its wire document in ``body``. Addresses, rules and ENI<->group
# memberships are rows, so "is this address taken", "which groups reference X" and "which ENIs carry
# X" are single indexed queries, and UNIQUE constraints settle races between server processes.

ec2_regions = Table(
    "ec2_regions",
    metadata,
    # A row means the region's default VPC was created once; deleting that VPC does not bring it back.
    Column("region", String(32), primary_key=True),
    Column("default_vpc_id", String(32), nullable=True),
    Column("created_at", Float, nullable=False),
)

vpcs = Table(
    "vpcs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("cidr_block", String(18), nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("enable_dns_support", Boolean, nullable=False),
    Column("enable_dns_hostnames", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_vpcs_region", "region", "id"),
)

subnets = Table(
    "subnets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("vpc_id", String(32), ForeignKey("vpcs.id"), nullable=False),
    Column("cidr_block", String(18), nullable=False),
    Column("availability_zone", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_subnets_region", "region", "id"),
    Index("ix_subnets_vpc", "vpc_id"),
)

security_groups = Table(
    "security_groups",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("vpc_id", String(32), ForeignKey("vpcs.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("vpc_id", "name", name="uq_security_groups_vpc_name"),
    Index("ix_security_groups_region", "region", "id"),
    Index("ix_security_groups_name", "region", "name", "id"),  # 0050
    Index("ix_security_groups_vpc", "region", "vpc_id", "id"),  # 0050
)

security_group_rules = Table(
    "security_group_rules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("group_id", String(32), ForeignKey("security_groups.id"), nullable=False),
    Column("is_egress", Boolean, nullable=False),
    # The rule's identity without its description: two rules with the same key are one rule to EC2.
    Column("rule_key", String(255), nullable=False),
    Column("referenced_group_id", String(32), ForeignKey("security_groups.id"), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("seq", Integer, nullable=False),  # order within a group, as the rules were added
    Column("body", Text, nullable=False),
    UniqueConstraint("group_id", "is_egress", "rule_key", name="uq_security_group_rules_key"),
    Index("ix_security_group_rules_group", "group_id", "is_egress", "seq"),
    Index("ix_security_group_rules_referenced", "referenced_group_id"),
    Index("ix_security_group_rules_region", "region", "id"),
    Index("ix_security_group_rules_region_group", "region", "group_id", "id"),  # 0050
)

network_interfaces = Table(
    "network_interfaces",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("vpc_id", String(32), ForeignKey("vpcs.id"), nullable=False),
    Column("subnet_id", String(32), ForeignKey("subnets.id"), nullable=False),
    Column("private_ip", String(45), nullable=False),
    Column("mac_address", String(17), nullable=False),
    Column("status", String(16), nullable=False),
    Column("requester_managed", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("mac_address", name="uq_network_interfaces_mac"),
    Index("ix_network_interfaces_region", "region", "id"),
    Index("ix_network_interfaces_subnet", "subnet_id"),
    Index("ix_network_interfaces_vpc", "vpc_id"),
)

network_interface_groups = Table(
    "network_interface_groups",
    metadata,
    Column("eni_id", String(32), ForeignKey("network_interfaces.id"), primary_key=True),
    Column("group_id", String(32), ForeignKey("security_groups.id"), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("position", Integer, nullable=False),
    Index("ix_network_interface_groups_group", "group_id"),
)

ip_addresses = Table(
    "ip_addresses",
    metadata,
    # The primary key is the allocation: an address is handed out at most once per subnet, whichever
    # server process asks, because the second INSERT of the same (subnet, ip) fails.
    Column("subnet_id", String(32), ForeignKey("subnets.id"), primary_key=True),
    Column("ip", String(45), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("eni_id", String(32), nullable=False),  # no FK: the address is claimed before the ENI row
    Index("ix_ip_addresses_eni", "eni_id"),
)

ec2_tags = Table(
    "ec2_tags",
    metadata,
    Column("resource_id", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("value", String(256), nullable=False),
    Index("ix_ec2_tags_region", "region", "resource_id"),
)


# ---- ECS: container instances and tasks (revision 0003) -------------------------------------------
# A container instance's capacity and usage are columns (placement reads them for every instance of a
# cluster); usage is recomputed from its live tasks whenever they change, never incremented blindly.
# ``generation`` counts changes of the instance's desired state (what its agent long-polls for).

container_instances = Table(
    "container_instances",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("cluster", String(255), nullable=False),
    Column("arn", String(512), nullable=False),
    Column("ec2_instance_id", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("agent_heartbeat", Float, nullable=True),  # last poll of its agent (epoch seconds)
    # agentConnected as last decided: a poll sets it, the agent reconciler clears it (revision 0004)
    Column("agent_connected", Boolean, nullable=False, server_default=false()),
    Column("registered_at", Float, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("generation", BigInteger, nullable=False),
    Column("availability_zone", String(32), nullable=False),
    Column("subnet_id", String(32), nullable=False),
    Column("vpc_id", String(32), nullable=False),
    Column("cpu_registered", Integer, nullable=False),
    Column("memory_registered", Integer, nullable=False),
    Column("eni_capacity", Integer, nullable=False),
    Column("cpu_used", Integer, nullable=False),
    Column("memory_used", Integer, nullable=False),
    Column("eni_used", Integer, nullable=False),
    Column("running_count", Integer, nullable=False),
    Column("pending_count", Integer, nullable=False),
    Column("body", Text, nullable=False),  # registeredResources, versionInfo, hostname, capabilities
    Index("ix_container_instances_cluster", "region", "cluster", "status"),
    Index("ix_container_instances_ec2", "region", "cluster", "ec2_instance_id"),
)

container_instance_attributes = Table(
    "container_instance_attributes",
    metadata,
    Column("instance_id", String(32), ForeignKey("container_instances.id"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("cluster", String(255), nullable=False),
    Column("value", String(128), nullable=True),
    Column("custom", Boolean, nullable=False),  # put by PutAttributes (counts against the limit of 10)
    Index("ix_container_instance_attributes_cluster", "region", "cluster", "name"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("cluster", String(255), nullable=False),
    Column("arn", String(512), nullable=False),
    Column("container_instance_id", String(32), nullable=True),
    Column("family", String(255), nullable=False),
    Column("task_group", String(255), nullable=False),
    Column("started_by", String(128), nullable=True),
    Column("service_name", String(255), nullable=True),
    Column("launch_type", String(16), nullable=False),
    Column("desired_status", String(16), nullable=False),
    Column("last_status", String(16), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("cpu", Integer, nullable=False),
    Column("memory", Integer, nullable=False),
    Column("eni_id", String(32), nullable=True),  # the task ENI while it holds one of the instance's slots
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),  # when it became STOPPED: its retention runs from here (0004)
    Column("body", Text, nullable=False),  # the DescribeTasks document
    Column("spec", Text, nullable=False),  # what the agent needs: effective containers, the ENI, ...
    # The instance generation at which the task's desired-state entry last changed; NULL: changed, the
    # instance's next bump stamps it (0130; agent API deltas, control/agent.py).
    Column("desired_generation", BigInteger, nullable=True),
    UniqueConstraint("arn", name="uq_tasks_arn"),
    Index("ix_tasks_cluster", "region", "cluster", "desired_status", "arn"),
    Index("ix_tasks_instance", "container_instance_id", "last_status"),
    Index("ix_tasks_status_stopped", "last_status", "stopped_at"),
    Index("ix_tasks_started_by", "region", "cluster", "started_by", "last_status"),
    Index("ix_tasks_service", "region", "cluster", "service_name", "desired_status"),
    Index("ix_tasks_family", "region", "cluster", "desired_status", "family", "arn"),  # 0050
    Index("ix_tasks_desired_generation", "container_instance_id", "desired_generation"),  # 0130
    # Covering: usage, cluster counters and group counts read index entries only (0140)
    Index("ix_tasks_instance_usage", "container_instance_id", "last_status", "cpu", "memory", "eni_id"),
    Index("ix_tasks_cluster_status", "region", "cluster", "last_status"),
    Index(
        "ix_tasks_group_counts",
        "region",
        "cluster",
        "desired_status",
        "container_instance_id",
        "task_group",
        "last_status",
    ),
)

# ---- ECS services (migration 0010) --------------------------------------------------------------------

services = Table(
    "services",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("cluster", String(255), nullable=False),
    Column("name", String(255), nullable=False),  # unique among a cluster's services not INACTIVE
    Column("arn", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("body", Text, nullable=False),  # the DescribeServices document without deployments and events
    Index("ix_services_cluster", "region", "cluster", "status", "arn"),
    Index("ix_services_name", "region", "cluster", "name"),
)

service_deployments = Table(
    "service_deployments",
    metadata,
    Column("id", String(64), primary_key=True),  # ecs-svc/<19 digits>, the tasks' startedBy
    Column("service_id", String(32), ForeignKey("services.id"), nullable=False),
    Column("region", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # PRIMARY | ACTIVE | INACTIVE (retired)
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_service_deployments_service", "service_id", "status"),
)

service_events = Table(
    "service_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("service_id", String(32), ForeignKey("services.id"), nullable=False),
    Column("id", String(36), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_service_events_service", "service_id", "seq"),
)

capacity_providers = Table(
    "capacity_providers",
    metadata,
    Column("region", String(32), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("arn", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
)

# ---- CloudWatch Logs (0030) ------------------------------------------------------------------------------
# Times are epoch milliseconds, as the Logs API shows them. Events are read by (stream, timestamp, seq)
# (GetLogEvents) and by (group, timestamp, seq) (FilterLogEvents, retention); seq is the insertion number
# that orders events with equal timestamps and makes eventId unique.

log_groups = Table(
    "log_groups",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("region", String(32), nullable=False),
    Column("name", String(512), nullable=False),
    Column("arn", String(1024), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("retention_days", Integer, nullable=True),
    Column("kms_key_id", String(256), nullable=True),
    Column("log_group_class", String(32), nullable=False),
    UniqueConstraint("region", "name", name="uq_log_groups_region_name"),
    Index("ix_log_groups_retention", "retention_days"),
)

log_streams = Table(
    "log_streams",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("group_id", BigInteger, ForeignKey("log_groups.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(512), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("first_event_at", BigInteger, nullable=True),
    Column("last_event_at", BigInteger, nullable=True),
    Column("last_ingestion_at", BigInteger, nullable=True),
    Column("stored_bytes", BigInteger, nullable=False),
    UniqueConstraint("group_id", "name", name="uq_log_streams_group_name"),
    Index("ix_log_streams_last_event", "group_id", "last_event_at"),
)

log_events = Table(
    "log_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("group_id", BigInteger, nullable=False),
    Column("stream_id", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("ingestion_time", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_log_events_stream", "stream_id", "timestamp", "seq"),
    Index("ix_log_events_group", "group_id", "timestamp", "seq"),
)

log_group_tags = Table(
    "log_group_tags",
    metadata,
    Column("group_id", BigInteger, ForeignKey("log_groups.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

# EC2 CreateFlowLogs: one row per flow log (one per resource id of the call).
flow_logs = Table(
    "flow_logs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),  # the DescribeFlowLogs document
    Index("ix_flow_logs_resource", "region", "resource_id"),
)

# ---- IAM and STS (global: no region column) -----------------------------------------------------------
# Users, roles and customer managed policies, each with its document in the wire form (0020).
iam_entities = Table(
    "iam_entities",
    metadata,
    Column("kind", String(16), primary_key=True),  # user | role | policy
    Column("name", String(128), primary_key=True),
    Column("arn", String(1024), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("arn", name="uq_iam_entities_arn"),
)

# Inline policies of users and roles, and the versions of managed policies (owner_kind "policy").
iam_documents = Table(
    "iam_documents",
    metadata,
    Column("owner_kind", String(16), primary_key=True),
    Column("owner", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),  # the inline policy's name, or a version id (v1, v2...)
    Column("document", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

iam_attachments = Table(
    "iam_attachments",
    metadata,
    Column("owner_kind", String(16), primary_key=True),  # user | role
    Column("owner", String(128), primary_key=True),
    Column("policy_arn", String(1024), primary_key=True),
    Index("ix_iam_attachments_policy", "policy_arn"),
)

iam_access_keys = Table(
    "iam_access_keys",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("user_name", String(128), nullable=False),
    Column("secret", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_iam_access_keys_user", "user_name"),
)

# Temporary credentials STS issued; ``body`` is the session (principal, role, session policies).
sts_sessions = Table(
    "sts_sessions",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("secret", String(64), nullable=False),
    Column("session_token", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_sts_sessions_expires", "expires_at"),
)

# One row, bumped by every IAM change: caches of principals' policies are valid while it stands still.
iam_generation = Table(
    "iam_generation",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", BigInteger, nullable=False),
)

# ---- ELBv2: load balancers, target groups, listeners, rules, targets, tags (revision 0040) ----------
# Each resource is its wire document keyed by ARN, with the columns lookups use beside it. A target is a
# row per (group, id, port): its health state lives in columns so the data plane's reports are one UPDATE.

elb_load_balancers = Table(
    "elb_load_balancers",
    metadata,
    Column("arn", String(512), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("name", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("region", "name", name="uq_elb_load_balancers_name"),
)

elb_target_groups = Table(
    "elb_target_groups",
    metadata,
    Column("arn", String(512), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("name", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("region", "name", name="uq_elb_target_groups_name"),
)

elb_listeners = Table(
    "elb_listeners",
    metadata,
    Column("arn", String(512), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("load_balancer_arn", String(512), nullable=False),
    Column("port", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("load_balancer_arn", "port", name="uq_elb_listeners_port"),
)

elb_rules = Table(
    "elb_rules",
    metadata,
    Column("arn", String(512), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("listener_arn", String(512), nullable=False),
    Column("priority", Integer, nullable=False),  # the default rule sorts last (DEFAULT_RULE_PRIORITY)
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("listener_arn", "priority", name="uq_elb_rules_priority"),
)

elb_targets = Table(
    "elb_targets",
    metadata,
    Column("target_group_arn", String(512), primary_key=True),
    Column("target_id", String(64), primary_key=True),
    Column("port", Integer, primary_key=True),
    Column("region", String(32), nullable=False),
    Column("availability_zone", String(32), nullable=True),
    Column("state", String(32), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("description", String(256), nullable=True),
    Column("registered_at", Float, nullable=False),
    Column("drain_until", Float, nullable=True),  # set while draining: when the target is gone
)

elb_tags = Table(
    "elb_tags",
    metadata,
    Column("resource_arn", String(512), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("value", String(256), nullable=False),
)

# The awslogs driver (control/logs/delivery.py): per task container, the number of the next event the
# agent may send; moved in the transaction that stores the events, so a batch sent again is not stored twice.
awslogs_cursors = Table(
    "awslogs_cursors",
    metadata,
    Column("task_arn", String(512), primary_key=True),
    Column("container", String(255), primary_key=True),
    Column("next_seq", BigInteger, nullable=False),
)

ec2_instances = Table(
    "ec2_instances",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("client_token", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_ec2_instances_region", "region", "id"),
    Index("ix_ec2_instances_token", "region", "client_token"),
)
