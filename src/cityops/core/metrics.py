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


class RequestContextMiddleware:
    """Give each request an id and a language, and count and time it by route template."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, negotiate: Callable[..., str]) -> None:
        self.app = app
        self.metrics = metrics
        self.negotiate = negotiate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cookie_lang = None
        if "cookie" in headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers["cookie"])
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
        accept = headers.get("accept-language") if path.startswith(MACHINE_PREFIXES) else None
        state["lang"] = self.negotiate((query.get("lang") or [None])[0], cookie_lang, accept)
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                    (b"content-language", state["lang"].encode("latin-1")),
                ]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = route_template(scope)
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status_holder["status"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
