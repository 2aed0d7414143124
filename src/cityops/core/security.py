"""Who is calling and what they may do: permissions, scopes, principals and `require(...)`.

The vocabulary lives here so every context can guard its routes without importing `auth`;
`auth` decides which roles hold which permissions and authenticates requests
(it installs the authenticator on the runtime at start-up).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import ColumnElement, false, true
from sqlalchemy.orm import Session

from cityops.core.deps import SessionDep, runtime_of
from cityops.core.errors import Forbidden, Unauthorized


class Permission(StrEnum):
    """Things a principal may do. Names are `<resource>:<action>`."""

    UNIT_UPDATE = "unit:update"  # edit a unit's contact details and population (in scope)
    UNIT_ADMIN = "unit:admin"  # create units, import boundaries, manage areas
    DEPARTMENT_UPDATE = "department:update"  # edit a department's contact details (in scope)
    DEPARTMENT_ADMIN = "department:admin"  # create, rename, delete departments and sectors
    USER_READ = "user:read"
    USER_ADMIN = "user:admin"
    APIKEY_ADMIN = "apikey:admin"
    AUDIT_READ = "audit:read"
    CONTEXT_READ = "context:read"  # read NGSI-LD entities, history and types (in scope)
    CONTEXT_WRITE = "context:write"  # create, update and delete NGSI-LD entities (in scope)
    INGEST_ADMIN = "ingest:admin"  # register devices, change their maps, rotate their keys
    RULE_READ = "rule:read"  # see alert rules
    RULE_ADMIN = "rule:admin"  # create, change, import and delete alert rules
    ALERT_READ = "alert:read"  # see alerts (in scope)
    ALERT_MANAGE = "alert:manage"  # acknowledge, snooze and resolve alerts (in scope)
    INCIDENT_READ = "incident:read"  # see incidents, their timeline and attachments (in scope)
    INCIDENT_CREATE = "incident:create"  # open an incident by hand or from an alert
    INCIDENT_ASSIGN = "incident:assign"  # assign departments and an assignee, reopen, close
    INCIDENT_WORK = "incident:work"  # start work, comment, attach files, resolve (in scope)
    INCIDENT_ADMIN = "incident:admin"  # categories, SLA policies, holidays
    NOTIFY_ADMIN = "notify:admin"  # notification channels and the delivery log
    PROGRAMME_READ = "programme:read"  # see the smart-city programme board (province-wide)
    PROGRAMME_REPORT = "programme:report"  # report progress/milestones of own department's items
    PROGRAMME_ADMIN = "programme:admin"  # phases, items, budget lines, imports
    EGOV_READ = "egov:read"  # see dossiers, procedures and the Decision 766 indicators (in scope)
    EGOV_ADMIN = "egov:admin"  # import administrative-procedure dossiers (in scope)
    KPI_READ = "kpi:read"  # see the indicator catalogue, KPI values, rankings, pilot evaluation
    KPI_ADMIN = "kpi:admin"  # edit the indicator catalogue and population; recompute values
    CITIZEN_SUBMIT = "citizen:submit"  # Open311 clients: send citizen reports (API keys)
    CITIZEN_HANDLE = "citizen:handle"  # read reports with their reporter's contacts (in scope)
    CITIZEN_MODERATE = "citizen:moderate"  # approve or hide flagged reports
    CITIZEN_ADMIN = "citizen:admin"  # the service catalogue


@dataclass(frozen=True, slots=True)
class Scope:
    """The records a principal reaches: a set of unit codes (None: all) and/or one department."""

    unit_codes: frozenset[str] | None = None
    department_code: str | None = None

    @property
    def is_global(self) -> bool:
        """Whether nothing restricts this scope."""
        return self.unit_codes is None and self.department_code is None

    def covers_unit(self, unit_code: str | None) -> bool:
        """Whether a record of this unit is in scope (a record with no unit: only global scope)."""
        if self.unit_codes is None:
            return True
        return unit_code is not None and unit_code in self.unit_codes

    def covers_department(self, department_code: str | None) -> bool:
        """Whether a record of this department is in scope."""
        if self.department_code is None:
            return True
        return department_code == self.department_code

    def covers(self, *, unit_code: str | None = None, department_code: str | None = None) -> bool:
        """Whether a record with this unit and department is in scope on both axes."""
        unit_ok = self.unit_codes is None or self.covers_unit(unit_code)
        dept_ok = self.department_code is None or self.covers_department(department_code)
        return unit_ok and dept_ok

    def unit_filter(self, column: Any) -> ColumnElement[bool]:
        """A SQL condition keeping rows whose unit column is in scope."""
        if self.unit_codes is None:
            return true()
        if not self.unit_codes:
            return false()
        return column.in_(sorted(self.unit_codes))  # type: ignore[no-any-return]

    def department_filter(self, column: Any) -> ColumnElement[bool]:
        """A SQL condition keeping rows whose department column is in scope."""
        if self.department_code is None:
            return true()
        return column == self.department_code  # type: ignore[no-any-return]


GLOBAL_SCOPE = Scope()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user (bearer token or web session) or a machine (API key)."""

    kind: str  # "user" | "api_key" | "system"
    id: int
    name: str
    role: str
    permissions: frozenset[str]
    scope: Scope = GLOBAL_SCOPE
    tenant: str | None = None
    session_id: str | None = None
    via: str = "bearer"  # "bearer" | "cookie" | "api_key" | "cli"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def can(self, permission: str) -> bool:
        """Whether this principal holds a permission."""
        return permission in self.permissions

    def check(self, permission: str) -> None:
        """Raise 403 unless this principal holds a permission."""
        if not self.can(permission):
            raise Forbidden("error.forbidden.detail")

    def check_scope(
        self, *, unit_code: str | None = None, department_code: str | None = None
    ) -> None:
        """Raise 403 unless a record of this unit/department is within the principal's scope."""
        if not self.scope.covers(unit_code=unit_code, department_code=department_code):
            raise Forbidden("error.forbidden.scope")


