"""Page routes measuring the programme: KPI overview, unit, area and sector pages, the pilot
evaluation, the Decision 766 scorecard and the programme board.

KPI and programme pages are rendered on the server from the contexts' services (KPIs are
province-wide figures every role reads; a unit-scoped user reaches its own units' pages only);
the scorecard pages read the egov API from the browser, so they show exactly what the API shows
that user. Every table links to its API endpoint with the page's own query and
`format=csv|xlsx|pdf` (the exports are the API's job, not this module's).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cityops.core.deps import LangDep, RuntimeDep, SessionDep, TranslatorDep
from cityops.core.i18n import format_number
from cityops.core.runtime import Runtime
from cityops.core.schemas import FIRST_DAY, LAST_DAY
from cityops.core.security import OptionalPrincipal, Permission, Principal
from cityops.egov import service as egov_service
from cityops.kpi import flows as kpi_flows
from cityops.kpi import service as kpi_service
from cityops.kpi.enums import Frequency, PlaceLevel
from cityops.kpi.periods import first_day, window
from cityops.programme import service as programme_service
from cityops.units import service as unit_service
from cityops.units.flows import local_date
from cityops.web.api import _login_redirect, _render, error_page

router = APIRouter(include_in_schema=False)

API = "/api/v1"
FORMATS = ("csv", "xlsx", "pdf")
# How many periods a trend line shows, per period kind.
TREND_LENGTH = {"D": 30, "M": 12, "Q": 8, "Y": 5}
# Sector centre codes (web/sectors.py) that the KPI catalogue names differently.
CENTRE_TO_KPI = {"social_security": "social"}
KPI_TO_CENTRE = {v: k for k, v in CENTRE_TO_KPI.items()}
KPI_SECTORS = (
    "health",
    "education",
    "transport",
    "environment",
    "construction",
    "social",
    "public_order",
    "egov",
)
PILOT_AREAS = kpi_flows.PILOT_AREAS

PeriodQuery = Annotated[Frequency | None, Query()]
DayQuery = Annotated[date | None, Query(ge=FIRST_DAY, le=LAST_DAY)]
AreaQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9-]*$")]
UnitQuery = Annotated[str | None, Query(max_length=16, pattern=r"^[0-9A-Za-z_-]*$")]
UnitPath = Annotated[str, Path(max_length=16, pattern=r"^[0-9A-Za-z_-]+$")]
AreaPath = Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9-]+$")]
SectorPath = Annotated[str, Path(max_length=32, pattern=r"^[a-z_]+$")]
ScoreCode = Annotated[str, Path(max_length=32, pattern=r"^[0-9A-Za-z_.-]+$")]
EgovPeriod = Annotated[str | None, Query(max_length=16, pattern=r"^[0-9Qq-]*$")]
GroupQuery = Annotated[str | None, Query(max_length=8, pattern=r"^(agency|unit)?$")]
PhaseQuery = Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9_.-]*$")]
CodeList = Annotated[list[str] | None, Query(max_length=100)]


def _json(value: Any) -> str:
    # Inside <script>: "</" would end the element early.
    return json.dumps(value, ensure_ascii=False, default=str).replace("</", "<\\/")


def downloads(path: str, params: list[tuple[str, str]], lang: str) -> list[dict[str, str]]:
    """Return the CSV, XLSX and PDF links of an API table for the page's query and language."""
    kept = [(k, v) for k, v in params if v not in ("", None)]
    return [
        {"format": fmt, "url": f"{API}{path}?{urlencode([*kept, ('format', fmt), ('lang', lang)])}"}
        for fmt in FORMATS
    ]


def _name(lang: str, vi: str, en: str | None) -> str:
    return en if lang == "en" and en else vi


def number_formatter(lang: str) -> Any:
    """Return a function formatting a number for `lang` (digits chosen by size when not given)."""

    def number(value: float | None, digits: int | None = None) -> str:
        if value is None:
            return "—"
        if digits is None:
            digits = 0 if float(value).is_integer() else (1 if abs(value) >= 100 else 2)
        return format_number(value, lang, digits)

    return number


def _forbidden(request: Request, lang: str, translate: Any, principal: Principal) -> Response:
    return _error(request, lang, translate, principal, 403)


