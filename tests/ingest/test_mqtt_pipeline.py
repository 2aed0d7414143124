"""The MQTT bridge's pipeline against a real Mosquitto: large batches, a burst stored exactly
once, and its batch settings."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from cityops.context.models import Entity, History
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.ingest.mqtt import MqttBridge

from ..broker import Broker
from ..conftest import T0
from .conftest import Publisher, wait_for

STATIONS = 8


def _ts(seconds_before_t0: float) -> str:
    return (T0 - timedelta(seconds=seconds_before_t0)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def stations(make_device: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """Eight air-quality stations in Biên Hòa, registered."""
    return [
        make_device(device_id=f"dn-burst-{n}", lat=10.95 + n * 0.001, lon=106.84)
        for n in range(STATIONS)
    ]


class BurstPublisher(Publisher):
    """A device-side client that keeps many QoS 1 messages in flight (a burst)."""

    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"burst-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.sent = []


@pytest.fixture
def fast_publisher(mqtt_broker: Broker) -> Iterator[Publisher]:
    """A burst publisher on this test's broker."""
    pub = BurstPublisher(mqtt_broker)
    yield pub
    pub.close()


def _counts(runtime: Runtime, entity_ids: list[str]) -> tuple[int, int]:
    """History rows of pm25 of these entities, and distinct (entity, time) pairs among them."""
    with unit_of_work(runtime.session_factory) as session:
        query = (
            select(History.entity_pk, History.observed_ms)
            .join(Entity, Entity.pk == History.entity_pk)
            .where(Entity.entity_id.in_(entity_ids), History.name.endswith("/pm25"))
        )
        rows = session.execute(query).all()
    return len(rows), len(set(rows))


def test_a_burst_of_20000_messages_is_stored_exactly_once(
    bridges: Callable[..., MqttBridge],
    fast_publisher: Publisher,
    stations: list[dict[str, Any]],
    runtime: Runtime,
) -> None:
    total = 20_000
    bridge = bridges(max_batch=2000, max_wait=0.1)
    for i in range(total):
        station = stations[i % STATIONS]
        fast_publisher.publish(
            station["device_id"],
            {"k": station["key"], "pm25": float(i % 900), "ts": _ts(total - i)},
        )
    assert fast_publisher.wait_all_acknowledged(120), "the broker did not take the burst"
    entity_ids = [s["entity_id"] for s in stations]
    assert wait_for(lambda: _counts(runtime, entity_ids)[0] >= total, timeout=180)
    assert wait_for(lambda: bridge.counts["received"] >= total, timeout=10)
    assert _counts(runtime, entity_ids) == (total, total)
    assert bridge.counts["stored"] == total
    assert bridge.counts["duplicates"] == 0
    assert bridge.counts["refused"] == 0
    # Stored in large batches, not one transaction a message.
    assert bridge.counts["batches"] < total / 20


def test_messages_waiting_at_the_broker_arrive_in_full_batches(
    bridges: Callable[..., MqttBridge],
    fast_publisher: Publisher,
    stations: list[dict[str, Any]],
    runtime: Runtime,
) -> None:
    first = bridges()
    first.stop()
    total = 3000
    for i in range(total):
        station = stations[i % STATIONS]
        fast_publisher.publish(
            station["device_id"], {"k": station["key"], "pm25": 1.0 + i % 7, "ts": _ts(total - i)}
        )
    assert fast_publisher.wait_all_acknowledged(60)
    # The broker holds them; the bridge takes up to 1,000 a batch, waiting for a full one.
    bridge = bridges(max_batch=1000, max_wait=5.0)
    entity_ids = [s["entity_id"] for s in stations]
    assert wait_for(lambda: _counts(runtime, entity_ids)[0] >= total, timeout=60)
    assert _counts(runtime, entity_ids) == (total, total)
    assert bridge.counts["batches"] <= 4


def test_batch_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, runtime: Runtime
) -> None:
    defaults = MqttBridge(runtime, url="mqtt://127.0.0.1:1")
    assert (defaults.max_batch, defaults.max_wait) == (2000, 0.1)
    monkeypatch.setenv("CITYOPS_MQTT_BATCH_MAX", "750")
    monkeypatch.setenv("CITYOPS_MQTT_BATCH_WAIT_MS", "40")
    read = Settings(database_url=settings.database_url, secret_key=settings.secret_key)
    assert (read.mqtt_batch_max, read.mqtt_batch_wait_ms) == (750, 40)
    monkeypatch.setattr(runtime, "settings", read)
    bridge = MqttBridge(runtime, url="mqtt://127.0.0.1:1")
    assert (bridge.max_batch, bridge.max_wait) == (750, 0.04)
    # The broker may send ahead at least what a written batch and a pending one hold.
    assert bridge.receive_maximum >= 2 * 750


def test_bad_batch_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_MQTT_BATCH_MAX", "0")
    with pytest.raises(ValueError, match="mqtt_batch_max"):
        Settings()
