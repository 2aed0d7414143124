"""Compact map layers for the operations screen: every located sensor and every open incident
in one response each.

The screen draws 10,000 sensors and 1,000 incidents at once; read page by page through the
NGSI-LD API (JSON-LD compaction of every attribute) that took tens of seconds. These routes
read only what a marker needs, from the current-state tables with plain SQL rows, and answer
`{"fields": [...], "rows": [[...], ...], "count": n, "truncated": bool}`: one array per marker,
its members in the order of `fields`. Each response carries a weak ETag (a digest of the body)
and `Cache-Control: private, max-age=5`; `If-None-Match` with the same tag answers 304.

The sensor layer is read once per entity (one row each, observation times undecoded) and kept
per (tenant, scope, area, unit) in a small in-process cache for `map_cache_seconds` (other
workers' writes): a value, level or name change this process publishes is applied to the kept
rows in place (each kept layer holding that sensor: the scope decides which, as when read), and
the body, its ETag and its gzip copy are made again on the next request; a sensor created,
deleted or moved drops the tenant's layers. The incident layer is kept the same way per (scope,
area, unit) and dropped on any incident change. Both send their kept gzip copy themselves (the
middleware passes an encoded body through), so a load compresses nothing already compressed.
A 304 reads nothing.

Scope is the caller's, as on the APIs the data comes from: sensors are cut by the caller's
units (as NGSI-LD does), incidents by units and department (as `/api/v1/incidents` does).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, Protocol, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cityops.context import flows as context_flows
from cityops.context import service as context_service
from cityops.context.normalize import iso, numeric, text_of
from cityops.core.deps import RuntimeDep, SessionDep
from cityops.core.errors import NotFound
from cityops.core.etag import (
    GZIP_MINIMUM,
    accepts_gzip,
    compress,
    conditional,
    etag_of,
    matches,
)
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


def _inputs_of(source: Any) -> list[Any]:
    """A marker's level inputs from its row as read (see `get_located_values`): `[value, value
    time, level number, level text, level time]`, times formatted."""
    number, observed, lnum, ltext, lobs = source[6], source[8], source[9], source[10], source[11]
    return [
        number,
        None if observed is None else stamp_of(observed),
        lnum,
        ltext,
        None if lobs is None else stamp_of(lobs),
    ]


LayerKey = tuple[str, Any, str | None, str | None]
# A marker row's members, by position (SENSOR_FIELDS).
_LEVEL, _VALUE, _OBSERVED, _NAME = 5, 6, 7, 8
# A patched marker's level inputs (see `_inputs_of`), by position.
_IN_VALUE, _IN_VALUE_AT, _IN_LEVEL_NUM, _IN_LEVEL_TEXT, _IN_LEVEL_AT = range(5)
# Changes remembered for the layers being read while they happen (replayed onto them): a
# province read takes a few hundred milliseconds, a busy store writes a few thousand a second.
PATCH_LOG_SIZE = 20_000


def encode_layer(rows: list[list[Any]]) -> bytes:
    """Encode a sensor layer's body (orjson: a tenth of the stdlib encoder's time on 1.4 MB)."""
    payload = {"fields": SENSOR_FIELDS, "rows": rows, "count": len(rows), "truncated": False}
    return orjson.dumps(payload)


@dataclass(slots=True)
class CachedLayer:
    """A kept sensor layer: its rows (patched in place by changes) and the rows they were made
    from, and its body, ETag and gzip-compressed body, each made again on the first request
    after a change. The index of rows and each patched marker's level inputs are made on the
    first change (a layer nothing changes costs nothing more than its body)."""

    rows: list[list[Any]]
    source: Sequence[Any]
    expires: datetime
    index: dict[str, int] | None = None
    inputs: dict[int, list[Any]] = field(default_factory=dict)
    body: bytes | None = None
    etag: str = ""
    gzipped: bytes | None = None


@dataclass(frozen=True, slots=True)
class Patch:
    """A drawn attribute's new default instance, for the marker of one entity."""

    entity_id: str
    kind: SensorKind
    attribute: str
    number: float | None
    text: str | None
    stamp: str | None


# Events that change what the sensor layer draws (short names, as the context store publishes;
# `patch_of` tells which of their attributes are drawn).
KIND_OF = {kind.entity_type: kind for kind in SENSOR_KINDS}
WATCHED_EVENTS = (
    context_flows.EVENT_ATTRIBUTE_CHANGED,
    context_flows.EVENT_ENTITY_CREATED,
    context_flows.EVENT_ENTITY_DELETED,
)
DROP = "drop"


def patch_of(event: Event) -> Patch | str | None:
    """What a context event does to the sensor layers: a patch of one marker, DROP (read the
    layers again: a sensor created, deleted or moved, or a change not told apart), or None."""
    data = event.data
    kind = KIND_OF.get(data.get("entity_type"))  # type: ignore[arg-type]
    if kind is None:
        return None
    if event.type != context_flows.EVENT_ATTRIBUTE_CHANGED:
        return DROP
    attribute = data.get("attribute")
    if attribute == "location":
        return DROP  # the marker moves, perhaps into or out of a scope
    if attribute not in (kind.value, kind.level, "name"):
        return None  # not drawn for this type
    if data.get("dataset_id"):
        return None  # the map draws the default instance only
    entity_id = data.get("entity_id")
    if not isinstance(entity_id, str):
        return DROP
    if data.get("deleted"):
        return Patch(entity_id, kind, attribute, None, None, None)
    value = data.get("value")
    stamp = data.get("observed_at")
    # The event's time is the observation's, or the write's when it had none (then stored as
    # none): the two are told apart unless they are equal to the millisecond.
    if not isinstance(stamp, str) or stamp == iso(event.at):
        return DROP
    number = numeric(value) if data.get("attribute_type") == "Property" else None
    return Patch(entity_id, kind, attribute, number, text_of(value), stamp)


def _apply(layer: CachedLayer, patch: Patch) -> None:
    """Apply a patch to a layer's marker of the entity, if it has one."""
    if layer.index is None:
        layer.index = {row[0]: position for position, row in enumerate(layer.rows)}
    position = layer.index.get(patch.entity_id)
    if position is None:
        return
    row = layer.rows[position]
    inputs = layer.inputs.get(position)
    if inputs is None:
        inputs = layer.inputs[position] = _inputs_of(layer.source[position])
    before = row[_LEVEL:]
    kind = patch.kind
    if patch.attribute == "name" and kind.value != "name":
        row[_NAME] = patch.text
    else:
        if patch.attribute == kind.value:
            inputs[_IN_VALUE], inputs[_IN_VALUE_AT] = patch.number, patch.stamp
        if patch.attribute == kind.level:
            inputs[_IN_LEVEL_NUM], inputs[_IN_LEVEL_TEXT] = patch.number, patch.text
            inputs[_IN_LEVEL_AT] = patch.stamp
        row[_LEVEL] = kind.classify(inputs[_IN_LEVEL_NUM], inputs[_IN_LEVEL_TEXT])
        row[_VALUE] = inputs[_IN_VALUE]
        value_at = inputs[_IN_VALUE_AT]
        row[_OBSERVED] = value_at if value_at is not None else inputs[_IN_LEVEL_AT]
    if row[_LEVEL:] != before:
        layer.body = layer.gzipped = None


class _Expiring(Protocol):
    expires: datetime


K = TypeVar("K")
V = TypeVar("V", bound=_Expiring)


class _Kept(Generic[K, V]):
    """Values per key for `seconds` after they were read, least recently used first out,
    with a `generation` that every change bumps (what both map layer caches share)."""

    def __init__(self, *, seconds: float | Callable[[], float], size: int = CACHE_SIZE) -> None:
        # A callable reads the setting at each layer, so a changed setting applies at once.
        self._seconds = seconds if callable(seconds) else (lambda: seconds)
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, V] = OrderedDict()
        self.generation = 0

    def get(self, key: K, now: datetime) -> V | None:
        """Return the value kept for a key, unless absent or expired."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if now >= found.expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found

    def _keep(self, key: K, value: V) -> None:
        # Called with the lock held.
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class LayerCache(_Kept[LayerKey, CachedLayer]):
    """Sensor layers per (tenant, scope, area, unit): least recently used first out, kept for
    `seconds` (other workers' writes), updated in place by this process's value changes and
    dropped when a sensor is created, deleted or moved.

    Every change bumps `generation`. A layer read while changes came is kept only if they can
    be replayed onto it (value changes, from the patch log); after a drop it is answered but not
    kept (it may predate the drop)."""

    def __init__(self, *, seconds: float | Callable[[], float], size: int = CACHE_SIZE) -> None:
        super().__init__(seconds=seconds, size=size)
        self._dropped = 0  # generation of the last drop
        self._log: deque[tuple[int, str | None, Patch]] = deque()
        self._forgotten = 0  # generation of the newest patch no longer in the log

    def put(
        self,
        key: LayerKey,
        generation: int,
        rows: list[list[Any]],
        source: Sequence[Any],
        now: datetime,
    ) -> CachedLayer:
        """Keep a layer read at `generation` (`rows` made from `source`), brought up to date
        with the changes since (unless one cannot be replayed), and return it."""
        ttl = timedelta(seconds=self._seconds())
        layer = CachedLayer(rows=rows, source=source, expires=now + ttl)
        with self._lock:
            if self._dropped > generation or self._forgotten > generation or not ttl:
                return layer
            tenant = key[0]
            since: list[Patch] = []
            for at, patched_tenant, patch in reversed(self._log):
                if at <= generation:
                    break
                if patched_tenant is None or patched_tenant == tenant:
                    since.append(patch)
            for patch in reversed(since):
                _apply(layer, patch)
            self._keep(key, layer)
        return layer

    def body(self, layer: CachedLayer) -> tuple[bytes, str]:
        """Return a layer's body and ETag, encoding it again if a change came since."""
        with self._lock:
            # Under the lock: a change must not touch the rows while they are encoded.
            if layer.body is None:
                layer.body = encode_layer(layer.rows)
                layer.etag = etag_of(layer.body)
                layer.gzipped = None
            return layer.body, layer.etag

    def gzipped(self, layer: CachedLayer, body: bytes) -> bytes:
        """Return `body` gzip-compressed, compressed once per body of a layer."""
        found = layer.gzipped
        if found is not None and layer.body is body:
            return found
        # Compressed outside the lock (tens of milliseconds for the province); kept only if the
        # body is still the layer's.
        packed = compress(body)
        with self._lock:
            if layer.body is body:
                layer.gzipped = packed
        return packed

    def clear(self, tenant: str | None = None) -> None:
        """Drop the layers of a tenant (every layer when None)."""
        with self._lock:
            self.generation += 1
            self._dropped = self.generation
            if tenant is None:
                self._entries.clear()
            else:
                for key in [key for key in self._entries if key[0] == tenant]:
                    del self._entries[key]

    def apply(self, tenant: str | None, patch: Patch) -> None:
        """Update the marker of a patch's entity in every kept layer of its tenant."""
        with self._lock:
            self.generation += 1
            self._log.append((self.generation, tenant, patch))
            while len(self._log) > PATCH_LOG_SIZE:
                self._forgotten = self._log.popleft()[0]
            for key, layer in self._entries.items():
                if tenant is None or key[0] == tenant:
                    _apply(layer, patch)

    def on_event(self, event: Event) -> None:
        """Update or drop a tenant's layers when a drawn entity or attribute changed."""
        found = patch_of(event)
        if found is None:
            return
        tenant = event.data.get("tenant")
        tenant = tenant if isinstance(tenant, str) else None
        if isinstance(found, Patch):
            self.apply(tenant, found)
        else:
            self.clear(tenant)


def send_kept(
    request: Request, body: bytes, etag: str, gzipped: Callable[[], bytes] | None = None
) -> Response:
    """Answer a kept body with its ETag (or 304), sending its kept gzip copy when the client
    takes gzip and the body is worth compressing (the middleware passes it through as is)."""
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    wants = accepts_gzip(request.headers.get("accept-encoding"))
    if gzipped is not None and len(body) >= GZIP_MINIMUM and wants:
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
        return Response(gzipped(), media_type="application/json", headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def install(runtime: Runtime) -> None:
    """Give the runtime its sensor and incident layer caches, kept current by the context
    store's and the incidents' events (called once, from app.build_runtime)."""
    seconds = lambda: runtime.settings.map_cache_seconds  # noqa: E731 - read at each layer
    cache = LayerCache(seconds=seconds)
    for event_type in WATCHED_EVENTS:
        runtime.bus.subscribe(event_type, cache.on_event)
    runtime.caches[CACHE_KEY] = cache
    incidents = BodyCache(seconds=seconds)
    for incident_event in INCIDENT_EVENTS:
        runtime.bus.subscribe(incident_event, incidents.on_event)
    runtime.caches[INCIDENTS_CACHE_KEY] = incidents


def layer_cache(runtime: Runtime) -> LayerCache:
    """The runtime's sensor layer cache."""
    cache: LayerCache = runtime.caches[CACHE_KEY]
    return cache


def incident_cache(runtime: Runtime) -> BodyCache:
    """The runtime's incident layer cache."""
    cache: BodyCache = runtime.caches[INCIDENTS_CACHE_KEY]
    return cache


def _sensor_layer(
    session: Session,
    runtime: Runtime,
    principal: Principal,
    tenant_name: str,
    area: str | None,
    unit: str | None,
) -> tuple[list[list[Any]], Sequence[Any]]:
    unit_codes = _area_units(session, area, unit)
    tenant = context_service.get_tenant(session=session, name=tenant_name)
    layer: list[list[Any]] = []
    rows: Sequence[Any] = []
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
    return layer, rows


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
        rows, source = _sensor_layer(session, runtime, principal, tenant_name, area, unit)
        found = cache.put(key, generation, rows, source, now)
    layer = found
    body, etag = cache.body(layer)
    return send_kept(request, body, etag, lambda: cache.gzipped(layer, body))


@dataclass(slots=True)
class KeptBody:
    """An encoded layer, its ETag, its gzip copy (made on first use) and its expiry."""

    body: bytes
    etag: str
    expires: datetime
    gzipped: bytes | None = None


INCIDENTS_CACHE_KEY = "web.map_incidents"
# What moves a marker of the incident layer: a new incident, a change of status, severity,
# title, unit or point (incident_changed), an escalation. A comment changes none of it.
INCIDENT_EVENTS = (
    "incidents.incident_created",
    "incidents.incident_changed",
    "incidents.sla_breached",
    "incidents.incident_escalated",
)


class BodyCache(_Kept[Any, KeptBody]):
    """Encoded layers per key for `seconds`, least recently used first out, all dropped on a
    change event (a layer read before the change is answered but not kept)."""

    def put(self, key: Any, generation: int, body: bytes, now: datetime) -> KeptBody:
        """Keep a body read at `generation` (unless a change came since) and return it."""
        ttl = timedelta(seconds=self._seconds())
        kept = KeptBody(body=body, etag=etag_of(body), expires=now + ttl)
        with self._lock:
            if generation == self.generation and ttl:
                self._keep(key, kept)
        return kept

    def on_event(self, _event: Event) -> None:
        """Drop every kept body (any incident change)."""
        self.clear()

    def clear(self) -> None:
        """Drop every kept body."""
        with self._lock:
            self.generation += 1
            self._entries.clear()


def _gzipped(kept: KeptBody) -> bytes:
    if kept.gzipped is None:
        # A race compresses twice at worst: the same bytes.
        kept.gzipped = compress(kept.body)
    return kept.gzipped


@router.get(
    "/map/incidents",
    summary="Every open incident as compact map rows",
    response_model=None,
    responses=LAYER_RESPONSES,
)
def map_incidents(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: IncidentReader,
    area: AreaQuery = None,
    unit: UnitQuery = None,
) -> Response:
    """Return the open incidents the caller may see, newest first, with their point and status.

    An incident without a point has null `lat` and `lon` (the map places it at its unit).
    """
    cache = incident_cache(runtime)
    key = (principal.scope, area, unit)
    now = runtime.clock.now()
    kept = cache.get(key, now)
    if kept is None:
        generation = cache.generation
        kept = cache.put(key, generation, _incident_layer(session, principal, area, unit, now), now)
    found = kept
    return send_kept(request, found.body, found.etag, lambda: _gzipped(found))


def _incident_layer(
    session: Session, principal: Principal, area: str | None, unit: str | None, now: datetime
) -> bytes:
    unit_codes = _area_units(session, area, unit)
    found, total = incident_service.get_all(
        session=session,
        scope=principal.scope,
        now=now,
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
    return _encode(payload).encode()
