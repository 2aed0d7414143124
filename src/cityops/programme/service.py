"""Database work of the programme context: phases, items, budget lines, milestones, and the
board's views (responsibility matrix, roadmap, budget split, late items, progress).

Services flush, never commit; the caller (request, command, seed) owns the transaction.
The views aggregate in SQL (sums, counts, the late-milestone condition); percentages and day
counts are finished in Python, where date arithmetic is the same on every database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, lazyload

from cityops.core.clock import Clock
from cityops.core.errors import Conflict, Invalid, NotFound
from cityops.programme.enums import CLOSED_STATUSES, BudgetSource, ItemStatus, ProgressBy, Role
from cityops.programme.models import (
    ProgrammeBudget,
    ProgrammeItem,
    ProgrammeItemDepartment,
    ProgrammeItemUnit,
    ProgrammeMilestone,
    ProgrammePhase,
)
from cityops.programme.schemas import (
    BudgetLineIn,
    ItemCreate,
    ItemUpdate,
    MilestoneCreate,
    MilestoneUpdate,
    PhaseCreate,
    PhaseUpdate,
)
from cityops.units import service as unit_service

MAX_ROWS = 10_000  # views and exports are bounded like every list


def field_error(field: str, key: str, /, **params: Any) -> dict[str, Any]:
    """Describe one field's problem by message key; the edge renders it in the caller's language."""
    return {"field": field, "in": "body", "key": key, "params": params}


def _invalid(problems: list[dict[str, Any]]) -> Invalid:
    return Invalid("programme.invalid", errors=problems, count=len(problems))


# --- reference data ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class References:
    """What programme rows may point at: phases (with their years), sectors, departments,
    units and areas (an area stands for its member units in imports)."""

    phases: dict[str, tuple[int, int]]
    sectors: frozenset[str]
    departments: frozenset[str]
    units: frozenset[str]
    areas: dict[str, frozenset[str]] = field(default_factory=dict)


def get_references(
    *, session: Session, unit_codes: Iterable[str] | None = None, with_areas: bool = False
) -> References:
    """Load the reference data; units only those named (or all when `unit_codes` is None)."""
    phases = {
        code: (start, end)
        for code, start, end in session.execute(
            select(ProgrammePhase.code, ProgrammePhase.start_year, ProgrammePhase.end_year)
        )
    }
    departments, _ = unit_service.get_all_departments(session=session, limit=MAX_ROWS)
    sectors = frozenset(s for d in departments for s in d.sectors)
    if unit_codes is None:
        units, _ = unit_service.get_all(session=session, on=None, limit=1_000_000)
        known = frozenset(u.code for u in units)
    else:
        known = frozenset(
            code
            for code in set(unit_codes)
            if unit_service.get(session=session, unit_code=code) is not None
        )
    areas: dict[str, frozenset[str]] = {}
    if with_areas:
        rows, _ = unit_service.get_all_areas(session=session, limit=MAX_ROWS)
        areas = {a.code: frozenset(a.unit_codes) for a in rows}
    return References(
        phases=phases,
        sectors=sectors,
        departments=frozenset(d.code for d in departments),
        units=known,
        areas=areas,
    )


# --- checks shared by the API and the import ---------------------------------------------------


@dataclass(slots=True)
class ItemValues:
    """The values of an item as they will be written (lists None: leave as they are)."""

    name: str
    name_en: str | None
    description: str | None
    phase_code: str
    sector: str
    owner_department_code: str
    status: str
    progress: int
    start_date: date | None
    end_date: date | None
    supporting_department_codes: list[str] | None = None
    unit_codes: list[str] | None = None


def years_fit(years: tuple[int, int], *days: date | None) -> bool:
    """Whether every given date falls within a phase's years."""
    return all(d is None or years[0] <= d.year <= years[1] for d in days)


def check_item(*, refs: References, values: ItemValues) -> list[dict[str, Any]]:
    """Return the problems of an item's values (empty when it may be written)."""
    problems: list[dict[str, Any]] = []
    years = refs.phases.get(values.phase_code)
    if years is None:
        problems.append(
            field_error("phase_code", "programme.phase.unknown", code=values.phase_code)
        )
    if values.sector not in refs.sectors:
        problems.append(field_error("sector", "programme.sector.unknown", sector=values.sector))
    if values.owner_department_code not in refs.departments:
        problems.append(
            field_error(
                "owner_department_code",
                "programme.department.unknown",
                code=values.owner_department_code,
            )
        )
    for i, code in enumerate(values.supporting_department_codes or ()):
        if code not in refs.departments:
            problems.append(
                field_error(
                    f"supporting_department_codes[{i}]", "programme.department.unknown", code=code
                )
            )
        elif code == values.owner_department_code:
            problems.append(
                field_error(
                    f"supporting_department_codes[{i}]", "programme.item.owner_supports", code=code
                )
            )
    for i, code in enumerate(values.unit_codes or ()):
        if code not in refs.units:
            problems.append(field_error(f"unit_codes[{i}]", "programme.unit.unknown", code=code))
    if values.status not in set(ItemStatus):
        problems.append(field_error("status", "programme.item.bad_status", value=values.status))
    if not 0 <= values.progress <= 100:
        problems.append(field_error("progress", "programme.item.bad_progress"))
    elif values.status == ItemStatus.DONE and values.progress != 100:
        problems.append(field_error("progress", "programme.item.done_not_full"))
    if values.start_date and values.end_date and values.start_date > values.end_date:
        problems.append(field_error("end_date", "programme.item.dates_reversed"))
    if years is not None:
        for name in ("start_date", "end_date"):
            day = getattr(values, name)
            if not years_fit(years, day):
                problems.append(
                    field_error(
                        name,
                        "programme.item.outside_phase",
                        value=day.isoformat(),
                        phase=values.phase_code,
                        start=years[0],
                        end=years[1],
                    )
                )
    return problems


