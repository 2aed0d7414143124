"""Fixtures of the units tests: a session on the seeded database and the point locator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from cityops.core.runtime import Runtime
from cityops.units import geometry as geo
from cityops.units import service


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    """A session on the test's seeded database; its work is rolled back at the end."""
    db = runtime.session_factory()
    try:
        yield db
    finally:
        db.rollback()
        db.close()


@pytest.fixture
def locator(session: Session) -> geo.Locator:
    """The point locator built from the seeded (demo) boundaries."""
    return service.build_locator(session=session)
