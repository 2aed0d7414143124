"""FastAPI dependencies shared by every context: runtime, session, clock, language."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.config import Settings
from cityops.core.errors import request_language
from cityops.core.i18n import Translator
from cityops.core.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    """The runtime of the app serving this request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


# Dependencies that do no I/O are `async def`: FastAPI then runs them on the event loop
# instead of sending each one through the thread pool (about 0.5 ms apiece under load).
async def get_runtime(request: Request) -> Runtime:
    """The runtime of the app serving this request."""
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def refuse_nul(request: Request) -> None:
    """Refuse a path or query parameter holding a NUL character, naming the parameter.

    Every route's text parameters can reach SQL, and PostgreSQL refuses NUL in text (a 500
    there, while SQLite stores it): one check for the whole app instead of one per parameter.
    It is a validation error like any other bad parameter, so each API answers in its own
    shape and status. Bodies are checked by their schemas. Checked on the raw query string,
    so a request without `%00` costs one substring search.
    """
    scope = request.scope
    errors: list[dict[str, object]] = []
    if "\x00" in scope.get("path", ""):
        errors.append({"type": "nul_character", "loc": ("path",), "msg": "NUL character"})
    raw: bytes = scope.get("query_string", b"")
    if b"%00" in raw or b"\x00" in raw:
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                field = name.replace("\x00", "\\0")
                errors.append(
                    {"type": "nul_character", "loc": ("query", field), "msg": "NUL character"}
                )
    if errors:
        raise RequestValidationError(errors)


# Session keys a request may set without doing any database work (see `_untouched`).
_QUIET_INFO_KEYS = frozenset({"request", "actor"})


def _untouched(session: Session) -> bool:
    """Whether a session never began a transaction nor holds anything to write or publish.

    Then its commit and close do no I/O (no connection was ever checked out), so they run on the
    event loop instead of costing a thread-pool hop; any other session ends in a worker thread,
    since a commit can wait on the database (SQLite's write lock, a PostgreSQL round trip).
    Other `info` entries must be empty (a reference-cache read leaves an empty set of touched
    tables); a non-empty one (pending events, a flag) sends the session to a thread.
    """
    return (
        not session.in_transaction()
        and not session.new
        and not session.deleted
        and not any(v for k, v in session.info.items() if k not in _QUIET_INFO_KEYS)
    )


def _end(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


async def _finish(session: Session, *, commit: bool) -> None:
    # Shielded, like FastAPI's own exit of a generator dependency: a cancelled request still
    # commits or rolls back and returns its connection. Its own limiter, so an exit never waits
    # for a worker thread held by a request that waits for this connection (FastAPI's reason).
    with anyio.CancelScope(shield=True):
        if _untouched(session):
            _end(session, commit=commit)
        else:
            await anyio.to_thread.run_sync(
                partial(_end, session, commit=commit), limiter=anyio.CapacityLimiter(1)
            )


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error.

    Opening a session does no I/O (the connection is taken on first use), so it happens on the
    event loop; a synchronous generator would cost a thread-pool hop to open and another to end.
    """
    runtime = runtime_of(request)
    session = runtime.session_factory()
    session.info["request"] = request
    try:
        yield session
    except BaseException:
        await _finish(session, commit=False)
        raise
    await _finish(session, commit=True)


# scope="function": the commit happens before the response is sent, so a failed commit
# can never be answered with a success.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_settings(request: Request) -> Settings:
    """The settings of this app."""
    return runtime_of(request).settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_clock(request: Request) -> Clock:
    """The clock of this app."""
    return runtime_of(request).clock


ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_translator(request: Request) -> Translator:
    """The message catalogue of this app."""
    return runtime_of(request).translate


TranslatorDep = Annotated[Translator, Depends(get_translator)]


async def get_language(request: Request) -> str:
    """The language negotiated for this request."""
    return request_language(request)


LangDep = Annotated[str, Depends(get_language)]


# Paging and identifiers shared by every list route: bounded, so no query asks for the world.
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip.")]
MAX_ID = 2**31 - 1  # the largest integer key the databases store
