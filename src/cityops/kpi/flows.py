"""Orchestration of the KPI engine: compute indicators per unit, area and province for a period,
store them, publish them as NGSI-LD `KeyPerformanceIndicator` entities, rank units, evaluate
the pilot areas, and seed the catalogue and population from the profile.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

import yaml
from sqlalchemy.orm import Session

from cityops.context import flows as context_flows
from cityops.context.service import DEFAULT_TENANT
from cityops.core.clock import Clock
from cityops.core.errors import Invalid
from cityops.core.runtime import Runtime
from cityops.kpi import formula, inputs, service
from cityops.kpi.enums import Direction, Frequency, PlaceLevel, Status
from cityops.kpi.models import KpiIndicator
from cityops.kpi.periods import Window, span, window
from cityops.kpi.schemas import IndicatorCreate
from cityops.units import service as unit_service

log = logging.getLogger(__name__)

PILOT_AREAS = ("bien-hoa-cu", "long-khanh-cu")
ENTITY_TYPE = "KeyPerformanceIndicator"
PUBLISH_CHUNK = 500
FREQUENCY_NAMES = {"D": "daily", "M": "monthly", "Q": "quarterly", "Y": "yearly"}


# --- places -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Place:
    """Where a value is computed: a level, a code, a name, and the communes it sums."""

    level: PlaceLevel
    code: str
    name: str
    units: frozenset[str]
    lat: float | None = None
    lon: float | None = None


def get_places(*, session: Session, on: date) -> list[Place]:
    """The communes/wards valid on a day, every area, and the province."""
    units, _ = unit_service.get_all(session=session, on=on, level="commune", limit=10_000)
    places = [
        Place(PlaceLevel.UNIT, u.code, u.name, frozenset([u.code]), u.lat, u.lon) for u in units
    ]
    valid = frozenset(u.code for u in units)
    areas, _ = unit_service.get_all_areas(session=session, limit=1_000)
    for area in areas:
        members = unit_service.get_area_unit_codes(session=session, area_code=area.code)
        places.append(
            Place(PlaceLevel.AREA, area.code, area.name, (members or frozenset()) & valid)
        )
    province = unit_service.get_province(session=session)
    code = province.code if province is not None else "province"
    name = province.name if province is not None else code
    places.append(Place(PlaceLevel.PROVINCE, code, name, valid))
    return places


def sum_inputs(
    fetched: Mapping[str, inputs.Values | None], units: Iterable[str]
) -> dict[str, float | None]:
    """Sum every input over a set of units (None stays None: the source is pending)."""
    members = list(units)
    out: dict[str, float | None] = {}
    for name, per_unit in fetched.items():
        out[name] = None if per_unit is None else sum(per_unit.get(u, 0.0) for u in members)
    return out


# --- targets and status -------------------------------------------------------------------


def target_for(indicator: KpiIndicator, year: int) -> float | None:
    """The target that applies in a year: the 2025 one up to 2025, the 2030 one after."""
    if year <= 2025 and indicator.target_2025 is not None:
        return indicator.target_2025
    return indicator.target_2030 if indicator.target_2030 is not None else indicator.target_2025


def status_of(indicator: KpiIndicator, value: float | None, target: float | None) -> Status:
    """Judge a value against its target in the indicator's direction.

    A band indicator reads its two targets as the low and high ends of the range to stay in.
    """
    if value is None:
        return Status.NO_DATA
    direction = Direction(indicator.direction)
    if direction is Direction.BAND:
        ends = [t for t in (indicator.target_2025, indicator.target_2030) if t is not None]
        if len(ends) < 2:
            return Status.NO_TARGET
        return Status.MET if min(ends) <= value <= max(ends) else Status.NOT_MET
    if target is None or direction is Direction.MONITOR:
        return Status.NO_TARGET
    met = value >= target if direction is Direction.UP else value <= target
    return Status.MET if met else Status.NOT_MET


# --- computation --------------------------------------------------------------------------


def _rounded(value: float | None) -> float | None:
    # Six significant decimals: enough for every unit in the catalogue, stable in JSON and CSV.
    return None if value is None else round(value, 6)


def compute(
    *,
    runtime: Runtime,
    session: Session,
    kind: Frequency,
    day: date,
    codes: Sequence[str] | None = None,
    publish: bool = True,
) -> dict[str, Any]:
    """Compute the active indicators (or `codes`) for the period of `kind` containing `day`,
    for every commune/ward, area and the province; replace the period's stored values."""
    period = window(kind, day, runtime.settings.timezone)
    indicators, _ = service.get_all(session=session, active=True, codes=codes)
    if codes is not None:
        missing = sorted(set(codes) - {i.code for i in indicators})
        if missing:
            raise Invalid(
                "kpi.invalid",
                errors=[
                    service.field_error(
                        "indicators", "kpi.indicator.unknown", codes=", ".join(missing)
                    )
                ],
                count=1,
            )
    parsed = {i.code: formula.parse(i.formula) for i in indicators}
    needed = sorted({n for i in indicators for n in formula.names(i.formula)} & set(inputs.INPUTS))
    now = runtime.clock.now()
    source = inputs.Source(runtime=runtime, session=session, window=period, now=now)
    fetched = inputs.fetch_all(source, needed)
    places = get_places(session=session, on=period.first)
    rows: list[dict[str, Any]] = []
    for place in places:
        summed = sum_inputs(fetched, place.units)
        for indicator in indicators:
            value = _rounded(formula.evaluate(parsed[indicator.code], summed))
            target = target_for(indicator, period.year)
            names = formula.names(indicator.formula)
            rows.append(
                {
                    "indicator_code": indicator.code,
                    "level": place.level.value,
                    "place_code": place.code,
                    "period": kind.value,
                    "period_start": period.first,
                    "period_label": period.label,
                    "value": value,
                    "inputs": {n: _rounded(summed.get(n)) for n in names},
                    "target": target,
                    "status": status_of(indicator, value, target).value,
                    "computed_at": now,
                }
            )
    written = service.replace_values(
        session=session,
        period=kind.value,
        period_start=period.first,
        indicator_codes=[i.code for i in indicators],
        rows=rows,
    )
    published = 0
    if publish:
        published = publish_values(
            runtime=runtime,
            session=session,
            period=period,
            indicators=indicators,
            places=places,
            rows=rows,
        )
    return {
        "period": kind.value,
        "period_label": period.label,
        "indicators": len(indicators),
        "values": written,
        "published": published,
    }