def _not_found(request: Request, lang: str, translate: Any, principal: Principal) -> Response:
    return _error(request, lang, translate, principal, 404)


def _error(
    request: Request, lang: str, translate: Any, principal: Principal, status: int
) -> Response:
    return error_page(
        request,
        lang,
        translate,
        principal,
        status=status,
        title_key=f"web.measure.error.{status}.title",
        message_key=f"web.measure.error.{status}.body",
        back=("/kpi", "web.measure.back"),
    )


def _strings(translate: Any, lang: str, keys: tuple[str, ...]) -> dict[str, str]:
    return {key: str(translate(f"web.measure.{key}", lang)) for key in keys}


# --- KPI data ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """The period a KPI page shows: its kind, first day and label."""

    kind: Frequency
    first: date
    label: str


def _latest_first(session: Session, kind: Frequency, today: date) -> date | None:
    """The newest period of this kind with computed province values (None: none yet)."""
    rows, _ = kpi_service.get_values(
        session=session,
        level=PlaceLevel.PROVINCE.value,
        period=kind.value,
        start=today - timedelta(days=800),
        end=today,
    )
    return max((r.period_start for r in rows), default=None)


def _choice(
    session: Session, runtime: Runtime, period: Frequency | None, day: date | None
) -> Choice:
    kind = period or Frequency.MONTH
    today = local_date(runtime.clock, runtime.settings.timezone)
    if day is None:
        day = _latest_first(session, kind, today) or today
    w = window(kind, day, runtime.settings.timezone)
    return Choice(kind, w.first, w.label)


def _indicator_rows(
    session: Session,
    runtime: Runtime,
    *,
    level: PlaceLevel,
    code: str,
    choice: Choice,
    lang: str,
    sector: str | None = None,
    ranks: bool = False,
) -> list[dict[str, Any]]:
    """Every active indicator of a place (by sector) with value, targets, status and trend."""
    indicators, _ = kpi_service.get_all(session=session, active=True, sector=sector)
    tz = runtime.settings.timezone
    start = window(choice.kind, choice.first, tz).shift(1 - TREND_LENGTH[choice.kind.value], tz)
    values, _ = kpi_service.get_values(
        session=session,
        level=level.value,
        place_codes=[code],
        period=choice.kind.value,
        sector=sector,
        start=start.first,
        end=choice.first,
    )
    by_code: dict[str, list[Any]] = defaultdict(list)
    for v in values:
        by_code[v.indicator_code].append(v)
    rows: list[dict[str, Any]] = []
    for indicator in indicators:
        history = sorted(by_code.get(indicator.code, []), key=lambda v: v.period_start)
        current = next((v for v in history if v.period_start == choice.first), None)
        rank: int | None = None
        ranked = 0
        if ranks and current is not None and current.value is not None:
            order = kpi_flows.rank(
                session=session, indicator=indicator, kind=choice.kind, first=choice.first
            )
            ranked = len(order)
            rank = next((r["rank"] for r in order if r["place_code"] == code), None)
        rows.append(
            {
                "code": indicator.code,
                "name": _name(lang, indicator.name, indicator.name_en),
                "sector": indicator.sector,
                "unit": indicator.unit,
                "direction": indicator.direction,
                "value": None if current is None else current.value,
                "target": kpi_flows.target_for(indicator, choice.first.year)
                if current is None
                else current.target,
                "target_2025": indicator.target_2025,
                "target_2030": indicator.target_2030,
                "status": "no_data" if current is None else current.status,
                "rank": rank,
                "ranked": ranked,
                "trend": [[v.period_label, v.value] for v in history],
            }
        )
    return rows


def _by_sector(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["sector"]].append(row)
    order = {s: i for i, s in enumerate(KPI_SECTORS)}
    return sorted(grouped.items(), key=lambda kv: order.get(kv[0], len(order)))


