"""Fan-out between workers on PostgreSQL: events through LISTEN/NOTIFY, and one leader.

Several server processes (`cityops serve --workers N`) share one PostgreSQL database; the event
bus of each is in-process. This module joins them:

- **Sending.** Just before a session commits (`EventBus.before_commit`), the events it will
  deliver after the commit whose type the other workers follow (`FANNED_PREFIXES`: entity
  changes, device status, alerts, incidents, rules changed, dossier due dates) are sent with
  `pg_notify` in the same transaction: PostgreSQL delivers a notification exactly when its
  transaction commits, never when it rolls back, and in commit order. Events go as compact
  JSON records `[type, at, correlation id, data]`, many per notification, each notification
  under PostgreSQL's 8,000-byte payload limit and tagged with this process's sender id, so a
  worker skips its own. An event that alone exceeds the limit is sent without its `previous`
  value, or not at all (counted in `cityops_fanout_oversize_total`, logged).
- **Receiving.** One thread per process holds a dedicated connection (autocommit, `LISTEN`),
  decodes the other workers' notifications and hands their events to this process's
  after-commit handlers (`EventBus.deliver`) with `remote=True`: the live stream shows them (an
  alert or incident wakes its poll of `stream_event` at once), the map layer caches follow
  them, the leader's rule engine evaluates them. In-transaction handlers never see them (they
  ran in the committing worker), and they are never sent on. On a lost connection the thread
  reconnects with a growing delay (0.5 s to 30 s); what was notified meanwhile is not replayed
  (streams: durable events are read from `stream_event` anyway, entity changes missed by the
  ring are a `reset` for clients resuming there).
- **Leading.** The worker holding the session-level advisory lock `LEADER_LOCK_KEY` on that
  connection is the leader: its rule engine evaluates every worker's observations (the engine
  keeps per-entity state in memory: hysteresis, minimum duration, rate of change, location), and
  the background jobs not marked `every_worker` run there only (`JobRunner.gate`). The others
  try to take the lock every `retry_seconds`; PostgreSQL frees it when the leader's connection
  ends (shutdown, crash, network), so a dead leader is replaced within that delay and the new
  one reloads the engine's persisted state. What a failover misses: observations committed
  after the old leader stopped evaluating and before the new one holds the lock (at most
  `retry_seconds` plus the connection timeout) are not evaluated; the next observation of the
  same entity attribute is, and thresholds whose value stays put are confirmed by the leader's
  `alerts.confirm_pending` job.

Before `start()` (the command line, one-shot tools, SQLite), and when started without competing
(a server with background jobs off runs no rule engine nor jobs; tests drive them by hand), a
process leads alone; it still sends and receives events.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson
import psycopg
from prometheus_client import Counter
from sqlalchemy.orm import Session

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


class Fanout:
    """Sends this process's events to the other workers and receives theirs; holds or waits
    for the leader lock."""

    def __init__(self, runtime: Runtime, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.runtime = runtime
        # Per instance, not per process: two runtimes in one test process are two workers.
        self.sender = os.urandom(4).hex()
        self.retry_seconds = retry_seconds
        url = runtime.engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
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
        # Batches received and delivered (tests wait on it): (count, condition).
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
        """Notify the other workers of a committing transaction's events (before its commit)."""
        records: list[bytes] = []
        for event in events:
            if event.remote or not event.type.startswith(FANNED_PREFIXES):
                continue
            try:
                record = _record(event)
                if len(record) > PAYLOAD_LIMIT - 64 and "previous" in event.data:
                    data = {k: v for k, v in event.data.items() if k != "previous"}
                    record = _record(Event(event.type, data, event.at, event.correlation_id))
            except (TypeError, orjson.JSONEncodeError):
                log.exception("fan-out: event not encodable", extra={"event_type": event.type})
                continue
            if len(record) > PAYLOAD_LIMIT - 64:
                self.oversize.inc()
                log.warning("fan-out: event too large to send", extra={"event_type": event.type})
                continue
            records.append(record)
        if not records:
            return
        payloads = self._chunks(records)
        connection = session.connection()
        for start in range(0, len(payloads), 64):
            part = payloads[start : start + 64]
            connection.exec_driver_sql(_send_sql(len(part)), tuple(part))
        self.sent.inc(len(records))

    def _chunks(self, records: list[bytes]) -> list[str]:
        # {"s": sender, "n": chunk number, "e": [records]}: the number keeps two equal chunks of
        # one transaction from being folded into one by PostgreSQL.
        payloads: list[str] = []
        part: list[bytes] = []
        size = 0
        for record in records:
            if part and size + len(record) + 1 > PAYLOAD_LIMIT - 40:
                payloads.append(self._payload(len(payloads), part))
                part, size = [], 0
            part.append(record)
            size += len(record) + 1
        payloads.append(self._payload(len(payloads), part))
        return payloads

    def _payload(self, number: int, part: list[bytes]) -> str:
        body = b'{"s":' + self._prefix + b',"n":' + str(number).encode()
        return (body + b',"e":[' + b",".join(part) + b"]}").decode()

    # --- receiving (the listener thread) --------------------------------------------------

    def receive(self, payload: str) -> int:
        """Deliver the events of another worker's notification here; return how many."""
        if payload.startswith(self._own):
            return 0  # this process's own (every listener hears every notification)
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

    def wait_delivered(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until `count` notifications were handled since start (tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._delivered >= count, timeout)

    @property
    def delivered(self) -> int:
        """Notifications handled since start (own ones included)."""
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
        self._compete = True
        # Jobs and rules start right after: decide who leads before that.
        self._tried.wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and give the lead up (the connection closes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._compete:
            self._set_leading(False)
        self._compete = False

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
                try:
                    self.receive(notice.payload)
                except Exception:
                    log.exception("fan-out: notification not delivered")
                with self._cond:
                    self._delivered += 1
                    self._cond.notify_all()
                if self._stop.is_set():
                    return
            if self._compete and time.monotonic() - self._last_try >= self.retry_seconds:
                self._try_lead(conn)


def fanout_of(runtime: Runtime) -> Fanout | None:
    """The runtime's fan-out, when it has one (PostgreSQL)."""
    found = runtime.caches.get(FANOUT_KEY)
    return found if isinstance(found, Fanout) else None


def install(runtime: Runtime) -> Fanout | None:
    """On PostgreSQL, give the runtime its fan-out: send committed events to the other workers
    and let jobs run by leadership. Started by the app's lifespan (`start`)."""
    if runtime.engine.dialect.name != "postgresql":
        return None
    fanout = Fanout(runtime)
    runtime.caches[FANOUT_KEY] = fanout
    runtime.bus.before_commit(fanout.send)
    runtime.jobs.gate = fanout.gate
    return fanout
