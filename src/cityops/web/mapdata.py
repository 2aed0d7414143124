"""Compact map layers for the operations screen: every located sensor and every open incident
in one response each.

The screen draws 10,000 sensors and 1,000 incidents at once; read page by page through the
NGSI-LD API (JSON-LD compaction of every attribute) that took tens of seconds. These routes
read only what a marker needs, from the current-state tables with plain SQL rows, and answer
`{"fields": [...], "rows": [[...], ...], "count": n, "truncated": bool}`: one array per marker,
its members in the order of `fields`. Each response carries a weak ETag (a digest of the body)
and `Cache-Control: private, max-age=5`; `If-None-Match` with the same tag answers 304.

The sensor layer is read once per entity (one row each, observation times undecoded) and its
encoded body and ETag are kept per (tenant, scope, area, unit) in a small in-process cache:
dropped when this process publishes a change of a drawn attribute or a drawn entity is created
or deleted, and after `map_cache_seconds` (other workers' writes). A 304 then reads nothing.

Scope is the caller's, as on the APIs the data comes from: sensors are cut by the caller's
units (as NGSI-LD does), incidents by units and department (as `/api/v1/incidents` does).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from cityops.core.etag import conditional, etag_of
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.schemas import SINGLE_LINE
from cityops.core.security import Permission, Principal, require
from cityops.incidents import service as incident_service
from cityops.units import service as unit_service

router = APIRouter(tags=["map"])

CACHE_CONTROL = "private, max-age=5"
OPEN_INCIDENT = ("new", "assigned", "in_progress")
# More open incidents than a map can show usefully; `truncated` says when some were left out.
MAX_INCIDENTS = 10_000
# Sensor layers kept per process: one per (tenant, scope, area, unit) asked for lately; the
# province's is about 1.4 MB for 10,000 sensors, a ward's a few KB.
CACHE_SIZE = 32
CACHE_KEY = "web.map_sensors"

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


# One encoder for every layer: no circular check (plain lists and dicts), no escaping of
# Vietnamese letters.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def cached_json(request: Request, payload: Any) -> Response:
    """Answer a JSON body with a weak ETag of its bytes, or 304 if the client holds it."""
    return conditional(request, _encode(payload).encode(), cache_control=CACHE_CONTROL)


def _round(value: float | None) -> float | None:
    # Six decimals are 0.1 m: all a marker needs, and a third fewer bytes than a full float.
    return None if value is None else round(value, 6)


def stamp_of(stored: Any) -> str:
    """Format an observation time as read undecoded (SQLite text or a driver datetime)."""
    at = datetime.fromisoformat(stored) if isinstance(stored, str) else stored
    return iso(at if at.tzinfo is not None else at.replace(tzinfo=UTC))


def sensor_rows(rows: Sequence[Any], kinds: dict[str, SensorKind]) -> list[list[Any]]:
    """Turn the rows of `context_service.get_located_values` into marker rows.

    `kinds` maps expanded entity types to their kind.
    """
    out: list[list[Any]] = []
    append = out.append
    # Sensors reporting together share their time, and most share a level's inputs (integer
    # AQI): format and classify each distinct one once.
    stamps: dict[Any, str] = {}
    levels: dict[tuple[str, Any, Any], str | None] = {}
    # Unpacked by position: this loop runs once per sensor of the province.
    for entity_id, type_, lat, lon, unit, label, number, _, observed, lnum, ltext, lobs in rows:
        kind = kinds[type_]
        key = (type_, lnum, ltext)
        if key in levels:
            level = levels[key]
        else:
            level = levels[key] = kind.classify(lnum, ltext)
        when = observed if observed is not None else lobs
        stamp = None
        if when is not None:
            stamp = stamps.get(when)
            if stamp is None:
                stamp = stamps[when] = stamp_of(when)
        append(
            [
                entity_id,
                kind.entity_type,
                round(lat, 6),
                round(lon, 6),
                unit,
                level,
                number,
                stamp,
                label,
            ]
        )
    return out


LayerKey = tuple[str, Any, str | None, str | None]


@dataclass(frozen=True, slots=True)
class CachedLayer:
    """An encoded layer, its ETag, and until when it may be answered again."""

    body: bytes
    etag: str
    expires: datetime


# Events that change what the sensor layer draws (short names, as the context store publishes).
WATCHED_TYPES = frozenset(kind.entity_type for kind in SENSOR_KINDS)
WATCHED_ATTRIBUTES = frozenset(
    {"name", "location", *(k.value for k in SENSOR_KINDS), *(k.level for k in SENSOR_KINDS)}
)
WATCHED_EVENTS = (
    context_flows.EVENT_ATTRIBUTE_CHANGED,
    context_flows.EVENT_ENTITY_CREATED,
    context_flows.EVENT_ENTITY_DELETED,
)


class LayerCache:
    """Encoded sensor layers per (tenant, scope, area, unit): least recently used first out,
    dropped on a change event of their tenant or after `seconds`."""

    def __init__(self, *, seconds: float | Callable[[], float], size: int = CACHE_SIZE) -> None:
        # A callable reads the setting at each layer, so a changed setting applies at once.
        self._seconds = seconds if callable(seconds) else (lambda: seconds)
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[LayerKey, CachedLayer] = OrderedDict()
        # Bumped by every invalidation: a layer read before it is not kept (it may predate it).
        self.generation = 0

    def get(self, key: LayerKey, now: datetime) -> CachedLayer | None:
        """Return the layer kept for a key, unless absent or expired."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if now >= found.expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found

    def put(self, key: LayerKey, generation: int, body: bytes, now: datetime) -> CachedLayer:
        """Keep a layer read at `generation` (unless a change came since) and return it."""
        ttl = timedelta(seconds=self._seconds())
        layer = CachedLayer(body=body, etag=etag_of(body), expires=now + ttl)
        with self._lock:
            if generation == self.generation and ttl:
                self._entries[key] = layer
                self._entries.move_to_end(key)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        return layer

    def clear(self, tenant: str | None = None) -> None:
        """Drop the layers of a tenant (every layer when None)."""
        with self._lock:
            self.generation += 1
            if tenant is None:
                self._entries.clear()
            else:
                for key in [key for key in self._entries if key[0] == tenant]:
                    del self._entries[key]

    def on_event(self, event: Event) -> None:
        """Drop a tenant's layers when a drawn entity or attribute changed."""
        data = event.data
        if data.get("entity_type") not in WATCHED_TYPES:
            return
        if (
            event.type == context_flows.EVENT_ATTRIBUTE_CHANGED
            and data.get("attribute") not in WATCHED_ATTRIBUTES
        ):
            return
        tenant = data.get("tenant")
        self.clear(tenant if isinstance(tenant, str) else None)


