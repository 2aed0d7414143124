"""What every request gets from the shared middleware and dependencies, after the per-request
floor work: metrics by route template and status, request ids, languages, API-key callers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from cityops.auth.models import ApiKey
from cityops.core.clock import FrozenClock
from cityops.core.runtime import Runtime

API = "/api/v1"


def _sample(client: TestClient, name: str, **labels: str) -> float:
    """The value of one Prometheus sample from /metrics (0 when absent)."""
    wanted = name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_requests_are_counted_per_route_template_and_status_every_time(
    client: TestClient,
) -> None:
    total = "cityops_http_requests_total"
    route = "/api/v1/units/{code}"
    for code in ("26041", "25195", "26041"):
        assert client.get(f"{API}/units/{code}").status_code == 200
    assert client.get(f"{API}/units/99999").status_code == 404
    assert client.get(f"{API}/units/99998").status_code == 404
    assert _sample(client, total, method="GET", route=route, status="200") == 3
    assert _sample(client, total, method="GET", route=route, status="404") == 2
    timed = "cityops_http_request_duration_seconds_count"
    assert _sample(client, timed, method="GET", route=route) == 5
    client.get(f"{API}/units/26041")
    assert _sample(client, total, method="GET", route=route, status="200") == 4


def test_a_request_id_sent_is_echoed_cut_to_64_characters(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "r" * 80})
    assert response.headers["x-request-id"] == "r" * 64
    fresh = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(fresh) == 3


def test_language_choice_is_per_request_whatever_came_before(client: TestClient) -> None:
    missing = f"{API}/khong-co"
    english = {"Accept-Language": "en-US,en;q=0.9"}
    for _ in range(2):
        assert client.get(missing, headers=english).json()["title"] == "Not found"
        assert client.get(missing).json()["title"] == "Không tìm thấy"
    assert client.get(f"{missing}?lang=en").headers["content-language"] == "en"
    assert client.get(f"{missing}?l%61ng=en").headers["content-language"] == "en"
    assert client.get(f"{missing}?slang=en").headers["content-language"] == "vi"
    cookie = {"Cookie": "theme=dark; cityops_lang=en"}
    assert client.get(missing, headers=cookie).headers["content-language"] == "en"
    bad_cookie = {"Cookie": 'cityops_lang="en; x=\\'}
    assert client.get(missing, headers=bad_cookie).status_code == 404
    # Web pages follow the switch (cookie or query), not the browser's Accept-Language.
    assert client.get("/login", headers=english).headers["content-language"] == "vi"


def _key(client: TestClient, admin: dict[str, str]) -> dict[str, str]:
    response = client.post(
        f"{API}/api-keys",
        json={"name": "gateway", "permissions": ["user:read"]},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return {"id": str(response.json()["id"]), "key": response.json()["key"]}


def test_a_cached_api_key_still_records_its_use_every_minute(
    client: TestClient,
    login_as: Callable[..., dict[str, str]],
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    key = _key(client, login_as("admin"))
    for header in ({"X-API-Key": key["key"]}, {"Authorization": f"ApiKey {key['key']}"}):
        assert client.get(f"{API}/users", headers=header).status_code == 200
    clock.advance(timedelta(minutes=5))
    assert client.get(f"{API}/users", headers={"X-API-Key": key["key"]}).status_code == 200
    with runtime.session_factory() as session:
        used = session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == int(key["id"])))
    assert used == clock.now()


def test_a_cached_api_key_is_refused_once_it_expires(
    client: TestClient, login_as: Callable[..., dict[str, str]], clock: FrozenClock
) -> None:
    response = client.post(
        f"{API}/api-keys",
        json={
            "name": "short",
            "permissions": ["user:read"],
            "expires_at": (clock.now() + timedelta(minutes=10)).isoformat(),
        },
        headers=login_as("admin"),
    )
    assert response.status_code == 201, response.text
    headers = {"X-API-Key": response.json()["key"]}
    for _ in range(3):
        assert client.get(f"{API}/users", headers=headers).status_code == 200
    clock.advance(timedelta(minutes=11))
    refused = client.get(f"{API}/users", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_a_bearer_caller_without_the_permission_is_refused(
    client: TestClient, login_as: Callable[..., dict[str, str]]
) -> None:
    viewer = login_as("viewer")
    assert client.get(f"{API}/users", headers=viewer).status_code == 403
    assert client.get(f"{API}/users").status_code == 401
    assert client.get(f"{API}/users", headers=login_as("admin")).status_code == 200


def test_every_request_returns_its_database_connection(
    client: TestClient, login_as: Callable[..., dict[str, str]], runtime: Runtime
) -> None:
    admin = login_as("admin")
    key = {"X-API-Key": _key(client, admin)["key"]}
    for _ in range(2):
        assert client.get(f"{API}/users", headers=key).status_code == 200  # cached caller
        assert client.get(f"{API}/units?limit=1").status_code == 200  # reads
        assert client.get(f"{API}/users/999999", headers=admin).status_code == 404  # fails
        assert client.get("/open311/v2/services.json").status_code == 200
    assert runtime.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
