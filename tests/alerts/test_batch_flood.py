"""A batch upsert of many stations at once raises every alert it should, each on its own
station and ward, and clears every one of them when the next batch is back to normal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from cityops.alerts import flows
from cityops.core.clock import FrozenClock
from cityops.core.events import Event

from .conftest import LONG_KHANH, TRAN_BIEN, iso

NGSI = "/ngsi-ld/v1"


def _batch(levels: list[float], at: str) -> list[dict[str, Any]]:
    out = []
    for n, level in enumerate(levels):
        lat, lon = TRAN_BIEN if n % 2 else LONG_KHANH
        out.append(
            {
                "id": f"urn:ngsi-ld:TestSensor:dn-batch-{n}",
                "type": "TestSensor",
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [lon, lat]},
                },
                "level": {"type": "Property", "value": level, "observedAt": at},
                "other": {"type": "Property", "value": level * 2, "observedAt": at},
            }
        )
    return out


def test_a_batch_of_many_stations_raises_and_clears_every_alert(
    client: TestClient,
    admin: dict[str, str],
    make_rule: Callable[..., dict[str, Any]],
    engine: flows.Engine,
    clock: FrozenClock,
    alert_events: list[Event],
) -> None:
    make_rule()
    writer = {**admin, "Content-Type": "application/json"}
    calm = [5.0] * 60
    response = client.post(
        f"{NGSI}/entityOperations/upsert", json=_batch(calm, iso(clock.now())), headers=writer
    )
    assert response.status_code == 204, response.text
    engine.process_pending()
    assert alert_events == []

    # Every third station crosses the threshold: 20 of 60, in both wards.
    levels = [15.0 + n if n % 3 == 0 else 4.0 for n in range(60)]
    response = client.post(
        f"{NGSI}/entityOperations/upsert", json=_batch(levels, iso(clock.now())), headers=writer
    )
    assert response.status_code == 204, response.text
    engine.process_pending()
    opened = {e.data["entity_id"]: e.data for e in alert_events if e.type == "alerts.alert_opened"}
    assert set(opened) == {f"urn:ngsi-ld:TestSensor:dn-batch-{n}" for n in range(0, 60, 3)}
    for n in range(0, 60, 3):
        data = opened[f"urn:ngsi-ld:TestSensor:dn-batch-{n}"]
        assert data["value"] == 15.0 + n
        assert data["unit_code"] == ("26041" if n % 2 else "26080")
    assert len({e.correlation_id for e in alert_events}) == 20

    response = client.post(
        f"{NGSI}/entityOperations/upsert", json=_batch(calm, iso(clock.now())), headers=writer
    )
    assert response.status_code == 204, response.text
    engine.process_pending()
    resolved = [e.data["entity_id"] for e in alert_events if e.type == "alerts.alert_resolved"]
    assert sorted(resolved) == sorted(opened)
