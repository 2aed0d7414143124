"""HTTP ingest: readings converted through the attribute map; implausible values refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.core.events import Event
from cityops.core.runtime import Runtime

from .conftest import API


@pytest.fixture
def station(make_device: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The Biên Hòa air-quality station, registered."""
    return make_device()


def _send(client: TestClient, station: dict[str, Any], body: Any, **headers: str) -> Any:
    return client.post(
        f"{API}/ingest/{station['device_id']}",
        json=body,
        headers={"X-Device-Key": station["key"], **headers},
    )


def test_readings_are_converted_to_canonical_units(
    client: TestClient,
    station: dict[str, Any],
    current: Callable[..., dict[str, Any]],
    history: Callable[..., list[tuple[int, Any]]],
) -> None:
    response = _send(
        client,
        station,
        {
            "pm25": 35.2,
            "no2_ppb": 20,
            "co": 1150,
            "t_f": 86,
            "rh": 75,
            "wind_kmh": 18,
            "level": "moderate",
            "ts": "2026-11-20T09:55:00+07:00",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stored"] == 7
    assert body["refused"] == 0
    values = current(station["entity_id"])
    assert values["pm25"] == {"value": 35.2, "unitCode": "GQ"}
    # 20 ppb NO2 × 46.0055 / 24.45 = 37.63 µg/m³ (25 °C, 1 atm).
    assert values["no2"]["value"] == pytest.approx(37.6323, abs=1e-3)
    assert values["co"] == {"value": 1.15, "unitCode": "GP"}
    assert values["temperature"] == {"value": 30.0, "unitCode": "CEL"}
    assert values["relativeHumidity"] == {"value": 0.75, "unitCode": "C62"}
    assert values["windSpeed"] == {"value": 5.0, "unitCode": "MTS"}
    assert values["airQualityLevel"]["value"] == "moderate"
    # Observed at the device's time, stored in UTC (09:55 in Đồng Nai = 02:55Z).
    at = datetime(2026, 11, 20, 2, 55, tzinfo=UTC)
    assert history(station["entity_id"], "pm25") == [(int(at.timestamp() * 1000), 35.2)]
    assert body["readings"][0]["observed_at"] == "2026-11-20T02:55:00Z"


def test_implausible_and_unknown_values_are_refused_and_never_stored(
    client: TestClient,
    station: dict[str, Any],
    current: Callable[..., dict[str, Any]],
    history: Callable[..., list[tuple[int, Any]]],
) -> None:
    response = _send(
        client,
        station,
        {"pm25": 12.5, "no2_ppb": -4, "t_f": 451, "rh": "wet", "mystery": 1, "level": 3},
        **{"Accept-Language": "en"},
    )
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["stored"] == 1
    refused = {r["key"]: r for r in body["readings"][0]["refused"]}
    assert {k: r["reason"] for k, r in refused.items()} == {
        "no2_ppb": "out_of_range",
        "t_f": "out_of_range",
        "rh": "bad_type",
        "mystery": "unknown_key",
        "level": "bad_type",
    }
    assert refused["t_f"]["message"] == (
        "'t_f' = 232.778 CEL is outside the plausible range [-10, 60]."
    )
    values = current(station["entity_id"])
    assert set(values) == {"pm25", "location"}
    assert history(station["entity_id"], "temperature") == []


def test_a_reading_with_nothing_valid_changes_nothing_and_marks_the_device_unavailable(
    client: TestClient,
    admin: dict[str, str],
    station: dict[str, Any],
    current: Callable[..., dict[str, Any]],
    runtime: Runtime,
) -> None:
    events: list[Event] = []
    runtime.bus.subscribe("ingest.device_unavailable", events.append)
    response = _send(client, station, {"pm25": -1, "rh": 900})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert {e["field"] for e in problem["errors"]} == {"readings[0].pm25", "readings[0].rh"}
    assert set(current(station["entity_id"])) == {"location"}
    device = client.get(f"{API}/ingest/devices/{station['id']}", headers=admin).json()
    assert device["status"] == "unavailable"
    assert "rh" in device["last_error"]
    assert [e.data["device_id"] for e in events] == [station["device_id"]]
    # Good data brings it back online.
    assert _send(client, station, {"pm25": 20}).status_code == 200
    device = client.get(f"{API}/ingest/devices/{station['id']}", headers=admin).json()
    assert device["status"] == "online"


def test_a_list_of_readings_and_a_bad_time_per_reading(
    client: TestClient,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
) -> None:
    response = _send(
        client,
        station,
        [
            {"pm25": 10, "ts": "2026-11-20T02:00:00Z"},
            {"pm25": 11, "ts": datetime(2026, 11, 20, 2, 30, tzinfo=UTC).timestamp()},
            {"pm25": 12, "ts": "yesterday"},
            {"pm25": 13, "ts": "2026-11-20T02:00:00"},
            {"pm25": 14, "ts": "2027-01-01T00:00:00Z"},
            "not a reading",
        ],
    )
    assert response.status_code == 207
    reasons = [[r["reason"] for r in reading["refused"]] for reading in response.json()["readings"]]
    assert reasons == [[], [], ["bad_time"], ["bad_time"], ["future_time"], ["bad_payload"]]
    assert [v for _, v in history(station["entity_id"], "pm25")] == [10, 11]


def test_mobile_readings_carry_their_location(
    client: TestClient, station: dict[str, Any], current: Callable[..., dict[str, Any]]
) -> None:
    assert _send(client, station, {"pm25": 9, "lat": 10.96, "lon": 106.85}).status_code == 200
    assert current(station["entity_id"])["location"]["value"]["coordinates"] == [106.85, 10.96]
    partial = _send(client, station, {"pm25": 9, "lat": 100, "lon": 106.85})
    assert partial.status_code == 207
    assert partial.json()["readings"][0]["refused"][0]["reason"] == "bad_location"


def test_an_api_key_with_context_write_may_send_for_a_device(
    client: TestClient,
    admin: dict[str, str],
    station: dict[str, Any],
    current: Callable[..., dict[str, Any]],
) -> None:
    key = client.post(
        f"{API}/api-keys",
        json={"name": "gateway", "permissions": ["context:write"], "tenant": "default"},
        headers=admin,
    ).json()["key"]
    reader = client.post(
        f"{API}/api-keys", json={"name": "reader", "permissions": ["context:read"]}, headers=admin
    ).json()["key"]
    url = f"{API}/ingest/{station['device_id']}"
    assert client.post(url, json={"pm25": 44}, headers={"X-API-Key": key}).status_code == 200
    assert current(station["entity_id"])["pm25"]["value"] == 44
    assert client.post(url, json={"pm25": 45}, headers={"X-API-Key": reader}).status_code == 403
    other_tenant = client.post(
        url, json={"pm25": 46}, headers={"X-API-Key": key, "NGSILD-Tenant": "other"}
    )
    assert other_tenant.status_code == 403
    unknown = client.post(f"{API}/ingest/nope", json={"pm25": 1}, headers={"X-API-Key": key})
    assert unknown.status_code == 404


def test_malformed_bodies_are_problems_not_errors(
    client: TestClient, station: dict[str, Any]
) -> None:
    url = f"{API}/ingest/{station['device_id']}"
    headers = {"X-Device-Key": station["key"], "Content-Type": "application/json"}
    for content in (b"{not json", b"", b"[]", b"\xff\xfe"):
        response = client.post(url, content=content, headers=headers)
        assert response.status_code == 422, content
        assert response.headers["content-type"].startswith("application/problem+json")


def test_ingest_is_counted_in_the_metrics(
    client: TestClient, station: dict[str, Any], runtime: Runtime
) -> None:
    _send(client, station, {"pm25": 5, "rh": 500})
    registry = runtime.metrics.registry
    assert (
        registry.get_sample_value("cityops_ingest_values_stored_total", {"transport": "http"}) == 1
    )
    assert (
        registry.get_sample_value(
            "cityops_ingest_refused_total", {"transport": "http", "reason": "out_of_range"}
        )
        == 1
    )
    assert b"cityops_ingest_refused_total" in client.get("/metrics").content