def check_budget_lines(
    *, years: tuple[int, int] | None, phase_code: str, lines: Sequence[BudgetLineIn], prefix: str
) -> list[dict[str, Any]]:
    """Return the problems of an item's budget lines: years outside the phase, duplicates."""
    problems: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    for i, line in enumerate(lines):
        key = (line.year, str(line.source))
        if key in seen:
            problems.append(
                field_error(
                    f"{prefix}[{i}]",
                    "programme.budget.duplicate",
                    year=line.year,
                    source=str(line.source),
                )
            )
        seen.add(key)
        if years is not None and not years[0] <= line.year <= years[1]:
            problems.append(
                field_error(
                    f"{prefix}[{i}].year",
                    "programme.budget.outside_phase",
                    year=line.year,
                    phase=phase_code,
                    start=years[0],
                    end=years[1],
                )
            )
    return problems


def check_milestones(*, milestones: Sequence[MilestoneCreate], prefix: str) -> list[dict[str, Any]]:
    """Return the problems of an item's milestones: names given twice."""
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, milestone in enumerate(milestones):
        if milestone.name in seen:
            problems.append(
                field_error(
                    f"{prefix}[{i}].name", "programme.milestone.duplicate", name=milestone.name
                )
            )
        seen.add(milestone.name)
    return problems


# --- phases ------------------------------------------------------------------------------------


def get_phase(*, session: Session, phase_code: str) -> ProgrammePhase | None:
    """Return a phase by code, or None."""
    return session.get(ProgrammePhase, phase_code)


def get_phase_or_raise(*, session: Session, phase_code: str) -> ProgrammePhase:
    """Return a phase by code, or raise 404."""
    phase = get_phase(session=session, phase_code=phase_code)
    if phase is None:
        raise NotFound("programme.phase.not_found", code=phase_code)
    return phase


def get_all_phases(*, session: Session) -> list[ProgrammePhase]:
    """Return every phase, oldest first."""
    rows = session.scalars(
        select(ProgrammePhase).order_by(ProgrammePhase.start_year, ProgrammePhase.code)
    )
    return list(rows)


def create_phase(*, session: Session, phase_in: PhaseCreate, clock: Clock) -> ProgrammePhase:
    """Create a phase."""
    if get_phase(session=session, phase_code=phase_in.code) is not None:
        raise Conflict("programme.phase.exists", code=phase_in.code)
    now = clock.now()
    phase = ProgrammePhase(**phase_in.model_dump(), created_at=now, updated_at=now)
    session.add(phase)
    session.flush()
    return phase


def _phase_misfits(*, session: Session, phase: ProgrammePhase) -> list[str]:
    """Return the codes of the phase's items whose dates or budget years fall outside it."""
    start, end = phase.start_year, phase.end_year
    outside_dates = or_(
        func.coalesce(ProgrammeItem.start_date, date(start, 1, 1)) < date(start, 1, 1),
        func.coalesce(ProgrammeItem.end_date, date(end, 12, 31)) > date(end, 12, 31),
    )
    outside_budget = exists().where(
        ProgrammeBudget.item_id == ProgrammeItem.id,
        or_(ProgrammeBudget.year < start, ProgrammeBudget.year > end),
    )
    rows = session.scalars(
        select(ProgrammeItem.code)
        .where(ProgrammeItem.phase_code == phase.code, or_(outside_dates, outside_budget))
        .order_by(ProgrammeItem.code)
    )
    return list(rows)


def set_phase_values(*, phase: ProgrammePhase, values: dict[str, Any]) -> bool:
    """Copy values onto a phase; return whether anything changed."""
    changed = False
    for name, value in values.items():
        if getattr(phase, name) != value:
            setattr(phase, name, value)
            changed = True
    return changed


def check_phase_fits(*, session: Session, phase: ProgrammePhase) -> None:
    """Raise 422 if any item of the phase has dates or budget years outside its years."""
    misfits = _phase_misfits(session=session, phase=phase)
    if misfits:
        raise Invalid(
            "programme.phase.items_outside",
            errors=[
                field_error(
                    "start_year",
                    "programme.phase.items_outside",
                    codes=", ".join(misfits[:20]),
                    start=phase.start_year,
                    end=phase.end_year,
                )
            ],
            codes=", ".join(misfits[:20]),
            start=phase.start_year,
            end=phase.end_year,
        )


def update_phase(
    *, session: Session, phase: ProgrammePhase, phase_in: PhaseUpdate, clock: Clock
) -> ProgrammePhase:
    """Update a phase; its items' dates and budget years must still fall within its years."""
    data = phase_in.model_dump(exclude_unset=True)
    for name in ("name", "start_year", "end_year"):
        if name in data and data[name] is None:
            raise _invalid([field_error(name, "programme.field.required", field=name)])
    start = data.get("start_year", phase.start_year)
    end = data.get("end_year", phase.end_year)
    if end < start:
        raise _invalid([field_error("end_year", "programme.phase.years_reversed")])
    if "planned_recurrent_pct" in data and data["planned_recurrent_pct"] is None:
        data.pop("planned_recurrent_pct")
        data.pop("planned_investment_pct", None)
    if set_phase_values(phase=phase, values=data):
        phase.updated_at = clock.now()
        session.flush()
        check_phase_fits(session=session, phase=phase)
    return phase


