"""Orchestration of the alerts context: the rule engine on the event stream, rule management
(API, YAML import, profile seed) and the alert lifecycle.

The engine subscribes (after commit) to the context store's `context.attribute_changed` and to
ingest's device status events. Events go into a queue drained in batches, one transaction per
batch, by the evaluator thread (started with the server when background jobs are on) or by
`Engine.process_pending()` (tests, the synchronous setting). Rules never poll observation tables.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError
from sqlalchemy.orm import Session

from cityops.alerts import service
from cityops.alerts.conditions import (
    OPEN,
    RESOLVE,
    UPDATE,
    CompiledRule,
    Index,
    Obs,
    Schedule,
    State,
)
from cityops.alerts.enums import (
    AlertEventKind,
    AlertsEvent,
    AlertStatus,
    CompositeMode,
    Direction,
    GeoTrigger,
    Operator,
    Resolution,
    RuleKind,
)
from cityops.alerts.models import Alert, AlertRule
from cityops.alerts.schemas import ImportResult, RuleCreate, RuleUpdate
from cityops.core.db import unit_of_work
from cityops.core.errors import Conflict, Forbidden, Invalid
from cityops.core.events import Event
from cityops.core.fanout import fanout_of
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL, Principal
from cityops.units import service as unit_service

log = logging.getLogger(__name__)

ENGINE_KEY = "alerts.engine"
METRICS_KEY = "alerts.metrics"
ATTRIBUTE_CHANGED = "context.attribute_changed"
DEVICE_OFFLINE = "ingest.device_offline"
# egov's due-date events become observations of a `Dossier` entity's `dueState`
# (0 on time, 1 due soon, 2 overdue): threshold rules of the pack open and resolve their alerts.
DOSSIER_DUE_SOON = "egov.dossier_due_soon"
DOSSIER_OVERDUE = "egov.dossier_overdue"
DOSSIER_TYPE = "Dossier"
DOSSIER_ATTRIBUTE = "dueState"
DOSSIER_PREFIX = "urn:ngsi-ld:Dossier:"
DOSSIER_TENANT = "default"
DUE_STATES = {DOSSIER_DUE_SOON: 1, DOSSIER_OVERDUE: 2}
DEVICE_ONLINE = "ingest.device_online"
# Events evaluated per transaction: large enough to amortise the commit at thousands of
# observations per second, small enough that the first alert of a burst is not held back.
BATCH_SIZE = 2000
# Beyond this many waiting events new ones are dropped (and counted): a stalled database must
# not exhaust memory.
MAX_QUEUE = 200_000
# An open alert's latest value is written (and logged in its history) at most this often.
VALUE_UPDATE_EVERY = timedelta(minutes=5)
MAX_IMPORT_BYTES = 1024 * 1024
MAX_IMPORT_RULES = 2000
RULES_FILE = "rules.yaml"


# --- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertsMetrics:
    """What the engine evaluated, what it decided, and how far behind it runs."""

    observations: Counter
    transitions: Counter
    dropped: Counter
    queued: Gauge
    lag: Histogram


def _metrics(runtime: Runtime, queue: deque[Any]) -> AlertsMetrics:
    found = runtime.caches.get(METRICS_KEY)
    if isinstance(found, AlertsMetrics):
        found.queued.set_function(lambda: len(queue))
        return found
    registry = runtime.metrics.registry
    queued = Gauge("cityops_alerts_queued", "Events waiting for rule evaluation", registry=registry)
    queued.set_function(lambda: len(queue))
    metrics = AlertsMetrics(
        observations=Counter(
            "cityops_alerts_events_evaluated",
            "Observations and device events evaluated against the rules",
            registry=registry,
        ),
        transitions=Counter(
            "cityops_alerts_transitions",
            "Alerts opened and resolved by the engine",
            ["transition"],
            registry=registry,
        ),
        dropped=Counter(
            "cityops_alerts_events_dropped",
            "Events dropped because the evaluation queue was full",
            registry=registry,
        ),
        queued=queued,
        lag=Histogram(
            "cityops_alerts_lag_seconds",
            "Time from an event's publication to the commit of its evaluation",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        ),
    )
    runtime.caches[METRICS_KEY] = metrics
    return metrics


# --- compiling rules -------------------------------------------------------------------------


def rule_department(session: Session, rule: AlertRule | Mapping[str, Any]) -> str | None:
    """Return the department an alert of this rule belongs to: the policy's, or the sector's."""
    policy = rule.policy if isinstance(rule, AlertRule) else rule["policy"]
    sector = rule.sector if isinstance(rule, AlertRule) else rule["sector"]
    incident = (policy or {}).get("incident") or {}
    if incident.get("department_code"):
        return str(incident["department_code"])
    if sector:
        department = unit_service.get_department_by_sector(session=session, sector=sector)
        return department.code if department is not None else None
    return None


def unit_reach(session: Session, unit_code: str) -> frozenset[str]:
    """Return a unit, its descendants and, for a legacy unit, the current units formed from it
    (so "731", the former Biên Hòa city, reaches today's wards)."""
    subtree = unit_service.get_subtree_codes(session=session, unit_code=unit_code)
    return subtree | unit_service.get_successor_codes(session=session, legacy_codes=sorted(subtree))


def rule_units(
    session: Session,
    unit_codes: Iterable[str] | None,
    area_code: str | None,
    cache: dict[str, frozenset[str]] | None = None,
) -> frozenset[str] | None:
    """Return the unit codes a scope covers (descendants and area members); None: everywhere."""
    codes = list(unit_codes or [])
    if not codes and not area_code:
        return None
    cache = {} if cache is None else cache
    found: set[str] = set()
    for code in codes:
        if code not in cache:
            cache[code] = unit_reach(session, code)
        found |= cache[code]
    if area_code:
        found |= unit_service.get_area_unit_codes(session=session, area_code=area_code) or set()
    return frozenset(found)


def compile_rules(session: Session, rules: Iterable[AlertRule], tz: ZoneInfo) -> list[CompiledRule]:
    """Compile stored rules for evaluation (composites whose members are missing are left out)."""
    rules = list(rules)
    ids = {rule.code: rule.id for rule in rules}
    cache: dict[str, frozenset[str]] = {}
    compiled: list[CompiledRule] = []
    for rule in rules:
        kind = RuleKind(rule.kind)
        c = rule.condition or {}
        item = CompiledRule(
            id=rule.id,
            code=rule.code,
            kind=kind,
            entity_type=rule.entity_type,
            attribute=rule.attribute,
            units=rule_units(session, rule.unit_codes, rule.area_code, cache),
            schedule=Schedule.from_dict(rule.schedule, tz),
            severity=rule.severity,
            sector=rule.sector,
            department_code=rule_department(session, rule),
            policy=dict(rule.policy),
            name_vi=rule.name_vi,
            name_en=rule.name_en,
        )
        if kind is RuleKind.THRESHOLD:
            item.op = Operator(c["op"])
            item.value = c["value"]
            item.numeric = isinstance(c["value"], int | float) and not isinstance(c["value"], bool)
            item.hysteresis = float(c.get("hysteresis", 0.0))
            item.min_duration = timedelta(seconds=int(c.get("min_duration_seconds", 0)))
        elif kind is RuleKind.RATE_OF_CHANGE:
            item.window_seconds = 60.0 * int(c["window_minutes"])
            item.limit = float(c["limit"])
            item.direction = Direction(c.get("direction", Direction.EITHER))
            item.hysteresis = float(c.get("hysteresis", 0.0))
        elif kind is RuleKind.GEO_FENCE:
            item.trigger = GeoTrigger(c["trigger"])
            item.fence = rule_units(session, c.get("unit_codes"), c.get("area_code"), cache) or (
                frozenset()
            )
        elif kind is RuleKind.COMPOSITE:
            members = [str(code) for code in c.get("rules", [])]
            if any(code not in ids for code in members):
                log.warning("composite rule with a disabled member", extra={"rule": rule.code})
                continue
            item.members = tuple(ids[code] for code in members)
            item.member_codes = tuple(members)
            item.mode = CompositeMode(c.get("mode", CompositeMode.ALL))
        compiled.append(item)
    return compiled


# --- event payloads --------------------------------------------------------------------------


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def event_data(
    alert: Alert | Mapping[str, Any], *, value: Any = None, actor_id: int | None = None
) -> dict[str, Any]:
    """Return the payload of an `alerts.*` event (the operations event contract)."""

    def get(name: str) -> Any:
        return _get(alert, name)

    policy = get("policy") or {}
    return {
        "alert_id": get("id"),
        "rule_id": get("rule_id"),
        "rule_code": get("rule_code"),
        "kind": get("kind"),
        "severity": get("severity"),
        "status": get("status"),
        "tenant": get("tenant"),
        "entity_id": get("entity_id"),
        "entity_type": get("entity_type"),
        "attribute": get("attribute"),
        "value": get("last_value") if value is None else value,
        "unit_code": get("unit_code"),
        "department_code": get("department_code"),
        "lat": get("lat"),
        "lon": get("lon"),
        "sector": get("sector"),
        "title_vi": get("title_vi"),
        "title_en": get("title_en"),
        "opened_at": _iso(get("opened_at")),
        "resolved_at": _iso(get("resolved_at")),
        "resolution": get("resolution"),
        "snoozed_until": _iso(get("snoozed_until")),
        "actor_id": actor_id,
        "policy": {"incident": policy.get("incident"), "notify": list(policy.get("notify") or [])},
    }


def publish(
    runtime: Runtime,
    session: Session,
    kind: AlertsEvent,
    alert: Alert,
    *,
    now: datetime,
    value: Any = None,
    actor: Principal | None = None,
) -> None:
    """Publish an event of an action on an alert (by a person or a job) once the session
    commits; the engine publishes its own with the observation's correlation id."""
    data = event_data(alert, value=value, actor_id=service.actor_of(actor)[0])
    runtime.bus.publish_after_commit(session, Event(type=str(kind), data=data, at=now))


def _title(name: str, entity_id: str) -> str:
    short = entity_id.rsplit(":", 1)[-1]
    return f"{name} — {short}"[:300]


# --- the engine ------------------------------------------------------------------------------


def _parse_time(text: Any, fallback: datetime) -> datetime:
    if isinstance(text, str):
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return fallback
        if parsed.tzinfo is not None:
            return parsed
    return fallback


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(slots=True)
class Change:
    """An alert to open, resolve or update, decided by a rule on an observation (with the
    value the rule judged, as it was then)."""

    what: str
    rule: CompiledRule
    state: State
    obs: Obs
    value: Any


class Engine:
    """Evaluates the enabled rules on the event stream and keeps one alert per rule and entity."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._queue: deque[tuple[Event, float]] = deque()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._index = Index()
        self._loaded = False
        self._stale = True
        self._signature: tuple[int, int, str] | None = None
        # Read by publishing threads without the lock: replaced whole, never mutated.
        self._watched: frozenset[tuple[str, str]] | None = None
        self._states: dict[tuple[int, str, str], State] = {}
        # (tenant, entity, attribute) → rule id → state, for rules holding or pending there.
        self._hot: dict[tuple[str, str, str], dict[int, State]] = {}
        # (tenant, entity) → last (lat, lon) seen: a PATCH of one attribute carries no location,
        # yet the alert (and the incident it opens) should be on the map where the entity is.
        self._where: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        self._tz = ZoneInfo(runtime.settings.timezone)
        self._synchronous = bool(getattr(runtime.settings, "alerts_synchronous", False))
        self._last_drop_log = 0.0
        # Set by `draining()`: evaluate in the publishing thread once this many events wait.
        self._drain_at: int | None = None
        self.metrics = _metrics(runtime, self._queue)
        # With several workers only the leader evaluates (core/fanout.py): its own observations
        # and the other workers'. A follower queues nothing.
        self.evaluates = True

    # --- intake (publishing threads) -------------------------------------------------------

    def on_observation(self, event: Event) -> None:
        """Queue an attribute change if some rule watches its entity type and attribute."""
        if not self.evaluates:
            # Kept by followers too, so a new leader places a PATCH's alert where its entity is.
            data = event.data
            lat, lon = _float(data.get("lat")), _float(data.get("lon"))
            if lat is not None and lon is not None:
                self._where[(data.get("tenant") or "", data.get("entity_id") or "")] = (lat, lon)
            return
        watched = self._watched
        if watched is not None:
            data = event.data
            if (data.get("entity_type"), data.get("attribute")) not in watched:
                return
        self._enqueue(event)

    def on_device(self, event: Event) -> None:
        """Queue a device status change."""
        if self.evaluates:
            self._enqueue(event)

    def lead(self, leading: bool) -> None:
        """Start or stop evaluating (this worker gained or lost the leader lock).

        A new leader reloads the rules and the persisted per-entity state: the previous leader
        wrote it with each batch, and this process's memory of it is stale."""
        self.evaluates = leading
        if leading:
            try:
                self.reload()
            except Exception:
                # The next batch loads it (the engine stays marked stale).
                log.exception("alert engine reload failed")
            self._wake.set()

    def on_dossier_due(self, event: Event) -> None:
        """Queue an egov due-date event as an observation of the dossier's due state."""
        code = event.data.get("code")
        state = DUE_STATES.get(event.type)
        if not code or state is None:
            return
        self.on_observation(
            dossier_observation(
                code=str(code),
                unit_code=event.data.get("unit_code"),
                value=state,
                at=event.at,
                correlation_id=event.correlation_id,
            )
        )

    def on_rules_changed(self, _event: Event) -> None:
        """Recompile the rules before the next evaluation."""
        # Until then every observation is queued: a new rule may watch what the old set did not.
        self._watched = None
        self._stale = True
        self._wake.set()

    def _enqueue(self, event: Event) -> None:
        if len(self._queue) >= MAX_QUEUE:
            self.metrics.dropped.inc()
            now = time.monotonic()
            if now - self._last_drop_log > 60:
                self._last_drop_log = now
                log.warning("alert evaluation queue full: events dropped")
            return
        self._queue.append((event, time.monotonic()))
        if self._synchronous or (self._drain_at is not None and len(self._queue) >= self._drain_at):
            self.process_pending()
        elif not self._wake.is_set():
            # Set only when clear: setting takes the event's lock and notifies, hundreds of
            # times per batch otherwise. The loop clears before it drains, so an event queued
            # while the flag is still set is drained by that pass.
            self._wake.set()

    @contextlib.contextmanager
    def draining(self, every: int = BATCH_SIZE) -> Iterator[None]:
        """Evaluate queued events in the publishing thread, a batch at a time, and all that is
        left at the end: for one-shot tools (the demo's back-fill) that run no evaluator."""
        previous, self._drain_at = self._drain_at, every
        try:
            yield
        finally:
            self._drain_at = previous
            self.process_pending()

    @property
    def running(self) -> bool:
        """Whether the evaluator thread runs."""
        return self._thread is not None

    @property
    def pending(self) -> int:
        """How many events wait for evaluation."""
        return len(self._queue)

    # --- thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the evaluator thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cityops-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the evaluator thread after the current batch."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self.process_pending()
            except Exception:
                log.exception("alert evaluation failed")

    # --- loading ---------------------------------------------------------------------------

    @property
    def index(self) -> Index:
        """The compiled rules (loaded on first use)."""
        with self._lock:
            self._ensure_current()
            return self._index

    def reload(self) -> None:
        """Recompile the rules and reload the engine's state from the database."""
        self._watched = None
        with self._lock:
            self._stale = True
            self._ensure_current()

    def _ensure_current(self) -> None:
        if not self._stale and self._loaded:
            return
        self._stale = False
        try:
            self._load()
        except BaseException:
            self._stale = True  # try again at the next evaluation
            raise

    def _load(self) -> None:
        with self._runtime.session_factory() as session:
            self._signature = service.rules_signature(session=session)
            rules = service.get_enabled(session=session)
            index = Index.build(compile_rules(session, rules, self._tz))
            rows = service.get_states(session=session)
            states: dict[tuple[int, str, str], State] = {}
            hot: dict[tuple[str, str, str], dict[int, State]] = {}
            for row in rows:
                rule = index.rules.get(row.rule_id)
                if rule is None:
                    continue
                state = State(
                    rule_id=row.rule_id,
                    tenant=row.tenant,
                    entity_id=row.entity_id,
                    active=row.active,
                    pending_since=row.pending_since,
                    alert_id=row.alert_id,
                    last_value=row.last_value,
                    last_at=row.last_observed_at,
                    data=dict(row.data or {}),
                )
                states[(row.rule_id, row.tenant, row.entity_id)] = state
                if (state.active or state.pending_since) and rule.attribute:
                    hot.setdefault((row.tenant, row.entity_id, rule.attribute), {})[rule.id] = state
        self._index, self._states, self._hot = index, states, hot
        if not self._stale:  # rules changed meanwhile: keep queueing everything until reloaded
            self._watched = index.watched
        self._loaded = True

    def check_rules(self) -> bool:
        """Reload if the stored rules changed (e.g. by another process); tell whether they did."""
        with self._runtime.session_factory() as session:
            signature = service.rules_signature(session=session)
        if signature != self._signature:
            self.reload()
            return True
        return False

    # --- evaluation ------------------------------------------------------------------------

    def process_pending(self) -> int:
        """Evaluate every queued event, one transaction per batch; return how many."""
        done = 0
        with self._lock:
            self._ensure_current()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(BATCH_SIZE, len(self._queue)))]
                self._run_batch(batch)
                done += len(batch)
        return done

    def _run_batch(self, batch: list[tuple[Event, float]]) -> None:
        for attempt in (1, 2):
            try:
                changes, touched = self.evaluate([event for event, _ in batch])
                if changes or touched:
                    self._write(changes, touched)
                break
            except Exception:
                # The state in memory may be ahead of the database: reload it, try once more.
                log.exception("alert batch failed", extra={"attempt": attempt})
                self._stale = True
                self._ensure_current()
        self.metrics.observations.inc(len(batch))
        now = time.monotonic()
        self.metrics.lag.observe(now - batch[0][1])

    def evaluate(self, events: Iterable[Event]) -> tuple[list[Change], list[State]]:
        """Run events through the rules, in memory: return the alert changes decided and the
        states changed (the caller writes them)."""
        changes: list[Change] = []
        touched: dict[int, State] = {}
        for event in events:
            if event.type == ATTRIBUTE_CHANGED:
                self._observe(event, changes, touched)
            elif event.type in (DEVICE_OFFLINE, DEVICE_ONLINE):
                self._device(event, changes, touched)
        return changes, [state for state in touched.values() if state.dirty]

    def _state(self, rule: CompiledRule, tenant: str, entity_id: str) -> State:
        # A fresh state is kept only once a step changes it (see `_after_step`): most
        # observations leave most rules idle, and idle needs no memory.
        state = self._states.get((rule.id, tenant, entity_id))
        if state is None:
            state = State(rule_id=rule.id, tenant=tenant, entity_id=entity_id)
        return state

    def _observe(self, event: Event, changes: list[Change], touched: dict[int, State]) -> None:
        data = event.data
        if data.get("deleted"):
            return
        tenant: str = data.get("tenant") or ""
        entity_id: str = data.get("entity_id") or ""
        attribute: str = data.get("attribute") or ""
        value = data.get("value")
        candidates = self._index.candidates_for(
            data.get("entity_type"), attribute, data.get("unit_code"), value
        )
        hot = self._hot.get((tenant, entity_id, attribute))
        lat, lon = _float(data.get("lat")), _float(data.get("lon"))
        if lat is not None and lon is not None:
            self._where[(tenant, entity_id)] = (lat, lon)
        if not candidates and not hot:
            return
        if lat is None or lon is None:
            lat, lon = self._where.get((tenant, entity_id), (None, None))
        obs = Obs(
            tenant=tenant,
            entity_id=entity_id,
            entity_type=data.get("entity_type"),
            attribute=attribute,
            value=value,
            at=_parse_time(data.get("observed_at"), event.at),
            unit_code=data.get("unit_code"),
            lat=lat,
            lon=lon,
            correlation_id=event.correlation_id,
        )
        rules = candidates if not hot else [*candidates, *(self._index.rules[i] for i in hot)]
        seen: set[int] = set()
        for rule in rules:
            if rule.id in seen:
                continue
            seen.add(rule.id)
            state = self._state(rule, tenant, entity_id)
            what = rule.step(state, obs)
            self._after_step(rule, state, obs, what, changes, touched)

    def _after_step(
        self,
        rule: CompiledRule,
        state: State,
        obs: Obs,
        what: str | None,
        changes: list[Change],
        touched: dict[int, State],
    ) -> None:
        if state.dirty:
            state.data["ctx"] = [obs.entity_type, obs.attribute, obs.unit_code, obs.lat, obs.lon]
            touched[id(state)] = state
            self._states.setdefault((state.rule_id, state.tenant, state.entity_id), state)
        if rule.attribute:
            key = (state.tenant, state.entity_id, rule.attribute)
            if state.active or state.pending_since is not None:
                self._hot.setdefault(key, {})[rule.id] = state
            else:
                hot = self._hot.get(key)
                if hot is not None:
                    hot.pop(rule.id, None)
                    if not hot:
                        del self._hot[key]
        if what is None:
            return
        if what == OPEN:
            state.value_written_at = obs.at
        elif what == UPDATE:
            written = state.value_written_at
            if state.alert_id is None or (
                written is not None and obs.at - written < VALUE_UPDATE_EVERY
            ):
                return
            state.value_written_at = obs.at
        changes.append(Change(what, rule, state, obs, state.last_value))
        if what in (OPEN, RESOLVE):
            self._propagate(rule, state, obs, changes, touched)

    def _propagate(
        self,
        member: CompiledRule,
        state: State,
        obs: Obs,
        changes: list[Change],
        touched: dict[int, State],
    ) -> None:
        for composite in self._index.dependents.get(member.id, ()):
            firing = []
            for rule_id in composite.members:
                found = self._states.get((rule_id, state.tenant, state.entity_id))
                firing.append(found is not None and found.active)
            own = self._state(composite, state.tenant, state.entity_id)
            what = composite.combine(own, firing, obs.at)
            sub = Obs(
                tenant=obs.tenant,
                entity_id=obs.entity_id,
                entity_type=obs.entity_type,
                attribute=None,
                value=own.last_value,
                at=obs.at,
                unit_code=obs.unit_code,
                lat=obs.lat,
                lon=obs.lon,
                correlation_id=obs.correlation_id,
            )
            self._after_step(composite, own, sub, what, changes, touched)

    def _device(self, event: Event, changes: list[Change], touched: dict[int, State]) -> None:
        data = event.data
        tenant, entity_id = str(data.get("tenant")), str(data.get("entity_id"))
        entity_type = data.get("entity_type")
        rules = [
            *self._index.devices.get(entity_type, ()),
            *self._index.devices.get(None, ()),
        ]
        if not rules:
            return
        offline = event.type == DEVICE_OFFLINE
        obs = Obs(
            tenant=tenant,
            entity_id=entity_id,
            entity_type=entity_type,
            attribute=None,
            value={"device_id": data.get("device_id"), "status": data.get("status")},
            at=_parse_time(data.get("at"), event.at),
            unit_code=data.get("unit_code"),
            correlation_id=event.correlation_id,
        )
        for rule in rules:
            key = (rule.id, tenant, entity_id)
            if key not in self._states and not rule.covers(obs.unit_code):
                continue
            state = self._state(rule, tenant, entity_id)
            what = rule.device(state, offline=offline, value=obs.value, at=obs.at)
            self._after_step(rule, state, obs, what, changes, touched)

    def confirm_pending(self, now: datetime | None = None) -> int:
        """Open the thresholds pending past their minimum duration with no newer observation
        (the store is silent while a value stays put); return how many opened."""
        now = now or self._runtime.clock.now()
        with self._lock:
            self._ensure_current()
            changes: list[Change] = []
            touched: dict[int, State] = {}
            pending = [s for by_rule in self._hot.values() for s in by_rule.values()]
            for state in pending:
                rule = self._index.rules.get(state.rule_id)
                if rule is None or state.pending_since is None:
                    continue
                what = rule.confirm(state, now)
                if what is None:
                    continue
                ctx = list(state.data.get("ctx") or [None] * 5)
                obs = Obs(
                    tenant=state.tenant,
                    entity_id=state.entity_id,
                    entity_type=ctx[0],
                    attribute=ctx[1],
                    value=state.last_value,
                    at=now,
                    unit_code=ctx[2],
                    lat=ctx[3],
                    lon=ctx[4],
                )
                self._after_step(rule, state, obs, what, changes, touched)
            if changes or touched:
                self._write(changes, list(touched.values()))
            return sum(1 for change in changes if change.what == OPEN)

    # --- writing ---------------------------------------------------------------------------

    def _write(self, changes: list[Change], touched: list[State]) -> None:
        runtime = self._runtime
        now = runtime.clock.now()
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            if changes:
                self._apply(session, changes, now)
            service.upsert_states(
                session=session,
                rows=[
                    {
                        "rule_id": state.rule_id,
                        "tenant": state.tenant,
                        "entity_id": state.entity_id,
                        "active": state.active,
                        "pending_since": state.pending_since,
                        "alert_id": state.alert_id,
                        "last_value": state.last_value,
                        "last_observed_at": state.last_at,
                        "data": state.data,
                        "updated_at": now,
                    }
                    for state in touched
                ],
            )
        for state in touched:
            state.dirty = False
            if not state.active and state.pending_since is None and not state.data.keys() - {"ctx"}:
                # Idle thresholds and missing-data rules need no memory (the row says idle).
                self._states.pop((state.rule_id, state.tenant, state.entity_id), None)
        for change in changes:
            if change.what in (OPEN, RESOLVE):
                self.metrics.transitions.labels(change.what).inc()

    def _apply(self, session: Session, changes: list[Change], now: datetime) -> None:
        """Write a batch's alert changes in a handful of set-based statements: one query for
        the alerts involved, one multi-row insert of the new ones, one of their history.

        An alert is handled as its row (a dict) while new, as its table object once stored."""
        keys = {
            id(change): service.fingerprint(change.rule.id, change.obs.tenant, change.obs.entity_id)
            for change in changes
            if change.what == OPEN
        }
        # Alerts open in the database though the engine did not know (a crash lost its state,
        # or another process opened them): adopted, never duplicated.
        adoptable = service.get_open_by_keys(session=session, keys=set(keys.values()))
        known = service.get_alerts(
            session=session,
            ids={c.state.alert_id for c in changes if c.state.alert_id is not None},
        )
        handles: dict[int, Alert | dict[str, Any] | None] = {}
        states: dict[int, State] = {}
        new_rows: list[dict[str, Any]] = []
        history: list[tuple[Alert | dict[str, Any], AlertEventKind, Change, Any]] = []
        published: list[tuple[AlertsEvent, Alert | dict[str, Any], Change]] = []
        for change in changes:
            state = change.state
            slot = id(state)
            states[slot] = state
            if slot in handles:
                alert = handles[slot]
            else:
                alert = known.get(state.alert_id) if state.alert_id is not None else None
            live = alert is not None and _get(alert, "status") != AlertStatus.RESOLVED
            if change.what == OPEN:
                if live:
                    continue  # already open for this rule and entity
                alert = adoptable.pop(keys[id(change)], None)
                if alert is not None and alert.status == AlertStatus.RESOLVED:
                    alert = None  # resolved earlier in this very batch
                if alert is None:
                    alert = self._new_alert(change, keys[id(change)], now)
                    new_rows.append(alert)
                    history.append((alert, AlertEventKind.OPENED, change, None))
                    published.append((AlertsEvent.ALERT_OPENED, alert, change))
                handles[slot] = alert
            elif change.what == RESOLVE:
                handles[slot] = None
                if alert is None or not live:
                    continue  # resolved by hand meanwhile: nothing more to do
                fields = service.resolved_values(
                    opened_at=_get(alert, "opened_at"),
                    now=now,
                    resolution=Resolution.AUTO,
                    value=change.value,
                    observed_at=change.obs.at,
                )
                _set(alert, fields)
                history.append((alert, AlertEventKind.RESOLVED, change, {"resolution": "auto"}))
                published.append((AlertsEvent.ALERT_RESOLVED, alert, change))
            elif alert is not None and live:
                _set(
                    alert,
                    {"last_value": change.value, "last_value_at": change.obs.at, "updated_at": now},
                )
                history.append((alert, AlertEventKind.VALUE_UPDATED, change, None))
        service.insert_alerts(session=session, rows=new_rows, now=now)
        session.flush()
        service.add_events(
            session=session,
            rows=[
                service.event_row(
                    alert=alert,
                    kind=kind,
                    at=now,
                    value=change.value,
                    observed_at=change.obs.at,
                    correlation_id=change.obs.correlation_id,
                    details=details,
                )
                for alert, kind, change, details in history
            ],
        )
        for slot, alert in handles.items():
            live = alert is not None and _get(alert, "status") != AlertStatus.RESOLVED
            states[slot].alert_id = _get(alert, "id") if alert is not None and live else None
        for kind, alert, change in published:
            data = event_data(alert, value=change.value)
            if kind is AlertsEvent.ALERT_OPENED:
                # As it was when it opened: it may have resolved later in this very batch.
                data.update(status=AlertStatus.OPEN.value, resolved_at=None, resolution=None)
            self._runtime.bus.publish_after_commit(
                session,
                Event(
                    type=str(kind),
                    data=data,
                    at=now,
                    correlation_id=change.obs.correlation_id or uuid.uuid4().hex,
                ),
            )

    @staticmethod
    def _new_alert(change: Change, key: str, now: datetime) -> dict[str, Any]:
        rule, obs = change.rule, change.obs
        return {
            "rule_id": rule.id,
            "rule_code": rule.code,
            "kind": str(rule.kind),
            "fingerprint": key,
            "open_key": key,
            "tenant": obs.tenant,
            "entity_id": obs.entity_id,
            "entity_type": obs.entity_type,
            "attribute": obs.attribute,
            "unit_code": obs.unit_code,
            "department_code": rule.department_code,
            "lat": obs.lat,
            "lon": obs.lon,
            "severity": rule.severity,
            "sector": rule.sector,
            "title_vi": _title(rule.name_vi, obs.entity_id),
            "title_en": _title(rule.name_en, obs.entity_id),
            "policy": rule.policy,
            "status": AlertStatus.OPEN.value,
            "snoozed_until": None,
            "opened_at": obs.at,
            "created_at": now,
            "acknowledged_at": None,
            "acknowledged_by": None,
            "resolved_at": None,
            "resolved_by": None,
            "resolution": None,
            "first_value": change.value,
            "last_value": change.value,
            "last_value_at": obs.at,
            "updated_at": now,
        }


