"""Database work of the incidents context: categories, SLA policies, holidays, incidents, their
departments, timeline, comments and attachments, and the SLA report.

Services flush, never commit; the caller owns the transaction. Events are published by flows.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    case,
    cast,
    column,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from cityops.auth.flows import audit_inserted
from cityops.core.clock import Clock
from cityops.core.db import insert_objects
from cityops.core.errors import Conflict, Invalid, NotFound
from cityops.core.security import Principal, Scope
from cityops.core.text import words
from cityops.incidents.enums import (
    OPEN_STATUSES,
    SEVERITY_RANK,
    DepartmentRole,
    HolidayKind,
)
from cityops.incidents.models import (
    WORD_INDEX,
    Holiday,
    Incident,
    IncidentAttachment,
    IncidentCategory,
    IncidentComment,
    IncidentDepartment,
    IncidentSequence,
    SlaPolicy,
    TimelineEntry,
)
from cityops.incidents.schemas import (
    CategoryCreate,
    CategoryUpdate,
    HolidayCreate,
    HolidayUpdate,
    SlaPolicyCreate,
    SlaPolicyUpdate,
)
from cityops.units import service as unit_service

CODE_PREFIX = "SC"
# A search that starts like a public code looks codes up instead of titles.
CODE_QUERY = re.compile(r"^sc-\d", re.IGNORECASE)
SORTS = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "due_resolve_at": "due_resolve_at",
    "severity": "severity",
    "code": "code",
}


def field_error(field: str, key: str, /, *, where: str = "body", **params: Any) -> dict[str, Any]:
    """Describe one field's problem by message key; the edge renders it in the caller's language."""
    return {"field": field, "in": where, "key": key, "params": params}


def check_departments(
    *, session: Session, fields: Sequence[tuple[str, str]], known: Set[str] | None = None
) -> None:
    """Raise 422 naming every field whose department code does not exist.

    `known`: the department codes, when the caller has them at hand (reference data).
    """
    if known is None:
        known = unit_service.get_department_codes(session=session)
    errors = [
        field_error(name, "incidents.department.unknown", code=code)
        for name, code in fields
        if code not in known
    ]
    if errors:
        raise Invalid("incidents.invalid", errors=errors, count=len(errors))


# --- categories ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryTerms:
    """What opening or recategorising an incident needs of its category."""

    code: str
    is_active: bool
    department_code: str | None
    sector: str | None
    default_severity: str


def category_terms(*, session: Session) -> dict[str, CategoryTerms]:
    """Return every category's terms by code."""
    rows = session.execute(
        select(
            IncidentCategory.code,
            IncidentCategory.is_active,
            IncidentCategory.department_code,
            IncidentCategory.sector,
            IncidentCategory.default_severity,
        )
    ).all()
    return {
        code: CategoryTerms(code, bool(active), department, sector, severity)
        for code, active, department, sector, severity in rows
    }


def get_category(*, session: Session, category_code: str) -> IncidentCategory | None:
    """Return a category by code, or None."""
    return session.get(IncidentCategory, category_code)


def get_category_or_raise(*, session: Session, category_code: str) -> IncidentCategory:
    """Return a category by code, or raise 404."""
    category = get_category(session=session, category_code=category_code)
    if category is None:
        raise NotFound("incidents.category.not_found", code=category_code)
    return category


def get_all_categories(
    *, session: Session, active: bool | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[IncidentCategory], int]:
    """Return one page of categories (optionally only active or retired ones)."""
    conditions: list[ColumnElement[bool]] = []
    if active is not None:
        conditions.append(IncidentCategory.is_active.is_(active))
    total = session.scalar(select(func.count()).select_from(IncidentCategory).where(*conditions))
    rows = session.scalars(
        select(IncidentCategory)
        .where(*conditions)
        .order_by(IncidentCategory.code)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total or 0)


def create_category(
    *, session: Session, category_in: CategoryCreate, clock: Clock
) -> IncidentCategory:
    """Create a category."""
    if get_category(session=session, category_code=category_in.code) is not None:
        raise Conflict("incidents.category.exists", code=category_in.code)
    if category_in.department_code is not None:
        check_departments(
            session=session, fields=[("department_code", category_in.department_code)]
        )
    now = clock.now()
    category = IncidentCategory(
        **category_in.model_dump(mode="json"), is_active=True, created_at=now, updated_at=now
    )
    session.add(category)
    session.flush()
    return category


def update_category(
    *, session: Session, category: IncidentCategory, category_in: CategoryUpdate, clock: Clock
) -> IncidentCategory:
    """Update a category's names, sector, default department or severity, or retire it."""
    data = category_in.model_dump(mode="json", exclude_unset=True)
    for field in ("name", "default_severity", "is_active"):
        if field in data and data[field] is None:
            raise Invalid(
                "incidents.field.required",
                errors=[field_error(field, "incidents.field.required", field=field)],
                field=field,
            )
    if data.get("department_code") is not None:
        check_departments(session=session, fields=[("department_code", data["department_code"])])
    for field, value in data.items():
        setattr(category, field, value)
    category.updated_at = clock.now()
    session.flush()
    return category


