"""Web sessions: the HttpOnly cookie, CSRF protection, logout and password changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cityops.app import create_app
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.runtime import Runtime

from .helpers import API, PASSWORD, assert_problem, bearer


def _cookie_login(client: TestClient, username: str) -> dict[str, Any]:
    response = client.post(f"{API}/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _set_cookie_headers(response: Any) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k == "set-cookie"]


def test_login_sets_an_httponly_lax_cookie_and_a_readable_csrf_cookie(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("viewer")
    response = client.post(f"{API}/auth/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200
    cookies = _set_cookie_headers(response)
    session_cookie = next(c for c in cookies if c.startswith("cityops_session="))
    csrf_cookie = next(c for c in cookies if c.startswith("cityops_csrf="))
    assert "HttpOnly" in session_cookie
    assert "samesite=lax" in session_cookie.lower()
    assert "Secure" not in session_cookie  # dev settings: plain HTTP allowed
    assert "HttpOnly" not in csrf_cookie
    assert response.json()["csrf_token"] in csrf_cookie
    assert response.json()["user"]["username"] == username
    me = client.get(f"{API}/auth/me")
    assert me.status_code == 200
    assert me.json()["via"] == "cookie"


@pytest.fixture
def secure_client(settings: Settings, clock: FrozenClock) -> Iterator[TestClient]:
    """A client of an app configured for HTTPS-only cookies."""
    app = create_app(settings.model_copy(update={"secure_cookies": True}), clock=clock)
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client
    app.state.runtime.engine.dispose()


def test_cookies_are_secure_when_configured(
    secure_client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("viewer")
    response = secure_client.post(
        f"{API}/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert all("Secure" in c for c in _set_cookie_headers(response))


def test_unsafe_cookie_request_needs_the_csrf_token(
    client: TestClient, make_user: Callable[..., str], user_id: Callable[[str], int]
) -> None:
    target = make_user("viewer")
    csrf = _cookie_login(client, make_user("admin"))["csrf_token"]
    url = f"{API}/users/{user_id(target)}"
    missing = client.patch(url, json={"full_name": "Changed"})
    body = assert_problem(missing, 403)
    assert "CSRF" in body["detail"]
    wrong = client.patch(url, json={"full_name": "Changed"}, headers={"X-CSRF-Token": "nope"})
    assert_problem(wrong, 403)
    assert client.get(url).json()["full_name"] == "Test viewer"  # nothing changed
    ok = client.patch(url, json={"full_name": "Changed"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text
    assert ok.json()["full_name"] == "Changed"


def test_csrf_token_may_come_as_a_form_field(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    csrf = _cookie_login(client, make_user("viewer"))["csrf_token"]
    assert_problem(client.post(f"{API}/auth/logout", data={"x": "1"}), 403)
    response = client.post(f"{API}/auth/logout", data={"csrf_token": csrf})
    assert response.status_code == 204
    assert_problem(client.get(f"{API}/auth/me"), 401)


def test_bearer_requests_need_no_csrf_token(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    make_user: Callable[..., str],
    user_id: Callable[[str], int],
) -> None:
    headers = login_as("admin")
    target = user_id(make_user("viewer"))
    response = client.patch(f"{API}/users/{target}", json={"full_name": "B"}, headers=headers)
    assert response.status_code == 200


def test_cookie_logout_ends_the_session_and_clears_cookies(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    csrf = _cookie_login(client, make_user("viewer"))["csrf_token"]
    cookie = client.cookies.get("cityops_session")
    response = client.post(f"{API}/auth/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert any("cityops_session=" in c and "Max-Age=0" in c for c in _set_cookie_headers(response))
    # Even a client that keeps the old cookie is no longer logged in.
    client.cookies.clear()
    client.cookies.set("cityops_session", cookie or "")
    assert_problem(client.get(f"{API}/auth/me"), 401)


def test_web_session_expires(
    client: TestClient, make_user: Callable[..., str], clock: FrozenClock, runtime: Runtime
) -> None:
    _cookie_login(client, make_user("viewer"))
    clock.advance(timedelta(hours=runtime.settings.web_session_hours, seconds=1))
    assert_problem(client.get(f"{API}/auth/me"), 401)


def test_forged_cookie_is_anonymous(client: TestClient, make_user: Callable[..., str]) -> None:
    _cookie_login(client, make_user("viewer"))
    sid = (client.cookies.get("cityops_session") or "").split(".")[0]
    client.cookies.clear()
    client.cookies.set("cityops_session", f"{sid}.forged-secret")
    assert_problem(client.get(f"{API}/auth/me"), 401)
    client.cookies.clear()
    client.cookies.set("cityops_session", "garbage;;")
    assert_problem(client.get(f"{API}/auth/me"), 401)


def test_change_own_password(
    client: TestClient, make_user: Callable[..., str], token_for: Callable[..., dict[str, Any]]
) -> None:
    username = make_user("viewer")
    other_session = bearer(token_for(username)["access_token"])
    headers = bearer(token_for(username)["access_token"])
    url = f"{API}/auth/me/password"
    wrong = client.post(
        url,
        json={"old_password": "Not-mine-123", "new_password": "Bien-Hoa-2027"},
        headers=headers,
    )
    body = assert_problem(wrong, 422)
    assert body["errors"][0]["field"] == "old_password"
    weak = client.post(
        url, json={"old_password": PASSWORD, "new_password": "short1"}, headers=headers
    )
    assert assert_problem(weak, 422)["errors"][0]["field"] == "new_password"
    ok = client.post(
        url, json={"old_password": PASSWORD, "new_password": "Bien-Hoa-2027"}, headers=headers
    )
    assert ok.status_code == 204
    # This session goes on; the user's other sessions end; only the new password works.
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 200
    assert_problem(client.get(f"{API}/auth/me", headers=other_session), 401)
    old = client.post(f"{API}/auth/token", data={"username": username, "password": PASSWORD})
    assert_problem(old, 401)
    token_for(username, "Bien-Hoa-2027")


def test_api_keys_have_no_password_or_session(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    created = client.post(
        f"{API}/api-keys", json={"name": "sensor gateway"}, headers=login_as("admin")
    ).json()
    key = {"X-API-Key": created["key"]}
    assert_problem(client.post(f"{API}/auth/logout", headers=key), 400)
    response = client.post(
        f"{API}/auth/me/password",
        json={"old_password": "a", "new_password": "Bien-Hoa-2027"},
        headers=key,
    )
    assert_problem(response, 403)