def _get(alert: Alert | Mapping[str, Any], name: str) -> Any:
    return alert[name] if isinstance(alert, Mapping) else getattr(alert, name)


def _set(alert: Alert | dict[str, Any], values: Mapping[str, Any]) -> None:
    if isinstance(alert, dict):
        alert.update(values)
    else:
        for name, value in values.items():
            setattr(alert, name, value)


def engine_of(runtime: Runtime) -> Engine:
    """Return the runtime's rule engine (created on first use)."""
    engine = runtime.caches.get(ENGINE_KEY)
    if not isinstance(engine, Engine):
        engine = Engine(runtime)
        runtime.caches[ENGINE_KEY] = engine
    return engine


def dossier_observation(
    *, code: str, unit_code: str | None, value: int, at: datetime, correlation_id: str | None = None
) -> Event:
    """Return a dossier's due state (0, 1, 2) as a `context.attribute_changed` event."""
    data = {
        "tenant": DOSSIER_TENANT,
        "entity_id": f"{DOSSIER_PREFIX}{code}",
        "entity_type": DOSSIER_TYPE,
        "attribute": DOSSIER_ATTRIBUTE,
        "value": value,
        "previous": None,
        "unit_code": unit_code,
        "observed_at": at.isoformat(),
        "deleted": False,
    }
    if correlation_id is None:
        return Event(type=ATTRIBUTE_CHANGED, data=data, at=at)
    return Event(type=ATTRIBUTE_CHANGED, data=data, at=at, correlation_id=correlation_id)


