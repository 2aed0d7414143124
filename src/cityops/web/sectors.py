"""Page routes: entity detail, the sector centres and the wall-screen rotation.

The pages are rendered on the server from the contexts' services, in the caller's scope, so a
page shows exactly what the API would show that user; the browser only draws charts and, on the
entity page, fetches history from the NGSI-LD temporal API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cityops.alerts import service as alert_service
from cityops.context import flows as context_flows
from cityops.context import service as context_service
from cityops.core.deps import ClockDep, LangDep, RuntimeDep, SessionDep, TranslatorDep
from cityops.core.i18n import format_number
from cityops.core.runtime import Runtime
from cityops.core.security import OptionalPrincipal, Permission, Principal
from cityops.incidents import service as incident_service
from cityops.programme import service as programme_service
from cityops.units import service as unit_service
from cityops.units.flows import local_date
from cityops.web import measure
from cityops.web.api import _login_redirect, _render

router = APIRouter(include_in_schema=False)

OPEN_ALERT = ("open", "acknowledged", "snoozed")
OPEN_INCIDENT = ("new", "assigned", "in_progress")
# A sector page reads at most this many entities of one type: beyond it the table is cut (and
# says so); the province's demo has a few hundred of the most numerous type.
MAX_ENTITIES = 2000
TABLE_ROWS = 200
DEFAULT_INTERVAL = 30


@dataclass(frozen=True, slots=True)
class View:
    """One table of live data: an entity type (a facility category) and the columns shown."""

    key: str
    entity_type: str
    columns: tuple[str, ...]
    chart: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Sector:
    """A sector centre: its department, its live-data views and the sector codes it covers."""

    code: str
    department: str
    views: tuple[View, ...]
    # Incident and alert sector codes shown (environment also covers agriculture's reservoirs).
    codes: tuple[str, ...]


HOSPITALS = View(
    "hospitals",
    "PointOfInterest",
    ("capacity", "bedOccupancy", "outpatientVisits"),
    "bedOccupancy",
    "hospital",
)
SCHOOLS = View(
    "schools",
    "PointOfInterest",
    ("capacity", "attendanceRate", "occupancy"),
    "attendanceRate",
    "school",
)
TRAFFIC = View(
    "traffic",
    "TrafficFlowObserved",
    ("roadName", "travelTimeIndex", "averageVehicleSpeed", "intensity", "congested"),
    "travelTimeIndex",
)

SECTORS: dict[str, Sector] = {
    s.code: s
    for s in (
        Sector("health", "SYT", (HOSPITALS,), ("health",)),
        Sector("education", "SGDDT", (SCHOOLS,), ("education",)),
        Sector(
            "transport",
            "SXD",
            (
                TRAFFIC,
                View(
                    "parking",
                    "OnStreetParking",
                    ("totalSpotNumber", "availableSpotNumber", "occupancy"),
                    "occupancy",
                ),
            ),
            ("transport",),
        ),
        Sector(
            "environment",
            "SNNMT",
            (
                View(
                    "air",
                    "AirQualityObserved",
                    ("airQualityIndex", "pm25", "pm10"),
                    "airQualityIndex",
                ),
                View(
                    "water",
                    "WaterObserved",
                    ("waterLevel", "floodLevelStatus", "reservoirStatus"),
                    "waterLevel",
                ),
                View("water_quality", "WaterQualityObserved", ("pH", "cod", "NH4", "tss"), "cod"),
                View("waste", "WasteContainer", ("fillingLevel", "status"), "fillingLevel"),
            ),
            ("environment", "agriculture"),
        ),
        Sector(
            "construction",
            "SXD",
            (
                View(
                    "streetlights",
                    "Streetlight",
                    ("streetName", "status", "powerState", "illuminanceLevel"),
                    "illuminanceLevel",
                ),
            ),
            ("construction",),
        ),
        # Social security has no sensors: its centre shows the facilities people rely on
        # (hospitals and schools), its incidents and its programme items.
        Sector(
            "social_security",
            "SNV",
            (
                View("hospitals", "PointOfInterest", ("capacity",), "capacity", "hospital"),
                View("schools", "PointOfInterest", ("capacity",), "capacity", "school"),
            ),
            ("social_security",),
        ),
        Sector(
            "public_order",
            "CAT",
            (View("noise", "NoiseLevelObserved", ("LAeq", "LAmax"), "LAeq"), TRAFFIC),
            ("public_order",),
        ),
        Sector("egov", "SKHCN", (), ("egov",)),
    )
}

SectorPath = Annotated[str, Path(max_length=32, pattern=r"^[a-z_]+$")]
AreaQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9-]*$")]
UnitQuery = Annotated[str | None, Query(max_length=16, pattern=r"^[0-9A-Za-z_-]*$")]


# UN/CEFACT common codes → the symbols a reader knows (the code itself when not listed).
UNIT_SYMBOLS = {
    "GQ": "µg/m³",
    "GP": "mg/m³",
    "CEL": "°C",
    "C62": "",
    "MMT": "mm",
    "MTS": "m/s",
    "DD": "°",
    "A97": "hPa",
    "MTR": "m",
    "M1": "mg/L",
    "MQH": "m³/h",
    "KMH": "km/h",
    "2N": "dB",
    "P1": "%",
    "LTR": "L",
}


def _json(value: Any) -> str:
    # Inside <script>: "</" would end the element early.
    return json.dumps(value, ensure_ascii=False, default=str).replace("</", "<\\/")


def _local(value: datetime | None, runtime: Runtime) -> str:
    if value is None:
        return "—"
    return value.astimezone(ZoneInfo(runtime.settings.timezone)).strftime("%d/%m/%Y %H:%M")


def _area_units(
    session: Session, area: str | None, unit: str | None
) -> tuple[frozenset[str] | None, str | None, str | None]:
    """Resolve the area selector to unit codes (None: the whole province), ignoring unknowns."""
    codes: frozenset[str] | None = None
    chosen_area = chosen_unit = None
    if area:
        members = unit_service.get_area_unit_codes(session=session, area_code=area)
        if members is not None:
            codes, chosen_area = members, area
    if unit:
        subtree = unit_service.get_subtree_codes(session=session, unit_code=unit)
        if subtree:
            codes = subtree if codes is None else codes & subtree
            chosen_unit = unit
    return codes, chosen_area, chosen_unit


def _selector(session: Session, runtime: Runtime, lang: str) -> dict[str, Any]:
    """The area selector's choices: pilot areas (with members) and current communes/wards."""
    today = local_date(runtime.clock, runtime.settings.timezone)
    units, _ = unit_service.get_all(session=session, on=today, level="commune", limit=1000)
    areas, _ = unit_service.get_all_areas(session=session, limit=100)
    province = unit_service.get_province(session=session)
    return {
        "province": province.name if province else "",
        "areas": [
            {
                "code": a.code,
                "name": a.name_en if lang == "en" and a.name_en else a.name,
                "units": sorted(
                    unit_service.get_area_unit_codes(session=session, area_code=a.code) or ()
                ),
            }
            for a in areas
        ],
        "units": [{"code": u.code, "name": u.name} for u in units],
    }


