"""Benchmark the MQTT bridge: a real Mosquitto, publishers at a target rate, the bridge storing
into a fresh database (SQLite; PostgreSQL when CITYOPS_TEST_DATABASE_URL is set).

Prints messages stored per second, loss (published and acknowledged by the broker but not in the
history) and lag p50/p95/max (publish time carried in the payload → commit of its batch).

    .venv/bin/python bench/bench_mqtt.py --rate 5000 --seconds 30
    bash scripts/with-postgres.sh .venv/bin/python bench/bench_mqtt.py --rate 5000 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

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

# The tests' broker helper (a Mosquitto process on a free port) is reused from the repository.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.broker import Broker


def _database(folder: Path) -> tuple[str, str | None]:
    base = os.environ.get("CITYOPS_TEST_DATABASE_URL", "")
    if not base:
        return f"sqlite:///{folder / 'bench.db'}", None
    name = f"cityops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False), name


def _drop(name: str | None) -> None:
    if name is None:
        return
    admin = create_engine(os.environ["CITYOPS_TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _publisher(
    port: int, devices: list[tuple[str, str]], rate: float, seconds: float, out: Any
) -> None:
    """Publish at `rate` messages/s for `seconds`; report how many the broker acknowledged."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    started = time.monotonic()
    sent = 0
    index = 0
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) + 1
        while sent < due:
            device_id, key = devices[index % len(devices)]
            index += 1
            payload = {
                "k": key,
                "pm25": round(10 + (index % 500) / 10, 1),
                "no2": float(index % 97),
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            infos.append(
                client.publish(f"cityops/default/{device_id}/attrs", json.dumps(payload), qos=1)
            )
            sent += 1
        time.sleep(0.002)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(i.is_published() for i in infos):
        time.sleep(0.05)
    out.put(sum(1 for i in infos if i.is_published()))
    client.disconnect()
    client.loop_stop()


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000, help="messages per second, in all")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--publishers", type=int, default=3, help="client connections")
    parser.add_argument("--batch", type=int, default=2000, help="bridge batch size")
    parser.add_argument("--wait", type=float, default=0.1, help="bridge batch window (s)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="cityops-bench-mqtt-"))
    # Mosquitto drops root to its own user: the folder must be writable for it.
    folder.chmod(0o777)
    url, pg_name = _database(folder)
    settings = Settings(
        database_url=url,
        data_dir=folder,
        secret_key=secrets.token_urlsafe(48),
        warm_start=False,
        background_jobs=False,
    )
    runtime = build_runtime(settings)
    migrate.upgrade(runtime.engine)
    seed(runtime)
    devices: list[tuple[str, str]] = []
    attributes: list[dict[str, Any]] = [
        {"key": "pm25", "unit_code": "GQ", "min": 0, "max": 1000},
        {"key": "no2", "unit_code": "GQ", "min": 0, "max": 2000},
    ]
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
    lags: list[float] = []
    bridge = MqttBridge(
        runtime, url=broker.url, max_batch=args.batch, max_wait=args.wait, on_commit=lags.extend
    )
    bridge.start()
    assert bridge.wait_connected(10)
    backend = runtime.engine.dialect.name
    print(
        f"backend={backend} rate={args.rate:.0f}/s seconds={args.seconds:.0f} "
        f"devices={args.devices} publishers={args.publishers} batch={args.batch}"
    )
    queue: Any = mp.Queue()
    share = args.rate / args.publishers
    processes = [
        mp.Process(
            target=_publisher,
            args=(broker.port, devices[i :: args.publishers], share, args.seconds, queue),
        )
        for i in range(args.publishers)
    ]
    started = time.monotonic()
    for process in processes:
        process.start()
    acknowledged = sum(queue.get(timeout=args.seconds + 120) for _ in processes)
    for process in processes:
        process.join()
    published_for = time.monotonic() - started

    def stored_rows() -> int:
        with unit_of_work(runtime.session_factory) as session:
            return int(session.scalar(select(func.count()).select_from(History)) or 0)

    # Each message carries two values; the devices' fixed locations add one row each.
    expected = acknowledged * 2 + args.devices
    # Wait until everything is stored, or nothing more has been stored for 20 s.
    last, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < 20:
        rows = stored_rows()
        if rows >= expected:
            break
        if rows != last:
            last, last_change = rows, time.monotonic()
        time.sleep(0.5)
    drained_after = time.monotonic() - started
    rows = stored_rows()
    bridge.stop()
    broker.stop()
    stored_messages = (rows - args.devices) // 2
    lags.sort()
    print(f"published and acknowledged by the broker: {acknowledged} in {published_for:.1f} s")
    print(
        f"stored: {stored_messages} messages ({rows} history rows); "
        f"loss: {acknowledged - stored_messages}; duplicates skipped: {bridge.counts['duplicates']}"
    )
    print(
        f"throughput: {stored_messages / drained_after:.0f} messages/s stored "
        f"(all stored {drained_after:.1f} s after the first publish); "
        f"batches: {bridge.counts['batches']}"
    )
    if lags:
        p95 = lags[int(len(lags) * 0.95) - 1]
        print(
            f"lag (payload ts → commit): p50 {statistics.median(lags) * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms"
        )
    runtime.engine.dispose()
    _drop(pg_name)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
