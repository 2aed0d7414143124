"""API shapes of the units context: units, areas, departments, GeoJSON."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, Field

from cityops.core.schemas import SINGLE_LINE, Page, ReadModel, WriteModel

# Control characters are refused in text (PostgreSQL cannot store NUL; none belongs in a name).
# Descriptions may hold line breaks and tabs, but never NUL.
MULTILINE_TEXT = r"^[^\x00]*$"

AreaCode = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", max_length=64)]
DepartmentCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$", max_length=32)]
SectorCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", max_length=32)]
UnitCode = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,16}$", max_length=16)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE)]


class ContactIn(WriteModel):
    """Contact details; a field sent as null is cleared, a field left out is kept."""

    phone: Annotated[str, Field(max_length=64, pattern=SINGLE_LINE)] | None = None
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = (
        None
    )
    address: Annotated[str, Field(max_length=300, pattern=SINGLE_LINE)] | None = None
    head_name: Annotated[str, Field(max_length=200, pattern=SINGLE_LINE)] | None = None
    website: Annotated[str, Field(max_length=300, pattern=r"^https?://\S+$")] | None = None


class UnitRef(ReadModel):
    """A unit named by code, name and type."""

    code: str
    name: str
    unit_type: str
    level: str
    valid_from: date | None
    valid_to: date | None


class UnitRead(ReadModel):
    """An administrative unit as the API shows it."""

    code: str
    name: str
    name_en: str | None
    unit_type: str
    level: str
    parent_code: str | None
    valid_from: date | None
    valid_to: date | None
    lat: float | None
    lon: float | None
    area_km2: float | None
    population: int | None
    contact: dict[str, Any]
    boundary_source: str
    bbox: list[float] | None = None


class AreaRef(ReadModel):
    """An area named by code and names."""

    code: str
    name: str
    name_en: str | None
    kind: str


class UnitDetail(UnitRead):
    """A unit with its lineage and the areas it belongs to."""

    formed_from: list[UnitRef]
    succeeded_by: list[UnitRef]
    areas: list[AreaRef]


class UnitPage(Page[UnitRead]):
    """One page of units."""


class UnitUpdate(WriteModel):
    """Fields a unit officer may edit."""

    name_en: Name | None = None
    population: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    contact: ContactIn | None = None


class AreaRead(ReadModel):
    """An area and the codes of its member units."""

    code: str
    name: str
    name_en: str | None
    kind: str
    description: str | None
    unit_codes: list[str]


class AreaDetail(AreaRead):
    """An area with its member units."""

    units: list[UnitRef]


class AreaPage(Page[AreaRead]):
    """One page of areas."""


class AreaCreate(WriteModel):
    """A new area."""

    code: AreaCode
    name: Name
    name_en: Name | None = None
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "custom"
    description: Annotated[str, Field(max_length=2000, pattern=MULTILINE_TEXT)] | None = None
    unit_codes: Annotated[list[UnitCode], Field(default_factory=list, max_length=1000)]


class AreaUpdate(WriteModel):
    """Changes to an area; `unit_codes`, when sent, replaces the member list."""

    name: Name | None = None
    name_en: Name | None = None
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = None
    description: Annotated[str, Field(max_length=2000, pattern=MULTILINE_TEXT)] | None = None
    unit_codes: Annotated[list[UnitCode], Field(max_length=1000)] | None = None


class DepartmentRead(ReadModel):
    """A department and the sectors it owns."""

    code: str
    name: str
    name_en: str | None
    sectors: list[str]
    contact: dict[str, Any]


class DepartmentPage(Page[DepartmentRead]):
    """One page of departments."""


class DepartmentCreate(WriteModel):
    """A new department."""

    code: DepartmentCode
    name: Name
    name_en: Name | None = None
    sectors: Annotated[list[SectorCode], Field(default_factory=list, max_length=50)]
    contact: ContactIn | None = None


class DepartmentUpdate(WriteModel):
    """Changes to a department: names and sectors need department admin, contact does not."""

    name: Name | None = None
    name_en: Name | None = None
    sectors: Annotated[list[SectorCode], Field(max_length=50)] | None = None
    contact: ContactIn | None = None


class Feature(BaseModel):
    """A GeoJSON Feature."""

    type: str = "Feature"
    id: str
    geometry: dict[str, Any] | None
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    """A GeoJSON FeatureCollection."""

    type: str = "FeatureCollection"
    features: list[Feature]
