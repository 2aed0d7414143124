"""NGSI-LD entities in and out: validate and normalise incoming entities, render stored ones.

Incoming entities may be normalized or concise; attribute names and types are expanded with the
entity's active context. Stored attributes render as normalized, concise or keyValues, with names
compacted against the caller's context.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import shapely
from shapely.geometry import shape

from cityops.context.errors import BadRequestData
from cityops.context.ldcontext import ActiveContext
from cityops.context.models import TEXT_INDEX_LENGTH, Attribute, Entity
from cityops.context.schemas import Options

ATTRIBUTE_TYPES = frozenset(
    {
        "Property",
        "GeoProperty",
        "Relationship",
        "LanguageProperty",
        "ListProperty",
        "ListRelationship",
        "VocabProperty",
        "JsonProperty",
    }
)
GEOMETRY_TYPES = frozenset(
    {"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon"}
)
# The member holding each attribute type's value.
VALUE_MEMBER = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
}
CONCISE_MEMBERS = {member: kind for kind, member in VALUE_MEMBER.items() if kind != "GeoProperty"}
# Members of an attribute that are not sub-attributes.
ATTRIBUTE_MEMBERS = frozenset(
    {
        "type",
        *VALUE_MEMBER.values(),
        "unitCode",
        "observedAt",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "objectType",
        "lang",
        "@context",
    }
)
ENTITY_MEMBERS = frozenset(
    {"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt", "@id", "@type"}
)
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
NULL_URI = "urn:ngsi-ld:null"
MAX_NAME = 512


@dataclass
class AttributeIn:
    """One attribute instance as written: expanded name, datasetId, type, value and metadata."""

    name: str
    dataset_id: str
    attr_type: str
    value: Any
    unit_code: str | None = None
    observed_at: datetime | None = None
    sub_attrs: dict[str, Any] | None = None
    delete: bool = False

    @property
    def value_num(self) -> float | None:
        """The value as a number, when it is one (for q and aggregation)."""
        return numeric(self.value) if self.attr_type == "Property" else None

    @property
    def value_text(self) -> str | None:
        """The value as short text, when it is text or a single IRI (for q equality)."""
        return text_of(self.value)


@dataclass
class EntityIn:
    """A validated entity: id, expanded type, attributes and the point it is located at."""

    id: str
    type: str | None
    attrs: list[AttributeIn] = field(default_factory=list)
    scopes: list[str] | None = None
    point: tuple[float, float] | None = None  # (lon, lat)
    bbox: tuple[float, float, float, float] | None = None


def numeric(value: Any) -> float | None:
    """Return a finite number as float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def text_of(value: Any) -> str | None:
    """Return the text a q equality compares (strings, booleans, typed literals)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and isinstance(value.get("@value"), str):
        value = value["@value"]
    if isinstance(value, str) and len(value) <= TEXT_INDEX_LENGTH:
        return value
    return None


def is_uri(value: Any) -> bool:
    """Whether a value looks like an absolute URI (scheme:rest)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        return False
    scheme, colon, rest = value.partition(":")
    return bool(
        colon
        and rest
        and scheme[:1].isalpha()
        and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()
    )


