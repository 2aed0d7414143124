"""What goes on the wire for each channel: e-mail messages, gateway bodies, signed webhooks.

Everything here is built when a notification is queued, so the outbox row holds exactly what
will be sent; the senders only transmit.

Webhook signatures
------------------
Every webhook request carries

    X-CityOps-Event: incidents.incident_created
    X-CityOps-Timestamp: 1795143600                  (Unix seconds when the message was queued)
    X-CityOps-Signature: sha256=<hex>
    X-CityOps-Message-Id: 1234                       (the outbox id; the same on every retry)

where `<hex>` is HMAC-SHA256, keyed with the webhook's secret, of the bytes
`<timestamp>.<raw body>`. A receiver verifies it like this (Python):

    expected = hmac.new(secret.encode(), f"{ts}.".encode() + raw_body, "sha256").hexdigest()
    ok = hmac.compare_digest(f"sha256={expected}", request.headers["X-CityOps-Signature"])

It must use the raw bytes received (not re-serialised JSON). A retried message is the same
message: same body, timestamp and signature, so a receiver de-duplicates by the body's `id` (or
the message id) and should not refuse old timestamps more strictly than the retry horizon (a few
hours at most with the outbox's backoff).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.policy import compat32
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cityops.core.config import Settings
from cityops.core.outbox import Delivery, Parcel, Sender, http_sender

SMS_MAX = 160
ZALO_MAX = 2000
_PLACEHOLDER = re.compile(r"\{(phone|phone_national|zalo_user_id|message)\}")


# --- e-mail ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailDraft:
    """An e-mail written once for every recipient of a notice; `to` addresses a copy."""

    head: bytes  # the common header lines, CRLF-terminated
    body: bytes  # the blank line and the encoded body
    domain: str  # of the sender, for Message-IDs

    def to(self, address: str, name: str | None) -> bytes:
        """Return the complete message for one recipient (its own To and Message-ID)."""
        to = formataddr((name or "", address), charset="utf-8")
        message_id = make_msgid(domain=self.domain)
        return b"".join(
            [self.head, f"To: {to}\r\nMessage-ID: {message_id}\r\n".encode("ascii"), self.body]
        )


def draft_email(
    *, settings: Settings, subject: str, body: str, language: str, at: datetime
) -> EmailDraft:
    """Write an RFC 5322 message (UTF-8 subject and body, diacritics intact) but its addressee.

    Rendering a message is the costly part of routing (tens of recipients per event): it is
    done once per wording, and each recipient's copy only adds its own two header lines.
    """
    # The legacy API on purpose: its Header encodes the subject as whole encoded words, where
    # Python 3.11's folding of long non-ASCII headers drops the space at a fold ("đượcchuyển").
    utf8 = Charset("utf-8")
    # Quoted-printable keeps the message 7-bit clean for any relay, Vietnamese text included.
    utf8.body_encoding = QP
    message: Message[str, str | Header] = Message()
    message.set_payload(body, utf8)  # text/plain; charset="utf-8", quoted-printable
    sender_name, sender_address = parseaddr(settings.smtp_from)
    message["From"] = formataddr((sender_name, sender_address), charset="utf-8")
    message["Subject"] = Header(subject, "utf-8")
    message["Date"] = format_datetime(at)
    message["Content-Language"] = language
    # RFC 3834: an automatic message; auto-responders should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    raw = message.as_bytes(policy=compat32.clone(linesep="\r\n"))
    head, _, rest = raw.partition(b"\r\n\r\n")
    return EmailDraft(
        head=head + b"\r\n",
        body=b"\r\n" + rest,
        domain=sender_address.rpartition("@")[2] or "cityops.local",
    )


# --- SMS and Zalo gateways -------------------------------------------------------------------


def unaccent(text: str) -> str:
    """Strip Vietnamese diacritics, keeping case (Đồng Nai → Dong Nai)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize(
        "NFC", "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    )


def render_gateway(template: str, values: dict[str, str]) -> bytes:
    """Fill a gateway body template; each value is JSON-escaped (the template holds the quotes)."""

    def fill(match: re.Match[str]) -> str:
        return json.dumps(values.get(match.group(1), ""), ensure_ascii=False)[1:-1]

    # One pass, so a value that looks like a placeholder is never filled in again.
    return _PLACEHOLDER.sub(fill, template).encode("utf-8")


def gateway_sender(headers: dict[str, str], timeout: float) -> Sender:
    """A sender POSTing to a gateway, adding its credentials at send time.

    The headers (an API key) come from the settings when the message is sent, so they are never
    written to the outbox and a rotated key applies to messages already queued.
    """
    post = http_sender(timeout)

    def send(parcel: Parcel) -> Delivery:
        return post(replace(parcel, headers={**parcel.headers, **headers}))

    return send


# --- webhooks --------------------------------------------------------------------------------


def webhook_body(*, event_type: str, at: datetime, data: dict[str, Any], event_id: str) -> bytes:
    """Return the JSON body of a webhook request: {"id", "type", "at", "data"}."""
    document = {"id": event_id, "type": event_type, "at": at.isoformat(), "data": data}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def sign(*, secret: str, timestamp: str, body: bytes) -> str:
    """Return the X-CityOps-Signature value of a body: sha256=<hex HMAC of 'ts.body'>."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(*, secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Tell whether a signature header matches a body (what a receiver does)."""
    return hmac.compare_digest(sign(secret=secret, timestamp=timestamp, body=body), signature)


def webhook_headers(*, secret: str, event_type: str, at: datetime, body: bytes) -> dict[str, str]:
    """Return the headers of a signed webhook request."""
    timestamp = str(int(at.timestamp()))
    return {
        "X-CityOps-Event": event_type,
        "X-CityOps-Timestamp": timestamp,
        "X-CityOps-Signature": sign(secret=secret, timestamp=timestamp, body=body),
    }


def new_event_id() -> str:
    """Return an id for one event as webhooks see it (the same for every endpoint)."""
    return uuid.uuid4().hex


# --- the delivery log ------------------------------------------------------------------------


def redact_target(target: str) -> str:
    """Return a target fit to show: an address as is, a URL without credentials or query."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
