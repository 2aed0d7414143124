"""Readings → NGSI-LD entity fragments, through a device's declarative attribute map.

A reading is a flat JSON object: payload keys → values, plus optional `ts`/`observedAt` (ISO 8601
with a zone, or epoch seconds/milliseconds) and `lat`/`lon` for mobile devices. Every value is
checked for type, converted to its canonical unit and checked against its plausibility bounds;
what fails is refused with a reason and never stored. Pure functions: no database, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cityops.ingest import convert
from cityops.ingest.enums import Refusal, ValueType
from cityops.ingest.schemas import RESERVED_KEYS, AttributeSpec

# A device clock may run a little fast; further in the future is a broken clock.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_TEXT = 1000
COMPILED_CACHE_KEY = "ingest.compiled"


@dataclass(frozen=True, slots=True)
class CompiledAttribute:
    """One attribute description, ready for the hot path."""

    key: str
    name: str
    type: ValueType
    unit_code: str | None
    from_unit: str | None
    substance: str | None
    conversion: convert.Linear
    min: float | None
    max: float | None


@dataclass(slots=True)
class Refused:
    """A value (key set) or a whole reading (key None) that was not stored."""

    key: str | None
    reason: Refusal
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def message_key(self) -> str:
        """The message catalogue key explaining this refusal."""
        return f"ingest.refused.{self.reason.value}"


@dataclass(slots=True)
class ReadingOutcome:
    """What became of one reading: its fragment, the values stored and what was refused."""

    index: int
    observed_at: datetime | None = None
    fragment: dict[str, Any] | None = None
    stored: dict[str, Any] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)

    def refuse_all(self, reason: Refusal, **params: Any) -> None:
        """Refuse everything this reading would have stored (e.g. the store refused the entity)."""
        for name in self.stored:
            self.refused.append(Refused(name, reason, params))
        self.stored = {}
        self.fragment = None


def compile_attributes(specs: list[dict[str, Any]]) -> dict[str, CompiledAttribute]:
    """Turn stored attribute descriptions into a payload key → compiled attribute map."""
    compiled: dict[str, CompiledAttribute] = {}
    for raw in specs:
        spec = AttributeSpec.model_validate(raw)
        conversion = spec.conversion() or convert.IDENTITY
        compiled[spec.key] = CompiledAttribute(
            key=spec.key,
            name=spec.name,
            type=spec.type,
            unit_code=spec.unit_code,
            from_unit=spec.from_unit,
            substance=spec.substance or spec.name,
            conversion=conversion,
            min=spec.min,
            max=spec.max,
        )
    return compiled


def compiled_for(
    *,
    device_pk: int,
    version: datetime,
    specs: list[dict[str, Any]],
    caches: MutableMapping[str, Any],
) -> dict[str, CompiledAttribute]:
    """Return a device's compiled attribute map, compiling it again only after a change."""
    store: dict[int, tuple[datetime, dict[str, CompiledAttribute]]] = caches.setdefault(
        COMPILED_CACHE_KEY, {}
    )
    found = store.get(device_pk)
    if found is not None and found[0] == version:
        return found[1]
    compiled = compile_attributes(specs)
    store[device_pk] = (version, compiled)
    return compiled


def iso(at: datetime) -> str:
    """Format an instant as ISO 8601 UTC with milliseconds and a Z."""
    at = at.astimezone(UTC)
    # By hand: strftime costs several times more, and every reading formats its time.
    return (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:"
        f"{at.second:02d}.{at.microsecond // 1000:03d}Z"
    )


