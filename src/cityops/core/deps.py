"""FastAPI dependencies shared by every context: runtime, session, clock, language."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.config import Settings
from cityops.core.errors import request_language
from cityops.core.i18n import Translator
from cityops.core.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The runtime of the app serving this request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    runtime = get_runtime(request)
    session = runtime.session_factory()
    session.info["request"] = request
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": the commit happens before the response is sent, so a failed commit
# can never be answered with a success.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_settings(request: Request) -> Settings:
    """The settings of this app."""
    return get_runtime(request).settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_clock(request: Request) -> Clock:
    """The clock of this app."""
    return get_runtime(request).clock


ClockDep = Annotated[Clock, Depends(get_clock)]


def get_translator(request: Request) -> Translator:
    """The message catalogue of this app."""
    return get_runtime(request).translate


TranslatorDep = Annotated[Translator, Depends(get_translator)]

LangDep = Annotated[str, Depends(request_language)]