def settle_dossiers(*, runtime: Runtime, session: Session) -> int:
    """Feed the engine the current due state of every dossier with an unresolved alert, so the
    alert resolves once the dossier is closed or its due date moves away; return how many."""
    from cityops.egov import flows as egov_flows
    from cityops.egov import service as egov_service
    from cityops.egov.enums import OPEN_STATUSES

    rows = service.get_unresolved_of_type(session=session, entity_type=DOSSIER_TYPE)
    units = {entity_id.removeprefix(DOSSIER_PREFIX): unit for entity_id, unit in rows}
    if not units:
        return 0
    now = runtime.clock.now()
    horizon = egov_flows.due_horizon(runtime, now)
    # A code no dossier holds any more (deleted by a correction) is settled as on time.
    states = dict.fromkeys(units, 0)
    for (_agency, code), values in egov_service.get_existing(session=session, codes=units).items():
        if values["status"] not in OPEN_STATUSES:
            continue
        due_at = values["due_at"]
        state = 2 if due_at < now else 1 if due_at <= horizon else 0
        states[code] = max(states[code], state)
    engine = engine_of(runtime)
    for code, state in states.items():
        engine.on_observation(
            dossier_observation(code=code, unit_code=units[code], value=state, at=now)
        )
    return len(states)


def install(runtime: Runtime) -> Engine:
    """Create the engine, subscribe it to the event stream and register the alerts jobs."""
    from cityops.alerts import jobs

    engine = engine_of(runtime)
    runtime.bus.subscribe(ATTRIBUTE_CHANGED, engine.on_observation)
    runtime.bus.subscribe(DEVICE_OFFLINE, engine.on_device)
    runtime.bus.subscribe(DEVICE_ONLINE, engine.on_device)
    runtime.bus.subscribe(DOSSIER_DUE_SOON, engine.on_dossier_due)
    runtime.bus.subscribe(DOSSIER_OVERDUE, engine.on_dossier_due)
    runtime.bus.subscribe(str(AlertsEvent.RULES_CHANGED), engine.on_rules_changed)
    fanout = fanout_of(runtime)
    if fanout is not None:
        fanout.on_leading(engine.lead)
    jobs.register(runtime)
    return engine


