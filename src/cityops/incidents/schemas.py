"""API shapes of the incidents context: incidents, their timeline, comments and attachments,
categories, SLA policies, holidays and the SLA report."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator

from cityops.core.deps import MAX_ID
from cityops.core.schemas import SINGLE_LINE, Page, ReadModel, WriteModel
from cityops.incidents.enums import HolidayKind, IncidentStatus, Severity

# Descriptions, notes and comments may hold line breaks and tabs, never NUL.
MULTILINE_TEXT = r"^[^\x00]*$"
# A year of minutes: no SLA is longer.
MAX_MINUTES = 366 * 24 * 60

CategoryCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", max_length=32)]
DepartmentCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$", max_length=32)]
SectorCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", max_length=32)]
UnitCode = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,16}$", max_length=16)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE)]
Title = Annotated[str, Field(min_length=1, max_length=300, pattern=SINGLE_LINE)]
LongText = Annotated[str, Field(max_length=10_000, pattern=MULTILINE_TEXT)]
Note = Annotated[str, Field(max_length=5_000, pattern=MULTILINE_TEXT)]
UserId = Annotated[int, Field(ge=1, le=MAX_ID)]
Minutes = Annotated[int, Field(ge=1, le=MAX_MINUTES)]


# --- categories ------------------------------------------------------------------------------


class CategoryRead(ReadModel):
    """An incident category."""

    code: str
    name: str
    name_en: str | None
    sector: str | None
    department_code: str | None
    default_severity: Severity
    is_active: bool


class CategoryCreate(WriteModel):
    """A new incident category."""

    code: CategoryCode
    name: Name
    name_en: Name | None = None
    sector: SectorCode | None = None
    department_code: DepartmentCode | None = Field(
        default=None, description="The department incidents of this category go to by default."
    )
    default_severity: Severity = Severity.MEDIUM


class CategoryUpdate(WriteModel):
    """Changes to a category; fields left out are kept."""

    name: Name | None = None
    name_en: Name | None = None
    sector: SectorCode | None = None
    department_code: DepartmentCode | None = None
    default_severity: Severity | None = None
    is_active: bool | None = None


class CategoryPage(Page[CategoryRead]):
    """A page of categories."""


# --- SLA policies ----------------------------------------------------------------------------


class SlaPolicyRead(ReadModel):
    """Deadlines for a category (or every category) at one severity."""

    id: int
    category_code: str | None = Field(description="None: the default of the severity.")
    severity: Severity
    ack_minutes: int
    resolve_minutes: int
    business_hours: bool


class SlaPolicyCreate(WriteModel):
    """A new SLA policy."""

    category_code: CategoryCode | None = Field(
        default=None, description="Leave out for the default policy of the severity."
    )
    severity: Severity
    ack_minutes: Minutes = Field(description="Time allowed until work starts.")
    resolve_minutes: Minutes = Field(description="Time allowed until the incident is resolved.")
    business_hours: bool = Field(
        default=False, description="Count working time only (working hours, no holidays)."
    )

    @model_validator(mode="after")
    def _resolve_after_ack(self) -> SlaPolicyCreate:
        if self.resolve_minutes < self.ack_minutes:
            raise ValueError("resolve_minutes must not be less than ack_minutes")
        return self


class SlaPolicyUpdate(WriteModel):
    """Changes to an SLA policy; fields left out are kept."""

    ack_minutes: Minutes | None = None
    resolve_minutes: Minutes | None = None
    business_hours: bool | None = None


class SlaPolicyPage(Page[SlaPolicyRead]):
    """A page of SLA policies."""


# --- holidays --------------------------------------------------------------------------------


class HolidayRead(ReadModel):
    """A day off, or a weekend day worked in exchange for one."""

    day: date
    kind: HolidayKind
    name: str
    name_en: str | None


class HolidayCreate(WriteModel):
    """A new calendar exception."""

    day: date
    kind: HolidayKind = HolidayKind.DAY_OFF
    name: Name
    name_en: Name | None = None


class HolidayUpdate(WriteModel):
    """Changes to a calendar exception; fields left out are kept."""

    kind: HolidayKind | None = None
    name: Name | None = None
    name_en: Name | None = None


class HolidayPage(Page[HolidayRead]):
    """A page of calendar exceptions."""


# --- incidents -------------------------------------------------------------------------------


class IncidentCreate(WriteModel):
    """A new incident, by hand or from an alert."""

    title: Title
    description: LongText | None = None
    category_code: CategoryCode
    severity: Severity | None = Field(default=None, description="Default: the category's.")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    unit_code: UnitCode | None = Field(
        default=None, description="The commune or ward; found from lat/lon when left out."
    )
    department_code: DepartmentCode | None = Field(
        default=None, description="The main department; default: the category's."
    )
    supporting_department_codes: list[DepartmentCode] = Field(default_factory=list, max_length=20)
    alert_id: UserId | None = Field(default=None, description="The alert this incident is for.")
    source_ref: Annotated[str, Field(max_length=300, pattern=SINGLE_LINE)] | None = None

    @model_validator(mode="after")
    def _point_complete(self) -> IncidentCreate:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self


class IncidentUpdate(WriteModel):
    """Changes to an open incident; fields left out are kept."""

    title: Title | None = None
    description: LongText | None = None
    severity: Severity | None = None
    category_code: CategoryCode | None = None


class AssignIn(WriteModel):
    """Who handles an incident: the main department, supporting ones and an optional assignee."""

    department_code: DepartmentCode
    supporting_department_codes: list[DepartmentCode] = Field(default_factory=list, max_length=20)
    assignee_id: UserId | None = Field(
        default=None,
        description="A user of one of these departments, or scoped to the incident's unit.",
    )
    note: Note | None = None


class TransitionIn(WriteModel):
    """A move of the workflow."""

    to: IncidentStatus
    note: Note | None = Field(
        default=None, description="Required to resolve (what was done) and to reopen (why)."
    )


class CommentCreate(WriteModel):
    """A comment on an incident."""

    body: Annotated[str, Field(min_length=1, max_length=5_000, pattern=MULTILINE_TEXT)]
    public: bool = Field(default=False, description="May be shown to the reporting citizen.")


class TimelineEntryRead(ReadModel):
    """One entry of an incident's timeline."""

    id: int
    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    actor_kind: str
    actor_id: int | None
    actor_name: str | None
    note: str | None
    data: dict[str, Any]


