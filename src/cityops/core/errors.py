"""Errors: domain exceptions with message keys, rendered as problem+json (RFC 9457) at the edge."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cityops.core.i18n import Translator

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:cityops:problem:{}"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class DomainError(Exception):
    """An error a client can act on. Subclasses fix the HTTP status and the problem type."""

    status: int = 400
    slug: str = "bad-request"
    title_key: str = "error.bad_request"

    def __init__(
        self,
        key: str | None = None,
        /,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> None:
        self.key = key
        self.params = params
        self.errors = list(errors or [])
        self.headers = headers or {}
        super().__init__(key or self.title_key)


class BadRequest(DomainError):
    """The request cannot be processed as sent."""


class Unauthorized(DomainError):
    """No valid credentials."""

    status, slug, title_key = 401, "unauthorized", "error.unauthorized"


class Forbidden(DomainError):
    """Valid credentials, but not allowed."""

    status, slug, title_key = 403, "forbidden", "error.forbidden"


class NotFound(DomainError):
    """The thing asked for does not exist (or is invisible to the caller)."""

    status, slug, title_key = 404, "not-found", "error.not_found"


class Conflict(DomainError):
    """The request clashes with the current state (duplicate, stale, in use)."""

    status, slug, title_key = 409, "conflict", "error.conflict"


class Invalid(DomainError):
    """The content is well-formed but wrong; `errors` names the fields."""

    status, slug, title_key = 422, "validation-error", "error.validation"


class TooManyRequests(DomainError):
    """Slow down; `Retry-After` says for how long."""

    status, slug, title_key = 429, "too-many-requests", "error.too_many_requests"


class ServiceUnavailable(DomainError):
    """A dependency is not ready."""

    status, slug, title_key = 503, "service-unavailable", "error.service_unavailable"


_STATUS_SLUGS = {
    400: ("bad-request", "error.bad_request"),
    401: ("unauthorized", "error.unauthorized"),
    403: ("forbidden", "error.forbidden"),
    404: ("not-found", "error.not_found"),
    405: ("method-not-allowed", "error.method_not_allowed"),
    409: ("conflict", "error.conflict"),
    413: ("payload-too-large", "error.payload_too_large"),
    415: ("unsupported-media-type", "error.unsupported_media_type"),
    422: ("validation-error", "error.validation"),
    429: ("too-many-requests", "error.too_many_requests"),
    503: ("service-unavailable", "error.service_unavailable"),
}

ErrorRenderer = Callable[[Request, int, str, str, list[dict[str, Any]]], Response]


def request_language(request: Request) -> str:
    """The language negotiated for this request (set by the language middleware)."""
    return str(getattr(request.state, "lang", "vi"))


def problem(
    request: Request,
    translate: Translator,
    *,
    status: int,
    slug: str,
    title_key: str,
    detail: str | None = None,
    errors: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build a problem+json response in the request's language."""
    lang = request_language(request)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE.format(slug),
        "title": translate(title_key, lang),
        "status": status,
        "instance": request.url.path,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = list(errors)
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _validation_errors(
    exc: RequestValidationError, translate: Translator, lang: str
) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) if len(loc) > 1 else where
        ctx = dict(err.get("ctx") or {})
        if "error" in ctx:
            ctx["message"] = str(ctx.pop("error"))
        if err.get("type") == "value_error" and "message" not in ctx:
            ctx["message"] = err.get("msg", "")
        key = f"validation.{err.get('type')}"
        message = translate(key, lang, **ctx)
        if message == key:
            message = str(err.get("msg", ""))
        elif err.get("type") == "value_error":
            message = message.removeprefix("Value error, ")
        out.append({"field": field, "in": where, "message": message, "type": err.get("type")})
    return out


def translate_error(error: dict[str, Any], translate: Translator, lang: str) -> dict[str, Any]:
    """Render a field error given by message key (`key`, `params`) in a language, as `message`."""
    if "key" not in error or "message" in error:
        return error
    out = {k: v for k, v in error.items() if k not in ("key", "params")}
    out["message"] = translate(error["key"], lang, **(error.get("params") or {}))
    out.setdefault("type", error["key"])
    return out


def install_error_handlers(
    app: FastAPI, translate: Translator, renderers: dict[str, ErrorRenderer] | None = None
) -> None:
    """Render every error as problem+json, or in the standard shape of routes under a prefix.

    `renderers` maps a path prefix (e.g. "/ngsi-ld/") to a function that renders errors there.
    """
    prefixed = sorted((renderers or {}).items(), key=lambda kv: -len(kv[0]))

    def render(
        request: Request,
        *,
        status: int,
        slug: str,
        title_key: str,
        detail: str | None,
        errors: list[dict[str, Any]],
        headers: dict[str, str] | None = None,
    ) -> Response:
        for prefix, renderer in prefixed:
            if request.url.path.startswith(prefix):
                title = translate(title_key, request_language(request))
                response = renderer(request, status, slug, detail or title, errors)
                if headers:
                    response.headers.update(headers)
                return response
        return problem(
            request,
            translate,
            status=status,
            slug=slug,
            title_key=title_key,
            detail=detail,
            errors=errors,
            headers=headers,
        )

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        lang = request_language(request)
        detail = translate(exc.key, lang, **exc.params) if exc.key else None
        return render(
            request,
            status=exc.status,
            slug=exc.slug,
            title_key=exc.title_key,
            detail=detail,
            errors=[translate_error(error, translate, lang) for error in exc.errors],
            headers=exc.headers,
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        slug, title_key = _STATUS_SLUGS.get(exc.status_code, ("error", "error.bad_request"))
        detail: str | None = None
        if exc.status_code == 404:
            detail = translate("error.not_found.detail", request_language(request))
        elif isinstance(exc.detail, str) and exc.detail and exc.status_code not in (405,):
            detail = exc.detail
        return render(
            request,
            status=exc.status_code,
            slug=slug,
            title_key=title_key,
            detail=detail,
            errors=[],
            headers=dict(exc.headers or {}),
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        lang = request_language(request)
        errors = _validation_errors(exc, translate, lang)
        return render(
            request,
            status=422,
            slug="validation-error",
            title_key="error.validation",
            detail=translate("error.validation.detail", lang, count=len(errors)),
            errors=errors,
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        request_id = getattr(request.state, "request_id", "-")
        return render(
            request,
            status=500,
            slug="internal-error",
            title_key="error.internal",
            detail=translate(
                "error.internal.detail", request_language(request), request_id=request_id
            ),
            errors=[],
        )

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