def _status_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"met": 0, "not_met": 0, "no_target": 0, "no_data": 0}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def _selector(
    session: Session, runtime: Runtime, principal: Principal, lang: str
) -> dict[str, Any]:
    """The place selector's choices in scope: pilot areas (with members) and communes/wards."""
    today = local_date(runtime.clock, runtime.settings.timezone)
    scope = principal.scope.unit_codes
    units, _ = unit_service.get_all(session=session, on=today, level="commune", limit=1000)
    areas, _ = unit_service.get_all_areas(session=session, limit=100)
    province = unit_service.get_province(session=session)
    area_rows = []
    for a in areas:
        members = unit_service.get_area_unit_codes(session=session, area_code=a.code) or frozenset()
        if scope is not None and not members <= scope:
            continue
        area_rows.append(
            {"code": a.code, "name": _name(lang, a.name, a.name_en), "units": sorted(members)}
        )
    return {
        "province": province.name if province else "",
        "areas": area_rows,
        "units": [
            {"code": u.code, "name": u.name} for u in units if scope is None or u.code in scope
        ],
    }


def _area_allowed(session: Session, principal: Principal, area: str) -> bool | None:
    """Whether a principal may see an area's page (None: no such area)."""
    members = unit_service.get_area_unit_codes(session=session, area_code=area)
    if members is None:
        return None
    scope = principal.scope.unit_codes
    return scope is None or members <= scope


def _kpi_strings(translate: Any, lang: str) -> dict[str, str]:
    return _strings(
        translate,
        lang,
        (
            "chart.value",
            "chart.target",
            "chart.empty",
            "status.met",
            "status.not_met",
            "status.no_target",
            "status.no_data",
            "sort.hint",
        ),
    )


def _kpi_page(
    request: Request,
    session: Session,
    runtime: Runtime,
    lang: str,
    translate: Any,
    principal: Principal,
    *,
    level: PlaceLevel,
    code: str,
    place_name: str,
    choice: Choice,
    base: str,
    selector: dict[str, Any] | None,
    area: str = "",
    unit: str = "",
) -> Response:
    rows = _indicator_rows(
        session,
        runtime,
        level=level,
        code=code,
        choice=choice,
        lang=lang,
        ranks=level is PlaceLevel.UNIT,
    )
    params = [
        ("level", level.value),
        ("place", code),
        ("period", choice.kind.value),
        ("start", choice.first.isoformat()),
        ("end", choice.first.isoformat()),
    ]
    config = {
        "lang": lang,
        "trends": {r["code"]: {"points": r["trend"], "target": r["target"]} for r in rows},
        "selector": selector,
        "strings": _kpi_strings(translate, lang),
    }
    return _render(
        request,
        "kpi.html",
        lang,
        translate,
        user=principal,
        level=level.value,
        code=code,
        place_name=place_name,
        choice=choice,
        periods=[f.value for f in Frequency],
        base=base,
        groups=_by_sector(rows),
        counts=_status_counts(rows),
        selector=selector,
        area=area,
        unit=unit,
        centre=lambda s: KPI_TO_CENTRE.get(s, s),
        downloads=downloads("/kpi/values", params, lang),
        number=number_formatter(lang),
        config=_json(config),
    )


@router.get("/kpi", response_class=HTMLResponse)
def kpi_overview(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    period: PeriodQuery = None,
    day: DayQuery = None,
    area: AreaQuery = None,
    unit: UnitQuery = None,
) -> Response:
    """Show every indicator of the province (or a chosen area or commune/ward) by sector."""
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Permission.KPI_READ):
        return _forbidden(request, lang, translate, principal)
    choice = _choice(session, runtime, period, day)
    selector = _selector(session, runtime, principal, lang)
    level, code, name = PlaceLevel.PROVINCE, "", selector["province"]
    province = unit_service.get_province(session=session)
    code = province.code if province is not None else "province"
    if unit:
        found = unit_service.get(session=session, unit_code=unit)
        if found is None:
            return _not_found(request, lang, translate, principal)
        if not principal.scope.covers_unit(unit):
            return _forbidden(request, lang, translate, principal)
        level, code, name = PlaceLevel.UNIT, unit, found.name
    elif area:
        allowed = _area_allowed(session, principal, area)
        if allowed is None:
            return _not_found(request, lang, translate, principal)
        if not allowed:
            return _forbidden(request, lang, translate, principal)
        found_area = unit_service.get_area(session=session, area_code=area)
        level, code = PlaceLevel.AREA, area
        name = _name(lang, found_area.name, found_area.name_en) if found_area else area
    return _kpi_page(
        request,
        session,
        runtime,
        lang,
        translate,
        principal,
        level=level,
        code=code,
        place_name=name,
        choice=choice,
        base="/kpi",
        selector=selector,
        area=area or "",
        unit=unit or "",
    )