# --- rule management -------------------------------------------------------------------------


def _rules_changed(runtime: Runtime, session: Session, now: datetime) -> None:
    runtime.bus.publish_after_commit(
        session, Event(type=str(AlertsEvent.RULES_CHANGED), data={}, at=now)
    )


def check_rule_scope(session: Session, principal: Principal, values: Mapping[str, Any]) -> None:
    """Refuse (403) a rule reaching beyond the caller's units or department."""
    scope = principal.scope
    if scope.unit_codes is not None:
        units = rule_units(session, values.get("unit_codes"), values.get("area_code"))
        if units is None or not units <= scope.unit_codes:
            raise Forbidden("alerts.rule.out_of_scope")
    if scope.department_code is not None and (
        rule_department(session, values) != scope.department_code
    ):
        raise Forbidden("alerts.rule.out_of_scope")


def _retire(
    runtime: Runtime,
    session: Session,
    rule: AlertRule,
    resolution: Resolution,
    actor: Principal | None,
    now: datetime,
) -> None:
    """Resolve a rule's open alerts and forget its state (disabled, changed kind, deleted)."""
    for alert in service.get_open_for_rule(session=session, rule_id=rule.id):
        service.resolve(session=session, alert=alert, now=now, resolution=resolution, actor=actor)
        publish(runtime, session, AlertsEvent.ALERT_RESOLVED, alert, now=now, actor=actor)
    service.delete_states(session=session, rule_id=rule.id)