def delete_category(*, session: Session, category: IncidentCategory) -> None:
    """Delete a category no incident uses (with its SLA policies); retire it otherwise."""
    used = session.scalar(
        select(func.count()).select_from(Incident).where(Incident.category_code == category.code)
    )
    if used:
        raise Conflict("incidents.category.in_use", code=category.code, count=used)
    for policy in session.scalars(
        select(SlaPolicy).where(SlaPolicy.category_code == category.code)
    ).all():
        session.delete(policy)
    session.delete(category)
    session.flush()


# --- SLA policies ----------------------------------------------------------------------------


def get_policy(*, session: Session, policy_id: int) -> SlaPolicy | None:
    """Return an SLA policy by id, or None."""
    return session.get(SlaPolicy, policy_id)


def get_policy_or_raise(*, session: Session, policy_id: int) -> SlaPolicy:
    """Return an SLA policy by id, or raise 404."""
    policy = get_policy(session=session, policy_id=policy_id)
    if policy is None:
        raise NotFound("incidents.policy.not_found", id=policy_id)
    return policy


def get_all_policies(
    *,
    session: Session,
    category_code: str | None = None,
    defaults_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[SlaPolicy], int]:
    """Return one page of SLA policies: defaults first, then by category and severity."""
    conditions: list[ColumnElement[bool]] = []
    if defaults_only:
        conditions.append(SlaPolicy.category_code.is_(None))
    elif category_code is not None:
        conditions.append(SlaPolicy.category_code == category_code)
    severity_rank = case(
        *((SlaPolicy.severity == str(s), r) for s, r in SEVERITY_RANK.items()), else_=9
    )
    total = session.scalar(select(func.count()).select_from(SlaPolicy).where(*conditions))
    rows = session.scalars(
        select(SlaPolicy)
        .where(*conditions)
        .order_by(
            SlaPolicy.category_code.is_not(None),
            SlaPolicy.category_code,
            severity_rank,
            SlaPolicy.id,
        )
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total or 0)


def _policy_for(session: Session, category_code: str | None, severity: str) -> SlaPolicy | None:
    column = SlaPolicy.category_code
    condition = column.is_(None) if category_code is None else column == category_code
    return session.scalars(
        select(SlaPolicy)
        .where(condition, SlaPolicy.severity == severity)
        .order_by(SlaPolicy.id)
        .limit(1)
    ).first()


@dataclass(frozen=True)
class PolicyTerms:
    """The deadlines of an SLA policy."""

    ack_minutes: int
    resolve_minutes: int
    business_hours: bool


def policy_terms(*, session: Session) -> dict[tuple[str | None, str], PolicyTerms]:
    """Return every policy's terms by (category or None for the default, severity).

    The first policy created wins when there are several, as in `find_policy`.
    """
    rows = session.execute(
        select(
            SlaPolicy.category_code,
            SlaPolicy.severity,
            SlaPolicy.ack_minutes,
            SlaPolicy.resolve_minutes,
            SlaPolicy.business_hours,
        ).order_by(SlaPolicy.id)
    ).all()
    terms: dict[tuple[str | None, str], PolicyTerms] = {}
    for category, severity, ack, resolve, business in rows:
        terms.setdefault((category, severity), PolicyTerms(ack, resolve, bool(business)))
    return terms


def find_policy(*, session: Session, category_code: str, severity: str) -> SlaPolicy | None:
    """Return the policy of a category and severity, else the default of the severity."""
    return _policy_for(session, category_code, severity) or _policy_for(session, None, severity)


def create_policy(*, session: Session, policy_in: SlaPolicyCreate, clock: Clock) -> SlaPolicy:
    """Create an SLA policy; one per category (or default) and severity."""
    if (
        policy_in.category_code is not None
        and get_category(session=session, category_code=policy_in.category_code) is None
    ):
        raise Invalid(
            "incidents.invalid",
            errors=[
                field_error(
                    "category_code", "incidents.category.unknown", code=policy_in.category_code
                )
            ],
            count=1,
        )
    existing = _policy_for(session, policy_in.category_code, str(policy_in.severity))
    if existing is not None:
        raise Conflict(
            "incidents.policy.exists",
            category=policy_in.category_code or "*",
            severity=str(policy_in.severity),
            id=existing.id,
        )
    now = clock.now()
    policy = SlaPolicy(**policy_in.model_dump(mode="json"), created_at=now, updated_at=now)
    session.add(policy)
    session.flush()
    return policy


def update_policy(
    *, session: Session, policy: SlaPolicy, policy_in: SlaPolicyUpdate, clock: Clock
) -> SlaPolicy:
    """Change an SLA policy's minutes or its business-hours flag (new incidents only)."""
    data = policy_in.model_dump(exclude_unset=True)
    for field, value in data.items():
        if value is None:
            raise Invalid(
                "incidents.field.required",
                errors=[field_error(field, "incidents.field.required", field=field)],
                field=field,
            )
    ack = data.get("ack_minutes", policy.ack_minutes)
    resolve = data.get("resolve_minutes", policy.resolve_minutes)
    if resolve < ack:
        raise Invalid(
            "incidents.invalid",
            errors=[field_error("resolve_minutes", "incidents.policy.resolve_before_ack")],
            count=1,
        )
    for field, value in data.items():
        setattr(policy, field, value)
    policy.updated_at = clock.now()
    session.flush()
    return policy


