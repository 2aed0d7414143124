"""Compact map layers for the operations screen: every located sensor and every open incident
in one response each.

The screen draws 10,000 sensors and 1,000 incidents at once; read page by page through the
NGSI-LD API (JSON-LD compaction of every attribute) that took tens of seconds. These routes
read only what a marker needs, from the current-state tables with plain SQL rows, and answer
`{"fields": [...], "rows": [[...], ...], "count": n, "truncated": bool}`: one array per marker,
its members in the order of `fields`. Each response carries a weak ETag (a digest of the body)
and `Cache-Control: private, max-age=5`; `If-None-Match` with the same tag answers 304.

Scope is the caller's, as on the APIs the data comes from: sensors are cut by the caller's
units (as NGSI-LD does), incidents by units and department (as `/api/v1/incidents` does).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cityops.context import flows as context_flows
from cityops.context import service as context_service
from cityops.context.normalize import iso
from cityops.core.deps import ClockDep, RuntimeDep, SessionDep
from cityops.core.errors import NotFound
from cityops.core.etag import conditional
from cityops.core.schemas import SINGLE_LINE
from cityops.core.security import Permission, Principal, require
from cityops.incidents import service as incident_service
from cityops.units import service as unit_service

router = APIRouter(tags=["map"])

CACHE_CONTROL = "private, max-age=5"
OPEN_INCIDENT = ("new", "assigned", "in_progress")
# More open incidents than a map can show usefully; `truncated` says when some were left out.
MAX_INCIDENTS = 10_000

# Official VN_AQI bands (Decision 1459/QĐ-TCMT): upper bound → code (web.aqi.<code>).
AQI_BANDS = (
    (50.0, "good"),
    (100.0, "moderate"),
    (150.0, "poor"),
    (200.0, "bad"),
    (300.0, "veryBad"),
)
FLOOD_LEVELS = frozenset({"normal", "alarm1", "alarm2", "alarm3"})
# Hospital bed occupancy (%): lower bound → class.
OCCUPANCY_CLASSES = ((95.0, "critical"), (85.0, "high"), (70.0, "elevated"))


def aqi_band(index: float) -> str:
    """Return the VN_AQI band code of an index."""
    for upper, code in AQI_BANDS:
        if index <= upper:
            return code
    return "hazardous"


def occupancy_class(percent: float) -> str:
    """Return the class of a bed occupancy in percent."""
    for lower, code in OCCUPANCY_CLASSES:
        if percent >= lower:
            return code
    return "normal"


@dataclass(frozen=True, slots=True)
class SensorKind:
    """How one entity type is drawn: its headline value and the attribute giving its level."""

    entity_type: str
    value: str
    level: str
    classify: Callable[[float | None, str | None], str | None]


def _by_number(rule: Callable[[float], str]) -> Callable[[float | None, str | None], str | None]:
    return lambda number, _text: None if number is None else rule(number)


def _flood(_number: float | None, text: str | None) -> str | None:
    return text if text in FLOOD_LEVELS else None


SENSOR_KINDS = (
    SensorKind("AirQualityObserved", "airQualityIndex", "airQualityIndex", _by_number(aqi_band)),
    SensorKind("WaterObserved", "waterLevel", "floodLevelStatus", _flood),
    SensorKind("PointOfInterest", "bedOccupancy", "bedOccupancy", _by_number(occupancy_class)),
)
SENSOR_FIELDS = ("id", "type", "lat", "lon", "unit", "level", "value", "observedAt", "name")
INCIDENT_FIELDS = (
    "code",
    "lat",
    "lon",
    "unit",
    "severity",
    "status",
    "title",
    "alertId",
    "createdAt",
)


class MapLayer(BaseModel):
    """A map layer: one array per marker, its members in the order of `fields`."""

    fields: list[str] = Field(description="Names of the members of every row, in order.")
    rows: list[list[Any]] = Field(description="One array per marker.")
    count: int = Field(description="Rows in this response.")
    truncated: bool = Field(description="Whether markers were left out (too many to draw).")


AreaQuery = Annotated[
    str | None,
    Query(max_length=64, pattern=SINGLE_LINE, description="Only the units of this area."),
]
UnitQuery = Annotated[
    str | None,
    Query(
        max_length=16,
        pattern=SINGLE_LINE,
        description="Only this commune or ward (or unit) and the units under it.",
    ),
]
ContextReader = Annotated[Principal, Depends(require(Permission.CONTEXT_READ))]
IncidentReader = Annotated[Principal, Depends(require(Permission.INCIDENT_READ))]
LAYER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": MapLayer, "description": "The layer."},
    304: {"description": "Unchanged since the ETag sent in If-None-Match."},
}


def _area_units(session: Session, area: str | None, unit: str | None) -> frozenset[str] | None:
    """Resolve `area` and `unit` to unit codes (None: no narrowing); unknown codes are 404s."""
    codes: frozenset[str] | None = None
    if area:
        members = unit_service.get_area_unit_codes(session=session, area_code=area)
        if members is None:
            raise NotFound("units.area.not_found", code=area)
        codes = members
    if unit:
        subtree = unit_service.get_subtree_codes(session=session, unit_code=unit)
        if not subtree:
            raise NotFound("units.unit.not_found", code=unit)
        codes = subtree if codes is None else codes & subtree
    return codes


def cached_json(request: Request, payload: Any) -> Response:
    """Answer a JSON body with a weak ETag of its bytes, or 304 if the client holds it."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return conditional(request, body, cache_control=CACHE_CONTROL)


