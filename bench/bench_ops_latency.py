"""Benchmark operations latency: an observation ingested over HTTP → its alert on an SSE stream.

A real uvicorn server (in a thread of this process, so the rule engine's evaluator thread runs
beside it as under `cityops serve`) with the Đồng Nai rule pack and 1,000 generated rules
loaded. Two flood processes batch-upsert 100 stations each x 4 attributes over NGSI-LD, every
value changed and within ordinary air (no rule fires on them), paced to about 5,000 attribute
changes per second (the figure reports the rate reached); meanwhile a probe
station in Phường Trấn Biên is PATCHed to VN_AQI 176 and back to 60, and the time from sending
the PATCH to `alerts.alert_opened` (rule aqi-bad) arriving on a dashboard's stream is noted.
The dashboard is subscribed to entity changes too, as the operations wall is, and reads the
stream in its own process (as a browser would), so that parsing the flood does not compete with
the server for this process's interpreter lock.

Prints p50/p95/p99/max, quiet and under the flood, and the server's CPU per attribute change
under the flood (this process's CPU time: the flooders and the dashboard are other processes).
Run: PYTHONPATH=src:bench .venv/bin/python bench/bench_ops_latency.py [PROBES]

`--workers N` serves with `cityops serve --workers N` in a subprocess instead (SQLite, or
PostgreSQL under `bash scripts/with-postgres.sh`, which sets CITYOPS_TEST_DATABASE_URL), with
background jobs on (the leader evaluates the rules, events are fanned out between the workers
through the database); the flood is then sent by 2 x N processes opening a new connection every
few batches, so that it spreads over the workers (the kernel hands each connection to one). The
server's CPU is then read from /proc for every worker process (the supervisor included), and
on PostgreSQL the CPU of the backends of the bench database is printed beside it.
Run: bash scripts/with-postgres.sh env PYTHONPATH=src:bench .venv/bin/python \
    bench/bench_ops_latency.py 20 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import multiprocessing
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))
from bench_context_common import prepare
from bench_context_ingest import ENTITIES
from bench_rules import _rule_yaml
from cityops.alerts import flows as alert_flows
from cityops.app import create_app
from cityops.auth import service as auth_service
from cityops.auth.schemas import ApiKeyCreate
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL, Permission
from cityops.units.models import AdminUnit
from harness import free_port, percentile, wait_ready

PROBES = 40
RATE = 5000  # attribute changes per second in the flood
PROBE = "urn:ngsi-ld:AirQualityObserved:ops-latency-probe"
TRAN_BIEN = [106.838, 10.936]


def _iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _read_stream(base: str, key: str, arrivals: Any, ready: Any, count: Any) -> None:
    """Read the stream; queue (status, time.monotonic()) of each aqi-bad event of the probe."""
    read = 0
    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.Client(timeout=httpx.Timeout(30, read=None)) as client,
        client.stream("GET", f"{base}/api/v1/stream", headers={"X-API-Key": key}) as resp,
    ):
        for line in resp.iter_lines():
            if line == "":
                ready.set()
            elif line.startswith("data:"):
                read += 1
                if read % 500 == 0:
                    count.value = read
                if "ops-latency-probe" in line and '"alert_id"' in line:
                    data = json.loads(line[5:])
                    if data.get("rule_code") == "aqi-bad":
                        arrivals.put((data["status"], time.monotonic()))


class Dashboard:
    """An SSE client in its own process, as an operator's browser is: parsing a flood of
    entity changes must not compete with the server for this process's interpreter lock.
    Arrival times are CLOCK_MONOTONIC, which every process on the machine shares."""

    def __init__(self, base: str, key: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.arrivals = context.Queue()
        self._count = context.Value("q", 0)
        ready = context.Event()
        self._process = context.Process(
            target=_read_stream, args=(base, key, self.arrivals, ready, self._count), daemon=True
        )
        self._process.start()
        if not ready.wait(60):
            raise RuntimeError("the stream did not open")

    @property
    def events(self) -> int:
        """Events read so far (to the nearest 500)."""
        return int(self._count.value)

    def wait(self, status: str, timeout: float = 30) -> float:
        """The arrival time of the next aqi-bad event of the probe with this status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got, at = self.arrivals.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return math.inf  # not seen within the timeout: reported as a miss
            if got == status:
                return float(at)

    def stop(self) -> None:
        """Disconnect."""
        self._process.terminate()
        self._process.join(10)


