"""API shapes of the citizen context (the Open311 shapes are built in open311.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from cityops.core.schemas import SINGLE_LINE, Page, ReadModel, WriteModel

ServiceCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$", max_length=32)]
Line = Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE)]
LongLine = Annotated[str, Field(max_length=1000, pattern=SINGLE_LINE)]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Severity = Literal["low", "medium", "high", "critical"]
DataType = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]


class AttributeValue(WriteModel):
    """One choice of a list attribute."""

    key: Code
    name: Line
    name_en: Line


class ServiceAttribute(WriteModel):
    """An extra question of a service (an Open311 attribute)."""

    code: Code
    variable: bool = True
    datatype: DataType = "string"
    required: bool = False
    datatype_description: Annotated[str, Field(max_length=200, pattern=SINGLE_LINE)] = ""
    order: int = Field(ge=1, le=100)
    description: Line
    description_en: Line
    values: list[AttributeValue] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _lists_have_values(self) -> ServiceAttribute:
        if self.datatype in ("singlevaluelist", "multivaluelist") and not self.values:
            raise ValueError("a list attribute needs its values")
        return self


class ServiceBase(WriteModel):
    """Fields of a service an admin edits."""

    name: Line
    name_en: Line
    description: LongLine = ""
    description_en: LongLine = ""
    group: Line
    group_en: Line
    keywords: Annotated[str, Field(max_length=500, pattern=SINGLE_LINE)] = ""
    department_code: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")]
    incident_category: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    severity: Severity = "medium"
    sla_hours: int = Field(ge=1, le=24 * 366)
    attributes: list[ServiceAttribute] = Field(default_factory=list, max_length=20)
    is_active: bool = True
    position: int = Field(default=0, ge=0, le=10_000)


class ServiceCreate(ServiceBase):
    """A new service in the catalogue."""

    code: ServiceCode


class ServiceUpdate(WriteModel):
    """Changes to a service: only the fields given change."""

    name: Line | None = None
    name_en: Line | None = None
    description: LongLine | None = None
    description_en: LongLine | None = None
    group: Line | None = None
    group_en: Line | None = None
    keywords: Annotated[str, Field(max_length=500, pattern=SINGLE_LINE)] | None = None
    department_code: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")] | None = None
    incident_category: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = None
    severity: Severity | None = None
    sla_hours: int | None = Field(default=None, ge=1, le=24 * 366)
    attributes: list[ServiceAttribute] | None = Field(default=None, max_length=20)
    is_active: bool | None = None
    position: int | None = Field(default=None, ge=0, le=10_000)


class ServiceRead(ReadModel):
    """A service of the catalogue."""

    code: str
    name: str
    name_en: str
    description: str
    description_en: str
    group: str
    group_en: str
    keywords: str
    department_code: str
    incident_category: str
    severity: str
    sla_hours: int
    attributes: list[dict[str, Any]]
    is_active: bool
    position: int


class ReporterRead(ReadModel):
    """Who sent a report: personal data, shown only to staff handling the case."""

    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    device_id: str | None
    account_id: str | None
    language: str | None = None


class NoteRead(ReadModel):
    """One entry of a report's history."""

    at: datetime
    kind: str
    status: str
    description: str


class ReportRead(ReadModel):
    """A report as staff see it (with its reporter when they handle the case)."""

    id: int
    tracking_code: str
    service_code: str
    status: str
    status_notes: str | None
    description: str
    address: str | None
    lat: float | None
    lon: float | None
    media_url: str | None
    attributes: dict[str, Any]
    unit_code: str | None
    department_code: str | None
    incident_id: int | None
    incident_code: str | None
    duplicate_of: int | None
    moderation: str
    flag_reason: str | None
    requested_at: datetime
    updated_at: datetime
    expected_at: datetime | None
    closed_at: datetime | None
    satisfied: bool | None
    rating_comment: str | None
    personal_data_erased_at: datetime | None
    reporter: ReporterRead | None = None
    notes: list[NoteRead] = Field(default_factory=list)
    # Public addresses of the report's photos (stored without metadata).
    photo_urls: list[str] = Field(default_factory=list)


class ReportPage(Page[ReportRead]):
    """One page of reports."""


class ModerationIn(WriteModel):
    """A moderator's decision on a flagged report."""

    decision: Literal["approve", "hide"]


class RatingIn(WriteModel):
    """The reporter's rating of a resolved report."""

    satisfied: bool
    comment: Annotated[str, Field(max_length=1000)] | None = None
    # The reporter key from their tracking link (confirmation message or submission answer).
    key: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class ErasureIn(WriteModel):
    """A reporter's request to erase their personal data: the e-mail or phone they gave, or the
    reporter key of their tracking link (the only proof an anonymous reporter has)."""

    contact: Annotated[str, Field(min_length=3, max_length=254, pattern=SINGLE_LINE)] | None = None
    key: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")] | None = None


class DuplicateRead(ReadModel):
    """An open report near a point that a new report may duplicate (no personal data)."""

    tracking_code: str
    service_code: str
    description: str
    lat: float | None
    lon: float | None
    requested_at: datetime
    distance_m: float


class SubmissionRead(ReadModel):
    """What the public page learns after sending a report: the tracking code, never more."""

    tracking_code: str
    status: str
    moderation: str
    unit_code: str | None
    department_code: str | None
    duplicate_of: str | None
    notice: str | None
    photos: int
    tracking_url: str


class LinkIn(WriteModel):
    """Staff: the report whose incident this report joins (it duplicates it)."""

    duplicate_of: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$")]
