"""Benchmark the live stream: from a change committed to its receipt by an SSE client.

Three paths, each quiet and then under a background flood of entity changes (a thread
batch-upserting 100 stations x 4 attributes over NGSI-LD, as fast as the server takes them; the
stream client is subscribed to them too, as an operations dashboard is). The third is measured
once more under 5,000 entity changes per second published straight on the server's bus (the
events ingest publishes after its commits, without the database work), which is the stream's own
share of the figure "5,000 observations/s flowing":

1. NGSI-LD PATCH over HTTP → `context.attribute_changed` on the stream (server in a subprocess);
2. an alert committed by another process (a CLI import, another worker) → `alerts.alert_opened`
   on the stream, found by the server's once-a-second poll of the stream log;
3. an alert committed inside the server process (where the rules engine runs) →
   `alerts.alert_opened` on the stream, woken at once (server in a thread of this process).

Prints p50/p95/max per path, and the background rate of entity changes.
Run: .venv/bin/python bench/bench_stream.py
     bash scripts/with-postgres.sh .venv/bin/python bench/bench_stream.py
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from bench_context_ingest import ENTITIES, _batch
from cityops.app import create_app
from cityops.auth import service as auth_service
from cityops.auth.schemas import ApiKeyCreate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL, Permission
from harness import free_port, percentile, wait_ready

PATCHES = 300
ALERTS = 200
POLL = 1.0  # the server's stream_poll_seconds (the default)
BUS_RATE = 5000  # entity changes per second in the bus flood
PROBE = "urn:ngsi-ld:AirQualityObserved:probe"


class Receiver:
    """An SSE client on its own thread, noting when each probe event arrives."""

    def __init__(self, base: str, key: str) -> None:
        self.arrived: dict[str, float] = {}
        self.events = 0
        self._ready = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(base, key), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the stream did not open")

    def _run(self, base: str, key: str) -> None:
        headers = {"X-API-Key": key}
        timeout = httpx.Timeout(30, read=None)
        with (
            contextlib.suppress(httpx.HTTPError),  # stopped, or the server went away
            httpx.Client(timeout=timeout) as client,
            client.stream("GET", f"{base}/api/v1/stream", headers=headers) as response,
        ):
            self._response = response
            for line in response.iter_lines():
                if line == "":
                    self._ready.set()
                elif line.startswith("data:"):
                    self.events += 1
                    if "probe" in line:  # only probes are parsed: the flood is just read
                        self.arrived[_probe_key(json.loads(line[5:]))] = time.perf_counter()

    def wait_for(self, key: str, timeout: float = 10) -> float:
        """The arrival time of a probe."""
        deadline = time.monotonic() + timeout
        while key not in self.arrived:
            if time.monotonic() > deadline:
                raise RuntimeError(f"probe {key} never arrived")
            time.sleep(0.0005)
        return self.arrived[key]

    def stop(self) -> None:
        """Disconnect and wait for the reading thread."""
        if self._response is not None:
            sock = self._response.extensions["network_stream"].get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)


def _probe_key(data: dict[str, Any]) -> str:
    if "alert_id" in data:
        return f"alert-{data['alert_id']}"
    return f"value-{data.get('value')}"


class Flood:
    """Batch upserts of 100 stations x 4 attributes, back to back, on a thread."""

    def __init__(self, base: str, key: str) -> None:
        self.calls = 0
        self._stop = threading.Event()
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        self._client = httpx.Client(base_url=base, headers=headers, timeout=60)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        call = 1
        while not self._stop.is_set():
            response = self._client.post("/ngsi-ld/v1/entityOperations/upsert", json=_batch(call))
            assert response.status_code in (201, 204), response.text
            self.calls += 1
            call += 1

    @contextmanager
    def running(self) -> Iterator[Callable[[], float]]:
        """Run the flood; yield a function giving its rate of attribute changes per second."""
        started, before = time.perf_counter(), self.calls
        self._thread.start()
        try:
            yield lambda: (self.calls - before) * ENTITIES * 4 / (time.perf_counter() - started)
        finally:
            self._stop.set()
            self._thread.join(60)
            self._client.close()


class BusFlood:
    """Entity changes published on the server's bus at a steady rate, as ingest would after each
    commit, without the database work: the stream's own share of a 5,000/s flood."""

    def __init__(self, runtime: Runtime, rate: int) -> None:
        self.published = 0
        self._runtime = runtime
        self._rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        batch, started = self._rate // 20, time.perf_counter()
        while not self._stop.is_set():
            at = self._runtime.clock.now()
            for i in range(batch):
                n = self.published + i
                data = {
                    "tenant": "default",
                    "entity_id": f"urn:ngsi-ld:AirQualityObserved:bench-{n % 1000}",
                    "entity_type": "AirQualityObserved",
                    "attribute": "pm25",
                    "dataset_id": None,
                    "attribute_type": "Property",
                    "value": n * 0.5,
                    "previous": n * 0.5 - 0.5,
                    "unit_code": "25195",
                    "unitCode": "GQ",
                    "observed_at": "2026-11-20T03:00:00.000Z",
                    "deleted": False,
                    "lat": 10.95,
                    "lon": 106.84,
                }
                self._runtime.bus.publish(Event("context.attribute_changed", data, at))
            self.published += batch
            ahead = started + self.published / self._rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)

    @contextmanager
    def running(self) -> Iterator[Callable[[], float]]:
        """Run the flood; yield a function giving its achieved rate per second."""
        started = time.perf_counter()
        self._thread.start()
        try:
            yield lambda: self.published / (time.perf_counter() - started)
        finally:
            self._stop.set()
            self._thread.join(60)


