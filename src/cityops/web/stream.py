"""The live stream: `GET /api/v1/stream`, Server-Sent Events of alerts, incidents, device status
and entity changes, filtered by what the caller may see, resumable with `Last-Event-ID`.

Two kinds of events, kept two ways:

- **Durable** events (`alerts.*`, `incidents.*`, `ingest.device_*`) are rows of `stream_event`,
  written inside the transaction that publishes them (a transactional bus handler queues them;
  they are inserted just before the commit). On PostgreSQL the insert takes a transaction-level
  advisory lock, so stream-writing transactions commit one after another and ids become visible
  in id order (SQLite has a single writer anyway): a reader that has seen id N will never later
  find a new row below N. So a client resuming after N misses nothing, across reconnects, server
  restarts and workers. Rows are purged after `stream_retention_days`.
- **Entity changes** (`context.attribute_changed`, `context.entity_created`,
  `context.entity_deleted`) come by thousands per second and are not written anywhere: each
  process keeps the latest ones in a bounded ring (`stream_ring_size` entries, at most
  `stream_ring_seconds` old). A client that resumes from a position the ring no longer holds
  (it is too old, or the server restarted, or the client comes from another worker) is sent
  `event: reset` with `{"kinds": ["entities"]}`: reload the current state, then follow the
  stream (as Kubernetes watches answer "410 Gone").

**Positions.** Every event's `id:` is `<durable>-<epoch>-<seq>`: the id of the last durable row
the client was given (or skipped), the ring's epoch (8 hex digits, new for every process start),
and the last ring sequence number. One value thus places the client in both sequences. A bare
integer `<durable>` is accepted too (entity position unknown). The `Last-Event-ID` header (or the
`last_event_id` query parameter, for clients that cannot set headers) resumes after it.

**Who sees what.** Each kind needs its permission: `alert:read` for alerts, `incident:read` for
incidents, `context:read` for entities and devices. An event's `unit_code` must be one of the
caller's units (an event without a unit reaches callers without a unit scope only). A caller
scoped to a department receives the incidents dispatched to it (`department_codes`), the alerts of
the sectors it owns or that its rules' policy would dispatch to it, and its own devices; entity
changes are scoped by unit only, as on the NGSI-LD API. A key bound to a tenant receives that
tenant's events only. `unit_code`, `area_code`, `entity_type` and `tenant` narrow further.

**Fan-out.** One `StreamHub` per process. Durable events go first: it polls `stream_event` for
`id > last` (an index range scan of the primary key) about once a second while any client is
connected, and at once when a durable event was committed in this process or (on PostgreSQL)
by another worker, in worker threads
under a capacity limiter of its own (never queued behind the requests' threads). A client is
sent the durable events waiting for it before any entity change, and again between two chunks of
entity changes: under a flood of changes, an alert waits for at most one socket write
(`CHUNK_BYTES`).

**Entity changes are coalesced.** The after-commit bus handler, in whichever thread committed,
only stores the change in the hub's dict of the current window, keyed by (tenant, entity,
attribute, dataset): the latest value wins, constant work whatever the number of clients (a
creation or deletion keeps its place between the changes of its entity). The event loop moves
the window's changes into the ring once per `stream_entity_coalesce_ms` (default 1 s; the first
change after a quiet window goes out at once), formatting each once for every client, and wakes
the streams. Clients pull from the hub's recent rows and the ring with their own cursors, so a
slow client costs no memory. One connection is sent at most `stream_entity_window_max` entity
changes per window, the latest of each attribute over everything it has not been sent yet; the
rest wait for the next window (superseded by then, or sent), and a client more than `MAX_LAG`
changes behind gets a `reset` and continues from the current position. Durable events are never
dropped nor coalesced for a slow client: it reads them from the database at its own pace. No
database session is held while streaming; replay and polls open short ones.

**Resuming** with `Last-Event-ID` replays every missed durable event (alerts, incidents,
devices). Missed entity changes still in the ring are replayed coalesced: the latest value of
each attribute, not every intermediate one (the map shows the latest value only).

**Several workers.** On PostgreSQL every worker's committed events reach the other workers'
hubs through LISTEN/NOTIFY (core/fanout.py, sent inside the committing transaction, so never
for a rolled-back one): a dashboard on any worker follows every worker's entity changes, in
commit order, and an alert, incident or device event committed elsewhere wakes this worker's
poll of `stream_event` at once instead of at the next `stream_poll_seconds`. The poll stays the
durable path: a notification lost while a worker reconnects delays a durable event by one poll
at most, and an entity change it carried is simply not streamed by that worker. Each worker
keeps its own ring (its own epoch): a client moving to another worker gets `reset` for
entities and resumes its durable events.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import secrets
import threading
import time
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from prometheus_client import Counter, Gauge
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from cityops.context.flows import (
    EVENT_ATTRIBUTE_CHANGED,
    EVENT_ENTITY_CREATED,
    EVENT_ENTITY_DELETED,
)
from cityops.context.normalize import iso
from cityops.core.db import unit_of_work
from cityops.core.deps import RuntimeDep, SessionDep
from cityops.core.errors import BadRequest, Forbidden
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import CurrentPrincipal, Permission, Principal
from cityops.units import service as unit_service
from cityops.web.models import StreamEvent

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# What a client may ask for (`types`), and the permission each kind needs.
KIND_PERMISSIONS: dict[str, Permission] = {
    "alerts": Permission.ALERT_READ,
    "incidents": Permission.INCIDENT_READ,
    "entities": Permission.CONTEXT_READ,
    "devices": Permission.CONTEXT_READ,
}
# Only what happens to alerts and incidents; internal signals (alerts.rules_changed) stay off.
DURABLE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("alerts.alert_", "alerts"),
    ("incidents.incident_", "incidents"),
    ("incidents.comment_", "incidents"),
    ("incidents.sla_", "incidents"),
    ("ingest.device_", "devices"),
)
_DURABLE_STARTS = tuple(prefix for prefix, _ in DURABLE_PREFIXES)
ENTITY_EVENTS = frozenset({EVENT_ATTRIBUTE_CHANGED, EVENT_ENTITY_CREATED, EVENT_ENTITY_DELETED})
ENTITIES = "entities"
# Kinds whose events name an entity type, so `entity_type=` narrows them (incidents do not).
TYPED_KINDS = frozenset({"alerts", "entities", "devices"})

HUB_KEY = "web.stream_hub"
RETRY_MS = 2000  # the reconnection delay suggested to EventSource clients
PAGE = 500  # durable rows per database read
RECENT_ROWS = 4096  # durable rows the hub keeps in memory for its clients
MAX_LAG = 10_000  # waiting entity changes past which a client is reset to the present
# Bytes of events written to the socket at once: between two chunks of entity changes, durable
# events committed meanwhile go first.
CHUNK_BYTES = 16 * 1024
# Any fixed 64-bit number: the PostgreSQL advisory lock serialising stream-log writers.
ADVISORY_LOCK_KEY = 7_261_114_802_015_021
POSITION = re.compile(r"(\d{1,18})(?:-([0-9a-f]{8})-(\d{1,18}))?")
_PENDING = "stream.pending"
_HOOKED = "stream.hooked"


def durable_kind(event_type: str) -> str | None:
    """The stream kind of an event kept in the durable log, or None."""
    if not event_type.startswith(_DURABLE_STARTS):
        return None
    return next(kind for prefix, kind in DURABLE_PREFIXES if event_type.startswith(prefix))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> str:
    """JSON on one line (an SSE `data:` line), whatever plain Python values the payload holds."""
    try:
        # orjson writes the same compact UTF-8 JSON several times faster; datetimes and
        # dataclasses still go through `_json_default`, as with json.dumps.
        return orjson.dumps(value, default=_json_default, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:  # integers beyond 64 bits, non-string keys
        return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def _text(value: Any, length: int) -> str | None:
    # A malformed payload must never fail the publishing transaction: keep what fits.
    return value[:length] if isinstance(value, str) and value else None


# --- the durable log ------------------------------------------------------------------------


def queue_durable(session: Session, event: Event) -> None:
    """Queue an alert, incident or device event for the stream log of this transaction."""
    if durable_kind(event.type) is None:
        return
    session.info.setdefault(_PENDING, []).append(event)
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        sa_event.listen(session, "before_commit", _write_pending)
        sa_event.listen(session, "after_rollback", _drop_pending)


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _write_pending(session: Session) -> None:
    # Written last, just before the commit: the advisory lock is then held only for the insert
    # and the commit (no deadlock with the transaction's other locks), and the writers it
    # serialises commit in id order.
    events: list[Event] = session.info.pop(_PENDING, [])
    if not events:
        return
    owners: dict[str, str | None] = {}
    rows = [_log_row(session, item, owners) for item in events]
    # Everything else this transaction writes goes first: under the lock it only inserts, so it
    # never waits there for a row lock held by a transaction waiting for this lock.
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    session.execute(insert(StreamEvent), rows)


def _log_row(session: Session, event: Event, owners: dict[str, str | None]) -> dict[str, Any]:
    data = event.data
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
    return {
        "type": event.type[:64],
        "tenant": _text(data.get("tenant"), 128),
        "unit_code": _text(data.get("unit_code"), 16),
        "department_codes": _departments(session, event, owners),
        "sector": _text(data.get("sector"), 32),
        "data": json.loads(dumps(data)),
        "correlation_id": event.correlation_id[:64],
        "at": at,
    }


def _departments(session: Session, event: Event, owners: dict[str, str | None]) -> list[str]:
    """The departments that see an event: an incident's departments; for an alert, the
    department its rule's policy would dispatch to and the department owning its sector."""
    data = event.data
    found: list[str] = []

    def add(code: Any) -> None:
        if isinstance(code, str) and code and code not in found:
            found.append(code[:32])

    add(data.get("department_code"))
    codes = data.get("department_codes")
    if isinstance(codes, list | tuple):
        for code in codes:
            add(code)
    if event.type.startswith("alerts.alert_"):
        policy = data.get("policy")
        incident = policy.get("incident") if isinstance(policy, dict) else None
        if isinstance(incident, dict):
            add(incident.get("department_code"))
        sector = data.get("sector")
        if isinstance(sector, str) and sector:
            if sector not in owners:
                owner = unit_service.get_department_by_sector(session=session, sector=sector[:32])
                owners[sector] = owner.code if owner is not None else None
            add(owners[sector])
    return found