def _value(attribute: Any) -> Any:
    if attribute.attr_type == "GeoProperty":
        return None
    value = attribute.value
    if isinstance(value, dict) and "@value" in value:
        value = value["@value"]
    return value


# Text values with a translation: flood alarm levels are shared with the operations screen.
VALUE_KEYS = {
    "floodLevelStatus": "web.flood.",
    "status": "web.sector.value.",
    "powerState": "web.sector.value.",
    "reservoirStatus": "web.sector.value.",
}


def _display(value: Any, lang: str, translate: Any = None, name: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, str) and translate is not None and name in VALUE_KEYS:
        key = f"{VALUE_KEYS[name]}{value}"
        text = str(translate(key, lang))
        return value if text == key else text
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, int | float):
        digits = 0 if float(value).is_integer() else 2
        return format_number(value, lang, digits)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _entities(
    session: Session,
    runtime: Runtime,
    principal: Principal,
    view: View,
    unit_codes: frozenset[str] | None,
) -> tuple[list[dict[str, Any]], bool]:
    """Read the entities of one view in scope and area, with their current values."""
    tenant = context_service.get_tenant(session=session, name=context_service.DEFAULT_TENANT)
    if tenant is None or not principal.can(Permission.CONTEXT_READ):
        return [], False
    ctx = context_flows.default_context(runtime)
    rows, _ = context_service.query_entities(
        session=session,
        tenant_id=tenant.id,
        conditions=[context_service.entity_filter_types([ctx.expand(view.entity_type)])],
        scope=principal.scope,
        limit=MAX_ENTITIES,
        offset=0,
        count=False,
    )
    if unit_codes is not None:
        rows = [r for r in rows if r.unit_code in unit_codes]
    names = [ctx.expand(n) for n in ("name", "category", *view.columns)]
    current = context_service.get_attributes(
        session=session, entity_pks=[r.pk for r in rows], names=names
    )
    out: list[dict[str, Any]] = []
    for row in rows:
        values: dict[str, Any] = {}
        observed: datetime | None = None
        for attribute in current.get(row.pk, []):
            if attribute.dataset_id:
                continue
            values[ctx.compact(attribute.name)] = _value(attribute)
            if attribute.observed_at and (observed is None or attribute.observed_at > observed):
                observed = attribute.observed_at
        category = values.get("category")
        categories = category if isinstance(category, list) else [category]
        if view.category and view.category not in categories:
            continue
        out.append(
            {
                "id": row.entity_id,
                "name": values.get("name") or row.entity_id,
                "unit": row.unit_code,
                "values": {c: values.get(c) for c in view.columns},
                "observed": _local(observed, runtime) if observed else "—",
            }
        )
    truncated = len(rows) >= MAX_ENTITIES
    return out, truncated


