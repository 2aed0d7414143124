"""Fan-out between workers: events through the database, and one leader.

Several server processes (`cityops serve --workers N`) share one database; the event bus of
each is in-process. This module joins them, on PostgreSQL through LISTEN/NOTIFY and an advisory
lock, on SQLite through a table and a lock file:

- **Sending.** Just before a session commits (`EventBus.before_commit`), the events it will
  deliver after the commit whose type the other workers follow (`FANNED_PREFIXES`: entity
  changes, device status, alerts, incidents, rules changed, dossier due dates) are sent in the
  same transaction, so they reach the others exactly when it commits, never when it rolls back,
  and in commit order. Events go as compact JSON records `[type, at, correlation id, data]`,
  many per message, each message tagged with this process's sender id, so a worker skips its
  own. PostgreSQL: `pg_notify`, each notification under its 8,000-byte payload limit (an event
  that alone exceeds it is sent without its `previous` value, or not at all, counted in
  `cityops_fanout_oversize_total` and logged). SQLite: rows of `fanout_message`, whose
  AUTOINCREMENT ids grow in commit order (one writer at a time), kept `KEEP_SECONDS`.
- **Receiving.** One thread per process (PostgreSQL: a dedicated `LISTEN` connection; SQLite:
  reading the rows past the last id it saw, every `POLL_SECONDS`) decodes the other workers'
  messages and hands their events to this process's after-commit handlers
  (`EventBus.deliver`) with `remote=True`: the live stream shows them (an alert or incident
  wakes its poll of `stream_event` at once), the map layer caches follow them, the leader's rule
  engine evaluates them. In-transaction handlers never see them (they ran in the committing
  worker), and they are never sent on. On a lost connection the thread reconnects with a
  growing delay (0.5 s to 30 s); on PostgreSQL what was notified meanwhile is not replayed
  (streams: durable events are read from `stream_event` anyway, entity changes missed by the
  ring are a `reset` for clients resuming there); on SQLite it is still in the table.
- **Leading.** The worker holding the leader lock (PostgreSQL: the session-level advisory lock
  `LEADER_LOCK_KEY` on that connection; SQLite: an exclusive `flock` of the file
  `<database>.leader.lock`) is the leader: its rule engine evaluates every worker's
  observations (the engine keeps per-entity state in memory: hysteresis, minimum duration, rate
  of change, location), and the background jobs not marked `every_worker` run there only
  (`JobRunner.gate`), as does the MQTT bridge (app.py). The others try to take the lock every
  `retry_seconds`; the database or the kernel frees it when the leader's connection or process
  ends (shutdown, crash, network), so a dead leader is replaced within that delay and the new
  one reloads the engine's persisted state. What a failover misses: observations committed
  after the old leader stopped evaluating and before the new one holds the lock (at most
  `retry_seconds`, plus the connection timeout on PostgreSQL) are not evaluated; the next
  observation of the same entity attribute is, and thresholds whose value stays put are
  confirmed by the leader's `alerts.confirm_pending` job.

A fan-out is installed on PostgreSQL always, and on a SQLite file when the settings say several
workers share it (`workers`, set by `cityops serve --workers`): a process alone on SQLite sends
nothing. Before `start()` (the command line, one-shot tools), and when started without competing
(a server with background jobs off runs no rule engine nor jobs; tests drive them by hand), a
process leads alone; it still sends and receives events.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import orjson
import psycopg
from prometheus_client import Counter
from sqlalchemy import BigInteger, Index, Integer, String, Text, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from cityops.core.db import Base, FileGate, UTCDateTime
from cityops.core.events import Event
from cityops.core.jobs import Job
from cityops.core.runtime import Runtime

log = logging.getLogger(__name__)

FANOUT_KEY = "core.fanout"
CHANNEL = "cityops_events"
# "CityOps" + 1: any other advisory key of the application differs (web/stream.py has its own).
LEADER_LOCK_KEY = 0x436974794F707301
# PostgreSQL refuses payloads of 8,000 bytes or more; keep room for the envelope.
PAYLOAD_LIMIT = 7_900
# Event types the other workers follow (after-commit handlers: stream, map caches, engine).
FANNED_PREFIXES = (
    "context.",
    "ingest.device_",
    "alerts.",
    "incidents.",
    "egov.dossier_",
)
RETRY_SECONDS = 2.0
LISTEN_TIMEOUT = 0.5  # seconds between two looks at the stop flag and the lock
BACKOFF_MAX = 30.0
# SQLite: how often each process reads the new messages, how long they are kept, how often
# each process deletes the older ones, and the leader's lock file beside the database.
POLL_SECONDS = 0.05
KEEP_SECONDS = 60.0
PRUNE_SECONDS = 15.0
LEADER_LOCK_SUFFIX = ".leader.lock"


@functools.lru_cache(maxsize=64)
def _send_sql(count: int) -> str:
    # One statement per transaction, one plain text parameter per notification: psycopg dumps a
    # str as is, where a text[] parameter is escaped element by element in Python.
    calls = ", ".join(f"pg_notify('{CHANNEL}', %s)" for _ in range(count))
    return f"SELECT {calls}"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _record(event: Event) -> bytes:
    return orjson.dumps(
        [event.type, event.at.isoformat(), event.correlation_id, event.data],
        default=_default,
        option=orjson.OPT_PASSTHROUGH_DATETIME,
    )


def fanned(event_type: str) -> bool:
    """Whether other workers follow events of this type."""
    return event_type.startswith(FANNED_PREFIXES)


class Fanout(ABC):
    """Sends this process's events to the other workers and receives theirs; holds or waits
    for the leader lock. The transports (`PostgresFanout`, `SqliteFanout`) say how."""

    # Largest message the transport carries (bytes of JSON).
    payload_limit = PAYLOAD_LIMIT

    def __init__(self, runtime: Runtime, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.runtime = runtime
        # Per instance, not per process: two runtimes in one test process are two workers.
        self.sender = os.urandom(4).hex()
        self.retry_seconds = retry_seconds
        self._leading = True  # alone until started
        self._compete = False
        self._stop = threading.Event()
        self._tried = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_leading: list[Callable[[bool], None]] = []
        self._prefix = orjson.dumps(self.sender)
        self._own = '{"s":' + self._prefix.decode() + ","
        self._last_try = 0.0
        registry = runtime.metrics.registry
        self.sent = Counter(
            "cityops_fanout_sent_total", "Events sent to the other workers", registry=registry
        )
        self.received = Counter(
            "cityops_fanout_received_total",
            "Events received from the other workers",
            registry=registry,
        )
        self.oversize = Counter(
            "cityops_fanout_oversize_total",
            "Events too large for one notification, not sent to the other workers",
            registry=registry,
        )
        # Messages received and delivered (tests wait on it): (count, condition).
        self._delivered = 0
        self._cond = threading.Condition()

    # --- leadership -----------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this process evaluates the rules and runs the leader's jobs."""
        return self._leading

    def on_leading(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(leading)` whenever this process gains or loses the leader lock."""
        self._on_leading.append(callback)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        log.info("fan-out: %s", "leading" if leading else "following")
        for callback in list(self._on_leading):
            try:
                callback(leading)
            except Exception:
                log.exception("fan-out: leadership handler failed")

    def gate(self, job: Job) -> bool:
        """Let a job run here: every-worker jobs always, the others on the leader only."""
        return job.every_worker or self._leading

    # --- sending (the committing thread) --------------------------------------------------

    def send(self, session: Session, events: list[Event]) -> None:
        """Send a committing transaction's events to the other workers (before its commit)."""
        limit = self.payload_limit - 64
        records: list[bytes] = []
        for event in events:
            if event.remote or not event.type.startswith(FANNED_PREFIXES):
                continue
            try:
                record = _record(event)
                if len(record) > limit and "previous" in event.data:
                    data = {k: v for k, v in event.data.items() if k != "previous"}
                    record = _record(Event(event.type, data, event.at, event.correlation_id))
            except (TypeError, orjson.JSONEncodeError):
                log.exception("fan-out: event not encodable", extra={"event_type": event.type})
                continue
            if len(record) > limit:
                self.oversize.inc()
                log.warning("fan-out: event too large to send", extra={"event_type": event.type})
                continue
            records.append(record)
        if not records:
            return
        self._send_payloads(session, self._chunks(records))
        self.sent.inc(len(records))

    @abstractmethod
    def _send_payloads(self, session: Session, payloads: list[str]) -> None:
        """Write the messages into the session's transaction (the transport's part)."""

    def _chunks(self, records: list[bytes]) -> list[str]:
        # {"s": sender, "n": chunk number, "e": [records]}: the number keeps two equal chunks of
        # one transaction from being folded into one by PostgreSQL.
        payloads: list[str] = []
        part: list[bytes] = []
        size = 0
        for record in records:
            if part and size + len(record) + 1 > self.payload_limit - 40:
                payloads.append(self._payload(len(payloads), part))
                part, size = [], 0
            part.append(record)
            size += len(record) + 1
        payloads.append(self._payload(len(payloads), part))
        return payloads

    def _payload(self, number: int, part: list[bytes]) -> str:
        body = b'{"s":' + self._prefix + b',"n":' + str(number).encode()
        return (body + b',"e":[' + b",".join(part) + b"]}").decode()

    # --- receiving (the transport's thread) -----------------------------------------------

    def receive(self, payload: str) -> int:
        """Deliver the events of another worker's message here; return how many."""
        if payload.startswith(self._own):
            return 0  # this process's own (every listener hears every message)
        message = orjson.loads(payload)
        events = [
            Event(
                type=kind,
                data=data,
                at=datetime.fromisoformat(at),
                correlation_id=correlation_id,
                remote=True,
            )
            for kind, at, correlation_id, data in message["e"]
        ]
        self.runtime.bus.deliver(events)
        self.received.inc(len(events))
        return len(events)

    def _handle(self, payload: str) -> None:
        # One message from the transport: delivered (errors logged), then counted.
        try:
            self.receive(payload)
        except Exception:
            log.exception("fan-out: message not delivered")
        with self._cond:
            self._delivered += 1
            self._cond.notify_all()

    def wait_delivered(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until `count` messages were handled since start (tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._delivered >= count, timeout)

    @property
    def delivered(self) -> int:
        """Messages handled since start (own ones included)."""
        return self._delivered

    def start(self, *, compete: bool = True, wait: float = 5.0) -> None:
        """Start listening and, if `compete`, competing for the lead (waiting for the first
        attempt). A process that does not compete keeps leading alone: it runs no rule engine
        nor jobs of its own (background jobs off), or drives them by hand (tests)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cityops-fanout", daemon=True)
        self._thread.start()
        if compete:
            self.compete(wait)

    def compete(self, wait: float = 5.0) -> None:
        """Follow, and take the lead whenever it is free; wait for the first attempt."""
        self._tried.clear()
        self._set_leading(False)
        self._last_try = 0.0
        self._compete = True
        # Jobs and rules start right after: decide who leads before that.
        self._tried.wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and give the lead up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._compete:
            self._set_leading(False)
        self._compete = False

    def _due_to_try(self) -> bool:
        return (
            self._compete
            and not self._leading
            and time.monotonic() - self._last_try >= self.retry_seconds
        )

    @abstractmethod
    def _run(self) -> None:
        """Receive until stopped, reconnecting with a growing delay (the transport's part)."""


class PostgresFanout(Fanout):
    """LISTEN/NOTIFY on a dedicated connection, which also holds the advisory leader lock."""

    def __init__(self, runtime: Runtime, *, retry_seconds: float = RETRY_SECONDS) -> None:
        super().__init__(runtime, retry_seconds=retry_seconds)
        url = runtime.engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)

    def _send_payloads(self, session: Session, payloads: list[str]) -> None:
        connection = session.connection()
        for start in range(0, len(payloads), 64):
            part = payloads[start : start + 64]
            connection.exec_driver_sql(_send_sql(len(part)), tuple(part))

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.5
                    self._try_lead(conn)
                    self._listen(conn)
            except Exception:
                log.exception("fan-out: connection lost, reconnecting in %.1f s", backoff)
            finally:
                if self._compete:
                    self._set_leading(False)  # the lock went with the connection
                self._tried.set()
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _try_lead(self, conn: psycopg.Connection[Any]) -> None:
        if not self._compete or self._leading:
            return
        self._last_try = time.monotonic()
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            self._set_leading(True)
        self._tried.set()

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            for notice in conn.notifies(timeout=LISTEN_TIMEOUT):
                self._handle(notice.payload)
                if self._stop.is_set():
                    return
            if self._due_to_try():
                self._try_lead(conn)


# A 64-bit key, INTEGER on SQLite (where only INTEGER PRIMARY KEY is the row id).
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class FanoutMessage(Base):
    """Events one server process sent to the others sharing a SQLite database (`SqliteFanout`).

    AUTOINCREMENT: an id is never handed out again after the newest rows are pruned, so a
    reader that has seen id N has seen every committed row below N.
    """

    __tablename__ = "fanout_message"
    __table_args__ = (
        Index("ix_fanout_message_sent_at", "sent_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    sender: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(Text)


_INSERT_MESSAGE = "INSERT INTO fanout_message (sender, sent_at, payload) VALUES (?, ?, ?)"
_READ_MESSAGES = "SELECT id, payload FROM fanout_message WHERE id > ? ORDER BY id LIMIT 500"


class SqliteFanout(Fanout):
    """Messages as rows of `fanout_message`, read by each process's thread every
    `POLL_SECONDS`; the leader holds an exclusive `flock` of `<database>.leader.lock`."""

    # No payload limit of the database: one message per transaction in practice.
    payload_limit = 16 * 1024 * 1024

    def __init__(self, runtime: Runtime, *, retry_seconds: float = RETRY_SECONDS) -> None:
        super().__init__(runtime, retry_seconds=retry_seconds)
        database = runtime.engine.url.database
        assert database, "a SQLite fan-out needs a database file"
        self._path = database
        self._lock_path = Path(f"{database}{LEADER_LOCK_SUFFIX}")
        self._lock: FileGate | None = None
        self._last_id = 0
        self._last_prune = 0.0

    def _send_payloads(self, session: Session, payloads: list[str]) -> None:
        # Naive UTC text, as `UTCDateTime` stores a time on SQLite.
        at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        session.connection().exec_driver_sql(
            _INSERT_MESSAGE, [(self.sender, at, payload) for payload in payloads]
        )

    def _connect(self) -> sqlite3.Connection:
        # Reads only, outside transactions: WAL readers never wait for the writer.
        return sqlite3.connect(self._path, timeout=30, isolation_level=None)

    def start(self, *, compete: bool = True, wait: float = 5.0) -> None:
        if self._thread is None:
            # What was committed before the start is not this process's to receive.
            conn = self._connect()
            try:
                row = conn.execute("SELECT MAX(id) FROM fanout_message").fetchone()
            finally:
                conn.close()
            self._last_id = int(row[0] or 0)
        super().start(compete=compete, wait=wait)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        # Closing the file frees the lock for the next leader (as a dead process's is freed).
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                conn = self._connect()
                try:
                    backoff = 0.5
                    self._poll(conn)
                finally:
                    conn.close()
            except Exception:
                log.exception("fan-out: database unreadable, again in %.1f s", backoff)
            finally:
                self._tried.set()
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _poll(self, conn: sqlite3.Connection) -> None:
        while not self._stop.is_set():
            if self._due_to_try():
                self._try_lead()
            rows = conn.execute(_READ_MESSAGES, (self._last_id,)).fetchall()
            for message_id, payload in rows:
                self._last_id = message_id
                self._handle(payload)
            if time.monotonic() - self._last_prune >= PRUNE_SECONDS:
                self._prune()
            if len(rows) < 500:
                self._stop.wait(POLL_SECONDS)

    def _prune(self) -> None:
        # Every process prunes (cheap, rare): no process need be the leader for it.
        self._last_prune = time.monotonic()
        cutoff = datetime.now(UTC) - timedelta(seconds=KEEP_SECONDS)
        with self.runtime.engine.begin() as conn:
            conn.execute(delete(FanoutMessage).where(FanoutMessage.sent_at < cutoff))

    def _try_lead(self) -> None:
        self._last_try = time.monotonic()
        if self._lock is None:
            self._lock = FileGate(self._lock_path)
        if self._lock.try_acquire():
            self._set_leading(True)
        self._tried.set()


def fanout_of(runtime: Runtime) -> Fanout | None:
    """The runtime's fan-out, when it has one."""
    found = runtime.caches.get(FANOUT_KEY)
    return found if isinstance(found, Fanout) else None


def install(runtime: Runtime) -> Fanout | None:
    """Give the runtime its fan-out (PostgreSQL; SQLite shared by several workers): send
    committed events to the other workers and let jobs run by leadership. Started by the
    app's lifespan (`start`)."""
    dialect = runtime.engine.dialect.name
    fanout: Fanout
    if dialect == "postgresql":
        fanout = PostgresFanout(runtime)
    elif dialect == "sqlite" and runtime.settings.workers > 1 and _on_disk(runtime):
        fanout = SqliteFanout(runtime)
    else:
        return None
    runtime.caches[FANOUT_KEY] = fanout
    runtime.bus.before_commit(fanout.send)
    runtime.jobs.gate = fanout.gate
    return fanout


def _on_disk(runtime: Runtime) -> bool:
    database = runtime.engine.url.database
    return bool(database) and database != ":memory:"
