"""Database work of the KPI context: the catalogue, population, sector statistics, and computed
values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.errors import Conflict, Invalid, NotFound
from cityops.kpi import formula as formula_mod
from cityops.kpi.models import KpiIndicator, KpiPopulation, KpiStatistic, KpiValue
from cityops.kpi.schemas import IndicatorCreate, IndicatorUpdate


def field_error(field: str, key: str, /, **params: Any) -> dict[str, Any]:
    """Describe one field's problem by message key; the edge renders it in the caller's language."""
    return {"field": field, "in": "body", "key": key, "params": params}


def check_formula(text: str, known: Sequence[str]) -> list[dict[str, Any]]:
    """Return the problems of a formula: bad syntax, or names that are not registered inputs."""
    try:
        names = formula_mod.names(text)
    except formula_mod.FormulaError as error:
        return [field_error("formula", f"kpi.formula.{error.reason}", **error.params)]
    unknown = [n for n in names if n not in known]
    if unknown:
        return [field_error("formula", "kpi.formula.unknown_input", names=", ".join(unknown))]
    return []


# --- indicators -----------------------------------------------------------------------------


def get(*, session: Session, code: str) -> KpiIndicator | None:
    """Return an indicator by code."""
    return session.get(KpiIndicator, code)


def get_or_raise(*, session: Session, code: str) -> KpiIndicator:
    """Return an indicator by code, or raise NotFound."""
    indicator = get(session=session, code=code)
    if indicator is None:
        raise NotFound("kpi.indicator.not_found", code=code)
    return indicator


def get_all(
    *,
    session: Session,
    sector: str | None = None,
    active: bool | None = None,
    codes: Sequence[str] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[KpiIndicator], int]:
    """Return indicators (by sector, then code) and how many match."""
    query = select(KpiIndicator)
    if sector is not None:
        query = query.where(KpiIndicator.sector == sector)
    if active is not None:
        query = query.where(KpiIndicator.is_active == active)
    if codes is not None:
        query = query.where(KpiIndicator.code.in_(list(codes)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = query.order_by(KpiIndicator.sector, KpiIndicator.code).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query)), int(total)


def create(
    *, session: Session, indicator_in: IndicatorCreate, known: Sequence[str], clock: Clock
) -> KpiIndicator:
    """Create an indicator; refuse a formula that names an unknown input."""
    if get(session=session, code=indicator_in.code) is not None:
        raise Conflict("kpi.indicator.exists", code=indicator_in.code)
    if session.scalar(select(KpiIndicator.code).where(KpiIndicator.key == indicator_in.key)):
        raise Conflict("kpi.indicator.key_exists", indicator_key=indicator_in.key)
    problems = check_formula(indicator_in.formula, known)
    if problems:
        raise Invalid("kpi.invalid", errors=problems, count=len(problems))
    now = clock.now()
    values = indicator_in.model_dump(mode="json")
    indicator = KpiIndicator(**values, created_at=now, updated_at=now)
    session.add(indicator)
    session.flush()
    return indicator


def update(
    *,
    session: Session,
    indicator: KpiIndicator,
    indicator_in: IndicatorUpdate,
    known: Sequence[str],
    clock: Clock,
) -> KpiIndicator:
    """Change an indicator; a new formula is checked like a new one."""
    changes = indicator_in.model_dump(mode="json", exclude_unset=True)
    required = ("name", "name_en", "unit", "direction", "formula", "frequency", "spatial_level")
    problems = [
        field_error(name, "kpi.field.required", field=name)
        for name in (*required, "is_active")
        if name in changes and changes[name] is None
    ]
    if changes.get("formula"):
        problems += check_formula(changes["formula"], known)
    if problems:
        raise Invalid("kpi.invalid", errors=problems, count=len(problems))
    for name, value in changes.items():
        setattr(indicator, name, value)
    indicator.updated_at = clock.now()
    session.flush()
    return indicator


def delete_indicator(*, session: Session, indicator: KpiIndicator) -> None:
    """Delete an indicator and its computed values."""
    session.execute(delete(KpiValue).where(KpiValue.indicator_code == indicator.code))
    session.delete(indicator)
    session.flush()


# --- population -----------------------------------------------------------------------------


def get_population_map(*, session: Session, year: int) -> dict[str, int]:
    """Population per unit for a year: that year's figure, else the latest earlier one, else the
    earliest later one (so a period past the seed data still has a denominator)."""
    rows = session.execute(
        select(KpiPopulation.unit_code, KpiPopulation.year, KpiPopulation.population)
    ).all()
    best: dict[str, tuple[int, int]] = {}
    for unit, row_year, population in rows:
        # Rank: the year itself, then earlier years (nearest first), then later years.
        distance = year - row_year if row_year <= year else 10_000 + row_year - year
        if unit not in best or distance < best[unit][0]:
            best[unit] = (distance, population)
    return {unit: population for unit, (_, population) in best.items()}


def upsert_population(
    *, session: Session, rows: Sequence[tuple[str, int, int]], clock: Clock
) -> int:
    """Insert or change population figures (unit, year, population); return how many changed."""
    now = clock.now()
    changed = 0
    for unit_code, year, population in rows:
        row = session.get(KpiPopulation, (unit_code, year))
        if row is None:
            session.add(
                KpiPopulation(
                    unit_code=unit_code,
                    year=year,
                    population=population,
                    created_at=now,
                    updated_at=now,
                )
            )
            changed += 1
        elif row.population != population:
            row.population, row.updated_at = population, now
            changed += 1
    session.flush()
    return changed


# --- sector statistics ---------------------------------------------------------------------


def get_statistics(
    *,
    session: Session,
    unit_code: str | None = None,
    year: int | None = None,
    name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[KpiStatistic], int]:
    """Return sector statistics (by year, name, unit) and how many match."""
    query = select(KpiStatistic)
    if unit_code is not None:
        query = query.where(KpiStatistic.unit_code == unit_code)
    if year is not None:
        query = query.where(KpiStatistic.year == year)
    if name is not None:
        query = query.where(KpiStatistic.name == name)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = query.order_by(KpiStatistic.year, KpiStatistic.name, KpiStatistic.unit_code)
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query)), int(total)


def get_statistic_map(*, session: Session, year: int) -> dict[str, dict[str, float]]:
    """Each statistic's value per unit for a year: that year's figure, else the latest earlier
    one, else the earliest later one (as population). A statistic never imported is absent."""
    rows = session.execute(
        select(KpiStatistic.name, KpiStatistic.unit_code, KpiStatistic.year, KpiStatistic.value)
    ).all()
    best: dict[tuple[str, str], tuple[int, float]] = {}
    for name, unit, row_year, value in rows:
        distance = year - row_year if row_year <= year else 10_000 + row_year - year
        key = (name, unit)
        if key not in best or distance < best[key][0]:
            best[key] = (distance, value)
    out: dict[str, dict[str, float]] = {}
    for (name, unit), (_, value) in best.items():
        out.setdefault(name, {})[unit] = float(value)
    return out


def upsert_statistics(
    *, session: Session, rows: Sequence[tuple[str, int, str, float, str | None]], clock: Clock
) -> tuple[int, int, int]:
    """Insert or change statistics (unit, year, name, value, source); return how many were
    added, changed and already identical."""
    now = clock.now()
    years = sorted({year for _, year, _, _, _ in rows})
    stored = {
        (s.unit_code, s.year, s.name): s
        for s in session.scalars(select(KpiStatistic).where(KpiStatistic.year.in_(years)))
    }
    added = changed = same = 0
    for unit_code, year, name, value, source in rows:
        row = stored.get((unit_code, year, name))
        if row is None:
            row = KpiStatistic(
                unit_code=unit_code,
                year=year,
                name=name,
                value=value,
                source=source,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            stored[(unit_code, year, name)] = row
            added += 1
        elif row.value != value or row.source != source:
            row.value, row.source, row.updated_at = value, source, now
            changed += 1
        else:
            same += 1
    session.flush()
    return added, changed, same


# --- values ---------------------------------------------------------------------------------


def replace_values(
    *,
    session: Session,
    period: str,
    period_start: date,
    indicator_codes: Sequence[str],
    rows: Sequence[dict[str, Any]],
) -> int:
    """Replace the values of these indicators for one period with `rows` (a recomputation)."""
    session.execute(
        delete(KpiValue).where(
            KpiValue.period == period,
            KpiValue.period_start == period_start,
            KpiValue.indicator_code.in_(list(indicator_codes)),
        )
    )
    if rows:
        session.execute(insert(KpiValue), list(rows))
    session.flush()
    return len(rows)


def get_values(
    *,
    session: Session,
    indicator_codes: Sequence[str] | None = None,
    sector: str | None = None,
    level: str | None = None,
    place_codes: Sequence[str] | None = None,
    period: str | None = None,
    start: date | None = None,
    end: date | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[KpiValue], int]:
    """Return computed values (by indicator, place, period start) and how many match."""
    query = select(KpiValue)
    if indicator_codes is not None:
        query = query.where(KpiValue.indicator_code.in_(list(indicator_codes)))
    if sector is not None:
        query = query.join(KpiIndicator, KpiIndicator.code == KpiValue.indicator_code).where(
            KpiIndicator.sector == sector
        )
    if level is not None:
        query = query.where(KpiValue.level == level)
    if place_codes is not None:
        query = query.where(KpiValue.place_code.in_(list(place_codes)))
    if period is not None:
        query = query.where(KpiValue.period == period)
    if start is not None:
        query = query.where(KpiValue.period_start >= start)
    if end is not None:
        query = query.where(KpiValue.period_start <= end)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = query.order_by(
        KpiValue.indicator_code, KpiValue.level, KpiValue.place_code, KpiValue.period_start
    ).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query)), int(total)


def latest_computed_at(*, session: Session) -> datetime | None:
    """When values were last computed (None if never)."""
    return session.scalar(select(func.max(KpiValue.computed_at)))