def _numbers(items: list[dict[str, Any]], column: str | None) -> list[float]:
    if column is None:
        return []
    return [
        float(v)
        for v in (i["values"].get(column) for i in items)
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]


def _alerts(
    session: Session,
    principal: Principal,
    *,
    unit_codes: frozenset[str] | None = None,
    sector: str | None = None,
    entity_id: str | None = None,
    limit: int = 50,
) -> tuple[list[Any], int]:
    if not principal.can(Permission.ALERT_READ):
        return [], 0
    return alert_service.get_all_alerts(
        session=session,
        scope=principal.scope,
        status=list(OPEN_ALERT),
        unit_codes=unit_codes,
        sector=sector,
        entity_id=entity_id,
        limit=limit,
    )


def _alert_rows(alerts: list[Any], lang: str, runtime: Runtime) -> list[dict[str, Any]]:
    return [
        {
            "id": a.id,
            "title": a.title_en if lang == "en" else a.title_vi,
            "severity": a.severity,
            "status": a.status,
            "entity_id": a.entity_id,
            "unit": a.unit_code,
            "opened": _local(a.opened_at, runtime),
        }
        for a in alerts
    ]


def _incident_rows(rows: list[Any], runtime: Runtime) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "code": r["code"],
            "title": r["title"],
            "severity": r["severity"],
            "status": r["status"],
            "unit": r["unit_code"],
            "department": r["department_code"],
            "overdue": r["overdue"],
            "created": _local(r["created_at"], runtime),
        }
        for r in rows
    ]


def _labeller(translate: Any, lang: str) -> Any:
    """Return a function naming an attribute in `lang` (its own name when none is written)."""

    def label(name: str | None) -> str:
        if not name:
            return ""
        key = f"web.sector.attr.{name}"
        text = str(translate(key, lang))
        return name if text == key else text

    return label