def delete_policy(*, session: Session, policy: SlaPolicy) -> None:
    """Delete an SLA policy (incidents keep the deadlines they were given)."""
    session.delete(policy)
    session.flush()


# --- holidays --------------------------------------------------------------------------------


def get_holiday(*, session: Session, day: date) -> Holiday | None:
    """Return the calendar exception of a date, or None."""
    return session.get(Holiday, day)


def get_holiday_or_raise(*, session: Session, day: date) -> Holiday:
    """Return the calendar exception of a date, or raise 404."""
    holiday = get_holiday(session=session, day=day)
    if holiday is None:
        raise NotFound("incidents.holiday.not_found", day=day.isoformat())
    return holiday


def get_all_holidays(
    *, session: Session, year: int | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Holiday], int]:
    """Return one page of calendar exceptions in date order (optionally of one year)."""
    conditions: list[ColumnElement[bool]] = []
    if year is not None:
        conditions.append(Holiday.day.between(date(year, 1, 1), date(year, 12, 31)))
    total = session.scalar(select(func.count()).select_from(Holiday).where(*conditions))
    rows = session.scalars(
        select(Holiday).where(*conditions).order_by(Holiday.day).limit(limit).offset(offset)
    ).all()
    return list(rows), int(total or 0)


def get_calendar_exceptions(*, session: Session) -> list[tuple[date, bool]]:
    """Return every calendar exception as (date, is_day_off)."""
    rows = session.execute(select(Holiday.day, Holiday.kind)).all()
    return [(day, kind == HolidayKind.DAY_OFF) for day, kind in rows]


def create_holiday(*, session: Session, holiday_in: HolidayCreate, clock: Clock) -> Holiday:
    """Add a day off or a make-up working day to the calendar."""
    if get_holiday(session=session, day=holiday_in.day) is not None:
        raise Conflict("incidents.holiday.exists", day=holiday_in.day.isoformat())
    if holiday_in.day.year < 2000 or holiday_in.day.year > 2100:
        raise Invalid(
            "incidents.invalid",
            errors=[field_error("day", "incidents.holiday.out_of_range")],
            count=1,
        )
    now = clock.now()
    holiday = Holiday(
        day=holiday_in.day,
        kind=str(holiday_in.kind),
        name=holiday_in.name,
        name_en=holiday_in.name_en,
        created_at=now,
        updated_at=now,
    )
    session.add(holiday)
    session.flush()
    return holiday


def update_holiday(
    *, session: Session, holiday: Holiday, holiday_in: HolidayUpdate, clock: Clock
) -> Holiday:
    """Rename a calendar exception or change its kind."""
    data = holiday_in.model_dump(mode="json", exclude_unset=True)
    for field in ("kind", "name"):
        if field in data and data[field] is None:
            raise Invalid(
                "incidents.field.required",
                errors=[field_error(field, "incidents.field.required", field=field)],
                field=field,
            )
    for field, value in data.items():
        setattr(holiday, field, value)
    holiday.updated_at = clock.now()
    session.flush()
    return holiday


def delete_holiday(*, session: Session, holiday: Holiday) -> None:
    """Remove a calendar exception."""
    session.delete(holiday)
    session.flush()


# --- incidents -------------------------------------------------------------------------------


# session.info keys: how many codes the transaction expects to give out (a batch of citizen
# reports, citizen.writer), and the block it took: [year, next number, last number].
_CODES_WANTED = "incident_codes:wanted"
_CODE_BLOCK = "incident_codes:block"
_BLOCK_HOOKED = "incident_codes:hooked"


def expect_codes(*, session: Session, count: int) -> None:
    """Tell the transaction how many incidents it may still open, so it counts them up at once."""
    session.info[_CODES_WANTED] = count


def next_code(*, session: Session, year: int) -> str:
    """Give out the next public code of a year (`SC-2026-000123`), safely under concurrency."""
    block: list[int] | None = session.info.get(_CODE_BLOCK)
    if block is not None and block[0] == year and block[1] <= block[2]:
        number = block[1]
        block[1] += 1
        return f"{CODE_PREFIX}-{year}-{number:06d}"
    wanted = max(1, int(session.info.get(_CODES_WANTED, 1)))
    last = _count_up(session, year, wanted)
    if last is None:
        # The year's first incident (or a race for it): create the row, then count.
        dialect = session.get_bind().dialect.name
        if dialect in ("postgresql", "sqlite"):
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            session.execute(
                insert(IncidentSequence)
                .values(year=year, last_number=0)
                .on_conflict_do_nothing(index_elements=["year"])
            )
        elif session.get(IncidentSequence, year) is None:
            session.add(IncidentSequence(year=year, last_number=0))
            session.flush()
        last = _count_up(session, year, wanted)
    if last is None:
        raise RuntimeError(f"no incident sequence row for {year}")
    number = last - wanted + 1
    if wanted > 1:
        session.info[_CODE_BLOCK] = [year, number + 1, last]
        _give_back_unused_codes(session)
    return f"{CODE_PREFIX}-{year}-{number:06d}"


