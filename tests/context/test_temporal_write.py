"""Writing temporal representations: POST /temporal/entities, and PATCH / DELETE of one
attribute instance (its instanceId is the history row's key)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cityops.core.events import Event
from cityops.core.runtime import Runtime

from .conftest import BASE

ST = "urn:ngsi-ld:AirQualityObserved:temporal-write-1"
URL = f"{BASE}/temporal/entities/{ST}"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
LOCATION = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [106.84, 10.95]}}


def _pm25(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": v, "observedAt": t, "unitCode": "GQ"} for t, v in pairs]


def _temporal_entity() -> dict[str, Any]:
    # Given newest first on purpose: the broker orders instances by observedAt.
    return {
        "id": ST,
        "type": "AirQualityObserved",
        "location": LOCATION,
        "dateObserved": {"type": "Property", "value": "2026-11-20T02:00:00Z"},
        "pm25": _pm25(
            ("2026-11-20T02:00:00Z", 30.0),
            ("2026-11-20T01:00:00Z", 20.0),
            ("2026-11-20T00:00:00Z", 10.0),
        ),
    }


def _history(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    got = client.get(URL, params={"attrs": "pm25"}, headers=admin)
    assert got.status_code == 200, got.text
    instances: list[dict[str, Any]] = got.json()["pm25"]
    return instances


def test_post_creates_then_adds_instances(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    events: list[Event] = []
    runtime.bus.subscribe("context.attribute_changed", events.append)
    created = client.post(f"{BASE}/temporal/entities", json=_temporal_entity(), headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{BASE}/temporal/entities/{ST}"
    assert [i["value"] for i in _history(client, admin)] == [10.0, 20.0, 30.0]
    # The current state is the newest instance, and each instance went through the pipeline.
    current = client.get(f"{BASE}/entities/{ST}", params={"options": "keyValues"}, headers=admin)
    assert current.json()["pm25"] == 30.0
    assert [e.data["value"] for e in events if e.data["attribute"] == "pm25"] == [10.0, 20.0, 30.0]
    more = {"id": ST, "type": "AirQualityObserved", "pm25": _pm25(("2026-11-20T03:00:00Z", 40.0))}
    added = client.post(f"{BASE}/temporal/entities", json=more, headers=admin)
    assert added.status_code == 204, added.text
    assert [i["value"] for i in _history(client, admin)] == [10.0, 20.0, 30.0, 40.0]
    empty = client.post(f"{BASE}/temporal/entities", json={"id": ST}, headers=admin)
    assert empty.status_code == 400


def test_post_validates_before_writing_anything(client: TestClient, admin: dict[str, str]) -> None:
    incomplete = {k: v for k, v in _temporal_entity().items() if k != "location"}
    refused = client.post(
        f"{BASE}/temporal/entities", json=incomplete, headers={**admin, "Accept-Language": "en"}
    )
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("location:")
    bad = _temporal_entity()
    bad["pm25"] = _pm25(("2026-11-20T00:00:00Z", 10.0), ("2026-11-20T01:00:00Z", -2.0))
    refused = client.post(f"{BASE}/temporal/entities", json=bad, headers=admin)
    assert refused.status_code == 400
    # The whole request failed: not even the valid first instance was kept.
    assert client.get(URL, headers=admin).status_code == 404
    assert client.get(f"{BASE}/entities/{ST}", headers=admin).status_code == 404
    assert client.post(f"{BASE}/temporal/entities", json=[1], headers=admin).status_code == 400
    no_id = client.post(f"{BASE}/temporal/entities", json={"type": "X"}, headers=admin)
    assert no_id.status_code == 400


def test_patch_and_delete_one_instance(client: TestClient, admin: dict[str, str]) -> None:
    assert (
        client.post(f"{BASE}/temporal/entities", json=_temporal_entity(), headers=admin).status_code
        == 201
    )
    first, second, third = _history(client, admin)
    assert first["instanceId"].startswith("urn:ngsi-ld:instance:")
    patched = client.patch(
        f"{URL}/attrs/pm25/{second['instanceId']}",
        json={"value": 21.5, "observedAt": "2026-11-20T01:30:00Z"},
        headers=admin,
    )
    assert patched.status_code == 204, patched.text
    after = _history(client, admin)
    assert [(i["value"], i["observedAt"]) for i in after] == [
        (10.0, "2026-11-20T00:00:00.000Z"),
        (21.5, "2026-11-20T01:30:00.000Z"),
        (30.0, "2026-11-20T02:00:00.000Z"),
    ]
    assert after[1]["instanceId"] == second["instanceId"]
    assert after[1]["unitCode"] == "GQ"
    # The model applies to an instance as to any write.
    refused = client.patch(
        f"{URL}/attrs/pm25/{second['instanceId']}", json={"value": -1}, headers=admin
    )
    assert refused.status_code == 400
    assert _history(client, admin)[1]["value"] == 21.5
    nothing = client.patch(f"{URL}/attrs/pm25/{second['instanceId']}", json={}, headers=admin)
    assert nothing.status_code == 400
    deleted = client.delete(f"{URL}/attrs/pm25/{first['instanceId']}", headers=admin)
    assert deleted.status_code == 204
    assert [i["value"] for i in _history(client, admin)] == [21.5, 30.0]
    again = client.delete(f"{URL}/attrs/pm25/{first['instanceId']}", headers=admin)
    assert again.status_code == 404
    assert again.json()["type"] == ERR + "ResourceNotFound"
    # An instance of another attribute is not this attribute's.
    wrong = client.delete(f"{URL}/attrs/no2/{third['instanceId']}", headers=admin)
    assert wrong.status_code == 404
    malformed = client.delete(f"{URL}/attrs/pm25/instance-7", headers=admin)
    assert malformed.status_code == 400
    missing = client.delete(
        f"{BASE}/temporal/entities/urn:ngsi-ld:X:none/attrs/pm25/{third['instanceId']}",
        headers=admin,
    )
    assert missing.status_code == 404


def test_instance_writes_need_write_permission(
    client: TestClient, admin: dict[str, str], login_as: Any
) -> None:
    assert (
        client.post(f"{BASE}/temporal/entities", json=_temporal_entity(), headers=admin).status_code
        == 201
    )
    instance = _history(client, admin)[0]["instanceId"]
    viewer = {**login_as("viewer"), "Content-Type": "application/json"}
    assert client.delete(f"{URL}/attrs/pm25/{instance}", headers=viewer).status_code == 403
    assert (
        client.patch(f"{URL}/attrs/pm25/{instance}", json={"value": 1}, headers=viewer).status_code
        == 403
    )
    assert (
        client.post(
            f"{BASE}/temporal/entities", json=_temporal_entity(), headers=viewer
        ).status_code
        == 403
    )
