"""Two writers creating the same new entity at once (two gateways, two batch calls): the one
that loses the race writes into the entity the other created, or is told it exists; never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.context import service

from .conftest import BASE

STATION = "urn:ngsi-ld:AirQualityObserved:race-1"


def _station(pm25: float) -> dict[str, Any]:
    return {
        "id": STATION,
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.84, 10.95]},
        },
        "dateObserved": {"type": "Property", "value": "2026-11-20T02:00:00Z"},
        "pm25": {"type": "Property", "value": pm25, "observedAt": "2026-11-20T02:00:00Z"},
    }


def test_an_upsert_that_lost_the_race_updates_the_entity_the_other_created(
    client: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = client.post(f"{BASE}/entityOperations/upsert", json=[_station(10.0)], headers=admin)
    assert first.status_code == 204, first.text
    real = service._entity_keys
    calls = {"n": 0}

    def stale(session: Any, tenant_id: int, entity_ids: Any) -> dict[str, Any]:
        calls["n"] += 1
        return {} if calls["n"] == 1 else real(session, tenant_id, entity_ids)

    monkeypatch.setattr(service, "_entity_keys", stale)
    second = client.post(f"{BASE}/entityOperations/upsert", json=[_station(42.0)], headers=admin)
    assert second.status_code == 204, second.text
    monkeypatch.undo()
    stored = client.get(f"{BASE}/entities/{STATION}", headers=admin).json()
    assert stored["pm25"]["value"] == 42.0
    listed = client.get(
        f"{BASE}/entities", params={"type": "AirQualityObserved", "q": "pm25>0"}, headers=admin
    )
    assert [e["id"] for e in listed.json() if e["id"] == STATION] == [STATION]


def test_a_create_that_lost_the_race_is_told_the_entity_exists(
    client: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post(f"{BASE}/entities", json=_station(10.0), headers=admin).status_code == 201
    real = service._entity_keys
    calls = {"n": 0}

    def stale(session: Any, tenant_id: int, entity_ids: Any) -> dict[str, Any]:
        calls["n"] += 1
        return {} if calls["n"] == 1 else real(session, tenant_id, entity_ids)

    monkeypatch.setattr(service, "_entity_keys", stale)
    again = client.post(f"{BASE}/entities", json=_station(99.0), headers=admin)
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("AlreadyExists")
    monkeypatch.undo()
    stored = client.get(f"{BASE}/entities/{STATION}", headers=admin).json()
    assert stored["pm25"]["value"] == 10.0