def delete_phase(*, session: Session, phase: ProgrammePhase) -> None:
    """Delete a phase that has no items."""
    count = session.scalar(select(func.count()).where(ProgrammeItem.phase_code == phase.code))
    if count:
        raise Conflict("programme.phase.in_use", code=phase.code, count=count)
    session.delete(phase)
    session.flush()


# --- items -------------------------------------------------------------------------------------


def get(*, session: Session, item_id: int) -> ProgrammeItem | None:
    """Return an item by id, or None."""
    return session.get(ProgrammeItem, item_id)


def get_by_code(*, session: Session, code: str) -> ProgrammeItem | None:
    """Return an item by its code, or None."""
    return session.scalars(select(ProgrammeItem).where(ProgrammeItem.code == code)).first()


def get_by_code_or_raise(*, session: Session, code: str) -> ProgrammeItem:
    """Return an item by its code, or raise 404."""
    item = get_by_code(session=session, code=code)
    if item is None:
        raise NotFound("programme.item.not_found", code=code)
    return item


def get_by_codes(*, session: Session, codes: Iterable[str]) -> dict[str, ProgrammeItem]:
    """Return the items with these codes, by code."""
    wanted = sorted(set(codes))
    found: dict[str, ProgrammeItem] = {}
    # Chunks keep the IN list under every database's parameter limit.
    for start in range(0, len(wanted), 500):
        rows = session.scalars(
            select(ProgrammeItem).where(ProgrammeItem.code.in_(wanted[start : start + 500]))
        )
        found.update((item.code, item) for item in rows)
    return found


def late_condition(today: date) -> ColumnElement[bool]:
    """A SQL condition keeping milestones late on a date (due before it, not done, item open)."""
    return and_(
        ProgrammeMilestone.done_date.is_(None),
        ProgrammeMilestone.due_date < today,
        ProgrammeItem.status.not_in([str(s) for s in CLOSED_STATUSES]),
    )


def _item_is_late(today: date) -> ColumnElement[bool]:
    return exists().where(ProgrammeMilestone.item_id == ProgrammeItem.id, late_condition(today))


