"""NGSI-LD query language: the `q` grammar and geo-queries, parsed strictly and compiled to SQL.

`q`: terms joined by `;` (and) and `|` (or, lower precedence), parentheses, comparisons
(==, !=, >, >=, <, <=), patterns (~= or =~, !~=), ranges (a==1..5), value lists (a=="x","y"),
dotted sub-attribute paths, [compound] value paths, existence (`a`) and absence (`!a`). Strings
are quoted; numbers, booleans and ISO dates/times are bare. Any malformed input raises
BadRequestData; nothing here raises anything else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
)

from cityops.context.errors import BadRequestData
from cityops.context.models import Attribute, Entity
from cityops.context.normalize import GEOMETRY_TYPES, check_geometry, parse_datetime

MAX_Q_LENGTH = 4000
MAX_DEPTH = 20
OPERATORS = ("==", "!=", ">=", "<=", "!~=", "~=", "=~", ">", "<")
NAME = re.compile(r"[A-Za-z0-9_@:/#\-]+(?:\.[A-Za-z0-9_@:/#\-]+)*")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
TIME = re.compile(r"\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?")
METADATA_COLUMNS = frozenset({"observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"})


@dataclass(frozen=True)
class Path:
    """An attribute reference: name, optional sub-attribute or metadata, compound value keys."""

    attribute: str
    member: str | None
    compound: tuple[str, ...]


@dataclass(frozen=True)
class Term:
    """A comparison `path op value` (value: scalar, list, or range tuple)."""

    path: Path
    op: str
    value: Any
    kind: str  # "scalar" | "list" | "range"


@dataclass(frozen=True)
class Exists:
    """`path` (present) or `!path` (absent)."""

    path: Path
    negate: bool


@dataclass(frozen=True)
class Logical:
    """Terms joined by `;` (and) or `|` (or)."""

    op: str
    items: tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self) -> BadRequestData:
        return BadRequestData("context.q.invalid", position=self.pos)

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def parse(self) -> Any:
        if not self.text or len(self.text) > MAX_Q_LENGTH:
            raise self.fail()
        node = self.expression(0)
        if self.pos != len(self.text):
            raise self.fail()
        return node

    def expression(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail()
        items = [self.conjunction(depth)]
        while self.peek("|"):
            self.pos += 1
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else Logical("or", tuple(items))

    def conjunction(self, depth: int) -> Any:
        items = [self.factor(depth)]
        while self.peek(";"):
            self.pos += 1
            items.append(self.factor(depth))
        return items[0] if len(items) == 1 else Logical("and", tuple(items))

    def factor(self, depth: int) -> Any:
        if self.peek("("):
            self.pos += 1
            node = self.expression(depth + 1)
            if not self.peek(")"):
                raise self.fail()
            self.pos += 1
            return node
        negate = False
        if self.peek("!") and not self.peek("!=") and not self.peek("!~="):
            negate = True
            self.pos += 1
        path = self.path()
        op = next((o for o in OPERATORS if self.peek(o)), None)
        if op is None or negate:
            if negate and op is not None:
                raise self.fail()
            return Exists(path, negate)
        self.pos += len(op)
        if op in ("~=", "=~", "!~="):
            pattern = self.pattern()
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as exc:
                # Python raises more than re.error: `x{4294967296}` overflows, and deeply
                # nested groups exhaust the recursion of its regex parser.
                raise self.fail() from exc
            return Term(path, "!~=" if op == "!~=" else "~=", pattern, "scalar")
        first = self.value()
        if op in ("==", "!=") and self.peek(".."):
            self.pos += 2
            second = self.value()
            # 1..5.5 is a numeric range: int and float bounds are one kind.
            if _kind(first) != _kind(second) or isinstance(first, bool):
                raise self.fail()
            return Term(path, op, (first, second), "range")
        if op in ("==", "!=") and self.peek(","):
            values = [first]
            while self.peek(","):
                self.pos += 1
                values.append(self.value())
            return Term(path, op, tuple(values), "list")
        return Term(path, op, first, "scalar")

    def path(self) -> Path:
        match = NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail()
        self.pos = match.end()
        parts = match.group(0).split(".")
        compound: tuple[str, ...] = ()
        if self.peek("["):
            end = self.text.find("]", self.pos)
            inner = self.text[self.pos + 1 : end] if end > 0 else ""
            if not inner or NAME.fullmatch(inner) is None:
                raise self.fail()
            compound = tuple(inner.split("."))
            self.pos = end + 1
        if len(parts) > 2:
            raise self.fail()
        return Path(parts[0], parts[1] if len(parts) == 2 else None, compound)

    def pattern(self) -> str:
        if self.peek('"'):
            return str(self.quoted())
        end = self.pos
        while end < len(self.text) and self.text[end] not in ";|)":
            end += 1
        if end == self.pos:
            raise self.fail()
        value = self.text[self.pos : end]
        self.pos = end
        return value

    def quoted(self) -> str:
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.fail()

    def value(self) -> Any:
        if self.peek('"'):
            return self.quoted()
        for literal, result in (("true", True), ("false", False)):
            if self.peek(literal):
                self.pos += len(literal)
                return result
        for pattern in (DATETIME, TIME):
            match = pattern.match(self.text, self.pos)
            if match is not None and (
                len(match.group(0)) > 4 and ("-" in match.group(0)[1:] or ":" in match.group(0))
            ):
                self.pos = match.end()
                return _when(match.group(0))
        match = NUMBER.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
            number = float(match.group(0))
            if not math.isfinite(number):
                raise self.fail()
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
        raise self.fail()


def _kind(value: Any) -> type:
    return float if isinstance(value, int | float) and not isinstance(value, bool) else type(value)


@dataclass(frozen=True)
class When:
    """A date, time or date-time literal in q (compared as text in ISO form)."""

    text: str
    at: datetime | None


def _when(text: str) -> When:
    if "T" in text or len(text) == 10:
        if "T" in text:
            try:
                return When(text, parse_datetime(text, "q"))
            except BadRequestData:
                raise BadRequestData("context.q.invalid", position=0) from None
        return When(text, None)
    return When(text, None)


def parse_q(text: str) -> Any:
    """Parse an NGSI-LD q expression into a tree (BadRequestData if malformed)."""
    return _Parser(text.strip()).parse()


def attribute_names(node: Any) -> set[str]:
    """Return the attribute names a parsed q expression mentions."""
    if isinstance(node, Logical):
        return set().union(*(attribute_names(item) for item in node.items))
    return {node.path.attribute}


# --- compilation -----------------------------------------------------------------------------


def compile_q(node: Any, expand: Callable[[str], str], dialect: str) -> ColumnElement[bool]:
    """Compile a parsed q expression to a SQL condition on ngsild_entity."""
    if isinstance(node, Logical):
        parts = [compile_q(item, expand, dialect) for item in node.items]
        return and_(*parts) if node.op == "and" else or_(*parts)
    path: Path = node.path
    conditions: list[ColumnElement[bool]] = [
        Attribute.entity_pk == Entity.pk,
        Attribute.name == expand(path.attribute),
    ]
    if isinstance(node, Exists):
        if path.member in METADATA_COLUMNS:
            present = {
                "observedAt": Attribute.observed_at.isnot(None),
                "unitCode": Attribute.unit_code.isnot(None),
                "datasetId": Attribute.dataset_id != "",
            }.get(path.member)
            if present is not None:
                conditions.append(present)
        elif path.member is not None:
            keys = (expand(path.member), *(("value", *path.compound) if path.compound else ()))
            conditions.append(_json_path(Attribute.sub_attrs, keys, dialect, "any"))
        elif path.compound:
            conditions.append(_json_path(Attribute.value, path.compound, dialect, "any"))
        exists = select(Attribute.entity_pk).where(*conditions).exists()
        return not_(exists) if node.negate else exists
    if node.op == "!=":
        positive = Term(path, "==", node.value, node.kind)
        conditions.append(not_(_compare(positive, expand, dialect)))
    elif node.op == "!~=":
        conditions.append(not_(_compare(Term(path, "~=", node.value, node.kind), expand, dialect)))
    else:
        conditions.append(_compare(node, expand, dialect))
    return select(Attribute.entity_pk).where(*conditions).exists()


def _json_path(column: Any, keys: tuple[str, ...], dialect: str, kind: str) -> Any:
    element = column[keys]
    if kind == "any":
        if dialect == "postgresql":
            return element.isnot(None)
        # SQLAlchemy wraps SQLite's JSON_EXTRACT in JSON_QUOTE, which turns a missing member
        # into the text 'null': ask json_type, NULL only when the path does not exist.
        return func.json_type(column, _sqlite_path(keys)).isnot(None)
    if kind == "num":
        if dialect == "postgresql":
            return case((func.jsonb_typeof(element) == "number", element.as_float()), else_=None)
        return case(
            (
                func.json_type(column, _sqlite_path(keys)).in_(["integer", "real"]),
                element.as_float(),
            ),
            else_=None,
        )
    if dialect == "postgresql":
        return case((func.jsonb_typeof(element) == "string", element.as_string()), else_=None)
    return case(
        (func.json_type(column, _sqlite_path(keys)) == "text", element.as_string()), else_=None
    )


def _sqlite_path(keys: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{key}"' for key in keys)


def _operands(path: Path, expand: Callable[[str], str], dialect: str) -> tuple[Any, Any, Any]:
    """Return (numeric expression, text expression, datetime expression or None) for a path."""
    if path.member in METADATA_COLUMNS:
        if path.member == "observedAt":
            return None, None, Attribute.observed_at
        if path.member in ("createdAt", "modifiedAt"):
            when = Attribute.created_at if path.member == "createdAt" else Attribute.modified_at
            return None, None, when
        text = Attribute.unit_code if path.member == "unitCode" else Attribute.dataset_id
        return None, text, None
    if path.member is not None:
        keys = (expand(path.member), "value", *path.compound)
        return (
            _json_path(Attribute.sub_attrs, keys, dialect, "num"),
            _json_path(Attribute.sub_attrs, keys, dialect, "text"),
            None,
        )
    if path.compound:
        return (
            _json_path(Attribute.value, path.compound, dialect, "num"),
            _json_path(Attribute.value, path.compound, dialect, "text"),
            None,
        )
    if dialect == "sqlite":
        # Inside the correlated EXISTS, SQLite would otherwise pick the (name, value) index and
        # scan every row of the attribute for each entity (quadratic: 55 s at 100k entities);
        # an expression keeps it on the primary key (entity_pk, name), one probe per entity.
        return Attribute.value_num + 0, Attribute.value_text + "", None
    return Attribute.value_num, Attribute.value_text, None


def _literal(value: Any) -> Any:
    if isinstance(value, When):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _compare(node: Term, expand: Callable[[str], str], dialect: str) -> ColumnElement[bool]:
    number, text, when = _operands(node.path, expand, dialect)
    sample = node.value[0] if node.kind in ("list", "range") else node.value
    if node.op == "~=":
        if text is None:
            return false()
        return text.regexp_match(node.value)  # type: ignore[no-any-return]
    if when is not None:
        if not isinstance(sample, When) or sample.at is None:
            return false()
        column = when
        convert: Callable[[Any], Any] = lambda v: v.at  # noqa: E731
    elif isinstance(sample, int | float) and not isinstance(sample, bool):
        if number is None:
            return false()
        column, convert = number, lambda v: v
        if any(isinstance(v, str | When | bool) for v in _values(node)):
            raise BadRequestData("context.q.mixed_values")
    else:
        if text is None:
            return false()
        column, convert = text, _literal
        if any(isinstance(v, int | float) and not isinstance(v, bool) for v in _values(node)):
            raise BadRequestData("context.q.mixed_values")
    if node.kind == "range":
        low, high = node.value
        return and_(column >= convert(low), column <= convert(high))
    if node.kind == "list":
        return column.in_([convert(v) for v in node.value])  # type: ignore[no-any-return]
    value = convert(node.value)
    operators: dict[str, Callable[[Any, Any], Any]] = {
        "==": lambda c, v: c == v,
        ">": lambda c, v: c > v,
        ">=": lambda c, v: c >= v,
        "<": lambda c, v: c < v,
        "<=": lambda c, v: c <= v,
    }
    return operators[node.op](column, value)  # type: ignore[no-any-return]


def _values(node: Term) -> list[Any]:
    return list(node.value) if node.kind in ("list", "range") else [node.value]


# --- scopeQ ----------------------------------------------------------------------------------

MAX_SCOPE_Q_LENGTH = 2000
SCOPE_SEGMENT = re.compile(r"[A-Za-z0-9_]+|\+")


@dataclass(frozen=True)
class ScopeTerm:
    """One scope pattern: segments ("+" matches one level) and whether "#" ends it (any depth)."""

    segments: tuple[str, ...]
    descendants: bool

    def pattern(self) -> str:
        """Return an anchored regular expression for stored scopes (linear: no nesting)."""
        body = "".join("/[^/]+" if s == "+" else "/" + s for s in self.segments)
        return f"^{body}(/.*)?$" if self.descendants else f"^{body}$"


class _ScopeParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self) -> BadRequestData:
        return BadRequestData("context.scope_q.invalid", position=self.pos)

    def parse(self) -> Any:
        if not self.text or len(self.text) > MAX_SCOPE_Q_LENGTH:
            raise self.fail()
        node = self.expression(0)
        if self.pos != len(self.text):
            raise self.fail()
        return node

    def expression(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail()
        items = [self.conjunction(depth)]
        while self.pos < len(self.text) and self.text[self.pos] in ",|":
            self.pos += 1
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else Logical("or", tuple(items))

    def conjunction(self, depth: int) -> Any:
        items = [self.factor(depth)]
        while self.text.startswith(";", self.pos):
            self.pos += 1
            items.append(self.factor(depth))
        return items[0] if len(items) == 1 else Logical("and", tuple(items))

    def factor(self, depth: int) -> Any:
        if self.text.startswith("(", self.pos):
            self.pos += 1
            node = self.expression(depth + 1)
            if not self.text.startswith(")", self.pos):
                raise self.fail()
            self.pos += 1
            return node
        segments: list[str] = []
        while self.text.startswith("/", self.pos):
            self.pos += 1
            if self.text.startswith("#", self.pos):
                self.pos += 1
                return ScopeTerm(tuple(segments), descendants=True)
            match = SCOPE_SEGMENT.match(self.text, self.pos)
            if match is None:
                raise self.fail()
            segments.append(match.group(0))
            self.pos = match.end()
        if not segments:
            raise self.fail()
        return ScopeTerm(tuple(segments), descendants=False)


def parse_scope_q(text: str) -> Any:
    """Parse an NGSI-LD scopeQ (`/a/b`, `/a/+`, `/a/#`, `/#`; `;` and, `,` or, parentheses)."""
    return _ScopeParser(text.strip()).parse()


def compile_scope_q(node: Any, dialect: str) -> ColumnElement[bool]:
    """Compile a parsed scopeQ to a SQL condition on ngsild_entity (one scope must match)."""
    if isinstance(node, Logical):
        parts = [compile_scope_q(item, dialect) for item in node.items]
        return and_(*parts) if node.op == "and" else or_(*parts)
    if dialect == "postgresql":
        # An entity without scopes may hold JSON null: the function refuses a non-array.
        array = case(
            (func.jsonb_typeof(Entity.scopes) == "array", Entity.scopes),
            else_=literal_column("'[]'::jsonb"),
        )
        scopes = func.jsonb_array_elements_text(array).table_valued("value")
    else:
        scopes = func.json_each(Entity.scopes).table_valued("value")
    return (
        select(true())
        .select_from(scopes)
        .where(scopes.c.value.regexp_match(node.pattern()))
        .exists()
    )


# --- geo-queries -----------------------------------------------------------------------------

GEORELS = frozenset({"near", "within", "contains", "intersects", "equals", "disjoint", "overlaps"})
EARTH_RADIUS = 6_371_008.8
METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class GeoQuery:
    """A parsed geo-query: relation, distance bounds (metres), geometry and geoproperty."""

    georel: str
    geometry: BaseGeometry
    geoproperty: str
    max_distance: float | None = None
    min_distance: float | None = None


def parse_geo(
    georel: str | None, geometry: str | None, coordinates: Any, geoproperty: str | None
) -> GeoQuery | None:
    """Parse and validate a geo-query; None when no geo parameter is given."""
    if georel is None and geometry is None and coordinates is None:
        return None
    if not georel or not geometry or coordinates is None:
        raise BadRequestData("context.geo.incomplete")
    parts = georel.split(";")
    relation = parts[0]
    if relation not in GEORELS:
        raise BadRequestData("context.geo.bad_georel")
    max_distance = min_distance = None
    for modifier in parts[1:]:
        key, sep, raw = modifier.partition("==")
        if not sep or key not in ("maxDistance", "minDistance") or relation != "near":
            raise BadRequestData("context.geo.bad_georel")
        try:
            distance = float(raw)
        except ValueError as exc:
            raise BadRequestData("context.geo.bad_distance") from exc
        if not math.isfinite(distance) or distance < 0 or distance > 40_075_000:
            raise BadRequestData("context.geo.bad_distance")
        if key == "maxDistance":
            max_distance = distance
        else:
            min_distance = distance
    if relation == "near" and max_distance is None and min_distance is None:
        raise BadRequestData("context.geo.bad_georel")
    if geometry not in GEOMETRY_TYPES:
        raise BadRequestData("context.geo.bad_geometry")
    if isinstance(coordinates, str):
        if len(coordinates) > 100_000:
            raise BadRequestData("context.geo.bad_geometry")
        try:
            coordinates = json.loads(coordinates)
        except (ValueError, RecursionError) as exc:
            # Deeply nested arrays ("[[[[…") exhaust the JSON decoder's recursion.
            raise BadRequestData("context.geo.bad_geometry") from exc
    shaped = check_geometry({"type": geometry, "coordinates": coordinates})
    return GeoQuery(
        georel=relation,
        geometry=shaped,
        geoproperty=geoproperty or "location",
        max_distance=max_distance,
        min_distance=min_distance,
    )


def prefilter_box(query: GeoQuery) -> tuple[float, float, float, float] | None:
    """Return the box an entity's location box must meet, or None if no box can be used."""
    if query.georel == "disjoint" or (query.georel == "near" and query.max_distance is None):
        return None
    min_x, min_y, max_x, max_y = query.geometry.bounds
    if query.georel == "near" and query.max_distance is not None:
        # The box must hold every point the exact (haversine) check accepts: degrees of the
        # same sphere, a 1 % margin for the planar distance of non-point geometries, and the
        # longitude span taken at the box's most poleward latitude, where it is widest.
        dlat = math.degrees(query.max_distance / EARTH_RADIUS) * 1.01
        south, north = max(min_y - dlat, -90.0), min(max_y + dlat, 90.0)
        widest = math.radians(max(abs(south), abs(north)))
        dlon = dlat / max(math.cos(widest), 0.01)
        return (min_x - dlon, south, max_x + dlon, north)
    return (min_x, min_y, max_x, max_y)


