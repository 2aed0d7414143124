"""The rule kinds as pure state machines: thresholds with hysteresis and minimum duration, rate of
change, geo-fences, composites, schedules, and the index that picks the rules to evaluate."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from cityops.alerts.conditions import (
    OPEN,
    RESOLVE,
    UPDATE,
    Bucket,
    CompiledRule,
    Index,
    Obs,
    Schedule,
    State,
)
from cityops.alerts.enums import CompositeMode, Direction, GeoTrigger, Operator, RuleKind

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
VN = ZoneInfo("Asia/Ho_Chi_Minh")


def rule(kind: RuleKind = RuleKind.THRESHOLD, **fields: Any) -> CompiledRule:
    base: dict[str, Any] = {
        "id": 1,
        "code": "r",
        "kind": kind,
        "entity_type": "T",
        "attribute": "a",
        "units": None,
        "schedule": None,
        "severity": "high",
        "sector": None,
        "department_code": None,
        "policy": {},
        "name_vi": "r",
        "name_en": "r",
    }
    base.update(fields)
    return CompiledRule(**base)


def obs(value: Any, at: datetime, unit: str | None = None) -> Obs:
    return Obs(
        tenant="t",
        entity_id="e",
        entity_type="T",
        attribute="a",
        value=value,
        at=at,
        unit_code=unit,
    )


def past_clear(op: Operator, value: float, limit: float, h: float) -> bool:
    """Whether a value lies past the threshold ∓ hysteresis (written out, not the rule's code)."""
    return {
        Operator.GT: value <= limit - h,
        Operator.GE: value < limit - h,
        Operator.LT: value >= limit + h,
        Operator.LE: value > limit + h,
    }[op]


def meets(op: Operator, value: float, limit: float) -> bool:
    return {
        Operator.GT: value > limit,
        Operator.GE: value >= limit,
        Operator.LT: value < limit,
        Operator.LE: value <= limit,
    }[op]


ops = st.sampled_from([Operator.GT, Operator.GE, Operator.LT, Operator.LE])
levels = st.integers(min_value=0, max_value=40).map(float)


@settings(max_examples=300)
@given(
    op=ops,
    limit=levels,
    h=st.sampled_from([0.0, 1.0, 2.5, 5.0]),
    values=st.lists(levels, min_size=1, max_size=60),
)
def test_threshold_with_hysteresis(
    op: Operator, limit: float, h: float, values: list[float]
) -> None:
    r = rule(op=op, value=limit, hysteresis=h)
    state = State(rule_id=1, tenant="t", entity_id="e")
    open_alerts = 0
    for i, value in enumerate(values):
        was_active = state.active
        what = r.step(state, obs(value, T0 + timedelta(minutes=i)))
        if what == OPEN:
            # Opens only on a value meeting the threshold, and never while an alert is open.
            assert meets(op, value, limit)
            assert not was_active
            open_alerts += 1
        elif what == RESOLVE:
            # Resolves only past the threshold ∓ hysteresis.
            assert past_clear(op, value, limit, h)
            open_alerts -= 1
        elif what == UPDATE:
            assert was_active
            assert not past_clear(op, value, limit, h)
        else:
            assert not was_active
            assert not meets(op, value, limit)
        assert open_alerts == (1 if state.active else 0)


@settings(max_examples=300)
@given(
    limit=levels,
    duration=st.sampled_from([60, 300, 900]),
    steps=st.lists(
        st.tuples(levels, st.integers(min_value=1, max_value=600)), min_size=1, max_size=40
    ),
)
def test_minimum_duration_is_judged_on_observation_times(
    limit: float, duration: int, steps: list[tuple[float, int]]
) -> None:
    r = rule(op=Operator.GT, value=limit, min_duration=timedelta(seconds=duration))
    state = State(rule_id=1, tenant="t", entity_id="e")
    at = T0
    run_start: datetime | None = None  # first observation of the current run meeting the limit
    for value, gap in steps:
        at += timedelta(seconds=gap)
        was_active = state.active
        run_start = (run_start or at) if value > limit else None
        what = r.step(state, obs(value, at))
        if what == OPEN:
            assert run_start is not None
            assert at - run_start >= timedelta(seconds=duration)
        if (
            not was_active
            and run_start is not None
            and at - run_start >= timedelta(seconds=duration)
        ):
            assert what == OPEN
        if what == RESOLVE:
            run_start = None


def test_threshold_on_text_and_numbers_ignores_other_types() -> None:
    text = rule(op=Operator.EQ, value="alarm3", numeric=False)
    state = State(rule_id=1, tenant="t", entity_id="e")
    assert text.step(state, obs("alarm2", T0)) is None
    assert text.step(state, obs("alarm3", T0)) == OPEN
    assert text.step(state, obs("alarm3", T0)) == UPDATE
    assert text.step(state, obs("normal", T0)) == RESOLVE
    number = rule(op=Operator.GT, value=5.0)
    state = State(rule_id=1, tenant="t", entity_id="e")
    for junk in ("9", True, None, float("nan"), {"v": 9}):
        assert number.step(state, obs(junk, T0)) is None
    assert not state.active


def test_pending_threshold_is_confirmed_when_the_value_stays_put() -> None:
    r = rule(op=Operator.GT, value=150.0, min_duration=timedelta(minutes=30))
    state = State(rule_id=1, tenant="t", entity_id="e")
    assert r.step(state, obs(170, T0)) is None
    assert state.pending_since == T0
    assert r.confirm(state, T0 + timedelta(minutes=29)) is None
    assert r.confirm(state, T0 + timedelta(minutes=30)) == OPEN
    assert state.active
    assert state.last_value == 170


def test_schedule_window_across_midnight_and_days() -> None:
    nights = Schedule(days=[1, 2, 3, 4, 5], start=time(22, 0), end=time(6, 0), tz=VN)
    friday_23h = datetime(2026, 11, 20, 23, 0, tzinfo=VN)
    assert nights.allows(friday_23h)
    assert nights.allows(datetime(2026, 11, 20, 5, 59, tzinfo=VN))
    assert not nights.allows(datetime(2026, 11, 20, 6, 0, tzinfo=VN))
    assert not nights.allows(datetime(2026, 11, 21, 23, 0, tzinfo=VN))  # Saturday
    days = Schedule.from_dict({"days": [6, 7]}, VN)
    assert days is not None
    assert days.allows(datetime(2026, 11, 22, 12, 0, tzinfo=VN))
    assert not days.allows(datetime(2026, 11, 23, 12, 0, tzinfo=VN))


def test_outside_the_schedule_nothing_opens_but_open_alerts_resolve() -> None:
    office = Schedule(days=range(1, 8), start=time(8, 0), end=time(17, 0), tz=VN)
    r = rule(op=Operator.GT, value=10.0, schedule=office)
    state = State(rule_id=1, tenant="t", entity_id="e")
    night = datetime(2026, 11, 20, 20, 0, tzinfo=VN)
    assert r.step(state, obs(50, night)) is None
    morning = datetime(2026, 11, 21, 9, 0, tzinfo=VN)
    assert r.step(state, obs(50, morning)) == OPEN
    assert r.step(state, obs(3, morning.replace(hour=19))) == RESOLVE


@settings(max_examples=200)
@given(
    direction=st.sampled_from(list(Direction)),
    limit=st.sampled_from([1.0, 3.0, 5.0]),
    steps=st.lists(
        st.tuples(levels, st.integers(min_value=1, max_value=20)), min_size=1, max_size=40
    ),
)
def test_rate_of_change_over_a_window(
    direction: Direction, limit: float, steps: list[tuple[float, int]]
) -> None:
    window = timedelta(minutes=30)
    r = rule(RuleKind.RATE_OF_CHANGE, window_seconds=window.total_seconds(), limit=limit)
    r.direction = direction
    state = State(rule_id=1, tenant="t", entity_id="e")
    seen: list[tuple[datetime, float]] = []
    at = T0
    for value, gap in steps:
        at += timedelta(minutes=gap)
        seen.append((at, value))
        recent = [v for t, v in seen if t >= at - window]
        rise, fall = value - min(recent), max(recent) - value
        delta = {Direction.RISE: rise, Direction.FALL: fall, Direction.EITHER: max(rise, fall)}[
            direction
        ]
        was_active = state.active
        what = r.step(state, obs(value, at))
        assert (what == OPEN) == (not was_active and delta > limit)
        assert (what == RESOLVE) == (was_active and delta <= limit)


def test_geo_fence_fires_on_crossings_only() -> None:
    enter = rule(
        RuleKind.GEO_FENCE,
        attribute="location",
        fence=frozenset({"26041"}),
        trigger=GeoTrigger.ENTER,
    )
    state = State(rule_id=1, tenant="t", entity_id="e")
    assert enter.step(state, obs(None, T0, "26041")) is None  # first sighting: only recorded
    assert enter.step(state, obs(None, T0, "26080")) is None
    assert enter.step(state, obs(None, T0, "26041")) == OPEN
    assert enter.step(state, obs(None, T0, "26041")) is None
    assert enter.step(state, obs(None, T0, None)) == RESOLVE  # left the province
    leave = rule(
        RuleKind.GEO_FENCE,
        attribute="location",
        fence=frozenset({"26041"}),
        trigger=GeoTrigger.LEAVE,
    )
    state = State(rule_id=1, tenant="t", entity_id="e")
    assert leave.step(state, obs(None, T0, "26041")) is None
    assert leave.step(state, obs(None, T0, "26080")) == OPEN
    assert leave.step(state, obs(None, T0, "26041")) == RESOLVE


def test_composite_all_and_any() -> None:
    both = rule(RuleKind.COMPOSITE, members=(2, 3), member_codes=("a", "b"))
    state = State(rule_id=1, tenant="t", entity_id="e")
    assert both.combine(state, [True, False], T0) is None
    assert both.combine(state, [True, True], T0) == OPEN
    assert state.last_value == ["a", "b"]
    assert both.combine(state, [False, True], T0) == RESOLVE
    either = rule(RuleKind.COMPOSITE, members=(2, 3), member_codes=("a", "b"))
    either.mode = CompositeMode.ANY
    state = State(rule_id=1, tenant="t", entity_id="e")
    assert either.combine(state, [False, True], T0) == OPEN
    assert either.combine(state, [False, False], T0) == RESOLVE


def test_missing_data_opens_offline_and_resolves_online() -> None:
    r = rule(RuleKind.MISSING_DATA, entity_type=None, attribute=None)
    state = State(rule_id=1, tenant="t", entity_id="e")
    assert r.device(state, offline=False, value="online", at=T0) is None
    assert r.device(state, offline=True, value="offline", at=T0) == OPEN
    assert r.device(state, offline=True, value="offline", at=T0) is None
    assert r.device(state, offline=False, value="online", at=T0) == RESOLVE


@settings(max_examples=200)
@given(
    limits=st.lists(st.tuples(ops, levels), min_size=1, max_size=30),
    value=st.floats(min_value=-5, max_value=45, allow_nan=False),
)
def test_the_index_offers_every_threshold_an_observation_meets(
    limits: list[tuple[Operator, float]], value: float
) -> None:
    rules = [rule(id=i, op=op, value=limit) for i, (op, limit) in enumerate(limits, start=1)]
    offered = {r.id for r in Bucket(rules).candidates(value)}
    assert {r.id for r in rules if r.holds(value)} <= offered


def test_the_index_keeps_rules_to_their_units_and_attributes() -> None:
    everywhere = rule(id=1, op=Operator.GT, value=10.0)
    local = rule(id=2, op=Operator.GT, value=10.0, units=frozenset({"26041"}))
    other = rule(id=3, op=Operator.GT, value=10.0, attribute="b")
    index = Index.build([everywhere, local, other])
    assert index.watched == {("T", "a"), ("T", "b")}
    assert {r.id for r in index.candidates(obs(20.0, T0, "26041"))} == {1, 2}
    assert {r.id for r in index.candidates(obs(20.0, T0, "26080"))} == {1}
    assert index.candidates(obs(5.0, T0, "26041")) == []