def _item_filters(
    *,
    phase_code: str | None = None,
    sector: str | None = None,
    department_code: str | None = None,
    owner_department_code: str | None = None,
    status: str | None = None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if phase_code:
        conditions.append(ProgrammeItem.phase_code == phase_code)
    if sector:
        conditions.append(ProgrammeItem.sector == sector)
    if owner_department_code:
        conditions.append(ProgrammeItem.owner_department_code == owner_department_code)
    if department_code:
        supporting = select(ProgrammeItemDepartment.item_id).where(
            ProgrammeItemDepartment.department_code == department_code
        )
        conditions.append(
            or_(
                ProgrammeItem.owner_department_code == department_code,
                ProgrammeItem.id.in_(supporting),
            )
        )
    if status:
        conditions.append(ProgrammeItem.status == status)
    return conditions


def get_all(
    *,
    session: Session,
    today: date,
    phase_code: str | None = None,
    sector: str | None = None,
    department_code: str | None = None,
    owner_department_code: str | None = None,
    status: str | None = None,
    late: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[ProgrammeItem], int]:
    """Return one page of items and how many match in all.

    `department_code` keeps items the department owns or supports; `owner_department_code`
    only those it owns; `late` keeps items with (or without) a milestone late on `today`.
    """
    conditions = _item_filters(
        phase_code=phase_code,
        sector=sector,
        department_code=department_code,
        owner_department_code=owner_department_code,
        status=status,
    )
    if late is not None:
        conditions.append(_item_is_late(today) if late else not_(_item_is_late(today)))
    total = session.scalar(select(func.count()).select_from(ProgrammeItem).where(*conditions))
    rows = session.scalars(
        select(ProgrammeItem)
        .where(*conditions)
        .order_by(ProgrammeItem.phase_code, ProgrammeItem.code)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total or 0)


@dataclass(frozen=True, slots=True)
class ItemStats:
    """Budget totals and lateness of one item."""

    allocated: int = 0
    disbursed: int = 0
    days_late: int | None = None


def get_item_stats(
    *, session: Session, item_ids: Sequence[int], today: date
) -> dict[int, ItemStats]:
    """Return the budget totals and days late (oldest late milestone) of items."""
    if not item_ids:
        return {}
    ids = list(item_ids)
    money: dict[int, tuple[int, int]] = {}
    for item_id, allocated, disbursed in session.execute(
        select(
            ProgrammeBudget.item_id,
            func.sum(ProgrammeBudget.allocated),
            func.sum(ProgrammeBudget.disbursed),
        )
        .where(ProgrammeBudget.item_id.in_(ids))
        .group_by(ProgrammeBudget.item_id)
    ):
        # PostgreSQL sums BIGINT as NUMERIC: back to int.
        money[item_id] = (int(allocated or 0), int(disbursed or 0))
    oldest: dict[int, date] = {}
    for item_id, due in session.execute(
        select(ProgrammeMilestone.item_id, func.min(ProgrammeMilestone.due_date))
        .join(ProgrammeItem, ProgrammeItem.id == ProgrammeMilestone.item_id)
        .where(ProgrammeMilestone.item_id.in_(ids), late_condition(today))
        .group_by(ProgrammeMilestone.item_id)
    ):
        oldest[item_id] = due
    return {
        item_id: ItemStats(
            allocated=money.get(item_id, (0, 0))[0],
            disbursed=money.get(item_id, (0, 0))[1],
            days_late=(today - oldest[item_id]).days if item_id in oldest else None,
        )
        for item_id in ids
    }


def _dedupe(codes: Iterable[str]) -> list[str]:
    return sorted(set(codes))


def set_unit_codes(*, item: ProgrammeItem, unit_codes: Sequence[str]) -> bool:
    """Replace the participating units; return whether the list changed."""
    wanted = _dedupe(unit_codes)
    if wanted == item.unit_codes:
        return False
    keep = [row for row in item.unit_rows if row.unit_code in wanted]
    have = {row.unit_code for row in keep}
    item.unit_rows = keep + [ProgrammeItemUnit(unit_code=c) for c in wanted if c not in have]
    return True


def set_supporting_departments(*, item: ProgrammeItem, department_codes: Sequence[str]) -> bool:
    """Replace the supporting departments; return whether the list changed."""
    wanted = _dedupe(department_codes)
    if wanted == item.supporting_department_codes:
        return False
    keep = [row for row in item.department_rows if row.department_code in wanted]
    have = {row.department_code for row in keep}
    item.department_rows = keep + [
        ProgrammeItemDepartment(department_code=c) for c in wanted if c not in have
    ]
    return True


_SCALARS = (
    "name",
    "name_en",
    "description",
    "phase_code",
    "sector",
    "owner_department_code",
    "status",
    "progress",
    "start_date",
    "end_date",
)


def write_item(
    *,
    session: Session,
    item: ProgrammeItem | None,
    code: str,
    values: ItemValues,
    clock: Clock,
    flush: bool = True,
) -> tuple[ProgrammeItem, bool]:
    """Create an item or bring an existing one to these (checked) values.

    Returns the item and whether anything was created or changed. Bulk callers pass
    `flush=False` and flush once after the last item.
    """
    now = clock.now()
    changed = item is None
    if item is None:
        item = ProgrammeItem(code=code, created_at=now, updated_at=now)
        item.unit_rows = []
        item.department_rows = []
        session.add(item)
    for name in _SCALARS:
        value = getattr(values, name)
        if getattr(item, name) != value:
            setattr(item, name, value)
            changed = True
    if values.unit_codes is not None:
        changed = set_unit_codes(item=item, unit_codes=values.unit_codes) or changed
    if values.supporting_department_codes is not None:
        changed = (
            set_supporting_departments(
                item=item, department_codes=values.supporting_department_codes
            )
            or changed
        )
    if changed:
        item.updated_at = now
    if flush:
        session.flush()
    return item, changed


def values_of(item: ProgrammeItem) -> ItemValues:
    """Return an item's current values."""
    return ItemValues(
        **{name: getattr(item, name) for name in _SCALARS},
        supporting_department_codes=item.supporting_department_codes,
        unit_codes=item.unit_codes,
    )


def create(*, session: Session, item_in: ItemCreate, clock: Clock) -> ProgrammeItem:
    """Create an item with its units, supporting departments, budget lines and milestones."""
    if get_by_code(session=session, code=item_in.code) is not None:
        raise Conflict("programme.item.exists", code=item_in.code)
    refs = get_references(session=session, unit_codes=item_in.unit_codes)
    values = ItemValues(
        **item_in.model_dump(
            include={*_SCALARS, "supporting_department_codes", "unit_codes"}, mode="python"
        )
    )
    values.status = str(item_in.status)
    problems = check_item(refs=refs, values=values)
    problems += check_budget_lines(
        years=refs.phases.get(values.phase_code),
        phase_code=values.phase_code,
        lines=item_in.budget,
        prefix="budget",
    )
    problems += check_milestones(milestones=item_in.milestones, prefix="milestones")
    if problems:
        raise _invalid(problems)
    item, _ = write_item(session=session, item=None, code=item_in.code, values=values, clock=clock)
    replace_budget(session=session, item=item, lines=item_in.budget)
    replace_milestones(session=session, item=item, milestones=item_in.milestones)
    return item


def update(
    *, session: Session, item: ProgrammeItem, item_in: ItemUpdate, clock: Clock
) -> ProgrammeItem:
    """Update an item; lists, when given, replace the old ones."""
    data = item_in.model_dump(exclude_unset=True)
    required = ("name", "phase_code", "sector", "owner_department_code", "status", "progress")
    missing = [name for name in required if name in data and data[name] is None]
    if missing:
        raise _invalid(
            [field_error(name, "programme.field.required", field=name) for name in missing]
        )
    values = values_of(item)
    for name, value in data.items():
        setattr(values, name, str(value) if name == "status" else value)
    refs = get_references(session=session, unit_codes=values.unit_codes or [])
    problems = check_item(refs=refs, values=values)
    years = refs.phases.get(values.phase_code)
    if years is not None and values.phase_code != item.phase_code:
        lines = get_budget_lines(session=session, item=item)
        if any(not years[0] <= line.year <= years[1] for line in lines):
            problems.append(
                field_error(
                    "phase_code",
                    "programme.item.budget_outside_phase",
                    phase=values.phase_code,
                    start=years[0],
                    end=years[1],
                )
            )
    if problems:
        raise _invalid(problems)
    item, _ = write_item(session=session, item=item, code=item.code, values=values, clock=clock)
    return item


def delete(*, session: Session, item: ProgrammeItem) -> None:
    """Delete an item with its budget lines, milestones and links."""
    session.delete(item)
    session.flush()


# --- budget lines ------------------------------------------------------------------------------


def get_budget_lines(*, session: Session, item: ProgrammeItem) -> list[ProgrammeBudget]:
    """Return an item's budget lines by year, then source."""
    rows = session.scalars(
        select(ProgrammeBudget)
        .where(ProgrammeBudget.item_id == item.id)
        .order_by(ProgrammeBudget.year, ProgrammeBudget.source)
    )
    return list(rows)


@dataclass(slots=True)
class Changes:
    """How many rows a replacement created, updated, left alone and deleted."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0


def _chunks(ids: Sequence[int], size: int = 500) -> Iterator[list[int]]:
    # Chunks keep IN lists under every database's parameter limit.
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def replace_budgets(
    *, session: Session, lines_by_item: Mapping[int, Sequence[BudgetLineIn]]
) -> Changes:
    """Make each item's budget lines exactly the given (checked) lines, touching only what
    differs: one read per 500 items and one flush, however many items."""
    out = Changes()
    existing: dict[int, dict[tuple[int, str], ProgrammeBudget]] = {}
    for chunk in _chunks(list(lines_by_item)):
        for line_row in session.scalars(
            select(ProgrammeBudget).where(ProgrammeBudget.item_id.in_(chunk))
        ):
            existing.setdefault(line_row.item_id, {})[(line_row.year, line_row.source)] = line_row
    for item_id, lines in lines_by_item.items():
        have = existing.get(item_id, {})
        for line in lines:
            key = (line.year, str(line.source))
            row = have.pop(key) if key in have else None
            if row is None:
                session.add(
                    ProgrammeBudget(
                        item_id=item_id,
                        year=line.year,
                        source=str(line.source),
                        allocated=line.allocated,
                        disbursed=line.disbursed,
                    )
                )
                out.created += 1
            elif (row.allocated, row.disbursed) != (line.allocated, line.disbursed):
                row.allocated, row.disbursed = line.allocated, line.disbursed
                out.updated += 1
            else:
                out.unchanged += 1
        for row in have.values():
            session.delete(row)
            out.deleted += 1
    session.flush()
    return out


def replace_budget(
    *, session: Session, item: ProgrammeItem, lines: Sequence[BudgetLineIn]
) -> Changes:
    """Make the item's budget lines exactly these (checked) lines, touching only what differs."""
    return replace_budgets(session=session, lines_by_item={item.id: lines})


def set_budget(
    *, session: Session, item: ProgrammeItem, lines: Sequence[BudgetLineIn]
) -> list[ProgrammeBudget]:
    """Check and replace an item's budget lines."""
    phase = get_phase_or_raise(session=session, phase_code=item.phase_code)
    problems = check_budget_lines(
        years=(phase.start_year, phase.end_year),
        phase_code=phase.code,
        lines=lines,
        prefix="lines",
    )
    if problems:
        raise _invalid(problems)
    replace_budget(session=session, item=item, lines=lines)
    return get_budget_lines(session=session, item=item)


# --- milestones --------------------------------------------------------------------------------


def get_milestones(*, session: Session, item_ids: Sequence[int]) -> list[ProgrammeMilestone]:
    """Return the milestones of items, by item, due date and name."""
    if not item_ids:
        return []
    rows = session.scalars(
        select(ProgrammeMilestone)
        .where(ProgrammeMilestone.item_id.in_(list(item_ids)))
        .order_by(ProgrammeMilestone.item_id, ProgrammeMilestone.due_date, ProgrammeMilestone.name)
    )
    return list(rows)


def get_milestone(
    *, session: Session, item: ProgrammeItem, milestone_id: int
) -> ProgrammeMilestone | None:
    """Return a milestone of an item, or None."""
    milestone = session.get(ProgrammeMilestone, milestone_id)
    if milestone is None or milestone.item_id != item.id:
        return None
    return milestone


def get_milestone_or_raise(
    *, session: Session, item: ProgrammeItem, milestone_id: int
) -> ProgrammeMilestone:
    """Return a milestone of an item, or raise 404."""
    milestone = get_milestone(session=session, item=item, milestone_id=milestone_id)
    if milestone is None:
        raise NotFound("programme.milestone.not_found", id=milestone_id, code=item.code)
    return milestone


def _name_taken(
    *, session: Session, item: ProgrammeItem, name: str, except_id: int | None = None
) -> bool:
    query = select(ProgrammeMilestone.id).where(
        ProgrammeMilestone.item_id == item.id, ProgrammeMilestone.name == name
    )
    if except_id is not None:
        query = query.where(ProgrammeMilestone.id != except_id)
    return session.scalar(query) is not None


def create_milestone(
    *, session: Session, item: ProgrammeItem, milestone_in: MilestoneCreate
) -> ProgrammeMilestone:
    """Add a milestone to an item."""
    if _name_taken(session=session, item=item, name=milestone_in.name):
        raise Conflict("programme.milestone.exists", name=milestone_in.name, code=item.code)
    milestone = ProgrammeMilestone(item_id=item.id, **milestone_in.model_dump())
    session.add(milestone)
    session.flush()
    return milestone


def update_milestone(
    *, session: Session, milestone: ProgrammeMilestone, milestone_in: MilestoneUpdate
) -> ProgrammeMilestone:
    """Update a milestone; `done_date: null` reopens it."""
    data = milestone_in.model_dump(exclude_unset=True)
    missing = [n for n in ("name", "due_date", "weight") if n in data and data[n] is None]
    if missing:
        raise _invalid(
            [field_error(name, "programme.field.required", field=name) for name in missing]
        )
    item = session.get(ProgrammeItem, milestone.item_id)
    if (
        item is not None
        and "name" in data
        and _name_taken(session=session, item=item, name=data["name"], except_id=milestone.id)
    ):
        raise Conflict("programme.milestone.exists", name=data["name"], code=item.code)
    for name, value in data.items():
        setattr(milestone, name, value)
    session.flush()
    return milestone


def delete_milestone(*, session: Session, milestone: ProgrammeMilestone) -> None:
    """Delete a milestone."""
    session.delete(milestone)
    session.flush()


def replace_milestones_of(
    *, session: Session, milestones_by_item: Mapping[int, Sequence[MilestoneCreate]]
) -> Changes:
    """Make each item's milestones exactly the given ones (by name), touching only what
    differs: one read per 500 items and one flush."""
    out = Changes()
    existing: dict[int, dict[str, ProgrammeMilestone]] = {}
    for chunk in _chunks(list(milestones_by_item)):
        for milestone_row in session.scalars(
            select(ProgrammeMilestone).where(ProgrammeMilestone.item_id.in_(chunk))
        ):
            existing.setdefault(milestone_row.item_id, {})[milestone_row.name] = milestone_row
    for item_id, milestones in milestones_by_item.items():
        have = existing.get(item_id, {})
        for milestone_in in milestones:
            row = have.pop(milestone_in.name) if milestone_in.name in have else None
            data = milestone_in.model_dump()
            if row is None:
                session.add(ProgrammeMilestone(item_id=item_id, **data))
                out.created += 1
            elif any(getattr(row, k) != v for k, v in data.items()):
                for k, v in data.items():
                    setattr(row, k, v)
                out.updated += 1
            else:
                out.unchanged += 1
        for row in have.values():
            session.delete(row)
            out.deleted += 1
    session.flush()
    return out


def replace_milestones(
    *, session: Session, item: ProgrammeItem, milestones: Sequence[MilestoneCreate]
) -> Changes:
    """Make the item's milestones exactly these (by name), touching only what differs."""
    return replace_milestones_of(session=session, milestones_by_item={item.id: milestones})


def milestone_days_late(milestone: ProgrammeMilestone, item: ProgrammeItem, today: date) -> int:
    """Return how many days a milestone is late on a date (0 when it is not late)."""
    if (
        milestone.done_date is not None
        or milestone.due_date >= today
        or item.status in CLOSED_STATUSES
    ):
        return 0
    return (today - milestone.due_date).days


# Views that show no unit or department lists skip loading them (thousands of rows at scale).
_WITHOUT_LISTS = (lazyload(ProgrammeItem.unit_rows), lazyload(ProgrammeItem.department_rows))


# --- views: responsibility matrix --------------------------------------------------------------


@dataclass(slots=True)
class Matrix:
    """The responsibility matrix: departments, items, and who does what."""

    departments: list[dict[str, Any]]
    items: list[dict[str, Any]]
    cells: list[dict[str, str]]


def get_matrix(
    *, session: Session, phase_code: str | None = None, sector: str | None = None
) -> Matrix:
    """Return the department × item matrix: owner / supporting, and unit counts per item."""
    conditions = _item_filters(phase_code=phase_code, sector=sector)
    unit_counts = (
        select(ProgrammeItemUnit.item_id, func.count().label("units"))
        .group_by(ProgrammeItemUnit.item_id)
        .subquery()
    )
    columns = (
        ProgrammeItem.code,
        ProgrammeItem.name,
        ProgrammeItem.name_en,
        ProgrammeItem.phase_code,
        ProgrammeItem.sector,
        ProgrammeItem.status,
        ProgrammeItem.owner_department_code,
    )
    items = [
        {**row._asdict(), "unit_count": int(row.units or 0)}
        for row in session.execute(
            select(*columns, unit_counts.c.units)
            .outerjoin(unit_counts, unit_counts.c.item_id == ProgrammeItem.id)
            .where(*conditions)
            .order_by(ProgrammeItem.phase_code, ProgrammeItem.code)
            .limit(MAX_ROWS)
        )
    ]
    for item in items:
        item.pop("units")
    owners = select(
        ProgrammeItem.owner_department_code.label("department_code"),
        ProgrammeItem.code.label("item_code"),
        literal(str(Role.OWNER)).label("role"),
    ).where(*conditions)
    supporters = (
        select(
            ProgrammeItemDepartment.department_code.label("department_code"),
            ProgrammeItem.code.label("item_code"),
            literal(str(Role.SUPPORTING)).label("role"),
        )
        .join(ProgrammeItem, ProgrammeItem.id == ProgrammeItemDepartment.item_id)
        .where(*conditions)
    )
    both = union_all(owners, supporters).subquery()
    cells = [
        {"department_code": dept, "item_code": code, "role": role}
        for dept, code, role in session.execute(
            select(both.c.department_code, both.c.item_code, both.c.role).order_by(
                both.c.department_code, both.c.item_code
            )
        )
    ]
    owned: dict[str, int] = {}
    supporting: dict[str, int] = {}
    for cell in cells:
        tally = owned if cell["role"] == Role.OWNER else supporting
        tally[cell["department_code"]] = tally.get(cell["department_code"], 0) + 1
    rows, _ = unit_service.get_all_departments(session=session, limit=MAX_ROWS)
    departments = [
        {
            "code": d.code,
            "name": d.name,
            "name_en": d.name_en,
            "owned": owned.get(d.code, 0),
            "supporting": supporting.get(d.code, 0),
        }
        for d in rows
    ]
    return Matrix(departments=departments, items=items, cells=cells)


# --- views: roadmap ----------------------------------------------------------------------------


def get_roadmap(
    *,
    session: Session,
    today: date,
    phase_code: str | None = None,
    sector: str | None = None,
    department_code: str | None = None,
) -> list[tuple[ProgrammePhase, list[tuple[ProgrammeItem, list[ProgrammeMilestone]]]]]:
    """Return the phases with their items (in start order) and each item's milestones."""
    conditions = _item_filters(
        phase_code=phase_code, sector=sector, department_code=department_code
    )
    items = list(
        session.scalars(
            select(ProgrammeItem)
            .options(*_WITHOUT_LISTS)
            .where(*conditions)
            .order_by(
                ProgrammeItem.phase_code,
                ProgrammeItem.sector,
                # Undated items after dated ones, on every database.
                case((ProgrammeItem.start_date.is_(None), 1), else_=0),
                ProgrammeItem.start_date,
                ProgrammeItem.code,
            )
            .limit(MAX_ROWS)
        )
    )
    by_item: dict[int, list[ProgrammeMilestone]] = {}
    for milestone in get_milestones(session=session, item_ids=[i.id for i in items]):
        by_item.setdefault(milestone.item_id, []).append(milestone)
    phases = [
        p for p in get_all_phases(session=session) if phase_code is None or p.code == phase_code
    ]
    return [
        (
            phase,
            [(item, by_item.get(item.id, [])) for item in items if item.phase_code == phase.code],
        )
        for phase in phases
    ]


# --- views: budget split -----------------------------------------------------------------------


def _pct(part: float, whole: float) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 2)


