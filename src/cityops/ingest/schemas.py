"""API shapes of the ingest context: devices, their attribute maps and ingest results."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from cityops.core.schemas import SINGLE_LINE, Page, ReadModel, WriteModel
from cityops.ingest import convert
from cityops.ingest.enums import ValueType

# Device ids travel in MQTT topics and URL paths: no '/', '+', '#' or spaces.
DeviceId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
Tenant = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=SINGLE_LINE)]
# An NGSI-LD entity id is a URI: `urn:ngsi-ld:<Type>:<local id>` in CityOps.
EntityId = Annotated[
    str,
    StringConstraints(
        min_length=3, max_length=256, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+$"
    ),
]
EntityType = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
]
UnitCode = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=SINGLE_LINE)]
DepartmentCode = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=SINGLE_LINE)]
PayloadKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
AttributeName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
UnitText = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=SINGLE_LINE)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
# From ten seconds (fast sensors) to a week (manual or daily uploads).
Interval = Annotated[int, Field(ge=10, le=7 * 24 * 3600)]

# Payload keys with a meaning of their own: never mapped to attributes.
RESERVED_KEYS = frozenset({"ts", "observedAt", "lat", "lon", "key", "k"})
# Attribute names the NGSI-LD entity uses for itself.
RESERVED_ATTRIBUTES = frozenset({"id", "type", "location", "scope"})
MAX_ATTRIBUTES = 100


class AttributeSpec(WriteModel):
    """How one payload key becomes one NGSI-LD attribute: name, canonical unit, conversion,
    plausibility bounds (in the canonical unit)."""

    key: PayloadKey
    attribute: AttributeName | None = None
    type: ValueType = ValueType.NUMBER
    # The canonical unit stored (UN/CEFACT common code; a known symbol is turned into its code).
    unit_code: UnitText | None = None
    # The unit the device sends, when it differs from the canonical one.
    from_unit: UnitText | None = None
    # The gas, for ppb/ppm → µg/m³ or mg/m³ (default: the attribute name, e.g. "no2").
    substance: (
        Annotated[str, StringConstraints(max_length=16, pattern=r"^[A-Za-z0-9]+$")] | None
    ) = None
    # An explicit conversion `value * scale + offset`, instead of the table's.
    scale: float | None = None
    offset: float | None = None
    min: float | None = None
    max: float | None = None

    @field_validator("unit_code", "from_unit")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        return None if value is None else convert.unit_code(value)

    @field_validator("scale", "offset", "min", "max")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AttributeSpec:
        if self.key in RESERVED_KEYS:
            raise ValueError(f"'{self.key}' is a reserved payload key")
        if self.name in RESERVED_ATTRIBUTES:
            raise ValueError(f"'{self.name}' cannot be a measured attribute")
        numeric = (self.unit_code, self.from_unit, self.scale, self.offset, self.min, self.max)
        if self.type is not ValueType.NUMBER and any(v is not None for v in numeric):
            raise ValueError("units, conversions and bounds apply to numbers only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.from_unit is not None and self.scale is None and self.offset is None:
            if self.unit_code is None:
                raise ValueError("from_unit needs unit_code (the canonical unit)")
            if self.conversion() is None:
                raise ValueError(
                    f"no conversion from {self.from_unit} to {self.unit_code}"
                    + ("" if self.substance else " (for ppb/ppm give the substance)")
                )
        return self

    @property
    def name(self) -> str:
        """The attribute name in the entity (the payload key unless renamed)."""
        return self.attribute or self.key

    def conversion(self) -> convert.Linear | None:
        """Return the conversion from the sent unit to the canonical one (None: impossible)."""
        if self.scale is not None or self.offset is not None:
            return convert.Linear(
                1.0 if self.scale is None else self.scale,
                0.0 if self.offset is None else self.offset,
            )
        if self.from_unit is None or self.unit_code is None:
            return convert.IDENTITY
        return convert.find(self.from_unit, self.unit_code, substance=self.substance or self.name)


def _check_attributes(specs: list[AttributeSpec] | None) -> list[AttributeSpec] | None:
    if specs is None:
        return None
    keys = [spec.key for spec in specs]
    names = [spec.name for spec in specs]
    if len(set(keys)) != len(keys):
        raise ValueError("each payload key may appear once")
    if len(set(names)) != len(names):
        raise ValueError("each attribute may be fed by one key only")
    return specs


class DeviceCreate(WriteModel):
    """A new device: what it feeds, where it is, who owns it, and its attribute map."""

    device_id: DeviceId
    tenant: Tenant = "default"
    name: Name
    entity_type: EntityType
    # Default: urn:ngsi-ld:<entity_type>:<device_id>.
    entity_id: EntityId | None = None
    department_code: DepartmentCode | None = None
    # Default: the commune or ward containing the location.
    unit_code: UnitCode | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    interval_seconds: Interval = 300
    attributes: Annotated[list[AttributeSpec], Field(min_length=1, max_length=MAX_ATTRIBUTES)]

    _attributes = field_validator("attributes")(_check_attributes)

    @model_validator(mode="after")
    def _location(self) -> DeviceCreate:
        if self.device_id == "devices":
            raise ValueError("'devices' is reserved (it names the device registry's path)")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class DeviceUpdate(WriteModel):
    """Changes to a device; fields left out stay as they are, `null` clears an optional field."""

    name: Name | None = None
    entity_type: EntityType | None = None
    entity_id: EntityId | None = None
    department_code: DepartmentCode | None = None
    unit_code: UnitCode | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    interval_seconds: Interval | None = None
    attributes: (
        Annotated[list[AttributeSpec], Field(min_length=1, max_length=MAX_ATTRIBUTES)] | None
    ) = None

    _attributes = field_validator("attributes")(_check_attributes)


class DeviceRead(ReadModel):
    """A device as listed: never its key, only the key's public prefix."""

    id: int
    device_id: str
    tenant: str
    name: str
    entity_id: str
    entity_type: str
    department_code: str | None
    unit_code: str | None
    lat: float | None
    lon: float | None
    interval_seconds: int
    attributes: list[dict[str, Any]]
    status: str
    last_seen_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    key_prefix: str
    key_created_at: datetime
    created_at: datetime
    updated_at: datetime


class DeviceCreated(DeviceRead):
    """A device just created or re-keyed, with its key: shown this once and never again."""

    key: str


class DevicePage(Page[DeviceRead]):
    """One page of devices."""


class RefusedValue(BaseModel):
    """A value (or a whole reading, `key` null) that was not stored, and why."""

    key: str | None
    reason: str
    message: str


class ReadingResult(BaseModel):
    """What became of one reading: the attributes stored and what was refused."""

    index: int
    observed_at: datetime | None
    stored: dict[str, Any]
    refused: list[RefusedValue]


class IngestRead(BaseModel):
    """The outcome of an HTTP ingest request."""

    device_id: str
    entity_id: str
    stored: int
    refused: int
    readings: list[ReadingResult]
