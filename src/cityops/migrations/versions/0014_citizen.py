"""Citizen context: the service catalogue, reports, their public history and their reporters
(personal data, in a table of their own).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cityops.core.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "citizen_service",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("description_en", sa.String(length=1000), nullable=False),
        sa.Column("group", sa.String(length=100), nullable=False),
        sa.Column("group_en", sa.String(length=100), nullable=False),
        sa.Column("keywords", sa.String(length=500), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=False),
        sa.Column("incident_category", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("sla_hours", sa.Integer(), nullable=False),
        sa.Column("attributes", cityops.core.db.JSONType, nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", cityops.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cityops.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
            name=op.f("fk_citizen_service_department_code_department"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_citizen_service")),
    )
    op.create_table(
        "citizen_report",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tracking_code", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("service_code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_notes", sa.String(length=2000), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("media_url", sa.String(length=1000), nullable=True),
        sa.Column("attributes", cityops.core.db.JSONType, nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("incident_code", sa.String(length=32), nullable=True),
        sa.Column("duplicate_of", sa.Integer(), nullable=True),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("moderation", sa.String(length=16), nullable=False),
        sa.Column("flag_reason", sa.String(length=200), nullable=True),
        sa.Column("requested_at", cityops.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cityops.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expected_at", cityops.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", cityops.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("satisfied", sa.Boolean(), nullable=True),
        sa.Column("rating_comment", sa.String(length=1000), nullable=True),
        sa.Column("rated_at", cityops.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "personal_data_erased_at", cityops.core.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["service_code"],
            ["citizen_service.code"],
            name=op.f("fk_citizen_report_service_code_citizen_service"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citizen_report")),
        sa.UniqueConstraint("token", name=op.f("uq_citizen_report_token")),
        sa.UniqueConstraint("tracking_code", name=op.f("uq_citizen_report_tracking_code")),
    )
    with op.batch_alter_table("citizen_report", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_citizen_report_closed_at"), ["closed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_citizen_report_duplicate_of"), ["duplicate_of"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_citizen_report_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index("ix_citizen_report_requested_at", ["requested_at"], unique=False)
        batch_op.create_index(
            "ix_citizen_report_service_requested_at", ["service_code", "requested_at"], unique=False
        )
        batch_op.create_index(
            "ix_citizen_report_service_status_lat", ["service_code", "status", "lat"], unique=False
        )
        batch_op.create_index(
            "ix_citizen_report_status_requested_at", ["status", "requested_at"], unique=False
        )
        batch_op.create_index(
            "ix_citizen_report_unit_requested_at", ["unit_code", "requested_at"], unique=False
        )

    op.create_table(
        "citizen_report_note",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("at", cityops.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["citizen_report.id"],
            name=op.f("fk_citizen_report_note_report_id_citizen_report"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citizen_report_note")),
    )
    with op.batch_alter_table("citizen_report_note", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_citizen_report_note_report_id"), ["report_id"], unique=False
        )

    op.create_table(
        "citizen_reporter",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("device_id", sa.String(length=100), nullable=True),
        sa.Column("account_id", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["citizen_report.id"],
            name=op.f("fk_citizen_reporter_report_id_citizen_report"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_citizen_reporter")),
    )


def downgrade() -> None:
    """Revert this migration."""
    op.drop_table("citizen_reporter")
    with op.batch_alter_table("citizen_report_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_citizen_report_note_report_id"))

    op.drop_table("citizen_report_note")
    with op.batch_alter_table("citizen_report", schema=None) as batch_op:
        batch_op.drop_index("ix_citizen_report_unit_requested_at")
        batch_op.drop_index("ix_citizen_report_status_requested_at")
        batch_op.drop_index("ix_citizen_report_service_status_lat")
        batch_op.drop_index("ix_citizen_report_service_requested_at")
        batch_op.drop_index("ix_citizen_report_requested_at")
        batch_op.drop_index(batch_op.f("ix_citizen_report_incident_id"))
        batch_op.drop_index(batch_op.f("ix_citizen_report_duplicate_of"))
        batch_op.drop_index(batch_op.f("ix_citizen_report_closed_at"))

    op.drop_table("citizen_report")
    op.drop_table("citizen_service")
