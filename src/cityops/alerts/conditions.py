"""Compiled rules and their evaluation: pure code, no I/O.

The engine (flows.py) compiles the enabled rules into an `Index`, feeds each observation to the
rules the index names for it, and persists what they decide. A rule's `step` changes the
per-entity `State` and answers OPEN, RESOLVE, UPDATE (the open alert's value moved) or None.

The index keeps thresholds of each (entity type, attribute, unit) sorted by their limit, so an
observation reaches only the rules whose limit it passes, plus the rules already holding (or
pending) on that entity: the cost per observation does not grow with the number of quiet rules.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from cityops.alerts.enums import CompositeMode, Direction, GeoTrigger, Operator, RuleKind

OPEN = "open"
RESOLVE = "resolve"
UPDATE = "update"

# Rate-of-change samples kept per entity: enough for an hour of one-minute data, bounded so a
# chatty sensor cannot grow the state without limit.
MAX_SAMPLES = 256


@dataclass(slots=True)
class Obs:
    """One observation (or device status change) as the rules see it."""

    tenant: str
    entity_id: str
    entity_type: str | None
    attribute: str | None
    value: Any
    at: datetime
    unit_code: str | None = None
    lat: float | None = None
    lon: float | None = None
    correlation_id: str | None = None


@dataclass(slots=True)
class State:
    """What one rule remembers of one entity."""

    rule_id: int
    tenant: str
    entity_id: str
    active: bool = False
    pending_since: datetime | None = None
    alert_id: int | None = None
    last_value: Any = None
    last_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # Changed since it was last written to the database.
    dirty: bool = False
    # When the open alert's value was last written (value updates are rate-limited).
    value_written_at: datetime | None = None


class Schedule:
    """Days of the week (1 = Monday) and a local time window [start, end), which may cross
    midnight; judged on the observation's local time."""

    __slots__ = ("days", "end", "start", "tz")

    def __init__(
        self, *, days: Iterable[int], start: time | None, end: time | None, tz: tzinfo
    ) -> None:
        self.days = frozenset(days)
        self.start = start
        self.end = end
        self.tz = tz

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, tz: tzinfo) -> Schedule | None:
        """Build a schedule from its stored form (None: always)."""
        if not data:
            return None
        start, end = data.get("start"), data.get("end")
        return cls(
            days=data.get("days") or range(1, 8),
            start=time.fromisoformat(start) if start else None,
            end=time.fromisoformat(end) if end else None,
            tz=tz,
        )

    def allows(self, at: datetime) -> bool:
        """Tell whether an instant falls inside the schedule."""
        local = at.astimezone(self.tz)
        if local.isoweekday() not in self.days:
            return False
        if self.start is None or self.end is None:
            return True
        now = local.time()
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


def is_number(value: Any) -> bool:
    """Tell whether a value is a finite number (true/false are not numbers here)."""
    kind = type(value)
    return (kind is int or kind is float) and value == value and abs(value) != float("inf")


