"""Reference data kept per process is dropped when its table changes, wherever the change is."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete, func, select, text

from cityops.core.db import unit_of_work
from cityops.core.refcache import ReferenceCache
from cityops.incidents.models import Holiday


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _cache(runtime: Any, ticks: Ticks, max_age: float = 5.0) -> ReferenceCache:
    cache = ReferenceCache(max_age, monotonic=ticks)
    cache.install(runtime.session_factory)
    return cache


def _count(session: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(Holiday)))


def test_a_change_committed_in_this_process_applies_at_once(runtime: Any) -> None:
    ticks = Ticks()
    cache = _cache(runtime, ticks)
    builds: list[int] = []

    def holidays(session: Any) -> int:
        def build() -> int:
            builds.append(1)
            return _count(session)

        return cache.get(session, "holidays", ("holiday",), build)

    with unit_of_work(runtime.session_factory) as session:
        before = holidays(session)
        assert holidays(session) == before
    assert len(builds) == 1
    with unit_of_work(runtime.session_factory) as session:
        session.execute(delete(Holiday).where(Holiday.day >= date(2026, 1, 1)))
        # The changing transaction reads afresh, not from the cache.
        during = holidays(session)
        assert during < before
    with unit_of_work(runtime.session_factory) as session:
        assert holidays(session) == during
        assert holidays(session) == during


def test_a_change_rolled_back_keeps_the_cache(runtime: Any) -> None:
    cache = _cache(runtime, Ticks())
    with unit_of_work(runtime.session_factory) as session:
        first = cache.get(session, "holidays", ("holiday",), lambda: _count(session))
    session = runtime.session_factory()
    session.execute(delete(Holiday))
    session.rollback()
    session.close()
    with unit_of_work(runtime.session_factory) as session:
        assert cache.get(session, "holidays", ("holiday",), lambda: -1) == first


def test_another_process_change_is_seen_after_the_maximum_age(runtime: Any) -> None:
    ticks = Ticks()
    cache = _cache(runtime, ticks, max_age=5.0)
    with unit_of_work(runtime.session_factory) as session:
        before = cache.get(session, "holidays", ("holiday",), lambda: _count(session))
    # Another process: straight through the engine, no session of this factory sees it.
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM holiday"))
    ticks.now = 4.0
    with unit_of_work(runtime.session_factory) as session:
        assert cache.get(session, "holidays", ("holiday",), lambda: _count(session)) == before
    ticks.now = 5.5
    with unit_of_work(runtime.session_factory) as session:
        assert cache.get(session, "holidays", ("holiday",), lambda: _count(session)) == 0


def test_a_costly_value_is_kept_past_its_age_while_its_revision_holds(runtime: Any) -> None:
    ticks = Ticks()
    cache = _cache(runtime, ticks, max_age=1.0)
    builds: list[int] = []

    def get(session: Any) -> int:
        def build() -> int:
            builds.append(1)
            return _count(session)

        return cache.get(session, "holidays", ("holiday",), build, lambda: _count(session))

    with unit_of_work(runtime.session_factory) as session:
        before = get(session)
    ticks.now = 10.0
    with unit_of_work(runtime.session_factory) as session:
        assert get(session) == before
    assert len(builds) == 1
    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM holiday"))
    ticks.now = 20.0
    with unit_of_work(runtime.session_factory) as session:
        assert get(session) == 0
    assert len(builds) == 2


def test_nothing_is_kept_with_a_maximum_age_of_zero(runtime: Any) -> None:
    cache = _cache(runtime, Ticks(), max_age=0.0)
    with unit_of_work(runtime.session_factory) as session:
        assert cache.get(session, "n", ("holiday",), lambda: 1) == 1
        assert cache.get(session, "n", ("holiday",), lambda: 2) == 2