def entity_id(code: str, place_code: str, label: str) -> str:
    """The NGSI-LD id of one indicator × place × period."""
    return f"urn:ngsi-ld:{ENTITY_TYPE}:{code}:{place_code}:{label}"


def publish_values(
    *,
    runtime: Runtime,
    session: Session,
    period: Window,
    indicators: Sequence[KpiIndicator],
    places: Sequence[Place],
    rows: Sequence[Mapping[str, Any]],
) -> int:
    """Upsert one `KeyPerformanceIndicator` entity per computed value (values with no data are
    not published); return how many were written."""
    by_code = {i.code: i for i in indicators}
    by_place = {(p.level.value, p.code): p for p in places}
    entities: list[dict[str, Any]] = []
    for row in rows:
        if row["value"] is None:
            continue
        indicator = by_code[row["indicator_code"]]
        place = by_place[(row["level"], row["place_code"])]
        entity: dict[str, Any] = {
            "id": entity_id(indicator.code, place.code, period.label),
            "type": ENTITY_TYPE,
            "name": {"type": "Property", "value": indicator.name},
            "alternateName": {"type": "Property", "value": indicator.name_en},
            "category": {"type": "Property", "value": ["quantitative"]},
            "kpiValue": {"type": "Property", "value": row["value"], "unitCode": indicator.unit},
            "calculationFrequency": {
                "type": "Property",
                "value": FREQUENCY_NAMES[indicator.frequency],
            },
            "calculationMethod": {"type": "Property", "value": indicator.formula},
            "calculationPeriod": {
                "type": "Property",
                "value": {"from": period.start.isoformat(), "to": period.end.isoformat()},
            },
            "area": {"type": "Property", "value": place.code},
            "status": {"type": "Property", "value": row["status"]},
        }
        if row["target"] is not None:
            entity["target"] = {"type": "Property", "value": row["target"]}
        if place.lat is not None and place.lon is not None:
            entity["location"] = {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [place.lon, place.lat]},
            }
        entities.append(entity)
    written = 0
    for start in range(0, len(entities), PUBLISH_CHUNK):
        outcome = context_flows.write_entities(
            runtime=runtime,
            session=session,
            tenant=DEFAULT_TENANT,
            entities=entities[start : start + PUBLISH_CHUNK],
        )
        written += len(outcome.success)
        if outcome.errors:
            log.warning("KPI entities refused", extra={"errors": outcome.errors[:3]})
    return written


