"""The live stream: what an operator's dashboard receives over SSE from a real server, what a
scoped user never receives, and how a client resumes after a disconnect or a restart."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.app import create_app
from cityops.context.models import Entity
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.web.models import StreamEvent
from cityops.web.stream import Position, Subscription, hub_of, purge

from .live import TLS, LiveServer, SseClient, SseEvent

API = "/api/v1"
STREAM = f"{API}/stream"
NGSI = "/ngsi-ld/v1"
BIEN_HOA = (106.843, 10.957)  # a ward of former Biên Hòa
LONG_KHANH = (107.245, 10.935)  # a ward of former Long Khánh
_ids = itertools.count(1)

Headers = dict[str, str]
Connect = Callable[..., SseClient]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Settings whose streams look for other workers' events only every 30 s, so an event
    that arrives sooner came through the in-process wake-up."""
    return settings.model_copy(update={"stream_poll_seconds": 30.0, "stream_ring_size": 20_000})


@pytest.fixture
def live(app: FastAPI) -> Iterator[LiveServer]:
    """The test's app served by a real uvicorn server."""
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def connect(live: LiveServer) -> Iterator[Connect]:
    """Open streams on the live server (or another one); all are closed after the test."""
    opened: list[SseClient] = []

    def open_stream(
        headers: Headers | None = None, server: LiveServer | None = None, **params: str
    ) -> SseClient:
        stream = SseClient(
            f"{(server or live).url}{STREAM}", headers=dict(headers or {}), params=params
        )
        opened.append(stream)
        assert stream.status == 200, stream.body
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


@pytest.fixture
def admin(login_as: Callable[..., Headers]) -> Headers:
    """Bearer headers of an administrator."""
    return login_as("admin")


@pytest.fixture
def operator(login_as: Callable[..., Headers]) -> Headers:
    """Bearer headers of a province operator."""
    return login_as("operator")


def alert(unit_code: str | None, *, sector: str = "environment", **extra: Any) -> dict[str, Any]:
    """An `alerts.alert_opened` payload as the alerts context publishes it."""
    alert_id = next(_ids)
    return {
        "alert_id": alert_id,
        "rule_id": 7,
        "rule_code": "aqi-unhealthy",
        "kind": "threshold",
        "severity": "high",
        "status": "open",
        "tenant": "default",
        "entity_id": "urn:ngsi-ld:AirQualityObserved:dn-bien-hoa-1",
        "entity_type": "AirQualityObserved",
        "attribute": "pm25",
        "value": 80.5,
        "unit_code": unit_code,
        "lat": 10.957,
        "lon": 106.843,
        "sector": sector,
        "title_vi": "Chất lượng không khí kém",
        "title_en": "Unhealthy air quality",
        "opened_at": "2026-11-20T03:00:00.000Z",
        "resolved_at": None,
        "actor_id": None,
        # No incident by default: the incidents context would open one and stream it too.
        "policy": {"incident": None, "notify": []},
        **extra,
    }


def incident(unit_code: str | None, *departments: str, **extra: Any) -> dict[str, Any]:
    """An `incidents.incident_created` payload as the incidents context publishes it."""
    incident_id = next(_ids)
    return {
        "incident_id": incident_id,
        "code": f"SC-2026-{incident_id:05d}",
        "title": "Ngập nước trên đường Phạm Văn Thuận",
        "status": "new",
        "previous_status": None,
        "change": "created",
        "severity": "medium",
        "category": "flooding",
        "sector": "construction",
        "unit_code": unit_code,
        "department_code": departments[0] if departments else None,
        "department_codes": list(departments),
        "assignee_id": None,
        "alert_id": None,
        "lat": 10.95,
        "lon": 106.84,
        "due_ack_at": None,
        "due_resolve_at": None,
        "escalation_level": 0,
        "actor_id": None,
        **extra,
    }


def publish(runtime: Runtime, event_type: str, data: dict[str, Any], **kwargs: Any) -> Event:
    """Publish an event from a committed transaction, as a context's flow does."""
    event = Event(type=event_type, data=data, at=runtime.clock.now(), **kwargs)
    with unit_of_work(runtime.session_factory) as session:
        runtime.bus.publish_after_commit(session, event)
    return event


def alert_ids(events: list[SseEvent]) -> list[int]:
    """The alert ids among some events, in order."""
    return [e.data["alert_id"] for e in events if e.type.startswith("alerts.")]


