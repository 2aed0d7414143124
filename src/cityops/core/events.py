"""The in-process event bus: typed events, published after their transaction commits."""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


# Correlation ids: a random per-process prefix and a counter, 32 hex digits like a uuid4's hex
# but without reading the OS's random source for each of a batch's hundreds of events.
_ids: list[Any] = []


def _new_id_source() -> None:
    # A forked worker draws its own prefix: it must not repeat its parent's ids.
    _ids[:] = [os.urandom(8).hex(), itertools.count(random.SystemRandom().randrange(1 << 32))]


_new_id_source()
os.register_at_fork(after_in_child=_new_id_source)


def new_correlation_id() -> str:
    """Return a correlation id unique across processes (random prefix, per-process counter)."""
    prefix, counter = _ids
    return f"{prefix}{next(counter) & 0xFFFFFFFFFFFFFFFF:016x}"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: a type name, a payload and a correlation id for tracing."""

    type: str
    data: dict[str, Any]
    at: datetime
    correlation_id: str = field(default_factory=new_correlation_id)
    # True for an event committed by another worker and received through the fan-out
    # (core/fanout.py): delivered to after-commit handlers only, never sent on again.
    remote: bool = False


Handler = Callable[[Event], None]
# A handler that writes inside the publishing transaction (an outbox row, a stream log entry):
# it runs when the event is queued, so its writes commit or roll back with the change itself.
TransactionalHandler = Callable[[Session, Event], None]
# Called once just before a session commits, with the events it will deliver after the commit
# (the fan-out between workers sends them inside the committing transaction).
CommitHook = Callable[[Session, list[Event]], None]


class EventBus:
    """Publish/subscribe inside one process. Handlers must not raise; failures are logged."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._in_transaction: dict[str, list[TransactionalHandler]] = defaultdict(list)
        self._commit_hooks: list[CommitHook] = []

    def subscribe(self, event_type: str, handler: Handler) -> Callable[[], None]:
        """Call `handler` for every event of `event_type` ('*' for all); return an unsubscriber."""
        self._handlers[event_type].append(handler)
        return lambda: self._handlers[event_type].remove(handler)

    def subscribe_in_transaction(
        self, event_type: str, handler: TransactionalHandler
    ) -> Callable[[], None]:
        """Call `handler(session, event)` inside the publishing transaction; return an unsubscriber.

        Use it for work that must be durable together with the change (an outbox row). Unlike
        `subscribe`, an exception here propagates and rolls the whole transaction back.
        """
        self._in_transaction[event_type].append(handler)
        return lambda: self._in_transaction[event_type].remove(handler)

    def before_commit(self, hook: CommitHook) -> Callable[[], None]:
        """Call `hook(session, events)` just before a session that published events commits;
        return an unsubscriber. An exception there rolls the transaction back."""
        self._commit_hooks.append(hook)
        return lambda: self._commit_hooks.remove(hook)

    def publish(self, event: Event) -> None:
        """Deliver an event to its handlers now."""
        self._deliver(event, [*self._handlers.get(event.type, ()), *self._handlers.get("*", ())])

    def _deliver(self, event: Event, handlers: list[Handler]) -> None:
        for handler in handlers:
            try:
                handler(event)
            except Exception:
                log.exception("event handler failed", extra={"event_type": event.type})

    def publish_after_commit(self, session: Session, event: Event) -> None:
        """Deliver an event once the session's transaction commits (never if it rolls back).

        Transactional handlers run now, in the same session, before the commit: the catch-all
        ones (the stream log, the notification outbox) first, so that an event is recorded
        before the events its own handlers cause (an opened alert before the incident it opens).
        """
        pending: list[Event] = session.info.setdefault("pending_events", [])
        pending.append(event)
        for handler in [
            *self._in_transaction.get("*", ()),
            *self._in_transaction.get(event.type, ()),
        ]:
            handler(session, event)
        if not session.info.get("events_hooked"):
            self._hook(session)

    def publish_many_after_commit(self, session: Session, events: list[Event]) -> None:
        """`publish_after_commit` for each event in order (a batch write's changes)."""
        if not events:
            return
        pending: list[Event] = session.info.setdefault("pending_events", [])
        catch_all = self._in_transaction.get("*", ())
        kind: str | None = None
        handlers: list[TransactionalHandler] = []
        for event in events:
            pending.append(event)
            if event.type != kind:
                kind = event.type
                handlers = [*catch_all, *self._in_transaction.get(kind, ())]
            for handler in handlers:
                handler(session, event)
        if not session.info.get("events_hooked"):
            self._hook(session)

    def _hook(self, session: Session) -> None:
        session.info["events_hooked"] = True
        sa_event.listen(session, "before_commit", self._before_commit)
        sa_event.listen(session, "after_commit", self._flush_pending)
        sa_event.listen(session, "after_rollback", _drop_pending)

    def _before_commit(self, session: Session) -> None:
        events: list[Event] | None = session.info.get("pending_events")
        if events:
            for hook in list(self._commit_hooks):
                hook(session, events)

    def _flush_pending(self, session: Session) -> None:
        self.deliver(session.info.pop("pending_events", []))

    def deliver(self, events: list[Event]) -> None:
        """Deliver events to their after-commit handlers now, in order (a committed batch, or
        the events another worker committed, received through core/fanout.py)."""
        # A batch's events are mostly of one type: look its handlers up once per run of a type
        # (the lists are copied, as `publish` does, so a handler may unsubscribe meanwhile).
        kind: str | None = None
        handlers: list[Handler] = []
        for item in events:
            if item.type != kind:
                kind = item.type
                handlers = [*self._handlers.get(kind, ()), *self._handlers.get("*", ())]
            self._deliver(item, handlers)


def _drop_pending(session: Session) -> None:
    session.info.pop("pending_events", None)