class PrincipalCache:
    """A short-lived in-process cache of authenticated callers, keyed by a credential digest.

    Authentication costs a few statements per request (key, creator, scope); a machine sending
    thousands of updates a second repeats them for nothing. Entries live `ttl` seconds at most:
    that bounds how late another process's revocation is seen. In this process, `clear()` is
    called when a key or user changes, and a lookup that started before a clear never stores its
    (possibly stale) result: `generation` tells `put` whether a clear came in between.
    """

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """The number of clears so far (read it before a lookup, pass it to `put`)."""
        return self._generation

    def get(self, key: str) -> Any:
        """Return the cached value for a key, or None if absent or older than the TTL."""
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return found[1]

    def put(self, key: str, value: Any, generation: int) -> None:
        """Cache a value unless the cache was cleared since `generation` was read."""
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl, value)

    def discard(self, key: str) -> None:
        """Forget one key."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything (a credential, its owner or their rights changed)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()


SYSTEM_PRINCIPAL = Principal(
    kind="system", id=0, name="system", role="system", permissions=frozenset(), via="cli"
)

Authenticator = Callable[[Request, Session], Principal | None]


async def optional_principal(request: Request, session: SessionDep) -> Principal | None:
    """The caller if credentials were sent and are valid; None for anonymous callers.

    A caller the authenticator already knows (its `cached(request)` answers without I/O: an API
    key seen within the cache's TTL) is resolved on the event loop; anyone else is looked up in
    the database in a worker thread, as a synchronous dependency would be.
    """
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    authenticate: Authenticator | None = runtime_of(request).authenticator
    if authenticate is None:
        return None
    known: Callable[[Request], Principal | None] | None = getattr(authenticate, "cached", None)
    principal = known(request) if known is not None else None
    if principal is None:
        principal = await run_in_threadpool(authenticate, request, session)
    if principal is not None:
        request.state.principal = principal
        session.info["actor"] = principal
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


# The checks below do no I/O: `async def`, so FastAPI runs them on the event loop rather than
# sending each through the thread pool (two hops saved on every guarded route).
async def current_principal(principal: OptionalPrincipal) -> Principal:
    """The caller; 401 without valid credentials."""
    if principal is None:
        raise Unauthorized(
            "error.unauthorized.detail", headers={"WWW-Authenticate": 'Bearer realm="cityops"'}
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(*permissions: Permission | str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets the request through only if the caller holds every permission."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        for permission in permissions:
            principal.check(permission)
        return principal

    return dependency


def permission_names(values: Iterable[Permission | str]) -> frozenset[str]:
    """Permissions as plain strings."""
    return frozenset(str(v) for v in values)
