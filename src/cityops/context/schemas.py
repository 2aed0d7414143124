"""Wire shapes of the NGSI-LD API (media types, Link headers, query options, durations) and of
the data-model catalogue."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
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


def duration_ms(text: str) -> int:
    """Return an ISO 8601 duration (weeks, days, hours, minutes, seconds) in milliseconds."""
    match = DURATION.fullmatch(text or "")
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise BadRequestData("context.temporal.bad_duration")
    factors = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}
    total = sum(float(match.group(k) or 0) * f for k, f in factors.items())
    if total < 1 or total > 100 * 365 * 86_400_000:
        raise BadRequestData("context.temporal.bad_duration")
    return int(total)


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
