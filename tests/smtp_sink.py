"""A real SMTP server on a local port (aiosmtpd, in a thread) that records what it receives.

`refuse` holds addresses answered with 550 (an unknown mailbox), to play a final refusal.
"""

from __future__ import annotations

import email
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Mail:
    """One message the sink accepted: its envelope and its raw bytes."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        """The message parsed (headers decoded: Vietnamese subjects come back as written)."""
        parsed = email.message_from_bytes(self.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def text(self) -> str:
        """The decoded text body."""
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.refuse: set[str] = set()
        self._lock = threading.Condition()
        self._controller: Controller | None = None
        self.port = 0

    def start(self) -> None:
        """Listen on a free port (on the same port as before after a stop)."""
        if not self.port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = int(sock.getsockname()[1])
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def accept(self, mail: Mail) -> None:
        """Record a message (called by the server thread)."""
        with self._lock:
            self.mails.append(mail)
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Mail]:
        """Wait until `count` messages arrived; return them (fails the test on timeout)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.mails) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} mails, got {len(self.mails)}")
                self._lock.wait(left)
            return list(self.mails)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if address in self.sink.refuse:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, _server: Any, _session: Any, envelope: Any
    ) -> str:
        self.sink.accept(Mail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"
