"""A reading without a location (a fixed station's batch update) still places its change events
and the alerts they raise at the entity's stored point."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from cityops.alerts import flows
from cityops.core.clock import FrozenClock
from cityops.core.events import Event
from cityops.core.runtime import Runtime

from .conftest import TRAN_BIEN, Observe, alerts_of, iso

STATION = "urn:ngsi-ld:AirQualityObserved:dn-aq-test-located"
BATCH = "/ngsi-ld/v1/entityOperations/upsert"


def test_a_batch_update_of_pm25_alone_carries_the_stored_point(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    observe: Observe,
    engine: flows.Engine,
    clock: FrozenClock,
    make_rule: Callable[..., dict[str, Any]],
    alert_events: list[Event],
) -> None:
    make_rule(
        code="pm25-high",
        entity_type="AirQualityObserved",
        attribute="pm25",
        condition={"op": ">", "value": 50, "hysteresis": 5},
    )
    t = clock.now()
    later = iso(t + timedelta(minutes=5))
    observe(STATION, "AirQualityObserved", t, point=TRAN_BIEN, pm25=12.0)
    changes: list[Event] = []
    runtime.bus.subscribe("context.attribute_changed", changes.append)
    body = [
        {
            "id": STATION,
            "pm25": {"type": "Property", "value": 80.0, "observedAt": later},
        }
    ]
    headers = {**admin, "Content-Type": "application/json"}
    response = client.post(BATCH, json=body, headers=headers)
    assert response.status_code == 204, response.text

    assert [(e.data["attribute"], e.data["value"]) for e in changes] == [("pm25", 80.0)]
    assert (changes[0].data["lat"], changes[0].data["lon"]) == TRAN_BIEN
    assert changes[0].data["unit_code"] == "26041"

    engine.process_pending()
    opened = [e for e in alert_events if e.data["rule_code"] == "pm25-high"]
    assert len(opened) == 1
    assert (opened[0].data["lat"], opened[0].data["lon"]) == TRAN_BIEN
    listed = alerts_of(client, admin, rule="pm25-high")
    assert [(a["lat"], a["lon"]) for a in listed] == [TRAN_BIEN]


def test_a_batch_that_removes_the_location_sends_no_point(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    observe: Observe,
    clock: FrozenClock,
) -> None:
    t = clock.now()
    later = iso(t + timedelta(minutes=5))
    observe(STATION, "AirQualityObserved", t, point=TRAN_BIEN, pm25=12.0)
    changes: list[Event] = []
    runtime.bus.subscribe("context.attribute_changed", changes.append)
    body = [
        {
            "id": STATION,
            "location": None,
            "pm25": {"type": "Property", "value": 13.0, "observedAt": later},
        }
    ]
    headers = {**admin, "Content-Type": "application/json"}
    response = client.post("/ngsi-ld/v1/entityOperations/merge", json=body, headers=headers)
    assert response.status_code == 204, response.text
    by_attribute = {e.data["attribute"]: e.data for e in changes}
    assert set(by_attribute) == {"location", "pm25"}
    assert "lat" not in by_attribute["pm25"]