def _give_back_unused_codes(session: Session) -> None:
    # Codes stay gap-free: what a block did not use goes back before the commit. The counter's
    # row is still locked by this transaction, so nobody counted up past the block meanwhile.
    if session.info.get(_BLOCK_HOOKED):
        return
    session.info[_BLOCK_HOOKED] = True

    def before_commit(done: Session) -> None:
        if done.in_nested_transaction():
            return  # a savepoint's release: the transaction goes on
        block = done.info.pop(_CODE_BLOCK, None)
        done.info.pop(_CODES_WANTED, None)
        if block is None or block[1] > block[2]:
            return
        year, first_unused, last = block
        done.execute(
            update(IncidentSequence)
            .where(IncidentSequence.year == year, IncidentSequence.last_number == last)
            .values(last_number=first_unused - 1)
            .execution_options(synchronize_session=False)
        )

    def after_rollback(done: Session) -> None:
        done.info.pop(_CODE_BLOCK, None)
        done.info.pop(_CODES_WANTED, None)

    sa_event.listen(session, "before_commit", before_commit)
    sa_event.listen(session, "after_rollback", after_rollback)


def _count_up(session: Session, year: int, count: int = 1) -> int | None:
    # The row lock taken by this update serialises concurrent creations until commit.
    number: int | None = session.execute(
        update(IncidentSequence)
        .where(IncidentSequence.year == year)
        .values(last_number=IncidentSequence.last_number + count)
        .returning(IncidentSequence.last_number)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return number


def get(*, session: Session, incident_id: int) -> Incident | None:
    """Return an incident by id, or None."""
    return session.get(Incident, incident_id)


def get_by_code(*, session: Session, code: str) -> Incident | None:
    """Return an incident by its public code, or None."""
    return session.scalars(select(Incident).where(Incident.code == code.upper())).first()


def get_by_alert_id(*, session: Session, alert_id: int) -> Incident | None:
    """Return the incident opened for an alert, or None."""
    return session.scalars(select(Incident).where(Incident.alert_id == alert_id)).first()


def _department_members(department_code: str) -> Any:
    return select(IncidentDepartment.incident_id).where(
        IncidentDepartment.department_code == department_code
    )


def visible_to(scope: Scope) -> list[ColumnElement[bool]]:
    """SQL conditions keeping the incidents a scope reaches: its units, and its department as
    main or supporting department."""
    conditions = [scope.unit_filter(Incident.unit_code)]
    if scope.department_code is not None:
        conditions.append(Incident.id.in_(_department_members(scope.department_code)))
    return conditions


def can_see(*, scope: Scope, incident: Incident) -> bool:
    """Whether a scope reaches an incident (the same rule as `visible_to`)."""
    if not scope.covers_unit(incident.unit_code):
        return False
    return scope.department_code is None or scope.department_code in incident.department_codes


def get_visible_or_raise(*, session: Session, principal: Principal, incident_id: int) -> Incident:
    """Return an incident the caller may see; 404 otherwise (out of scope looks like absent)."""
    incident = get(session=session, incident_id=incident_id)
    if incident is None or not can_see(scope=principal.scope, incident=incident):
        raise NotFound("incidents.incident.not_found", id=incident_id)
    return incident


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """SQL condition: open and past the deadline due next (see `Incident.overdue_at`)."""
    return Incident.overdue_at < now


def is_overdue(incident: Incident, now: datetime) -> bool:
    """Whether an incident is open and past a deadline at `now` (the same rule as in SQL)."""
    return incident.overdue_at is not None and incident.overdue_at < now


def refresh_overdue_at(incident: Incident) -> None:
    """Recompute the deadline that makes an incident overdue: acknowledgement until work
    starts, then resolution; none once resolved or closed."""
    if incident.status not in OPEN_STATUSES:
        incident.overdue_at = None
    elif incident.acknowledged_at is None and incident.due_ack_at is not None:
        incident.overdue_at = incident.due_ack_at
    else:
        incident.overdue_at = incident.due_resolve_at


def set_status(incident: Incident, status: str) -> None:
    """Change an incident's status, with its copies on the department rows and its overdue
    deadline (set acknowledgement and resolution times first)."""
    incident.status = status
    for row in incident.departments:
        row.status = status
    refresh_overdue_at(incident)


# What a list shows of an incident: everything but the long text and the search form.
SUMMARY_COLUMNS = [c for c in Incident.__table__.c if c.key not in ("description", "title_folded")]


def _sort_keys(sort: str, driver: Any) -> tuple[list[Any], bool]:
    """The columns a sort orders by (ties broken by id), and whether it is descending."""
    name = SORTS[sort.lstrip("-")]
    key: Any
    if name == "severity":
        key = case(*((Incident.severity == str(s), r) for s, r in SEVERITY_RANK.items()), else_=-1)
    else:
        key = getattr(driver if name == "created_at" else Incident, name)
    tie = driver.incident_id if driver is IncidentDepartment else Incident.id
    return [key, tie], sort.startswith("-")


def search_form(title: str) -> str:
    """Return the form of a title the word index reads: its folded words, one space apart."""
    form = " ".join(words(title))
    # The column holds 300 characters: cut at a word boundary, never inside a word.
    return form if len(form) <= 300 else form[:301].rsplit(" ", 1)[0]


# The FTS5 table of the word index on SQLite (migration 0018); `rowid` is the incident's id.
_FTS = table(WORD_INDEX, column("rowid", Integer))
# Below this many matches, SQLite looks each matching incident up by id; above it, it reads the
# other filters' index (or the sort's) and checks each row against the set of matches: the first
# costs about 2 µs a match, the second stops after 50 hits of a dense set (measured, 100,000
# incidents: docs/performance.md).
_FEW_MATCHES = 1_000


@dataclass(slots=True)
class _Search:
    """A text search as a condition, and how many incidents match it when the index says."""

    condition: ColumnElement[bool]
    matches: int | None = None


def _words_match(session: Session, terms: Sequence[str]) -> _Search:
    """Incidents whose title holds every word of `terms`, the last one possibly as a prefix.

    Terms are folded words (letters and digits only), so quoting them is all the escaping
    either query language needs.
    """
    if session.get_bind().dialect.name == "sqlite":
        query = " ".join(f'"{term}"' for term in terms) + "*"
        hits = select(_FTS.c.rowid).where(literal_column(WORD_INDEX).op("MATCH")(query))
        # The index alone counts its matches, in a millisecond or two.
        matches = session.scalar(select(func.count()).select_from(hits.subquery())) or 0
        # `id + 0` hides the primary key from the planner, which otherwise always looks every
        # match up by id (then sorts them all) however many there are.
        key = Incident.id if matches <= _FEW_MATCHES else Incident.id + 0
        return _Search(key.in_(hits), int(matches))
    query = " & ".join(f"'{term}'" for term in terms) + ":*"
    # The expression of the GIN index (migration 0018: the words as a tsvector).
    document = func.incident_words(Incident.title_folded)
    return _Search(document.op("@@")(cast(literal(query), TSQUERY)))


def _search(session: Session, text: str) -> _Search:
    """The condition a free-text search sets: a code's beginning, or words of the title."""
    if CODE_QUERY.match(text):
        return _Search(Incident.code.startswith(text.upper(), autoescape=True))
    terms = words(text)
    if not terms:
        # Punctuation alone holds no word: nothing matches.
        return _Search(false(), 0)
    return _words_match(session, terms)


def get_all(
    *,
    session: Session,
    scope: Scope,
    now: datetime,
    statuses: Sequence[str] | None = None,
    unit_codes: frozenset[str] | None = None,
    department_code: str | None = None,
    sector: str | None = None,
    severities: Sequence[str] | None = None,
    category_code: str | None = None,
    source: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    overdue: bool | None = None,
    q: str | None = None,
    sort: str = "-created_at",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Return one page of the incidents a scope reaches matching the filters (as plain rows:
    the columns of a summary, `supporting_department_codes` and `overdue`), and the total.

    `department_code` matches the main or a supporting department; `created_to` is exclusive.
    With a department (asked for, or the caller's scope), the query starts from that
    department's rows, whose copies of status and creation time answer the common filters
    from one index.
    """
    departments = list(dict.fromkeys(c for c in (scope.department_code, department_code) if c))
    driver: Any = IncidentDepartment if departments else Incident
    driven: list[ColumnElement[bool]] = []
    if departments:
        driven.append(IncidentDepartment.department_code == departments[0])
    conditions: list[ColumnElement[bool]] = [
        Incident.id.in_(_department_members(code)) for code in departments[1:]
    ]
    if scope.unit_codes is not None:
        conditions.append(scope.unit_filter(Incident.unit_code))
    if statuses:
        driven.append(driver.status.in_(list(statuses)))
    if created_from is not None:
        driven.append(driver.created_at >= created_from)
    if created_to is not None:
        driven.append(driver.created_at < created_to)
    if unit_codes is not None:
        conditions.append(Incident.unit_code.in_(sorted(unit_codes)))
    if sector is not None:
        conditions.append(Incident.sector == sector)
    if severities:
        conditions.append(Incident.severity.in_(list(severities)))
    if category_code is not None:
        conditions.append(Incident.category_code == category_code)
    if source is not None:
        conditions.append(Incident.source == source)
    if overdue is not None:
        conditions.append(
            overdue_condition(now)
            if overdue
            else or_(Incident.overdue_at.is_(None), Incident.overdue_at >= now)
        )
    text = (q or "").strip()
    search = _search(session, text) if text else None
    if search is not None:
        if search.matches == 0:
            return [], 0
        conditions.append(search.condition)
    return _page(session, driver, departments, driven, conditions, search, sort, now, limit, offset)


def _page(
    session: Session,
    driver: Any,
    departments: list[str],
    driven: list[ColumnElement[bool]],
    conditions: list[ColumnElement[bool]],
    search: _Search | None,
    sort: str,
    now: datetime,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Run the list's queries: one page of rows, and the total."""
    keys, descending = _sort_keys(sort, driver)
    # Only the sort's own table is read when nothing else asks for the incident: a department's
    # list is then answered from its covering index alone.
    joined = departments and (bool(conditions) or sort.lstrip("-") != "created_at")
    # The page's ids first (from indexes where they suffice), then only those rows: skipped
    # rows of a deep page and sorted-out candidates are never fetched whole.
    # Words found by the index (SQLite): alone, the index has counted them; with other filters,
    # the page's query counts its rows too, so the set of matches is built once, not twice.
    indexed = search is not None and search.matches is not None
    alone = indexed and not driven and len(conditions) == 1
    counted = indexed and not alone
    ids = select(
        *(k.label(f"k{i}") for i, k in enumerate(keys)),
        *([func.count().over().label("matches")] if counted else []),
    ).select_from(driver)
    if joined:
        ids = ids.join(Incident, Incident.id == IncidentDepartment.incident_id)
    ordered = [k.desc() if descending else k.asc() for k in keys]
    chosen = ids.where(*driven, *conditions).order_by(*ordered).limit(limit).offset(offset)
    page = chosen.subquery("page")
    columns = [page.c[f"k{i}"] for i in range(len(keys))]
    # Plain rows, not ORM objects: a list never needs identity tracking, and rows cost a third.
    rows = session.execute(
        select(*SUMMARY_COLUMNS, *([page.c.matches] if counted else []))
        .join(page, Incident.id == columns[-1])
        .order_by(*(c.desc() if descending else c.asc() for c in columns))
    ).all()
    supporting: dict[int, list[str]] = {}
    if rows:
        for incident_id, code in session.execute(
            select(IncidentDepartment.incident_id, IncidentDepartment.department_code)
            .where(
                IncidentDepartment.incident_id.in_([row.id for row in rows]),
                IncidentDepartment.role != str(DepartmentRole.MAIN),
            )
            .order_by(IncidentDepartment.department_code)
        ):
            supporting.setdefault(incident_id, []).append(code)
    items = [
        {
            **{key: value for key, value in row._mapping.items() if key != "matches"},
            "supporting_department_codes": supporting.get(row.id, []),
            "overdue": row.overdue_at is not None and row.overdue_at < now,
        }
        for row in rows
    ]
    if offset == 0 and len(items) < limit:
        return items, len(items)
    if alone and search is not None and search.matches is not None:
        return items, search.matches
    if counted and rows:
        return items, int(rows[0].matches)
    count = select(func.count()).select_from(driver)
    if departments and conditions:
        count = count.join(Incident, Incident.id == IncidentDepartment.incident_id)
    total = session.scalar(count.where(*driven, *conditions)) or 0
    return items, int(total)


@dataclass(slots=True)
class NewIncident:
    """Everything needed to insert an incident (flows decides the values)."""

    code: str
    title: str
    description: str | None
    category_code: str
    sector: str | None
    severity: str
    status: str
    source: str
    alert_id: int | None
    source_ref: str | None
    lat: float | None
    lon: float | None
    unit_code: str | None
    department_code: str | None
    supporting_department_codes: Sequence[str]
    assignee_id: int | None
    created_by: int | None
    created_at: datetime
    due_ack_at: datetime | None
    due_resolve_at: datetime | None


def create(*, session: Session, incident_in: NewIncident) -> Incident:
    """Insert an incident with its departments."""
    incident = new(incident_in)
    session.add(incident)
    session.flush()
    return incident


def insert_many(
    *,
    session: Session,
    incidents: Sequence[Incident],
    entries: Sequence[TimelineEntry],
    now: datetime,
    requests: Sequence[Any] | None = None,
) -> None:
    """Insert new incidents (from `new`), their departments and one timeline entry each (same
    order), a statement per table for all of them, with their audit rows (naming each one's
    request, when `requests` gives them)."""
    insert_objects(session, incidents)
    departments = [row for incident in incidents for row in incident.departments]
    for incident, entry in zip(incidents, entries, strict=True):
        for row in incident.departments:
            row.incident_id = incident.id
        entry.incident_id = incident.id
    insert_objects(session, departments)
    insert_objects(session, entries)
    audited = [row for incident in incidents for row in (incident, *incident.departments)]
    asked = (
        [
            request
            for incident, request in zip(incidents, requests, strict=True)
            for _ in range(1 + len(incident.departments))
        ]
        if requests is not None
        else []
    )
    audit_inserted(session, audited, now, requests=asked)


def new(incident_in: NewIncident) -> Incident:
    """Return a new incident with its departments, not yet in any session."""
    incident = Incident(
        code=incident_in.code,
        title=incident_in.title,
        title_folded=search_form(incident_in.title),
        description=incident_in.description,
        category_code=incident_in.category_code,
        sector=incident_in.sector,
        severity=incident_in.severity,
        status=incident_in.status,
        source=incident_in.source,
        alert_id=incident_in.alert_id,
        source_ref=incident_in.source_ref,
        lat=incident_in.lat,
        lon=incident_in.lon,
        unit_code=incident_in.unit_code,
        department_code=None,
        assignee_id=incident_in.assignee_id,
        created_by=incident_in.created_by,
        created_at=incident_in.created_at,
        updated_at=incident_in.created_at,
        due_ack_at=incident_in.due_ack_at,
        due_resolve_at=incident_in.due_resolve_at,
        ack_breached=False,
        resolve_breached=False,
        escalation_level=0,
    )
    refresh_overdue_at(incident)
    set_departments(
        incident=incident,
        main=incident_in.department_code,
        supporting=incident_in.supporting_department_codes,
    )
    return incident


def set_departments(*, incident: Incident, main: str | None, supporting: Sequence[str]) -> None:
    """Make `main` the main department and `supporting` the supporting ones (replacing both)."""
    wanted: dict[str, str] = {code: str(DepartmentRole.SUPPORT) for code in supporting}
    if main is not None:
        wanted[main] = str(DepartmentRole.MAIN)
    keep: list[IncidentDepartment] = []
    for row in incident.departments:
        if row.department_code in wanted:
            row.role = wanted.pop(row.department_code)
            keep.append(row)
    keep.extend(
        IncidentDepartment(
            department_code=code,
            role=role,
            status=incident.status,
            created_at=incident.created_at,
        )
        for code, role in wanted.items()
    )
    incident.departments = keep
    incident.department_code = main


def set_title(incident: Incident, title: str) -> None:
    """Change an incident's title (and its search form)."""
    incident.title = title
    incident.title_folded = search_form(title)


def new_entry(
    *,
    incident: Incident,
    at: datetime,
    kind: str,
    actor: Principal | None,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    actor_name: str | None = None,
) -> TimelineEntry:
    """Return a timeline entry of an incident, not yet in any session."""
    return TimelineEntry(
        incident_id=incident.id,
        at=at,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        actor_kind=actor.kind if actor is not None else "system",
        actor_id=actor.id if actor is not None and actor.kind != "system" else None,
        actor_name=(actor_name or (actor.name if actor is not None else "system"))[:64],
        note=note,
        data=data or {},
    )


def add_entry(
    *,
    session: Session,
    incident: Incident,
    at: datetime,
    kind: str,
    actor: Principal | None,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    actor_name: str | None = None,
) -> TimelineEntry:
    """Append one entry to an incident's timeline."""
    entry = new_entry(
        incident=incident,
        at=at,
        kind=kind,
        actor=actor,
        from_status=from_status,
        to_status=to_status,
        note=note,
        data=data,
        actor_name=actor_name,
    )
    session.add(entry)
    session.flush()
    return entry


def get_timeline(*, session: Session, incident_id: int) -> list[TimelineEntry]:
    """Return an incident's timeline, oldest first."""
    rows = session.scalars(
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id)
        .order_by(TimelineEntry.id)
    ).all()
    return list(rows)


def create_comment(
    *,
    session: Session,
    incident: Incident,
    author: Principal,
    body: str,
    public: bool,
    at: datetime,
) -> IncidentComment:
    """Add a comment to an incident."""
    comment = IncidentComment(
        incident_id=incident.id,
        author_id=author.id if author.kind != "system" else None,
        author_name=author.name[:64],
        body=body,
        public=public,
        created_at=at,
    )
    session.add(comment)
    session.flush()
    return comment


def get_comments(*, session: Session, incident_id: int) -> list[IncidentComment]:
    """Return an incident's comments, oldest first."""
    rows = session.scalars(
        select(IncidentComment)
        .where(IncidentComment.incident_id == incident_id)
        .order_by(IncidentComment.id)
    ).all()
    return list(rows)


def create_attachment(
    *,
    session: Session,
    incident: Incident,
    file_name: str,
    content_type: str,
    size: int,
    sha256: str,
    uploader: Principal,
    at: datetime,
) -> IncidentAttachment:
    """Record a stored file as an attachment of an incident."""
    attachment = IncidentAttachment(
        incident_id=incident.id,
        file_name=file_name,
        content_type=content_type,
        size=size,
        sha256=sha256,
        uploaded_by=uploader.id if uploader.kind != "system" else None,
        uploaded_by_name=uploader.name[:64],
        created_at=at,
    )
    session.add(attachment)
    session.flush()
    return attachment


def get_attachment(
    *, session: Session, incident_id: int, attachment_id: int
) -> IncidentAttachment | None:
    """Return an attachment of an incident, or None."""
    attachment = session.get(IncidentAttachment, attachment_id)
    if attachment is None or attachment.incident_id != incident_id:
        return None
    return attachment


def get_attachments(*, session: Session, incident_id: int) -> list[IncidentAttachment]:
    """Return an incident's attachments, oldest first."""
    rows = session.scalars(
        select(IncidentAttachment)
        .where(IncidentAttachment.incident_id == incident_id)
        .order_by(IncidentAttachment.id)
    ).all()
    return list(rows)


def get_attachments_by_sha256(
    *, session: Session, sha256s: Sequence[str]
) -> list[IncidentAttachment]:
    """Return every attachment, of any incident, whose content has one of these SHA-256s."""
    if not sha256s:
        return []
    rows = session.scalars(
        select(IncidentAttachment)
        .where(IncidentAttachment.sha256.in_(list(sha256s)))
        .order_by(IncidentAttachment.id)
    ).all()
    return list(rows)


def delete_attachment(*, session: Session, attachment: IncidentAttachment) -> None:
    """Remove an attachment's record (its file is the caller's business: others may share it)."""
    session.delete(attachment)
    session.flush()


def get_due_for_ack(*, session: Session, now: datetime, limit: int) -> list[Incident]:
    """Return open incidents not started past their acknowledgement deadline, not yet marked."""
    rows = session.scalars(
        select(Incident)
        .where(
            Incident.ack_breached.is_(False),
            Incident.due_ack_at <= now,
            Incident.acknowledged_at.is_(None),
            Incident.status.in_([str(s) for s in OPEN_STATUSES]),
        )
        .order_by(Incident.due_ack_at, Incident.id)
        .limit(limit)
    ).all()
    return list(rows)


def get_due_for_resolve(*, session: Session, now: datetime, limit: int) -> list[Incident]:
    """Return open incidents past their resolution deadline, not yet marked."""
    rows = session.scalars(
        select(Incident)
        .where(
            Incident.resolve_breached.is_(False),
            Incident.due_resolve_at <= now,
            Incident.status.in_([str(s) for s in OPEN_STATUSES]),
        )
        .order_by(Incident.due_resolve_at, Incident.id)
        .limit(limit)
    ).all()
    return list(rows)


# --- SLA report ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    total: int = 0
    acknowledged: int = 0
    ack_on_time: int = 0
    ack_late_open: int = 0
    resolved: int = 0
    resolved_on_time: int = 0
    overdue_open: int = 0
    minutes: list[float] = dataclasses.field(default_factory=list)


def _rate(hits: int, decided: int) -> float | None:
    return round(hits / decided, 4) if decided else None


def _row(key: str | None, name: str | None, tally: _Tally) -> dict[str, Any]:
    return {
        "key": key,
        "name": name,
        "total": tally.total,
        "acknowledged": tally.acknowledged,
        "ack_on_time": tally.ack_on_time,
        "ack_on_time_rate": _rate(tally.ack_on_time, tally.acknowledged + tally.ack_late_open),
        "resolved": tally.resolved,
        "resolved_on_time": tally.resolved_on_time,
        "overdue_open": tally.overdue_open,
        "on_time_rate": _rate(tally.resolved_on_time, tally.resolved + tally.overdue_open),
        "median_minutes_to_resolve": (
            round(statistics.median(tally.minutes), 1) if tally.minutes else None
        ),
    }


def sla_report(
    *,
    session: Session,
    scope: Scope,
    group_by: str,
    start: datetime,
    end: datetime,
    now: datetime,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return SLA figures per main department or unit for incidents created in [start, end).

    Resolution is on time when resolved no later than its deadline; acknowledgement when work
    started no later than its deadline. Deadlines still running are not counted either way.
    """
    key_column = Incident.department_code if group_by == "department" else Incident.unit_code
    rows = session.execute(
        select(
            key_column,
            Incident.status,
            Incident.created_at,
            Incident.acknowledged_at,
            Incident.resolved_at,
            Incident.due_ack_at,
            Incident.due_resolve_at,
        ).where(*visible_to(scope), Incident.created_at >= start, Incident.created_at < end)
    ).all()
    tallies: dict[str | None, _Tally] = {}
    overall = _Tally()
    for key, status, created, acked, resolved, due_ack, due_resolve in rows:
        open_ = status in OPEN_STATUSES and resolved is None
        for tally in (tallies.setdefault(key, _Tally()), overall):
            tally.total += 1
            if acked is not None:
                tally.acknowledged += 1
                if due_ack is None or acked <= due_ack:
                    tally.ack_on_time += 1
            elif open_ and due_ack is not None and due_ack < now:
                tally.ack_late_open += 1
            if resolved is not None:
                tally.resolved += 1
                if due_resolve is None or resolved <= due_resolve:
                    tally.resolved_on_time += 1
                tally.minutes.append((resolved - created).total_seconds() / 60)
            elif open_ and due_resolve is not None and due_resolve < now:
                tally.overdue_open += 1
    out = []
    for key in sorted(tallies, key=lambda k: (k is None, k or "")):
        name: str | None = None
        if key is not None and group_by == "department":
            department = unit_service.get_department(session=session, department_code=key)
            name = department.name if department is not None else None
        elif key is not None:
            unit = unit_service.get(session=session, unit_code=key)
            name = unit.name if unit is not None else None
        out.append(_row(key, name, tallies[key]))
    return out, _row(None, None, overall)
