"""Prometheus metrics and the request middleware (request id, language, timing)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Paths served to programs rather than people: their language follows Accept-Language.
MACHINE_PREFIXES = ("/api/", "/ngsi-ld/", "/open311/", "/healthz", "/readyz", "/metrics")


class Metrics:
    """The metrics of one application instance, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cityops_http_requests_total",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cityops_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The path template that served a request (`/api/v1/units/{code}`): few label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not path:
        return "<unmatched>"
    # FastAPI keeps an included router's prefix on the inclusion, not on its routes.
    included = (scope.get("fastapi") or {}).get("included_router")
    prefix = getattr(getattr(included, "include_context", None), "prefix", "") or ""
    return f"{prefix}{path}"


# Distinct label values kept per cache below: route templates and statuses are few, but a
# client could vary the method; past this the caches start over rather than grow.
_MAX_CACHED = 4096


class RequestContextMiddleware:
    """Give each request an id and a language, and count and time it by route template.

    This runs on every request, so it reads only the three headers it needs (no dict of them
    all), parses the query string and the cookie header only when they can hold a language
    choice, and keeps the labelled Prometheus children per (method, route, status): the
    `labels(...)` lookup (a lock and a tuple key) would otherwise run twice per request.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, negotiate: Callable[..., str]) -> None:
        self.app = app
        self.metrics = metrics
        self.negotiate = negotiate
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}
        self._languages: dict[tuple[str | None, str | None, str | None], str] = {}

    def _language(self, query_lang: str | None, cookie_lang: str | None, accept: str | None) -> str:
        # Accept-Language values repeat (a client sends the same one each time): negotiate once.
        key = (query_lang, cookie_lang, accept)
        lang = self._languages.get(key)
        if lang is None:
            lang = self.negotiate(query_lang, cookie_lang, accept)
            if len(self._languages) >= _MAX_CACHED:
                self._languages.clear()
            self._languages[key] = lang
        return lang

    def _count(self, method: str, template: str, status: int, seconds: float) -> None:
        counter = self._counters.get((method, template, status))
        if counter is None:
            if len(self._counters) >= _MAX_CACHED:
                self._counters.clear()
            counter = self.metrics.requests.labels(method, template, str(status))
            self._counters[(method, template, status)] = counter
        counter.inc()
        histogram = self._histograms.get((method, template))
        if histogram is None:
            if len(self._histograms) >= _MAX_CACHED:
                self._histograms.clear()
            histogram = self.metrics.latency.labels(method, template)
            self._histograms[(method, template)] = histogram
        histogram.observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        cookie = accept = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value[:64].decode("latin-1")
            elif name == b"accept-language":
                accept = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
        request_id = request_id or uuid.uuid4().hex
        query_string: bytes = scope.get("query_string", b"")
        query_lang: str | None = None
        # `lang` may come percent-encoded (`l%61ng`): parse whenever it could be there.
        if b"lang" in query_string or b"%" in query_string:
            chosen = parse_qs(query_string.decode("latin-1")).get("lang")
            query_lang = chosen[0] if chosen else None
        cookie_lang = None
        if cookie is not None and "cityops_lang" in cookie:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(cookie)
            except Exception:  # noqa: BLE001 - a malformed cookie header is ignored, not fatal
                jar = SimpleCookie()
            if "cityops_lang" in jar:
                cookie_lang = jar["cityops_lang"].value
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        # Machine clients say what they read with Accept-Language; people on the web pages get
        # the deployment's language (Vietnamese) until they pick another with the switch, since
        # many browsers here run with an English locale.
        path = scope.get("path", "")
        if not path.startswith(MACHINE_PREFIXES):
            accept = None
        lang = self._language(query_lang, cookie_lang, accept)
        state["lang"] = lang
        extra = [
            (b"x-request-id", request_id.encode("latin-1")),
            (b"content-language", lang.encode("latin-1")),
        ]
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._count(
                scope.get("method", "GET"),
                route_template(scope),
                status,
                time.perf_counter() - started,
            )