def _haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dlat = phi2 - phi1
    dlon = math.radians(lon2 - lon1)
    h = math.sin(dlat / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(h)))


def distance_m(a: BaseGeometry, b: BaseGeometry) -> float:
    """Distance in metres between two geometries (haversine for points, local projection else)."""
    if a.geom_type == "Point" and b.geom_type == "Point":
        return _haversine(a.x, a.y, b.x, b.y)
    origin = b.centroid
    scale_x = METRES_PER_DEGREE * math.cos(math.radians(origin.y))

    def project(g: BaseGeometry) -> BaseGeometry:
        return shapely.transform(
            g, lambda xy: (xy - [origin.x, origin.y]) * [scale_x, METRES_PER_DEGREE]
        )

    return float(project(a).distance(project(b)))


def matches(query: GeoQuery, value: Any) -> bool:
    """Whether a stored GeoJSON value satisfies the geo-query (exact check)."""
    target = query.geometry
    if (
        query.georel == "near"
        and target.geom_type == "Point"
        and isinstance(value, dict)
        and value.get("type") == "Point"
    ):
        # The common case (a station near a point): haversine on the stored coordinates,
        # without building a shapely geometry per candidate.
        coordinates = value.get("coordinates")
        if isinstance(coordinates, list) and len(coordinates) >= 2:
            distance = _haversine(coordinates[0], coordinates[1], target.x, target.y)
            if query.max_distance is not None and distance > query.max_distance:
                return False
            return not (query.min_distance is not None and distance < query.min_distance)
    try:
        geometry = shape(value)
    except Exception:  # noqa: BLE001 - stored values were validated; stay safe anyway
        return False
    if query.georel == "near":
        distance = distance_m(geometry, target)
        if query.max_distance is not None and distance > query.max_distance:
            return False
        return not (query.min_distance is not None and distance < query.min_distance)
    checks: dict[str, Callable[[], bool]] = {
        "within": lambda: bool(geometry.within(target)),
        "contains": lambda: bool(geometry.contains(target)),
        "intersects": lambda: bool(geometry.intersects(target)),
        "equals": lambda: bool(geometry.equals(target)),
        "disjoint": lambda: bool(geometry.disjoint(target)),
        "overlaps": lambda: bool(geometry.overlaps(target)),
    }
    return checks[query.georel]()


def truthy() -> ColumnElement[bool]:
    """A condition that always holds."""
    return true()