def _stream_key(runtime: Runtime) -> str:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        _, key = auth_service.create_api_key(
            session=session,
            key_in=ApiKeyCreate(
                name="dashboard",
                permissions=[Permission.CONTEXT_READ, Permission.ALERT_READ],
            ),
            clock=runtime.clock,
            created_by=None,
        )
    return key


def _alert(alert_id: int) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "rule_id": 1,
        "rule_code": "probe",
        "kind": "threshold",
        "severity": "high",
        "status": "open",
        "tenant": "default",
        "entity_id": PROBE,
        "entity_type": "AirQualityObserved",
        "attribute": "pm25",
        "value": 80.0,
        "unit_code": None,
        "sector": "environment",
        "title_vi": "Thăm dò",
        "title_en": "Probe",
        "policy": {"incident": None, "notify": []},
    }


def _report(label: str, latencies: list[float], extra: str = "") -> None:
    ms = [x * 1000 for x in latencies]
    print(
        f"  {label}: p50 {percentile(ms, 50):.1f} ms, p95 {percentile(ms, 95):.1f} ms, "
        f"max {max(ms):.1f} ms over {len(ms)}{extra}"
    )


def _patches(
    base: str, key: str, receiver: Receiver, first: int
) -> tuple[list[float], list[float]]:
    """Latencies of PATCH → its answer, and PATCH → its change on the stream."""
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    answered, streamed = [], []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for n in range(first, first + PATCHES):
            value = n + 0.25
            started = time.perf_counter()
            response = client.patch(
                f"/ngsi-ld/v1/entities/{PROBE}/attrs/pm25", json={"value": value}
            )
            assert response.status_code == 204, response.text
            answered.append(time.perf_counter() - started)
            streamed.append(receiver.wait_for(f"value-{value}") - started)
    return answered, streamed


def _alerts(
    runtime: Runtime, receiver: Receiver, first: int, count: int, gap: float
) -> tuple[list[float], list[float]]:
    """Latencies of an alert's transaction (begin → stream) and of the stream (commit → stream)."""
    rng = random.Random(first)
    whole, after_commit = [], []
    for alert_id in range(first, first + count):
        # Random gaps, so that the publications do not fall into step with the poll.
        time.sleep(rng.uniform(0.0, gap))
        started = time.perf_counter()
        with unit_of_work(runtime.session_factory) as session:
            event = Event(type="alerts.alert_opened", data=_alert(alert_id), at=runtime.clock.now())
            runtime.bus.publish_after_commit(session, event)
        committed = time.perf_counter()
        arrived = receiver.wait_for(f"alert-{alert_id}")
        whole.append(arrived - started)
        after_commit.append(arrived - committed)
    return whole, after_commit


