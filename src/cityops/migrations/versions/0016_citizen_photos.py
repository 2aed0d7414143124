"""Citizen reports from the public page: photos stripped of metadata, the reporter's language.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cityops.core.db

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "citizen_report_photo",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["citizen_report.id"],
            name=op.f("fk_citizen_report_photo_report_id_citizen_report"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citizen_report_photo")),
    )
    with op.batch_alter_table("citizen_report_photo", schema=None) as batch_op:
        batch_op.create_index(
            "ix_citizen_report_photo_report_id", ["report_id", "position"], unique=False
        )
    with op.batch_alter_table("citizen_reporter", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("citizen_reporter", schema=None) as batch_op:
        batch_op.drop_column("language")
    with op.batch_alter_table("citizen_report_photo", schema=None) as batch_op:
        batch_op.drop_index("ix_citizen_report_photo_report_id")
    op.drop_table("citizen_report_photo")