def _strings(translate: Any, lang: str, prefix: str, keys: tuple[str, ...]) -> dict[str, str]:
    return {key: str(translate(f"{prefix}{key}", lang)) for key in keys}


CHART_KEYS = (
    "range.hour",
    "range.day",
    "range.week",
    "range.month",
    "chart.empty",
    "chart.failed",
    "chart.avg",
    "chart.min",
    "chart.max",
    "chart.value",
)


@router.get("/entities/{entity_id:path}", response_class=HTMLResponse)
def entity_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    clock: ClockDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    entity_id: Annotated[str, Path(max_length=512)],
) -> Response:
    """Show one entity: current values, a history chart, its open alerts and incidents."""
    if principal is None:
        return _login_redirect(request)
    tenant = context_service.get_tenant(session=session, name=context_service.DEFAULT_TENANT)
    row = None
    if tenant is not None and principal.can(Permission.CONTEXT_READ):
        row = context_service.get_entity(
            session=session, tenant_id=tenant.id, entity_id=entity_id, scope=principal.scope
        )
    if row is None:
        response = _render(
            request,
            "entity.html",
            lang,
            translate,
            user=principal,
            entity=None,
            entity_id=entity_id,
            label=_labeller(translate, lang),
        )
        response.status_code = 404
        return response
    ctx = context_flows.default_context(runtime)
    attributes = []
    numeric: list[str] = []
    name = entity_id
    for attribute in context_service.get_attributes(session=session, entity_pks=[row.pk]).get(
        row.pk, []
    ):
        short = ctx.compact(attribute.name)
        value = _value(attribute)
        if short == "name" and isinstance(value, str):
            name = value
        if attribute.attr_type == "GeoProperty":
            continue
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and attribute.observed_at is not None
            and short not in numeric
        ):
            numeric.append(short)
        attributes.append(
            {
                "name": short,
                "dataset": attribute.dataset_id,
                "value": _display(value, lang, translate, short),
                "unit": UNIT_SYMBOLS.get(attribute.unit_code, attribute.unit_code)
                if attribute.unit_code
                else "",
                "observed": _local(attribute.observed_at, runtime)
                if attribute.observed_at
                else "—",
            }
        )
    alerts, _ = _alerts(session, principal, entity_id=entity_id)
    incidents: list[dict[str, Any]] = []
    if principal.can(Permission.INCIDENT_READ) and principal.can(Permission.ALERT_READ):
        # An entity's incidents are those opened from its alerts (open or not: the incident may
        # outlive the alert that opened it).
        every, _ = alert_service.get_all_alerts(
            session=session, scope=principal.scope, entity_id=entity_id, limit=100
        )
        for alert in every:
            incident = incident_service.get_by_alert_id(session=session, alert_id=alert.id)
            if (
                incident is not None
                and incident.status in OPEN_INCIDENT
                and incident_service.can_see(scope=principal.scope, incident=incident)
            ):
                incidents.append(
                    {
                        "id": incident.id,
                        "code": incident.code,
                        "title": incident.title,
                        "severity": incident.severity,
                        "status": incident.status,
                        "created": _local(incident.created_at, runtime),
                    }
                )
    preferred = {
        "airQualityIndex",
        "waterLevel",
        "bedOccupancy",
        "travelTimeIndex",
        "LAeq",
        "fillingLevel",
        "attendanceRate",
        "occupancy",
        "illuminanceLevel",
    }
    numeric.sort(key=lambda n: (n not in preferred, n))
    config = {
        "lang": lang,
        "timeZone": runtime.settings.timezone,
        "entityId": entity_id,
        "attributes": numeric,
        "units": {a["name"]: a["unit"] for a in attributes if a["unit"]},
        "now": clock.now().isoformat(),
        "strings": _strings(translate, lang, "web.entity.", CHART_KEYS),
    }
    return _render(
        request,
        "entity.html",
        lang,
        translate,
        user=principal,
        entity={
            "id": entity_id,
            "name": name,
            "type": ctx.compact(row.type),
            "unit": row.unit_code,
            "lat": row.lat,
            "lon": row.lon,
        },
        entity_id=entity_id,
        label=_labeller(translate, lang),
        attributes=attributes,
        numeric=numeric,
        alerts=_alert_rows(alerts, lang, runtime),
        incidents=incidents,
        config=_json(config),
    )