def create_station(
    client: TestClient, admin: Headers, name: str, point: tuple[float, float]
) -> str:
    """Create an air quality station at a point; return its id."""
    entity_id = f"urn:ngsi-ld:AirQualityObserved:{name}"
    body = {
        "id": entity_id,
        "type": "AirQualityObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": list(point)}},
        "dateObserved": {"type": "Property", "value": "2026-11-20T02:55:00Z"},
        "pm25": {"type": "Property", "value": 20.0, "unitCode": "GQ"},
    }
    response = client.post(
        f"{NGSI}/entities", json=body, headers={**admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    return entity_id


def unit_of(runtime: Runtime, entity_id: str) -> str:
    """The ward or commune an entity was tagged with."""
    with runtime.session_factory() as session:
        code = session.scalars(select(Entity.unit_code).where(Entity.entity_id == entity_id)).one()
    assert code is not None
    return str(code)


def patch_pm25(base: str, admin: Headers, entity_id: str, value: float) -> None:
    """Change a station's PM2.5 through the NGSI-LD API of a live server."""
    with httpx.Client(verify=TLS, timeout=10) as http:
        response = http.patch(
            f"{base}{NGSI}/entities/{entity_id}/attrs",
            json={"pm25": {"type": "Property", "value": value, "unitCode": "GQ"}},
            headers={**admin, "Content-Type": "application/json"},
        )
    assert response.status_code == 204, response.text


# --- receiving ------------------------------------------------------------------------------


def test_an_opened_alert_reaches_a_connected_operator_at_once(
    connect: Connect, operator: Headers, runtime: Runtime
) -> None:
    stream = connect(operator)
    assert stream.status == 200
    assert stream.content_type.startswith("text/event-stream")
    policy = {"incident": {"category": "air_pollution", "department_code": None}, "notify": []}
    sent = publish(
        runtime, "alerts.alert_opened", alert("25195", policy=policy), correlation_id="obs-42"
    )
    # Other workers are polled every 30 s here: arriving sooner means the wake-up worked.
    received = stream.next(timeout=5)
    assert received.type == "alerts.alert_opened"
    assert received.data["alert_id"] == sent.data["alert_id"]
    assert received.data["title_vi"] == "Chất lượng không khí kém"
    assert received.data["policy"]["incident"]["category"] == "air_pollution"
    assert received.data["correlation_id"] == "obs-42"
    assert received.data["at"] == "2026-11-20T03:00:00.000Z"
    assert received.id is not None
    assert Position.parse(received.id) is not None
    assert stream.retry == 2000


def test_a_rolled_back_alert_is_never_streamed_nor_logged(
    connect: Connect, operator: Headers, runtime: Runtime
) -> None:
    stream = connect(operator, types="alerts")

    def publish_then_fail() -> None:
        with unit_of_work(runtime.session_factory) as session:
            event = Event(type="alerts.alert_opened", data=alert("25195"), at=runtime.clock.now())
            runtime.bus.publish_after_commit(session, event)
            raise RuntimeError("the rule engine failed after publishing")

    with pytest.raises(RuntimeError):
        publish_then_fail()
    kept = publish(runtime, "alerts.alert_opened", alert("25195"))
    assert alert_ids(stream.until(lambda e: e.type.startswith("alerts."))) == [
        kept.data["alert_id"]
    ]
    with runtime.session_factory() as session:
        logged = session.scalars(select(StreamEvent.data)).all()
    assert [row["alert_id"] for row in logged] == [kept.data["alert_id"]]


def test_an_ngsi_ld_patch_reaches_the_stream_as_an_attribute_change(
    client: TestClient, connect: Connect, live: LiveServer, admin: Headers, operator: Headers
) -> None:
    station = create_station(client, admin, "dn-bien-hoa-1", BIEN_HOA)
    stream = connect(operator, types="entities")
    patch_pm25(live.url, admin, station, 87.5)
    change = stream.next(timeout=5)
    assert change.type == "context.attribute_changed"
    assert change.data["entity_id"] == station
    assert change.data["entity_type"] == "AirQualityObserved"
    assert change.data["attribute"] == "pm25"
    assert change.data["value"] == 87.5
    assert change.data["previous"] == 20.0
    assert change.data["unit_code"] is not None
    assert change.data["correlation_id"]


def test_a_cookie_session_streams_as_eventsource_does(
    client: TestClient, connect: Connect, make_user: Callable[..., str], runtime: Runtime
) -> None:
    username = make_user("viewer")
    login = client.post(
        f"{API}/auth/login", json={"username": username, "password": "Dong-Nai-2026!"}
    )
    assert login.status_code == 200, login.text
    cookie = f"cityops_session={client.cookies['cityops_session']}"
    stream = connect({"Cookie": cookie}, types="alerts,incidents")
    assert stream.status == 200
    sent = publish(runtime, "incidents.incident_created", incident("25195", "SXD"))
    received = stream.next(timeout=5)
    assert received.type == "incidents.incident_created"
    assert received.data["incident_id"] == sent.data["incident_id"]


def test_device_status_changes_are_streamed(
    connect: Connect, operator: Headers, runtime: Runtime
) -> None:
    stream = connect(operator, types="devices")
    publish(runtime, "alerts.alert_opened", alert("25195"))
    data = {
        "tenant": "default",
        "device_id": "aqm-bh-01",
        "entity_id": "urn:ngsi-ld:AirQualityObserved:dn-bien-hoa-1",
        "entity_type": "AirQualityObserved",
        "unit_code": "25195",
        "department_code": "SNNMT",
        "previous": "online",
        "status": "offline",
        "at": "2026-11-20T03:00:00+00:00",
    }
    publish(runtime, "ingest.device_offline", data)
    received = stream.next(timeout=5)
    assert received.type == "ingest.device_offline"
    assert received.data["device_id"] == "aqm-bh-01"


# --- who sees what --------------------------------------------------------------------------


def test_a_ward_user_sees_their_ward_and_never_another(
    client: TestClient,
    connect: Connect,
    live: LiveServer,
    admin: Headers,
    operator: Headers,
    login_as: Callable[..., Headers],
    runtime: Runtime,
) -> None:
    mine = create_station(client, admin, "dn-bien-hoa-1", BIEN_HOA)
    other = create_station(client, admin, "dn-long-khanh-1", LONG_KHANH)
    ward, other_ward = unit_of(runtime, mine), unit_of(runtime, other)
    assert ward != other_ward
    officer = connect(login_as("unit_officer", unit_code=ward))
    watcher = connect(operator)

    # Another ward's events first: had the officer been sent them, they would arrive first.
    hidden_incident = publish(runtime, "incidents.incident_created", incident(other_ward, "SXD"))
    hidden_alert = publish(runtime, "alerts.alert_opened", alert(other_ward))
    publish(runtime, "incidents.incident_created", incident(None, "SXD"))  # province-wide
    patch_pm25(live.url, admin, other, 90.0)
    own_incident = publish(runtime, "incidents.incident_created", incident(ward, "SXD"))
    patch_pm25(live.url, admin, mine, 91.0)

    seen = officer.collect(
        lambda e: e.type == "context.attribute_changed",
        lambda e: e.type == "incidents.incident_created",
    )
    seen += officer.drain(0.5)
    assert {e.type for e in seen} == {"context.attribute_changed", "incidents.incident_created"}
    assert [e.data["incident_id"] for e in seen if e.type.startswith("incidents.")] == [
        own_incident.data["incident_id"]
    ]
    assert [e.data["entity_id"] for e in seen if e.type.startswith("context.")] == [mine]
    assert all(e.data.get("unit_code") == ward for e in seen)

    # The operator, province-wide, was sent everything: the officer's filter did the hiding.
    everything = watcher.collect(
        lambda e: e.type.startswith("context.") and e.data["entity_id"] == mine,
        lambda e: e.data.get("incident_id") == own_incident.data["incident_id"],
    )
    ids = {e.data.get("incident_id") for e in everything} | {
        e.data.get("alert_id") for e in everything
    }
    assert hidden_incident.data["incident_id"] in ids
    assert hidden_alert.data["alert_id"] in ids
    assert other in {e.data.get("entity_id") for e in everything if e.type.startswith("context.")}


def test_a_department_sees_its_incidents_and_its_sectors_alerts(
    connect: Connect, login_as: Callable[..., Headers], runtime: Runtime
) -> None:
    health = connect(
        login_as("department_officer", department_code="SYT"), types="alerts,incidents"
    )
    publish(runtime, "incidents.incident_created", incident("25195", "SXD"))
    publish(runtime, "alerts.alert_opened", alert("25195", sector="environment"))
    shared = publish(runtime, "incidents.incident_created", incident("25195", "SXD", "SYT"))
    health_alert = publish(runtime, "alerts.alert_opened", alert("25195", sector="health"))
    seen = health.until(lambda e: e.data.get("alert_id") == health_alert.data["alert_id"])
    seen += health.drain(0.5)
    assert [(e.type, e.data.get("incident_id") or e.data.get("alert_id")) for e in seen] == [
        ("incidents.incident_created", shared.data["incident_id"]),
        ("alerts.alert_opened", health_alert.data["alert_id"]),
    ]


def test_a_key_without_incident_read_gets_alerts_but_no_incidents(
    client: TestClient, connect: Connect, admin: Headers, runtime: Runtime
) -> None:
    created = client.post(
        f"{API}/api-keys",
        json={"name": "wall screen", "permissions": ["alert:read", "context:read"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    stream = connect(key)
    publish(runtime, "incidents.incident_created", incident("25195", "SXD"))
    opened = publish(runtime, "alerts.alert_opened", alert("25195"))
    seen = stream.until(lambda e: e.type.startswith("alerts."))
    seen += stream.drain(0.5)
    assert [e.type for e in seen] == ["alerts.alert_opened"]
    assert seen[0].data["alert_id"] == opened.data["alert_id"]

    refused = client.get(STREAM, params={"types": "incidents"}, headers=key)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_narrowing_to_an_area_or_unit_and_an_entity_type(
    client: TestClient,
    connect: Connect,
    live: LiveServer,
    admin: Headers,
    operator: Headers,
    runtime: Runtime,
) -> None:
    bien_hoa = create_station(client, admin, "dn-bien-hoa-1", BIEN_HOA)
    long_khanh = create_station(client, admin, "dn-long-khanh-1", LONG_KHANH)
    by_area = connect(operator, types="entities", area_code="long-khanh-cu")
    by_unit = connect(operator, area_code="bien-hoa-cu", unit_code=unit_of(runtime, bien_hoa))
    other_type = connect(operator, types="entities", entity_type="WaterObserved")
    patch_pm25(live.url, admin, bien_hoa, 70.0)
    patch_pm25(live.url, admin, long_khanh, 71.0)
    assert [e.data["entity_id"] for e in by_area.until(lambda e: True)] == [long_khanh]
    assert [e.data["entity_id"] for e in by_unit.until(lambda e: True)] == [bien_hoa]
    assert by_area.drain(0.3) == by_unit.drain(0.1) == other_type.drain(0.1) == []


# --- refusals (answered at once, so the in-process client serves) ---------------------------


def test_anonymous_callers_are_refused(client: TestClient) -> None:
    response = client.get(STREAM)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"types": "alerts,weather"}, {}, "types"),
        ({"last_event_id": "yesterday"}, {}, "last_event_id"),
        ({}, {"Last-Event-ID": "12-zz-3"}, "Last-Event-ID"),
        ({"unit_code": "99999"}, {}, "unit_code"),
        ({"area_code": "nowhere"}, {}, "area_code"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: TestClient,
    operator: Headers,
    params: dict[str, str],
    headers: Headers,
    field: str,
) -> None:
    response = client.get(STREAM, params=params, headers={**operator, **headers})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert [error["field"] for error in body["errors"]] == [field]
    assert field in body["detail"]
    english = client.get(
        STREAM, params=params, headers={**operator, **headers, "Accept-Language": "en"}
    )
    assert english.json()["errors"][0]["message"] != body["errors"][0]["message"]


def test_narrowing_outside_ones_scope_is_forbidden(
    client: TestClient, login_as: Callable[..., Headers]
) -> None:
    officer = login_as("unit_officer", unit_code="25195")
    assert client.get(STREAM, params={"unit_code": "75"}, headers=officer).status_code == 403
    assert (
        client.get(STREAM, params={"area_code": "bien-hoa-cu"}, headers=officer).status_code == 403
    )


# --- resuming -------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["header", "query"])
def test_resuming_returns_exactly_the_missed_events(
    connect: Connect, operator: Headers, runtime: Runtime, via: str
) -> None:
    first = connect(operator, types="alerts")
    seen = publish(runtime, "alerts.alert_opened", alert("25195"))
    assert alert_ids([first.next()]) == [seen.data["alert_id"]]
    first.close()
    last_id = first.last_id
    assert last_id is not None

    missed = [publish(runtime, "alerts.alert_opened", alert("25195")) for _ in range(3)]
    resumed = (
        connect({**operator, "Last-Event-ID": last_id}, types="alerts")
        if via == "header"
        else connect(operator, types="alerts", last_event_id=last_id)
    )
    live_one = publish(runtime, "alerts.alert_opened", alert("25195"))
    received = resumed.until(lambda e: e.data.get("alert_id") == live_one.data["alert_id"])
    received += resumed.drain(0.3)
    assert alert_ids(received) == [e.data["alert_id"] for e in [*missed, live_one]]


def test_a_fresh_stream_resumes_from_where_it_connected_even_with_nothing_received(
    connect: Connect, operator: Headers, runtime: Runtime
) -> None:
    first = connect(operator, types="alerts")
    first.drain(0.2)
    first.close()
    assert first.last_id is not None  # given with the first bytes, before any event
    missed = publish(runtime, "alerts.alert_opened", alert("25195"))
    resumed = connect({**operator, "Last-Event-ID": first.last_id}, types="alerts")
    assert alert_ids([resumed.next()]) == [missed.data["alert_id"]]


def test_resuming_after_a_restart_replays_durable_events_and_resets_entities(
    client: TestClient,
    connect: Connect,
    live: LiveServer,
    admin: Headers,
    operator: Headers,
    runtime: Runtime,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    station = create_station(client, admin, "dn-bien-hoa-1", BIEN_HOA)
    first = connect(operator, types="alerts,incidents,entities")
    seen = publish(runtime, "alerts.alert_opened", alert("25195"))
    assert alert_ids([first.next()]) == [seen.data["alert_id"]]
    first.close()
    last_id = first.last_id
    assert last_id is not None

    patch_pm25(live.url, admin, station, 55.0)  # missed, and forgotten by the restart
    missed_alert = publish(runtime, "alerts.alert_opened", alert("25195"))
    live.stop()
    missed_incident = publish(runtime, "incidents.incident_created", incident("25195", "SXD"))

    restarted_app = create_app(settings, clock=clock)
    restarted = LiveServer(restarted_app).start()
    resumed = connect({**operator, "Last-Event-ID": last_id}, server=restarted)
    try:
        reset = resumed.next()
        assert reset.type == "reset"
        assert reset.data == {"reason": "position_unknown", "kinds": ["entities"]}
        replayed = [resumed.next(), resumed.next()]
        assert [
            (e.type, e.data.get("alert_id") or e.data.get("incident_id")) for e in replayed
        ] == [
            ("alerts.alert_opened", missed_alert.data["alert_id"]),
            ("incidents.incident_created", missed_incident.data["incident_id"]),
        ]
        # Then it goes on live, entity changes included.
        patch_pm25(restarted.url, admin, station, 56.0)
        change = resumed.next()
        assert (change.type, change.data["value"]) == ("context.attribute_changed", 56.0)
        assert resumed.drain(0.3) == []
    finally:
        resumed.close()
        restarted.stop()
        restarted_app.state.runtime.engine.dispose()


def test_entity_changes_missed_within_the_ring_are_replayed_and_older_ones_reset(
    connect: Connect, operator: Headers, runtime: Runtime
) -> None:
    def change(value: float, attribute: str = "pm25", station: str = "dn-bien-hoa-1") -> None:
        runtime.bus.publish(
            Event(
                type="context.attribute_changed",
                data={
                    "tenant": "default",
                    "entity_id": f"urn:ngsi-ld:AirQualityObserved:{station}",
                    "entity_type": "AirQualityObserved",
                    "attribute": attribute,
                    "value": value,
                    "unit_code": "25195",
                },
                at=runtime.clock.now(),
            )
        )

    first = connect(operator, types="entities")
    change(1.0)
    assert first.next().data["value"] == 1.0
    first.close()
    assert first.last_id is not None
    change(2.0, "pm10")
    change(3.0, "no2")
    resumed = connect({**operator, "Last-Event-ID": first.last_id}, types="entities")
    assert [resumed.next().data["value"], resumed.next().data["value"]] == [2.0, 3.0]

    # A position the ring no longer holds: reset, then live. (Changes of one attribute are
    # coalesced, so it takes that many attributes to fill the ring.)
    size = runtime.settings.stream_ring_size
    for value in range(size + 5):
        change(float(value), station=f"s{value}")
    ring = hub_of(runtime).ring
    deadline = time.monotonic() + 10
    while ring.holds(int(first.last_id.rsplit("-", 1)[1])) and time.monotonic() < deadline:
        time.sleep(0.05)  # the window's changes reach the ring at the end of the window
    late = connect({**operator, "Last-Event-ID": first.last_id}, types="entities")
    reset = late.next()
    assert (reset.type, reset.data["kinds"]) == ("reset", ["entities"])
    change(-1.0)
    assert late.next().data["value"] == -1.0


def test_a_worker_sees_the_events_another_worker_committed(
    app: FastAPI, connect: Connect, operator: Headers, settings: Settings, clock: FrozenClock
) -> None:
    second_app = create_app(settings.model_copy(update={"stream_poll_seconds": 0.2}), clock=clock)
    second = LiveServer(second_app).start()
    stream = connect(operator, server=second, types="alerts")
    try:
        # Committed by the first worker (the test's app): the second learns of it by polling.
        sent = publish(app.state.runtime, "alerts.alert_opened", alert("25195"))
        assert alert_ids([stream.next(timeout=5)]) == [sent.data["alert_id"]]
    finally:
        stream.close()
        second.stop()
        second_app.state.runtime.engine.dispose()


def test_concurrent_writers_lose_nothing(
    connect: Connect, operator: Headers, runtime: Runtime
) -> None:
    stream = connect(operator, types="alerts")
    payloads = [alert("25195") for _ in range(120)]

    def write(start: int) -> None:
        for data in payloads[start::6]:
            publish(runtime, "alerts.alert_opened", data)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wanted = sorted(data["alert_id"] for data in payloads)
    received: list[SseEvent] = []
    while len(received) < len(wanted):
        received.append(stream.next(timeout=10))
    received += stream.drain(0.3)
    assert sorted(alert_ids(received)) == wanted
    # In the order of the log, which a resuming client relies on.
    positions = [Position.parse(event.id or "") for event in received]
    durable = [position.durable for position in positions if position is not None]
    assert len(durable) == len(received)
    assert durable == sorted(durable)


# --- slow clients, heartbeats, housekeeping -------------------------------------------------


def test_a_client_too_far_behind_is_reset_and_a_lagging_one_gets_coalesced_changes(
    runtime: Runtime,
) -> None:
    hub = hub_of(runtime)
    subscription = Subscription(kinds=frozenset({"entities"}))

    def change(entity: int, value: float) -> Event:
        return Event(
            type="context.attribute_changed",
            data={
                "tenant": "default",
                "entity_id": f"urn:ngsi-ld:AirQualityObserved:s{entity}",
                "entity_type": "AirQualityObserved",
                "attribute": "pm25",
                "value": value,
                "unit_code": "25195",
            },
            at=runtime.clock.now(),
        )

    async def scenario() -> tuple[list[str], str]:
        # The client reads nothing while changes pour in, as a stalled socket would.
        stream = hub.serve(subscription, None)
        await anext(stream)  # connected
        for round_ in range(3):
            for entity in range(400):
                hub.on_event(change(entity, float(round_)))
        values: list[str] = []
        while len(values) < 400:
            chunk = await anext(stream)
            values += [line for line in chunk.splitlines() if line.startswith("data:")]
        # More attributes changed in one window than a client may lag behind: too slow.
        for entity in range(15_000):
            hub.on_event(change(entity, 3.0))
        reset = await anext(stream)
        await stream.aclose()
        return values, reset

    values, reset = asyncio.run(scenario())
    # 1,200 changes of 400 attributes: only the latest of each is sent.
    assert len(values) == 400
    assert all('"value":2.0' in line for line in values)
    assert reset.startswith("event: reset\n")
    assert '"reason":"too_slow"' in reset


def test_idle_streams_get_heartbeats_and_are_counted_in_metrics(
    app: FastAPI, connect: Connect, operator: Headers, settings: Settings, clock: FrozenClock
) -> None:
    quick_app = create_app(
        settings.model_copy(update={"stream_heartbeat_seconds": 0.2}), clock=clock
    )
    quick = LiveServer(quick_app).start()
    stream = connect(operator, server=quick, types="alerts")
    try:
        stream.drain(0.7)
        assert stream.comments.count("ping") >= 2
        metrics = httpx.get(f"{quick.url}/metrics", timeout=5).text
        assert "cityops_stream_clients 1.0" in metrics
        stream.close()
        deadline = time.monotonic() + 5
        while "cityops_stream_clients 0.0" not in metrics and time.monotonic() < deadline:
            time.sleep(0.05)
            metrics = httpx.get(f"{quick.url}/metrics", timeout=5).text
        assert "cityops_stream_clients 0.0" in metrics
    finally:
        quick.stop()
        quick_app.state.runtime.engine.dispose()


def test_streams_end_after_their_lifetime_so_clients_reconnect(
    connect: Connect, operator: Headers, settings: Settings, clock: FrozenClock
) -> None:
    short_app = create_app(settings.model_copy(update={"stream_max_seconds": 1}), clock=clock)
    short = LiveServer(short_app).start()
    stream = connect(operator, server=short, types="alerts")
    try:
        assert stream.closed.wait(5)
        assert "reconnect" in stream.comments
        assert stream.last_id is not None
    finally:
        short.stop()
        short_app.state.runtime.engine.dispose()


def test_the_log_keeps_a_week(runtime: Runtime, clock: FrozenClock) -> None:
    publish(runtime, "alerts.alert_opened", alert("25195"))
    clock.advance(timedelta(days=6))
    recent = publish(runtime, "alerts.alert_opened", alert("25195"))
    clock.advance(timedelta(days=1, hours=1))
    assert purge(runtime) == 1
    with runtime.session_factory() as session:
        kept = session.scalars(select(StreamEvent.data)).all()
    assert [row["alert_id"] for row in kept] == [recent.data["alert_id"]]
    assert "stream.purge" in runtime.jobs.jobs


# --- under a flood of entity changes ---------------------------------------------------------


def station_change(
    runtime: Runtime, station: int, value: float, *, event_type: str = "context.attribute_changed"
) -> None:
    """Hand the stream an entity change as ingest's after-commit publication does."""
    runtime.bus.publish(
        Event(
            type=event_type,
            data={
                "tenant": "default",
                "entity_id": f"urn:ngsi-ld:AirQualityObserved:flood-{station}",
                "entity_type": "AirQualityObserved",
                "attribute": "pm25",
                "value": value,
                "unit_code": "25195",
            },
            at=runtime.clock.now(),
        )
    )


@pytest.fixture
def flood_app(settings: Settings, clock: FrozenClock) -> Iterator[FastAPI]:
    """An app whose streams send at most 500 entity changes per half-second window."""
    flood = create_app(
        settings.model_copy(
            update={"stream_entity_coalesce_ms": 500, "stream_entity_window_max": 500}
        ),
        clock=clock,
    )
    server = LiveServer(flood).start()
    flood.state.live = server
    yield flood
    server.stop()
    flood.state.runtime.engine.dispose()


def test_a_flood_on_one_attribute_reaches_the_wall_as_a_few_items_with_the_latest_value(
    connect: Connect, live: LiveServer, operator: Headers, runtime: Runtime
) -> None:
    stream = connect(operator, types="entities")
    for value in range(2000):
        station_change(runtime, 1, float(value))
    station_change(runtime, 2, 7.0)
    seen = stream.collect(
        lambda e: e.data["entity_id"].endswith("flood-1") and e.data["value"] == 1999.0,
        lambda e: e.data["entity_id"].endswith("flood-2"),
    )
    seen += stream.drain(1.5)  # a window and a half: whatever was still to come
    flooded = [e.data["value"] for e in seen if e.data["entity_id"].endswith("flood-1")]
    # 2,000 changes within a second or two: one item per window, the latest value last.
    assert 1 <= len(flooded) <= 3, flooded
    assert flooded == sorted(flooded)
    assert flooded[-1] == 1999.0
    assert [e.data["value"] for e in seen if e.data["entity_id"].endswith("flood-2")] == [7.0]
    metrics = httpx.get(f"{live.url}/metrics", timeout=5).text
    coalesced = next(
        line
        for line in metrics.splitlines()
        if line.startswith("cityops_stream_entity_changes_coalesced_total ")
    )
    assert float(coalesced.split()[1]) >= 1997


def test_an_alert_opened_during_a_flood_overtakes_the_floods_entity_changes(
    connect: Connect, flood_app: FastAPI, operator: Headers
) -> None:
    runtime: Runtime = flood_app.state.runtime
    stream = connect(operator, server=flood_app.state.live, types="alerts,entities")
    for station in range(5000):
        station_change(runtime, station, 1.0)
    opened = publish(runtime, "alerts.alert_opened", alert("25195"))

    seen = stream.until(lambda e: e.data.get("alert_id") == opened.data["alert_id"], timeout=10)
    # 5,000 attributes changed: ten windows of 500 to send. The alert did not wait for them.
    before = [e for e in seen if e.type == "context.attribute_changed"]
    assert len(before) < 5000
    stations = {e.data["entity_id"] for e in before}
    rest: list[SseEvent] = []

    def complete(event: SseEvent) -> bool:
        rest.append(event)
        stations.add(event.data["entity_id"])
        return len(stations) == 5000

    stream.until(complete, timeout=30)
    # Then every station's change came, none twice, the flood's last items after the alert.
    assert len(before) + len(rest) == 5000
    assert all(e.type == "context.attribute_changed" for e in rest)
    positions = [Position.parse(e.id or "") for e in [seen[-1], *rest]]
    assert all(p is not None for p in positions)
    durable = {p.durable for p in positions if p is not None}
    assert len(durable) == 1  # every later change places the client after the alert


def test_resuming_after_a_flood_delivers_every_alert_and_the_latest_values(
    connect: Connect, operator: Headers, runtime: Runtime
) -> None:
    first = connect(operator, types="alerts,entities")
    seen_alert = publish(runtime, "alerts.alert_opened", alert("25195"))
    assert alert_ids([first.next()]) == [seen_alert.data["alert_id"]]
    first.close()
    assert first.last_id is not None

    missed = []
    for round_ in range(50):
        for station in range(100):
            station_change(runtime, station, float(round_))
        if round_ % 5 == 4:
            missed.append(publish(runtime, "alerts.alert_opened", alert("25195")))
    resumed = connect({**operator, "Last-Event-ID": first.last_id}, types="alerts,entities")
    latest: dict[str, float] = {}
    alerts: list[int] = []
    received = 0

    def done(event: SseEvent) -> bool:
        nonlocal received
        if event.type.startswith("alerts."):
            alerts.append(event.data["alert_id"])
        else:
            received += 1
            latest[event.data["entity_id"]] = event.data["value"]
        return len(alerts) == len(missed) and sorted(latest.values()) == [49.0] * 100

    resumed.until(done, timeout=10)
    assert alerts == [event.data["alert_id"] for event in missed]
    # 5,000 changes of 100 attributes came back coalesced, not one by one.
    assert received < 1000
    assert [e.type for e in resumed.drain(1.5) if e.type == "reset"] == []


def test_within_a_window_a_deletion_keeps_its_place_among_its_entitys_changes(
    runtime: Runtime,
) -> None:
    hub = hub_of(runtime)
    subscription = Subscription(kinds=frozenset({"entities"}))

    def event(event_type: str, station: int, value: float | None = None) -> Event:
        data: dict[str, Any] = {
            "tenant": "default",
            "entity_id": f"urn:ngsi-ld:AirQualityObserved:s{station}",
            "entity_type": "AirQualityObserved",
            "unit_code": "25195",
        }
        if value is not None:
            data |= {"attribute": "pm25", "value": value}
        return Event(type=event_type, data=data, at=runtime.clock.now())

    async def scenario() -> list[tuple[str, str, Any]]:
        stream = hub.serve(subscription, None)
        await anext(stream)  # connected
        hub.on_event(event("context.attribute_changed", 1, 1.0))
        hub.on_event(event("context.entity_deleted", 1))
        hub.on_event(event("context.entity_created", 1))
        hub.on_event(event("context.attribute_changed", 1, 2.0))
        hub.on_event(event("context.attribute_changed", 2, 5.0))
        hub.on_event(event("context.attribute_changed", 1, 3.0))
        received: list[tuple[str, str, Any]] = []
        while len(received) < 4:
            chunk = await anext(stream)
            for block in chunk.split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                if "data" in fields:
                    data = json.loads(fields["data"])
                    received.append((fields["event"], data["entity_id"][-2:], data.get("value")))
        await stream.aclose()
        return received

    assert asyncio.run(scenario()) == [
        ("context.entity_deleted", "s1", None),
        ("context.entity_created", "s1", None),
        ("context.attribute_changed", "s1", 3.0),
        ("context.attribute_changed", "s2", 5.0),
    ]


# --- generated input --------------------------------------------------------------------------

_STREAM_SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="sqlite://", secret_key="openapi-only-" + "x" * 32)).openapi()
).include(path=STREAM)


@_STREAM_SCHEMA.parametrize()
@hypothesis.settings(
    max_examples=40, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
def test_no_input_makes_the_stream_fail(
    case: schemathesis.Case, live: LiveServer, login_as: Callable[..., Headers], runtime: Runtime
) -> None:
    if "fuzz-admin" not in runtime.caches:
        runtime.caches["fuzz-admin"] = login_as("admin")
    kwargs = case.as_transport_kwargs(base_url=live.url)
    for extra in ({}, runtime.caches["fuzz-admin"]):
        with (
            httpx.Client(verify=TLS, timeout=10, cookies=kwargs.get("cookies")) as http,
            http.stream(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers={**(kwargs.get("headers") or {}), **extra},
            ) as response,
        ):
            assert response.status_code < 500, (case.as_curl_command(), response.read())
            if response.status_code == 200:
                assert next(response.iter_lines()).startswith("retry:")


def test_one_batch_upsert_streams_every_change_in_order_and_scoped(
    client: TestClient,
    connect: Connect,
    live: LiveServer,
    admin: Headers,
    operator: Headers,
    login_as: Callable[..., Headers],
    runtime: Runtime,
) -> None:
    def station(n: int, point: tuple[float, float], pm25: float) -> dict[str, Any]:
        return {
            "id": f"urn:ngsi-ld:AirQualityObserved:dn-batch-{n}",
            "type": "AirQualityObserved",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": point}},
            "dateObserved": {"type": "Property", "value": "2026-11-20T02:55:00Z"},
            "pm25": {"type": "Property", "value": pm25, "unitCode": "GQ"},
            "pm10": {"type": "Property", "value": pm25 + 10, "unitCode": "GQ"},
        }

    points = [BIEN_HOA if n % 2 else LONG_KHANH for n in range(30)]
    writer = {**admin, "Content-Type": "application/json"}
    first = [station(n, points[n], 20.0) for n in range(30)]
    created = client.post(f"{NGSI}/entityOperations/upsert", json=first, headers=writer)
    assert created.status_code == 204, created.text
    ward = unit_of(runtime, first[1]["id"])
    assert unit_of(runtime, first[0]["id"]) != ward
    watcher = connect(operator, types="entities")
    officer = connect(login_as("unit_officer", unit_code=ward), types="entities")

    second = [station(n, points[n], 30.0 + n) for n in range(30)]
    with httpx.Client(verify=TLS, timeout=10) as http:
        response = http.post(
            f"{live.url}{NGSI}/entityOperations/upsert", json=second, headers=writer
        )
    assert response.status_code == 204, response.text

    expected = [(e["id"], name) for e in second for name in ("pm25", "pm10")]
    seen = watcher.collect(
        lambda e: (e.data.get("entity_id"), e.data.get("attribute")) == expected[-1]
    )
    changes = [e for e in seen if e.type == "context.attribute_changed"]
    assert [(e.data["entity_id"], e.data["attribute"]) for e in changes] == expected
    assert [e.data["value"] for e in changes[:4]] == [30.0, 40.0, 31.0, 41.0]
    assert all(e.data["previous"] in (20.0, 30.0) for e in changes)
    assert len({e.data["correlation_id"] for e in changes}) == len(changes)

    mine = [
        pair
        for pair, point in zip(expected, [p for p in points for _ in (0, 1)], strict=True)
        if point == BIEN_HOA
    ]
    got = officer.collect(lambda e: (e.data.get("entity_id"), e.data.get("attribute")) == mine[-1])
    got += officer.drain(0.5)
    assert [(e.data["entity_id"], e.data["attribute"]) for e in got] == mine
    assert all(e.data["unit_code"] == ward for e in got)