@dataclass(slots=True)
class Money:
    """Allocated and disbursed amounts by source."""

    allocated: dict[str, int] = field(default_factory=lambda: {str(s): 0 for s in BudgetSource})
    disbursed: dict[str, int] = field(default_factory=lambda: {str(s): 0 for s in BudgetSource})

    def add(self, source: str, allocated: int, disbursed: int) -> None:
        """Add amounts of one source."""
        self.allocated[source] += allocated
        self.disbursed[source] += disbursed

    def merge(self, other: Money) -> None:
        """Add another set of amounts."""
        for source in other.allocated:
            self.add(source, other.allocated[source], other.disbursed[source])

    @property
    def allocated_total(self) -> int:
        """Allocated from both sources."""
        return sum(self.allocated.values())

    def split(
        self,
        *,
        scope: str,
        phase_code: str | None,
        year: int | None,
        planned_recurrent: float | None,
    ) -> dict[str, Any]:
        """Return the split against a planned recurrent share (percent)."""
        rec, inv = str(BudgetSource.RECURRENT), str(BudgetSource.INVESTMENT)
        alloc, disb = self.allocated, self.disbursed
        total_alloc = alloc[rec] + alloc[inv]
        total_disb = disb[rec] + disb[inv]
        # Variances come from the unrounded shares, then are rounded once.
        share = None if total_alloc == 0 else 100.0 * alloc[rec] / total_alloc
        planned_investment = None if planned_recurrent is None else 100.0 - planned_recurrent
        variance = (
            None
            if share is None or planned_recurrent is None
            else round(share - planned_recurrent, 2)
        )
        return {
            "scope": scope,
            "phase_code": phase_code,
            "year": year,
            "allocated_recurrent": alloc[rec],
            "allocated_investment": alloc[inv],
            "allocated_total": total_alloc,
            "disbursed_recurrent": disb[rec],
            "disbursed_investment": disb[inv],
            "disbursed_total": total_disb,
            "recurrent_share_pct": None if share is None else round(share, 2),
            "investment_share_pct": None if share is None else round(100.0 - share, 2),
            "planned_recurrent_pct": (
                None if planned_recurrent is None else round(planned_recurrent, 2)
            ),
            "planned_investment_pct": (
                None if planned_investment is None else round(planned_investment, 2)
            ),
            "recurrent_variance_pp": variance,
            "investment_variance_pp": None if variance is None else round(-variance, 2),
            "disbursement_rate_pct": _pct(total_disb, total_alloc),
            "recurrent_disbursement_rate_pct": _pct(disb[rec], alloc[rec]),
            "investment_disbursement_rate_pct": _pct(disb[inv], alloc[inv]),
        }