@router.get("/kpi/units/{code}", response_class=HTMLResponse)
def kpi_unit(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    code: UnitPath,
    period: PeriodQuery = None,
    day: DayQuery = None,
) -> Response:
    """Show one commune's/ward's indicators against targets, with trends and ranks."""
    if principal is None:
        return _login_redirect(request)
    found = unit_service.get(session=session, unit_code=code)
    if found is None:
        return _not_found(request, lang, translate, principal)
    if not principal.can(Permission.KPI_READ) or not principal.scope.covers_unit(code):
        return _forbidden(request, lang, translate, principal)
    choice = _choice(session, runtime, period, day)
    return _kpi_page(
        request,
        session,
        runtime,
        lang,
        translate,
        principal,
        level=PlaceLevel.UNIT,
        code=code,
        place_name=found.name,
        choice=choice,
        base=f"/kpi/units/{code}",
        selector=None,
    )


@router.get("/kpi/areas/{code}", response_class=HTMLResponse)
def kpi_area(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    code: AreaPath,
    period: PeriodQuery = None,
    day: DayQuery = None,
) -> Response:
    """Show one area's indicators (e.g. former Biên Hòa) against targets, with trends."""
    if principal is None:
        return _login_redirect(request)
    allowed = _area_allowed(session, principal, code)
    if allowed is None:
        return _not_found(request, lang, translate, principal)
    if not allowed or not principal.can(Permission.KPI_READ):
        return _forbidden(request, lang, translate, principal)
    found = unit_service.get_area(session=session, area_code=code)
    choice = _choice(session, runtime, period, day)
    return _kpi_page(
        request,
        session,
        runtime,
        lang,
        translate,
        principal,
        level=PlaceLevel.AREA,
        code=code,
        place_name=_name(lang, found.name, found.name_en) if found else code,
        choice=choice,
        base=f"/kpi/areas/{code}",
        selector=None,
    )


@router.get("/kpi/sectors/{sector}", response_class=HTMLResponse)
def kpi_sector(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    sector: SectorPath,
    period: PeriodQuery = None,
    day: DayQuery = None,
) -> Response:
    """Show a sector's indicators across the communes/wards: a sortable table and rankings."""
    if principal is None:
        return _login_redirect(request)
    sector = CENTRE_TO_KPI.get(sector, sector)
    if sector not in KPI_SECTORS:
        return _not_found(request, lang, translate, principal)
    if not principal.can(Permission.KPI_READ):
        return _forbidden(request, lang, translate, principal)
    choice = _choice(session, runtime, period, day)
    indicators, _ = kpi_service.get_all(session=session, active=True, sector=sector)
    values, _ = kpi_service.get_values(
        session=session,
        sector=sector,
        period=choice.kind.value,
        start=choice.first,
        end=choice.first,
    )
    scope = principal.scope.unit_codes
    today = local_date(runtime.clock, runtime.settings.timezone)
    units, _ = unit_service.get_all(session=session, on=today, level="commune", limit=1000)
    cells: dict[str, dict[str, Any]] = defaultdict(dict)
    province: dict[str, Any] = {}
    for v in values:
        if v.level == PlaceLevel.UNIT.value:
            cells[v.place_code][v.indicator_code] = v
        elif v.level == PlaceLevel.PROVINCE.value:
            province[v.indicator_code] = v
    table = [
        {"code": u.code, "name": u.name, "cells": [cells[u.code].get(i.code) for i in indicators]}
        for u in units
        if scope is None or u.code in scope
    ]
    rankings: dict[str, Any] = {}
    for indicator in indicators:
        order = kpi_flows.rank(
            session=session, indicator=indicator, kind=choice.kind, first=choice.first
        )
        rankings[indicator.code] = {
            "name": _name(lang, indicator.name, indicator.name_en),
            "unit": indicator.unit,
            "items": [
                [r["name"], r["value"]] for r in order if scope is None or r["place_code"] in scope
            ],
        }
    params = [
        ("sector", sector),
        ("level", PlaceLevel.UNIT.value),
        ("period", choice.kind.value),
        ("start", choice.first.isoformat()),
        ("end", choice.first.isoformat()),
    ]
    config = {
        "lang": lang,
        "rankings": rankings,
        "strings": _kpi_strings(translate, lang),
    }
    return _render(
        request,
        "kpi_sector.html",
        lang,
        translate,
        user=principal,
        sector=sector,
        centre=KPI_TO_CENTRE.get(sector, sector),
        sectors=KPI_SECTORS,
        choice=choice,
        periods=[f.value for f in Frequency],
        indicators=[
            {
                "code": i.code,
                "name": _name(lang, i.name, i.name_en),
                "unit": i.unit,
                "direction": i.direction,
                "target": kpi_flows.target_for(i, choice.first.year),
                "province": province.get(i.code),
            }
            for i in indicators
        ],
        table=table,
        downloads=downloads("/kpi/values", params, lang),
        number=number_formatter(lang),
        config=_json(config),
    )