def purge(runtime: Runtime) -> int:
    """Delete stream log rows older than the retention period; return how many."""
    cutoff = runtime.clock.now() - timedelta(days=runtime.settings.stream_retention_days)
    with unit_of_work(runtime.session_factory) as session:
        result = session.execute(delete(StreamEvent).where(StreamEvent.at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


# --- what is sent ---------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """One event ready to send: what filtering needs, and its `event:` and `data:` lines."""

    kind: str
    tenant: str | None
    unit_code: str | None
    departments: frozenset[str]
    entity_type: str | None
    body: str
    # Entity attribute changes coalesce per (tenant, entity, attribute, dataset): the hash of
    # that tuple, which takes less memory in the ring than the tuple itself.
    key: int | None = None


def _body(event_type: str, data: dict[str, Any], at: str, correlation_id: str) -> str:
    payload = {**data, "at": at, "correlation_id": correlation_id}
    return f"event: {event_type}\ndata: {dumps(payload)}\n"


# The changes of one write share their time: format it once.
_iso = functools.lru_cache(maxsize=16)(iso)


def _entity_item(event: Event) -> Item:
    data = event.data
    key = None
    if event.type == EVENT_ATTRIBUTE_CHANGED:
        key = hash(
            (
                data.get("tenant"),
                data.get("entity_id"),
                data.get("attribute"),
                data.get("dataset_id"),
            )
        )
    return Item(
        kind=ENTITIES,
        tenant=data.get("tenant"),
        unit_code=data.get("unit_code"),
        departments=frozenset(),
        entity_type=data.get("entity_type"),
        body=_body(event.type, data, _iso(event.at), event.correlation_id),
        key=key,
    )


def _durable_item(row: Any) -> Item:
    data = row.data if isinstance(row.data, dict) else {}
    entity_type = data.get("entity_type")
    return Item(
        kind=durable_kind(row.type) or "",
        tenant=row.tenant,
        unit_code=row.unit_code,
        departments=frozenset(row.department_codes or ()),
        entity_type=entity_type if isinstance(entity_type, str) else None,
        body=_body(row.type, data, iso(row.at), row.correlation_id),
    )


@dataclass(frozen=True, slots=True)
class Subscription:
    """What one client receives: kinds, and the units, department, tenant and type it sees."""

    kinds: frozenset[str]
    unit_codes: frozenset[str] | None = None
    department_code: str | None = None
    tenant: str | None = None
    entity_type: str | None = None

    @property
    def durable_kinds(self) -> frozenset[str]:
        """The kinds kept in the durable log."""
        return self.kinds - {ENTITIES}

    @property
    def wants_entities(self) -> bool:
        """Whether entity changes are asked for."""
        return ENTITIES in self.kinds

    def accepts(self, item: Item) -> bool:
        """Whether this client may and wants to see an event."""
        if item.kind not in self.kinds:
            return False
        if self.tenant is not None and item.tenant is not None and item.tenant != self.tenant:
            return False
        if self.unit_codes is not None and item.unit_code not in self.unit_codes:
            return False
        # Entities are scoped by unit only, as on the NGSI-LD API; a department sees the
        # incidents dispatched to it, the alerts of its sectors and its own devices.
        if (
            self.department_code is not None
            and item.kind != ENTITIES
            and self.department_code not in item.departments
        ):
            return False
        return not (
            self.entity_type is not None
            and item.kind in TYPED_KINDS
            and item.entity_type != self.entity_type
        )


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the stream: the last durable id, and the ring epoch and sequence number."""

    durable: int
    epoch: str | None = None
    seq: int = 0

    @classmethod
    def parse(cls, value: str) -> Position | None:
        """Read a position from an event id; None if it is not one."""
        match = POSITION.fullmatch(value.strip())
        if match is None:
            return None
        durable, epoch, seq = match.groups()
        return cls(durable=int(durable), epoch=epoch, seq=int(seq or 0))


# --- entity changes: the per-process ring ---------------------------------------------------


class EntityRing:
    """The latest entity changes of this process, numbered 1, 2, 3, ... (thread-safe)."""

    def __init__(self, size: int) -> None:
        self.epoch = secrets.token_hex(4)
        self._size = size
        self._slots: list[tuple[float, Item] | None] = [None] * size
        self._head = 0  # the newest sequence number (0: none yet)
        self._tail = 1  # the oldest sequence number still held
        self._lock = threading.Lock()

    @property
    def head(self) -> int:
        """The sequence number of the newest change."""
        return self._head

    def append(self, item: Item) -> int:
        """Add a change; return its sequence number."""
        return self.extend([item])

    def extend(self, items: list[Item]) -> int:
        """Add changes in order; return the sequence number of the last."""
        now = time.monotonic()
        with self._lock:
            for item in items:
                self._head += 1
                self._slots[self._head % self._size] = (now, item)
            if self._head - self._tail >= self._size:
                self._tail = self._head - self._size + 1
            return self._head

    def holds(self, seq: int) -> bool:
        """Whether every change after `seq` is still here."""
        return self._tail - 1 <= seq <= self._head

    def read_after(self, seq: int, limit: int) -> list[tuple[int, Item]] | None:
        """The changes after `seq` (at most `limit`); None if some of them are gone."""
        with self._lock:
            if not self._tail - 1 <= seq <= self._head:
                return None
            end = min(self._head, seq + limit)
            out = []
            for number in range(seq + 1, end + 1):
                slot = self._slots[number % self._size]
                assert slot is not None
                out.append((number, slot[1]))
            return out

    def expire(self, max_age: float) -> None:
        """Forget changes older than `max_age` seconds."""
        oldest = time.monotonic() - max_age
        with self._lock:
            while self._tail <= self._head:
                index = self._tail % self._size
                slot = self._slots[index]
                if slot is None or slot[0] >= oldest:
                    break
                self._slots[index] = None
                self._tail += 1


def _change_key(event: Event) -> tuple[Any, ...]:
    """What an entity change supersedes: the same attribute of the same entity; creations and
    deletions supersede nothing (the caller makes their keys unique)."""
    data = event.data
    if event.type == EVENT_ATTRIBUTE_CHANGED:
        return (
            data.get("tenant"),
            data.get("entity_id"),
            data.get("attribute"),
            data.get("dataset_id"),
        )
    return ()


@dataclass(slots=True)
class _Cursor:
    """Where one client is: the last durable id and ring number it was given (or skipped)."""

    durable: int
    epoch: str
    seq: int

    def id(self) -> str:
        """The event id placing the client in both sequences."""
        return f"{self.durable}-{self.epoch}-{self.seq}"


# --- the hub: one per process ---------------------------------------------------------------


class StreamHub:
    """Feeds every stream of this process: coalesced entity changes in the ring, recent durable
    rows, and wake-ups."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.ring = EntityRing(settings.stream_ring_size)
        self.window = settings.stream_entity_coalesce_ms / 1000
        self.window_max = settings.stream_entity_window_max
        # Entity changes are recorded once a client has connected (nobody can resume before).
        self.active = False
        self.floor = 0  # the recent rows hold every durable id in (floor, last]
        self.last = 0
        self._recent: list[Item] = []
        self._recent_ids: list[int] = []
        # Entity changes of the current window, the latest per entity attribute, in the order
        # the client should apply them: key -> (arrival number, event). Written by committing
        # threads, swapped out by the loop once per window.
        self._lock = threading.Lock()
        self._pending: dict[tuple[Any, ...], tuple[int, Event]] = {}
        # (tenant, entity id) -> arrival number of its latest creation or deletion this window.
        self._lifecycle: dict[tuple[Any, Any], int] = {}
        self._arrivals = 0
        self._arrivals_flushed = 0
        self._flush_scheduled = False
        self._flushed_at = -1e9
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._tick = asyncio.Event()
        self._db_wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._db_scheduled = False
        self._clients = 0
        self._poller: asyncio.Task[None] | None = None
        registry = runtime.metrics.registry
        self.clients_gauge = Gauge(
            "cityops_stream_clients", "Clients connected to the live stream", registry=registry
        )
        self.resets = Counter(
            "cityops_stream_resets_total",
            "Resets sent to stream clients",
            ["reason"],
            registry=registry,
        )
        self.coalesced = Counter(
            "cityops_stream_entity_changes_coalesced_total",
            "Entity changes superseded by a later value before any stream was sent them",
            registry=registry,
        )

    # Called by the bus, in whichever thread committed: constant work, whatever the clients.

    def on_event(self, event: Event) -> None:
        """Keep an entity change for the next window, or note a durable event; wake the loop."""
        if event.type in ENTITY_EVENTS:
            if self.active:
                self._keep(event)
        elif self._loop is not None and durable_kind(event.type) is not None:
            self._signal_database()

    def _keep(self, event: Event) -> None:
        key = _change_key(event)
        with self._lock:
            self._arrivals += 1
            number = self._arrivals
            pending = self._pending
            first = not pending
            if key:
                prior = pending.get(key)
                if prior is not None:
                    entity = (key[0], key[1])
                    # After a creation or deletion of its entity, a change goes after it.
                    if self._lifecycle.get(entity, 0) > prior[0]:
                        del pending[key]
            else:
                data = event.data
                self._lifecycle[(data.get("tenant"), data.get("entity_id"))] = number
                key = ("", number)
            pending[key] = (number, event)
            if not first or self._flush_scheduled:
                return
            self._flush_scheduled = True
            loop = self._loop
            try:
                if loop is None:
                    raise RuntimeError("no loop")
                loop.call_soon_threadsafe(self._schedule_flush)
            except RuntimeError:  # the loop has closed: the server is gone, keep nothing
                self._pending, self._lifecycle = {}, {}
                self._flush_scheduled = False

    def _signal_database(self) -> None:
        loop = self._loop
        # One scheduled callback at a time: a burst of commits costs one wake-up.
        if loop is None or self._db_scheduled:
            return
        self._db_scheduled = True
        try:
            loop.call_soon_threadsafe(self._on_db_signal)
        except RuntimeError:  # the loop has closed: the server is gone
            self._db_scheduled = False

    def _on_db_signal(self) -> None:
        self._db_scheduled = False
        self._db_wake.set()

    def _schedule_flush(self) -> None:
        # The first change after a quiet window goes out at once; under a flood, changes gather
        # for one window and go out together, the latest value of each attribute only.
        assert self._loop is not None
        wait = self._flushed_at + self.window - self._loop.time()
        if wait <= 0:
            self.flush()
        else:
            self._loop.call_later(wait, self.flush)

    def flush(self) -> int:
        """Move the window's entity changes into the ring and wake the streams; return how many."""
        with self._lock:
            batch, self._pending, self._lifecycle = self._pending, {}, {}
            self._flush_scheduled = False
            arrived = self._arrivals - self._arrivals_flushed
            self._arrivals_flushed = self._arrivals
        if arrived > len(batch):
            self.coalesced.inc(arrived - len(batch))
        if self._loop is not None:
            self._flushed_at = self._loop.time()
        if batch:
            # Formatted once for every client, and only the values that were not superseded.
            self.ring.extend([_entity_item(event) for _, event in batch.values()])
            self._notify()
        return len(batch)

    def _notify(self) -> None:
        woken, self._tick = self._tick, asyncio.Event()
        woken.set()

    # On the event loop.

    def attach(self) -> asyncio.Event:
        """Count a new client in, starting the poller for the first one; return its readiness."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First client, or the app is now served by another loop: fresh loop-bound state.
            self._loop = loop
            self._tick, self._db_wake = asyncio.Event(), asyncio.Event()
            # The stream's database reads never queue behind the requests' worker threads.
            self._limiter = anyio.CapacityLimiter(4)
            self._db_scheduled = False
            with self._lock:
                self._pending, self._lifecycle = {}, {}
                self._flush_scheduled = False
                self._arrivals_flushed = self._arrivals
            self._flushed_at = -1e9
            self._poller = None
            self._clients = 0
            self.clients_gauge.set(0)
        self._clients += 1
        self.clients_gauge.inc()
        self.active = True
        self.ring.expire(self.runtime.settings.stream_ring_seconds)
        if self._poller is None:
            self._ready = asyncio.Event()
            self._poller = loop.create_task(self._poll(), name="cityops-stream-poll")
        return self._ready

    def detach(self) -> None:
        """Count a client out, stopping the poller after the last one."""
        self._clients -= 1
        self.clients_gauge.dec()
        if self._clients <= 0 and self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _poll(self) -> None:
        settings = self.runtime.settings
        while True:
            try:
                _, newest = await self._in_thread(self.bounds)
                break
            except Exception:
                log.exception("stream: cannot read the stream log")
                await asyncio.sleep(settings.stream_poll_seconds)
        self.floor = self.last = newest
        self._recent, self._recent_ids = [], []
        self._ready.set()
        while True:
            self._db_wake.clear()
            try:
                rows = await self._in_thread(self.fetch, self.last, PAGE)
            except Exception:
                log.exception("stream: cannot read the stream log")
                rows = []
            if rows:
                self._remember(rows)
                self._notify()
            if len(rows) == PAGE:
                continue
            self.ring.expire(settings.stream_ring_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._db_wake.wait(), settings.stream_poll_seconds)

    def _remember(self, rows: list[tuple[int, Item]]) -> None:
        for row_id, item in rows:
            self._recent_ids.append(row_id)
            self._recent.append(item)
        self.last = rows[-1][0]
        excess = len(self._recent) - RECENT_ROWS
        if excess > RECENT_ROWS:  # trim in halves, not one row at a time
            self.floor = self._recent_ids[excess - 1]
            del self._recent[:excess], self._recent_ids[:excess]

    def recent_after(self, durable: int, limit: int) -> list[tuple[int, Item]]:
        """Recent durable rows after an id (the caller checked `durable >= floor`)."""
        start = bisect_right(self._recent_ids, durable)
        end = start + limit
        return list(zip(self._recent_ids[start:end], self._recent[start:end], strict=True))

    # In worker threads, each with a short session of its own.

    def bounds(self) -> tuple[int, int]:
        """The smallest and largest ids of the stream log (0, 0 when empty)."""
        with self.runtime.session_factory() as session:
            low, high = session.execute(
                select(func.min(StreamEvent.id), func.max(StreamEvent.id))
            ).one()
        return int(low or 0), int(high or 0)

    def fetch(self, after: int, limit: int) -> list[tuple[int, Item]]:
        """Durable rows after an id, oldest first."""
        columns = (
            StreamEvent.id,
            StreamEvent.type,
            StreamEvent.tenant,
            StreamEvent.unit_code,
            StreamEvent.department_codes,
            StreamEvent.data,
            StreamEvent.correlation_id,
            StreamEvent.at,
        )
        with self.runtime.session_factory() as session:
            rows = session.execute(
                select(*columns).where(StreamEvent.id > after).order_by(StreamEvent.id).limit(limit)
            ).all()
        return [(int(row.id), _durable_item(row)) for row in rows]

    # One client.

    async def serve(self, subscription: Subscription, start: Position | None) -> AsyncIterator[str]:
        """Stream events to one client, from a position or from now, until it goes away."""
        ready = self.attach()
        try:
            await ready.wait()
            async for chunk in self._serve(subscription, start):
                yield chunk
        finally:
            self.detach()

    async def _durable(self, sub: Subscription, cursor: _Cursor) -> AsyncIterator[str]:
        """The durable events after the cursor that the client may see, in chunks."""
        out: list[str] = []
        size = 0
        while True:
            if cursor.durable < self.floor:
                rows = await self._in_thread(self.fetch, cursor.durable, PAGE)
            else:
                rows = self.recent_after(cursor.durable, PAGE)
            for row_id, item in rows:
                cursor.durable = row_id
                if sub.accepts(item):
                    text_ = f"{item.body}id: {cursor.id()}\n\n"
                    out.append(text_)
                    size += len(text_)
            if size >= CHUNK_BYTES:
                yield "".join(out)
                out, size = [], 0
            if len(rows) < PAGE:
                break
        if out:
            yield "".join(out)

    async def _serve(self, sub: Subscription, start: Position | None) -> AsyncIterator[str]:
        settings = self.runtime.settings
        loop = asyncio.get_running_loop()
        ring = self.ring
        oldest, newest = await self._in_thread(self.bounds)
        resets: dict[str, set[str]] = {}
        cursor = _Cursor(durable=newest, epoch=ring.epoch, seq=ring.head)
        if start is not None:
            cursor.durable, cursor.seq = start.durable, start.seq
            # Beyond the newest row (another database) or before the oldest kept (purged):
            # what was missed cannot be told.
            if start.durable > newest or (oldest and start.durable < oldest - 1):
                if sub.durable_kinds:
                    resets.setdefault("position_unknown", set()).update(sub.durable_kinds)
                cursor.durable = newest
            if start.epoch != ring.epoch or not ring.holds(start.seq):
                if sub.wants_entities:
                    resets.setdefault("position_unknown", set()).add(ENTITIES)
                cursor.seq = ring.head

        # An `id:` without `data:` sets EventSource's last id without firing an event: from
        # the first byte on, a reconnection resumes here instead of starting from "now".
        sent = cursor.id()
        yield f"retry: {RETRY_MS}\n: cityops live stream\nid: {sent}\n\n"
        for reason, kinds in resets.items():
            self.resets.labels(reason).inc()
            yield _reset(reason, kinds, sent)
        deadline = time.monotonic() + settings.stream_max_seconds
        # Entity changes this client may still be sent in the current window.
        budget, budget_until = self.window_max, 0.0
        while True:
            tick = self._tick  # taken before reading, so no wake-up falls between
            # Alerts, incidents and devices first, whatever entity changes are waiting.
            if sub.durable_kinds:
                async for chunk in self._durable(sub, cursor):
                    yield chunk
                    sent = cursor.id()
            deferred = False
            if sub.wants_entities:
                now = loop.time()
                if now >= budget_until:
                    budget, budget_until = self.window_max, now + self.window
                changes = (
                    None
                    if ring.head - cursor.seq > MAX_LAG
                    else ring.read_after(cursor.seq, MAX_LAG)
                )
                if changes is None:
                    reason = "too_slow" if ring.holds(cursor.seq) else "position_unknown"
                    cursor.seq = ring.head
                    self.resets.labels(reason).inc()
                    sent = cursor.id()
                    yield _reset(reason, {ENTITIES}, sent)
                elif changes:
                    # The ring holds one value per attribute and window; a client that is
                    # behind by several windows (or resuming) gets the latest of each only.
                    chosen = _coalesce([c for c in changes if sub.accepts(c[1])])
                    read_to = changes[-1][0]
                    if len(chosen) > budget:
                        # The rest waits for the next window, superseded by then or sent.
                        chosen = chosen[:budget]
                        read_to = chosen[-1][0] if chosen else cursor.seq
                        deferred = True
                    budget -= len(chosen)
                    out: list[str] = []
                    size = 0
                    prefix = f"id: {cursor.durable}-{cursor.epoch}-"
                    for number, item in chosen:
                        cursor.seq = number
                        text_ = f"{item.body}{prefix}{number}\n\n"
                        out.append(text_)
                        size += len(text_)
                        if size >= CHUNK_BYTES:
                            yield "".join(out)
                            out, size = [], 0
                            sent = cursor.id()
                            # What was committed while that chunk was written jumps the queue.
                            if sub.durable_kinds and self.last > cursor.durable:
                                async for chunk in self._durable(sub, cursor):
                                    yield chunk
                                prefix = f"id: {cursor.durable}-{cursor.epoch}-"
                    cursor.seq = read_to
                    if out:
                        yield "".join(out)
                        sent = cursor.id()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Ask the client to come back (EventSource does, with Last-Event-ID): its
                # credentials are checked again, and a revoked session stops streaming.
                yield f": reconnect\nid: {cursor.id()}\n\n"
                return
            timeout = min(settings.stream_heartbeat_seconds, remaining)
            if deferred:
                timeout = min(timeout, max(budget_until - loop.time(), 0.0))
            try:
                await asyncio.wait_for(tick.wait(), timeout)
            except TimeoutError:
                if deferred:
                    continue
                # Move the client's last id past what its filter skipped, so that it does not
                # resume from far behind.
                here = cursor.id()
                yield ": ping\n\n" if here == sent else f": ping\nid: {here}\n\n"
                sent = here


def _reset(reason: str, kinds: set[str], position: str) -> str:
    data = dumps({"reason": reason, "kinds": sorted(kinds)})
    return f"event: reset\ndata: {data}\nid: {position}\n\n"


def _coalesce(changes: list[tuple[int, Item]]) -> list[tuple[int, Item]]:
    """Keep only the latest change of each entity attribute (creations and deletions stay)."""
    seen: set[int] = set()
    kept: list[tuple[int, Item]] = []
    for number, item in reversed(changes):
        if item.key is not None:
            if item.key in seen:
                continue
            seen.add(item.key)
        kept.append((number, item))
    kept.reverse()
    return kept


def hub_of(runtime: Runtime) -> StreamHub:
    """The stream hub of a runtime (installed by `install`)."""
    hub: StreamHub = runtime.caches[HUB_KEY]
    return hub


def install(runtime: Runtime) -> None:
    """Write durable events to the stream log, feed the hub, and purge the log hourly."""
    hub = StreamHub(runtime)
    runtime.caches[HUB_KEY] = hub
    runtime.bus.subscribe_in_transaction("*", queue_durable)
    runtime.bus.subscribe("*", hub.on_event)
    runtime.jobs.add("stream.purge", 3600.0, lambda: purge(runtime))


# --- the route ------------------------------------------------------------------------------

router = APIRouter(tags=["stream"])


class EventStreamResponse(StreamingResponse):
    """A `text/event-stream` response."""

    media_type = "text/event-stream"


def _field_error(field: str, where: str, key: str, **params: Any) -> dict[str, Any]:
    return {"field": field, "in": where, "key": key, "params": params}


def _bad(field: str, where: str, key: str, **params: Any) -> BadRequest:
    return BadRequest(
        "web.stream.bad_parameter",
        errors=[_field_error(field, where, key, **params)],
        name=field,
    )


def _kinds(principal: Principal, types: str | None) -> frozenset[str]:
    readable = frozenset(k for k, p in KIND_PERMISSIONS.items() if principal.can(p))
    asked = [part.strip() for part in (types or "").split(",") if part.strip()]
    if not asked:
        if not readable:
            raise Forbidden("web.stream.nothing_readable")
        return readable
    for kind in asked:
        if kind not in KIND_PERMISSIONS:
            raise _bad("types", "query", "web.stream.unknown_type", value=kind[:40])
    for kind in asked:
        if kind not in readable:
            raise Forbidden("web.stream.kind_forbidden", kind=kind)
    return frozenset(asked)


def _units(
    session: Session, principal: Principal, unit_code: str | None, area_code: str | None
) -> frozenset[str] | None:
    scope = principal.scope.unit_codes
    units = scope
    narrowing: list[frozenset[str]] = []
    if unit_code is not None:
        subtree = unit_service.get_subtree_codes(session=session, unit_code=unit_code)
        if not subtree:
            raise _bad("unit_code", "query", "units.unit.not_found", code=unit_code)
        narrowing.append(subtree)
    if area_code is not None:
        members = unit_service.get_area_unit_codes(session=session, area_code=area_code)
        if members is None:
            raise _bad("area_code", "query", "units.area.not_found", code=area_code)
        narrowing.append(members)
    for codes in narrowing:
        # Narrowing must stay within the caller's units; both narrowings apply together.
        if scope is not None and not codes <= scope:
            raise Forbidden("error.forbidden.scope")
        units = codes if units is None else units & codes
    return units


_STREAM_DESCRIPTION = """Server-Sent Events (`text/event-stream`) of what the caller may see:
alerts (`alerts.*`), incidents (`incidents.*`), entity changes (`context.attribute_changed`,
`context.entity_created`, `context.entity_deleted`) and device status (`ingest.device_*`).

Each event has `event:` (its type), `data:` (its JSON payload with `at` and `correlation_id`) and
`id:` (`<durable>-<epoch>-<seq>`, the position in the stream). Alerts, incidents and device
events are sent as they are committed, ahead of any waiting entity change. Entity changes are
coalesced: within a window of about a second, only the latest value of each entity attribute
is sent. Send the last id back as the `Last-Event-ID` header (EventSource does) or
`last_event_id` to resume: every missed alert, incident and device event is replayed; missed
entity changes are replayed coalesced (the latest value of each attribute) while this server
still holds them, otherwise an `event: reset` (`{"reason", "kinds"}`) tells the client to reload
the current state of those kinds. Comments (`: ping`) keep the connection alive every 15 s; the
server closes a stream after 15 minutes and the client reconnects."""


@router.get(
    "/stream",
    summary="Live events (Server-Sent Events)",
    description=_STREAM_DESCRIPTION,
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "An endless stream of events.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
def stream(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    types: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Kinds to receive, comma-separated: alerts, incidents, entities, "
            "devices (default: every kind the caller may read).",
        ),
    ] = None,
    unit_code: Annotated[
        str | None,
        Query(max_length=16, description="Only this unit and the units under it."),
    ] = None,
    area_code: Annotated[
        str | None, Query(max_length=64, description="Only the units of this area.")
    ] = None,
    entity_type: Annotated[
        str | None,
        Query(max_length=256, description="Only entities (and their alerts) of this type."),
    ] = None,
    tenant: Annotated[
        str | None, Query(max_length=128, description="Only this NGSI-LD tenant.")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(max_length=64, description="Resume after this event id (if no header is sent)."),
    ] = None,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=64, description="Resume after.")
    ] = None,
) -> EventStreamResponse:
    """Stream live events the caller may see, resuming after the last event received.

    Resuming replays every missed alert, incident and device event; missed entity changes are
    replayed coalesced (the latest value of each entity attribute), or reset if forgotten.
    """
    kinds = _kinds(principal, types)
    start: Position | None = None
    # The header wins: EventSource sends it on reconnection, with the page's original URL.
    for value, field, where in (
        (last_event_id_header, "Last-Event-ID", "header"),
        (last_event_id, "last_event_id", "query"),
    ):
        if value is not None and value.strip():
            start = Position.parse(value)
            if start is None:
                raise _bad(field, where, "web.stream.bad_position", value=value[:64])
            break
    if principal.tenant is not None and tenant is not None and tenant != principal.tenant:
        raise Forbidden("web.stream.tenant_forbidden", tenant=principal.tenant)
    subscription = Subscription(
        kinds=kinds,
        unit_codes=_units(session, principal, unit_code, area_code),
        department_code=principal.scope.department_code,
        tenant=tenant or principal.tenant,
        entity_type=entity_type or None,
    )
    return EventStreamResponse(
        hub_of(runtime).serve(subscription, start),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
