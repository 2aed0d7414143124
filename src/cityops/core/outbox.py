"""The durable outbox: messages to the outside world, written in the transaction that causes them.

Whatever must leave CityOps (an NGSI-LD notification, a webhook, an e-mail, an SMS through a
gateway) is first a row of `outbox_message`, inserted in the same transaction as the change that
caused it; so a notification exists exactly when its cause was committed. The dispatcher then
delivers the rows in the background, at least once:

- each message belongs to an *owner key* (a subscription, a channel + recipient); one worker at
  a time holds the lease of a key (`outbox_owner`), so the messages of one owner are delivered
  in order by one process even when several workers run;
- a failed delivery is retried with exponential backoff until `max_attempts`, then marked
  `failed`; every attempt leaves its status code and error on the row (the delivery log);
- a crash between sending and recording means the message is sent again after restart: receivers
  get at-least-once delivery and can use the message id (`X-CityOps-Message-Id`) to de-duplicate.

Senders are plain callables registered per channel (`http` is built in; other channels such as
`mqtt` and `smtp` register themselves); result hooks per source let the owning context update its
own records (an NGSI-LD subscription's `timesSent`, `lastSuccess`, `lastFailure`).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import (
    Index,
    Integer,
    LargeBinary,
    String,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from cityops.core.clock import Clock
from cityops.core.db import Base, JSONType, UTCDateTime, unit_of_work

log = logging.getLogger(__name__)

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
STATUSES = (PENDING, DELIVERED, FAILED)


class OutboxMessage(Base):
    """One message to deliver, and what happened to it so far."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("ix_outbox_message_due", "status", "next_attempt_at"),
        Index("ix_outbox_message_owner", "owner", "status", "id"),
        Index("ix_outbox_message_source", "source", "source_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(64))
    source_ref: Mapped[str | None] = mapped_column(String(300))
    target: Mapped[str] = mapped_column(String(2000))
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    content_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))


class OutboxOwner(Base):
    """The lease on one owner key: which worker delivers its messages, until when."""

    __tablename__ = "outbox_owner"

    owner: Mapped[str] = mapped_column(String(300), primary_key=True)
    worker: Mapped[str] = mapped_column(String(100))
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class Parcel:
    """What a sender is given: a detached copy of one message."""

    id: int
    channel: str
    owner: str
    source: str
    source_ref: str | None
    target: str
    headers: dict[str, str]
    content_type: str
    payload: bytes
    attempts: int  # including this one


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one attempt; `retry=False` gives up at once (refused for good)."""

    ok: bool
    status: int | None = None
    error: str | None = None
    retry: bool = True


Sender = Callable[[Parcel], Delivery]
# Called in the transaction that records an attempt: (session, parcel, delivery, now).
ResultHook = Callable[[Session, Parcel, Delivery, datetime], None]


def enqueue(
    *,
    session: Session,
    now: datetime,
    channel: str,
    owner: str,
    source: str,
    target: str,
    payload: bytes | str,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    source_ref: str | None = None,
    max_attempts: int = 10,
    not_before: datetime | None = None,
) -> None:
    """Queue a message in the caller's transaction (it is sent only if that transaction commits).

    `not_before` holds the message until then, and with it every later message of its owner.
    """
    body = payload.encode() if isinstance(payload, str) else payload
    session.execute(
        insert(OutboxMessage).values(
            channel=channel,
            owner=owner[:300],
            source=source,
            source_ref=source_ref,
            target=target,
            headers=headers or {},
            content_type=content_type,
            payload=body,
            status=PENDING,
            attempts=0,
            max_attempts=max_attempts,
            created_at=now,
            next_attempt_at=not_before or now,
        )
    )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for `enqueue_many`: the arguments `enqueue` takes, as a value."""

    channel: str
    owner: str
    source: str
    target: str
    payload: bytes
    content_type: str = "application/json"
    headers: dict[str, str] | None = None
    source_ref: str | None = None
    max_attempts: int = 10
    not_before: datetime | None = None


