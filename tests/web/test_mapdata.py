"""The operations map's compact layers (`/api/v1/map/sensors`, `/api/v1/map/incidents`), their
ETags, the boundaries' ETag, and compression: what the screen loads in one request each."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from cityops.context import flows as context_flows
from cityops.context.models import Attribute, Entity
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.incidents.models import Incident
from cityops.units import service as unit_service
from cityops.web.mapdata import LayerCache

from .live import TLS, LiveServer

API = "/api/v1"
SENSORS = f"{API}/map/sensors"
INCIDENTS = f"{API}/map/incidents"
NGSI = "/ngsi-ld/v1/entities"
BIEN_HOA = (106.843, 10.957)  # a ward of former Biên Hòa
LONG_KHANH = (107.245, 10.935)  # a ward of former Long Khánh
Headers = dict[str, str]


def _point(point: tuple[float, float]) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": list(point)}}


def _prop(value: Any, observed: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if observed:
        out["observedAt"] = observed
    return out


def _create(client: TestClient, headers: Headers, body: dict[str, Any]) -> None:
    response = client.post(NGSI, json=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 201, response.text


def _rows(layer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rows of a layer as dicts, keyed by their first member (id or code)."""
    return {row[0]: dict(zip(layer["fields"], row, strict=True)) for row in layer["rows"]}


@pytest.fixture
def admin(login_as: Callable[..., Headers]) -> Headers:
    """Bearer headers of an administrator."""
    return login_as("admin")


@pytest.fixture
def sensors(client: TestClient, admin: Headers) -> dict[str, str]:
    """Air stations in Biên Hòa and Long Khánh, a river gauge and a hospital in Biên Hòa, and a
    traffic sensor (a type the map does not draw)."""
    at = "2026-11-20T02:55:00Z"
    bh_air = "urn:ngsi-ld:AirQualityObserved:map-bh"
    lk_air = "urn:ngsi-ld:AirQualityObserved:map-lk"
    river = "urn:ngsi-ld:WaterObserved:map-river"
    hospital = "urn:ngsi-ld:PointOfInterest:map-hospital"
    school = "urn:ngsi-ld:PointOfInterest:map-school"
    for entity_id, point, aqi, name in (
        (bh_air, BIEN_HOA, 172, "Trạm Biên Hòa"),
        (lk_air, LONG_KHANH, 42, "Trạm Long Khánh"),
    ):
        _create(
            client,
            admin,
            {
                "id": entity_id,
                "type": "AirQualityObserved",
                "name": _prop(name),
                "location": _point(point),
                "dateObserved": _prop(at),
                "airQualityIndex": _prop(aqi, at),
            },
        )
    _create(
        client,
        admin,
        {
            "id": river,
            "type": "WaterObserved",
            "location": _point((BIEN_HOA[0] + 0.002, BIEN_HOA[1])),
            "dateObserved": _prop(at),
            "waterLevel": _prop(3.25, at),
            "floodLevelStatus": _prop("alarm2", at),
        },
    )
    _create(
        client,
        admin,
        {
            "id": hospital,
            "type": "PointOfInterest",
            "name": _prop("Bệnh viện Đa khoa Đồng Nai"),
            "category": _prop(["hospital"]),
            "location": _point((BIEN_HOA[0] - 0.002, BIEN_HOA[1])),
            "bedOccupancy": _prop(96.5, at),
        },
    )
    _create(
        client,
        admin,
        {
            "id": school,
            "type": "PointOfInterest",
            "name": _prop("Trường THPT Long Khánh"),
            "category": _prop(["school"]),
            "location": _point((LONG_KHANH[0] + 0.002, LONG_KHANH[1])),
        },
    )
    _create(
        client,
        admin,
        {
            "id": "urn:ngsi-ld:TrafficFlowObserved:map-road",
            "type": "TrafficFlowObserved",
            "location": _point(BIEN_HOA),
            "dateObserved": _prop(at),
            "intensity": _prop(120, at),
        },
    )
    return {
        "bh_air": bh_air,
        "lk_air": lk_air,
        "river": river,
        "hospital": hospital,
        "school": school,
    }


def _unit_of(client: TestClient, point: tuple[float, float]) -> str:
    response = client.get(f"{API}/units/locate", params={"lon": point[0], "lat": point[1]})
    assert response.status_code == 200, response.text
    return str(response.json()["code"])