@lru_cache(maxsize=8192)
def _parse_datetime_text(value: str) -> datetime | None:
    # Cached by text: the observations of a batch or a stream of readings share a few
    # timestamps, and datetimes are immutable, so one parse serves them all.
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # OverflowError: a time at the ends of the calendar with no UTC equivalent
        # (0001-01-01T00:00+07:00) is not a date-time anything can store.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def parse_datetime(value: Any, member: str = "observedAt") -> datetime:
    """Parse an ISO 8601 date-time (UTC assumed when no zone is given)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise BadRequestData("context.entity.bad_datetime", member=member)
    parsed = _parse_datetime_text(value)
    if parsed is None:
        raise BadRequestData("context.entity.bad_datetime", member=member)
    return parsed


def iso(at: datetime) -> str:
    """Format a UTC datetime as NGSI-LD does (milliseconds, Z)."""
    at = at.astimezone(UTC)
    # Formatted by hand: strftime costs about ten times more, and notifications and query
    # answers format thousands of timestamps.
    return (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:"
        f"{at.second:02d}.{at.microsecond // 1000:03d}Z"
    )


def ms_of(at: datetime) -> int:
    """Return epoch milliseconds of a tz-aware datetime."""
    return int(at.timestamp() * 1000)


def simple_point(value: Any) -> tuple[float, float] | None:
    """Return (lon, lat) of a plainly valid GeoJSON Point; None for anything else.

    Most located entities are points: checking them here skips building a shapely geometry
    (about 30 µs each). Anything unusual returns None and goes through `check_geometry`.
    """
    if not isinstance(value, dict) or value.get("type") != "Point":
        return None
    coordinates = value.get("coordinates")
    if type(coordinates) is not list or not 2 <= len(coordinates) <= 3:
        return None
    for c in coordinates:
        if type(c) is not float and type(c) is not int:
            return None
    x, y = float(coordinates[0]), float(coordinates[1])
    if not (-180 <= x <= 180 and -90 <= y <= 90) or (
        len(coordinates) == 3 and not math.isfinite(coordinates[2])
    ):
        return None
    return x, y


def check_geometry(value: Any) -> Any:
    """Validate a GeoJSON geometry and return it as a shapely geometry."""
    if not isinstance(value, dict) or value.get("type") not in GEOMETRY_TYPES:
        raise BadRequestData("context.geo.bad_geometry")
    coordinates = value.get("coordinates")
    if not isinstance(coordinates, list):
        raise BadRequestData("context.geo.bad_geometry")
    try:
        geometry = shape(value)
    except Exception as exc:
        raise BadRequestData("context.geo.bad_geometry") from exc
    if geometry.is_empty:
        raise BadRequestData("context.geo.bad_geometry")
    min_x, min_y, max_x, max_y = geometry.bounds
    if not (-180 <= min_x <= max_x <= 180 and -90 <= min_y <= max_y <= 90):
        raise BadRequestData("context.geo.out_of_range")
    return geometry


def _attribute_type(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return the attribute type and normalized members of a normalized or concise attribute."""
    kind = raw.get("type")
    if isinstance(kind, str) and kind in ATTRIBUTE_TYPES:
        return kind, raw
    if isinstance(kind, str) and kind in GEOMETRY_TYPES and "coordinates" in raw:
        return "GeoProperty", {"value": raw}
    if kind is not None and kind not in ATTRIBUTE_TYPES:
        if "value" in raw or "object" in raw:
            raise BadRequestData("context.entity.bad_attribute_type", type=str(kind)[:64])
        return "Property", {"value": raw}
    for member, concise_kind in CONCISE_MEMBERS.items():
        if member in raw:
            if (
                member == "value"
                and isinstance(raw["value"], dict)
                and raw["value"].get("type") in GEOMETRY_TYPES
            ):
                return "GeoProperty", raw
            return concise_kind, raw
    return "Property", {"value": raw}


@lru_cache(maxsize=8192)
def _good_name(short: str) -> bool:
    # Cached: every entity of a batch repeats the same few attribute names.
    return not (
        not short
        or len(short) > MAX_NAME
        or any(c in short for c in "<>\"'=;()")
        or short.isspace()
    )


def parse_attribute(
    short: str,
    raw: Any,
    ctx: ActiveContext,
    *,
    allow_null: bool = False,
    depth: int = 0,
) -> list[AttributeIn]:
    """Validate one attribute (normalized or concise, one or many instances)."""
    # Long names are refused before the cache, which must not keep them.
    if len(short) > MAX_NAME or not _good_name(short):
        raise BadRequestData("context.entity.bad_attribute_name", name=short[:64])
    name = ctx.expand(short)
    if (
        isinstance(raw, list)
        and raw
        and all(
            isinstance(item, dict) and ("type" in item or any(m in item for m in CONCISE_MEMBERS))
            for item in raw
        )
    ):
        instances = [
            parse_attribute(short, item, ctx, allow_null=allow_null, depth=depth)[0] for item in raw
        ]
        seen = set()
        for instance in instances:
            if instance.dataset_id in seen:
                raise BadRequestData("context.entity.duplicate_dataset", name=short[:64])
            seen.add(instance.dataset_id)
        return instances
    if raw is None or raw == NULL_URI:
        if allow_null:
            return [
                AttributeIn(name=name, dataset_id="", attr_type="Property", value=None, delete=True)
            ]
        raise BadRequestData("context.entity.null_value", name=short[:64])
    if not isinstance(raw, dict):
        return [AttributeIn(name=name, dataset_id="", attr_type="Property", value=raw)]
    kind, body = _attribute_type(raw)
    member = VALUE_MEMBER[kind]
    if member not in body:
        raise BadRequestData("context.entity.missing_member", name=short[:64], member=member)
    value = body[member]
    if value is None or value == NULL_URI:
        if allow_null and body is raw and len(raw) <= 2:
            return [AttributeIn(name=name, dataset_id="", attr_type=kind, value=None, delete=True)]
        raise BadRequestData("context.entity.null_value", name=short[:64])
    _check_value(kind, value, short)
    dataset = body.get("datasetId", "")
    if dataset and not is_uri(dataset):
        raise BadRequestData("context.entity.bad_dataset", name=short[:64])
    unit = body.get("unitCode")
    if unit is not None and (not isinstance(unit, str) or not 0 < len(unit) <= 16):
        raise BadRequestData("context.entity.bad_unit_code", name=short[:64])
    observed = body.get("observedAt")
    observed_at = parse_datetime(observed) if observed is not None else None
    subs: dict[str, Any] = {}
    for key, sub in body.items():
        if key in ATTRIBUTE_MEMBERS or body is not raw:
            continue
        if depth >= 3:
            raise BadRequestData("context.entity.too_deep", name=short[:64])
        instance = parse_attribute(key, sub, ctx, depth=depth + 1)[0]
        subs[instance.name] = render_attribute(instance_json(instance), None, "normalized")
    return [
        AttributeIn(
            name=name,
            dataset_id=str(dataset),
            attr_type=kind,
            value=value,
            unit_code=unit,
            observed_at=observed_at,
            sub_attrs=subs or None,
        )
    ]