def sector_indicators(
    *, session: Session, runtime: Runtime, centre: str, lang: str
) -> dict[str, Any]:
    """Return a sector centre's indicators for the province in the newest computed month."""
    sector = CENTRE_TO_KPI.get(centre, centre)
    choice = _choice(session, runtime, Frequency.MONTH, None)
    rows = _indicator_rows(
        session,
        runtime,
        level=PlaceLevel.PROVINCE,
        code=_province_code(session),
        choice=choice,
        lang=lang,
        sector=sector,
    )
    return {"sector": sector, "label": choice.label, "rows": rows}


def _province_code(session: Session) -> str:
    province = unit_service.get_province(session=session)
    return province.code if province is not None else "province"


# --- pilot evaluation ----------------------------------------------------------------------


@router.get("/kpi/evaluation", response_class=HTMLResponse)
def kpi_evaluation(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    indicator: CodeList = None,
    go_live: DayQuery = None,
    period: PeriodQuery = None,
    before: Annotated[int, Query(ge=1, le=36)] = 3,
    after: Annotated[int, Query(ge=1, le=36)] = 3,
) -> Response:
    """Show the pilot evaluation: pilot areas against the rest, before and after a go-live."""
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Permission.KPI_READ):
        return _forbidden(request, lang, translate, principal)
    kind = period or Frequency.MONTH
    today = local_date(runtime.clock, runtime.settings.timezone)
    if go_live is None:
        go_live = first_day(Frequency.MONTH, today - timedelta(days=62))
    all_indicators, _ = kpi_service.get_all(session=session, active=True)
    known = {i.code for i in all_indicators}
    chosen = [c for c in indicator or [] if c in known]
    picked = [i for i in all_indicators if i.code in chosen] if chosen else all_indicators
    result = kpi_flows.evaluate_pilot(
        runtime=runtime,
        session=session,
        indicators=picked,
        go_live=go_live,
        kind=kind,
        before=before,
        after=after,
    )
    rows = [
        {**r, "name": _name(lang, r["name"], r["name_en"]), "sector": i.sector}
        for r, i in zip(result["rows"], picked, strict=True)
    ]
    params = [
        *[("indicator", c) for c in chosen],
        ("go_live", go_live.isoformat()),
        ("period", kind.value),
        ("before", str(before)),
        ("after", str(after)),
    ]
    config = {
        "lang": lang,
        "rows": [
            {
                "code": r["indicator_code"],
                "name": r["name"],
                "values": [
                    r["pilot_before"],
                    r["pilot_after"],
                    r["control_before"],
                    r["control_after"],
                ],
            }
            for r in rows
            if r["did"] is not None
        ],
        "strings": _strings(
            translate,
            lang,
            ("eval.pilot", "eval.control", "eval.before", "eval.after", "chart.empty"),
        ),
    }
    areas = [unit_service.get_area(session=session, area_code=a) for a in PILOT_AREAS]
    return _render(
        request,
        "kpi_evaluation.html",
        lang,
        translate,
        user=principal,
        result=result,
        rows=rows,
        indicators=[
            {"code": i.code, "name": _name(lang, i.name, i.name_en), "chosen": i.code in chosen}
            for i in all_indicators
        ],
        pilot_names=[_name(lang, a.name, a.name_en) for a in areas if a is not None],
        go_live=go_live,
        kind=kind.value,
        periods=[f.value for f in Frequency],
        before=before,
        after=after,
        pdf=downloads("/kpi/evaluation", params, lang)[2]["url"],
        downloads=downloads("/kpi/evaluation", params, lang),
        number=number_formatter(lang),
        config=_json(config),
    )


