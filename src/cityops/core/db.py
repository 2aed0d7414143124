"""Database: engine, sessions, declarative base and portable column types.

The same schema runs on SQLite (embedded default) and PostgreSQL (production).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event, insert, inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every CityOps table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Audited:
    """Marker mixin: every insert, update and delete of this table is written to the audit log.

    `__audit_exclude__` names columns never copied into the log (hashes, secrets);
    `__audit_unit__` names the attribute holding the row's unit code, so the log can be scoped.
    """

    __audit_exclude__: frozenset[str] = frozenset()
    __audit_unit__: str = "unit_code"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned tz-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON everywhere, JSONB on PostgreSQL (indexable, compact).
JSONType = JSON().with_variant(JSONB(), "postgresql")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def json_dumps(value: Any) -> str:
    """Serialize a JSON column: NaN and infinities (which JSON has not) are stored as null.

    PostgreSQL refuses `NaN` in json/jsonb, and SQLite would keep a document no other JSON
    reader accepts; a non-finite float means "no value" wherever one reaches a column.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def create_db_engine(url: str, *, echo: bool = False, shared: bool = False) -> Engine:
    """Create an engine with the settings each backend needs.

    `shared`: other server processes write to the same SQLite file (`cityops serve --workers`);
    the processes then take turns through a lock file beside it (see `_gate_writers`).
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True, "json_serializer": json_dumps}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Each engine's connections share one write gate (see `_gate_writers`).
        gate: dict[str, Any] = {"gate": threading.Lock()}
        if shared and database and database != ":memory:":
            gate["shared_gate"] = FileGate(Path(f"{database}{WRITE_LOCK_SUFFIX}"))
        gated = type("GatedConnection", (_GatedConnection,), gate)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30, "factory": gated}
        # Connections kept open for the requests served at once (the default keeps 5): past
        # that, every request opened a connection and ran the PRAGMAs below, ~6 % of a read
        # under 16 clients. An open SQLite connection costs a little memory, nothing else.
        if database and database != ":memory:":
            kwargs["pool_size"], kwargs["max_overflow"] = 20, 20
        engine = create_engine(url, **kwargs)
        _gate_writers(engine)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the one writer; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
    return create_engine(url, **kwargs)


# Statements before which the SQLite driver opens a write transaction.
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")
WRITE_WAIT_SECONDS = 30.0
# The lock file beside a SQLite database that its server processes take turns on.
WRITE_LOCK_SUFFIX = ".writer.lock"
# How often a process waiting for another's write looks again: from the first to the last.
_POLL_FIRST, _POLL_LAST = 0.00005, 0.0005


class FileGate:
    """An exclusive lock on a file, shared by the server processes of one SQLite database: the
    writing connection of each process takes the one beside the database, so the processes
    write one after another (core/fanout.py holds another as the leader's lock).

    SQLite's own busy handler would do it, but it sleeps 1, 2, 5 … 100 ms between tries, so a
    process found the lock free up to tens of milliseconds late; this one looks again every
    0.05–0.5 ms. `flock` locks belong to the open file, so the kernel frees a dead process's.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._closed = weakref.finalize(self, os.close, self._fd)

    def try_acquire(self) -> bool:
        """Take the lock if it is free now."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self, timeout: float) -> bool:
        """Take the lock; False after `timeout` seconds without it."""
        deadline = time.monotonic() + timeout
        delay = _POLL_FIRST
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, _POLL_LAST)
        return True

    def release(self) -> None:
        """Let the other processes have it."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file (which frees the lock); the gate is of no use after."""
        self._closed()


class _GatedConnection(sqlite3.Connection):
    """A SQLite connection that holds its engine's write gate from its first write to the end
    of that transaction (see `_gate_writers`)."""

    gate: threading.Lock  # one per engine: set on the subclass `_gate_writers` makes
    shared_gate: FileGate | None = None  # one per engine, when other processes write too
    holds_gate = False
    holds_shared = False

    def take_gate(self, statement: str) -> None:
        """Wait for the gate before a transaction's first write."""
        if not self.holds_gate and statement.lstrip()[:6].upper() in _WRITES:
            # After the busy timeout, go ahead and let SQLite decide, as without the gate.
            started = time.monotonic()
            self.holds_gate = self.gate.acquire(timeout=WRITE_WAIT_SECONDS)
            if self.holds_gate and self.shared_gate is not None:
                left = max(0.0, WRITE_WAIT_SECONDS - (time.monotonic() - started))
                self.holds_shared = self.shared_gate.acquire(left)

    def _give_gate(self) -> None:
        if self.holds_shared:
            self.holds_shared = False
            assert self.shared_gate is not None
            self.shared_gate.release()
        if self.holds_gate:
            self.holds_gate = False
            self.gate.release()

    def commit(self) -> None:
        """Commit, then let the next writer in."""
        try:
            super().commit()
        finally:
            self._give_gate()

    def rollback(self) -> None:
        """Roll back, then let the next writer in."""
        try:
            super().rollback()
        finally:
            self._give_gate()

    def close(self) -> None:
        """Close (ending any transaction), then let the next writer in."""
        try:
            super().close()
        finally:
            self._give_gate()


def _gate_writers(engine: Engine) -> None:
    """Let one connection of this process write to SQLite at a time, the others queueing.

    SQLite has one writer; a connection that finds the write lock taken retries in its busy
    handler, sleeping 1, 2, 5 … 100 ms between tries, so under concurrent writes most of a
    request's time went to sleeping after the lock was already free (a 50 ms write took up to
    4 s at p95 with 8 writers). Threads of one process instead wait on a lock that wakes the
    next one as soon as the writer has committed or rolled back. The lock is taken just before
    a transaction's first write (the driver runs reads outside transactions until then) and
    given back by the connection when the transaction ends, whichever thread ends it. Server
    processes sharing the database (`create_db_engine(shared=True)`) also take turns through a
    `FileGate`; other processes (the command line) still meet SQLite's busy handler.
    """

    @event.listens_for(engine, "before_cursor_execute")
    def _before(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        raw = cursor.connection
        if isinstance(raw, _GatedConnection):
            raw.take_gate(statement)


def begin_writing(session: Session) -> None:
    """On SQLite, start the session's transaction as a writer now, after this process's gate.

    A transaction that reads first (or opens a SAVEPOINT) holds a read snapshot; once another
    process (a second worker) has committed, that snapshot can no longer become a write and
    SQLite answers "database is locked" at once, whatever the busy timeout. BEGIN IMMEDIATE
    waits for the write lock instead. Other databases need nothing.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if isinstance(raw, _GatedConnection):
        raw.take_gate("INSERT")
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def insert_objects(session: Session, objects: Sequence[Any]) -> None:
    """Insert new ORM objects of one class with one multi-row statement and give each its
    generated key, as a flush would, at a fraction of a flush's cost for many objects.

    The objects stay outside the session (load them with `session.get` to change them later).
    Column defaults are applied to the objects first, so they read as after a flush. No flush
    listener sees these rows: a caller writing `Audited` rows records them itself
    (`cityops.auth.flows.audit_inserted`).
    """
    if not objects:
        return
    mapper = inspect(type(objects[0]))
    table = mapper.local_table
    serial = table.autoincrement_column
    generated = serial.key if serial is not None else None
    columns = [(prop.key, prop.columns[0]) for prop in mapper.column_attrs]
    rows: list[dict[str, Any]] = []
    for obj in objects:
        row: dict[str, Any] = {}
        for key, column in columns:
            value = getattr(obj, key)
            if value is None and column.default is not None and column.key != generated:
                default: Any = column.default
                value = default.arg(None) if default.is_callable else default.arg
                setattr(obj, key, value)
            if column.key == generated and value is None:
                continue
            row[column.key] = value
        rows.append(row)
    if serial is not None and generated not in rows[0]:
        statement = _INSERTS.get(table)
        if statement is None:
            statement = _INSERTS.setdefault(
                table, insert(table).returning(serial, sort_by_parameter_order=True)
            )
        keys = session.execute(statement, rows).scalars().all()
        for obj, value in zip(objects, keys, strict=True):
            setattr(obj, mapper.get_property_by_column(serial).key, value)
    else:
        session.execute(insert(table), rows)


# The INSERT … RETURNING statement of each table `insert_objects` wrote to: built once.
_INSERTS: dict[Any, Any] = {}


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Create the session factory; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session and commit it at the end, or roll everything back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
