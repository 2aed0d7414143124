"""Smart Data Models validation on every write path: NGSI-LD routes, batches, HTTP ingest, MQTT,
imports and the simulator; and the read-only schema catalogue at /api/v1/datamodels."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cityops.context import datamodels
from cityops.context.ldcontext import build
from cityops.context.models import History
from cityops.context.normalize import parse_entity
from cityops.core.runtime import Runtime
from cityops.ingest import imports
from cityops.ingest.mqtt import MqttBridge
from cityops.simulate import flows as simulate_flows
from cityops.simulate.catalog import ENTITY_TYPES, build_catalog
from cityops.simulate.entities import observation_entity, static_entity
from cityops.simulate.generators import observe

from ..broker import Broker
from ..ingest.conftest import Publisher, wait_for
from .conftest import BASE, FIXTURES

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
VALID: dict[str, dict[str, Any]] = json.loads((FIXTURES / "datamodels_valid.json").read_text())
INVALID: list[dict[str, Any]] = json.loads((FIXTURES / "datamodels_invalid.json").read_text())
EN = {"Accept-Language": "en"}


def _bad_copy(case: dict[str, Any]) -> dict[str, Any]:
    entity = copy.deepcopy(VALID[case["type"]])
    entity["id"] += "-bad"
    entity[case["attribute"]] = {"type": "Property", "value": case["value"]}
    return entity


def test_every_validated_type_has_a_fixture() -> None:
    assert set(VALID) == set(datamodels.types())
    assert {case["type"] for case in INVALID} == set(VALID)


@pytest.mark.parametrize("entity_type", sorted(VALID))
def test_a_valid_entity_of_each_type_is_stored(
    client: TestClient, admin: dict[str, str], entity_type: str
) -> None:
    entity = VALID[entity_type]
    created = client.post(f"{BASE}/entities", json=entity, headers=admin)
    assert created.status_code == 201, created.text
    got = client.get(f"{BASE}/entities/{entity['id']}", headers=admin)
    assert got.status_code == 200
    assert got.json()["type"] == entity_type


@pytest.mark.parametrize("case", INVALID, ids=[f"{c['type']}-{c['attribute']}" for c in INVALID])
def test_an_invalid_entity_is_refused_naming_the_field_and_nothing_is_stored(
    client: TestClient, admin: dict[str, str], case: dict[str, Any]
) -> None:
    bad = _bad_copy(case)
    refused = client.post(f"{BASE}/entities", json=bad, headers={**admin, **EN})
    assert refused.status_code == 400, refused.text
    problem = refused.json()
    assert problem["type"] == ERR + "BadRequestData"
    assert problem["detail"].startswith(case["detail"]), problem["detail"]
    assert client.get(f"{BASE}/entities/{bad['id']}", headers=admin).status_code == 404
    # The same value as an update of a stored, valid entity: refused, the old value kept.
    good = VALID[case["type"]]
    assert client.post(f"{BASE}/entities", json=good, headers=admin).status_code == 201
    before = client.get(f"{BASE}/entities/{good['id']}", headers=admin).json()
    url = f"{BASE}/entities/{good['id']}"
    body = {case["attribute"]: {"type": "Property", "value": case["value"]}}
    for response in (
        client.patch(f"{url}/attrs", json=body, headers=admin),
        client.post(f"{url}/attrs", json=body, headers=admin),
        client.patch(url, json=body, headers=admin),
        client.put(f"{url}/attrs/{case['attribute']}", json=body[case["attribute"]], headers=admin)
        if case["attribute"] in good
        else client.patch(url, json={case["attribute"]: case["value"]}, headers=admin),
    ):
        assert response.status_code == 400, response.text
    assert client.get(url, headers=admin).json() == before


def test_the_message_is_translated(client: TestClient, admin: dict[str, str]) -> None:
    bad = _bad_copy(INVALID[0])
    refused = client.post(f"{BASE}/entities", json=bad, headers=admin)
    assert refused.json()["detail"] == "pm25: -3 nhỏ hơn giá trị tối thiểu 0"


def test_concise_and_keyvalues_like_input_is_checked_too(
    client: TestClient, admin: dict[str, str]
) -> None:
    concise = {
        "id": "urn:ngsi-ld:WeatherObserved:dm-concise",
        "type": "WeatherObserved",
        "dateObserved": "2026-11-20T03:00:00Z",
        "location": {"type": "Point", "coordinates": [106.84, 10.96]},
        "relativeHumidity": 85,
    }
    refused = client.post(f"{BASE}/entities", json=concise, headers={**admin, **EN})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "relativeHumidity: 85 is greater than the maximum of 1"
    concise["relativeHumidity"] = 0.85
    assert client.post(f"{BASE}/entities", json=concise, headers=admin).status_code == 201
    # A geometry is checked as the model's location: a point needs two or three numbers.
    moved = client.patch(
        f"{BASE}/entities/{concise['id']}/attrs",
        json={"location": {"type": "Point", "coordinates": [106.84, 10.96, 3.0, 4.0]}},
        headers=admin,
    )
    assert moved.status_code == 400


def test_required_members_on_create_and_replace_only(
    client: TestClient, admin: dict[str, str]
) -> None:
    entity = copy.deepcopy(VALID["AirQualityObserved"])
    del entity["location"]
    refused = client.post(f"{BASE}/entities", json=entity, headers={**admin, **EN})
    assert refused.status_code == 400
    assert (
        refused.json()["detail"]
        == "location: the AirQualityObserved model requires this attribute."
    )
    noise = copy.deepcopy(VALID["NoiseLevelObserved"])
    del noise["dateObservedTo"]
    detail = client.post(f"{BASE}/entities", json=noise, headers={**admin, **EN}).json()["detail"]
    assert detail.startswith("dateObservedTo:")
    traffic = copy.deepcopy(VALID["TrafficFlowObserved"])
    del traffic["refRoadSegment"]
    detail = client.post(f"{BASE}/entities", json=traffic, headers={**admin, **EN}).json()["detail"]
    assert detail == "The TrafficFlowObserved model needs one of refRoadSegment, location, address."
    # An upsert is a partial write: a station may be built up from its readings.
    assert (
        client.post(f"{BASE}/entityOperations/upsert", json=[entity], headers=admin).status_code
        == 204
    )
    url = f"{BASE}/entities/{entity['id']}"
    assert client.get(url, headers=admin).status_code == 200
    # Replacing it needs the whole entity.
    whole = {k: v for k, v in VALID["AirQualityObserved"].items() if k != "id"}
    partial = {k: v for k, v in whole.items() if k != "dateObserved"}
    assert client.put(url, json=partial, headers=admin).status_code == 400
    assert client.put(url, json=whole, headers=admin).status_code == 204


def test_batch_keeps_the_good_entities_and_reports_the_bad_one(
    client: TestClient, admin: dict[str, str]
) -> None:
    good = [VALID["Streetlight"], VALID["WasteContainer"]]
    bad = _bad_copy(next(c for c in INVALID if c["type"] == "Streetlight"))
    for operation in ("create", "upsert"):
        for entity in (*good, bad):
            client.delete(f"{BASE}/entities/{entity['id']}", headers=admin)
        response = client.post(
            f"{BASE}/entityOperations/{operation}", json=[good[0], bad, good[1]], headers=admin
        )
        assert response.status_code == 207, response.text
        body = response.json()
        assert body["success"] == [good[0]["id"], good[1]["id"]]
        (error,) = body["errors"]
        assert error["entityId"] == bad["id"]
        assert error["error"]["type"] == ERR + "BadRequestData"
        assert error["error"]["detail"].startswith('status: "broken" is not one of')
        assert client.get(f"{BASE}/entities/{bad['id']}", headers=admin).status_code == 404
        for entity in good:
            assert client.get(f"{BASE}/entities/{entity['id']}", headers=admin).status_code == 200
    # An update of existing entities without their type is checked against the stored type.
    update = [
        {"id": good[0]["id"], "illuminanceLevel": {"type": "Property", "value": 2}},
        {"id": good[1]["id"], "fillingLevel": {"type": "Property", "value": 0.9}},
    ]
    response = client.post(f"{BASE}/entityOperations/update", json=update, headers=admin)
    assert response.status_code == 207
    assert [e["entityId"] for e in response.json()["errors"]] == [good[0]["id"]]
    light = client.get(f"{BASE}/entities/{good[0]['id']}", headers=admin).json()
    assert light["illuminanceLevel"]["value"] == 0.5
    bin_ = client.get(f"{BASE}/entities/{good[1]['id']}", headers=admin).json()
    assert bin_["fillingLevel"]["value"] == 0.9


def test_unknown_types_and_other_vocabularies_are_not_validated(
    client: TestClient, admin: dict[str, str]
) -> None:
    unknown = {"id": "urn:ngsi-ld:Nonsense:1", "type": "Nonsense", "pm25": -3}
    assert client.post(f"{BASE}/entities", json=unknown, headers=admin).status_code == 201
    foreign = {
        "id": "urn:ngsi-ld:AirQualityObserved:other-vocabulary",
        "type": "https://example.org/vocabulary/AirQualityObserved",
        "pm25": -3,
    }
    assert client.post(f"{BASE}/entities", json=foreign, headers=admin).status_code == 201


def test_temporal_instances_are_checked(client: TestClient, admin: dict[str, str]) -> None:
    entity = VALID["AirQualityObserved"]
    assert client.post(f"{BASE}/entities", json=entity, headers=admin).status_code == 201
    url = f"{BASE}/temporal/entities/{entity['id']}"
    instances = [
        {"type": "Property", "value": 20.0, "observedAt": "2026-11-20T01:00:00Z"},
        {"type": "Property", "value": -1.0, "observedAt": "2026-11-20T02:00:00Z"},
    ]
    refused = client.post(f"{url}/attrs", json={"pm25": instances}, headers={**admin, **EN})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "pm25: -1.0 is less than the minimum of 0"
    history = client.get(url, params={"attrs": "pm25"}, headers=admin).json()
    assert [i["value"] for i in history["pm25"]] == [35.2]


# --- the schema catalogue ---------------------------------------------------------------------


def test_schemas_are_published_read_only(client: TestClient) -> None:
    listed = client.get("/api/v1/datamodels")
    assert listed.status_code == 200
    items = {item["type"]: item for item in listed.json()["items"]}
    assert set(items) == set(VALID)
    assert items["AirQualityObserved"]["required"] == ["id", "type", "dateObserved", "location"]
    got = client.get(items["PointOfInterest"]["schema_url"])
    assert got.headers["content-type"].startswith("application/schema+json")
    schema = got.json()
    assert schema["properties"]["category"]["minItems"] == 1
    # Self-contained: the shared members and definitions are merged in.
    assert "Geometry" in schema["$defs"]
    assert "location" in schema["properties"]
    missing = client.get("/api/v1/datamodels/Hospital")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert client.put("/api/v1/datamodels/Device", json={}).status_code == 405


def test_every_shipped_schema_compiles_and_refers_only_to_itself() -> None:
    for path in sorted(Path(datamodels.FOLDER).glob("*.schema.json")):
        text = path.read_text(encoding="utf-8")
        assert '"$ref": "http' not in text, path.name
        assert datamodels.schema(path.name.removesuffix(".schema.json")) is not None


# --- ingest paths -----------------------------------------------------------------------------

DEVICE = {
    "device_id": "dm-bien-hoa-1",
    "name": "Trạm quan trắc không khí Biên Hòa (kiểm tra mô hình)",
    "entity_type": "AirQualityObserved",
    "department_code": "SNNMT",
    "lat": 10.95,
    "lon": 106.84,
    "interval_seconds": 60,
    # pm10 has no plausibility bounds here: only the data model stands between -5 and the store.
    "attributes": [{"key": "pm25", "unit_code": "GQ"}, {"key": "pm10", "unit_code": "GQ"}],
}


@pytest.fixture
def device(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    """An air-quality station whose attribute map checks no bounds."""
    response = client.post("/api/v1/ingest/devices", json=DEVICE, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _history_count(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        return int(session.execute(select(func.count()).select_from(History)).scalar_one())


def test_http_ingest_refuses_a_reading_that_breaks_the_model(
    client: TestClient, admin: dict[str, str], device: dict[str, Any], runtime: Runtime
) -> None:
    before = _history_count(runtime)
    response = client.post(
        f"/api/v1/ingest/{device['device_id']}",
        json={"pm25": 20.0, "pm10": -5},
        headers={"X-Device-Key": device["key"], **EN},
    )
    assert response.status_code == 422, response.text
    messages = " ".join(e["message"] for e in response.json()["errors"])
    assert "pm10: -5.0 is less than the minimum of 0" in messages
    assert _history_count(runtime) == before
    entity = client.get(f"{BASE}/entities/{device['entity_id']}", headers=admin).json()
    assert "pm25" not in entity
    state = client.get(f"/api/v1/ingest/devices/{device['id']}", headers=admin).json()
    assert state["status"] == "unavailable"
    assert "pm10" in state["last_error"]
    ok = client.post(
        f"/api/v1/ingest/{device['device_id']}",
        json={"pm25": 20.0, "pm10": 31.0},
        headers={"X-Device-Key": device["key"]},
    )
    assert ok.status_code == 200
    assert _history_count(runtime) == before + 2


@pytest.fixture
def bridge(runtime: Runtime, mqtt_broker: Broker) -> Iterator[MqttBridge]:
    """The MQTT bridge on this test's broker."""
    started = MqttBridge(runtime, url=mqtt_broker.url, client_id="cityops-dm-test", max_wait=0.05)
    started.start()
    assert started.wait_connected(10)
    yield started
    started.stop()