@dataclass(slots=True)
class BudgetView:
    """The budget split per phase and year, overall, and lines over-disbursed."""

    phases: list[dict[str, Any]]
    overall: dict[str, Any]
    warnings: list[dict[str, Any]]


def get_budget_split(
    *,
    session: Session,
    phase_code: str | None = None,
    sector: str | None = None,
    department_code: str | None = None,
) -> BudgetView:
    """Return allocated and disbursed by source per phase and year, and overall, against the
    planned split (the overall plan is the phases' plans weighted by their allocations)."""
    conditions = _item_filters(
        phase_code=phase_code, sector=sector, owner_department_code=department_code
    )
    sums: dict[str, dict[int, Money]] = {}
    for code, year, source, allocated, disbursed in session.execute(
        select(
            ProgrammeItem.phase_code,
            ProgrammeBudget.year,
            ProgrammeBudget.source,
            func.sum(ProgrammeBudget.allocated),
            func.sum(ProgrammeBudget.disbursed),
        )
        .join(ProgrammeItem, ProgrammeItem.id == ProgrammeBudget.item_id)
        .where(*conditions)
        .group_by(ProgrammeItem.phase_code, ProgrammeBudget.year, ProgrammeBudget.source)
    ):
        money = sums.setdefault(code, {}).setdefault(year, Money())
        money.add(source, int(allocated or 0), int(disbursed or 0))
    phases_out: list[dict[str, Any]] = []
    overall = Money()
    weighted_plan = 0.0
    plans: set[int] = set()
    for phase in get_all_phases(session=session):
        if phase_code is not None and phase.code != phase_code:
            continue
        planned = float(phase.planned_recurrent_pct)
        plans.add(phase.planned_recurrent_pct)
        total = Money()
        years = []
        for year in sorted(sums.get(phase.code, {})):
            money = sums[phase.code][year]
            total.merge(money)
            years.append(
                money.split(
                    scope="year", phase_code=phase.code, year=year, planned_recurrent=planned
                )
            )
        overall.merge(total)
        weighted_plan += planned * total.allocated_total
        phases_out.append(
            {
                "code": phase.code,
                "name": phase.name,
                "name_en": phase.name_en,
                "years": years,
                "total": total.split(
                    scope="phase", phase_code=phase.code, year=None, planned_recurrent=planned
                ),
            }
        )
    if overall.allocated_total:
        overall_plan: float | None = weighted_plan / overall.allocated_total
    else:
        overall_plan = float(next(iter(plans))) if len(plans) == 1 else None
    warnings = [
        {
            "item_code": code,
            "year": year,
            "source": source,
            "allocated": int(allocated),
            "disbursed": int(disbursed),
        }
        for code, year, source, allocated, disbursed in session.execute(
            select(
                ProgrammeItem.code,
                ProgrammeBudget.year,
                ProgrammeBudget.source,
                ProgrammeBudget.allocated,
                ProgrammeBudget.disbursed,
            )
            .join(ProgrammeItem, ProgrammeItem.id == ProgrammeBudget.item_id)
            .where(*conditions, ProgrammeBudget.disbursed > ProgrammeBudget.allocated)
            .order_by(ProgrammeItem.code, ProgrammeBudget.year, ProgrammeBudget.source)
            .limit(MAX_ROWS)
        )
    ]
    return BudgetView(
        phases=phases_out,
        overall=overall.split(
            scope="overall", phase_code=None, year=None, planned_recurrent=overall_plan
        ),
        warnings=warnings,
    )


