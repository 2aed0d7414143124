"""Incidents: a word index for free-text search (SQLite FTS5, PostgreSQL GIN over a tsvector).

`incident.title_folded` now holds the title's folded words one space apart (no punctuation), so
both backends split it the same way; existing rows are rewritten. The B-tree index on it, which
only served LIKE scans, is dropped.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from cityops.core.text import fold, words

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BATCH = 2_000

# On SQLite the index is maintained by triggers, not by the service: every writer (the ORM,
# bulk inserts of imports and benchmarks, plain SQL) then keeps it in step inside its own
# transaction, as PostgreSQL does for its GIN index. External content: the FTS table stores
# only the index and reads titles from `incident`. A batch migration that rebuilds `incident`
# drops these triggers: recreate them after one (tests/incidents/test_search.py checks them).
SQLITE_UP = (
    "CREATE VIRTUAL TABLE incident_fts USING fts5("
    "title_folded, content='incident', content_rowid='id', tokenize='unicode61')",
    "CREATE TRIGGER incident_fts_insert AFTER INSERT ON incident BEGIN "
    "INSERT INTO incident_fts (rowid, title_folded) VALUES (new.id, new.title_folded); END",
    "CREATE TRIGGER incident_fts_delete AFTER DELETE ON incident BEGIN "
    "INSERT INTO incident_fts (incident_fts, rowid, title_folded) "
    "VALUES ('delete', old.id, old.title_folded); END",
    "CREATE TRIGGER incident_fts_update AFTER UPDATE OF title_folded ON incident BEGIN "
    "INSERT INTO incident_fts (incident_fts, rowid, title_folded) "
    "VALUES ('delete', old.id, old.title_folded); "
    "INSERT INTO incident_fts (rowid, title_folded) VALUES (new.id, new.title_folded); END",
    # Index the rows already there.
    "INSERT INTO incident_fts (incident_fts) VALUES ('rebuild')",
)
SQLITE_DOWN = (
    "DROP TRIGGER incident_fts_update",
    "DROP TRIGGER incident_fts_delete",
    "DROP TRIGGER incident_fts_insert",
    "DROP TABLE incident_fts",
)
# No extension needed (pg_trgm wants a superuser): the words, split on their single spaces, are
# the lexemes as they are, with no parser or dictionary in between. A PL/pgSQL function, never
# inlined, so that the planner knows its real cost (about 6 µs a row): priced as the built-ins
# it calls (almost nothing), it read the whole table rather than the index for frequent or
# absent words (0.6 s with 100,000 incidents). No fast update: a search never scans a long
# pending list after a bulk load.
POSTGRES_UP = (
    "CREATE FUNCTION incident_words(title_folded text) RETURNS tsvector "
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 1000 AS $$ BEGIN "
    "RETURN array_to_tsvector(string_to_array(title_folded, ' ')); END $$",
    "CREATE INDEX ix_incident_title_words ON incident "
    "USING gin (incident_words(title_folded)) WITH (fastupdate = off)",
)
POSTGRES_DOWN = ("DROP INDEX ix_incident_title_words", "DROP FUNCTION incident_words(text)")


def _search_form(title: str) -> str:
    """The title's folded words one space apart, cut at a word within 300 characters."""
    form = " ".join(words(title))
    return form if len(form) <= 300 else form[:301].rsplit(" ", 1)[0]


def _refold(form: Callable[[str], str]) -> None:
    """Rewrite every incident's `title_folded` from its title."""
    connection = op.get_bind()
    incident = sa.table(
        "incident",
        sa.column("id", sa.Integer()),
        sa.column("title", sa.String()),
        sa.column("title_folded", sa.String()),
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(incident.c.id, incident.c.title)
            .where(incident.c.id > last)
            .order_by(incident.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        connection.execute(
            incident.update()
            .where(incident.c.id == sa.bindparam("row_id"))
            .values(title_folded=sa.bindparam("folded")),
            [{"row_id": row.id, "folded": form(row.title)} for row in rows],
        )
        last = rows[-1].id


def upgrade() -> None:
    """Apply this migration."""
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_title_folded")
    _refold(_search_form)
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UP if dialect == "sqlite" else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    """Revert this migration."""
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_DOWN if dialect == "sqlite" else POSTGRES_DOWN:
        op.execute(statement)
    _refold(lambda title: fold(title)[:300])
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index("ix_incident_title_folded", ["title_folded"], unique=False)