@dataclass(slots=True, eq=False)
class CompiledRule:
    """A rule ready to evaluate: its scope resolved to unit codes, its parameters typed."""

    id: int
    code: str
    kind: RuleKind
    entity_type: str | None
    attribute: str | None
    # The units the rule applies to (descendants and area members included); None: everywhere.
    units: frozenset[str] | None
    schedule: Schedule | None
    severity: str
    sector: str | None
    department_code: str | None
    policy: dict[str, Any]
    name_vi: str
    name_en: str
    # threshold
    op: Operator = Operator.GT
    value: Any = None
    numeric: bool = True
    hysteresis: float = 0.0
    min_duration: timedelta = timedelta(0)
    # rate of change
    window_seconds: float = 0.0
    limit: float = 0.0
    direction: Direction = Direction.EITHER
    # geo-fence
    fence: frozenset[str] = frozenset()
    trigger: GeoTrigger = GeoTrigger.ENTER
    # composite: member rule ids and codes
    members: tuple[int, ...] = ()
    member_codes: tuple[str, ...] = ()
    mode: CompositeMode = CompositeMode.ALL

    def covers(self, unit_code: str | None) -> bool:
        """Tell whether an entity of this unit is in the rule's scope."""
        return self.units is None or (unit_code is not None and unit_code in self.units)

    def allows(self, at: datetime) -> bool:
        """Tell whether the rule may open an alert at this instant (its schedule)."""
        return self.schedule is None or self.schedule.allows(at)

    # --- threshold -------------------------------------------------------------------------

    def holds(self, value: Any) -> bool:
        """Tell whether a value meets the threshold."""
        op, limit = self.op, self.value
        if op is Operator.GT:
            return bool(value > limit)
        if op is Operator.GE:
            return bool(value >= limit)
        if op is Operator.LT:
            return bool(value < limit)
        if op is Operator.LE:
            return bool(value <= limit)
        if self.numeric:
            return bool(value == limit)
        return type(value) is type(limit) and value == limit

    def clears(self, value: Any) -> bool:
        """Tell whether a value is past the threshold ∓ hysteresis (the alert may resolve)."""
        op, limit, h = self.op, self.value, self.hysteresis
        if op is Operator.GT:
            return bool(value <= limit - h)
        if op is Operator.GE:
            return bool(value < limit - h)
        if op is Operator.LT:
            return bool(value >= limit + h)
        if op is Operator.LE:
            return bool(value > limit + h)
        if self.numeric:
            return bool(abs(value - limit) > h)
        return not (type(value) is type(limit) and value == limit)

    def step(self, state: State, obs: Obs) -> str | None:
        """Feed one observation of this rule's attribute; return what the alert should do."""
        kind = self.kind
        if kind is RuleKind.THRESHOLD:
            return self._threshold(state, obs.value, obs.at)
        if kind is RuleKind.RATE_OF_CHANGE:
            return self._rate(state, obs.value, obs.at)
        if kind is RuleKind.GEO_FENCE:
            return self._geo(state, obs.unit_code, obs.at)
        return None

    def _activate(self, state: State, value: Any, at: datetime) -> str:
        state.active = True
        state.pending_since = None
        state.last_value, state.last_at = value, at
        state.dirty = True
        return OPEN

    def _deactivate(self, state: State, value: Any, at: datetime) -> str:
        state.active = False
        state.pending_since = None
        state.last_value, state.last_at = value, at
        state.dirty = True
        return RESOLVE

    def _threshold(self, state: State, value: Any, at: datetime) -> str | None:
        if self.numeric and not is_number(value):
            return None
        if state.active:
            if self.clears(value):
                return self._deactivate(state, value, at)
            state.last_value, state.last_at = value, at
            return UPDATE
        if self.holds(value) and self.allows(at):
            if self.min_duration:
                if state.pending_since is None or at < state.pending_since:
                    state.pending_since = at
                    state.last_value, state.last_at = value, at
                    state.dirty = True
                    return None
                state.last_value, state.last_at = value, at
                if at - state.pending_since < self.min_duration:
                    return None
            return self._activate(state, value, at)
        if state.pending_since is not None:
            state.pending_since = None
            state.dirty = True
        return None

    def confirm(self, state: State, now: datetime) -> str | None:
        """Open a pending threshold whose minimum duration has passed by `now`.

        The context store publishes a value only when it changes, so a value that stays put
        past the limit sends nothing more: silence means "unchanged", and the duration is
        complete once `now` is far enough past the first observation that met the limit.
        """
        if (
            self.kind is not RuleKind.THRESHOLD
            or state.active
            or state.pending_since is None
            or now - state.pending_since < self.min_duration
            or not self.allows(now)
        ):
            return None
        return self._activate(state, state.last_value, now)

    # --- rate of change --------------------------------------------------------------------

    def _rate(self, state: State, value: Any, at: datetime) -> str | None:
        if not is_number(value):
            return None
        samples: list[list[float]] = state.data.setdefault("samples", [])
        ts = at.timestamp()
        if samples and ts < samples[-1][0]:
            return None  # late data: the window is judged in time order
        horizon = ts - self.window_seconds
        old = 0
        while old < len(samples) and samples[old][0] < horizon:
            old += 1
        if old:
            del samples[:old]
        samples.append([ts, float(value)])
        if len(samples) > MAX_SAMPLES:
            del samples[: len(samples) - MAX_SAMPLES]
        state.dirty = True
        values = [sample[1] for sample in samples]
        rise = value - min(values)
        fall = max(values) - value
        if self.direction is Direction.RISE:
            delta = rise
        elif self.direction is Direction.FALL:
            delta = fall
        else:
            delta = max(rise, fall)
        if state.active:
            if delta <= self.limit - self.hysteresis:
                return self._deactivate(state, value, at)
            state.last_value, state.last_at = value, at
            return UPDATE
        if delta > self.limit and self.allows(at):
            return self._activate(state, value, at)
        return None

    # --- geo-fence -------------------------------------------------------------------------

    def _geo(self, state: State, unit_code: str | None, at: datetime) -> str | None:
        inside = unit_code is not None and unit_code in self.fence
        previous = state.data.get("inside")
        if previous is not inside:
            state.data["inside"] = inside
            state.dirty = True
        holds = inside if self.trigger is GeoTrigger.ENTER else not inside
        value = {"unit_code": unit_code, "inside": inside}
        if state.active:
            if not holds:
                return self._deactivate(state, value, at)
            return None
        # Only a crossing fires: the first sighting of an entity only records its side.
        if holds and previous is not None and previous is not inside and self.allows(at):
            return self._activate(state, value, at)
        return None

    # --- missing data and composites ---------------------------------------------------------

    def device(self, state: State, *, offline: bool, value: Any, at: datetime) -> str | None:
        """Feed a device status change (missing-data rules)."""
        if offline and not state.active and self.allows(at):
            return self._activate(state, value, at)
        if not offline and state.active:
            return self._deactivate(state, value, at)
        return None

    def combine(self, state: State, firing: Sequence[bool], at: datetime) -> str | None:
        """Feed the members' firing flags on one entity (composite rules)."""
        holds = all(firing) if self.mode is CompositeMode.ALL else any(firing)
        value = [code for code, on in zip(self.member_codes, firing, strict=True) if on]
        if state.active and not holds:
            return self._deactivate(state, value, at)
        if not state.active and holds and self.allows(at):
            return self._activate(state, value, at)
        return None