# --- views: late items -------------------------------------------------------------------------


def get_late(
    *,
    session: Session,
    today: date,
    phase_code: str | None = None,
    sector: str | None = None,
    department_code: str | None = None,
) -> list[tuple[ProgrammeItem, list[tuple[ProgrammeMilestone, int]]]]:
    """Return open items with milestones past due and not done on `today`, most overdue first,
    each with its late milestones and their days late."""
    conditions = _item_filters(
        phase_code=phase_code, sector=sector, department_code=department_code
    )
    grouped: dict[int, tuple[ProgrammeItem, list[tuple[ProgrammeMilestone, int]]]] = {}
    for milestone, item in session.execute(
        select(ProgrammeMilestone, ProgrammeItem)
        .join(ProgrammeItem, ProgrammeItem.id == ProgrammeMilestone.item_id)
        .options(*_WITHOUT_LISTS)
        .where(late_condition(today), *conditions)
        .order_by(ProgrammeItem.code, ProgrammeMilestone.due_date, ProgrammeMilestone.name)
        .limit(MAX_ROWS)
    ):
        entry = grouped.setdefault(item.id, (item, []))
        entry[1].append((milestone, (today - milestone.due_date).days))
    return sorted(grouped.values(), key=lambda e: (-max(d for _, d in e[1]), e[0].code))