def create_rule(
    *, runtime: Runtime, session: Session, rule_in: RuleCreate, principal: Principal
) -> AlertRule:
    """Validate and store a new rule; the engine picks it up after commit."""
    values = service.validate_or_raise(session=session, rule_in=rule_in)
    check_rule_scope(session, principal, values)
    now = runtime.clock.now()
    rule = service.create(session=session, values=values, now=now)
    _rules_changed(runtime, session, now)
    return rule


def _merge(rule: AlertRule, rule_in: RuleUpdate | Mapping[str, Any]) -> RuleCreate:
    changes = rule_in.model_dump(exclude_unset=True) if isinstance(rule_in, RuleUpdate) else rule_in
    merged = {**service.rule_input(rule), **changes, "code": rule.code}
    try:
        return RuleCreate.model_validate(merged)
    except ValidationError as exc:
        errors = service.pydantic_errors(exc)
        raise Invalid("alerts.rule.invalid", errors=errors, count=len(errors)) from None


def _apply_rule(
    runtime: Runtime,
    session: Session,
    rule: AlertRule,
    values: Mapping[str, Any],
    actor: Principal | None,
    now: datetime,
) -> bool:
    was_enabled, old_kind = rule.enabled, rule.kind
    if was_enabled and not values["enabled"]:
        _retire(runtime, session, rule, Resolution.RULE_DISABLED, actor, now)
    elif old_kind != values["kind"]:
        _retire(runtime, session, rule, Resolution.RULE_CHANGED, actor, now)
    return service.update(session=session, rule=rule, values=values, now=now)