def test_every_located_sensor_comes_in_one_compact_response_with_its_level(
    client: TestClient, login_as: Callable[..., Headers], sensors: dict[str, str]
) -> None:
    response = client.get(SENSORS, headers=login_as("viewer"))
    assert response.status_code == 200, response.text
    layer = response.json()
    assert layer["fields"] == [
        "id",
        "type",
        "lat",
        "lon",
        "unit",
        "level",
        "value",
        "observedAt",
        "name",
    ]
    rows = _rows(layer)
    # The traffic sensor is not a map sensor; every other one is there, once.
    assert set(rows) == set(sensors.values())
    assert layer["count"] == 5
    assert layer["truncated"] is False
    bh = rows[sensors["bh_air"]]
    assert bh["type"] == "AirQualityObserved"
    assert (bh["lon"], bh["lat"]) == BIEN_HOA
    assert bh["unit"] == _unit_of(client, BIEN_HOA)
    assert (bh["level"], bh["value"]) == ("bad", 172)
    assert bh["observedAt"] == "2026-11-20T02:55:00.000Z"
    assert bh["name"] == "Trạm Biên Hòa"
    assert (rows[sensors["lk_air"]]["level"], rows[sensors["lk_air"]]["value"]) == ("good", 42)
    river = rows[sensors["river"]]
    assert (river["level"], river["value"]) == ("alarm2", 3.25)
    hospital = rows[sensors["hospital"]]
    assert (hospital["level"], hospital["value"]) == ("critical", 96.5)
    # A school has no bed occupancy: drawn, without a level.
    school = rows[sensors["school"]]
    assert (school["level"], school["value"], school["observedAt"]) == (None, None, None)


def test_a_unit_scoped_officer_gets_only_the_sensors_of_its_unit(
    client: TestClient, login_as: Callable[..., Headers], sensors: dict[str, str]
) -> None:
    ward = _unit_of(client, LONG_KHANH)
    response = client.get(SENSORS, headers=login_as("unit_officer", unit_code=ward))
    assert response.status_code == 200, response.text
    rows = _rows(response.json())
    assert set(rows) == {sensors["lk_air"], sensors["school"]}
    assert {row["unit"] for row in rows.values()} == {ward}


def test_the_area_and_unit_filters_narrow_the_sensors(
    client: TestClient,
    runtime: Runtime,
    login_as: Callable[..., Headers],
    sensors: dict[str, str],
) -> None:
    viewer = login_as("viewer")
    with runtime.session_factory() as session:
        bien_hoa = unit_service.get_area_unit_codes(session=session, area_code="bien-hoa-cu")
    assert bien_hoa is not None
    assert _unit_of(client, BIEN_HOA) in bien_hoa
    area = client.get(SENSORS, params={"area": "bien-hoa-cu"}, headers=viewer)
    assert area.status_code == 200, area.text
    assert set(_rows(area.json())) == {sensors["bh_air"], sensors["river"], sensors["hospital"]}
    ward = _unit_of(client, LONG_KHANH)
    unit = client.get(SENSORS, params={"unit": ward}, headers=viewer)
    assert set(_rows(unit.json())) == {sensors["lk_air"], sensors["school"]}
    # Both together: the unit within the area, here none.
    both = client.get(SENSORS, params={"area": "bien-hoa-cu", "unit": ward}, headers=viewer)
    assert both.status_code == 200
    assert both.json()["rows"] == []


@pytest.mark.parametrize(
    ("params", "named"),
    [({"area": "khong-co-khu-vuc"}, "khong-co-khu-vuc"), ({"unit": "99999"}, "99999")],
)
def test_an_unknown_area_or_unit_is_a_404_naming_it(
    client: TestClient,
    login_as: Callable[..., Headers],
    params: dict[str, str],
    named: str,
) -> None:
    viewer = login_as("viewer")
    for path in (SENSORS, INCIDENTS):
        response = client.get(path, params=params, headers=viewer)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert named in response.json()["detail"]


def test_the_map_layers_need_a_login_and_the_permission_to_read(
    client: TestClient, runtime: Runtime, sensors: dict[str, str]
) -> None:
    for path in (SENSORS, INCIDENTS):
        assert client.get(path).status_code == 401