def enqueue_many(*, session: Session, now: datetime, messages: Sequence[Outgoing]) -> int:
    """Queue messages in the caller's transaction with one multi-row statement; return how many.

    For fan-out (one event, tens of recipients), where a statement per message would cost more
    than deciding and writing the messages themselves.
    """
    rows = [
        {
            "channel": m.channel,
            "owner": m.owner[:300],
            "source": m.source,
            "source_ref": m.source_ref,
            "target": m.target,
            "headers": m.headers or {},
            "content_type": m.content_type,
            "payload": m.payload,
            "status": PENDING,
            "attempts": 0,
            "max_attempts": m.max_attempts,
            "created_at": now,
            "next_attempt_at": m.not_before or now,
        }
        for m in messages
    ]
    if rows:
        session.execute(insert(OutboxMessage), rows)
    return len(rows)


def get_all(
    *,
    session: Session,
    source: str | None = None,
    source_ref: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[OutboxMessage], int]:
    """The delivery log, newest first, with the total count."""
    conditions = []
    if source is not None:
        conditions.append(OutboxMessage.source == source)
    if source_ref is not None:
        conditions.append(OutboxMessage.source_ref == source_ref)
    if status is not None:
        conditions.append(OutboxMessage.status == status)
    if channel is not None:
        conditions.append(OutboxMessage.channel == channel)
    where = and_(true(), *conditions)
    total = session.scalar(select(func.count()).select_from(OutboxMessage).where(where)) or 0
    rows = session.scalars(
        select(OutboxMessage)
        .where(where)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def retry_now(*, session: Session, message_id: int, now: datetime) -> bool:
    """Put a failed or pending message back at the head of the queue; False if unknown/delivered."""
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status != DELIVERED)
        .values(status=PENDING, next_attempt_at=now, max_attempts=OutboxMessage.attempts + 3)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def backoff(attempts: int, *, base: float = 2.0, cap: float = 600.0) -> timedelta:
    """The wait before the next attempt after `attempts` failures: exponential, capped, jittered."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay * random.uniform(0.8, 1.0))


def http_sender(timeout: float = 5.0) -> Sender:
    """A sender POSTing the payload to the target URL: 2xx succeeds, 4xx (not 408/429) is final."""
    client = httpx.Client(timeout=timeout, follow_redirects=False)

    def send(parcel: Parcel) -> Delivery:
        headers = {
            "Content-Type": parcel.content_type,
            "User-Agent": "CityOps",
            "X-CityOps-Message-Id": str(parcel.id),
            **parcel.headers,
        }
        try:
            response = client.post(parcel.target, content=parcel.payload, headers=headers)
        except httpx.HTTPError as exc:
            return Delivery(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status_code < 300:
            return Delivery(ok=True, status=response.status_code)
        final = 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429)
        return Delivery(
            ok=False,
            status=response.status_code,
            error=f"HTTP {response.status_code}",
            retry=not final,
        )

    return send


@dataclass
class Dispatcher:
    """Delivers due outbox messages; one per process, driven by the job runner or by tests."""

    session_factory: sessionmaker[Session]
    clock: Clock
    lease_seconds: float = 30.0
    batch: int = 200
    worker: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    senders: dict[str, Sender] = field(default_factory=dict)
    hooks: dict[str, list[ResultHook]] = field(default_factory=dict)

    def register_sender(self, channel: str, sender: Sender) -> None:
        """Deliver messages of `channel` with `sender`."""
        self.senders[channel] = sender

    def on_result(self, source: str, hook: ResultHook) -> None:
        """Call `hook` in the transaction recording each attempt for messages of `source`."""
        self.hooks.setdefault(source, []).append(hook)

    def run_once(self) -> int:
        """Deliver what is due now; return the number of messages delivered."""
        owners = self._lease_owners()
        delivered = 0
        for owner in owners:
            delivered += self._deliver_owner(owner)
        return delivered

    def drain(self, rounds: int = 20) -> int:
        """Run until nothing due is left (tests and shutdown); return the messages delivered."""
        total = 0
        for _ in range(rounds):
            sent = self.run_once()
            total += sent
            if not sent:
                break
        return total

    def _lease_owners(self) -> list[str]:
        now = self.clock.now()
        with unit_of_work(self.session_factory) as session:
            keys = session.scalars(
                select(OutboxMessage.owner)
                .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
                .distinct()
                .limit(self.batch)
            ).all()
            owned: list[str] = []
            until = now + timedelta(seconds=self.lease_seconds)
            for key in keys:
                taken = session.execute(
                    update(OutboxOwner)
                    .where(
                        OutboxOwner.owner == key,
                        or_(OutboxOwner.worker == self.worker, OutboxOwner.lease_until < now),
                    )
                    .values(worker=self.worker, lease_until=until)
                )
                if taken.rowcount:  # type: ignore[attr-defined]
                    owned.append(key)
                    continue
                if session.get(OutboxOwner, key) is not None:
                    continue  # another worker holds this owner's lease
                try:
                    with session.begin_nested():
                        session.add(OutboxOwner(owner=key, worker=self.worker, lease_until=until))
                    owned.append(key)
                except IntegrityError:
                    continue  # another worker took it in the meantime
            return owned

    def _deliver_owner(self, owner: str) -> int:
        now = self.clock.now()
        with self.session_factory() as session:
            rows = session.scalars(
                select(OutboxMessage)
                # Every pending message of the owner, due or not: one waiting for its retry
                # (or held by `not_before`) must not be overtaken by a later one.
                .where(OutboxMessage.owner == owner, OutboxMessage.status == PENDING)
                .order_by(OutboxMessage.id)
                .limit(self.batch)
            ).all()
            parcels = [
                Parcel(
                    id=row.id,
                    channel=row.channel,
                    owner=row.owner,
                    source=row.source,
                    source_ref=row.source_ref,
                    target=row.target,
                    headers=dict(row.headers or {}),
                    content_type=row.content_type,
                    payload=bytes(row.payload),
                    attempts=row.attempts + 1,
                )
                for row in rows
            ]
            limits = {row.id: row.max_attempts for row in rows}
            due = {row.id: row.next_attempt_at <= now for row in rows}
        delivered = 0
        for parcel in parcels:
            if not due[parcel.id]:
                break  # keep this owner's order: the rest wait for the earliest one
            sender = self.senders.get(parcel.channel)
            if sender is None:
                result = Delivery(ok=False, error=f"no sender for channel {parcel.channel!r}")
            else:
                try:
                    result = sender(parcel)
                except Exception as exc:  # a sender bug must not stop the others
                    log.exception("outbox sender failed", extra={"channel": parcel.channel})
                    result = Delivery(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
            self._record(parcel, result, limits[parcel.id])
            if not result.ok:
                break  # keep this owner's messages in order: the rest wait for the retry
            delivered += 1
        return delivered

    def _record(self, parcel: Parcel, result: Delivery, max_attempts: int) -> None:
        now = self.clock.now()
        values: dict[str, Any] = {
            "attempts": parcel.attempts,
            "last_attempt_at": now,
            "last_status": result.status,
            "last_error": None if result.ok else (result.error or "failed")[:500],
        }
        if result.ok:
            values.update(status=DELIVERED, delivered_at=now)
        elif not result.retry or parcel.attempts >= max_attempts:
            values.update(status=FAILED)
        else:
            values.update(next_attempt_at=now + backoff(parcel.attempts))
        with unit_of_work(self.session_factory) as session:
            session.execute(
                update(OutboxMessage).where(OutboxMessage.id == parcel.id).values(**values)
            )
            for hook in self.hooks.get(parcel.source, ()):
                hook(session, parcel, result, now)

    def purge(self, *, older_than: timedelta = timedelta(days=7)) -> int:
        """Delete delivered messages older than the retention period; return how many."""
        cutoff = self.clock.now() - older_than
        with unit_of_work(self.session_factory) as session:
            result = session.execute(
                delete(OutboxMessage).where(
                    OutboxMessage.status == DELIVERED, OutboxMessage.delivered_at < cutoff
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