def _sector_page(
    sector: Sector,
    request: Request,
    session: Session,
    runtime: Runtime,
    lang: str,
    translate: Any,
    principal: Principal,
    area: str | None,
    unit: str | None,
    wall: bool,
) -> Response:
    unit_codes, chosen_area, chosen_unit = _area_units(session, area, unit)
    now = runtime.clock.now()
    selector = _selector(session, runtime, lang)
    unit_names = {u["code"]: u["name"] for u in selector["units"]}
    views = []
    for view in sector.views:
        rows, truncated = _entities(session, runtime, principal, view, unit_codes)
        values = _numbers(rows, view.chart)
        rows.sort(key=lambda i: str(i["name"]))
        views.append(
            {
                "key": view.key,
                "type": view.entity_type,
                "columns": view.columns,
                "chart": view.chart,
                "count": len(rows),
                "avg": sum(values) / len(values) if values else None,
                "max": max(values) if values else None,
                "truncated": truncated or len(rows) > TABLE_ROWS,
                "items": [
                    {
                        **i,
                        "unit_name": unit_names.get(i["unit"] or "", i["unit"]),
                        "cells": [
                            _display(i["values"].get(c), lang, translate, c) for c in view.columns
                        ],
                    }
                    for i in rows[:TABLE_ROWS]
                ],
                # The chart shows every entity with a value, largest first (at most 30 bars).
                "series": sorted(
                    (
                        [str(i["name"]), i["values"][view.chart]]
                        for i in rows
                        if view.chart
                        and isinstance(i["values"].get(view.chart), int | float)
                        and not isinstance(i["values"].get(view.chart), bool)
                    ),
                    key=lambda p: -float(p[1]),
                )[:30],
            }
        )
    alerts: list[Any] = []
    alert_total = 0
    for code in sector.codes:
        found, total = _alerts(session, principal, unit_codes=unit_codes, sector=code)
        alerts.extend(found)
        alert_total += total
    alerts.sort(key=lambda a: a.opened_at, reverse=True)
    incidents: list[Any] = []
    incident_total = overdue_total = 0
    if principal.can(Permission.INCIDENT_READ):
        for code in sector.codes:
            found, total = incident_service.get_all(
                session=session,
                scope=principal.scope,
                now=now,
                statuses=list(OPEN_INCIDENT),
                unit_codes=unit_codes,
                sector=code,
                limit=50,
            )
            incidents.extend(found)
            incident_total += total
            _, overdue = incident_service.get_all(
                session=session,
                scope=principal.scope,
                now=now,
                statuses=list(OPEN_INCIDENT),
                unit_codes=unit_codes,
                sector=code,
                overdue=True,
                limit=1,
            )
            overdue_total += overdue
    incidents.sort(key=lambda r: r["created_at"], reverse=True)
    items: list[dict[str, Any]] = []
    items_total = items_done = 0
    if principal.can(Permission.PROGRAMME_READ):
        today = local_date(runtime.clock, runtime.settings.timezone)
        item_rows, items_total = programme_service.get_all(
            session=session, today=today, sector=sector.code, limit=100
        )
        items_done = sum(1 for r in item_rows if r.status == "done")
        items = [
            {
                "code": r.code,
                "name": r.name_en if lang == "en" and r.name_en else r.name,
                "owner": r.owner_department_code,
                "status": r.status,
                "progress": r.progress,
            }
            for r in item_rows
        ]
    department = unit_service.get_department(session=session, department_code=sector.department)
    figures = [
        ("alerts", alert_total),
        ("incidents", incident_total),
        ("overdue", overdue_total),
        ("programme", f"{items_done}/{items_total}"),
    ]
    config = {
        "lang": lang,
        "sector": sector.code,
        "egov": sector.code == "egov" and principal.can(Permission.EGOV_READ),
        "views": [
            {
                "key": v["key"],
                "chart": v["chart"],
                "series": v["series"],
                "label": _labeller(translate, lang)(v["chart"]),
            }
            for v in views
        ],
        "selector": selector,
        "area": chosen_area or "",
        "unit": chosen_unit or "",
        "strings": _strings(translate, lang, "web.sector.", SECTOR_JS_KEYS),
    }
    return _render(
        request,
        "sector.html",
        lang,
        translate,
        user=principal,
        sector=sector,
        sectors=list(SECTORS),
        department=department,
        views=views,
        alerts=_alert_rows(alerts[:50], lang, runtime),
        incidents=_incident_rows(incidents[:50], runtime),
        items=items,
        figures=figures,
        selector=selector,
        area=chosen_area or "",
        unit=chosen_unit or "",
        wall=wall,
        label=_labeller(translate, lang),
        number=lambda v, d=1: format_number(v, lang, d) if v is not None else "—",
        updated=_local(now, runtime),
        config=_json(config),
        kpis=measure.sector_indicators(
            session=session, runtime=runtime, centre=sector.code, lang=lang
        )
        if principal.can(Permission.KPI_READ)
        else None,
        number2=measure.number_formatter(lang),
    )


