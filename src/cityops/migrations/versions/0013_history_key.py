"""Context hub: one history row per (entity, attribute, datasetId, observedAt).

The unique key makes history writes idempotent: a message redelivered after a crash between the
commit and the MQTT acknowledgement (or an import re-run) overwrites its own row instead of
adding a second one. It replaces the (entity, attribute, time) index, whose columns are its
prefix, so time-range reads use it unchanged. Rows already duplicated keep the newest.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this migration."""
    # Portable SQL (SQLite and PostgreSQL); the derived table lets MySQL-like engines run it too.
    op.execute(
        "DELETE FROM ngsild_history WHERE id NOT IN ("
        "SELECT keep FROM (SELECT MAX(id) AS keep FROM ngsild_history "
        "GROUP BY entity_pk, name, dataset_id, observed_ms) AS newest)"
    )
    with op.batch_alter_table("ngsild_history", schema=None) as batch_op:
        batch_op.drop_index("ix_ngsild_history_entity_name_time")
        batch_op.create_index(
            "ix_ngsild_history_key",
            ["entity_pk", "name", "observed_ms", "dataset_id"],
            unique=True,
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("ngsild_history", schema=None) as batch_op:
        batch_op.drop_index("ix_ngsild_history_key")
        batch_op.create_index(
            "ix_ngsild_history_entity_name_time",
            ["entity_pk", "name", "observed_ms"],
            unique=False,
        )
