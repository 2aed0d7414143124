"""Shared pieces of the benchmarks: free ports, waiting for a server, percentiles, and a cheap
keep-alive HTTP/1.1 load generator (`hammer`)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from dataclasses import dataclass

import httpx


def free_port() -> int:
    """A localhost TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until the server at `base` answers /healthz (or fail if it exits or is too slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start within {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of the values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def encode_request(
    method: str,
    path: str,
    *,
    host: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """Encode one HTTP/1.1 keep-alive request once, so sending it costs the client nothing."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Hammered:
    """What `hammer` saw: one latency (seconds) and status per request, in sending order."""

    latencies: list[float]
    statuses: list[int]
    elapsed: float  # wall-clock seconds from the first request sent to the last answer read
    client_cpu: float  # CPU seconds the load generator itself used (time.process_time)

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (status line, headers, body by Content-Length or chunks); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length > 0:
        await reader.readexactly(length)
    return status


async def hammer(host: str, port: int, requests: list[bytes], connections: int = 16) -> Hammered:
    """Send pre-encoded requests over `connections` keep-alive connections, each sending its
    next request once the previous answer is read; return latencies and statuses.

    Raw asyncio streams, no HTTP library: the generator shares the cores with the server it
    measures, so it must spend as little CPU per request as possible (see `client_cpu`).
    """
    latencies = [0.0] * len(requests)
    statuses = [0] * len(requests)
    position = iter(range(len(requests)))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index in position:
                started = time.perf_counter()
                writer.write(requests[index])
                statuses[index] = await _read_response(reader)
                latencies[index] = time.perf_counter() - started
        finally:
            writer.close()

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(connections, len(requests)))))
    elapsed = time.perf_counter() - started
    return Hammered(latencies, statuses, elapsed, time.process_time() - cpu)


def run_hammer(host: str, port: int, requests: list[bytes], connections: int = 16) -> Hammered:
    """Run `hammer` in a fresh event loop (uvloop when installed: cheaper per request)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(hammer(host, port, requests, connections))
    return uvloop.run(hammer(host, port, requests, connections))
