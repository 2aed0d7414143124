"""Benchmark: the CPU every HTTP request pays before its own work (the per-request floor).

Starts a real uvicorn server (`cityops.app:create_app --factory`, one worker, SQLite, seeded like
bench_open311), then drives each route below with `harness.hammer` (raw asyncio keep-alive
connections, pre-encoded requests) and prints requests/s, latency, and the **server CPU per
request** (the server process's utime + stime from /proc: load-independent), beside the load
generator's own CPU per request:

- `GET /healthz`
- `POST /open311/v2/requests.json` with an unknown service_code (answered 404)
- `GET /open311/v2/services.json`
- `GET /api/v1/units?limit=1` with an API key header
- `GET /ngsi-ld/v1/entities?type=X&limit=1` with an API key header

Run: PYTHONPATH=src:bench .venv/bin/python bench/bench_http_floor.py [REQUESTS] [--profile]
[--compare=OTHER_CHECKOUT] (default 3,000 requests a route over 16 connections; `--profile`
records each route with py-spy into /tmp/floor-profile/NAME.raw; `--compare` also starts a
server on OTHER_CHECKOUT/src against the same database and times each route on both servers in
turn, several rounds, so a busy machine weighs on both alike). `--hops` instead drives the app in
process (Starlette's TestClient) and prints, per route, the worker-thread hops a request takes
(anyio.to_thread.run_sync calls: a count that does not depend on the machine's load) and the
process CPU per request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).parent))
from bench_open311 import _cpu, seeded
from cityops.auth import service as auth_service
from cityops.auth.schemas import ApiKeyCreate
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL, Permission
from harness import encode_request, free_port, percentile, run_hammer, wait_ready

_ARGS = [a for a in sys.argv[1:] if a.isdigit()]
REQUESTS = int(_ARGS[0]) if _ARGS else 3_000
PROFILE = "--profile" in sys.argv
COMPARE = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--compare=")), None)
ROUNDS = int(os.environ.get("FLOOR_ROUNDS", "3"))
# FLOOR_ONLY=text: time only the routes whose name holds it.
ONLY = os.environ.get("FLOOR_ONLY", "")
CONNECTIONS = 16
WARMUP = 300
PYSPY = "/tmp/pyspy/bin/py-spy"


def _key(runtime: Runtime) -> str:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        _, key = auth_service.create_api_key(
            session=session,
            key_in=ApiKeyCreate(
                name="bench-floor",
                permissions=[Permission.CITIZEN_SUBMIT, Permission.CONTEXT_READ],
            ),
            clock=runtime.clock,
            created_by=None,
        )
    return key


def routes(key: str) -> list[tuple[str, bytes, int]]:
    """The requests timed: (name, pre-encoded request, expected status)."""
    form = urlencode(
        {
            "api_key": key,
            "service_code": "NO-SUCH-SERVICE",
            "lat": "10.945",
            "long": "106.842",
            "description": "Ổ gà lớn giữa làn xe máy, nguy hiểm ban đêm",
            "email": "nguoi.dan@example.vn",
        }
    ).encode()
    keyed = {"X-API-Key": key, "Accept": "application/json"}
    return [
        ("GET /healthz", encode_request("GET", "/healthz"), 200),
        (
            "POST /open311/v2/requests.json (404)",
            encode_request(
                "POST",
                "/open311/v2/requests.json",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                body=form,
            ),
            404,
        ),
        ("GET /open311/v2/services.json", encode_request("GET", "/open311/v2/services.json"), 200),
        (
            "GET /api/v1/units?limit=1 (API key)",
            encode_request("GET", "/api/v1/units?limit=1", headers=keyed),
            200,
        ),
        (
            "GET /ngsi-ld/v1/entities?type=X&limit=1",
            encode_request("GET", "/ngsi-ld/v1/entities?type=X&limit=1", headers=keyed),
            200,
        ),
    ]


def measure(
    name: str, request: bytes, expected: int, port: int, pid: int, label: str = ""
) -> float:
    """Warm a route up, then time REQUESTS of it; print the figures."""
    run_hammer("127.0.0.1", port, [request] * WARMUP, CONNECTIONS)
    spy = None
    if PROFILE:
        folder = Path("/tmp/floor-profile")
        folder.mkdir(exist_ok=True)
        out = folder / f"{name.split()[1].strip('/').split('?')[0].replace('/', '_')}.raw"
        spy = subprocess.Popen(
            [PYSPY, "record", "--pid", str(pid), "-r", "200", "-f", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    load = os.getloadavg()[0]
    cpu = _cpu(pid)
    result = run_hammer("127.0.0.1", port, [request] * REQUESTS, CONNECTIONS)
    server_cpu = _cpu(pid) - cpu
    if spy is not None:
        # py-spy writes its file on SIGINT (a SIGTERM would lose the profile).
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    wrong = sum(1 for status in result.statuses if status != expected)
    print(
        f"{label}{name:42s} {result.rate:7,.0f}/s  "
        f"p50 {percentile(result.latencies, 50) * 1000:5.1f} ms  "
        f"p95 {percentile(result.latencies, 95) * 1000:5.1f} ms  "
        f"server CPU {server_cpu / REQUESTS * 1000:5.2f} ms/request  "
        f"client CPU {result.client_cpu / REQUESTS * 1000:4.2f} ms/request  "
        f"load {load:.1f}" + (f"  {wrong} not {expected}" if wrong else ""),
        flush=True,
    )
    return server_cpu / REQUESTS


def hops(runtime: Runtime, settings: Any, key: str) -> None:
    """Print thread-pool hops and in-process CPU per request for each route (no server)."""
    import anyio.to_thread
    from fastapi.testclient import TestClient

    from cityops.app import create_app

    calls = [0]
    original = anyio.to_thread.run_sync

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(*args, **kwargs)

    anyio.to_thread.run_sync = counted  # type: ignore[assignment]
    unlimited = settings.model_copy(update={"citizen_rate_per_minute": 1_000_000})
    with TestClient(create_app(unlimited), base_url="http://127.0.0.1") as client:
        for name, request, expected in routes(key):
            head, _, body = request.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            headers.pop("Content-Length", None)
            headers.pop("Host", None)
            for _ in range(WARMUP):
                client.request(method, path, headers=headers, content=body)
            calls[0] = 0
            count = min(REQUESTS, 1000)
            cpu = time.process_time()
            statuses = {
                client.request(method, path, headers=headers, content=body).status_code
                for _ in range(count)
            }
            cpu = time.process_time() - cpu
            print(
                f"{name:42s} {calls[0] / count:4.1f} thread hops/request  "
                f"in-process CPU {cpu / count * 1000:5.2f} ms/request (TestClient included)  "
                f"statuses {sorted(statuses)} (expected {expected})",
                flush=True,
            )


def start(env: dict[str, str], source: str | None) -> tuple[subprocess.Popen[bytes], int]:
    """Start a uvicorn worker (on `source`/src first when given); return it and its port."""
    port = free_port()
    if source is not None:
        env = {**env, "PYTHONPATH": f"{Path(source) / 'src'}:{env.get('PYTHONPATH', '')}"}
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "cityops.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--no-access-log", "--workers", "1",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env)
    wait_ready(f"http://127.0.0.1:{port}", server, timeout=300)
    return server, port


def main() -> None:
    """Seed a database, start uvicorn, time each route."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings, runtime = seeded(folder)
        key = _key(runtime)
        runtime.engine.dispose()
        if "--hops" in sys.argv:
            print(f"load average {os.getloadavg()[0]:.1f}; in process, {min(REQUESTS, 1000)}")
            hops(runtime, settings, key)
            return
        env = {
            **os.environ,
            "CITYOPS_DATABASE_URL": settings.database_url,
            "CITYOPS_DATA_DIR": str(folder),
            "CITYOPS_SECRET_KEY": settings.secret_key,
            "CITYOPS_LOG_LEVEL": "WARNING",
            "CITYOPS_BACKGROUND_JOBS": "false",
            "CITYOPS_CITIZEN_RATE_PER_MINUTE": "1000000",
        }
        servers = [start(env, None)]
        try:
            if COMPARE is not None:
                servers.append(start(env, COMPARE))
            print(
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; one worker, "
                f"{CONNECTIONS} keep-alive connections, {REQUESTS:,} requests a route"
            )
            if COMPARE is None:
                for name, request, expected in routes(key):
                    measure(name, request, expected, servers[0][1], servers[0][0].pid)
                return
            summary: list[str] = []
            for name, request, expected in routes(key):
                if ONLY and ONLY not in name:
                    continue
                figures: dict[str, list[float]] = {"this": [], "other": []}
                for turn in range(ROUNDS):
                    # Each server goes first in turn: a warming or busier spell weighs on both.
                    pairs = list(zip(("this", "other"), servers, strict=True))
                    for label, (server, port) in pairs[:: -1 if turn % 2 else 1]:
                        figures[label].append(
                            measure(name, request, expected, port, server.pid, f"[{label:5s}] ")
                        )
                this, other = min(figures["this"]), min(figures["other"])
                summary.append(
                    f"{name:42s} server CPU (best of {ROUNDS}) this {this * 1000:5.2f} ms, "
                    f"{COMPARE} {other * 1000:5.2f} ms ({(this / other - 1) * 100:+.0f} %)"
                )
            print("\n".join(summary))
        finally:
            for server, _ in servers:
                server.terminate()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