# --- ranking ------------------------------------------------------------------------------


def rank(
    *, session: Session, indicator: KpiIndicator, kind: Frequency, first: date
) -> list[dict[str, Any]]:
    """Rank the communes/wards on one indicator and period, best first (ties share a rank)."""
    values, _ = service.get_values(
        session=session,
        indicator_codes=[indicator.code],
        level=PlaceLevel.UNIT.value,
        period=kind.value,
        start=first,
        end=first,
    )
    present = [v for v in values if v.value is not None]
    # Lower is better only for `down`; a band or monitored indicator is listed highest first.
    descending = indicator.direction != Direction.DOWN.value
    present.sort(
        key=lambda v: (-(v.value or 0.0) if descending else (v.value or 0.0), v.place_code)
    )
    names = {
        u.code: u.name
        for u in unit_service.get_all(session=session, level="commune", limit=10_000)[0]
    }
    out: list[dict[str, Any]] = []
    previous: float | None = None
    position = 0
    for index, value in enumerate(present, start=1):
        if value.value != previous:
            position, previous = index, value.value
        out.append(
            {
                "rank": position,
                "place_code": value.place_code,
                "name": names.get(value.place_code, value.place_code),
                "value": value.value,
                "status": value.status,
            }
        )
    return out


# --- pilot evaluation ---------------------------------------------------------------------