# --- Decision 766 scorecard ----------------------------------------------------------------


SCORE_KEYS = (
    "score.rank",
    "score.name",
    "score.total",
    "score.band",
    "score.dossiers",
    "score.points",
    "score.none",
    "score.failed",
    "score.period",
    "score.indicator",
    "score.value",
    "score.group",
    "score.procedure",
    "score.on_time",
    "score.average_days",
    "score.online",
    "score.ranked",
    "score.unranked",
    "score.not_found",
)


@router.get("/egov/scorecard", response_class=HTMLResponse)
def scorecard(
    request: Request,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    period: EgovPeriod = None,
    group_by: GroupQuery = None,
) -> Response:
    """Show the Decision 766 scorecard of every agency (or unit): points, band and rank."""
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Permission.EGOV_READ):
        return _forbidden(request, lang, translate, principal)
    group = group_by or "agency"
    params = [("group_by", group), ("period", period or "")]
    config = {
        "lang": lang,
        "api": f"{API}/egov/indicators?{urlencode([(k, v) for k, v in params if v])}",
        "group_by": group,
        "period": period or "",
        "strings": _strings(translate, lang, SCORE_KEYS),
    }
    return _render(
        request,
        "scorecard.html",
        lang,
        translate,
        user=principal,
        code=None,
        group_by=group,
        period=period or "",
        downloads=downloads("/egov/indicators", params, lang),
        config=_json(config),
    )


@router.get("/egov/scorecard/{code}", response_class=HTMLResponse)
def scorecard_detail(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    code: ScoreCode,
    period: EgovPeriod = None,
    group_by: GroupQuery = None,
) -> Response:
    """Show one agency's (or unit's) 766 scorecard: indicators, groups, procedures and rank."""
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Permission.EGOV_READ):
        return _forbidden(request, lang, translate, principal)
    today = local_date(runtime.clock, runtime.settings.timezone)
    agencies = egov_service.get_agencies(session=session, on=today)
    places = egov_service.get_places(session=session, on=today)
    group = group_by or ("agency" if code in agencies else "unit")
    known: dict[str, Any] = dict(agencies) if group == "agency" else dict(places)
    if code not in known:
        return _not_found(request, lang, translate, principal)
    scope = principal.scope
    if group == "agency":
        allowed = egov_service.in_scope(scope, agency_code=code, unit_code=None)
    else:
        allowed = scope.department_code is None and (
            scope.unit_codes is None or code in scope.unit_codes
        )
    if not allowed:
        return _forbidden(request, lang, translate, principal)
    entry = known[code]
    params = [("group_by", group), ("period", period or "")]
    query = urlencode([(k, v) for k, v in params if v])
    config = {
        "lang": lang,
        "api": f"{API}/egov/scorecard/{code}?{query}",
        "code": code,
        "group_by": group,
        "period": period or "",
        "strings": _strings(translate, lang, SCORE_KEYS),
    }
    return _render(
        request,
        "scorecard.html",
        lang,
        translate,
        user=principal,
        code=code,
        place_name=_name(lang, entry.name, entry.name_en),
        group_by=group,
        period=period or "",
        downloads=downloads(f"/egov/scorecard/{code}", params, lang),
        config=_json(config),
    )


# --- programme board -----------------------------------------------------------------------


