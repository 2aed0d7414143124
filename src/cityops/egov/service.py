"""Database work of the egov context: procedures, dossiers, the import ledger, the 766 aggregates.

Services flush, never commit; the caller owns the transaction. The indicator aggregate is one
GROUP BY over the dossiers with conditional sums: no row of a million is looked at in Python.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.security import Scope
from cityops.core.text import fold
from cityops.egov.enums import (
    AgencyKind,
    DossierStatus,
    DueState,
    GroupBy,
    ImportStatus,
    Rating,
)
from cityops.egov.models import Dossier, DossierImport, Procedure
from cityops.egov.periods import Period
from cityops.egov.scoring import Counts
from cityops.units import service as unit_service

# --- agencies and units ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agency:
    """Who handles dossiers: a department, or a commune/ward's People's Committee."""

    code: str
    kind: AgencyKind
    name: str
    name_en: str | None


@dataclass(frozen=True, slots=True)
class Place:
    """Where dossiers are received: a commune/ward, or the province (its public-service centre)."""

    code: str
    level: str
    name: str
    name_en: str | None


def get_agencies(*, session: Session, on: date) -> dict[str, Agency]:
    """Return every agency: the departments and the communes/wards valid on a date."""
    departments, _ = unit_service.get_all_departments(session=session, limit=10_000)
    agencies = {
        d.code: Agency(d.code, AgencyKind.DEPARTMENT, d.name, d.name_en) for d in departments
    }
    communes, _ = unit_service.get_all(session=session, on=on, level="commune", limit=10_000)
    for unit in communes:
        agencies[unit.code] = Agency(
            unit.code,
            AgencyKind.COMMUNE,
            f"UBND {unit.name}",
            f"People's Committee of {unit.name_en or unit.name}",
        )
    return agencies


def get_places(*, session: Session, on: date) -> dict[str, Place]:
    """Return every place a dossier may be received: the province and its communes/wards."""
    places: dict[str, Place] = {}
    province = unit_service.get_province(session=session)
    if province is not None:
        places[province.code] = Place(province.code, "province", province.name, province.name_en)
    communes, _ = unit_service.get_all(session=session, on=on, level="commune", limit=10_000)
    for unit in communes:
        places[unit.code] = Place(unit.code, "commune", unit.name, unit.name_en)
    return places


def scope_filter(scope: Scope) -> ColumnElement[bool]:
    """A SQL condition keeping the dossiers a scope reaches.

    A unit scope reaches dossiers received in its units or handled by their committees; a
    department scope reaches the dossiers its department handles.
    """
    conditions: list[ColumnElement[bool]] = []
    if scope.unit_codes is not None:
        conditions.append(
            or_(scope.unit_filter(Dossier.unit_code), scope.unit_filter(Dossier.agency_code))
        )
    if scope.department_code is not None:
        conditions.append(scope.department_filter(Dossier.agency_code))
    return and_(true(), *conditions)


def in_scope(scope: Scope, *, agency_code: str | None, unit_code: str | None) -> bool:
    """Whether a dossier of this agency, received in this unit, is within a scope."""
    codes = scope.unit_codes
    unit_ok = codes is None or unit_code in codes or agency_code in codes
    department_ok = scope.department_code is None or agency_code == scope.department_code
    return unit_ok and department_ok


# --- procedures -----------------------------------------------------------------------------


def get_procedure(*, session: Session, code: str) -> Procedure | None:
    """Return a procedure by code, or None."""
    return session.get(Procedure, code)


def get_procedure_map(*, session: Session) -> dict[str, Procedure]:
    """Return every procedure by code."""
    return {p.code: p for p in session.scalars(select(Procedure))}


def get_all_procedures(
    *,
    session: Session,
    level: str | None = None,
    department_code: str | None = None,
    field: str | None = None,
    online_level: str | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Procedure], int]:
    """Return one page of procedures matching the filters, and how many match in all."""
    conditions: list[ColumnElement[bool]] = []
    if level:
        conditions.append(Procedure.level == level)
    if department_code:
        conditions.append(Procedure.department_code == department_code)
    if field:
        conditions.append(Procedure.field == field)
    if online_level:
        conditions.append(Procedure.online_level == online_level)
    rows = list(session.scalars(select(Procedure).where(*conditions).order_by(Procedure.code)))
    folded = fold(q or "")
    if folded:
        # A few hundred rows at most: matching names without diacritics is done here.
        rows = [p for p in rows if folded in fold(f"{p.code} {p.name} {p.name_en or ''} {p.field}")]
    return rows[offset : offset + limit], len(rows)


def create_procedure(*, session: Session, values: Mapping[str, Any], clock: Clock) -> Procedure:
    """Create a procedure from profile values."""
    now = clock.now()
    procedure = Procedure(**dict(values), created_at=now, updated_at=now)
    session.add(procedure)
    session.flush()
    return procedure


# --- dossiers -------------------------------------------------------------------------------


def get(*, session: Session, dossier_id: int) -> Dossier | None:
    """Return a dossier by id, or None."""
    return session.get(Dossier, dossier_id)


def count(*, session: Session) -> int:
    """Return how many dossiers are stored."""
    return int(session.scalar(select(func.count()).select_from(Dossier)) or 0)


@dataclass(frozen=True, slots=True)
class DossierFilter:
    """Filters of a dossier list."""

    agency_code: str | None = None
    unit_code: str | None = None
    procedure_code: str | None = None
    status: str | None = None
    open: bool | None = None
    overdue: bool | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    q: str | None = None


def _conditions(flt: DossierFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.agency_code:
        conditions.append(Dossier.agency_code == flt.agency_code)
    if flt.unit_code:
        conditions.append(Dossier.unit_code == flt.unit_code)
    if flt.procedure_code:
        conditions.append(Dossier.procedure_code == flt.procedure_code)
    if flt.status:
        conditions.append(Dossier.status == flt.status)
    if flt.open is not None:
        conditions.append(
            Dossier.completed_at.is_(None) if flt.open else Dossier.completed_at.is_not(None)
        )
    if flt.overdue is not None:
        late = or_(
            and_(Dossier.completed_at.is_(None), Dossier.due_at < now),
            Dossier.completed_at > Dossier.due_at,
        )
        conditions.append(late if flt.overdue else ~late)
    if flt.received_from is not None:
        conditions.append(Dossier.received_at >= flt.received_from)
    if flt.received_to is not None:
        conditions.append(Dossier.received_at < flt.received_to)
    if flt.q:
        conditions.append(Dossier.code.contains(flt.q, autoescape=True))
    return conditions


def get_all(
    *,
    session: Session,
    scope: Scope,
    now: datetime,
    flt: DossierFilter | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Dossier], int]:
    """Return one page of dossiers in scope (newest received first) and how many match."""
    conditions = [scope_filter(scope), *_conditions(flt or DossierFilter(), now)]
    total = session.scalar(select(func.count()).select_from(Dossier).where(*conditions)) or 0
    rows = session.scalars(
        select(Dossier)
        .where(*conditions)
        .order_by(Dossier.received_at.desc(), Dossier.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def _due_conditions(
    *, now: datetime, horizon_end: datetime, state: DueState | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Dossier.completed_at.is_(None)]
    if state is DueState.OVERDUE:
        conditions.append(Dossier.due_at < now)
    elif state is DueState.DUE_SOON:
        conditions.extend([Dossier.due_at >= now, Dossier.due_at <= horizon_end])
    else:
        conditions.append(Dossier.due_at <= horizon_end)
    return conditions


def get_due(
    *,
    session: Session,
    scope: Scope,
    now: datetime,
    horizon_end: datetime,
    state: DueState | None = None,
    agency_code: str | None = None,
    unit_code: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Dossier], int]:
    """Return open dossiers in scope past due or due before `horizon_end`, soonest due first."""
    conditions = [
        scope_filter(scope),
        *_due_conditions(now=now, horizon_end=horizon_end, state=state),
    ]
    if agency_code:
        conditions.append(Dossier.agency_code == agency_code)
    if unit_code:
        conditions.append(Dossier.unit_code == unit_code)
    total = session.scalar(select(func.count()).select_from(Dossier).where(*conditions)) or 0
    rows = session.scalars(
        select(Dossier)
        .where(*conditions)
        .order_by(Dossier.due_at, Dossier.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def get_unannounced(
    *, session: Session, now: datetime, horizon_end: datetime, limit: int
) -> list[Dossier]:
    """Return open dossiers whose due-date state changed since it was last announced."""
    pending = or_(
        Dossier.announced.is_(None),
        and_(Dossier.announced == DueState.DUE_SOON.value, Dossier.due_at < now),
    )
    return list(
        session.scalars(
            select(Dossier)
            .where(Dossier.completed_at.is_(None), Dossier.due_at <= horizon_end, pending)
            .order_by(Dossier.due_at, Dossier.id)
            .limit(limit)
        )
    )


def mark_announced(*, session: Session, dossier: Dossier, state: DueState, now: datetime) -> None:
    """Remember that a dossier's due-date state was announced."""
    dossier.announced = state.value
    dossier.announced_at = now
    session.flush()


