"""Fixtures of the alerts tests: the engine, the alert events seen on the bus, observations
written through the context store's one write pipeline, and rules created through the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.alerts import flows
from cityops.context import datamodels
from cityops.context import flows as context_flows
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL

from ..conftest import TEST_PASSWORD

API = "/api/v1"
# Points inside wards (GeoJSON order is lon, lat): Trấn Biên (26041, former Biên Hòa city),
# Tam Hiệp (26017, former Biên Hòa city) and Long Khánh (26080).
TRAN_BIEN = (10.936, 106.838)
TAM_HIEP = (10.952, 106.861)
LONG_KHANH = (10.922, 107.288)

Observe = Callable[..., None]


def iso(at: datetime) -> str:
    """Format an instant as NGSI-LD does."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@pytest.fixture
def engine(runtime: Runtime) -> flows.Engine:
    """The app's rule engine (driven by hand: background jobs are off in tests)."""
    return flows.engine_of(runtime)


@pytest.fixture
def alert_events(runtime: Runtime) -> list[Event]:
    """Every `alerts.*` event published on the bus from now on, in order."""
    seen: list[Event] = []

    def keep(event: Event) -> None:
        if event.type.startswith("alerts.alert_"):
            seen.append(event)

    runtime.bus.subscribe("*", keep)
    return seen


@pytest.fixture
def observe(runtime: Runtime) -> Observe:
    """Write attributes of an entity through `write_entities` (one transaction), as ingest,
    MQTT and the NGSI-LD API do."""

    def write(
        entity_id: str,
        entity_type: str,
        at: datetime,
        point: tuple[float, float] | None = None,
        tenant: str = "default",
        **attrs: Any,
    ) -> None:
        entity: dict[str, Any] = {"id": entity_id, "type": entity_type}
        if point is not None:
            entity["location"] = {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [point[1], point[0]]},
                "observedAt": iso(at),
            }
        for name, value in attrs.items():
            entity[name] = {"type": "Property", "value": value, "observedAt": iso(at)}
        # Smart Data Models observations carry their observation time (required on create).
        model = datamodels.schema(entity_type) or {}
        if "dateObserved" in model.get("required", ()) and "dateObserved" not in attrs:
            entity["dateObserved"] = {"type": "Property", "value": iso(at)}
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            outcome = context_flows.write_entities(
                runtime=runtime, session=session, tenant=tenant, entities=[entity]
            )
        assert not outcome.errors, outcome.errors

    return write


@pytest.fixture
def admin_login(client: TestClient, make_user: Callable[..., str]) -> Callable[[], dict[str, str]]:
    """Log one global administrator in again (tokens expire as the test clock moves)."""
    username = make_user("admin")

    def login() -> dict[str, str]:
        response = client.post(
            f"{API}/auth/token", data={"username": username, "password": TEST_PASSWORD}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return login


@pytest.fixture
def admin(admin_login: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Bearer headers of a global administrator."""
    return admin_login()


@pytest.fixture
def make_rule(client: TestClient, admin: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Create a rule through the API (a threshold on TestSensor.level by default)."""

    def factory(**overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": "test-level-high",
            "name_vi": "Mức cao",
            "name_en": "Level high",
            "kind": "threshold",
            "entity_type": "TestSensor",
            "attribute": "level",
            "condition": {"op": ">", "value": 10, "hysteresis": 2},
            "severity": "high",
            "sector": "environment",
            "policy": {"incident": {"category": "other"}, "notify": ["ioc"]},
        }
        body.update(overrides)
        response = client.post(f"{API}/rules", json=body, headers=admin)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return factory


def alerts_of(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """List alerts through the API."""
    response = client.get(f"{API}/alerts", params={"limit": 500, **params}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
