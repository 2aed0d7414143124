"""Benchmark: CPU time the MQTT bridge spends per message, in process (steady under load).

A real Mosquitto holds a burst of messages (published while the bridge is away: `--messages`
QoS 1 messages from `--devices` stations, two values each); the bridge then starts and stores
them all. Printed: the process CPU time from the bridge's start until every message is stored
(paho's network thread, decoding, the write pipeline, commits, acknowledgements), per message and
per observation, and the wall time it took (which measures the machine's load as much as the
code). SQLite in a temporary folder.

To compare with older code, run it against that code's sources, alternating runs:
    git archive COMMIT src | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/bench_mqtt_cpu.py
    PYTHONPATH=src .venv/bin/python bench/bench_mqtt_cpu.py
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from cityops.app import build_runtime
from cityops.context.models import History
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.ingest import flows
from cityops.ingest.mqtt import MqttBridge
from cityops.ingest.schemas import DeviceCreate
from cityops.seed import seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.broker import Broker


def _publish(port: int, devices: list[tuple[str, str]], count: int) -> None:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for index in range(count):
        device_id, key = devices[index % len(devices)]
        seconds = 3 * 86400 - index
        payload = {
            "k": key,
            "pm25": round(10 + (index % 500) / 10, 1),
            "no2": float(index % 97),
            "ts": 1_795_000_000 - seconds,
        }
        infos.append(
            client.publish(f"cityops/default/{device_id}/attrs", json.dumps(payload), qos=1)
        )
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def main() -> None:
    """Print the bridge's CPU time per message and per observation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=250)
    parser.add_argument("--batch", type=int, default=2000, help="bridge batch size")
    parser.add_argument("--wait", type=float, default=0.1, help="bridge batch window (s)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="cityops-bench-mqtt-cpu-"))
    folder.chmod(0o777)
    settings = Settings(
        database_url=f"sqlite:///{folder / 'bench.db'}",
        data_dir=folder,
        secret_key=secrets.token_urlsafe(48),
        warm_start=False,
        background_jobs=False,
        log_level="WARNING",
    )
    runtime = build_runtime(settings)
    migrate.upgrade(runtime.engine)
    seed(runtime)
    attributes: list[dict[str, Any]] = [
        {"key": "pm25", "unit_code": "GQ", "min": 0, "max": 1000},
        {"key": "no2", "unit_code": "GQ", "min": 0, "max": 2000},
    ]
    devices: list[tuple[str, str]] = []
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        for n in range(args.devices):
            device, key = flows.create_device(
                runtime=runtime,
                session=session,
                device_in=DeviceCreate(
                    device_id=f"aq-{n:05d}",
                    name=f"Trạm {n}",
                    entity_type="AirQualityObserved",
                    lat=10.9 + (n % 50) * 0.004,
                    lon=106.8 + (n // 50) * 0.004,
                    interval_seconds=60,
                    attributes=attributes,  # type: ignore[arg-type]
                ),
            )
            devices.append((device.device_id, key))
    broker = Broker(folder)
    broker.start()
    # The bridge's session exists at the broker before the burst, so the broker keeps it.
    bridge = MqttBridge(runtime, url=broker.url, max_batch=args.batch, max_wait=args.wait)
    bridge.start()
    assert bridge.wait_connected(10)
    bridge.stop()
    _publish(broker.port, devices, args.messages)

    def stored_rows() -> int:
        with unit_of_work(runtime.session_factory) as session:
            return int(session.scalar(select(func.count()).select_from(History)) or 0)

    expected = args.messages * 2 + args.devices
    bridge = MqttBridge(runtime, url=broker.url, max_batch=args.batch, max_wait=args.wait)
    cpu, wall = time.process_time(), time.perf_counter()
    bridge.start()
    while stored_rows() < expected and time.perf_counter() - wall < 600:
        time.sleep(0.2)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rows = stored_rows()
    bridge.stop()
    broker.stop()
    stored = (rows - args.devices) // 2
    print(
        f"[sqlite] bridge, burst of {args.messages} messages x 2 values "
        f"(batch {args.batch}): {stored} stored in {bridge.counts['batches']} batches; "
        f"{cpu / max(stored, 1) * 1e6:.0f} µs CPU a message, "
        f"{cpu / max(stored * 2, 1) * 1e6:.0f} µs an observation; "
        f"wall {wall:.1f} s ({stored / wall:,.0f} messages/s at this load)"
    )
    runtime.engine.dispose()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