def update_rule(
    *,
    runtime: Runtime,
    session: Session,
    rule: AlertRule,
    rule_in: RuleUpdate,
    principal: Principal,
) -> AlertRule:
    """Change a rule (validated whole). Disabling it, or changing its kind, resolves its open
    alerts; other changes keep them, judged by the new parameters from the next observation."""
    merged = _merge(rule, rule_in)
    values = service.validate_or_raise(session=session, rule_in=merged, exclude=rule.code)
    check_rule_scope(session, principal, values)
    now = runtime.clock.now()
    if _apply_rule(runtime, session, rule, values, principal, now):
        _rules_changed(runtime, session, now)
    return rule


def delete_rule(
    *, runtime: Runtime, session: Session, rule: AlertRule, principal: Principal
) -> None:
    """Delete a rule not named by a composite; its open alerts are resolved, history kept."""
    composites = service.composites_naming(session=session, code=rule.code)
    if composites:
        raise Conflict("alerts.rule.in_composite", code=rule.code, composites=", ".join(composites))
    check_rule_scope(session, principal, service.rule_values(rule))
    now = runtime.clock.now()
    _retire(runtime, session, rule, Resolution.RULE_DELETED, principal, now)
    service.delete_rule(session=session, rule=rule)
    _rules_changed(runtime, session, now)