# Columns an import compares to decide whether a known dossier changed.
COMPARED = (
    "unit_code",
    "procedure_code",
    "received_at",
    "due_at",
    "completed_at",
    "status",
    "channel",
    "submitted_online",
    "paid_online",
    "digitised",
    "electronic_result",
    "reused_data",
    "synced",
    "supplement_count",
    "rating",
)


def get_existing(
    *, session: Session, codes: Collection[str]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Return the stored dossiers with these codes, by (agency, code): id and compared columns."""
    if not codes:
        return {}
    columns = [Dossier.id, Dossier.agency_code, Dossier.code, Dossier.announced]
    columns += [getattr(Dossier, name) for name in COMPARED]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in session.execute(select(*columns).where(Dossier.code.in_(sorted(set(codes))))):
        values = dict(row._mapping)
        out[(values["agency_code"], values["code"])] = values
    return out


def create_many(*, session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert dossiers in one multi-row statement; return how many."""
    if rows:
        # A Core insert of the table: one executemany. The ORM's bulk path would split the rows
        # into many statements by which values are None.
        session.execute(insert(Dossier.metadata.tables[Dossier.__tablename__]), list(rows))
    return len(rows)


def update_many(*, session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Update dossiers by id (each mapping holds `id` and the new values); return how many."""
    if rows:
        session.execute(update(Dossier), list(rows))
    return len(rows)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# --- import ledger --------------------------------------------------------------------------


def create_import(
    *,
    session: Session,
    file_hash: str,
    file_name: str,
    fmt: str,
    source: str,
    actor: str,
    clock: Clock,
) -> DossierImport:
    """Open an import run in the ledger."""
    run = DossierImport(
        file_hash=file_hash,
        # A name comes from the client: no control characters (PostgreSQL refuses NUL).
        file_name=_CONTROL.sub("", file_name)[:300] or "-",
        format=fmt,
        source=source,
        actor=actor[:200],
        rows=0,
        imported=0,
        updated=0,
        skipped=0,
        errors=0,
        batches_done=0,
        status=ImportStatus.RUNNING.value,
        started_at=clock.now(),
    )
    session.add(run)
    session.flush()
    return run


def get_import(*, session: Session, import_id: int) -> DossierImport | None:
    """Return an import run by id, or None."""
    return session.get(DossierImport, import_id)


def get_imports_of_file(*, session: Session, file_hash: str) -> list[DossierImport]:
    """Return the earlier runs of the same file content, oldest first."""
    return list(
        session.scalars(
            select(DossierImport)
            .where(DossierImport.file_hash == file_hash)
            .order_by(DossierImport.id)
        )
    )


def get_all_imports(
    *, session: Session, limit: int = 100, offset: int = 0
) -> tuple[list[DossierImport], int]:
    """Return one page of import runs, newest first."""
    total = session.scalar(select(func.count()).select_from(DossierImport)) or 0
    rows = session.scalars(
        select(DossierImport).order_by(DossierImport.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total)


# --- the 766 aggregate ----------------------------------------------------------------------


def _days(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    """Calendar days between two timestamp columns, in SQL."""
    if session.get_bind().dialect.name == "sqlite":
        return func.julianday(end) - func.julianday(start)
    return cast(func.extract("epoch", end - start), Float) / 86400.0


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    # count(*) FILTER (WHERE ...): SQLite ≥ 3.30 and PostgreSQL; cheaper than sum(CASE ...).
    return func.count().filter(condition)


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """The counts of one (agency or unit, procedure) pair in a period."""

    key: str
    procedure_code: str
    counts: Counts


def get_aggregates(
    *,
    session: Session,
    period: Period,
    now: datetime,
    group_by: GroupBy,
    keys: Collection[str] | None = None,
) -> list[AggregateRow]:
    """Aggregate the dossiers of a period per (agency or unit, procedure), in one query.

    A dossier counts when it was received before the period's end (or now, if the period is
    running) and was completed in the period or is still open: that is the *handled* set of
    indicator 2.1, which contains the received and completed ones. Withdrawn dossiers count
    nowhere.
    """
    as_of = period.as_of(now)
    start = period.start
    key = Dossier.agency_code if group_by is GroupBy.AGENCY else Dossier.unit_code
    completed_in = and_(Dossier.completed_at.is_not(None), Dossier.completed_at < as_of)
    in_progress = or_(Dossier.completed_at.is_(None), Dossier.completed_at >= as_of)
    few_supplements = Dossier.supplement_count <= 1
    on_time = or_(
        and_(completed_in, Dossier.completed_at <= Dossier.due_at, few_supplements),
        and_(in_progress, Dossier.due_at >= as_of, few_supplements),
    )
    received_in = Dossier.received_at >= start
    yes = literal(True)
    query = (
        select(
            key.label("key"),
            Dossier.procedure_code,
            func.count().label("handled"),
            _count(on_time).label("on_time"),
            _count(completed_in).label("completed"),
            _count(and_(completed_in, Dossier.electronic_result == yes)).label("electronic"),
            func.coalesce(
                func.sum(
                    case(
                        (completed_in, _days(session, Dossier.received_at, Dossier.completed_at)),
                        else_=0.0,
                    )
                ),
                0.0,
            ).label("handling_days"),
            _count(received_in).label("received"),
            _count(and_(received_in, Dossier.submitted_online == yes)).label("online"),
            _count(and_(received_in, Dossier.paid_online == yes)).label("paid"),
            _count(
                and_(received_in, Dossier.digitised == yes, Dossier.electronic_result == yes)
            ).label("digitised"),
            _count(and_(received_in, Dossier.reused_data.is_not(None))).label("reuse_known"),
            _count(and_(received_in, Dossier.reused_data == yes)).label("reused"),
            _count(and_(received_in, Dossier.synced.is_not(None))).label("synced_known"),
            _count(and_(received_in, Dossier.synced == yes)).label("synced"),
            _count(Dossier.rating == Rating.UNSATISFIED.value).label("unsatisfied"),
            _count(in_progress).label("open"),
            _count(and_(in_progress, Dossier.due_at < as_of)).label("overdue_open"),
        )
        .where(
            Dossier.received_at < as_of,
            or_(Dossier.completed_at.is_(None), Dossier.completed_at >= start),
            Dossier.status != DossierStatus.WITHDRAWN.value,
        )
        .group_by(key, Dossier.procedure_code)
    )
    if keys is not None:
        query = query.where(key.in_(sorted(keys)))
    out: list[AggregateRow] = []
    for row in session.execute(query):
        m = row._mapping
        counts = Counts(
            handled=int(m["handled"]),
            on_time=int(m["on_time"]),
            completed=int(m["completed"]),
            electronic=int(m["electronic"]),
            handling_days=float(m["handling_days"]),
            received=int(m["received"]),
            online=int(m["online"]),
            paid=int(m["paid"]),
            digitised=int(m["digitised"]),
            reuse_known=int(m["reuse_known"]),
            reused=int(m["reused"]),
            synced_known=int(m["synced_known"]),
            synced=int(m["synced"]),
            unsatisfied=int(m["unsatisfied"]),
            open=int(m["open"]),
            overdue_open=int(m["overdue_open"]),
        )
        out.append(AggregateRow(str(m["key"]), str(m["procedure_code"]), counts))
    return out