def _normal_batch(worker: int, call: int) -> list[dict[str, Any]]:
    """ENTITIES stations of one flood worker, every value changed, all within ordinary air
    (PM2.5 15-30 µg/m³ and the like): a city's steady traffic, which raises no alert. Each
    worker has its own stations, observed at the current time, so no value flips between two
    writers (that would be an alert storm, not the load the figure is about)."""
    at = _iso()
    out: list[dict[str, Any]] = []
    for i in range(ENTITIES):
        lon, lat = 106.80 + (i % 10) * 0.01, 10.90 + (i // 10) * 0.01 + worker * 0.1
        entity: dict[str, Any] = {
            "id": f"urn:ngsi-ld:AirQualityObserved:flood-{worker}-{i}",
            "type": "AirQualityObserved",
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [lon, lat]},
            },
        }
        for n, name in enumerate(("pm25", "pm10", "no2", "o3")):
            value = 15 + ((call * 7 + i * 3 + n) % 16) + n * 2
            entity[name] = {"type": "Property", "value": value, "unitCode": "GQ", "observedAt": at}
        out.append(entity)
    return out


def _flood_worker(
    base: str, key: str, rate: float, worker: int, stop: Any, calls: Any, reconnect_every: int
) -> None:
    """Post batch upserts paced to `rate` attribute changes per second until `stop` is set."""
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    every = ENTITIES * 4 / rate
    number = 0
    next_at = time.perf_counter()
    while not stop.is_set():
        # With several server workers, a new connection every few batches spreads the flood
        # over them (each connection is accepted by one worker).
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            for _ in range(reconnect_every):
                if stop.is_set():
                    break
                number += 1
                body = _normal_batch(worker, number)
                response = client.post("/ngsi-ld/v1/entityOperations/upsert", json=body)
                assert response.status_code in (201, 204), response.text
                with calls.get_lock():
                    calls.value += 1
                next_at += every
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)


