"""Several workers on one database: entity changes and stream wake-ups fanned out (PostgreSQL:
LISTEN/NOTIFY; SQLite: the `fanout_message` table), one rule engine (the leader's) for every
worker's observations, a new leader when it stops, and jobs run on the leader only. Two apps in
this process stand for two workers: each has its own engine, write gate and lock files, so they
meet as two processes would.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from cityops.alerts import flows
from cityops.alerts.models import Alert
from cityops.app import create_app
from cityops.context import flows as context_flows
from cityops.context.models import Entity
from cityops.core import fanout as fanout_module
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.fanout import Fanout, fanout_of
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL

from ..conftest import TEST_PASSWORD
from ..web.live import LiveServer, SseClient
from .conftest import TRAN_BIEN, iso

API = "/api/v1"
NGSI = "/ngsi-ld/v1"
SENSOR = "urn:ngsi-ld:TestSensor:w1"
BIEN_HOA = (106.843, 10.957)  # GeoJSON order: a ward of former Biên Hòa
LONG_KHANH = (107.245, 10.935)  # a ward of former Long Khánh


class Worker:
    """One app with its lifespan running (listening, competing for the lead)."""

    def __init__(self, settings: Settings, clock: FrozenClock) -> None:
        self.app: FastAPI = create_app(settings, clock=clock)
        self.client = TestClient(self.app)
        self.client.__enter__()
        self.running = True
        # A server with background jobs on competes for the lead from its start; here the
        # jobs and the engine are driven by hand, so the test enters the competition itself.
        self.fanout.compete()

    @property
    def runtime(self) -> Runtime:
        """The worker's runtime."""
        rt: Runtime = self.app.state.runtime
        return rt

    @property
    def fanout(self) -> Fanout:
        """The worker's fan-out."""
        found = fanout_of(self.runtime)
        assert found is not None
        return found

    @property
    def engine(self) -> flows.Engine:
        """The worker's rule engine."""
        return flows.engine_of(self.runtime)

    def stop(self) -> None:
        """Shut the worker down (its lifespan ends: the lead is given up)."""
        if self.running:
            self.running = False
            self.client.__exit__(None, None, None)
            self.runtime.engine.dispose()

    def write(
        self, entity_id: str, at: Any, point: tuple[float, float] | None = None, **attrs: Any
    ) -> None:
        """Write attributes of a TestSensor through this worker's write pipeline."""
        entity: dict[str, Any] = {"id": entity_id, "type": "TestSensor"}
        if point is not None:
            entity["location"] = {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [point[1], point[0]]},
            }
        for name, value in attrs.items():
            entity[name] = {"type": "Property", "value": value, "observedAt": iso(at)}
        with unit_of_work(self.runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            outcome = context_flows.write_entities(
                runtime=self.runtime, session=session, tenant="default", entities=[entity]
            )
        assert not outcome.errors, outcome.errors


def changed(event: Any) -> bool:
    """Whether a streamed entity event changed a value that was there before."""
    return event.type == "context.attribute_changed" and event.data.get("previous") is not None


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `predicate()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Settings of servers started with two workers (on SQLite: what turns the fan-out on)."""
    return settings.model_copy(update={"workers": 2})


@pytest.fixture
def workers(settings: Settings, clock: FrozenClock) -> Iterator[list[Worker]]:
    """Two workers on this test's database; the first started leads."""
    started: list[Worker] = []
    try:
        for _ in range(2):
            started.append(Worker(settings, clock))
        yield started
    finally:
        for worker in reversed(started):
            worker.stop()


def login(worker: Worker, make_user: Callable[..., str], role: str, **scope: str) -> dict[str, str]:
    """Bearer headers of a new user of `role`, logged in through a worker."""
    username = make_user(role, **scope)
    response = worker.client.post(
        f"{API}/auth/token", data={"username": username, "password": TEST_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def alerts(runtime: Runtime, entity_id: str = SENSOR) -> list[Alert]:
    """Every alert of an entity, oldest first."""
    with unit_of_work(runtime.session_factory) as session:
        return list(
            session.scalars(select(Alert).where(Alert.entity_id == entity_id).order_by(Alert.id))
        )


def make_rule(worker: Worker, admin: dict[str, str], **condition: Any) -> None:
    """Create a threshold rule on TestSensor.level through a worker's API."""
    body = {
        "code": "test-level-high",
        "name_vi": "Mức cao",
        "name_en": "Level high",
        "kind": "threshold",
        "entity_type": "TestSensor",
        "attribute": "level",
        "condition": {"op": ">", "value": 10, **condition},
        "severity": "high",
        "sector": "environment",
        "policy": {"incident": {"category": "other"}, "notify": ["ioc"]},
    }
    response = worker.client.post(f"{API}/rules", json=body, headers=admin)
    assert response.status_code == 201, response.text


def evaluate(leader: Worker, follower: Worker, queued: int) -> None:
    """Wait until the leader's engine holds `queued` observations, then evaluate them."""
    wait_for(lambda: leader.engine.pending >= queued)
    assert follower.engine.pending == 0
    leader.engine.process_pending()


# --- leadership and jobs -------------------------------------------------------------------


def test_the_first_worker_leads_and_only_the_leader_runs_the_sweeps(
    workers: list[Worker],
) -> None:
    a, b = workers
    assert a.fanout.leading
    assert not b.fanout.leading
    assert a.engine.evaluates
    assert not b.engine.evaluates
    ran: dict[str, list[str]] = {"sweep": [], "local": []}
    for name, worker in (("a", a), ("b", b)):
        worker.runtime.jobs.add("test.sweep", 1.0, lambda n=name: ran["sweep"].append(n))
        worker.runtime.jobs.add(
            "test.local", 1.0, lambda n=name: ran["local"].append(n), every_worker=True
        )
        worker.runtime.jobs.run_due(now=1e9)
    assert ran == {"sweep": ["a"], "local": ["a", "b"]}


# --- fan-out of entity changes --------------------------------------------------------------


def test_a_batch_upserted_through_one_worker_streams_on_another_in_order_and_scoped(
    settings: Settings, clock: FrozenClock, make_user: Callable[..., str]
) -> None:
    a = Worker(settings, clock)
    second = create_app(settings, clock=clock)
    b = LiveServer(second).start()
    opened: list[SseClient] = []
    try:
        admin = login(a, make_user, "admin")
        writer = {**admin, "Content-Type": "application/json"}

        def station(n: int, pm25: float) -> dict[str, Any]:
            point = BIEN_HOA if n % 2 else LONG_KHANH
            return {
                "id": f"urn:ngsi-ld:AirQualityObserved:dn-fan-{n}",
                "type": "AirQualityObserved",
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": list(point)},
                },
                "dateObserved": {"type": "Property", "value": "2026-11-20T02:55:00Z"},
                "pm25": {"type": "Property", "value": pm25, "unitCode": "GQ"},
                "pm10": {"type": "Property", "value": pm25 + 10, "unitCode": "GQ"},
            }

        first = [station(n, 20.0) for n in range(20)]
        created = a.client.post(f"{NGSI}/entityOperations/upsert", json=first, headers=writer)
        assert created.status_code == 204, created.text
        with unit_of_work(a.runtime.session_factory) as session:
            units = dict(
                session.execute(
                    select(Entity.entity_id, Entity.unit_code).where(
                        Entity.entity_id.in_([s["id"] for s in first[:2]])
                    )
                ).all()
            )
        ward = units[first[1]["id"]]
        assert ward
        assert units[first[0]["id"]] != ward

        def stream(headers: dict[str, str]) -> SseClient:
            client = SseClient(
                f"{b.url}{API}/stream", headers=headers, params={"types": "entities"}
            )
            opened.append(client)
            assert client.status == 200, client.body
            return client

        watcher = stream(login(a, make_user, "operator"))
        officer = stream(login(a, make_user, "unit_officer", unit_code=ward))

        # Written through worker A (the test client), watched on worker B (a real server).
        second_batch = [station(n, 30.0 + n) for n in range(20)]
        response = a.client.post(
            f"{NGSI}/entityOperations/upsert", json=second_batch, headers=writer
        )
        assert response.status_code == 204, response.text

        # The second batch's changes (each has a previous value). The first batch's creation
        # may still be in B's coalescing window when the streams open, and come first.
        expected = [(e["id"], name) for e in second_batch for name in ("pm25", "pm10")]
        seen = watcher.collect(
            lambda e: changed(e) and (e.data["entity_id"], e.data["attribute"]) == expected[-1]
        )
        changes = [e for e in seen if changed(e)]
        assert [(e.data["entity_id"], e.data["attribute"]) for e in changes] == expected
        assert [e.data["value"] for e in changes[:4]] == [30.0, 40.0, 31.0, 41.0]

        mine = [pair for pair in expected if int(pair[0].rsplit("-", 1)[1]) % 2]
        got = officer.collect(
            lambda e: changed(e) and (e.data["entity_id"], e.data["attribute"]) == mine[-1]
        )
        got += officer.drain(0.5)
        got = [e for e in got if changed(e)]
        assert [(e.data["entity_id"], e.data["attribute"]) for e in got] == mine
        assert all(e.data["unit_code"] == ward for e in got)
    finally:
        for client in opened:
            client.close()
        b.stop()
        second.state.runtime.engine.dispose()
        a.stop()


def test_an_alert_committed_on_one_worker_wakes_the_others_stream_at_once(
    settings: Settings, clock: FrozenClock, make_user: Callable[..., str]
) -> None:
    # Streams look for other workers' events only every 30 s here: an alert arriving sooner
    # came through the notification.
    slow = settings.model_copy(update={"stream_poll_seconds": 30.0})
    a = Worker(slow, clock)
    second = create_app(slow, clock=clock)
    b = LiveServer(second).start()
    stream: SseClient | None = None
    try:
        stream = SseClient(
            f"{b.url}{API}/stream",
            headers=login(a, make_user, "operator"),
            params={"types": "alerts"},
        )
        assert stream.status == 200, stream.body
        data = {
            "alert_id": 4242,
            "rule_id": 1,
            "rule_code": "aqi-poor",
            "kind": "threshold",
            "severity": "high",
            "status": "open",
            "tenant": "default",
            "entity_id": "urn:ngsi-ld:AirQualityObserved:dn-1",
            "entity_type": "AirQualityObserved",
            "attribute": "pm25",
            "value": 88.0,
            "unit_code": "25195",
            "sector": "environment",
            "title_vi": "Chất lượng không khí kém",
            "title_en": "Poor air quality",
            "opened_at": clock.now().isoformat(),
            "policy": {"incident": None, "notify": []},
        }
        with unit_of_work(a.runtime.session_factory) as session:
            a.runtime.bus.publish_after_commit(
                session, Event(type="alerts.alert_opened", data=data, at=clock.now())
            )
        received = stream.next(timeout=10)
        assert received.type == "alerts.alert_opened"
        assert received.data["alert_id"] == 4242
        assert received.data["title_vi"] == "Chất lượng không khí kém"
    finally:
        if stream is not None:
            stream.close()
        b.stop()
        second.state.runtime.engine.dispose()
        a.stop()


def test_a_rolled_back_transaction_notifies_nothing(workers: list[Worker]) -> None:
    a, _ = workers
    clock_now = a.runtime.clock.now()
    with sent_messages(a.runtime) as messages:
        with contextlib.suppress(RuntimeError), unit_of_work(a.runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            context_flows.write_entities(
                runtime=a.runtime,
                session=session,
                tenant="default",
                entities=[
                    {
                        "id": "urn:ngsi-ld:TestSensor:rolled-back",
                        "type": "TestSensor",
                        "level": {"type": "Property", "value": 1, "observedAt": iso(clock_now)},
                    }
                ],
            )
            raise RuntimeError("the request failed after writing")
        a.write("urn:ngsi-ld:TestSensor:committed", clock_now, level=2)
    entity_ids = [
        record[3].get("entity_id") for payload in messages for record in orjson.loads(payload)["e"]
    ]
    assert "urn:ngsi-ld:TestSensor:committed" in entity_ids
    assert "urn:ngsi-ld:TestSensor:rolled-back" not in entity_ids


@contextlib.contextmanager
def sent_messages(runtime: Runtime) -> Iterator[list[str]]:
    """The fan-out messages committed while the block runs, as the other workers get them."""
    messages: list[str] = []
    if runtime.engine.dialect.name == "postgresql":
        url = runtime.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as listener:
            listener.execute(f"LISTEN {fanout_module.CHANNEL}")
            yield messages
            messages += [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
        return
    table = fanout_module.FanoutMessage
    with unit_of_work(runtime.session_factory) as session:
        last = session.scalar(select(func.max(table.id))) or 0
    yield messages
    with unit_of_work(runtime.session_factory) as session:
        messages += session.scalars(select(table.payload).where(table.id > last).order_by(table.id))


# --- one rule engine --------------------------------------------------------------------------


def test_a_crossing_written_half_through_each_worker_opens_and_resolves_one_alert(
    workers: list[Worker], make_user: Callable[..., str], clock: FrozenClock
) -> None:
    a, b = workers
    make_rule(a, login(a, make_user, "admin"), hysteresis=2, min_duration_seconds=600)
    t = clock.now()
    a.write(SENSOR, t, point=TRAN_BIEN, level=15)  # above: pending for 10 minutes
    evaluate(a, b, 1)
    assert alerts(a.runtime) == []
    b.write(SENSOR, t + timedelta(minutes=10), level=16)  # held long enough: opens
    evaluate(a, b, 1)
    (opened,) = alerts(a.runtime)
    assert opened.status == "open"
    a.write(SENSOR, t + timedelta(minutes=11), level=9)  # within the hysteresis band: open
    evaluate(a, b, 1)
    assert [x.status for x in alerts(a.runtime)] == ["open"]
    b.write(SENSOR, t + timedelta(minutes=12), level=7)  # past it: resolves that alert
    evaluate(a, b, 1)
    assert [(x.id, x.status) for x in alerts(a.runtime)] == [(opened.id, "resolved")]


def test_when_the_leader_stops_another_worker_leads_with_the_persisted_state(
    workers: list[Worker], make_user: Callable[..., str], clock: FrozenClock
) -> None:
    a, b = workers
    make_rule(a, login(a, make_user, "admin"), hysteresis=2, min_duration_seconds=600)
    t = clock.now()
    b.write(SENSOR, t, point=TRAN_BIEN, level=15)  # evaluated by the leader, A: pending
    evaluate(a, b, 1)
    b.fanout.retry_seconds = 0.1
    a.stop()
    wait_for(lambda: b.fanout.leading)
    assert b.engine.evaluates
    # The pending duration A recorded is honoured: ten minutes later the alert opens.
    b.write(SENSOR, t + timedelta(minutes=10), level=16)
    assert b.engine.pending == 1
    b.engine.process_pending()
    (opened,) = alerts(b.runtime)
    assert opened.status == "open"
    # On the map where the sensor is, though this observation carried no location.
    assert (opened.lat, opened.lon) == pytest.approx(TRAN_BIEN)
    b.write(SENSOR, t + timedelta(minutes=11), level=9)  # hysteresis band: stays open
    b.engine.process_pending()
    assert [x.status for x in alerts(b.runtime)] == ["open"]
    b.write(SENSOR, t + timedelta(minutes=12), level=7)
    b.engine.process_pending()
    assert [x.status for x in alerts(b.runtime)] == ["resolved"]


def test_a_rule_created_on_a_follower_reaches_the_leader_at_once(
    workers: list[Worker], make_user: Callable[..., str], clock: FrozenClock
) -> None:
    a, b = workers
    a.engine.process_pending()  # the leader has compiled the seeded rules
    make_rule(b, login(b, make_user, "admin"))
    b.write(SENSOR, clock.now(), point=TRAN_BIEN, level=15)
    evaluate(a, b, 1)
    assert [x.status for x in alerts(a.runtime)] == ["open"]


def test_a_large_batch_arrives_whole_and_in_order_and_an_oversized_value_is_left_out(
    workers: list[Worker], clock: FrozenClock
) -> None:
    a, b = workers
    received: list[Event] = []
    b.runtime.bus.subscribe("context.attribute_changed", received.append)
    entities = [
        {
            "id": f"urn:ngsi-ld:TestSensor:bulk-{n}",
            "type": "TestSensor",
            "level": {"type": "Property", "value": n, "observedAt": iso(clock.now())},
        }
        for n in range(300)
    ]
    # Far beyond one PostgreSQL notification's 8,000 bytes: sent without it, the rest still
    # goes; SQLite has no such limit.
    entities[150]["note"] = {"type": "Property", "value": "x" * 9000}
    with unit_of_work(a.runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        outcome = context_flows.write_entities(
            runtime=a.runtime, session=session, tenant="default", entities=entities
        )
    assert not outcome.errors
    postgres = a.runtime.engine.dialect.name == "postgresql"
    expected = [(f"urn:ngsi-ld:TestSensor:bulk-{n}", "level") for n in range(300)]
    if not postgres:
        expected.insert(151, ("urn:ngsi-ld:TestSensor:bulk-150", "note"))
    wait_for(lambda: len(received) >= len(expected))
    time.sleep(0.2)
    assert [(e.data["entity_id"], e.data["attribute"]) for e in received] == expected
    assert all(e.remote for e in received)
    oversize = a.runtime.metrics.registry.get_sample_value("cityops_fanout_oversize_total")
    assert oversize == (1 if postgres else 0)


def test_messages_are_kept_in_the_table_a_minute_on_sqlite_and_never_on_postgresql(
    workers: list[Worker],
) -> None:
    a, b = workers
    a.write("urn:ngsi-ld:TestSensor:recent", a.runtime.clock.now(), level=1)
    table = fanout_module.FanoutMessage
    if a.runtime.engine.dialect.name == "postgresql":
        # Notifications only: nothing goes through the table (it exists for one schema).
        assert isinstance(b.fanout, fanout_module.PostgresFanout)
        with unit_of_work(a.runtime.session_factory) as session:
            assert session.scalar(select(func.count()).select_from(table)) == 0
        return
    with unit_of_work(a.runtime.session_factory) as session:
        old = session.scalar(select(func.max(table.id)))
        assert old is not None
        # As if sent longer ago than they are kept.
        session.execute(
            update(table)
            .where(table.id == old)
            .values(sent_at=datetime.now(UTC) - timedelta(seconds=fanout_module.KEEP_SECONDS + 1))
        )
    a.write("urn:ngsi-ld:TestSensor:recent", a.runtime.clock.now(), level=2)
    fanout = b.fanout
    assert isinstance(fanout, fanout_module.SqliteFanout)
    fanout._prune()
    with unit_of_work(a.runtime.session_factory) as session:
        left = session.scalars(select(table.id)).all()
    assert old not in left
    assert left  # the recent one stays


def test_the_mqtt_bridge_runs_on_the_leader_only_and_moves_with_the_lead(
    settings: Settings, clock: FrozenClock, mqtt_broker: Any
) -> None:
    # One MQTT session for the deployment: two bridges with one client id would take the
    # session from each other, over and over.
    bridged = settings.model_copy(update={"mqtt_bridge": True, "mqtt_url": mqtt_broker.url})
    a = Worker(bridged, clock)
    b = Worker(bridged, clock)
    try:
        first, second = a.app.state.mqtt_bridge, b.app.state.mqtt_bridge
        assert a.fanout.leading
        assert first.wait_connected(10)
        assert not second.running
        b.fanout.retry_seconds = 0.1
        a.stop()
        wait_for(lambda: b.fanout.leading)
        assert second.wait_connected(10)
        assert not first.running
    finally:
        b.stop()
        a.stop()
