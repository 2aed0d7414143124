"""Single-attribute PATCH/PUT (the hot path of gateways): stored rows, history, events, checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from cityops.context.models import Entity, History
from cityops.core.events import Event
from cityops.core.runtime import Runtime

from .conftest import BASE

BH = "urn:ngsi-ld:AirQualityObserved:dn-bien-hoa-1"
HN = "urn:ngsi-ld:AirQualityObserved:ha-noi-1"
URL = f"{BASE}/entities/{BH}"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"


def _load(client: TestClient, admin: dict[str, str], entities: list[dict[str, Any]]) -> None:
    response = client.post(f"{BASE}/entityOperations/upsert", json=entities, headers=admin)
    assert response.status_code == 204, response.text


def _history(runtime: Runtime, entity_id: str, name: str) -> list[tuple[int, Any]]:
    with runtime.session_factory() as session:
        pk = session.execute(select(Entity.pk).where(Entity.entity_id == entity_id)).scalar_one()
        rows = session.execute(
            select(History.observed_ms, History.value)
            .where(History.entity_pk == pk, History.name.endswith("/" + name))
            .order_by(History.id)
        ).all()
    return [(ms, value) for ms, value in rows]


@contextmanager
def _statements(runtime: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)


def test_patch_stores_the_value_appends_history_and_publishes_the_change(
    client: TestClient, admin: dict[str, str], entities: Any, runtime: Runtime
) -> None:
    _load(client, admin, entities[:1])
    seen: list[Event] = []
    runtime.bus.subscribe("context.attribute_changed", seen.append)
    body = {"value": 80.5, "observedAt": "2026-11-20T03:05:00Z"}
    with _statements(runtime) as statements:
        assert client.patch(f"{URL}/attrs/pm25", json=body, headers=admin).status_code == 204
    got = client.get(URL, headers=admin).json()["pm25"]
    # A partial update: the unit code is kept, the new value and time are stored.
    assert got == {
        "type": "Property",
        "value": 80.5,
        "unitCode": "GQ",
        "observedAt": "2026-11-20T03:05:00.000Z",
    }
    assert [v for _, v in _history(runtime, BH, "pm25")] == [35.2, 80.5]
    [change] = seen
    assert change.data["entity_id"] == BH
    assert change.data["attribute"] == "pm25"
    assert (change.data["value"], change.data["previous"]) == (80.5, 35.2)
    assert change.data["observed_at"].startswith("2026-11-20T03:05:00")
    assert change.data["unit_code"] is not None
    assert (change.data["lon"], change.data["lat"]) == (106.843, 10.957)
    # One read and three writes on the context tables (the fast path), not the batch pipeline.
    assert len([s for s in statements if "ngsild_" in s]) <= 4


def test_an_unchanged_value_appends_history_without_an_event(
    client: TestClient, admin: dict[str, str], entities: Any, runtime: Runtime
) -> None:
    _load(client, admin, entities[:1])
    seen: list[Event] = []
    runtime.bus.subscribe("context.attribute_changed", seen.append)
    body = {"value": 35.2, "observedAt": "2026-11-20T03:10:00Z"}
    assert client.patch(f"{URL}/attrs/pm25", json=body, headers=admin).status_code == 204
    assert seen == []
    assert len(_history(runtime, BH, "pm25")) == 2


def test_put_replaces_the_instance(
    client: TestClient, admin: dict[str, str], entities: Any
) -> None:
    _load(client, admin, entities[:1])
    response = client.put(
        f"{URL}/attrs/pm25", json={"type": "Property", "value": 12}, headers=admin
    )
    assert response.status_code == 204
    assert client.get(URL, headers=admin).json()["pm25"] == {"type": "Property", "value": 12}


def test_a_value_outside_the_data_model_is_refused_and_nothing_is_stored(
    client: TestClient, admin: dict[str, str], entities: Any, runtime: Runtime
) -> None:
    _load(client, admin, entities[:1])
    refused = client.patch(f"{URL}/attrs/pm25", json={"value": -3}, headers=admin)
    assert refused.status_code == 400
    assert refused.json()["type"] == ERR + "BadRequestData"
    assert "pm25" in refused.json()["detail"]
    assert client.get(URL, headers=admin).json()["pm25"]["value"] == 35.2
    assert len(_history(runtime, BH, "pm25")) == 1


def test_missing_entity_attribute_and_instance_are_404(
    client: TestClient, admin: dict[str, str], entities: Any
) -> None:
    _load(client, admin, entities[:1])
    cases = [
        (f"{BASE}/entities/urn:ngsi-ld:X:none/attrs/pm25", {"value": 1}),
        (f"{URL}/attrs/o3", {"value": 1}),
        (f"{URL}/attrs/pm25", {"value": 1, "datasetId": "urn:ngsi-ld:Dataset:other"}),
        (f"{URL}/attrs/pm25", {"value": 1, "datasetId": 7}),
    ]
    for url, body in cases:
        response = client.patch(url, json=body, headers=admin)
        assert response.status_code == 404, (url, body, response.text)
        assert response.json()["type"] == ERR + "ResourceNotFound"
    assert (
        client.patch(f"{BASE}/entities/not-a-uri/attrs/pm25", json={}, headers=admin).status_code
        == 400
    )
    other = {**admin, "NGSILD-Tenant": "bien-hoa"}
    assert client.patch(f"{URL}/attrs/pm25", json={"value": 1}, headers=other).status_code == 404


def test_a_dataset_instance_is_patched_alone(
    client: TestClient, admin: dict[str, str], entities: Any
) -> None:
    _load(client, admin, entities[:1])
    dataset = "urn:ngsi-ld:Dataset:sensor-b"
    added = client.post(
        f"{URL}/attrs", json={"pm25": {"value": 30, "datasetId": dataset}}, headers=admin
    )
    assert added.status_code == 204, added.text
    patched = client.patch(
        f"{URL}/attrs/pm25", json={"value": 31, "datasetId": dataset}, headers=admin
    )
    assert patched.status_code == 204
    instances = client.get(URL, headers=admin).json()["pm25"]
    assert sorted((i.get("datasetId", ""), i["value"]) for i in instances) == [
        ("", 35.2),
        (dataset, 31),
    ]


def test_a_key_scoped_to_another_ward_cannot_see_or_patch_the_entity(
    client: TestClient, admin: dict[str, str], entities: Any, runtime: Runtime
) -> None:
    _load(client, admin, entities)
    with runtime.session_factory() as session:
        wards = session.execute(select(func.count(func.distinct(Entity.unit_code)))).scalar_one()
        mine = session.execute(select(Entity.unit_code).where(Entity.entity_id == BH)).scalar_one()
        other = (
            session.execute(
                select(Entity.unit_code).where(
                    Entity.unit_code.is_not(None), Entity.unit_code != mine
                )
            )
            .scalars()
            .first()
        )
    assert wards >= 2
    assert other is not None
    created = client.post(
        "/api/v1/api-keys",
        json={"name": "ward", "permissions": ["context:read", "context:write"], "unit_code": other},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"], "Content-Type": "application/json"}
    refused = client.patch(f"{URL}/attrs/pm25", json={"value": 99}, headers=key)
    assert refused.status_code == 404
    assert client.get(URL, headers=admin).json()["pm25"]["value"] == 35.2


def test_patching_the_location_moves_the_entity(
    client: TestClient, admin: dict[str, str], entities: Any, runtime: Runtime
) -> None:
    _load(client, admin, entities[:1])

    def unit() -> str | None:
        with runtime.session_factory() as session:
            return session.execute(
                select(Entity.unit_code).where(Entity.entity_id == BH)
            ).scalar_one()

    before = unit()
    # Long Khánh, far from Biên Hòa: another ward.
    moved = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [107.245, 10.94]}}
    assert client.put(f"{URL}/attrs/location", json=moved, headers=admin).status_code == 204
    after = unit()
    assert after is not None
    assert after != before


def test_a_subscriber_is_notified_of_a_patch(
    client: TestClient, admin: dict[str, str], entities: Any, runtime: Runtime, http_receiver: Any
) -> None:
    _load(client, admin, entities[:1])
    subscription = {
        "type": "Subscription",
        "entities": [{"type": "AirQualityObserved"}],
        "watchedAttributes": ["pm25"],
        "notification": {"endpoint": {"uri": http_receiver.url, "accept": "application/json"}},
    }
    created = client.post(f"{BASE}/subscriptions", json=subscription, headers=admin)
    assert created.status_code == 201, created.text
    assert client.patch(f"{URL}/attrs/pm25", json={"value": 77}, headers=admin).status_code == 204
    runtime.outbox.drain()
    [received] = http_receiver.wait_for(1)
    notification = received.json()
    assert notification["type"] == "Notification"
    assert notification["data"][0]["id"] == BH
    assert notification["data"][0]["pm25"]["value"] == 77
