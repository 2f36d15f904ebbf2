"""Tables of the control plane's durable state (SQLAlchemy Core; Alembic owns the DDL history).

Every row carries the region it lives in: state is kept per region, as on AWS. Resource bodies are kept
as JSON documents in their wire form, beside the columns that queries filter or sort on.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