SECTOR_JS_KEYS = (
    "egov.total",
    "egov.rank",
    "egov.band",
    "egov.dossiers",
    "egov.agency",
    "egov.none",
    "egov.failed",
    "egov.period",
)


@router.get("/sectors", response_class=HTMLResponse)
def sectors_index(request: Request, principal: OptionalPrincipal) -> Response:
    """Send the visitor to the first sector centre."""
    if principal is None:
        return _login_redirect(request)
    return Response(status_code=303, headers={"Location": "/sectors/health"})


@router.get("/sectors/{sector}", response_class=HTMLResponse)
def sector_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    sector: SectorPath,
    area: AreaQuery = None,
    unit: UnitQuery = None,
    wall: Annotated[bool, Query()] = False,
) -> Response:
    """Show a sector centre: live data, open alerts and incidents, programme items, figures."""
    if principal is None:
        return _login_redirect(request)
    found = SECTORS.get(sector)
    if found is None:
        response = _render(
            request,
            "sector.html",
            lang,
            translate,
            user=principal,
            sector=None,
            sectors=list(SECTORS),
            wall=False,
            config="{}",
        )
        response.status_code = 404
        return response
    return _sector_page(
        found, request, session, runtime, lang, translate, principal, area, unit, wall
    )


@router.get("/wall", response_class=HTMLResponse)
def wall_page(
    request: Request,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    area: AreaQuery = None,
    unit: UnitQuery = None,
    interval: Annotated[int, Query(ge=5, le=3600)] = DEFAULT_INTERVAL,
) -> Response:
    """Show the wall screen: the sector centres in rotation, in large type."""
    if principal is None:
        return _login_redirect(request)
    config = {
        "lang": lang,
        "sectors": [
            {"code": code, "name": str(translate(f"web.sector.name.{code}", lang))}
            for code in SECTORS
        ],
        "interval": interval,
        "area": area or "",
        "unit": unit or "",
        "strings": _strings(translate, lang, "web.wall.", ("pause", "resume", "next")),
    }
    return _render(
        request,
        "wall.html",
        lang,
        translate,
        user=principal,
        interval=interval,
        area=area or "",
        unit=unit or "",
        config=_json(config),
    )