# Integers are kept exactly within 64 bits: SQLite stores a longer one as a float (its JSON
# column has numeric affinity) and the workers' fan-out cannot encode it, while PostgreSQL
# would keep it. Refused on every database rather than changed on one.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _check_value(kind: str, value: Any, short: str) -> None:
    if kind == "GeoProperty":
        if simple_point(value) is None:
            check_geometry(value)
    elif kind == "Relationship":
        if not (is_uri(value) or (isinstance(value, list) and value and all(map(is_uri, value)))):
            raise BadRequestData("context.entity.bad_object", name=short[:64])
    elif kind == "LanguageProperty":
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str | list) for k, v in value.items()
        ):
            raise BadRequestData("context.entity.bad_language_map", name=short[:64])
    elif kind in ("ListProperty", "ListRelationship"):
        if not isinstance(value, list):
            raise BadRequestData("context.entity.bad_list", name=short[:64])
    elif kind == "VocabProperty" and not (
        isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    ):
        raise BadRequestData("context.entity.bad_vocab", name=short[:64])
    if kind == "Property" and isinstance(value, float) and not math.isfinite(value):
        raise BadRequestData("context.entity.bad_number", name=short[:64])
    # A geometry's coordinates are range-checked above: no walk for every located reading.
    if type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise BadRequestData("context.entity.number_too_large", name=short[:64])
    elif kind != "GeoProperty" and isinstance(value, dict | list) and _holds_huge_int(value):
        raise BadRequestData("context.entity.number_too_large", name=short[:64])


def _holds_huge_int(value: Any) -> bool:
    """Whether a structured value holds, at any depth, an integer past 64 bits."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is int:
            if not INT64_MIN <= item <= INT64_MAX:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_entity(
    raw: Any,
    ctx: ActiveContext,
    *,
    require_type: bool = True,
    allow_null: bool = False,
    entity_id: str | None = None,
) -> EntityIn:
    """Validate an entity and expand its type and attribute names."""
    if not isinstance(raw, dict):
        raise BadRequestData("context.entity.not_object")
    ident = raw.get("id", raw.get("@id", entity_id))
    if not is_uri(ident):
        raise BadRequestData("context.entity.bad_id")
    assert isinstance(ident, str)
    if entity_id is not None and ident != entity_id:
        raise BadRequestData("context.entity.id_mismatch")
    kind = raw.get("type", raw.get("@type"))
    if isinstance(kind, list) and len(kind) == 1:
        kind = kind[0]
    if kind is None and not require_type:
        expanded_type = None
    elif isinstance(kind, str) and 0 < len(kind) <= MAX_NAME and not any(c in kind for c in " ,;"):
        expanded_type = ctx.expand(kind)
    else:
        raise BadRequestData("context.entity.bad_type")
    scopes = raw.get("scope")
    if scopes is not None:
        scopes = [scopes] if isinstance(scopes, str) else scopes
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise BadRequestData("context.entity.bad_scope")
    entity = EntityIn(id=ident, type=expanded_type, scopes=scopes)
    for key, value in raw.items():
        if key in ENTITY_MEMBERS:
            continue
        entity.attrs.extend(parse_attribute(key, value, ctx, allow_null=allow_null))
    locate_entity(entity)
    return entity


def locate_entity(entity: EntityIn) -> None:
    """Set the entity's point and bounding box from its default `location` instance."""
    for attr in entity.attrs:
        if attr.name == LOCATION and attr.attr_type == "GeoProperty" and not attr.delete:
            simple = simple_point(attr.value)
            if simple is not None:
                entity.point = simple
                entity.bbox = (simple[0], simple[1], simple[0], simple[1])
                if attr.dataset_id == "":
                    return
                continue
            geometry = check_geometry(attr.value)
            if geometry.geom_type == "Point":
                entity.point = (geometry.x, geometry.y)
            else:
                point = shapely.point_on_surface(geometry)
                entity.point = (point.x, point.y)
            entity.bbox = geometry.bounds
            if attr.dataset_id == "":
                return


