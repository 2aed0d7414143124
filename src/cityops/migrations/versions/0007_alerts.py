"""Alerts context: rules, alerts with their history, and the engine's per-rule state.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "alert_rule",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_vi", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("entity_type", sa.String(length=100), nullable=True),
        sa.Column("attribute", sa.String(length=100), nullable=True),
        sa.Column("condition", JSON, nullable=False),
        sa.Column("unit_codes", JSON, nullable=True),
        sa.Column("area_code", sa.String(length=64), nullable=True),
        sa.Column("schedule", JSON, nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=True),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rule")),
        sa.UniqueConstraint("code", name=op.f("uq_alert_rule_code")),
    )
    with op.batch_alter_table("alert_rule", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_rule_kind"), ["kind"], unique=False)

    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("rule_code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("open_key", sa.String(length=64), nullable=True),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=256), nullable=False),
        sa.Column("entity_type", sa.String(length=100), nullable=True),
        sa.Column("attribute", sa.String(length=100), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=True),
        sa.Column("title_vi", sa.String(length=300), nullable=False),
        sa.Column("title_en", sa.String(length=300), nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("snoozed_until", UTC, nullable=True),
        sa.Column("opened_at", UTC, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("acknowledged_at", UTC, nullable=True),
        sa.Column("acknowledged_by", sa.Integer(), nullable=True),
        sa.Column("resolved_at", UTC, nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("first_value", JSON, nullable=True),
        sa.Column("last_value", JSON, nullable=True),
        sa.Column("last_value_at", UTC, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rule.id"],
            name=op.f("fk_alert_rule_id_alert_rule"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alert_open_key")),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_department_code"), ["department_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_alert_fingerprint"), ["fingerprint"], unique=False)
        batch_op.create_index("ix_alert_opened_at", ["opened_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_rule_id"), ["rule_id"], unique=False)
        batch_op.create_index("ix_alert_status_opened_at", ["status", "opened_at"], unique=False)
        batch_op.create_index("ix_alert_tenant_entity_id", ["tenant", "entity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_unit_code"), ["unit_code"], unique=False)

    op.create_table(
        "alert_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=64), nullable=True),
        sa.Column("value", JSON, nullable=True),
        sa.Column("observed_at", UTC, nullable=True),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("entity_id", sa.String(length=256), nullable=True),
        sa.Column("attribute", sa.String(length=100), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("details", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert.id"],
            name=op.f("fk_alert_event_alert_id_alert"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_event")),
    )
    with op.batch_alter_table("alert_event", schema=None) as batch_op:
        batch_op.create_index("ix_alert_event_alert_id_id", ["alert_id", "id"], unique=False)

    op.create_table(
        "alert_rule_state",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=256), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("pending_since", UTC, nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("last_value", JSON, nullable=True),
        sa.Column("last_observed_at", UTC, nullable=True),
        sa.Column("data", JSON, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rule.id"],
            name=op.f("fk_alert_rule_state_rule_id_alert_rule"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rule_state")),
        sa.UniqueConstraint("rule_id", "tenant", "entity_id", name="uq_alert_rule_state_key"),
    )
    with op.batch_alter_table("alert_rule_state", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_rule_state_rule_id"), ["rule_id"], unique=False)


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("alert_rule_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_rule_state_rule_id"))
    op.drop_table("alert_rule_state")
    with op.batch_alter_table("alert_event", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_event_alert_id_id")
    op.drop_table("alert_event")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_unit_code"))
        batch_op.drop_index("ix_alert_tenant_entity_id")
        batch_op.drop_index("ix_alert_status_opened_at")
        batch_op.drop_index(batch_op.f("ix_alert_rule_id"))
        batch_op.drop_index("ix_alert_opened_at")
        batch_op.drop_index(batch_op.f("ix_alert_fingerprint"))
        batch_op.drop_index(batch_op.f("ix_alert_department_code"))
    op.drop_table("alert")
    with op.batch_alter_table("alert_rule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_rule_kind"))
    op.drop_table("alert_rule")