def _round(value: float | None) -> float | None:
    # Six decimals are 0.1 m: all a marker needs, and a third fewer bytes than a full float.
    return None if value is None else round(value, 6)


def sensor_rows(
    rows: Sequence[Any], kinds: dict[str, SensorKind], names: dict[str, str]
) -> list[list[Any]]:
    """Fold plain (entity, attribute) rows into one marker row per entity.

    `rows` are those of `context_service.get_located_values` (an entity's rows adjacent);
    `kinds` maps expanded entity types to their kind, `names` expanded attribute names to short
    ones.
    """
    out: list[list[Any]] = []
    stamps: dict[Any, str] = {}  # sensors reporting together share their time: format it once
    empty = (None, None, None)
    # Positional access: this loop runs once per sensor value of the province.
    for _, group in groupby(rows, key=itemgetter(0)):
        members = list(group)
        head = members[0]
        values = {names[r[5]]: (r[6], r[7], r[8]) for r in members if r[5] is not None}
        kind = kinds[head[1]]
        number, _, observed = values.get(kind.value, empty)
        level_number, level_text, level_observed = values.get(kind.level, empty)
        when = observed or level_observed
        stamp = None
        if when is not None:
            stamp = stamps.get(when)
            if stamp is None:
                stamp = stamps[when] = iso(when)
        out.append(
            [
                head[0],
                kind.entity_type,
                _round(head[2]),
                _round(head[3]),
                head[4],
                kind.classify(level_number, level_text),
                number,
                stamp,
                values.get("name", empty)[1],
            ]
        )
    return out


@router.get(
    "/map/sensors",
    summary="Every located sensor as compact map rows",
    response_model=None,
    responses=LAYER_RESPONSES,
)
def map_sensors(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: ContextReader,
    area: AreaQuery = None,
    unit: UnitQuery = None,
) -> Response:
    """Return the caller's located air, water and facility sensors with their level and value.

    `level` is the class the map colours by: the VN_AQI band for air quality (good … hazardous),
    the flood alarm level for water (normal, alarm1–3), the bed occupancy class for facilities
    (normal, elevated ≥ 70 %, high ≥ 85 %, critical ≥ 95 %); null when unknown. `value` is the
    headline number (AQI, water level in m, bed occupancy in %) and `observedAt` its time.
    """
    unit_codes = _area_units(session, area, unit)
    tenant = context_service.get_tenant(
        session=session, name=principal.tenant or context_service.DEFAULT_TENANT
    )
    layer: list[list[Any]] = []
    if tenant is not None:
        ctx = context_flows.default_context(runtime)
        kinds = {ctx.expand(kind.entity_type): kind for kind in SENSOR_KINDS}
        short = {"name", *(k.value for k in SENSOR_KINDS), *(k.level for k in SENSOR_KINDS)}
        names = {ctx.expand(name): name for name in short}
        rows = context_service.get_located_values(
            session=session,
            tenant_id=tenant.id,
            types=list(kinds),
            names=list(names),
            scope=principal.scope,
            unit_codes=unit_codes,
        )
        layer = sensor_rows(rows, kinds, names)
    payload = {"fields": SENSOR_FIELDS, "rows": layer, "count": len(layer), "truncated": False}
    return cached_json(request, payload)


@router.get(
    "/map/incidents",
    summary="Every open incident as compact map rows",
    response_model=None,
    responses=LAYER_RESPONSES,
)
def map_incidents(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    principal: IncidentReader,
    area: AreaQuery = None,
    unit: UnitQuery = None,
) -> Response:
    """Return the open incidents the caller may see, newest first, with their point and status.

    An incident without a point has null `lat` and `lon` (the map places it at its unit).
    """
    unit_codes = _area_units(session, area, unit)
    found, total = incident_service.get_all(
        session=session,
        scope=principal.scope,
        now=clock.now(),
        statuses=list(OPEN_INCIDENT),
        unit_codes=unit_codes,
        sort="-created_at",
        limit=MAX_INCIDENTS,
    )
    layer = [
        [
            r["code"],
            _round(r["lat"]),
            _round(r["lon"]),
            r["unit_code"],
            r["severity"],
            r["status"],
            r["title"],
            r["alert_id"],
            iso(r["created_at"]),
        ]
        for r in found
    ]
    payload = {
        "fields": INCIDENT_FIELDS,
        "rows": layer,
        "count": len(layer),
        "truncated": total > len(layer),
    }
    return cached_json(request, payload)
