"""IAM users, roles, managed policies (with versions), inline policies, attachments, access keys; STS
sessions; the IAM generation counter that caches of effective policies key on.

Revision ID: 0020
Revises: 0030 (logs; the heads on main when this landed)
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iam_entities",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("arn", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("arn", name="uq_iam_entities_arn"),
    )
    op.create_table(
        "iam_documents",
        sa.Column("owner_kind", sa.String(16), primary_key=True),
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "iam_attachments",
        sa.Column("owner_kind", sa.String(16), primary_key=True),
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("policy_arn", sa.String(1024), primary_key=True),
    )
    op.create_index("ix_iam_attachments_policy", "iam_attachments", ["policy_arn"])
    op.create_table(
        "iam_access_keys",
        sa.Column("access_key_id", sa.String(32), primary_key=True),
        sa.Column("user_name", sa.String(128), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_iam_access_keys_user", "iam_access_keys", ["user_name"])
    op.create_table(
        "sts_sessions",
        sa.Column("access_key_id", sa.String(32), primary_key=True),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("session_token", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_sts_sessions_expires", "sts_sessions", ["expires_at"])
    op.create_table(
        "iam_generation",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "iam_generation",
        "sts_sessions",
        "iam_access_keys",
        "iam_attachments",
        "iam_documents",
        "iam_entities",
    ):
        op.drop_table(table)