class Bucket:
    """The rules of one (entity type, attribute, unit): thresholds sorted by limit, the rest
    in a list."""

    __slots__ = ("down", "down_limits", "other", "up", "up_limits")

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        up: list[CompiledRule] = []
        down: list[CompiledRule] = []
        other: list[CompiledRule] = []
        for rule in rules:
            if rule.kind is RuleKind.THRESHOLD and rule.numeric and rule.op is not Operator.EQ:
                (up if rule.op in (Operator.GT, Operator.GE) else down).append(rule)
            else:
                other.append(rule)
        up.sort(key=lambda r: float(r.value))
        down.sort(key=lambda r: float(r.value))
        self.up = up
        self.up_limits = [float(r.value) for r in up]
        self.down = down
        self.down_limits = [float(r.value) for r in down]
        self.other = other

    def candidates(self, value: Any) -> list[CompiledRule]:
        """Return the rules an observation of this value may make hold (thresholds it passes,
        and every rule of another kind)."""
        if not is_number(value):
            return self.other
        found = self.up[: bisect.bisect_right(self.up_limits, value)]
        cut = bisect.bisect_left(self.down_limits, value)
        if cut < len(self.down):
            found = [*found, *self.down[cut:]]
        if self.other:
            found = [*found, *self.other]
        return found


@dataclass
class Index:
    """The enabled rules, arranged for evaluation."""

    rules: dict[int, CompiledRule] = field(default_factory=dict)
    # (entity type, attribute) → unit code (None: any unit) → bucket.
    observed: dict[tuple[str, str], dict[str | None, Bucket]] = field(default_factory=dict)
    # Missing-data rules by entity type (None: any type).
    devices: dict[str | None, list[CompiledRule]] = field(default_factory=dict)
    # Rule id → the composites naming it as a member.
    dependents: dict[int, list[CompiledRule]] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: Iterable[CompiledRule]) -> Index:
        """Arrange compiled rules for evaluation."""
        index = cls()
        grouped: dict[tuple[str, str], dict[str | None, list[CompiledRule]]] = {}
        for rule in rules:
            index.rules[rule.id] = rule
            if rule.kind is RuleKind.MISSING_DATA:
                index.devices.setdefault(rule.entity_type, []).append(rule)
            elif rule.kind is RuleKind.COMPOSITE:
                for member in rule.members:
                    index.dependents.setdefault(member, []).append(rule)
            elif rule.entity_type and rule.attribute:
                by_unit = grouped.setdefault((rule.entity_type, rule.attribute), {})
                # A geo-fence watches where the entity goes, not where the rule applies.
                units = None if rule.kind is RuleKind.GEO_FENCE else rule.units
                for unit in (None,) if units is None else sorted(units):
                    by_unit.setdefault(unit, []).append(rule)
        for key, by_unit_rules in grouped.items():
            index.observed[key] = {unit: Bucket(r) for unit, r in by_unit_rules.items()}
        return index

    @property
    def watched(self) -> frozenset[tuple[str, str]]:
        """The (entity type, attribute) pairs some rule observes."""
        return frozenset(self.observed)

    def candidates(self, obs: Obs) -> list[CompiledRule]:
        """Return the rules that may change on this observation (without the ones already
        holding on the entity, which the engine adds from its state)."""
        return self.candidates_for(obs.entity_type, obs.attribute, obs.unit_code, obs.value)

    def candidates_for(
        self, entity_type: Any, attribute: Any, unit_code: Any, value: Any
    ) -> list[CompiledRule]:
        """`candidates` for the parts of an observation (the hot path allocates nothing)."""
        by_unit = self.observed.get((entity_type, attribute))
        if not by_unit:
            return []
        anywhere = by_unit.get(None)
        found = anywhere.candidates(value) if anywhere is not None else []
        if unit_code is not None:
            local = by_unit.get(unit_code)
            if local is not None:
                nearby = local.candidates(value)
                if nearby:
                    found = [*found, *nearby] if found else nearby
        return found
