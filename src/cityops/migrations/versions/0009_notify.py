"""Notify context: per-user notification preferences and webhook endpoints.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "notify_preference",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=True),
        sa.Column("zalo_user_id", sa.String(length=64), nullable=True),
        sa.Column("min_severity", sa.String(length=16), nullable=False),
        sa.Column("quiet_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_end", sa.String(length=5), nullable=True),
        sa.Column("only_mine", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["auth_user.id"], name=op.f("fk_notify_preference_user_id_auth_user")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_notify_preference")),
    )
    op.create_table(
        "notify_webhook",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("event_types", JSON, nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("last_success_at", UTC, nullable=True),
        sa.Column("last_failure_at", UTC, nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_notify_webhook_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["admin_unit.code"], name=op.f("fk_notify_webhook_unit_code_admin_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_webhook")),
    )
    with op.batch_alter_table("notify_webhook", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notify_webhook_unit_code"), ["unit_code"], unique=False
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("notify_webhook", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notify_webhook_unit_code"))
    op.drop_table("notify_webhook")
    op.drop_table("notify_preference")
