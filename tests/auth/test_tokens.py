"""Bearer tokens: the OAuth2 password flow, expiry, refresh rotation, logout, bad input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from cityops.core.clock import FrozenClock
from cityops.core.runtime import Runtime

from .helpers import API, PASSWORD, assert_problem, bearer


def test_password_login_returns_tokens_that_authorise(
    client: TestClient, make_user: Callable[..., str], runtime: Runtime
) -> None:
    username = make_user("leader")
    response = client.post(f"{API}/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == runtime.settings.access_token_minutes * 60
    assert body["refresh_token"]
    me = client.get(f"{API}/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["name"] == username
    assert me.json()["role"] == "leader"
    assert me.json()["permissions"] == [
        "alert:read",
        "audit:read",
        "context:read",
        "egov:read",
        "incident:read",
        "kpi:read",
        "programme:read",
        "rule:read",
        "user:read",
    ]
    assert me.json()["user"]["username"] == username


def test_json_body_and_case_insensitive_username_are_accepted(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("viewer")
    response = client.post(
        f"{API}/auth/token", json={"username": f"  {username.upper()} ", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text


def test_access_token_carries_the_documented_claims(
    client: TestClient, make_user: Callable[..., str], runtime: Runtime, clock: FrozenClock
) -> None:
    username = make_user("operator")
    token = client.post(
        f"{API}/auth/token", data={"username": username, "password": PASSWORD}
    ).json()["access_token"]
    claims = jwt.decode(
        token, runtime.settings.secret_key, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert set(claims) >= {"sub", "role", "sid", "jti", "iat", "exp"}
    assert claims["role"] == "operator"
    assert claims["iat"] == int(clock.now().timestamp())
    assert claims["exp"] - claims["iat"] == runtime.settings.access_token_minutes * 60


def test_wrong_password_is_a_401_problem_in_vietnamese_by_default(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("viewer")
    response = client.post(
        f"{API}/auth/token", data={"username": username, "password": "Wrong-password-1"}
    )
    body = assert_problem(response, 401)
    assert body["detail"] == "Sai tên đăng nhập hoặc mật khẩu."
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-language"] == "vi"


def test_wrong_password_in_english_on_request(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("viewer")
    response = client.post(
        f"{API}/auth/token",
        data={"username": username, "password": "Wrong-password-1"},
        headers={"Accept-Language": "en-GB,en;q=0.8"},
    )
    body = assert_problem(response, 401)
    assert body["detail"] == "Wrong username or password."
    assert body["title"] == "Authentication required"


def test_unknown_user_and_wrong_password_look_the_same(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    username = make_user("viewer")
    wrong = client.post(f"{API}/auth/token", data={"username": username, "password": "Nope-12345"})
    unknown = client.post(
        f"{API}/auth/token", data={"username": "nobody-here", "password": "Nope-12345"}
    )
    strip = ("instance", "request_id")
    assert {k: v for k, v in wrong.json().items() if k not in strip} == {
        k: v for k, v in unknown.json().items() if k not in strip
    }
    assert wrong.status_code == unknown.status_code == 401


def test_expired_access_token_is_refused(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    clock: FrozenClock,
    runtime: Runtime,
) -> None:
    headers = login_as("viewer")
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 200
    clock.advance(timedelta(minutes=runtime.settings.access_token_minutes, seconds=1))
    body = assert_problem(client.get(f"{API}/auth/me", headers=headers), 401)
    assert "hết hạn" in body["detail"]


def test_refresh_rotates_and_the_old_refresh_token_is_refused(
    client: TestClient,
    make_user: Callable[..., str],
    token_for: Callable[..., dict[str, Any]],
    clock: FrozenClock,
) -> None:
    first = token_for(make_user("viewer"))
    clock.advance(timedelta(minutes=20))  # the access token has expired meanwhile
    assert client.get(f"{API}/auth/me", headers=bearer(first["access_token"])).status_code == 401
    second = client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    tokens = second.json()
    assert tokens["refresh_token"] != first["refresh_token"]
    assert client.get(f"{API}/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    # Refresh also accepts the OAuth2 form shape.
    third = client.post(
        f"{API}/auth/refresh",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert third.status_code == 200, third.text
    reused = client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reused, 401)


def test_reusing_an_old_refresh_token_ends_the_whole_session(
    client: TestClient,
    make_user: Callable[..., str],
    token_for: Callable[..., dict[str, Any]],
) -> None:
    first = token_for(make_user("viewer"))
    rotated = client.post(
        f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]}
    ).json()
    assert client.get(f"{API}/auth/me", headers=bearer(rotated["access_token"])).status_code == 200
    assert_problem(
        client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401
    )
    # The thief's (or the user's) newest tokens are dead too.
    assert_problem(client.get(f"{API}/auth/me", headers=bearer(rotated["access_token"])), 401)
    assert_problem(
        client.post(f"{API}/auth/refresh", json={"refresh_token": rotated["refresh_token"]}), 401
    )


def test_refresh_token_expires_with_its_session(
    client: TestClient,
    make_user: Callable[..., str],
    token_for: Callable[..., dict[str, Any]],
    clock: FrozenClock,
    runtime: Runtime,
) -> None:
    tokens = token_for(make_user("viewer"))
    clock.advance(timedelta(days=runtime.settings.refresh_token_days, seconds=1))
    assert_problem(
        client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
    )


def test_logout_stops_the_access_token_at_once(
    client: TestClient,
    make_user: Callable[..., str],
    token_for: Callable[..., dict[str, Any]],
) -> None:
    tokens = token_for(make_user("viewer"))
    headers = bearer(tokens["access_token"])
    assert client.post(f"{API}/auth/logout", headers=headers).status_code == 204
    body = assert_problem(client.get(f"{API}/auth/me", headers=headers), 401)
    assert "kết thúc" in body["detail"]
    assert_problem(
        client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
    )


def test_deactivated_user_token_stops_working_and_login_is_refused(
    client: TestClient,
    make_user: Callable[..., str],
    login_as: Callable[..., dict[str, str]],
    token_for: Callable[..., dict[str, Any]],
    user_id: Callable[[str], int],
) -> None:
    admin = login_as("admin")
    username = make_user("viewer")
    headers = bearer(token_for(username)["access_token"])
    assert client.delete(f"{API}/users/{user_id(username)}", headers=admin).status_code == 204
    assert_problem(client.get(f"{API}/auth/me", headers=headers), 401)
    refused = client.post(f"{API}/auth/token", data={"username": username, "password": PASSWORD})
    assert assert_problem(refused, 401)["detail"] == "Sai tên đăng nhập hoặc mật khẩu."


def _forged(runtime: Runtime, **claims: Any) -> str:
    return jwt.encode(claims, runtime.settings.secret_key, algorithm="HS256")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer ",
        "Bearer " + "x" * 10_000,
        # alg=none, which must never be accepted
        "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwic2lkIjoieCJ9.",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer\x7f",
    ],
)
def test_malformed_credentials_are_401_never_500(client: TestClient, authorization: str) -> None:
    response = client.get(f"{API}/auth/me", headers={"Authorization": authorization})
    assert_problem(response, 401)


def test_tokens_signed_with_another_key_or_for_unknown_sessions_are_refused(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    now = int(clock.now().timestamp())
    claims = {"sub": "1", "sid": "nope", "iat": now, "exp": now + 600, "role": "admin"}
    other = jwt.encode(claims, "another-secret-key-of-sufficient-length-123", algorithm="HS256")
    assert_problem(client.get(f"{API}/auth/me", headers=bearer(other)), 401)
    assert_problem(client.get(f"{API}/auth/me", headers=bearer(_forged(runtime, **claims))), 401)
    weird = {"sub": "1", "sid": ["x"], "iat": now, "exp": "soon"}
    assert_problem(client.get(f"{API}/auth/me", headers=bearer(_forged(runtime, **weird))), 401)


def test_no_credentials_is_401_with_www_authenticate(client: TestClient) -> None:
    response = client.get(f"{API}/auth/me")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"data": {"username": "someone"}}, "password"),
        ({"json": {"password": "x"}}, "username"),
        ({"json": {"username": "u" * 500, "password": "x"}}, "username"),
        ({"json": {"username": "u", "password": "p" * 5000}}, "password"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "body"),
        ({"content": b"username=a", "headers": {"content-type": "text/plain"}}, "body"),
        ({"json": ["a", "b"]}, "body"),
    ],
)
def test_bad_login_bodies_are_422_naming_the_field(
    client: TestClient, kwargs: dict[str, Any], field: str
) -> None:
    body = assert_problem(client.post(f"{API}/auth/token", **kwargs), 422)
    assert field in [error["field"] for error in body["errors"]]


@pytest.mark.parametrize("refresh_token", ["", "no-dot", ".", "x.y", "a" * 600, "nope.nope.nope"])
def test_bad_refresh_tokens_are_refused(client: TestClient, refresh_token: str) -> None:
    response = client.post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})
    assert response.status_code in (401, 422)
    assert response.headers["content-type"].startswith("application/problem+json")
