"""Route lookup without the linear scan: a path-prefix guard on every included router.

FastAPI (0.165) finds a request's route by asking every included router in turn, and each one
tries the regular expression of every route it holds, twice per request (once to find the
router, once to pick the route), after re-checking its routes' version. With the app's 240
routes that cost about 0.7 ms of CPU per request before any work, on every request: a fifth of
an Open311 report's whole cost. Most of those routers cannot match at all: every path a router
serves starts with a fixed text (its prefix and the route's text up to the first `{`).

`guard_routes(app)` gives each top-level included router a `matches` that first checks that
fixed text (`str.startswith` with a tuple, in C) and answers "no match" at once when the path
cannot be one of the router's. Otherwise it asks the router as before: the guard only ever
skips a router whose every route would have said no, so which route serves a path (order,
partial matches for 405, trailing-slash redirects) is unchanged. A router holding a route
whose path is not known (nothing FastAPI builds today) keeps its unguarded `matches`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

_Matches = Callable[[Scope], tuple[Match, Scope]]


def fixed_prefix(path_format: str) -> str:
    """Return the text every matching path starts with: the format up to its first `{`."""
    brace = path_format.find("{")
    return path_format if brace < 0 else path_format[:brace]


def _route_paths(router: Any, prefix: str) -> list[str] | None:
    """Every path format an included router serves, or None when one is not known.

    Read from the routes as declared (the inclusion's prefix + each route's path), not from
    FastAPI's effective route contexts: building those solves every route's dependencies and
    parameter models (0.8 s for this app), which FastAPI otherwise does only when a request
    first reaches that router, and which the guard then spares the routers a request skips.
    """
    paths: list[str] = []
    for route in getattr(router, "routes", None) or []:
        context = getattr(route, "include_context", None)
        if context is not None:
            nested = _route_paths(route.original_router, prefix + context.prefix)
            if nested is None:
                return None
            paths += nested
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return None
        paths.append(prefix + path)
    return paths


def router_prefixes(route: Any) -> tuple[str, ...] | None:
    """Return the fixed prefixes of every path an included router serves (shortest set), or
    None when one of its routes has no known path (then it cannot be guarded)."""
    context = getattr(route, "include_context", None)
    original = getattr(route, "original_router", None)
    if context is None or original is None:
        return None
    paths = _route_paths(original, context.prefix)
    if paths is None or not all(path.startswith("/") for path in paths):
        return None
    prefixes = {fixed_prefix(path) for path in paths}
    # "/a" covers "/a/b": keep the shortest, so the tuple stays short.
    kept = sorted(prefixes)
    minimal = [p for i, p in enumerate(kept) if not any(p.startswith(q) for q in kept[:i])]
    return tuple(minimal)


def _guarded(matches: _Matches, prefixes: tuple[str, ...]) -> _Matches:
    def guarded(scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http" and not get_route_path(scope).startswith(prefixes):
            return Match.NONE, {}
        return matches(scope)

    return guarded


def guard_routes(app: FastAPI) -> int:
    """Put the prefix guard on the app's top-level included routers; return how many."""
    guarded = 0
    for route in app.router.routes:
        prefixes = router_prefixes(route)
        if not prefixes:
            continue
        # An attribute of this one router object: FastAPI's own checks (isinstance, OpenAPI,
        # url_path_for, the low-priority routes) see the same object as before.
        route.matches = _guarded(route.matches, prefixes)  # type: ignore[method-assign,assignment]
        guarded += 1
    return guarded
