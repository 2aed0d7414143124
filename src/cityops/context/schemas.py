"""Wire shapes of the NGSI-LD API (media types, Link headers, query options, durations) and of
the data-model catalogue."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel

from cityops.context.errors import BadRequestData

JSON = "application/json"
JSON_LD = "application/ld+json"
MERGE_PATCH = "application/merge-patch+json"
GEO_JSON = "application/geo+json"
SCHEMA_JSON = "application/schema+json"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
LINK = re.compile(r'<([^>]+)>\s*((?:;\s*[a-zA-Z]+\s*=\s*"?[^";,]*"?\s*)*)')
DURATION = re.compile(
    r"P(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)
AGGREGATIONS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")


def parse_link(header: str | None) -> str | None:
    """Return the JSON-LD context URL of a Link header (None without one)."""
    if not header:
        return None
    for match in LINK.finditer(header):
        params = match.group(2).replace(" ", "")
        if f'rel="{CONTEXT_REL}"' in params or f"rel={CONTEXT_REL}" in params:
            url = match.group(1).strip()
            if not url.startswith(("http://", "https://")) or len(url) > 2048:
                raise BadRequestData("context.ld.bad_link")
            return url
    return None


def link_header(url: str) -> str:
    """Return a Link header pointing at a JSON-LD context."""
    return f'<{url}>; rel="{CONTEXT_REL}"; type="{JSON_LD}"'


@dataclass(frozen=True)
class Period:
    """An ISO 8601 duration: calendar months (years are 12) plus a fixed number of milliseconds.

    Months cannot be milliseconds: P1M is 28 to 31 days, so its periods are placed on the
    calendar (2026-01-31 + P1M is 2026-02-28, the day clamped to the month's end, as in
    XML Schema's dateTime arithmetic).
    """

    months: int
    ms: int

    def boundary(self, origin_ms: int, k: int) -> int:
        """Return the start of the k-th period after an origin (milliseconds since the epoch)."""
        if not self.months:
            return origin_ms + k * self.ms
        origin = datetime.fromtimestamp(origin_ms / 1000, tz=UTC)
        index = origin.year * 12 + origin.month - 1 + k * self.months
        year, month = divmod(index, 12)
        day = min(origin.day, calendar.monthrange(year, month + 1)[1])
        moved = origin.replace(year=year, month=month + 1, day=day)
        return round(moved.timestamp() * 1000) + k * self.ms


def parse_duration(text: str) -> Period:
    """Parse an ISO 8601 duration (years, months, weeks, days, hours, minutes, seconds)."""
    match = DURATION.fullmatch(text or "")
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise BadRequestData("context.temporal.bad_duration")
    calendar_parts = [match.group(k) for k in ("y", "mo")]
    # A fraction of a month has no calendar meaning.
    if any(part is not None and not part.isdigit() for part in calendar_parts):
        raise BadRequestData("context.temporal.bad_duration")
    months = int(match.group("y") or 0) * 12 + int(match.group("mo") or 0)
    factors = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}
    total = sum(float(match.group(k) or 0) * f for k, f in factors.items())
    if months > 100 * 12 or total > 100 * 365 * 86_400_000 or (not months and total < 1):
        raise BadRequestData("context.temporal.bad_duration")
    return Period(months=months, ms=int(total))


def duration_ms(text: str) -> int:
    """Return an ISO 8601 duration of fixed length (no years or months) in milliseconds."""
    period = parse_duration(text)
    if period.months:
        raise BadRequestData("context.temporal.bad_duration")
    return period.ms


@dataclass(frozen=True)
class Options:
    """The `options` of a query: representation and system attributes."""

    representation: str = "normalized"  # normalized | concise | keyValues
    sys_attrs: bool = False
    temporal_values: bool = False
    no_overwrite: bool = False
    replace: bool = False
    update: bool = False

    @classmethod
    def parse(cls, raw: str | None, format_: str | None = None) -> Options:
        """Parse `options` (comma list) and `format`."""
        words = {w.strip() for w in (raw or "").split(",") if w.strip()}
        known = {
            "keyValues",
            "simplified",
            "concise",
            "normalized",
            "sysAttrs",
            "temporalValues",
            "noOverwrite",
            "replace",
            "update",
            "aggregatedValues",
        }
        if not words <= known:
            raise BadRequestData("context.options.unknown")
        representation = "normalized"
        if words & {"keyValues", "simplified"} or format_ in ("keyValues", "simplified"):
            representation = "keyValues"
        elif "concise" in words or format_ == "concise":
            representation = "concise"
        return cls(
            representation=representation,
            sys_attrs="sysAttrs" in words,
            temporal_values="temporalValues" in words or format_ == "temporalValues",
            no_overwrite="noOverwrite" in words,
            replace="replace" in words,
            update="update" in words,
        )


class DataModelRead(BaseModel):
    """One entity type CityOps validates: its title, description and required members."""

    type: str
    title: str
    description: str
    required: list[str]
    schema_url: str


class DataModelList(BaseModel):
    """The entity types CityOps validates against a Smart Data Models schema."""

    items: list[DataModelRead]