@lru_cache(maxsize=8192)
def _parse_time_text(value: str) -> datetime | None:
    # Cached by text: a device's readings, and a batch of devices, share few timestamps.
    try:
        parsed = datetime.fromisoformat(value)
        # OverflowError: no UTC equivalent at the ends of the calendar (0001-01-01T00:00+07:00).
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def parse_time(value: Any) -> datetime | None:
    """Parse an ISO 8601 time with a zone, or epoch seconds/milliseconds; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        # Epoch milliseconds are above 1e11 for any date after 1973.
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and 0 < len(value) <= 64:
        return _parse_time_text(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _round(value: float) -> float:
    # Conversions leave binary noise (35.2 ppb * 1.88 = 66.17600000000001); 9 significant digits
    # are far beyond any sensor's precision.
    return float(f"{value:.9g}")


def convert_value(
    attr: CompiledAttribute, value: Any, *, unit: str | None = None
) -> tuple[Any, Refused | None]:
    """Check, convert and bound one value; `unit` overrides the unit the device sends."""
    if attr.type is ValueType.TEXT:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            return None, Refused(attr.key, Refusal.BAD_TYPE, {"expected": "text"})
        return value, None
    if attr.type is ValueType.BOOLEAN:
        if not isinstance(value, bool):
            return None, Refused(attr.key, Refusal.BAD_TYPE, {"expected": "boolean"})
        return value, None
    number = _number(value)
    if number is None:
        return None, Refused(attr.key, Refusal.BAD_TYPE, {"expected": "number"})
    conversion: convert.Linear | None = attr.conversion
    if unit is not None and attr.unit_code is not None:
        source = convert.unit_code(unit)
        if source != (attr.from_unit or attr.unit_code):
            conversion = convert.find(source, attr.unit_code, substance=attr.substance)
            if conversion is None:
                return None, Refused(
                    attr.key,
                    Refusal.BAD_TYPE,
                    {"expected": f"a unit convertible to {attr.unit_code}"},
                )
    assert conversion is not None
    converted = _round(conversion(number))
    if (attr.min is not None and converted < attr.min) or (
        attr.max is not None and converted > attr.max
    ):
        return None, Refused(
            attr.key,
            Refusal.OUT_OF_RANGE,
            {
                "value": f"{converted:.6g}",
                "min": "-∞" if attr.min is None else f"{attr.min:g}",
                "max": "∞" if attr.max is None else f"{attr.max:g}",
                "unit": attr.unit_code or "",
            },
        )
    return converted, None


def property_of(value: Any, *, unit_code: str | None, observed: str) -> dict[str, Any]:
    """Build an NGSI-LD Property with its unit and observation time."""
    prop: dict[str, Any] = {"type": "Property", "value": value, "observedAt": observed}
    if unit_code is not None:
        prop["unitCode"] = unit_code
    return prop


def location_of(lat: Any, lon: Any) -> list[float] | None:
    """Return [lon, lat] if both are numbers within range, else None."""
    lat_n, lon_n = _number(lat), _number(lon)
    if lat_n is None or lon_n is None or not (-90 <= lat_n <= 90 and -180 <= lon_n <= 180):
        return None
    return [lon_n, lat_n]


def normalize(
    *,
    reading: Any,
    index: int,
    entity_id: str,
    entity_type: str,
    attributes: Mapping[str, CompiledAttribute],
    now: datetime,
) -> ReadingOutcome:
    """Turn one reading into an entity fragment, refusing what does not fit the attribute map."""
    outcome = ReadingOutcome(index=index)
    if not isinstance(reading, dict):
        outcome.refused.append(Refused(None, Refusal.BAD_PAYLOAD))
        return outcome
    raw_time = reading.get("observedAt", reading.get("ts"))
    if raw_time is None:
        observed_at = now
    else:
        parsed = parse_time(raw_time)
        if parsed is None:
            outcome.refused.append(Refused(None, Refusal.BAD_TIME, {"value": str(raw_time)[:64]}))
            return outcome
        if parsed > now + FUTURE_TOLERANCE:
            outcome.refused.append(Refused(None, Refusal.FUTURE_TIME, {"value": iso(parsed)}))
            return outcome
        observed_at = parsed
    outcome.observed_at = observed_at
    observed = iso(observed_at)
    fragment: dict[str, Any] = {"id": entity_id, "type": entity_type}
    for key, value in reading.items():
        if key in RESERVED_KEYS:
            continue
        attr = attributes.get(key)
        if attr is None:
            outcome.refused.append(Refused(str(key)[:64], Refusal.UNKNOWN_KEY))
            continue
        converted, refusal = convert_value(attr, value)
        if refusal is not None:
            outcome.refused.append(refusal)
            continue
        fragment[attr.name] = property_of(converted, unit_code=attr.unit_code, observed=observed)
        outcome.stored[attr.name] = converted
    if "lat" in reading or "lon" in reading:
        point = location_of(reading.get("lat"), reading.get("lon"))
        if point is None:
            outcome.refused.append(Refused("location", Refusal.BAD_LOCATION))
        else:
            fragment["location"] = {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": point},
                "observedAt": observed,
            }
            outcome.stored["location"] = point
    if outcome.stored:
        outcome.fragment = fragment
    elif not outcome.refused:
        outcome.refused.append(Refused(None, Refusal.NOTHING_VALID))
    return outcome
