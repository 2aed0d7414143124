"""Login throttling: failures per username and per address, kept in the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from cityops.auth.models import AuditLog, LoginAttempt
from cityops.core.clock import FrozenClock
from cityops.core.runtime import Runtime

from .helpers import API, PASSWORD, assert_problem

WRONG = "Wrong-pass-123"


def _login(client: TestClient, username: str, password: str) -> int:
    response = client.post(f"{API}/auth/token", data={"username": username, "password": password})
    return response.status_code


def test_sixth_attempt_after_five_failures_is_429_until_the_window_passes(
    client: TestClient,
    make_user: Callable[..., str],
    clock: FrozenClock,
    runtime: Runtime,
) -> None:
    username = make_user("viewer")
    assert runtime.settings.login_max_failures == 5
    assert [_login(client, username, WRONG) for _ in range(5)] == [401] * 5
    clock.advance(timedelta(minutes=1))
    response = client.post(f"{API}/auth/token", data={"username": username, "password": PASSWORD})
    body = assert_problem(response, 429)
    retry_after = int(response.headers["retry-after"])
    assert retry_after == (runtime.settings.login_window_minutes - 1) * 60
    assert "14 phút" in body["detail"]
    english = client.post(
        f"{API}/auth/login",
        json={"username": username, "password": PASSWORD},
        headers={"Accept-Language": "en"},
    )
    assert "Try again in 14 minute(s)" in assert_problem(english, 429)["detail"]
    clock.advance(timedelta(seconds=retry_after - 1))
    assert _login(client, username, PASSWORD) == 429
    clock.advance(timedelta(seconds=1))
    assert _login(client, username, PASSWORD) == 200


def test_failures_are_counted_per_address_across_usernames(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("viewer")
    for i in range(5):
        assert _login(client, f"guess-{i}", WRONG) == 401
    assert _login(client, username, PASSWORD) == 429


def test_a_success_resets_the_username_count(
    client: TestClient, make_user: Callable[..., str], clock: FrozenClock
) -> None:
    username = make_user("viewer")
    for _ in range(4):
        assert _login(client, username, WRONG) == 401
    clock.advance(timedelta(seconds=1))
    assert _login(client, username, PASSWORD) == 200
    clock.advance(timedelta(seconds=1))
    # Failures before the success no longer count for the account (the address limit still holds).
    assert _login(client, username, WRONG) == 401
    assert _login(client, username, PASSWORD) == 429


def test_attempts_are_kept_in_the_database_and_throttled_tries_audited(
    client: TestClient, make_user: Callable[..., str], count: Callable[..., int]
) -> None:
    username = make_user("viewer")
    for _ in range(6):
        _login(client, username, WRONG)
    assert count(LoginAttempt, succeeded=False) == 5
    assert count(AuditLog, action="login_failed") == 6


def test_old_attempts_are_pruned(
    client: TestClient,
    make_user: Callable[..., str],
    clock: FrozenClock,
    count: Callable[..., int],
) -> None:
    for i in range(3):
        _login(client, f"ghost-{i}", WRONG)
    clock.advance(timedelta(hours=1))
    _login(client, "ghost-x", WRONG)
    assert count(LoginAttempt) == 1