def evaluate_pilot(
    *,
    runtime: Runtime,
    session: Session,
    indicators: Sequence[KpiIndicator],
    go_live: date,
    kind: Frequency,
    before: int,
    after: int,
    pilot_areas: Sequence[str] = PILOT_AREAS,
) -> dict[str, Any]:
    """Difference-in-differences of the pilot areas against the rest of the province.

    The *before* window is the `before` periods ending just before the go-live period; the
    *after* window is the go-live period and the `after - 1` following ones. Each group's value
    is the formula over its inputs summed over its units and the window, so the table shows
    the numbers it was computed from.
    """
    tz = runtime.settings.timezone
    live = window(kind, go_live, tz)
    before_w = span(live.shift(-before, tz), live.shift(-1, tz))
    after_w = span(live, live.shift(after - 1, tz))
    valid = frozenset(
        u.code
        for u in unit_service.get_all(session=session, on=go_live, level="commune", limit=10_000)[0]
    )
    pilot: set[str] = set()
    for area in pilot_areas:
        members = unit_service.get_area_unit_codes(session=session, area_code=area)
        if members is None:
            raise Invalid(
                "kpi.invalid",
                errors=[service.field_error("areas", "kpi.area.unknown", code=area)],
                count=1,
            )
        pilot |= members & valid
    control = valid - pilot
    needed = sorted({n for i in indicators for n in formula.names(i.formula)} & set(inputs.INPUTS))
    now = runtime.clock.now()
    fetched = {
        label: inputs.fetch_all(
            inputs.Source(runtime=runtime, session=session, window=w, now=now), needed
        )
        for label, w in (("before", before_w), ("after", after_w))
    }
    sums = {
        (group, label): sum_inputs(fetched[label], members)
        for group, members in (("pilot", pilot), ("control", control))
        for label in ("before", "after")
    }
    rows: list[dict[str, Any]] = []
    for indicator in indicators:
        expr = formula.parse(indicator.formula)
        names = formula.names(indicator.formula)
        v = {key: _rounded(formula.evaluate(expr, s)) for key, s in sums.items()}
        pilot_change = _diff(v[("pilot", "after")], v[("pilot", "before")])
        control_change = _diff(v[("control", "after")], v[("control", "before")])
        did = _rounded(_diff(pilot_change, control_change))
        improved: bool | None = None
        if did is not None and indicator.direction in (Direction.UP.value, Direction.DOWN.value):
            improved = did > 0 if indicator.direction == Direction.UP.value else did < 0
        rows.append(
            {
                "indicator_code": indicator.code,
                "name": indicator.name,
                "name_en": indicator.name_en,
                "unit": indicator.unit,
                "direction": indicator.direction,
                "pilot_before": v[("pilot", "before")],
                "pilot_after": v[("pilot", "after")],
                "control_before": v[("control", "before")],
                "control_after": v[("control", "after")],
                "pilot_change": _rounded(pilot_change),
                "control_change": _rounded(control_change),
                "did": did,
                "improved": improved,
                "inputs": {
                    f"{group}_{label}": {n: _rounded(s.get(n)) for n in names}
                    for (group, label), s in sums.items()
                },
            }
        )
    return {
        "go_live": go_live,
        "period": kind.value,
        "before": before_w.label,
        "after": after_w.label,
        "pilot_areas": list(pilot_areas),
        "pilot_units": len(pilot),
        "control_units": len(control),
        "rows": rows,
    }


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# --- seeding ------------------------------------------------------------------------------


def _profile_file(profile: str, name: str) -> Any:
    return resources.files("cityops.profiles") / profile / "kpi" / name


def load_catalogue(profile: str) -> list[IndicatorCreate]:
    """Read the profile's indicator catalogue (profiles/<name>/kpi/indicators.yaml)."""
    path = _profile_file(profile, "indicators.yaml")
    if not path.is_file():
        return []
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [IndicatorCreate.model_validate(raw) for raw in document.get("indicators", [])]


def load_population(profile: str) -> list[tuple[str, int, int]]:
    """Read the profile's population per unit and year (comment lines start with #)."""
    path = _profile_file(profile, "population.csv")
    if not path.is_file():
        return []
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    return [
        (row["unit_code"], int(row["year"]), int(row["population"]))
        for row in csv.DictReader(lines)
    ]


def load_statistics(profile: str) -> list[tuple[str, int, str, float, str | None]]:
    """Read the profile's yearly sector statistics (demo estimates; comment lines start with #)."""
    path = _profile_file(profile, "statistics.csv")
    if not path.is_file():
        return []
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    return [
        (r["unit_code"], int(r["year"]), r["name"], float(r["value"]), r["source"] or None)
        for r in csv.DictReader(lines)
    ]


def seed_profile(*, session: Session, profile: str, clock: Clock) -> dict[str, int]:
    """Load the catalogue (missing codes only: tuned indicators stay), the population and the
    sector statistics."""
    added = 0
    known = list(inputs.INPUTS)
    for indicator_in in load_catalogue(profile):
        if service.get(session=session, code=indicator_in.code) is None:
            service.create(session=session, indicator_in=indicator_in, known=known, clock=clock)
            added += 1
    population = service.upsert_population(
        session=session, rows=load_population(profile), clock=clock
    )
    statistics, _, _ = service.upsert_statistics(
        session=session, rows=load_statistics(profile), clock=clock
    )
    return {"kpi_indicators": added, "kpi_population": population, "kpi_statistics": statistics}
