"""Incidents context: categories, SLA policies, the holiday calendar, incidents with their
departments, timeline, comments and attachments.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "holiday",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_holiday")),
    )
    op.create_table(
        "incident_sequence",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_incident_sequence")),
    )
    op.create_table(
        "incident_category",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("sector", sa.String(length=32), nullable=True),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("default_severity", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_incident_category_department_code_department"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_incident_category")),
    )
    with op.batch_alter_table("incident_category", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_category_department_code"), ["department_code"], unique=False
        )

    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("title_folded", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category_code", sa.String(length=32), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("source_ref", sa.String(length=300), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("assignee_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("acknowledged_at", UTC, nullable=True),
        sa.Column("resolved_at", UTC, nullable=True),
        sa.Column("closed_at", UTC, nullable=True),
        sa.Column("due_ack_at", UTC, nullable=True),
        sa.Column("due_resolve_at", UTC, nullable=True),
        sa.Column("overdue_at", UTC, nullable=True),
        sa.Column("ack_breached", sa.Boolean(), nullable=False),
        sa.Column("resolve_breached", sa.Boolean(), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["auth_user.id"], name=op.f("fk_incident_assignee_id_auth_user")
        ),
        sa.ForeignKeyConstraint(
            ["category_code"],
            ["incident_category.code"],
            name=op.f("fk_incident_category_code_incident_category"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["auth_user.id"], name=op.f("fk_incident_created_by_auth_user")
        ),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_incident_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["admin_unit.code"], name=op.f("fk_incident_unit_code_admin_unit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
        sa.UniqueConstraint("alert_id", name=op.f("uq_incident_alert_id")),
        sa.UniqueConstraint("code", name=op.f("uq_incident_code")),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index("ix_incident_ack_due", ["ack_breached", "due_ack_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_incident_assignee_id"), ["assignee_id"], unique=False)
        batch_op.create_index(
            "ix_incident_category_created_at", ["category_code", "created_at"], unique=False
        )
        batch_op.create_index("ix_incident_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_incident_department_created_at", ["department_code", "created_at"], unique=False
        )
        batch_op.create_index("ix_incident_overdue_at", ["overdue_at"], unique=False)
        batch_op.create_index(
            "ix_incident_resolve_due", ["resolve_breached", "due_resolve_at"], unique=False
        )
        batch_op.create_index(
            "ix_incident_sector_severity_created_at",
            ["sector", "severity", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_incident_severity_created_at", ["severity", "created_at"], unique=False
        )
        batch_op.create_index("ix_incident_status_due", ["status", "due_resolve_at"], unique=False)
        batch_op.create_index(
            "ix_incident_status_unit_created_at",
            ["status", "unit_code", "created_at"],
            unique=False,
        )
        batch_op.create_index("ix_incident_title_folded", ["title_folded"], unique=False)
        batch_op.create_index(
            "ix_incident_unit_created_at", ["unit_code", "created_at"], unique=False
        )

    op.create_table(
        "sla_policy",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("category_code", sa.String(length=32), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("ack_minutes", sa.Integer(), nullable=False),
        sa.Column("resolve_minutes", sa.Integer(), nullable=False),
        sa.Column("business_hours", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["category_code"],
            ["incident_category.code"],
            name=op.f("fk_sla_policy_category_code_incident_category"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_policy")),
    )
    with op.batch_alter_table("sla_policy", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sla_policy_category_severity", ["category_code", "severity"], unique=False
        )

    op.create_table(
        "incident_attachment",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        sa.Column("uploaded_by_name", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_attachment_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_attachment")),
    )
    with op.batch_alter_table("incident_attachment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incident_attachment_incident_id", ["incident_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_incident_attachment_sha256"), ["sha256"], unique=False)

    op.create_table(
        "incident_comment",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author_name", sa.String(length=64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_comment_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_comment")),
    )
    with op.batch_alter_table("incident_comment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incident_comment_incident_id", ["incident_id", "id"], unique=False
        )

    op.create_table(
        "incident_department",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_incident_department_department_code_department"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_department_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "incident_id", "department_code", name=op.f("pk_incident_department")
        ),
    )
    with op.batch_alter_table("incident_department", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incident_department_list",
            ["department_code", "status", "created_at", "incident_id"],
            unique=False,
        )

    op.create_table(
        "incident_event",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_event_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_event")),
    )
    with op.batch_alter_table("incident_event", schema=None) as batch_op:
        batch_op.create_index("ix_incident_event_incident_id", ["incident_id", "id"], unique=False)


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("incident_event", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_event_incident_id")

    op.drop_table("incident_event")
    with op.batch_alter_table("incident_department", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_department_list")

    op.drop_table("incident_department")
    with op.batch_alter_table("incident_comment", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_comment_incident_id")

    op.drop_table("incident_comment")
    with op.batch_alter_table("incident_attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_attachment_sha256"))
        batch_op.drop_index("ix_incident_attachment_incident_id")

    op.drop_table("incident_attachment")
    with op.batch_alter_table("sla_policy", schema=None) as batch_op:
        batch_op.drop_index("ix_sla_policy_category_severity")

    op.drop_table("sla_policy")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_unit_created_at")
        batch_op.drop_index("ix_incident_title_folded")
        batch_op.drop_index("ix_incident_status_unit_created_at")
        batch_op.drop_index("ix_incident_status_due")
        batch_op.drop_index("ix_incident_severity_created_at")
        batch_op.drop_index("ix_incident_sector_severity_created_at")
        batch_op.drop_index("ix_incident_resolve_due")
        batch_op.drop_index("ix_incident_overdue_at")
        batch_op.drop_index("ix_incident_department_created_at")
        batch_op.drop_index("ix_incident_created_at")
        batch_op.drop_index("ix_incident_category_created_at")
        batch_op.drop_index(batch_op.f("ix_incident_assignee_id"))
        batch_op.drop_index("ix_incident_ack_due")

    op.drop_table("incident")
    with op.batch_alter_table("incident_category", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_category_department_code"))

    op.drop_table("incident_category")
    op.drop_table("incident_sequence")
    op.drop_table("holiday")
