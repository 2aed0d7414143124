"""The route guard: every path reaches the same route as without it."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Match

from cityops.core.routing import fixed_prefix, router_prefixes

_PARAM = re.compile(r"{([^}:]+)(?::([^}]+))?}")


def _sample(path_format: str) -> str:
    def value(match: re.Match[str]) -> str:
        convertor = match.group(2)
        return {"int": "7", "float": "1.5", "path": "a/b"}.get(convertor or "", "x-1")

    return _PARAM.sub(value, path_format)


def _paths(app: FastAPI) -> set[str]:
    paths: set[str] = {"/", "/nowhere", "/api/v1/nowhere", "/open311", "/ngsi-ld/v1/x"}
    for route in app.router.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for context in contexts() if contexts else []:
            path = context.path_format or context.starlette_route.path_format
            sample = _sample(path)
            paths |= {sample, sample + "/", sample.rstrip("/") or "/", sample + "x"}
    return paths


def _scope(path: str, method: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def test_guard_changes_no_match(app: FastAPI) -> None:
    guarded = [r for r in app.router.routes if "matches" in vars(r)]
    # Every included router of the app is guarded (the mounts of static files are not).
    assert len(guarded) >= 20
    paths = _paths(app)
    assert len(paths) > 400
    for route in guarded:
        for path in paths:
            for method in ("GET", "POST", "DELETE"):
                scope = _scope(path, method)
                want = type(route).matches(route, dict(scope))[0]
                got = route.matches(dict(scope))[0]
                assert got == want, (path, method, router_prefixes(route))
                if want != Match.NONE:
                    assert path.startswith(router_prefixes(route) or ("",))


def test_fixed_prefix() -> None:
    assert fixed_prefix("/api/v1/incidents/{incident_id:int}/comments") == "/api/v1/incidents/"
    assert fixed_prefix("/open311/v2/services.json") == "/open311/v2/services.json"
    assert fixed_prefix("/{path:path}") == "/"


def test_requests_still_routed(app: FastAPI, client: TestClient) -> None:
    # A route, a 405 (path known, method not), a 404, an Open311 and an NGSI-LD route.
    assert client.get("/healthz").status_code == 200
    assert client.get("/open311/v2/services.json").status_code == 200
    assert client.delete("/healthz").status_code == 405
    assert client.get("/api/v1/no-such-thing").status_code == 404
    assert client.get("/ngsi-ld/v1/entities?type=AirQualityObserved").status_code in (200, 401)
    # A path served under a root path (behind a proxy's prefix) is still found.
    behind_proxy = TestClient(app, root_path="/city")
    assert behind_proxy.get("/city/healthz").status_code == 200
    assert behind_proxy.get("/city/open311/v2/services.json").status_code == 200


def test_prefixes_read_from_declared_routes_match_fastapis_own(app: FastAPI) -> None:
    # The guard reads the routes as declared (cheap); FastAPI's effective contexts (built by
    # solving every dependency) must give the same paths.
    for route in app.router.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            continue
        effective = {
            fixed_prefix(c.path_format or c.starlette_route.path_format) for c in contexts()
        }
        prefixes = router_prefixes(route)
        assert prefixes
        assert all(any(p.startswith(q) for q in prefixes) for p in effective)
        assert all(any(p.startswith(q) for p in effective) for q in prefixes)
