"""Reference data kept per process: small tables that every write reads and users rarely edit.

Opening an incident read its category, its departments, the SLA policy, the holiday calendar and
the boundaries' revision, one query each, on every incident and every citizen report. A
`ReferenceCache` keeps what is built from such tables until one of them changes:

- a change committed in this process (an ORM insert, update or delete of a row of the table, or
  an INSERT/UPDATE/DELETE statement on it run through a session) drops the entries built from
  that table at once;
- a change made by another process (a second worker, the command line) is seen after
  `max_age` seconds (setting `CITYOPS_REFERENCE_CACHE_SECONDS`; 0 keeps nothing);
- a transaction that has itself changed one of the tables reads them afresh, not from the
  cache, until it commits.

Entries hold plain values (tuples, dataclasses, built objects), never ORM instances, which
belong to one session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from sqlalchemy.orm.unitofwork import UOWTransaction

T = TypeVar("T")

# runtime.caches key under which the runtime's ReferenceCache is found by code given `caches`.
CACHES_KEY = "core.reference"
_TOUCHED = "core.reference.touched"


class ReferenceCache:
    """Values built from reference tables, dropped when one of those tables changes."""

    def __init__(self, max_age: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._monotonic = monotonic
        self._generations: dict[str, int] = {}
        self._entries: dict[str, tuple[tuple[int, ...], float, Hashable, Any]] = {}
        self._lock = threading.Lock()
        # Per cache: several caches may follow one session factory (tests build their own).
        self._key = f"{_TOUCHED}.{id(self)}"

    def get(
        self,
        session: Session,
        name: str,
        tables: tuple[str, ...],
        build: Callable[[], T],
        revision: Callable[[], Hashable] | None = None,
    ) -> T:
        """Return the value called `name` built from `tables`, building it when it is stale.

        `revision`, for values costly to build, is a cheap token of the tables' content: an
        entry past its age whose token has not changed is kept rather than built again.
        """
        if self.max_age <= 0 or self._touched(session).intersection(tables):
            return build()
        stamp = tuple(self._generations.get(table, 0) for table in tables)
        now = self._monotonic()
        entry = self._entries.get(name)
        if entry is not None and entry[0] == stamp:
            if now - entry[1] < self.max_age:
                value: T = entry[3]
                return value
            if revision is not None and entry[2] is not None and revision() == entry[2]:
                self._entries[name] = (stamp, now, entry[2], entry[3])
                kept: T = entry[3]
                return kept
        # The stamp was taken before reading: a change committed meanwhile makes it stale.
        token = revision() if revision is not None else None
        value = build()
        self._entries[name] = (stamp, now, token, value)
        return value

    def changed(self, tables: Iterable[str]) -> None:
        """Drop what was built from these tables (called after a commit that changed them)."""
        with self._lock:
            for table in tables:
                self._generations[table] = self._generations.get(table, 0) + 1

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()

    def _touched(self, session: Session) -> set[str]:
        touched: set[str] = session.info.setdefault(self._key, set())
        return touched

    def install(self, factory: sessionmaker[Session]) -> None:
        """Follow the changes made through this session factory's sessions."""

        def flushed(session: Session, _context: UOWTransaction) -> None:
            touched = self._touched(session)
            for obj in (*session.new, *session.dirty, *session.deleted):
                table = getattr(type(obj), "__tablename__", None)
                if table is not None:
                    touched.add(table)

        def executed(state: ORMExecuteState) -> None:
            if state.is_insert or state.is_update or state.is_delete:
                table = getattr(state.statement, "table", None)
                name = getattr(table, "name", None)
                if name is not None:
                    self._touched(state.session).add(name)

        def committed(session: Session) -> None:
            touched = session.info.pop(self._key, None)
            if touched:
                self.changed(touched)

        def rolled_back(session: Session) -> None:
            session.info.pop(self._key, None)

        event.listen(factory, "after_flush", flushed)
        event.listen(factory, "do_orm_execute", executed)
        event.listen(factory, "after_commit", committed)
        event.listen(factory, "after_rollback", rolled_back)