def test_the_sensors_layer_has_an_etag_and_answers_304_until_a_value_changes(
    client: TestClient, admin: Headers, sensors: dict[str, str]
) -> None:
    first = client.get(SENSORS, headers=admin)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    assert first.headers["cache-control"] == "private, max-age=5"
    again = client.get(SENSORS, headers={**admin, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    # A strong form of the same tag, or a list holding it, matches too (weak comparison).
    strong = etag.removeprefix("W/")
    listed = client.get(SENSORS, headers={**admin, "If-None-Match": f'"other", {strong}'})
    assert listed.status_code == 304
    patch = client.patch(
        f"{NGSI}/{sensors['lk_air']}/attrs",
        json={"airQualityIndex": _prop(163, "2026-11-20T03:00:00Z")},
        headers={**admin, "Content-Type": "application/json"},
    )
    assert patch.status_code == 204, patch.text
    changed = client.get(SENSORS, headers={**admin, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    row = _rows(changed.json())[sensors["lk_air"]]
    assert (row["level"], row["value"]) == ("bad", 163)
    assert row["observedAt"] == "2026-11-20T03:00:00.000Z"


def _write_behind_the_api(runtime: Runtime, entity_id: str, aqi: float) -> None:
    """Change a stored AQI without any event, as another worker process would (its events stay
    in that process)."""
    name = context_flows.default_context(runtime).expand("airQualityIndex")
    entity_pk = select(Entity.pk).where(Entity.entity_id == entity_id).scalar_subquery()
    with unit_of_work(runtime.session_factory) as session:
        session.execute(
            update(Attribute)
            .where(Attribute.entity_pk == entity_pk, Attribute.name == name)
            .values(value_num=aqi)
        )


def _aqi(client: TestClient, headers: Headers, entity_id: str) -> Any:
    response = client.get(SENSORS, headers=headers)
    assert response.status_code == 200, response.text
    return _rows(response.json())[entity_id]["value"]


def test_the_sensors_layer_is_reused_for_a_few_seconds_then_read_again(
    client: TestClient,
    clock: FrozenClock,
    admin: Headers,
    runtime: Runtime,
    sensors: dict[str, str],
) -> None:
    first = client.get(SENSORS, headers=admin)
    _write_behind_the_api(runtime, sensors["lk_air"], 180)
    # Another process's write is not announced here: the kept layer answers, 304 included.
    assert _aqi(client, admin, sensors["lk_air"]) == 42
    again = client.get(SENSORS, headers={**admin, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    # ... for map_cache_seconds at most.
    clock.advance(timedelta(seconds=runtime.settings.map_cache_seconds))
    later = client.get(SENSORS, headers={**admin, "If-None-Match": first.headers["etag"]})
    assert later.status_code == 200
    assert _rows(later.json())[sensors["lk_air"]]["level"] == "bad"
    assert later.headers["etag"] != first.headers["etag"]


def test_a_drawn_change_made_here_shows_at_once_and_an_undrawn_one_keeps_the_layer(
    client: TestClient, admin: Headers, runtime: Runtime, sensors: dict[str, str]
) -> None:
    json_headers = {**admin, "Content-Type": "application/json"}
    assert _aqi(client, admin, sensors["bh_air"]) == 172
    _write_behind_the_api(runtime, sensors["lk_air"], 180)
    # A change of an attribute the map does not draw (here, of a drawn sensor) keeps the layer:
    # the write behind the API is still not seen.
    patch = client.patch(
        f"{NGSI}/{sensors['bh_air']}/attrs",
        json={"dateObserved": _prop("2026-11-20T03:00:00Z")},
        headers=json_headers,
    )
    assert patch.status_code == 204, patch.text
    assert _aqi(client, admin, sensors["lk_air"]) == 42
    # A drawn attribute's change shows at once, applied to the kept layer: the write behind
    # the API still waits for map_cache_seconds.
    patch = client.patch(
        f"{NGSI}/{sensors['bh_air']}/attrs",
        json={"airQualityIndex": _prop(35, "2026-11-20T02:58:00Z")},
        headers=json_headers,
    )
    assert patch.status_code == 204, patch.text
    response = client.get(SENSORS, headers=admin)
    rows = _rows(response.json())
    assert (rows[sensors["bh_air"]]["value"], rows[sensors["bh_air"]]["level"]) == (35, "good")
    assert rows[sensors["bh_air"]]["observedAt"] == "2026-11-20T02:58:00.000Z"
    assert rows[sensors["lk_air"]]["value"] == 42
    # A move (another place, here another ward) drops the layer: both are read again.
    moved = client.patch(
        f"{NGSI}/{sensors['bh_air']}/attrs",
        json={"location": _point(LONG_KHANH)},
        headers=json_headers,
    )
    assert moved.status_code == 204, moved.text
    rows = _rows(client.get(SENSORS, headers=admin).json())
    row = rows[sensors["bh_air"]]
    assert (row["lon"], row["lat"]) == LONG_KHANH
    assert row["unit"] == _unit_of(client, LONG_KHANH)
    assert rows[sensors["lk_air"]]["value"] == 180


def test_a_created_or_deleted_sensor_shows_at_once(
    client: TestClient, admin: Headers, sensors: dict[str, str]
) -> None:
    before = client.get(SENSORS, headers=admin)
    assert before.json()["count"] == 5
    new = "urn:ngsi-ld:WaterObserved:map-new-gauge"
    _create(
        client,
        admin,
        {
            "id": new,
            "type": "WaterObserved",
            "location": _point(LONG_KHANH),
            "dateObserved": _prop("2026-11-20T03:00:00Z"),
            "waterLevel": _prop(1.5, "2026-11-20T03:00:00Z"),
            "floodLevelStatus": _prop("normal", "2026-11-20T03:00:00Z"),
        },
    )
    created = client.get(SENSORS, headers={**admin, "If-None-Match": before.headers["etag"]})
    assert created.status_code == 200
    assert created.json()["count"] == 6
    assert (_rows(created.json())[new]["level"], _rows(created.json())[new]["value"]) == (
        "normal",
        1.5,
    )
    deleted = client.delete(f"{NGSI}/{sensors['river']}", headers=admin)
    assert deleted.status_code == 204, deleted.text
    after = client.get(SENSORS, headers={**admin, "If-None-Match": created.headers["etag"]})
    assert after.status_code == 200
    assert set(_rows(after.json())) == set(sensors.values()) - {sensors["river"]} | {new}


def test_two_scopes_never_share_a_kept_layer(
    client: TestClient, login_as: Callable[..., Headers], sensors: dict[str, str]
) -> None:
    ward = _unit_of(client, LONG_KHANH)
    officer = login_as("unit_officer", unit_code=ward)
    province = client.get(SENSORS, headers=login_as("viewer"))
    assert province.json()["count"] == 5
    # Right after the province's layer was kept: the officer still gets the ward's only, and
    # the province's tag is not the officer's.
    scoped = client.get(SENSORS, headers={**officer, "If-None-Match": province.headers["etag"]})
    assert scoped.status_code == 200
    assert set(_rows(scoped.json())) == {sensors["lk_air"], sensors["school"]}
    # The other way round, and per filter: each key its own layer.
    assert client.get(SENSORS, headers=login_as("admin")).json()["count"] == 5
    bien_hoa = client.get(SENSORS, params={"area": "bien-hoa-cu"}, headers=login_as("viewer"))
    assert set(_rows(bien_hoa.json())) == {sensors["bh_air"], sensors["river"], sensors["hospital"]}
    other = login_as("unit_officer", unit_code=_unit_of(client, BIEN_HOA))
    assert set(_rows(client.get(SENSORS, headers=other).json())) == {
        sensors["bh_air"],
        sensors["river"],
        sensors["hospital"],
    }


def test_without_reuse_every_request_reads_the_store(
    client: TestClient,
    settings: Settings,
    admin: Headers,
    runtime: Runtime,
    sensors: dict[str, str],
) -> None:
    settings.map_cache_seconds = 0  # read each time a layer is built
    assert _aqi(client, admin, sensors["lk_air"]) == 42
    _write_behind_the_api(runtime, sensors["lk_air"], 180)
    assert _aqi(client, admin, sensors["lk_air"]) == 180


def _cached_rows(cache: LayerCache, layer: Any) -> dict[str, list[Any]]:
    body, _ = cache.body(layer)
    return {row[0]: row for row in json.loads(body)["rows"]}


def _aqi_event(entity_id: str, aqi: float, observed: str, **extra: Any) -> Event:
    data = {
        "tenant": "default",
        "entity_id": entity_id,
        "entity_type": "AirQualityObserved",
        "attribute": "airQualityIndex",
        "dataset_id": None,
        "attribute_type": "Property",
        "value": aqi,
        "observed_at": observed,
        "deleted": False,
        **extra,
    }
    return Event(type=context_flows.EVENT_ATTRIBUTE_CHANGED, data=data, at=T0)


T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
AIR = "urn:ngsi-ld:AirQualityObserved:a"
AIR_ROW = [
    AIR,
    "AirQualityObserved",
    10.9,
    106.8,
    "26041",
    "good",
    42.0,
    "2026-11-20T02:55:00.000Z",
    None,
]
# The row as read (get_located_values): id, type, lat, lon, unit, name, value (number, text,
# time), level (number, text, time).
AIR_SOURCE = (
    AIR, "AirQualityObserved", 10.9, 106.8, "26041", None,
    42.0, None, "2026-11-20T02:55:00+00:00", 42.0, None, "2026-11-20T02:55:00+00:00",
)  # fmt: skip


def test_a_layer_read_before_a_drop_is_not_kept() -> None:
    """A request that read the store before a sensor was created must not keep what it read."""
    cache = LayerCache(seconds=2)
    key = ("default", None, None, None)
    generation = cache.generation
    # A sensor is created while the request reads.
    cache.on_event(
        Event(
            type=context_flows.EVENT_ENTITY_CREATED,
            data={"tenant": "default", "entity_id": "x", "entity_type": "WaterObserved"},
            at=T0,
        )
    )
    answered = cache.put(key, generation, [list(AIR_ROW)], [AIR_SOURCE], T0)
    assert set(_cached_rows(cache, answered)) == {AIR}  # answered to that request ...
    assert cache.get(key, T0) is None  # ... but not kept for the next
    cache.put(key, cache.generation, [list(AIR_ROW)], [AIR_SOURCE], T0)
    assert cache.get(key, T0 + timedelta(seconds=1)) is not None
    assert cache.get(key, T0 + timedelta(seconds=2)) is None


def test_a_value_change_during_a_read_is_applied_to_what_it_keeps() -> None:
    """A change published while a layer is read is replayed onto it: kept, and current."""
    cache = LayerCache(seconds=2)
    key = ("default", None, None, None)
    generation = cache.generation
    cache.on_event(_aqi_event(AIR, 180, "2026-11-20T02:59:00.000Z"))
    # Another tenant's change of the same id is not this layer's.
    cache.on_event(_aqi_event(AIR, 20, "2026-11-20T02:59:30.000Z", tenant="khac"))
    answered = cache.put(key, generation, [list(AIR_ROW)], [AIR_SOURCE], T0)
    kept = cache.get(key, T0)
    assert kept is answered
    row = _cached_rows(cache, kept)[AIR]
    assert (row[5], row[6], row[7]) == ("bad", 180, "2026-11-20T02:59:00.000Z")


def test_a_change_without_its_own_time_or_of_a_location_drops_the_layers() -> None:
    """An observation time equal to the write's may be none at all (stored as none): not told
    apart, the layers are read again; so they are when a sensor moves."""
    cache = LayerCache(seconds=2)
    key = ("default", None, None, None)
    for event in (
        _aqi_event(AIR, 99, "2026-11-20T03:00:00.000Z"),
        _aqi_event(AIR, None, "2026-11-20T02:59:00.000Z", attribute="location"),
    ):
        cache.put(key, cache.generation, [list(AIR_ROW)], [AIR_SOURCE], T0)
        assert cache.get(key, T0) is not None
        cache.on_event(event)
        assert cache.get(key, T0) is None
    # A change the map does not draw keeps it.
    cache.put(key, cache.generation, [list(AIR_ROW)], [AIR_SOURCE], T0)
    before = cache.body(cache.get(key, T0))  # type: ignore[arg-type]
    cache.on_event(_aqi_event(AIR, 1.5, "2026-11-20T02:59:00.000Z", attribute="waterLevel"))
    cache.on_event(_aqi_event(AIR, 1, "2026-11-20T02:59:00.000Z", dataset_id="urn:x"))
    assert cache.body(cache.get(key, T0)) == before  # type: ignore[arg-type]


def _open_incident(
    client: TestClient, headers: Headers, title: str, unit_code: str, **extra: Any
) -> str:
    body = {"title": title, "category_code": "other", "severity": "high", "unit_code": unit_code}
    response = client.post(f"{API}/incidents", json={**body, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["code"])


def test_open_incidents_come_in_one_compact_response_in_the_callers_scope(
    client: TestClient, runtime: Runtime, admin: Headers, login_as: Callable[..., Headers]
) -> None:
    bien_hoa = _unit_of(client, BIEN_HOA)
    long_khanh = _unit_of(client, LONG_KHANH)
    first = _open_incident(
        client, admin, "Ngập nước đường Phạm Văn Thuận", bien_hoa, lat=10.957, lon=106.843
    )
    second = _open_incident(client, admin, "Rác tràn chợ Long Khánh", long_khanh)
    closed = _open_incident(client, admin, "Đèn đường hỏng", long_khanh)
    # Closed the short way: the workflow's steps are the incidents tests' business.
    with unit_of_work(runtime.session_factory) as session:
        session.execute(update(Incident).where(Incident.code == closed).values(status="closed"))
    viewer = client.get(INCIDENTS, headers=login_as("viewer"))
    assert viewer.status_code == 200, viewer.text
    layer = viewer.json()
    assert layer["fields"] == [
        "code",
        "lat",
        "lon",
        "unit",
        "severity",
        "status",
        "title",
        "alertId",
        "createdAt",
    ]
    rows = _rows(layer)
    assert first in rows
    assert second in rows
    assert closed not in rows
    assert (rows[first]["lat"], rows[first]["lon"]) == (10.957, 106.843)
    assert rows[first]["unit"] == bien_hoa
    assert (rows[first]["severity"], rows[first]["status"]) == ("high", "new")
    assert rows[first]["title"] == "Ngập nước đường Phạm Văn Thuận"
    assert rows[first]["createdAt"] == "2026-11-20T03:00:00.000Z"
    # Without a point, the map places it at its unit.
    assert (rows[second]["lat"], rows[second]["lon"]) == (None, None)
    # A ward officer sees its ward's incidents only; the area filter narrows the same way.
    scoped = client.get(INCIDENTS, headers=login_as("unit_officer", unit_code=long_khanh))
    assert set(_rows(scoped.json())) == {second}
    area = client.get(INCIDENTS, params={"area": "bien-hoa-cu"}, headers=admin)
    assert first in _rows(area.json())
    assert second not in _rows(area.json())
    # Conditional GET works as for sensors (the admin sees the same incidents as the viewer).
    etag = viewer.headers["etag"]
    assert viewer.headers["cache-control"] == "private, max-age=5"
    assert client.get(INCIDENTS, headers={**admin, "If-None-Match": etag}).status_code == 304
    _open_incident(client, admin, "Cây đổ chắn đường", bien_hoa)
    assert client.get(INCIDENTS, headers={**admin, "If-None-Match": etag}).status_code == 200


def test_an_edited_incident_shows_at_once_and_a_write_elsewhere_after_map_cache_seconds(
    client: TestClient, clock: FrozenClock, runtime: Runtime, admin: Headers
) -> None:
    ward = _unit_of(client, BIEN_HOA)
    body = {"title": "Ngập nước", "category_code": "other", "severity": "low", "unit_code": ward}
    created = client.post(f"{API}/incidents", json=body, headers=admin)
    assert created.status_code == 201, created.text
    incident_id, code = created.json()["id"], created.json()["code"]
    first = client.get(INCIDENTS, headers=admin)
    assert _rows(first.json())[code]["severity"] == "low"
    edited = client.patch(
        f"{API}/incidents/{incident_id}",
        json={"severity": "critical", "title": "Ngập sâu 0,5 m"},
        headers=admin,
    )
    assert edited.status_code == 200, edited.text
    after = client.get(INCIDENTS, headers={**admin, "If-None-Match": first.headers["etag"]})
    assert after.status_code == 200
    row = _rows(after.json())[code]
    assert (row["severity"], row["title"]) == ("critical", "Ngập sâu 0,5 m")
    # Closed by another process (no event here): the kept layer answers until it expires.
    with unit_of_work(runtime.session_factory) as session:
        session.execute(update(Incident).where(Incident.code == code).values(status="closed"))
    assert code in _rows(client.get(INCIDENTS, headers=admin).json())
    clock.advance(timedelta(seconds=runtime.settings.map_cache_seconds))
    assert code not in _rows(client.get(INCIDENTS, headers=admin).json())


def test_a_ward_officers_kept_incident_layer_stays_its_wards_after_changes(
    client: TestClient, admin: Headers, login_as: Callable[..., Headers]
) -> None:
    long_khanh, bien_hoa = _unit_of(client, LONG_KHANH), _unit_of(client, BIEN_HOA)
    own = _open_incident(client, admin, "Rác tràn chợ Long Khánh", long_khanh)
    officer = login_as("unit_officer", unit_code=long_khanh)
    assert set(_rows(client.get(INCIDENTS, headers=officer).json())) == {own}
    # The province's layer is kept too; a new incident elsewhere drops both.
    assert own in _rows(client.get(INCIDENTS, headers=admin).json())
    other = _open_incident(client, admin, "Ngập nước đường Phạm Văn Thuận", bien_hoa)
    assert set(_rows(client.get(INCIDENTS, headers=officer).json())) == {own}
    assert {own, other} <= set(_rows(client.get(INCIDENTS, headers=admin).json()))


def _stations(client: TestClient, headers: Headers, point: tuple[float, float], n: int) -> None:
    """Upsert n air stations around a point (enough rows for a body worth compressing)."""
    stations = [
        {
            "id": f"urn:ngsi-ld:AirQualityObserved:map-many-{point[0]}-{i}",
            "type": "AirQualityObserved",
            "location": _point((point[0] + i / 5000, point[1])),
            "dateObserved": _prop("2026-11-20T02:55:00Z"),
            "airQualityIndex": _prop(50 + i, "2026-11-20T02:55:00Z"),
        }
        for i in range(n)
    ]
    upsert = client.post(
        "/ngsi-ld/v1/entityOperations/upsert",
        json=stations,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert upsert.status_code in (201, 204), upsert.text


def _raw_gzip(client: TestClient, headers: Headers) -> tuple[str, dict[str, Any]]:
    """The sensors layer asked for with gzip: its ETag and its rows, from the raw bytes."""
    with client.stream("GET", SENSORS, headers={**headers, "Accept-Encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    assert int(r.headers["content-length"]) == len(raw)
    return r.headers["etag"], _rows(json.loads(gzip.decompress(raw)))


def test_a_value_change_updates_the_kept_layers_of_the_scopes_holding_the_sensor(
    client: TestClient,
    clock: FrozenClock,
    runtime: Runtime,
    login_as: Callable[..., Headers],
    admin: Headers,
    sensors: dict[str, str],
) -> None:
    _stations(client, admin, LONG_KHANH, 30)
    lk_ward, bh_ward = _unit_of(client, LONG_KHANH), _unit_of(client, BIEN_HOA)
    lk_officer = login_as("unit_officer", unit_code=lk_ward)
    bh_officer = login_as("unit_officer", unit_code=bh_ward)
    province_tag, province = _raw_gzip(client, admin)
    lk_tag, lk_rows = _raw_gzip(client, lk_officer)
    bh_first = client.get(SENSORS, headers=bh_officer)
    assert set(_rows(bh_first.json())) == {sensors["bh_air"], sensors["river"], sensors["hospital"]}
    assert sensors["lk_air"] in lk_rows
    assert sensors["bh_air"] not in lk_rows
    json_headers = {**admin, "Content-Type": "application/json"}
    for entity_id, attrs in (
        (sensors["lk_air"], {"airQualityIndex": _prop(163, "2026-11-20T02:58:00Z")}),
        (sensors["river"], {"floodLevelStatus": _prop("alarm3", "2026-11-20T02:58:30Z")}),
        (sensors["hospital"], {"name": _prop("Bệnh viện Thống Nhất")}),
    ):
        patch = client.patch(f"{NGSI}/{entity_id}/attrs", json=attrs, headers=json_headers)
        assert patch.status_code == 204, patch.text
    # The province: every change, a new tag, compressed anew.
    tag, rows = _raw_gzip(client, admin)
    assert tag != province_tag
    assert len(rows) == len(province)
    lk = rows[sensors["lk_air"]]
    assert (lk["value"], lk["level"], lk["observedAt"]) == (163, "bad", "2026-11-20T02:58:00.000Z")
    river = rows[sensors["river"]]
    assert (river["value"], river["level"]) == (3.25, "alarm3")
    # The gauge's time is its level's when its value has none newer: here the value's.
    assert river["observedAt"] == "2026-11-20T02:55:00.000Z"
    assert rows[sensors["hospital"]]["name"] == "Bệnh viện Thống Nhất"
    assert rows[sensors["hospital"]]["level"] == "critical"
    # Long Khánh's officer: its station changed, and still nothing of Biên Hòa.
    lk_tag_after, lk_after = _raw_gzip(client, lk_officer)
    assert lk_tag_after != lk_tag
    assert set(lk_after) == set(lk_rows)
    assert lk_after[sensors["lk_air"]]["value"] == 163
    # Biên Hòa's officer: its gauge and hospital changed, Long Khánh's station never appears.
    bh = client.get(SENSORS, headers={**bh_officer, "If-None-Match": bh_first.headers["etag"]})
    assert bh.status_code == 200
    bh_rows = _rows(bh.json())
    assert set(bh_rows) == {sensors["bh_air"], sensors["river"], sensors["hospital"]}
    assert bh_rows[sensors["river"]]["level"] == "alarm3"
    # Unchanged since: 304, without reading anything again.
    again = client.get(SENSORS, headers={**bh_officer, "If-None-Match": bh.headers["etag"]})
    assert again.status_code == 304
    # Another process's write still shows once map_cache_seconds have passed.
    _write_behind_the_api(runtime, sensors["bh_air"], 20)
    assert _rows(client.get(SENSORS, headers=bh_officer).json())[sensors["bh_air"]]["value"] == 172
    clock.advance(timedelta(seconds=runtime.settings.map_cache_seconds))
    assert _rows(client.get(SENSORS, headers=bh_officer).json())[sensors["bh_air"]]["value"] == 20


def test_a_deleted_value_leaves_the_marker_without_a_level(
    client: TestClient, admin: Headers, sensors: dict[str, str]
) -> None:
    before = _rows(client.get(SENSORS, headers=admin).json())
    assert before[sensors["hospital"]]["level"] == "critical"
    deleted = client.delete(f"{NGSI}/{sensors['hospital']}/attrs/bedOccupancy", headers=admin)
    assert deleted.status_code == 204, deleted.text
    row = _rows(client.get(SENSORS, headers=admin).json())[sensors["hospital"]]
    assert (row["level"], row["value"], row["observedAt"]) == (None, None, None)
    assert row["name"] == "Bệnh viện Đa khoa Đồng Nai"


def test_a_key_without_the_permission_gets_403_and_a_tenant_key_its_tenant_only(
    client: TestClient, admin: Headers, sensors: dict[str, str]
) -> None:
    def key(**body: Any) -> Headers:
        response = client.post(f"{API}/api-keys", json={"name": "bản đồ", **body}, headers=admin)
        assert response.status_code == 201, response.text
        return {"X-API-Key": response.json()["key"]}

    reader = key(permissions=["context:read"])
    assert client.get(INCIDENTS, headers=reader).status_code == 403
    assert client.get(SENSORS, headers=key(permissions=["incident:read"])).status_code == 403
    assert client.get(SENSORS, headers=reader).json()["count"] == 5
    # The map shows the default tenant; a key bound to another tenant sees that tenant's.
    other = client.get(SENSORS, headers=key(permissions=["context:read"], tenant="khac"))
    assert other.status_code == 200
    assert other.json()["rows"] == []


def test_the_boundaries_have_an_etag_and_answer_304(client: TestClient) -> None:
    first = client.get(f"{API}/units/geometry", params={"level": "commune"})
    assert first.status_code == 200
    assert len(first.json()["features"]) == 95
    etag = first.headers["etag"]
    again = client.get(
        f"{API}/units/geometry", params={"level": "commune"}, headers={"If-None-Match": etag}
    )
    assert again.status_code == 304
    # Another language is another representation.
    english = client.get(
        f"{API}/units/geometry",
        params={"level": "commune"},
        headers={"If-None-Match": etag, "Accept-Language": "en"},
    )
    assert english.status_code in (200, 304)
    area = client.get(f"{API}/units/geometry", params={"area": "khong-co"})
    assert area.status_code == 404


def test_json_layers_and_scripts_are_gzipped(
    client: TestClient, admin: Headers, sensors: dict[str, str]
) -> None:
    # Five sensors make less than a kilobyte: sent as they are, not worth compressing.
    small = client.get(SENSORS, headers={**admin, "Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    stations = [
        {
            "id": f"urn:ngsi-ld:AirQualityObserved:map-many-{i}",
            "type": "AirQualityObserved",
            "location": _point((BIEN_HOA[0] + i / 1000, BIEN_HOA[1])),
            "dateObserved": _prop("2026-11-20T02:55:00Z"),
            "airQualityIndex": _prop(50 + i, "2026-11-20T02:55:00Z"),
        }
        for i in range(40)
    ]
    upsert = client.post(
        "/ngsi-ld/v1/entityOperations/upsert",
        json=stations,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert upsert.status_code in (201, 204), upsert.text
    layer = client.get(SENSORS, headers={**admin, "Accept-Encoding": "gzip"})
    assert layer.headers["content-encoding"] == "gzip"
    assert layer.json()["count"] == 45
    assert int(layer.headers["content-length"]) < len(layer.content) / 3
    geometry = client.get(f"{API}/units/geometry", headers={"Accept-Encoding": "gzip"})
    assert geometry.headers["content-encoding"] == "gzip"
    raw = client.get(f"{API}/units/geometry", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    script = client.get("/static/js/operations.js", headers={"Accept-Encoding": "gzip"})
    assert script.status_code == 200
    assert script.headers["content-encoding"] == "gzip"
    assert "sensorLayer" in script.text
    style = client.get("/static/cityops.css", headers={"Accept-Encoding": "gzip"})
    assert style.headers["content-encoding"] == "gzip"


@pytest.fixture
def live(app: FastAPI) -> Iterator[LiveServer]:
    """The test's app served by a real uvicorn server."""
    server = LiveServer(app).start()
    yield server
    server.stop()


def test_the_live_stream_is_neither_compressed_nor_buffered(
    live: LiveServer, runtime: Runtime, admin: Headers
) -> None:
    """A browser always asks for gzip: the stream must still deliver each event at once."""
    received: list[str] = []
    opened = threading.Event()
    got = threading.Event()
    encodings: list[str | None] = []

    def read() -> None:
        headers = {**admin, "Accept-Encoding": "gzip, deflate, br"}
        timeout = httpx.Timeout(10.0, read=None)
        with (
            httpx.Client(timeout=timeout, verify=TLS) as http,
            http.stream("GET", f"{live.url}{API}/stream?types=alerts", headers=headers) as r,
        ):
            encodings.append(r.headers.get("content-encoding"))
            # Raw bytes: gzip would show as undecodable binary, not as event lines.
            buffer = b""
            for chunk in r.iter_raw():
                buffer += chunk
                if b"\n\n" in buffer:
                    opened.set()
                if b"event: alerts.alert_opened" in buffer:
                    received.append(buffer.decode())
                    got.set()
                    return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert opened.wait(10), "the stream never sent its first block"
    event = Event(
        type="alerts.alert_opened",
        data={
            "alert_id": 9001,
            "rule_id": 1,
            "rule_code": "aqi-unhealthy",
            "kind": "threshold",
            "severity": "high",
            "status": "open",
            "tenant": "default",
            "entity_id": "urn:ngsi-ld:AirQualityObserved:map-bh",
            "entity_type": "AirQualityObserved",
            "attribute": "airQualityIndex",
            "value": 172,
            "unit_code": None,
            "lat": None,
            "lon": None,
            "sector": "environment",
            "title_vi": "Chất lượng không khí kém",
            "title_en": "Unhealthy air quality",
            "opened_at": "2026-11-20T03:00:00.000Z",
            "resolved_at": None,
            "actor_id": None,
            "policy": {"incident": None, "notify": []},
        },
        at=runtime.clock.now(),
    )
    with unit_of_work(runtime.session_factory) as session:
        runtime.bus.publish_after_commit(session, event)
    # One small event, far below any compression buffer: it arrives only if nothing buffers.
    assert got.wait(5), "the event did not come through at once"
    assert encodings == [None]
    assert '"alert_id":9001' in received[0]


def test_a_gzip_body_is_what_the_client_decodes(client: TestClient, admin: Headers) -> None:
    """The compressed layer is the same JSON (checked on the raw bytes, not httpx's decoding)."""
    with client.stream(
        "GET", f"{API}/units/geometry", headers={"Accept-Encoding": "gzip"}
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw).startswith(b'{"type":"FeatureCollection"')


def test_a_vendor_script_is_sent_from_its_kept_gzip_copy_with_its_validators(
    client: TestClient,
) -> None:
    """Leaflet compressed once, not on every first load: the same bytes, headers and 304s."""
    path = "/static/vendor/leaflet/leaflet.js"
    raw = client.get(path, headers={"Accept-Encoding": "identity"})
    assert raw.status_code == 200
    assert "content-encoding" not in raw.headers
    for _ in range(2):  # compressed, then from the kept copy
        with client.stream("GET", path, headers={"Accept-Encoding": "gzip, deflate"}) as r:
            packed = b"".join(r.iter_raw())
        assert r.status_code == 200
        assert r.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in r.headers["vary"].lower()
        assert r.headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )
        assert r.headers["cache-control"] == "public, max-age=2592000"
        assert r.headers["etag"] == raw.headers["etag"]
        assert int(r.headers["content-length"]) == len(packed) < len(raw.content) / 2
        assert gzip.decompress(packed) == raw.content
    cached = client.get(
        path, headers={"Accept-Encoding": "gzip", "If-None-Match": raw.headers["etag"]}
    )
    assert cached.status_code == 304
    # A range is answered from the file as it is.
    part = client.get(path, headers={"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.content == raw.content[:100]
