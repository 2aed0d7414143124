"""Web: the durable log of alert, incident and device events behind the live stream.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cityops.core.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = cityops.core.db.UTCDateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "stream_event",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=True),
        sa.Column("unit_code", sa.String(length=16), nullable=True),
        sa.Column("department_codes", JSON, nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_event")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("stream_event", schema=None) as batch_op:
        batch_op.create_index("ix_stream_event_at", ["at"], unique=False)


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("stream_event", schema=None) as batch_op:
        batch_op.drop_index("ix_stream_event_at")
    op.drop_table("stream_event")
