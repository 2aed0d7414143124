"""The MQTT bridge against a real Mosquitto: end to end, broker restarts, bad messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.core.runtime import Runtime
from cityops.ingest.mqtt import MqttBridge, parse_url

from ..broker import Broker
from ..conftest import T0
from .conftest import API, Publisher, wait_for


@pytest.fixture
def station(make_device: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The Biên Hòa air-quality station, registered."""
    return make_device()


def _ts(seconds_before_t0: float) -> str:
    return (T0 - timedelta(seconds=seconds_before_t0)).isoformat().replace("+00:00", "Z")


def test_a_published_reading_appears_in_the_context_store(
    bridges: Callable[..., MqttBridge],
    publisher: Publisher,
    station: dict[str, Any],
    current: Callable[..., dict[str, Any]],
    admin: dict[str, str],
    client: TestClient,
) -> None:
    bridge = bridges()
    publisher.publish(
        station["device_id"], {"k": station["key"], "pm25": 41.5, "t_f": 95, "ts": _ts(60)}
    )
    assert wait_for(lambda: "pm25" in current(station["entity_id"]))
    values = current(station["entity_id"])
    assert values["pm25"] == {"value": 41.5, "unitCode": "GQ"}
    assert values["temperature"]["value"] == 35.0
    # Counted just after the commit that made the reading visible.
    assert wait_for(lambda: bridge.counts["stored"] == 1)
    device = client.get(f"{API}/ingest/devices/{station['id']}", headers=admin).json()
    assert device["status"] == "online"


def test_several_readings_in_one_message_and_a_gateway_key(
    bridges: Callable[..., MqttBridge],
    publisher: Publisher,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
    client: TestClient,
    admin: dict[str, str],
) -> None:
    gateway = client.post(
        f"{API}/api-keys",
        json={"name": "gateway", "permissions": ["context:write"], "tenant": "default"},
        headers=admin,
    ).json()["key"]
    bridges()
    readings = [{"pm25": float(i), "ts": _ts(100 - i)} for i in range(5)]
    publisher.publish(station["device_id"], {"key": gateway, "readings": readings})
    assert wait_for(lambda: len(history(station["entity_id"], "pm25")) == 5)


def test_nothing_acknowledged_is_lost_when_the_broker_restarts(
    bridges: Callable[..., MqttBridge],
    publisher: Publisher,
    mqtt_broker: Broker,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
) -> None:
    total = 400
    bridge = bridges(max_batch=50)
    for i in range(total):
        publisher.publish(
            station["device_id"], {"k": station["key"], "pm25": float(i), "ts": _ts(total - i)}
        )
        if i == total // 2:
            # Mid-stream: some messages are queued, some in a batch, some not yet sent.
            mqtt_broker.restart(pause=0.3)
    assert publisher.wait_all_acknowledged(60), "the broker did not acknowledge every message"
    assert wait_for(lambda: len(history(station["entity_id"], "pm25")) >= total, timeout=60)
    assert bridge.wait_connected(10)
    # Redeliveries settle; nothing is written twice.
    wait_for(lambda: bridge.counts["received"] >= total and bridge._queue.empty(), timeout=10)
    rows = history(station["entity_id"], "pm25")
    assert sorted(v for _, v in rows) == [float(i) for i in range(total)]
    assert len({ms for ms, _ in rows}) == total


def test_messages_sent_while_the_bridge_is_away_are_delivered_when_it_returns(
    bridges: Callable[..., MqttBridge],
    publisher: Publisher,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
) -> None:
    first = bridges()
    first.stop()
    for i in range(20):
        publisher.publish(
            station["device_id"], {"k": station["key"], "pm25": float(i), "ts": _ts(50 - i)}
        )
    assert publisher.wait_all_acknowledged()
    bridges()
    assert wait_for(lambda: len(history(station["entity_id"], "pm25")) == 20)


def test_bad_messages_are_dropped_and_counted(
    bridges: Callable[..., MqttBridge],
    publisher: Publisher,
    station: dict[str, Any],
    history: Callable[..., list[tuple[int, Any]]],
    runtime: Runtime,
) -> None:
    bridge = bridges()
    key = station["key"]
    publisher.publish(station["device_id"], b"{not json")
    publisher.publish(station["device_id"], b"[1, 2]")
    publisher.publish(station["device_id"], {"pm25": 1})
    publisher.publish(station["device_id"], {"k": key + "x", "pm25": 2})
    publisher.publish("no-such-device", {"k": key, "pm25": 3})
    publisher.publish(station["device_id"], {"k": key, "pm25": 5000, "ts": _ts(30)})
    publisher.publish(station["device_id"], {"k": key, "pm25": 7, "ts": _ts(20)})
    assert wait_for(lambda: bridge.counts["received"] >= 7)
    assert wait_for(lambda: len(history(station["entity_id"], "pm25")) == 1)
    assert [v for _, v in history(station["entity_id"], "pm25")] == [7]

    def refused(reason: str) -> float:
        value = runtime.metrics.registry.get_sample_value(
            "cityops_ingest_refused_total", {"transport": "mqtt", "reason": reason}
        )
        return value or 0.0

    assert refused("bad_json") == 1
    assert refused("bad_payload") == 1
    assert refused("wrong_key") == 2
    assert refused("unknown_device") == 1
    assert refused("out_of_range") == 1
    registry = runtime.metrics.registry
    assert (
        registry.get_sample_value("cityops_ingest_messages_received_total", {"transport": "mqtt"})
        == 7
    )
    assert registry.get_sample_value("cityops_ingest_mqtt_connected") == 1


def test_broker_urls() -> None:
    plain = parse_url("mqtt://broker.local")
    assert (plain.host, plain.port, plain.tls, plain.username) == (
        "broker.local",
        1883,
        False,
        None,
    )
    secure = parse_url("mqtts://ingest:p%40ss@broker.local")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "ingest",
        "p@ss",
    )
    with pytest.raises(ValueError, match="not an MQTT URL"):
        parse_url("http://broker.local")