def install(runtime: Runtime) -> None:
    """Give the runtime its sensor layer cache, refreshed by the context store's events (called
    once, from app.build_runtime)."""
    cache = LayerCache(seconds=lambda: runtime.settings.map_cache_seconds)
    for event_type in WATCHED_EVENTS:
        runtime.bus.subscribe(event_type, cache.on_event)
    runtime.caches[CACHE_KEY] = cache


def layer_cache(runtime: Runtime) -> LayerCache:
    """The runtime's sensor layer cache."""
    cache: LayerCache = runtime.caches[CACHE_KEY]
    return cache


def _sensor_layer(
    session: Session,
    runtime: Runtime,
    principal: Principal,
    tenant_name: str,
    area: str | None,
    unit: str | None,
) -> bytes:
    unit_codes = _area_units(session, area, unit)
    tenant = context_service.get_tenant(session=session, name=tenant_name)
    layer: list[list[Any]] = []
    if tenant is not None:
        ctx = context_flows.default_context(runtime)
        kinds = {ctx.expand(kind.entity_type): kind for kind in SENSOR_KINDS}
        rows = context_service.get_located_values(
            session=session,
            tenant_id=tenant.id,
            kinds={t: (ctx.expand(k.value), ctx.expand(k.level)) for t, k in kinds.items()},
            label=ctx.expand("name"),
            scope=principal.scope,
            unit_codes=unit_codes,
        )
        layer = sensor_rows(rows, kinds)
    payload = {"fields": SENSOR_FIELDS, "rows": layer, "count": len(layer), "truncated": False}
    return _encode(payload).encode()


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
    cache = layer_cache(runtime)
    tenant_name = principal.tenant or context_service.DEFAULT_TENANT
    # The whole scope is in the key: two callers share a body only if they may see the same.
    key: LayerKey = (tenant_name, principal.scope, area, unit)
    now = runtime.clock.now()
    found = cache.get(key, now)
    if found is None:
        generation = cache.generation
        body = _sensor_layer(session, runtime, principal, tenant_name, area, unit)
        found = cache.put(key, generation, body, now)
    return conditional(request, found.body, cache_control=CACHE_CONTROL, etag=found.etag)


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
