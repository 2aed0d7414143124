"""A real uvicorn server in a thread, and a real SSE client reading its stream in another."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

# One TLS context for every client: building one loads the CA bundle (0.2 s), and these clients
# only speak plain HTTP to localhost anyway.
TLS = ssl.create_default_context()


def free_port() -> int:
    """A localhost TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn serving an app on a free port, in a thread of this process."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws="none",
            # Open streams are closed after a second, as `cityops serve` does after five.
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    def start(self) -> LiveServer:
        """Start serving and wait until the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving (open streams are cut) and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class SseEvent:
    """One dispatched server-sent event."""

    type: str
    data: dict[str, Any]
    id: str | None


@dataclass
class SseClient:
    """Reads a text/event-stream the way EventSource does, on a thread of its own."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    content_type: str = ""
    body: bytes = b""
    last_id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    error: Exception | None = None

    def __post_init__(self) -> None:
        self.events: queue.Queue[SseEvent] = queue.Queue()
        self._opened = threading.Event()
        self.closed = threading.Event()
        self._http = httpx.Client(timeout=httpx.Timeout(10.0, read=None), verify=TLS)
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name="sse-client", daemon=True)
        self._thread.start()
        if not self._opened.wait(15):
            raise RuntimeError("the stream did not open")

    def _run(self) -> None:
        try:
            with self._http.stream(
                "GET", self.url, headers=self.headers, params=self.params
            ) as response:
                self._response = response
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                if response.status_code != 200:
                    self.body = response.read()
                    return
                self._read(response)
        except Exception as exc:  # noqa: BLE001 - the test closed the stream, or the server left
            self.error = exc
        finally:
            self._opened.set()
            self.closed.set()

    def _read(self, response: httpx.Response) -> None:
        data: list[str] = []
        event_type = ""
        for line in response.iter_lines():
            if line == "":
                # The first block gives the client its position: from then on, nothing it is
                # entitled to is missed.
                self._opened.set()
                if data:
                    self.events.put(
                        SseEvent(event_type or "message", json.loads("\n".join(data)), self.last_id)
                    )
                data, event_type = [], ""
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event_type = value
            elif name == "id":
                self.last_id = value
            elif name == "retry":
                self.retry = int(value)

    def json(self) -> dict[str, Any]:
        """The body of a refused stream."""
        body: dict[str, Any] = json.loads(self.body)
        return body

    def collect(self, *wanted: Callable[[SseEvent], bool], timeout: float = 5.0) -> list[SseEvent]:
        """Every event until each of the `wanted` predicates has matched one of them."""
        deadline = time.monotonic() + timeout
        seen: list[SseEvent] = []
        while not all(any(test(event) for event in seen) for test in wanted):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not every wanted event came in {timeout} s; got {seen}")
            with contextlib.suppress(queue.Empty):
                seen.append(self.events.get(timeout=remaining))
        return seen

    def next(self, timeout: float = 5.0) -> SseEvent:
        """The next event; fail after `timeout` seconds."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None

    def until(self, predicate: Callable[[SseEvent], bool], timeout: float = 5.0) -> list[SseEvent]:
        """Every event up to and including the first matching `predicate`."""
        deadline = time.monotonic() + timeout
        seen: list[SseEvent] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching event in {timeout} s; got {seen}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append(event)
            if predicate(event):
                return seen

    def drain(self, wait: float = 0.3) -> list[SseEvent]:
        """The events that arrive within `wait` seconds."""
        out: list[SseEvent] = []
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                out.append(self.events.get(timeout=remaining))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        """Disconnect, as a browser tab that goes away."""
        if self._response is not None:
            # Shut the socket down: closing it alone would not wake the reading thread.
            sock = self._response.extensions["network_stream"].get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.closed.wait(5)
        self._http.close()
