"""The history's unique key (entity, attribute, datasetId, observedAt): writes are idempotent."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .conftest import BASE

ST = "urn:ngsi-ld:AirQualityObserved:history-key-1"
URL = f"{BASE}/temporal/entities/{ST}"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
LOCATION = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [106.84, 10.95]}}


def _pm25(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": v, "observedAt": t} for t, v in pairs]


def _instances(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    got = client.get(URL, params={"attrs": "pm25"}, headers=admin)
    assert got.status_code == 200, got.text
    instances: list[dict[str, Any]] = got.json()["pm25"]
    return instances


def test_instances_posted_again_are_stored_once(client: TestClient, admin: dict[str, str]) -> None:
    entity = {
        "id": ST,
        "type": "AirQualityObserved",
        "location": LOCATION,
        "dateObserved": {"type": "Property", "value": "2026-11-20T02:00:00Z"},
        "pm25": _pm25(("2026-11-20T01:00:00Z", 10.0), ("2026-11-20T02:00:00Z", 20.0)),
    }
    assert client.post(f"{BASE}/temporal/entities", json=entity, headers=admin).status_code == 201
    again = {"pm25": _pm25(("2026-11-20T02:00:00Z", 20.0), ("2026-11-20T02:00:00Z", 21.0))}
    added = client.post(f"{URL}/attrs", json=again, headers=admin)
    assert added.status_code == 204, added.text
    assert [i["value"] for i in _instances(client, admin)] == [10.0, 21.0]


def test_moving_an_instance_onto_another_is_409_and_changes_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    entity = {
        "id": ST,
        "type": "AirQualityObserved",
        "location": LOCATION,
        "dateObserved": {"type": "Property", "value": "2026-11-20T02:00:00Z"},
        "pm25": _pm25(("2026-11-20T01:00:00Z", 10.0), ("2026-11-20T02:00:00Z", 20.0)),
    }
    assert client.post(f"{BASE}/temporal/entities", json=entity, headers=admin).status_code == 201
    before = _instances(client, admin)
    second = before[1]["instanceId"]
    moved = client.patch(
        f"{URL}/attrs/pm25/{second}",
        json={"value": 25.0, "observedAt": "2026-11-20T01:00:00Z"},
        headers={**admin, "Accept-Language": "en"},
    )
    assert moved.status_code == 409, moved.text
    assert moved.json()["type"] == ERR + "AlreadyExists"
    assert "2026-11-20T01:00:00" in moved.json()["detail"]
    assert _instances(client, admin) == before