def test_mqtt_refuses_a_reading_that_breaks_the_model(
    client: TestClient,
    admin: dict[str, str],
    device: dict[str, Any],
    runtime: Runtime,
    mqtt_broker: Broker,
    bridge: MqttBridge,
) -> None:
    publisher = Publisher(mqtt_broker)
    try:
        before = _history_count(runtime)
        publisher.publish(device["device_id"], {"k": device["key"], "pm25": 12.0, "pm10": -5})
        publisher.publish(device["device_id"], {"k": device["key"], "pm25": 14.0, "pm10": 22.0})
        assert wait_for(lambda: bridge.counts["received"] >= 2)
        assert wait_for(lambda: _history_count(runtime) == before + 2)
    finally:
        publisher.close()
    refused = runtime.metrics.registry.get_sample_value(
        "cityops_ingest_refused_total", {"transport": "mqtt", "reason": "store_error"}
    )
    assert refused == 2  # pm25 and pm10 of the bad reading
    entity = client.get(f"{BASE}/entities/{device['entity_id']}", headers=admin).json()
    assert (entity["pm25"]["value"], entity["pm10"]["value"]) == (14.0, 22.0)
    state = client.get(f"/api/v1/ingest/devices/{device['id']}", headers=admin).json()
    assert "pm10" in state["last_error"]