class Flood:
    """NGSI-LD batch upserts paced to `rate` attribute changes per second, from other processes.

    The clients run in their own processes (as real gateways do), so that their JSON encoding
    does not compete with the server for this process's interpreter lock.
    """

    def __init__(
        self,
        base: str,
        key: str,
        workers: int = 2,
        reconnect_every: int = 1_000_000,
        rate: float = RATE,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._calls = context.Value("i", 0)
        self._processes = [
            context.Process(
                target=_flood_worker,
                args=(base, key, rate / workers, n, self._stop, self._calls, reconnect_every),
                daemon=True,
            )
            for n in range(workers)
        ]
        self.started = 0.0

    @property
    def calls(self) -> int:
        """Batch calls answered so far."""
        return int(self._calls.value)

    def start(self) -> None:
        """Start flooding."""
        self.started = time.perf_counter()
        for process in self._processes:
            process.start()

    calls_at_start = 0

    def rate(self) -> float:
        """Attribute changes per second since the flood was running at full pace."""
        elapsed = max(1e-9, time.perf_counter() - self.started - 2)
        return (self.calls - self.calls_at_start) * ENTITIES * 4 / elapsed

    def stop(self) -> None:
        """Stop flooding."""
        self._stop.set()
        for process in self._processes:
            process.join(60)


def _probe(client: httpx.Client, dashboard: Dashboard, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        body = {"airQualityIndex": {"type": "Property", "value": 176, "observedAt": _iso()}}
        sent = time.monotonic()
        response = client.patch(f"/ngsi-ld/v1/entities/{PROBE}/attrs", json=body)
        assert response.status_code == 204, response.text
        latencies.append(dashboard.wait("open") - sent)
        body = {"airQualityIndex": {"type": "Property", "value": 60, "observedAt": _iso()}}
        assert client.patch(f"/ngsi-ld/v1/entities/{PROBE}/attrs", json=body).status_code == 204
        if math.isinf(dashboard.wait("resolved")):
            print("  (the probe's alert was not seen resolving within 30 s)", flush=True)
        time.sleep(random.uniform(0.05, 0.2))
    return latencies


def _report(label: str, latencies: list[float], extra: str = "") -> None:
    missed = sum(1 for x in latencies if math.isinf(x))
    extra += f", {missed} not seen within 30 s" if missed else ""
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"  {label}: n={len(ms)} p50 {percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms"
        f", p99 {percentile(ms, 99):.0f} ms, max {ms[-1]:.0f} ms{extra}"
    )


def _dashboard_key(runtime: Runtime) -> str:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        _, key = auth_service.create_api_key(
            session=session,
            key_in=ApiKeyCreate(
                name="wall", permissions=[Permission.CONTEXT_READ, Permission.ALERT_READ]
            ),
            clock=runtime.clock,
            created_by=None,
        )
    return key


class ServerCpu:
    """CPU seconds (user + system) of the server's processes and of the PostgreSQL backends of
    the bench database, read from /proc (load-independent, unlike the rate)."""

    def __init__(self, root: int | None, database: str | None) -> None:
        self.root = root  # None: this process (the in-thread server)
        self.database = database
        self._tick = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int) -> tuple[int, float] | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / self._tick

    def read(self) -> tuple[float, float]:
        """(server CPU, database backends' CPU) so far, in seconds."""
        if self.root is None:
            server = time.process_time()
        else:
            stats = {}
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and (found := self._stat(int(entry.name))) is not None:
                    stats[int(entry.name)] = found
            tree, server = {self.root}, 0.0
            for pid in sorted(stats):  # children have higher pids than their parent here
                parent, cpu = stats[pid]
                if pid == self.root or parent in tree:
                    tree.add(pid)
                    server += cpu
        backends = 0.0
        if self.database:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if title.startswith("postgres: ") and f" {self.database} " in title:
                    found = self._stat(int(entry.name))
                    backends += found[1] if found else 0.0
        return server, backends


class _FullCollections:
    """Count and time the full (generation 2) garbage collections of this process from now:
    each one holds the interpreter lock while it walks every object (see app.settle_heap)."""

    def __init__(self) -> None:
        self.count, self.seconds, self._started = 0, 0.0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._started

    def stop(self) -> str:
        """Stop counting; return the count and the time they took."""
        gc.callbacks.remove(self._callback)
        return f"{self.count} ({self.seconds:.2f} s)"


def _serve_in_thread(settings: Any) -> tuple[str, Callable[[], None]]:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    engine = alert_flows.engine_of(runtime)
    engine.reload()
    engine.start()
    print(f"[{runtime.engine.dialect.name}, server in this process] "
          f"{len(engine.index.rules)} rules enabled")  # fmt: skip
    port = free_port()
    config = uvicorn.Config(
        app, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(30)
        engine.stop()
        runtime.engine.dispose()

    return f"http://127.0.0.1:{port}", stop


def _serve_workers(settings: Any, workers: int) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DATABASE_URL": settings.database_url,
        "CITYOPS_SECRET_KEY": settings.secret_key,
        "CITYOPS_DATA_DIR": str(settings.data_dir),
        "CITYOPS_LOG_LEVEL": "WARNING",
        "CITYOPS_BACKGROUND_JOBS": "true",
    }
    command = [sys.executable, "-c", "from cityops.cli import main; main()", "serve"]
    server = subprocess.Popen([*command, "--port", str(port), "--workers", str(workers)], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, server, timeout=120)
    dialect = settings.database_url.split(":", 1)[0].split("+", 1)[0]
    print(f"[{dialect}, cityops serve --workers {workers}]")
    return base, server


