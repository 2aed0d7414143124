"""Fixtures of the ingest tests: an administrator, device registration, and reads of the
context store's current state and history (straight from its tables)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from cityops.context.models import Attribute, Entity, History, Tenant
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.ingest.mqtt import MqttBridge

from ..broker import Broker

API = "/api/v1"
FIXTURES = Path(__file__).parent / "fixtures"
# A point in former Biên Hòa city (GeoJSON order is lon, lat).
BIEN_HOA = {"lat": 10.95, "lon": 106.84}


def load_fixture(name: str) -> Any:
    """Read a JSON payload from tests/ingest/fixtures."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, every: float = 0.05) -> bool:
    """Poll a condition until it holds or the deadline passes; tell whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of a global administrator."""
    return login_as("admin")


@pytest.fixture
def make_device(client: TestClient, admin: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Register a device (the air-quality station fixture, with overrides); return the answer."""

    def factory(**overrides: Any) -> dict[str, Any]:
        body = {**load_fixture("device_air.json"), **overrides}
        response = client.post(f"{API}/ingest/devices", json=body, headers=admin)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return factory


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].rsplit("#", 1)[-1]


@pytest.fixture
def current(runtime: Runtime) -> Callable[..., dict[str, Any]]:
    """Current attribute values of an entity, by short name ({} if the entity does not exist)."""

    def reader(entity_id: str, tenant: str = "default") -> dict[str, Any]:
        with unit_of_work(runtime.session_factory) as session:
            rows = session.execute(
                select(Attribute.name, Attribute.value, Attribute.unit_code)
                .join(Entity, Entity.pk == Attribute.entity_pk)
                .join(Tenant, Tenant.id == Entity.tenant_id)
                .where(Tenant.name == tenant, Entity.entity_id == entity_id)
            ).all()
        return {_short(name): {"value": value, "unitCode": unit} for name, value, unit in rows}

    return reader


@pytest.fixture
def history(runtime: Runtime) -> Callable[..., list[tuple[int, Any]]]:
    """History rows (observed ms, value) of one attribute of an entity, in time order."""

    def reader(entity_id: str, attribute: str, tenant: str = "default") -> list[tuple[int, Any]]:
        with unit_of_work(runtime.session_factory) as session:
            rows = session.execute(
                select(History.name, History.observed_ms, History.value)
                .join(Entity, Entity.pk == History.entity_pk)
                .join(Tenant, Tenant.id == Entity.tenant_id)
                .where(Tenant.name == tenant, Entity.entity_id == entity_id)
                .order_by(History.observed_ms, History.id)
            ).all()
        return [(ms, value) for name, ms, value in rows if _short(name) == attribute]

    return reader


@pytest.fixture
def bridges(runtime: Runtime, mqtt_broker: Broker) -> Iterator[Callable[..., MqttBridge]]:
    """Start MQTT bridges on this test's broker (all stopped at the end)."""
    started: list[MqttBridge] = []

    def start(**kwargs: Any) -> MqttBridge:
        kwargs.setdefault("client_id", "cityops-ingest-test")
        kwargs.setdefault("max_wait", 0.05)
        bridge = MqttBridge(runtime, url=mqtt_broker.url, **kwargs)
        bridge.start()
        started.append(bridge)
        assert bridge.wait_connected(10), "the bridge did not connect"
        return bridge

    yield start
    for bridge in started:
        bridge.stop()


class Publisher:
    """A device-side MQTT client publishing QoS 1 messages (reconnects by itself)."""

    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"device-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.sent: list[mqtt.MQTTMessageInfo] = []

    def publish(self, device_id: str, payload: Any, tenant: str = "default") -> None:
        """Publish one message to a device's topic (JSON unless bytes)."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.sent.append(self.client.publish(f"cityops/{tenant}/{device_id}/attrs", data, qos=1))

    def wait_all_acknowledged(self, timeout: float = 30.0) -> bool:
        """Wait until the broker acknowledged every message published."""
        return wait_for(lambda: all(info.is_published() for info in self.sent), timeout)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mqtt_broker: Broker) -> Iterator[Publisher]:
    """A device publishing to this test's broker."""
    pub = Publisher(mqtt_broker)
    yield pub
    pub.close()
