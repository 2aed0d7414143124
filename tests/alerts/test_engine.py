"""The engine on the event stream: every rule kind fed through the real write pipeline and device
health job, one open alert per rule and entity, snoozes, rule changes, and a restart that keeps
hysteresis and duration state."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cityops.alerts import flows
from cityops.alerts.models import Alert, AlertEvent, RuleState
from cityops.app import create_app
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime

from .conftest import API, LONG_KHANH, TAM_HIEP, TRAN_BIEN, Observe

_ticks = itertools.count(1)
SENSOR = "urn:ngsi-ld:TestSensor:s1"


def _run_jobs(runtime: Runtime) -> None:
    # Each call is a moment far enough after the previous one for every job to be due.
    runtime.jobs.run_due(now=next(_ticks) * 1_000_000.0)


def _alerts(runtime: Runtime, entity_id: str = SENSOR) -> list[Alert]:
    with unit_of_work(runtime.session_factory) as session:
        return list(
            session.scalars(select(Alert).where(Alert.entity_id == entity_id).order_by(Alert.id))
        )


def _history(runtime: Runtime, alert_id: int) -> list[str]:
    with unit_of_work(runtime.session_factory) as session:
        return list(
            session.scalars(
                select(AlertEvent.kind)
                .where(AlertEvent.alert_id == alert_id)
                .order_by(AlertEvent.id)
            )
        )


def test_threshold_opens_updates_and_resolves_past_hysteresis(
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
    alert_events: list[Event],
) -> None:
    rule = make_rule()
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, level=5)
    observe(SENSOR, "TestSensor", t + timedelta(minutes=1), level=12)
    engine.process_pending()
    (alert,) = _alerts(runtime)
    assert (alert.status, alert.rule_id, alert.unit_code) == ("open", rule["id"], "26041")
    assert alert.first_value == 12
    assert alert.opened_at == t + timedelta(minutes=1)
    assert alert.department_code == "SNNMT"  # the environment sector's department
    # In the hysteresis band (8 < v ≤ 10): still open; a value update within 5 minutes is not
    # written, one later is.
    observe(SENSOR, "TestSensor", t + timedelta(minutes=2), level=9)
    observe(SENSOR, "TestSensor", t + timedelta(minutes=8), level=9.5)
    engine.process_pending()
    (alert,) = _alerts(runtime)
    assert alert.status == "open"
    assert alert.last_value == 9.5
    assert _history(runtime, alert.id) == ["opened", "value_updated"]
    observe(SENSOR, "TestSensor", t + timedelta(minutes=9), level=8)
    engine.process_pending()
    (alert,) = _alerts(runtime)
    assert alert.status == "resolved"
    assert alert.resolution == "auto"
    assert alert.open_key is None
    assert alert.resolved_at == t + timedelta(minutes=9)
    assert _history(runtime, alert.id) == ["opened", "value_updated", "resolved"]
    assert [e.type for e in alert_events] == ["alerts.alert_opened", "alerts.alert_resolved"]
    opened = alert_events[0]
    assert opened.data["policy"] == {
        "incident": {"category": "other", "department_code": None},
        "notify": ["ioc"],
    }
    assert opened.data["value"] == 12
    assert opened.data["rule_code"] == "test-level-high"


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=20), st.booleans()), min_size=1, max_size=12
    )
)
def test_never_two_open_alerts_for_one_rule_and_entity(
    steps: list[tuple[int, bool]],
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    if not runtime.caches.get("rule-made"):
        make_rule()
        runtime.caches["rule-made"] = True
    entity = f"urn:ngsi-ld:TestSensor:{uuid.uuid4().hex[:8]}"
    t = clock.now()
    above = False
    for i, (value, evaluate_now) in enumerate(steps):
        observe(entity, "TestSensor", t + timedelta(minutes=i), point=TRAN_BIEN, level=value)
        # Batches of every size: an alert may open and resolve within one batch.
        if evaluate_now:
            engine.process_pending()
        above = value > 10 or (above and value > 8)
    engine.process_pending()
    alerts = _alerts(runtime, entity)
    assert sum(1 for a in alerts if a.status != "resolved") == (1 if above else 0)
    # Every crossing opened exactly one alert, with the value that crossed.
    crossings, was = [], False
    for value, _ in steps:
        now = value > 10 or (was and value > 8)
        if now and not was:
            crossings.append(value)
        was = now
    assert [a.first_value for a in alerts] == crossings


def test_minimum_duration_and_confirmation_of_a_steady_value(
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    make_rule(condition={"op": ">", "value": 10, "min_duration_seconds": 600})
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, level=15)
    observe(SENSOR, "TestSensor", t + timedelta(minutes=5), level=16)
    engine.process_pending()
    assert _alerts(runtime) == []
    # A dip resets the duration.
    observe(SENSOR, "TestSensor", t + timedelta(minutes=6), level=9)
    observe(SENSOR, "TestSensor", t + timedelta(minutes=7), level=14)
    observe(SENSOR, "TestSensor", t + timedelta(minutes=16), level=15)
    engine.process_pending()
    assert _alerts(runtime) == []
    observe(SENSOR, "TestSensor", t + timedelta(minutes=17), level=14.5)
    engine.process_pending()
    (alert,) = _alerts(runtime)
    assert alert.opened_at == t + timedelta(minutes=17)
    # A value that stays put sends no more events: the job confirms it once the time is up.
    other = "urn:ngsi-ld:TestSensor:steady"
    observe(other, "TestSensor", t + timedelta(minutes=20), point=TRAN_BIEN, level=30)
    engine.process_pending()
    clock.set(t + timedelta(minutes=29))
    _run_jobs(runtime)
    assert _alerts(runtime, other) == []
    clock.set(t + timedelta(minutes=30))
    _run_jobs(runtime)
    (steady,) = _alerts(runtime, other)
    assert steady.status == "open"
    assert steady.first_value == 30


def test_rate_of_change(
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    make_rule(
        code="test-level-rise",
        kind="rate_of_change",
        condition={"window_minutes": 30, "limit": 0.5, "direction": "rise"},
    )
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, level=1.0)
    observe(SENSOR, "TestSensor", t + timedelta(minutes=10), level=1.3)
    engine.process_pending()
    assert _alerts(runtime) == []
    observe(SENSOR, "TestSensor", t + timedelta(minutes=20), level=1.7)
    engine.process_pending()
    (alert,) = _alerts(runtime)
    assert alert.kind == "rate_of_change"
    assert alert.status == "open"
    # Level, no longer rising within the window: resolves.
    observe(SENSOR, "TestSensor", t + timedelta(minutes=55), level=1.75)
    engine.process_pending()
    assert _alerts(runtime)[0].status == "resolved"


def test_geo_fence_enter_and_leave(
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    make_rule(
        code="test-vehicle-in-bien-hoa",
        kind="geo_fence",
        entity_type="Vehicle",
        attribute=None,
        condition={"trigger": "enter", "area_code": "bien-hoa-cu"},
    )
    truck = "urn:ngsi-ld:Vehicle:rac-01"
    t = clock.now()
    observe(truck, "Vehicle", t, point=LONG_KHANH, speed=40)
    engine.process_pending()
    observe(truck, "Vehicle", t + timedelta(minutes=30), point=TRAN_BIEN)
    engine.process_pending()
    (alert,) = _alerts(runtime, truck)
    assert (alert.status, alert.attribute, alert.unit_code) == ("open", "location", "26041")
    # Moving inside the fence changes nothing; leaving it resolves.
    observe(truck, "Vehicle", t + timedelta(minutes=40), point=TAM_HIEP)
    engine.process_pending()
    assert _alerts(runtime, truck)[0].status == "open"
    observe(truck, "Vehicle", t + timedelta(minutes=50), point=LONG_KHANH)
    engine.process_pending()
    assert _alerts(runtime, truck)[0].status == "resolved"


def test_composite_fires_when_all_members_fire_on_the_same_entity(
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    make_rule(code="test-hot", attribute="temperature", condition={"op": ">", "value": 35})
    make_rule(code="test-dry", attribute="humidity", condition={"op": "<", "value": 0.3})
    make_rule(
        code="test-fire-weather",
        kind="composite",
        entity_type=None,
        attribute=None,
        condition={"mode": "all", "rules": ["test-hot", "test-dry"]},
        severity="critical",
    )
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, temperature=37, humidity=0.5)
    engine.process_pending()
    assert [a.rule_code for a in _alerts(runtime)] == ["test-hot"]
    observe(SENSOR, "TestSensor", t + timedelta(minutes=5), humidity=0.2)
    observe("urn:ngsi-ld:TestSensor:s2", "TestSensor", t, point=TRAN_BIEN, humidity=0.1)
    engine.process_pending()
    alerts = {a.rule_code: a for a in _alerts(runtime)}
    assert set(alerts) == {"test-hot", "test-dry", "test-fire-weather"}
    fire = alerts["test-fire-weather"]
    assert fire.severity == "critical"
    assert fire.first_value == ["test-hot", "test-dry"]
    assert fire.unit_code == "26041"
    # Another entity with one member firing has no composite alert.
    assert [a.rule_code for a in _alerts(runtime, "urn:ngsi-ld:TestSensor:s2")] == ["test-dry"]
    observe(SENSOR, "TestSensor", t + timedelta(minutes=10), temperature=30)
    engine.process_pending()
    alerts = {a.rule_code: a for a in _alerts(runtime)}
    assert alerts["test-fire-weather"].status == "resolved"
    assert alerts["test-dry"].status == "open"


def test_schedule_limits_opening_not_resolving(
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    # T0 is 10:00 in Đồng Nai: inside 08:00–12:00, outside 12:00–18:00.
    make_rule(schedule={"start": "12:00", "end": "18:00"})
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, level=20)
    engine.process_pending()
    assert _alerts(runtime) == []
    observe(SENSOR, "TestSensor", t + timedelta(hours=3), level=21)  # 13:00
    engine.process_pending()
    (_alert,) = _alerts(runtime)
    observe(SENSOR, "TestSensor", t + timedelta(hours=9), level=1)  # 19:00
    engine.process_pending()
    assert _alerts(runtime)[0].status == "resolved"


def test_device_offline_opens_and_online_resolves(
    client: TestClient,
    admin: dict[str, str],
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    body = {
        "device_id": "dn-test-offline",
        "name": "Trạm thử",
        "entity_type": "AirQualityObserved",
        "department_code": "SNNMT",
        "lat": TRAN_BIEN[0],
        "lon": TRAN_BIEN[1],
        "interval_seconds": 60,
        "attributes": [{"key": "pm25", "unit_code": "GQ"}],
    }
    created = client.post(f"{API}/ingest/devices", json=body, headers=admin)
    assert created.status_code == 201, created.text
    device = created.json()
    url = f"{API}/ingest/{device['device_id']}"
    headers = {"X-Device-Key": device["key"]}
    assert client.post(url, json={"pm25": 12}, headers=headers).status_code == 200
    clock.advance(timedelta(seconds=121))
    _run_jobs(runtime)
    engine.process_pending()
    (alert,) = _alerts(runtime, device["entity_id"])
    assert (alert.rule_code, alert.severity, alert.status) == ("device-offline", "low", "open")
    assert alert.policy == {"incident": None, "notify": ["ioc"]}
    assert alert.unit_code == "26041"
    assert alert.department_code == "SKHCN"
    assert client.post(url, json={"pm25": 13}, headers=headers).status_code == 200
    engine.process_pending()
    assert _alerts(runtime, device["entity_id"])[0].status == "resolved"


def test_snoozed_alert_wakes_up_and_still_resolves_by_itself(
    client: TestClient,
    admin_login: Callable[[], dict[str, str]],
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
    alert_events: list[Event],
) -> None:
    admin = admin_login()
    make_rule()
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, level=20)
    engine.process_pending()
    (alert,) = _alerts(runtime)
    base = f"{API}/alerts/{alert.id}"
    assert client.post(f"{base}/acknowledge", headers=admin).json()["status"] == "acknowledged"
    snoozed = client.post(f"{base}/snooze", json={"minutes": 30}, headers=admin).json()
    assert snoozed["status"] == "snoozed"
    clock.advance(timedelta(minutes=29))
    _run_jobs(runtime)
    admin = admin_login()
    assert client.get(base, headers=admin).json()["status"] == "snoozed"
    clock.advance(timedelta(minutes=1))
    _run_jobs(runtime)
    woken = client.get(base, headers=admin).json()
    assert woken["status"] == "acknowledged"
    assert woken["snoozed_until"] is None
    assert [h["kind"] for h in woken["history"]] == [
        "opened",
        "acknowledged",
        "snoozed",
        "unsnoozed",
    ]
    # Snoozed again, the alert resolves when the condition clears.
    client.post(f"{base}/snooze", json={"minutes": 60}, headers=admin)
    observe(SENSOR, "TestSensor", clock.now(), level=1)
    engine.process_pending()
    assert client.get(base, headers=admin).json()["status"] == "resolved"
    assert [e.type for e in alert_events] == [
        "alerts.alert_opened",
        "alerts.alert_acknowledged",
        "alerts.alert_snoozed",
        "alerts.alert_unsnoozed",
        "alerts.alert_snoozed",
        "alerts.alert_resolved",
    ]


def test_a_manually_resolved_alert_is_not_reopened_until_the_condition_clears(
    client: TestClient,
    admin: dict[str, str],
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    make_rule()
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, level=20)
    engine.process_pending()
    (alert,) = _alerts(runtime)
    done = client.post(f"{API}/alerts/{alert.id}/resolve", json={"note": "đã xử lý"}, headers=admin)
    assert done.json()["resolution"] == "manual"
    observe(SENSOR, "TestSensor", t + timedelta(minutes=1), level=21)
    engine.process_pending()
    assert len(_alerts(runtime)) == 1
    observe(SENSOR, "TestSensor", t + timedelta(minutes=2), level=2)
    observe(SENSOR, "TestSensor", t + timedelta(minutes=3), level=22)
    engine.process_pending()
    assert [a.status for a in _alerts(runtime)] == ["resolved", "open"]


def test_disabling_a_rule_resolves_its_alerts_and_it_stops_firing(
    client: TestClient,
    admin: dict[str, str],
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    rule = make_rule()
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, level=20)
    engine.process_pending()
    off = client.patch(f"{API}/rules/{rule['id']}", json={"enabled": False}, headers=admin)
    assert off.status_code == 200
    (alert,) = _alerts(runtime)
    assert alert.resolution == "rule_disabled"
    observe(SENSOR, "TestSensor", t + timedelta(minutes=1), level=5)
    observe(SENSOR, "TestSensor", t + timedelta(minutes=2), level=25)
    engine.process_pending()
    assert len(_alerts(runtime)) == 1
    # Enabled again, with a new limit: the next crossing opens an alert.
    on = client.patch(
        f"{API}/rules/{rule['id']}",
        json={"enabled": True, "condition": {"op": ">", "value": 30}},
        headers=admin,
    )
    assert on.status_code == 200
    observe(SENSOR, "TestSensor", t + timedelta(minutes=3), level=31)
    engine.process_pending()
    assert [a.status for a in _alerts(runtime)] == ["resolved", "open"]


def test_a_restart_keeps_duration_and_hysteresis_state(
    settings: Settings,
    app: FastAPI,
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    make_rule(condition={"op": ">", "value": 10, "hysteresis": 2, "min_duration_seconds": 600})
    t = clock.now()
    observe(SENSOR, "TestSensor", t, point=TRAN_BIEN, level=15)
    observe("urn:ngsi-ld:TestSensor:s2", "TestSensor", t, point=TRAN_BIEN, level=15)
    observe("urn:ngsi-ld:TestSensor:s2", "TestSensor", t + timedelta(minutes=10), level=16)
    engine.process_pending()
    assert [a.entity_id for a in _alerts(runtime, "urn:ngsi-ld:TestSensor:s2")] == [
        "urn:ngsi-ld:TestSensor:s2"
    ]
    # A new process on the same database.
    second = create_app(settings, clock=clock)
    try:
        runtime2: Runtime = second.state.runtime
        engine2 = flows.engine_of(runtime2)
        from cityops.context import flows as context_flows

        def write(entity_id: str, minutes: int, level: float) -> None:
            with unit_of_work(runtime2.session_factory) as session:
                context_flows.write_entities(
                    runtime=runtime2,
                    session=session,
                    tenant="default",
                    entities=[
                        {
                            "id": entity_id,
                            "type": "TestSensor",
                            "level": {
                                "type": "Property",
                                "value": level,
                                "observedAt": (t + timedelta(minutes=minutes)).isoformat(),
                            },
                        }
                    ],
                )

        # The pending duration started before the restart is honoured.
        write(SENSOR, 10, 14)
        # The open alert survives: a value in the hysteresis band keeps it open...
        write("urn:ngsi-ld:TestSensor:s2", 11, 9)
        engine2.process_pending()
        assert [a.status for a in _alerts(runtime2)] == ["open"]
        (s2,) = _alerts(runtime2, "urn:ngsi-ld:TestSensor:s2")
        assert s2.status == "open"
        # ...and one past it resolves that same alert.
        write("urn:ngsi-ld:TestSensor:s2", 12, 7)
        engine2.process_pending()
        assert [a.status for a in _alerts(runtime2, "urn:ngsi-ld:TestSensor:s2")] == ["resolved"]
        with unit_of_work(runtime2.session_factory) as session:
            assert session.scalar(select(func.count()).select_from(RuleState)) >= 2
    finally:
        second.state.runtime.engine.dispose()


def test_rules_apply_within_their_units_and_areas(
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    make_rule(code="test-old-bien-hoa", unit_codes=["731"])  # the former city: today's wards
    make_rule(code="test-long-khanh-area", area_code="long-khanh-cu")
    t = clock.now()
    here, there = "urn:ngsi-ld:TestSensor:bh", "urn:ngsi-ld:TestSensor:lk"
    observe(here, "TestSensor", t, point=TAM_HIEP, level=20)
    observe(there, "TestSensor", t, point=LONG_KHANH, level=20)
    engine.process_pending()
    assert [a.rule_code for a in _alerts(runtime, here)] == ["test-old-bien-hoa"]
    assert [a.rule_code for a in _alerts(runtime, there)] == ["test-long-khanh-area"]


def test_deleting_a_rule_resolves_its_alerts_and_keeps_their_history(
    client: TestClient,
    admin: dict[str, str],
    observe: Observe,
    engine: flows.Engine,
    runtime: Runtime,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
) -> None:
    rule = make_rule()
    observe(SENSOR, "TestSensor", clock.now(), point=TRAN_BIEN, level=20)
    engine.process_pending()
    assert client.delete(f"{API}/rules/{rule['id']}", headers=admin).status_code == 204
    (alert,) = _alerts(runtime)
    assert (alert.rule_id, alert.rule_code, alert.resolution) == (
        None,
        "test-level-high",
        "rule_deleted",
    )
    assert _history(runtime, alert.id) == ["opened", "resolved"]
    observe(SENSOR, "TestSensor", clock.now() + timedelta(minutes=1), level=30)
    engine.process_pending()
    assert len(_alerts(runtime)) == 1


def test_synchronous_evaluation_setting(
    settings: Settings, clock: FrozenClock, make_rule: Callable[..., dict[str, Any]]
) -> None:
    make_rule()
    application = create_app(settings.model_copy(update={"alerts_synchronous": True}), clock=clock)
    try:
        runtime2: Runtime = application.state.runtime
        _write(runtime2, SENSOR, clock.now(), 25)
        (alert,) = _alerts(runtime2)
        assert alert.status == "open"
    finally:
        application.state.runtime.engine.dispose()


def test_the_evaluator_thread_runs_with_the_server(
    settings: Settings, clock: FrozenClock, make_rule: Callable[..., dict[str, Any]]
) -> None:
    make_rule()
    application = create_app(settings.model_copy(update={"background_jobs": True}), clock=clock)
    runtime2: Runtime = application.state.runtime
    try:
        with TestClient(application):
            _write(runtime2, SENSOR, clock.now(), 25)
            deadline = time.monotonic() + 15
            while not _alerts(runtime2) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [a.status for a in _alerts(runtime2)] == ["open"]
        assert not flows.engine_of(runtime2).running  # stopped with the server
    finally:
        runtime2.engine.dispose()


def _write(runtime: Runtime, entity_id: str, at: Any, level: float) -> None:
    from cityops.context import flows as context_flows

    with unit_of_work(runtime.session_factory) as session:
        context_flows.write_entities(
            runtime=runtime,
            session=session,
            tenant="default",
            entities=[
                {
                    "id": entity_id,
                    "type": "TestSensor",
                    "location": {
                        "type": "GeoProperty",
                        "value": {"type": "Point", "coordinates": [TRAN_BIEN[1], TRAN_BIEN[0]]},
                    },
                    "level": {"type": "Property", "value": level, "observedAt": at.isoformat()},
                }
            ],
        )