class CommentRead(ReadModel):
    """A comment on an incident."""

    id: int
    author_id: int | None
    author_name: str | None
    body: str
    public: bool
    created_at: datetime


class AttachmentRead(ReadModel):
    """A file attached to an incident."""

    id: int
    file_name: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: int | None
    uploaded_by_name: str | None
    created_at: datetime


class IncidentRead(ReadModel):
    """An incident as lists show it."""

    id: int
    code: str
    title: str
    category_code: str
    sector: str | None
    severity: Severity
    status: IncidentStatus
    source: str
    alert_id: int | None
    source_ref: str | None
    lat: float | None
    lon: float | None
    unit_code: str | None
    department_code: str | None
    supporting_department_codes: list[str]
    assignee_id: int | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    due_ack_at: datetime | None
    due_resolve_at: datetime | None
    ack_breached: bool
    resolve_breached: bool
    escalation_level: int
    overdue: bool = Field(default=False, description="Open and past a deadline, right now.")


class IncidentDetail(IncidentRead):
    """An incident with its description, timeline, comments and attachments."""

    description: str | None
    allowed_transitions: list[IncidentStatus]
    timeline: list[TimelineEntryRead]
    comments: list[CommentRead]
    attachments: list[AttachmentRead]


class IncidentPage(Page[IncidentRead]):
    """A page of incidents."""


# --- SLA report ------------------------------------------------------------------------------


class SlaReportRow(BaseModel):
    """SLA figures of one department or unit over a period.

    A deadline counts as decided once it was met, or once it passed unmet; rates are the share
    of decided deadlines that were met (None when none is decided yet).
    """

    key: str | None
    name: str | None
    total: int
    acknowledged: int
    ack_on_time: int
    ack_on_time_rate: float | None
    resolved: int
    resolved_on_time: int
    overdue_open: int = Field(description="Still open and past the resolution deadline.")
    on_time_rate: float | None
    median_minutes_to_resolve: float | None


class SlaReport(BaseModel):
    """SLA figures per department or unit, for incidents created in a period."""

    group_by: str
    from_date: date
    to_date: date
    rows: list[SlaReportRow]
    overall: SlaReportRow