# --- views: progress ---------------------------------------------------------------------------


def get_progress(
    *, session: Session, today: date, by: ProgressBy, phase_code: str | None = None
) -> list[dict[str, Any]]:
    """Return item counts by status, late items, mean and budget-weighted progress and money,
    per sector or per owner department."""
    key = ProgrammeItem.sector if by is ProgressBy.SECTOR else ProgrammeItem.owner_department_code
    money = (
        select(
            ProgrammeBudget.item_id.label("item_id"),
            func.sum(ProgrammeBudget.allocated).label("allocated"),
            func.sum(ProgrammeBudget.disbursed).label("disbursed"),
        )
        .group_by(ProgrammeBudget.item_id)
        .subquery()
    )
    allocated = func.coalesce(money.c.allocated, 0)

    def count_status(status: ItemStatus) -> Any:
        return func.sum(case((ProgrammeItem.status == str(status), 1), else_=0))

    conditions = _item_filters(phase_code=phase_code)
    rows = session.execute(
        select(
            key,
            func.count(),
            *[count_status(s) for s in ItemStatus],
            func.sum(case((_item_is_late(today), 1), else_=0)),
            func.avg(cast(ProgrammeItem.progress, Float)),
            # Floating point: progress × đồng overflows a 64-bit integer sum at province scale.
            func.sum(cast(ProgrammeItem.progress, Float) * cast(allocated, Float)),
            func.sum(allocated),
            func.sum(func.coalesce(money.c.disbursed, 0)),
        )
        .outerjoin(money, money.c.item_id == ProgrammeItem.id)
        .where(*conditions)
        .group_by(key)
        .order_by(key)
    ).all()
    names: dict[str, tuple[str | None, str | None]] = {}
    if by is ProgressBy.DEPARTMENT:
        departments, _ = unit_service.get_all_departments(session=session, limit=MAX_ROWS)
        names = {d.code: (d.name, d.name_en) for d in departments}
    out = []
    statuses = [str(s) for s in ItemStatus]
    for row in rows:
        group_key, count = row[0], int(row[1])
        by_status = {s: int(row[2 + i] or 0) for i, s in enumerate(statuses)}
        late, mean, weighted, alloc, disb = row[2 + len(statuses) :]
        alloc_total = int(alloc or 0)
        out.append(
            {
                "key": group_key,
                "name": names.get(group_key, (None, None))[0],
                "name_en": names.get(group_key, (None, None))[1],
                "items": count,
                **by_status,
                "late": int(late or 0),
                "mean_progress": None if mean is None else round(float(mean), 2),
                "weighted_progress": (
                    round(float(weighted) / alloc_total, 2) if alloc_total else None
                ),
                "allocated": alloc_total,
                "disbursed": int(disb or 0),
            }
        )
    return out