class _NoAliasLoader(yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML without anchors and aliases (a few aliases can expand to billions of nodes)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def _bad_yaml(key: str, **params: Any) -> Invalid:
    return Invalid(key, errors=[service.field_error("body", key, **params)], **params)


def parse_rules(text: str) -> list[Any]:
    """Parse a rule file: a YAML list of rules, or a mapping with a `rules` list."""
    if len(text.encode("utf-8", "replace")) > MAX_IMPORT_BYTES:
        raise _bad_yaml("alerts.import.too_large", max=MAX_IMPORT_BYTES)
    try:
        document = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0][:200]
        raise _bad_yaml("alerts.import.bad_yaml", line=line, problem=problem) from None
    except (RecursionError, ValueError):
        raise _bad_yaml("alerts.import.bad_yaml", line=0, problem="-") from None
    if isinstance(document, dict) and set(document) <= {"rules", "version"}:
        document = document.get("rules")
    if not isinstance(document, list):
        raise _bad_yaml("alerts.import.not_a_list")
    if len(document) > MAX_IMPORT_RULES:
        raise _bad_yaml("alerts.import.too_many", max=MAX_IMPORT_RULES)
    return document


def _rule_error(index: int, code: str | None, error: dict[str, Any]) -> dict[str, Any]:
    return {**error, "field": f"rules[{index}].{error['field']}", "index": index, "code": code}