@router.get("/programme", response_class=HTMLResponse)
def programme_board(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    phase: PhaseQuery = None,
) -> Response:
    """Show the programme board: items, matrix, roadmap, budget split and late items."""
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Permission.PROGRAMME_READ):
        return _forbidden(request, lang, translate, principal)
    today = local_date(runtime.clock, runtime.settings.timezone)
    phases = programme_service.get_all_phases(session=session)
    phase_code = phase if phase and any(p.code == phase for p in phases) else None
    items, total = programme_service.get_all(
        session=session, today=today, phase_code=phase_code, limit=programme_service.MAX_ROWS
    )
    stats = programme_service.get_item_stats(
        session=session, item_ids=[i.id for i in items], today=today
    )
    departments, _ = unit_service.get_all_departments(session=session, limit=1000)
    dept_names = {d.code: _name(lang, d.name, d.name_en) for d in departments}
    item_rows = [
        {
            "code": i.code,
            "name": _name(lang, i.name, i.name_en),
            "phase": i.phase_code,
            "sector": i.sector,
            "owner": i.owner_department_code,
            "owner_name": dept_names.get(i.owner_department_code, i.owner_department_code),
            "units": 0,
            "status": i.status,
            "progress": i.progress,
            "allocated": stats[i.id].allocated,
            "disbursed": stats[i.id].disbursed,
            "late": stats[i.id].days_late is not None,
        }
        for i in items
    ]
    matrix = programme_service.get_matrix(session=session, phase_code=phase_code)
    roles = {(c["department_code"], c["item_code"]): c["role"] for c in matrix.cells}
    unit_counts = {m["code"]: m["unit_count"] for m in matrix.items}
    for row in item_rows:
        row["units"] = unit_counts.get(row["code"], 0)
    roadmap = programme_service.get_roadmap(session=session, today=today, phase_code=phase_code)
    gantt = [
        {
            "code": item.code,
            "name": _name(lang, item.name, item.name_en),
            "phase": phase_row.code,
            "start": (item.start_date or date(phase_row.start_year, 1, 1)).isoformat(),
            "end": (item.end_date or date(phase_row.end_year, 12, 31)).isoformat(),
            "progress": item.progress,
            "status": item.status,
            "milestones": [
                {
                    "name": _name(lang, m.name, m.name_en),
                    "due": m.due_date.isoformat(),
                    "done": m.done_date is not None,
                }
                for m in milestones
            ],
        }
        for phase_row, entries in roadmap
        for item, milestones in entries
    ]
    budget = programme_service.get_budget_split(session=session, phase_code=phase_code)
    late = programme_service.get_late(session=session, today=today, phase_code=phase_code)
    late_rows = [
        {
            "code": item.code,
            "name": _name(lang, item.name, item.name_en),
            "owner": item.owner_department_code,
            "progress": item.progress,
            "milestones": [
                {"name": _name(lang, m.name, m.name_en), "due": m.due_date, "days": days}
                for m, days in milestones
            ],
            "days": max(days for _, days in milestones),
        }
        for item, milestones in late
    ]
    years = [row for p in budget.phases for row in p["years"]]
    params = [("phase", phase_code or "")]
    config = {
        "lang": lang,
        "today": today.isoformat(),
        "gantt": gantt,
        "budget": [
            {
                "year": r["year"],
                "recurrent": r["allocated_recurrent"],
                "investment": r["allocated_investment"],
                "recurrent_share": r["recurrent_share_pct"],
                "planned": r["planned_recurrent_pct"],
            }
            for r in years
        ],
        "strings": _strings(
            translate,
            lang,
            (
                "budget.recurrent",
                "budget.investment",
                "budget.share",
                "budget.planned",
                "budget.axis",
                "gantt.progress",
                "gantt.today",
                "gantt.milestone",
                "chart.empty",
            ),
        ),
    }
    return _render(
        request,
        "programme.html",
        lang,
        translate,
        user=principal,
        phases=[{"code": p.code, "name": _name(lang, p.name, p.name_en)} for p in phases],
        phase=phase_code or "",
        items=item_rows,
        total=total,
        matrix=matrix,
        roles=roles,
        dept_names=dept_names,
        budget=budget,
        late=late_rows,
        today=today,
        downloads={
            "items": downloads("/programme/items", params, lang),
            "matrix": downloads("/programme/matrix", params, lang),
            "roadmap": downloads("/programme/roadmap", params, lang),
            "budget": downloads("/programme/budget", params, lang),
            "late": downloads("/programme/late", params, lang),
        },
        number=number_formatter(lang),
        config=_json(config),
    )