def test_an_import_reports_a_row_that_breaks_the_model(
    device: dict[str, Any], runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "readings.csv"
    station = device["device_id"]
    path.write_text(
        "device_id,attribute,value,observed_at\n"
        f"{station},pm25,20.5,2026-11-20T02:00:00Z\n"
        f"{station},pm10,30.0,2026-11-20T02:00:00Z\n"
        f"{station},pm25,21.0,2026-11-20T02:05:00Z\n"
        f"{station},pm10,-2,2026-11-20T02:05:00Z\n",
        encoding="utf-8",
    )
    before = _history_count(runtime)
    report = imports.import_file(runtime=runtime, path=path)
    # The 02:05 reading is one fragment: both its rows are refused, the 02:00 one is stored.
    assert [(bad.row, bad.key) for bad in report.bad_rows] == [
        (4, "ingest.refused.store_error"),
        (5, "ingest.refused.store_error"),
    ]
    assert "pm10: -2.0 is less than the minimum of 0" in report.bad_rows[0].params["detail"]
    assert report.values_stored == 2
    assert _history_count(runtime) == before + 2


# --- the simulator -----------------------------------------------------------------------------


def test_every_simulated_entity_fits_its_model(runtime: Runtime) -> None:
    assets = build_catalog(1)
    assert {a.entity_type for a in assets} == set(ENTITY_TYPES.values())
    written = simulate_flows.write_static(runtime=runtime, assets=assets, tenant="default")
    assert written == len(assets)
    ctx = build(None, lambda url: None)
    # Dry and rainy season, day and night, a weekday and a weekend.
    instants = [
        datetime(2026, 1, 14, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 7, 13, 30, tzinfo=UTC),
        datetime(2026, 7, 21, 8, 15, tzinfo=UTC),
        datetime(2026, 10, 3, 17, 45, tzinfo=UTC),
    ]
    for asset in assets:
        for at in instants:
            for t in (at, at + timedelta(hours=5)):
                values = observe(asset, t, 20261120)
                if values is None:
                    continue
                entity = parse_entity(observation_entity(asset, values, t), ctx)
                assert entity.type is not None
                assert datamodels.check(entity, entity.type, False) is None, (asset.slug, values)
        entity = parse_entity(static_entity(asset), ctx)
        assert entity.type is not None
        assert datamodels.check(entity, entity.type, False) is None, asset.slug
