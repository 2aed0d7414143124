"""Several server processes on one SQLite database: the table their events go through.

`fanout_message` holds the events one process sends the others (core/fanout.py,
`SqliteFanout`), a minute at most. PostgreSQL gets the table too (one schema for both), but
its workers use LISTEN/NOTIFY.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cityops.core.db

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UTC = cityops.core.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Apply this migration."""
    op.create_table(
        "fanout_message",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sender", sa.String(length=16), nullable=False),
        sa.Column("sent_at", UTC, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fanout_message")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("fanout_message", schema=None) as batch_op:
        batch_op.create_index("ix_fanout_message_sent_at", ["sent_at"], unique=False)


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("fanout_message", schema=None) as batch_op:
        batch_op.drop_index("ix_fanout_message_sent_at")
    op.drop_table("fanout_message")