def main() -> None:
    """Print observation → alert-on-stream latencies with 1,000 rules, quiet and flooded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probes", nargs="?", type=int, default=PROBES)
    parser.add_argument("--workers", type=int, default=0, help="serve with N worker processes")
    parser.add_argument(
        "--rate", type=int, default=RATE, help=f"flood pace, changes/s (default {RATE})"
    )
    parser.add_argument(
        "--flooders", type=int, default=2, help="flood processes (x N with --workers N)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings, setup, key = prepare(Path(tmp))
        reader = _dashboard_key(setup)
        with unit_of_work(setup.session_factory) as session:
            units = list(
                session.scalars(select(AdminUnit.code).where(AdminUnit.level == "commune"))
            )
            result = alert_flows.import_rules(
                runtime=setup, session=session, text=_rule_yaml(random.Random(2026), units)
            )
        print(f"{len(result.created)} rules generated (beside the profile's rule pack)")
        postgres = setup.engine.dialect.name == "postgresql"
        database = setup.engine.url.database if args.workers and postgres else None
        setup.engine.dispose()
        process: subprocess.Popen[bytes] | None = None
        if args.workers:
            base, process = _serve_workers(settings, args.workers)
            cpu = ServerCpu(process.pid, database)
        else:
            base, stop = _serve_in_thread(settings)
            cpu = ServerCpu(None, None)
        try:
            _measure(
                base,
                key,
                reader,
                args.probes,
                cpu,
                max(1, args.workers),
                args.rate,
                args.flooders,
            )
        finally:
            if process is not None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            else:
                stop()


def _measure(
    base: str,
    key: str,
    reader: str,
    probes: int,
    cpu: ServerCpu,
    workers: int,
    rate: int,
    flooders: int,
) -> None:
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    client = httpx.Client(base_url=base, headers=headers, timeout=60)
    station: dict[str, Any] = {
        "id": PROBE,
        "type": "AirQualityObserved",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": TRAN_BIEN},
        },
        "dateObserved": {"type": "Property", "value": _iso()},
        "airQualityIndex": {"type": "Property", "value": 60, "observedAt": _iso()},
    }
    assert client.post("/ngsi-ld/v1/entities", json=station).status_code == 201
    dashboard = Dashboard(base, reader)
    _report("PATCH → aqi-bad alert on the stream, quiet", _probe(client, dashboard, probes))
    if workers > 1:
        flood = Flood(base, key, workers=flooders * workers, reconnect_every=5, rate=rate)
    else:
        flood = Flood(base, key, workers=flooders, rate=rate)
    flood.start()
    while flood.calls == 0:  # the processes import CityOps first
        time.sleep(0.1)
    flood.started = time.perf_counter()
    time.sleep(2)
    flood.calls_at_start = flood.calls
    (cpu_start, db_start), wall_start = cpu.read(), time.perf_counter()
    collections = _FullCollections() if cpu.root is None else None
    flooded = _probe(client, dashboard, probes)
    rate = flood.rate()
    cpu_end, db_end = cpu.read()
    wall = time.perf_counter() - wall_start
    changes = (flood.calls - flood.calls_at_start) * ENTITIES * 4
    flood.stop()
    _report(
        "PATCH → aqi-bad alert on the stream, flooded",
        flooded,
        f" (flood: {rate:,.0f} attribute changes/s over HTTP)",
    )
    used = cpu_end - cpu_start
    where = "this process" if cpu.root is None else f"{workers} worker(s) + supervisor, /proc"
    print(
        f"  server CPU per attribute change under the flood: {used / max(1, changes) * 1e6:.1f}"
        f" µs ({where}: {used:.1f} s CPU over {wall:.1f} s, {changes:,} changes;"
        f" load average {Path('/proc/loadavg').read_text().split()[0]})"
    )
    if cpu.database:
        used_db = db_end - db_start
        per_change = used_db / max(1, changes) * 1e6
        print(
            f"  PostgreSQL backends' CPU per attribute change: {per_change:.1f} µs"
            f" ({used_db:.1f} s CPU)"
        )
    if collections is not None:
        counted = collections.stop()
        print(f"  full garbage collections in the server process under the flood: {counted}")
    print(f"  events read by the stream client: {dashboard.events:,}")
    dashboard.stop()
    client.close()


if __name__ == "__main__":
    main()
