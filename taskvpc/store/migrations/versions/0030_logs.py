"""CloudWatch Logs (groups, streams, events, group tags) and EC2 flow logs.

Revision ID: 0030
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0010"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "log_groups",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("arn", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=True),
        sa.Column("kms_key_id", sa.String(256), nullable=True),
        sa.Column("log_group_class", sa.String(32), nullable=False),
        sa.UniqueConstraint("region", "name", name="uq_log_groups_region_name"),
    )
    op.create_index("ix_log_groups_retention", "log_groups", ["retention_days"])
    op.create_table(
        "log_streams",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column(
            "group_id", sa.BigInteger, sa.ForeignKey("log_groups.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("first_event_at", sa.BigInteger, nullable=True),
        sa.Column("last_event_at", sa.BigInteger, nullable=True),
        sa.Column("last_ingestion_at", sa.BigInteger, nullable=True),
        sa.Column("stored_bytes", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("group_id", "name", name="uq_log_streams_group_name"),
    )
    op.create_index("ix_log_streams_last_event", "log_streams", ["group_id", "last_event_at"])
    op.create_table(
        "log_events",
        sa.Column("seq", _id(), primary_key=True, autoincrement=True),
        sa.Column("group_id", sa.BigInteger, nullable=False),
        sa.Column("stream_id", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("ingestion_time", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_log_events_stream", "log_events", ["stream_id", "timestamp", "seq"])
    op.create_index("ix_log_events_group", "log_events", ["group_id", "timestamp", "seq"])
    op.create_table(
        "log_group_tags",
        sa.Column(
            "group_id", sa.BigInteger, sa.ForeignKey("log_groups.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "flow_logs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_flow_logs_resource", "flow_logs", ["region", "resource_id"])


def downgrade() -> None:
    for table in ("flow_logs", "log_group_tags", "log_events", "log_streams", "log_groups"):
        op.drop_table(table)