def validate_rules(*, session: Session, documents: list[Any]) -> list[dict[str, Any]]:
    """Validate rule documents together (they may name each other); return their values or
    raise 422 listing every invalid rule by index, code and reason."""
    errors: list[dict[str, Any]] = []
    parsed: list[tuple[int, RuleCreate]] = []
    codes: dict[str, int] = {}
    for i, document in enumerate(documents):
        code = document.get("code") if isinstance(document, dict) else None
        code = code if isinstance(code, str) else None
        if not isinstance(document, dict):
            errors.append(_rule_error(i, None, service.field_error("", "alerts.import.not_a_rule")))
            continue
        try:
            rule_in = RuleCreate.model_validate(document)
        except ValidationError as exc:
            errors.extend(_rule_error(i, code, e) for e in service.pydantic_errors(exc))
            continue
        if rule_in.code in codes:
            errors.append(
                _rule_error(
                    i,
                    rule_in.code,
                    service.field_error(
                        "code", "alerts.import.duplicate", first=codes[rule_in.code]
                    ),
                )
            )
            continue
        codes[rule_in.code] = i
        parsed.append((i, rule_in))
    graph = service.get_composites(session=session)
    for _, rule_in in parsed:
        graph.pop(rule_in.code, None)
        if rule_in.kind is RuleKind.COMPOSITE:
            members = rule_in.condition.get("rules")
            if isinstance(members, list):
                graph[rule_in.code] = [str(m) for m in members]

    def known(code: str) -> bool:
        return code in codes or service.get_by_code(session=session, code=code) is not None

    out: list[dict[str, Any]] = []
    for i, rule_in in parsed:
        values, problems = service.check_rule(
            session=session, rule_in=rule_in, known=known, graph=graph
        )
        errors.extend(_rule_error(i, rule_in.code, e) for e in problems)
        if values is not None:
            out.append(values)
    if errors:
        raise Invalid("alerts.import.invalid", errors=errors, count=len(errors))
    return out


def import_rules(
    *,
    runtime: Runtime,
    session: Session,
    text: str,
    principal: Principal = SYSTEM_PRINCIPAL,
    create_only: bool = False,
) -> ImportResult:
    """Import rules from YAML, all or nothing: new codes are created, known ones replaced
    (`create_only`: left as they are, as the profile seed does)."""
    all_values = validate_rules(session=session, documents=parse_rules(text))
    now = runtime.clock.now()
    result = ImportResult(created=[], updated=[], unchanged=[])
    stored = service.get_by_codes(session=session, codes=[v["code"] for v in all_values])
    for values in all_values:
        if principal is not SYSTEM_PRINCIPAL:
            check_rule_scope(session, principal, values)
        rule = stored.get(values["code"])
        if rule is None:
            service.create(session=session, values=values, now=now)
            result.created.append(values["code"])
        elif create_only or service.rule_values(rule) == dict(values):
            result.unchanged.append(values["code"])
        elif _apply_rule(runtime, session, rule, values, principal, now):
            result.updated.append(values["code"])
        else:
            result.unchanged.append(values["code"])
    if result.created or result.updated:
        _rules_changed(runtime, session, now)
    return result


def seed_rules(*, runtime: Runtime, session: Session, profile: str) -> int:
    """Create the profile's rule pack (profiles/<profile>/rules.yaml) where codes are missing;
    rules already there (perhaps tuned by an operator) are left alone. Return how many."""
    file = resources.files("cityops") / "profiles" / profile / RULES_FILE
    if not file.is_file():
        return 0
    result = import_rules(
        runtime=runtime, session=session, text=file.read_text("utf-8"), create_only=True
    )
    return len(result.created)


# --- alert lifecycle -------------------------------------------------------------------------


def acknowledge_alert(
    *, runtime: Runtime, session: Session, alert: Alert, principal: Principal, note: str | None
) -> Alert:
    """Acknowledge an alert."""
    now = runtime.clock.now()
    service.acknowledge(session=session, alert=alert, actor=principal, now=now, note=note)
    publish(runtime, session, AlertsEvent.ALERT_ACKNOWLEDGED, alert, now=now, actor=principal)
    return alert


def snooze_alert(
    *,
    runtime: Runtime,
    session: Session,
    alert: Alert,
    principal: Principal,
    minutes: int | None,
    until: datetime | None,
    note: str | None,
) -> Alert:
    """Snooze an alert for some minutes, or until a time."""
    now = runtime.clock.now()
    end = until if until is not None else now + timedelta(minutes=minutes or 0)
    service.snooze(session=session, alert=alert, actor=principal, now=now, until=end, note=note)
    publish(runtime, session, AlertsEvent.ALERT_SNOOZED, alert, now=now, actor=principal)
    return alert


def resolve_alert(
    *, runtime: Runtime, session: Session, alert: Alert, principal: Principal, note: str | None
) -> Alert:
    """Resolve an alert by hand. The engine opens a new one only once the condition has
    cleared and holds again."""
    now = runtime.clock.now()
    service.resolve(
        session=session,
        alert=alert,
        now=now,
        resolution=Resolution.MANUAL,
        actor=principal,
        note=note,
    )
    publish(runtime, session, AlertsEvent.ALERT_RESOLVED, alert, now=now, actor=principal)
    return alert


def unsnooze_due(*, runtime: Runtime, session: Session) -> int:
    """Wake the alerts whose snooze has ended; return how many."""
    now = runtime.clock.now()
    due = service.get_due_snoozed(session=session, now=now)
    for alert in due:
        service.unsnooze(session=session, alert=alert, now=now)
        publish(runtime, session, AlertsEvent.ALERT_UNSNOOZED, alert, now=now)
    return len(due)