def instance_json(attr: AttributeIn) -> dict[str, Any]:
    """Return a stored-form (expanded sub-attribute names) normalized attribute."""
    body: dict[str, Any] = {"type": attr.attr_type, VALUE_MEMBER[attr.attr_type]: attr.value}
    if attr.unit_code:
        body["unitCode"] = attr.unit_code
    if attr.observed_at is not None:
        body["observedAt"] = iso(attr.observed_at)
    if attr.dataset_id:
        body["datasetId"] = attr.dataset_id
    if attr.sub_attrs:
        body.update(attr.sub_attrs)
    return body


def pick_language(language_map: dict[str, Any], lang: str) -> tuple[str, Any]:
    """Choose a language from a map for `lang` ("vi,en", "*"): the first one present."""
    wanted = [part.split(";")[0].strip() for part in lang.split(",") if part.strip()]
    for code in wanted:
        if code == "*":
            break
        if code in language_map:
            return code, language_map[code]
    if "@none" in language_map:
        return "@none", language_map["@none"]
    first = next(iter(language_map), "@none")
    return first, language_map.get(first)


def render_attribute(
    body: dict[str, Any], ctx: ActiveContext | None, options: str, *, lang: str | None = None
) -> Any:
    """Render one stored attribute instance as normalized, concise or keyValues."""
    kind = body.get("type", "Property")
    member = VALUE_MEMBER.get(kind, "value")
    value = body.get(member)
    if kind == "LanguageProperty" and lang and isinstance(value, dict):
        code, chosen = pick_language(value, lang)
        if options == "keyValues":
            return chosen
        body = {k: v for k, v in body.items() if k not in ("languageMap", "type")}
        body = {"type": "Property", "value": chosen, "lang": code, **body}
        kind, member, value = "Property", "value", chosen
    if options == "keyValues":
        return value
    out: dict[str, Any] = {}
    for key, item in body.items():
        if key in ATTRIBUTE_MEMBERS:
            out[key] = item
        else:
            name = ctx.compact(key) if ctx is not None else key
            out[name] = render_attribute(item, ctx, options) if isinstance(item, dict) else item
    if options == "concise":
        out.pop("type", None)
        if kind in ("GeoProperty", "Property") and set(out) == {"value"}:
            return out["value"]
    return out


# --- rendering -------------------------------------------------------------------------------


def attribute_body(row: Attribute | Any, sys_attrs: bool) -> dict[str, Any]:
    """Return a stored attribute instance as a normalized attribute (expanded sub-attrs).

    `row` is an Attribute or a row holding its columns.
    """
    body: dict[str, Any] = {
        "type": row.attr_type,
        VALUE_MEMBER.get(row.attr_type, "value"): row.value,
    }
    if row.unit_code:
        body["unitCode"] = row.unit_code
    if row.observed_at is not None:
        body["observedAt"] = iso(row.observed_at)
    if row.dataset_id:
        body["datasetId"] = row.dataset_id
    if row.sub_attrs:
        body.update(row.sub_attrs)
    if sys_attrs:
        body["createdAt"] = iso(row.created_at)
        body["modifiedAt"] = iso(row.modified_at)
    return body


def render_entity(
    row: Entity | Any,
    attrs: Sequence[Attribute | Any],
    ctx: ActiveContext,
    options: Options,
    *,
    lang: str | None = None,
) -> dict[str, Any]:
    """Render an entity in the representation asked for, compacted with the caller's context."""
    out: dict[str, Any] = {"id": row.entity_id, "type": ctx.compact(row.type)}
    if row.scopes:
        out["scope"] = row.scopes if len(row.scopes) > 1 else row.scopes[0]
    grouped: dict[str, list[Any]] = defaultdict(list)
    for attr in attrs:
        rendered = render_attribute(
            attribute_body(attr, options.sys_attrs), ctx, options.representation, lang=lang
        )
        grouped[ctx.compact(attr.name)].append(rendered)
    for name, instances in grouped.items():
        out[name] = instances[0] if len(instances) == 1 else instances
    if options.sys_attrs and options.representation != "keyValues":
        out["createdAt"] = iso(row.created_at)
        out["modifiedAt"] = iso(row.modified_at)
    return out
