"""Context hub: NGSI-LD subscriptions (what to watch, where to notify, delivery status).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "ngsild_subscription",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("subscription_id", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("owner_units", JSON, nullable=True),
        sa.Column("document", JSON, nullable=False),
        sa.Column("context", JSON, nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("expires_at", UTC, nullable=True),
        sa.Column("throttling", sa.Float(), nullable=True),
        sa.Column("time_interval", sa.Float(), nullable=True),
        sa.Column("entity_types", JSON, nullable=True),
        sa.Column("times_sent", sa.Integer(), nullable=False),
        sa.Column("times_failed", sa.Integer(), nullable=False),
        sa.Column("last_notification", UTC, nullable=True),
        sa.Column("last_success", UTC, nullable=True),
        sa.Column("last_failure", UTC, nullable=True),
        sa.Column("notification_status", sa.String(length=8), nullable=True),
        sa.Column("last_queued_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("modified_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ngsild_subscription")),
    )
    with op.batch_alter_table("ngsild_subscription", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ngsild_subscription_tenant_id", ["tenant", "subscription_id"], unique=True
        )
        batch_op.create_index(
            "ix_ngsild_subscription_active", ["tenant", "is_active"], unique=False
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("ngsild_subscription", schema=None) as batch_op:
        batch_op.drop_index("ix_ngsild_subscription_active")
        batch_op.drop_index("ix_ngsild_subscription_tenant_id")
    op.drop_table("ngsild_subscription")
