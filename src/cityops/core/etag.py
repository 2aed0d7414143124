"""Conditional GET: a weak ETag computed from a response body, and 304 when the client has it;
and the gzip policy shared by the app's middleware and the bodies kept already compressed."""

from __future__ import annotations

import gzip
import hashlib

from starlette.requests import Request
from starlette.responses import Response

# The app's GZipMiddleware settings; a body kept compressed is made with the same ones, so the
# middleware passes it through and a client gets the same bytes either way.
GZIP_MINIMUM = 1024  # below this a body is sent as it is
GZIP_LEVEL = 6


def compress(body: bytes) -> bytes:
    """Return `body` gzip-compressed as the middleware would (no timestamp: same bytes)."""
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether a request's Accept-Encoding takes gzip, as the middleware decides."""
    return "gzip" in (accept_encoding or "")


def etag_of(body: bytes) -> str:
    """Return a weak entity tag for a body (weak: the gzip middleware re-encodes the bytes)."""
    return f'W/"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


def matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this tag (weak comparison, RFC 9110 §13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


def conditional(
    request: Request,
    body: bytes,
    *,
    cache_control: str,
    media_type: str = "application/json",
    etag: str | None = None,
) -> Response:
    """Answer a body with its ETag and Cache-Control, or 304 if If-None-Match names it.

    `etag` is the body's tag when the caller kept it (`etag_of(body)` otherwise).
    """
    etag = etag or etag_of(body)
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