def _create_probe(base: str, key: str) -> None:
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    probe = {
        "id": PROBE,
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.84, 10.95]},
        },
        "pm25": {"type": "Property", "value": 0.0, "unitCode": "GQ"},
    }
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        assert client.post("/ngsi-ld/v1/entities", json=probe).status_code == 201
        assert client.post("/ngsi-ld/v1/entityOperations/upsert", json=_batch(0)).status_code in (
            201,
            204,
        )


def out_of_process(settings: Settings, runtime: Runtime, key: str, reader: str, name: str) -> None:
    """Server in a subprocess: PATCH → stream, and alerts from this (another) process."""
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DATABASE_URL": settings.database_url,
        "CITYOPS_DATA_DIR": str(settings.data_dir),
        "CITYOPS_SECRET_KEY": settings.secret_key,
        "CITYOPS_LOG_LEVEL": "WARNING",
        "CITYOPS_BACKGROUND_JOBS": "false",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "cityops.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        _create_probe(base, key)
        receiver = Receiver(base, reader)
        print(f"[{name}] server in its own process (one uvicorn worker)")
        answered, streamed = _patches(base, key, receiver, 0)
        _report("PATCH → its 204 answer, quiet", answered)
        _report("PATCH → attribute change on the stream, quiet", streamed)
        whole, streamed = _alerts(runtime, receiver, 1, ALERTS // 2, POLL)
        _report("alert by another process: commit → stream (poll), quiet", streamed)
        with Flood(base, key).running() as rate:
            answered, patched = _patches(base, key, receiver, 10_000)
            whole, streamed = _alerts(runtime, receiver, 10_000, ALERTS // 2, POLL)
            load = f" (flood: {rate():,.0f} attribute changes/s)"
        _report("PATCH → its 204 answer, under flood", answered, load)
        _report("PATCH → attribute change on the stream, under flood", patched, load)
        _report("alert by another process: begin → stream (poll), under flood", whole, load)
        _report("alert by another process: commit → stream (poll), under flood", streamed, load)
        print(f"  events read by the stream client: {receiver.events:,}")
        receiver.stop()
    finally:
        server.terminate()
        server.wait(30)


def in_process(settings: Settings, key: str, reader: str, name: str) -> None:
    """Server in a thread of this process: alerts committed beside it wake the streams at once."""
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    port = free_port()
    config = uvicorn.Config(
        app, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    receiver = Receiver(base, reader)
    print(f"[{name}] server in this process (alerts committed where the rules engine runs)")
    whole, streamed = _alerts(runtime, receiver, 20_000, ALERTS, 0.05)
    _report("alert in the server process: commit → stream, quiet", streamed)
    with Flood(base, key).running() as rate:
        whole, streamed = _alerts(runtime, receiver, 30_000, ALERTS, 0.05)
        load = f" (flood: {rate():,.0f} attribute changes/s)"
    # Under the flood the alert's own commit waits for the database (SQLite: one writer).
    _report("alert in the server process: begin → stream, under flood", whole, load)
    _report("alert in the server process: commit → stream, under flood", streamed, load)
    with BusFlood(runtime, BUS_RATE).running() as rate:
        whole, streamed = _alerts(runtime, receiver, 40_000, ALERTS, 0.05)
        load = f" (bus: {rate():,.0f} entity changes/s)"
    _report("alert in the server process: commit → stream, bus flood", streamed, load)
    print(f"  events read by the stream client: {receiver.events:,}")
    receiver.stop()
    server.should_exit = True
    thread.join(30)
    runtime.engine.dispose()


def main() -> None:
    """Print the stream latencies, quiet and under a flood of entity changes."""
    with tempfile.TemporaryDirectory() as tmp:
        settings, runtime, key = prepare(Path(tmp))
        reader = _stream_key(runtime)
        name = runtime.engine.dialect.name
        out_of_process(settings, runtime, key, reader, name)
        in_process(settings, key, reader, name)
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
