"""The durable outbox: delivered at least once, in order per owner, retried with backoff."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from cityops.core import outbox
from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime

from ..receiver import Receiver


def _queue(runtime: Runtime, target: str, body: str, owner: str = "sub:1") -> None:
    with unit_of_work(runtime.session_factory) as session:
        outbox.enqueue(
            session=session,
            now=runtime.clock.now(),
            channel="http",
            owner=owner,
            source="test",
            target=target,
            payload=body,
        )


def _messages(runtime: Runtime) -> list[outbox.OutboxMessage]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(outbox.OutboxMessage).order_by("id")).all())


def test_messages_of_one_owner_arrive_in_order(runtime: Runtime, http_receiver: Receiver) -> None:
    for n in range(5):
        _queue(runtime, f"{http_receiver.url}/hook", f'{{"n": {n}}}')
    assert runtime.outbox is not None
    assert runtime.outbox.drain() == 5
    received = http_receiver.wait_for(5)
    assert [r.json()["n"] for r in received] == [0, 1, 2, 3, 4]
    assert received[0].headers["Content-Type"] == "application/json"
    assert all(m.status == outbox.DELIVERED and m.attempts == 1 for m in _messages(runtime))


def test_many_messages_are_queued_in_one_statement_and_keep_their_order(
    runtime: Runtime, http_receiver: Receiver
) -> None:
    with unit_of_work(runtime.session_factory) as session:
        queued = outbox.enqueue_many(
            session=session,
            now=runtime.clock.now(),
            messages=[
                outbox.Outgoing(
                    channel="http",
                    owner="fan-out",
                    source="test",
                    source_ref="ref",
                    target=f"{http_receiver.url}/hook",
                    payload=f'{{"n": {n}}}'.encode(),
                    headers={"X-N": str(n)},
                )
                for n in range(3)
            ],
        )
        assert outbox.enqueue_many(session=session, now=runtime.clock.now(), messages=[]) == 0
    assert queued == 3
    assert runtime.outbox is not None
    assert runtime.outbox.drain() == 3
    received = http_receiver.wait_for(3)
    assert [(r.json()["n"], r.headers["X-N"]) for r in received] == [(0, "0"), (1, "1"), (2, "2")]
    assert {m.source_ref for m in _messages(runtime)} == {"ref"}


def test_rolled_back_transaction_sends_nothing(runtime: Runtime, http_receiver: Receiver) -> None:
    session = runtime.session_factory()
    outbox.enqueue(
        session=session,
        now=runtime.clock.now(),
        channel="http",
        owner="x",
        source="test",
        target=http_receiver.url,
        payload="{}",
    )
    session.rollback()
    session.close()
    assert runtime.outbox is not None
    assert runtime.outbox.drain() == 0
    assert _messages(runtime) == []


def test_a_receiver_that_is_down_gets_the_message_when_it_is_back(
    runtime: Runtime, http_receiver: Receiver, clock: FrozenClock
) -> None:
    http_receiver.stop()
    _queue(runtime, f"{http_receiver.url}/hook", '{"n": 1}')
    _queue(runtime, f"{http_receiver.url}/hook", '{"n": 2}')
    assert runtime.outbox is not None
    assert runtime.outbox.run_once() == 0
    first, second = _messages(runtime)
    assert first.status == outbox.PENDING
    assert first.attempts == 1
    assert first.last_error
    assert second.attempts == 0  # waits behind the first, to keep the order
    # Not due yet: the backoff holds it back.
    assert runtime.outbox.run_once() == 0
    http_receiver.start()
    clock.advance(timedelta(minutes=1))
    assert runtime.outbox.drain() == 2
    assert [r.json()["n"] for r in http_receiver.wait_for(2)] == [1, 2]


def test_a_later_message_does_not_overtake_one_waiting_for_its_retry(
    runtime: Runtime, http_receiver: Receiver, clock: FrozenClock
) -> None:
    http_receiver.stop()
    _queue(runtime, f"{http_receiver.url}/hook", '{"n": 1}')
    assert runtime.outbox is not None
    assert runtime.outbox.run_once() == 0
    # The receiver is back and a second message is due at once; the first is still in backoff.
    http_receiver.start()
    _queue(runtime, f"{http_receiver.url}/hook", '{"n": 2}')
    assert runtime.outbox.run_once() == 0
    assert http_receiver.requests == []
    clock.advance(timedelta(minutes=1))
    assert runtime.outbox.drain() == 2
    assert [r.json()["n"] for r in http_receiver.wait_for(2)] == [1, 2]


def test_a_server_error_is_retried_and_a_client_error_is_final(
    runtime: Runtime, http_receiver: Receiver, clock: FrozenClock
) -> None:
    http_receiver.status = 503
    _queue(runtime, http_receiver.url, "{}", owner="a")
    assert runtime.outbox is not None
    runtime.outbox.run_once()
    (message,) = _messages(runtime)
    assert message.status == outbox.PENDING
    assert message.last_status == 503
    http_receiver.status = 410
    clock.advance(timedelta(minutes=1))
    runtime.outbox.run_once()
    (message,) = _messages(runtime)
    assert message.status == outbox.FAILED
    assert message.last_status == 410
    assert message.attempts == 2


def test_only_one_worker_holds_an_owner(runtime: Runtime, http_receiver: Receiver) -> None:
    _queue(runtime, http_receiver.url, "{}", owner="sub:42")
    assert runtime.outbox is not None
    other = outbox.Dispatcher(session_factory=runtime.session_factory, clock=runtime.clock)
    other.register_sender("http", outbox.http_sender())
    # The first worker takes the lease (and delivers); the second may not take the owner.
    runtime.outbox.lease_seconds = 30
    assert runtime.outbox.run_once() == 1
    _queue(runtime, http_receiver.url, "{}", owner="sub:42")
    assert other.run_once() == 0
    assert runtime.outbox.run_once() == 1


def test_backoff_grows_and_is_capped() -> None:
    delays = [outbox.backoff(n).total_seconds() for n in range(1, 15)]
    assert delays[0] <= 2.0
    assert delays[3] > delays[0]
    assert max(delays) <= 600.0
