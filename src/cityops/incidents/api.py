"""Routes of the incidents context: incidents and their workflow, comments and attachments, the
SLA report, and the reference data behind SLAs (categories, policies, holidays).

Every incident route applies the caller's scope: an incident outside it answers 404.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cityops.core.deps import (
    MAX_ID,
    ClockDep,
    Limit,
    Offset,
    RuntimeDep,
    SessionDep,
    runtime_of,
)
from cityops.core.errors import BadRequest, Invalid, NotFound
from cityops.core.schemas import FIRST_DAY, LAST_DAY, SINGLE_LINE
from cityops.core.security import Permission, Principal, require
from cityops.incidents import files, flows, service
from cityops.incidents.enums import IncidentSource, IncidentStatus, Severity
from cityops.incidents.models import Incident
from cityops.incidents.schemas import (
    AssignIn,
    AttachmentRead,
    CategoryCreate,
    CategoryPage,
    CategoryRead,
    CategoryUpdate,
    CommentCreate,
    CommentRead,
    HolidayCreate,
    HolidayPage,
    HolidayRead,
    HolidayUpdate,
    IncidentCreate,
    IncidentDetail,
    IncidentPage,
    IncidentRead,
    IncidentUpdate,
    SlaPolicyCreate,
    SlaPolicyPage,
    SlaPolicyRead,
    SlaPolicyUpdate,
    SlaReport,
    SlaReportRow,
    TimelineEntryRead,
    TransitionIn,
)
from cityops.incidents.service import field_error
from cityops.units import service as unit_service

router = APIRouter(prefix="/incidents")

Reader = Annotated[Principal, Depends(require(Permission.INCIDENT_READ))]
Creator = Annotated[Principal, Depends(require(Permission.INCIDENT_CREATE))]
Admin = Annotated[Principal, Depends(require(Permission.INCIDENT_ADMIN))]

IncidentId = Annotated[int, Path(ge=1, le=MAX_ID)]
AttachmentId = Annotated[int, Path(ge=1, le=MAX_ID)]
PolicyId = Annotated[int, Path(ge=1, le=MAX_ID)]
CategoryPath = Annotated[str, Path(max_length=32, pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Code = Annotated[str | None, Query(max_length=32, pattern=SINGLE_LINE)]
Sort = Literal[
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "due_resolve_at",
    "-due_resolve_at",
    "severity",
    "-severity",
    "code",
    "-code",
]
# Form fields besides the file, and the multipart framing, never need more than this.
FORM_OVERHEAD = 64 * 1024
# The first and last years a date filter or report may name.
MIN_YEAR, MAX_YEAR = FIRST_DAY.year, LAST_DAY.year
NO_SNIFF = {"X-Content-Type-Options": "nosniff"}


def _read(incident: Incident, now: datetime) -> IncidentRead:
    read = IncidentRead.model_validate(incident)
    read.overdue = service.is_overdue(incident, now)
    return read


def _detail(session: SessionDep, incident: Incident, now: datetime) -> IncidentDetail:
    return IncidentDetail(
        **_read(incident, now).model_dump(),
        description=incident.description,
        allowed_transitions=flows.allowed_next(incident),
        timeline=[
            TimelineEntryRead.model_validate(e)
            for e in service.get_timeline(session=session, incident_id=incident.id)
        ],
        comments=[
            CommentRead.model_validate(c)
            for c in service.get_comments(session=session, incident_id=incident.id)
        ],
        attachments=[
            AttachmentRead.model_validate(a)
            for a in service.get_attachments(session=session, incident_id=incident.id)
        ],
    )


def _instant(value: datetime | None, field: str, zone: ZoneInfo) -> datetime | None:
    """A query instant, tz-aware (a time without a zone is the province's local time)."""
    if value is None:
        return None
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise Invalid(
            "incidents.invalid",
            errors=[field_error(field, "incidents.period.out_of_range", where="query")],
            count=1,
        )
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


# --- incidents -------------------------------------------------------------------------------


@router.get("", response_model=IncidentPage, tags=["incidents"], summary="List incidents")
def list_incidents(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    status_in: Annotated[
        list[IncidentStatus] | None,
        Query(alias="status", description="One or more statuses (repeat the parameter)."),
    ] = None,
    unit_code: Annotated[
        str | None,
        Query(max_length=16, pattern=SINGLE_LINE, description="A unit and its subtree."),
    ] = None,
    area_code: Annotated[str | None, Query(max_length=64, pattern=SINGLE_LINE)] = None,
    department_code: Annotated[
        str | None,
        Query(max_length=32, pattern=SINGLE_LINE, description="Main or supporting department."),
    ] = None,
    sector: Code = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    category_code: Code = None,
    source: IncidentSource | None = None,
    created_from: Annotated[
        datetime | None, Query(description="Created at or after (ISO 8601; local if no zone).")
    ] = None,
    created_to: Annotated[datetime | None, Query(description="Created before (exclusive).")] = None,
    overdue: Annotated[
        bool | None, Query(description="Open and past a deadline (or, false: not).")
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=SINGLE_LINE, description="Code, or words of the title."),
    ] = None,
    sort: Sort = "-created_at",
    limit: Limit = 50,
    offset: Offset = 0,
) -> IncidentPage:
    """List the incidents in the caller's scope, filtered, sorted and paged."""
    zone = ZoneInfo(runtime.settings.timezone)
    unit_codes: frozenset[str] | None = None
    if unit_code is not None:
        unit_codes = unit_service.get_subtree_codes(session=session, unit_code=unit_code)
        if not unit_codes:
            raise Invalid(
                "incidents.invalid",
                errors=[
                    field_error(
                        "unit_code", "incidents.unit.unknown", where="query", code=unit_code
                    )
                ],
                count=1,
            )
    if area_code is not None:
        members = unit_service.get_area_unit_codes(session=session, area_code=area_code)
        if members is None:
            raise Invalid(
                "incidents.invalid",
                errors=[
                    field_error(
                        "area_code", "incidents.area.unknown", where="query", code=area_code
                    )
                ],
                count=1,
            )
        unit_codes = members if unit_codes is None else unit_codes & members
    if (
        department_code is not None
        and unit_service.get_department(session=session, department_code=department_code) is None
    ):
        raise Invalid(
            "incidents.invalid",
            errors=[
                field_error(
                    "department_code",
                    "incidents.department.unknown",
                    where="query",
                    code=department_code,
                )
            ],
            count=1,
        )
    now = runtime.clock.now()
    rows, total = service.get_all(
        session=session,
        scope=principal.scope,
        now=now,
        statuses=[str(s) for s in status_in] if status_in else None,
        unit_codes=unit_codes,
        department_code=department_code,
        sector=sector,
        severities=[str(s) for s in severity] if severity else None,
        category_code=category_code,
        source=str(source) if source else None,
        created_from=_instant(created_from, "created_from", zone),
        created_to=_instant(created_to, "created_to", zone),
        overdue=overdue,
        q=q,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    return IncidentPage(
        items=[IncidentRead.model_validate(row) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "",
    response_model=IncidentDetail,
    status_code=status.HTTP_201_CREATED,
    tags=["incidents"],
    summary="Open an incident (by hand, or for an alert)",
)
def create_incident(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Creator,
    incident_in: IncidentCreate,
    request: Request,
    response: Response,
) -> IncidentDetail:
    """Open an incident; department and severity default to the category's, the unit to the
    commune or ward containing the point."""
    incident = flows.create_incident(
        runtime=runtime, session=session, principal=principal, incident_in=incident_in
    )
    response.headers["Location"] = str(
        request.url_for("get_incident", incident_id=str(incident.id))
    )
    return _detail(session, incident, runtime.clock.now())


# --- SLA report ------------------------------------------------------------------------------


@router.get(
    "/sla-report",
    response_model=SlaReport,
    tags=["incidents"],
    summary="SLA figures per department or unit over a period",
)
def sla_report(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    group_by: Literal["department", "unit"] = "department",
    from_date: Annotated[
        date | None,
        Query(
            alias="from",
            description="First day (default: 29 days ago).",
            ge=FIRST_DAY,
            le=LAST_DAY,
        ),
    ] = None,
    to_date: Annotated[
        date | None,
        Query(alias="to", description="Last day (default: today).", ge=FIRST_DAY, le=LAST_DAY),
    ] = None,
) -> SlaReport:
    """Return, for incidents created in the period and in scope, per main department or unit:
    totals, on-time rates of acknowledgement and resolution, and the median time to resolve."""
    zone = ZoneInfo(runtime.settings.timezone)
    now = runtime.clock.now()
    last = to_date or now.astimezone(zone).date()
    first = from_date or last - timedelta(days=29)
    errors = [
        field_error(name, "incidents.period.out_of_range", where="query")
        for name, value in (("from", first), ("to", last))
        if not MIN_YEAR <= value.year <= MAX_YEAR
    ]
    if not errors and first > last:
        errors.append(field_error("from", "incidents.period.reversed", where="query"))
    if errors:
        raise Invalid("incidents.invalid", errors=errors, count=len(errors))
    rows, overall = service.sla_report(
        session=session,
        scope=principal.scope,
        group_by=group_by,
        start=datetime.combine(first, time(0), tzinfo=zone),
        end=datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone),
        now=now,
    )
    return SlaReport(
        group_by=group_by,
        from_date=first,
        to_date=last,
        rows=[SlaReportRow(**row) for row in rows],
        overall=SlaReportRow(**overall),
    )


# --- categories ------------------------------------------------------------------------------


@router.get(
    "/categories", response_model=CategoryPage, tags=["incident settings"], summary="Categories"
)
def list_categories(
    session: SessionDep,
    _principal: Reader,
    active: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> CategoryPage:
    """List incident categories (optionally only active or retired ones)."""
    rows, total = service.get_all_categories(
        session=session, active=active, limit=limit, offset=offset
    )
    return CategoryPage(
        items=[CategoryRead.model_validate(c) for c in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/categories",
    response_model=CategoryRead,
    status_code=status.HTTP_201_CREATED,
    tags=["incident settings"],
    summary="Create a category",
)
def create_category(
    session: SessionDep, clock: ClockDep, _principal: Admin, category_in: CategoryCreate
) -> CategoryRead:
    """Create an incident category."""
    category = service.create_category(session=session, category_in=category_in, clock=clock)
    return CategoryRead.model_validate(category)


@router.get(
    "/categories/{code}",
    response_model=CategoryRead,
    tags=["incident settings"],
    summary="One category",
)
def get_category(session: SessionDep, _principal: Reader, code: CategoryPath) -> CategoryRead:
    """Return an incident category."""
    return CategoryRead.model_validate(
        service.get_category_or_raise(session=session, category_code=code)
    )


@router.patch(
    "/categories/{code}",
    response_model=CategoryRead,
    tags=["incident settings"],
    summary="Edit a category",
)
def update_category(
    session: SessionDep,
    clock: ClockDep,
    _principal: Admin,
    code: CategoryPath,
    category_in: CategoryUpdate,
) -> CategoryRead:
    """Edit a category's names, sector, default department or severity, or retire it."""
    category = service.get_category_or_raise(session=session, category_code=code)
    service.update_category(
        session=session, category=category, category_in=category_in, clock=clock
    )
    return CategoryRead.model_validate(category)


@router.delete(
    "/categories/{code}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["incident settings"],
    summary="Delete an unused category",
)
def delete_category(session: SessionDep, _principal: Admin, code: CategoryPath) -> Response:
    """Delete a category no incident uses (retire it with is_active=false otherwise)."""
    category = service.get_category_or_raise(session=session, category_code=code)
    service.delete_category(session=session, category=category)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- SLA policies ----------------------------------------------------------------------------


@router.get(
    "/sla-policies",
    response_model=SlaPolicyPage,
    tags=["incident settings"],
    summary="SLA policies",
)
def list_policies(
    session: SessionDep,
    _principal: Reader,
    category_code: Code = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> SlaPolicyPage:
    """List SLA policies: the defaults per severity, then per category."""
    rows, total = service.get_all_policies(
        session=session, category_code=category_code, limit=limit, offset=offset
    )
    return SlaPolicyPage(
        items=[SlaPolicyRead.model_validate(p) for p in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/sla-policies",
    response_model=SlaPolicyRead,
    status_code=status.HTTP_201_CREATED,
    tags=["incident settings"],
    summary="Create an SLA policy",
)
def create_policy(
    session: SessionDep, clock: ClockDep, _principal: Admin, policy_in: SlaPolicyCreate
) -> SlaPolicyRead:
    """Create the SLA policy of a category (or the default) at one severity."""
    return SlaPolicyRead.model_validate(
        service.create_policy(session=session, policy_in=policy_in, clock=clock)
    )


@router.get(
    "/sla-policies/{policy_id}",
    response_model=SlaPolicyRead,
    tags=["incident settings"],
    summary="One SLA policy",
)
def get_policy(session: SessionDep, _principal: Reader, policy_id: PolicyId) -> SlaPolicyRead:
    """Return an SLA policy."""
    return SlaPolicyRead.model_validate(
        service.get_policy_or_raise(session=session, policy_id=policy_id)
    )


@router.patch(
    "/sla-policies/{policy_id}",
    response_model=SlaPolicyRead,
    tags=["incident settings"],
    summary="Edit an SLA policy",
)
def update_policy(
    session: SessionDep,
    clock: ClockDep,
    _principal: Admin,
    policy_id: PolicyId,
    policy_in: SlaPolicyUpdate,
) -> SlaPolicyRead:
    """Change an SLA policy (incidents opened from now on get the new deadlines)."""
    policy = service.get_policy_or_raise(session=session, policy_id=policy_id)
    service.update_policy(session=session, policy=policy, policy_in=policy_in, clock=clock)
    return SlaPolicyRead.model_validate(policy)


@router.delete(
    "/sla-policies/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["incident settings"],
    summary="Delete an SLA policy",
)
def delete_policy(session: SessionDep, _principal: Admin, policy_id: PolicyId) -> Response:
    """Delete an SLA policy."""
    policy = service.get_policy_or_raise(session=session, policy_id=policy_id)
    service.delete_policy(session=session, policy=policy)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- holidays --------------------------------------------------------------------------------


@router.get(
    "/holidays",
    response_model=HolidayPage,
    tags=["incident settings"],
    summary="Public holidays and make-up working days",
)
def list_holidays(
    session: SessionDep,
    _principal: Reader,
    year: Annotated[int | None, Query(ge=MIN_YEAR, le=MAX_YEAR)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> HolidayPage:
    """List the calendar's days off and make-up working days, in date order."""
    rows, total = service.get_all_holidays(session=session, year=year, limit=limit, offset=offset)
    return HolidayPage(
        items=[HolidayRead.model_validate(h) for h in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/holidays",
    response_model=HolidayRead,
    status_code=status.HTTP_201_CREATED,
    tags=["incident settings"],
    summary="Add a day off or a make-up working day",
)
def create_holiday(
    session: SessionDep, clock: ClockDep, _principal: Admin, holiday_in: HolidayCreate
) -> HolidayRead:
    """Add a day to the calendar (deadlines computed from now on take it into account)."""
    return HolidayRead.model_validate(
        service.create_holiday(session=session, holiday_in=holiday_in, clock=clock)
    )


@router.get(
    "/holidays/{day}",
    response_model=HolidayRead,
    tags=["incident settings"],
    summary="One calendar day",
)
def get_holiday(session: SessionDep, _principal: Reader, day: date) -> HolidayRead:
    """Return the calendar exception of a date."""
    return HolidayRead.model_validate(service.get_holiday_or_raise(session=session, day=day))


@router.patch(
    "/holidays/{day}",
    response_model=HolidayRead,
    tags=["incident settings"],
    summary="Edit a calendar day",
)
def update_holiday(
    session: SessionDep, clock: ClockDep, _principal: Admin, day: date, holiday_in: HolidayUpdate
) -> HolidayRead:
    """Rename a calendar exception or change its kind."""
    holiday = service.get_holiday_or_raise(session=session, day=day)
    service.update_holiday(session=session, holiday=holiday, holiday_in=holiday_in, clock=clock)
    return HolidayRead.model_validate(holiday)


@router.delete(
    "/holidays/{day}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["incident settings"],
    summary="Remove a calendar day",
)
def delete_holiday(session: SessionDep, _principal: Admin, day: date) -> Response:
    """Remove a calendar exception."""
    holiday = service.get_holiday_or_raise(session=session, day=day)
    service.delete_holiday(session=session, holiday=holiday)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- one incident ----------------------------------------------------------------------------


@router.get(
    "/{incident_id}", response_model=IncidentDetail, tags=["incidents"], summary="One incident"
)
def get_incident(
    session: SessionDep, runtime: RuntimeDep, principal: Reader, incident_id: IncidentId
) -> IncidentDetail:
    """Return an incident with its departments, timeline, comments and attachments."""
    incident = service.get_visible_or_raise(
        session=session, principal=principal, incident_id=incident_id
    )
    return _detail(session, incident, runtime.clock.now())


@router.patch(
    "/{incident_id}", response_model=IncidentDetail, tags=["incidents"], summary="Edit an incident"
)
def update_incident(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    incident_id: IncidentId,
    incident_in: IncidentUpdate,
) -> IncidentDetail:
    """Edit an open incident: title and description (incident:work), severity and category
    (incident:assign; the deadlines follow)."""
    incident = service.get_visible_or_raise(
        session=session, principal=principal, incident_id=incident_id
    )
    flows.update_incident(
        runtime=runtime,
        session=session,
        principal=principal,
        incident=incident,
        incident_in=incident_in,
    )
    return _detail(session, incident, runtime.clock.now())


@router.post(
    "/{incident_id}/assign",
    response_model=IncidentDetail,
    tags=["incidents"],
    summary="Assign departments and an assignee",
)
def assign_incident(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    incident_id: IncidentId,
    assign_in: AssignIn,
) -> IncidentDetail:
    """Set the main department, supporting departments and assignee (incident:assign)."""
    incident = service.get_visible_or_raise(
        session=session, principal=principal, incident_id=incident_id
    )
    flows.assign(
        runtime=runtime,
        session=session,
        principal=principal,
        incident=incident,
        assign_in=assign_in,
    )
    return _detail(session, incident, runtime.clock.now())


@router.post(
    "/{incident_id}/transition",
    response_model=IncidentDetail,
    tags=["incidents"],
    summary="Move an incident along its workflow",
)
def transition_incident(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    incident_id: IncidentId,
    transition_in: TransitionIn,
) -> IncidentDetail:
    """new → assigned → in_progress → resolved (note) → closed; resolved or closed →
    in_progress reopens (reason). 409 names the allowed next statuses."""
    incident = service.get_visible_or_raise(
        session=session, principal=principal, incident_id=incident_id
    )
    flows.transition(
        runtime=runtime,
        session=session,
        principal=principal,
        incident=incident,
        to=transition_in.to,
        note=transition_in.note,
    )
    return _detail(session, incident, runtime.clock.now())


@router.post(
    "/{incident_id}/comments",
    response_model=CommentRead,
    status_code=status.HTTP_201_CREATED,
    tags=["incidents"],
    summary="Comment on an incident",
)
def comment_incident(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    incident_id: IncidentId,
    comment_in: CommentCreate,
) -> CommentRead:
    """Add a comment (public comments may be shown to the reporting citizen)."""
    incident = service.get_visible_or_raise(
        session=session, principal=principal, incident_id=incident_id
    )
    comment = flows.add_comment(
        runtime=runtime,
        session=session,
        principal=principal,
        incident=incident,
        body=comment_in.body,
        public=comment_in.public,
    )
    return CommentRead.model_validate(comment)


@dataclass(frozen=True, slots=True)
class Upload:
    """A file received in a multipart form."""

    file_name: str | None
    content: bytes


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise files.too_large(limit)
        yield chunk


async def read_upload(request: Request) -> Upload:
    """Read the `file` field of a multipart form, refusing bodies over the size limit early."""
    limit = runtime_of(request).settings.attachment_max_bytes
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise files.UnsupportedMediaType("incidents.attachment.multipart_required")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + FORM_OVERHEAD:
        raise files.too_large(limit)
    try:
        parser = MultiPartParser(
            request.headers,
            _limited(request.stream(), limit + FORM_OVERHEAD),
            max_files=1,
            max_fields=8,
            max_part_size=FORM_OVERHEAD,
        )
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequest("incidents.attachment.bad_form", reason=str(exc)[:200]) from None
    except RuntimeError:
        # The form was already read (a cookie session's CSRF check): use the parsed copy.
        form = await request.form(max_files=1, max_fields=8, max_part_size=FORM_OVERHEAD)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Invalid(
                "incidents.invalid",
                errors=[field_error("file", "incidents.attachment.missing")],
                count=1,
            )
        content = await upload.read(limit + 1)
        if len(content) > limit:
            raise files.too_large(limit)
        return Upload(file_name=upload.filename, content=content)
    finally:
        await form.close()


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG, PNG, WebP, GIF or PDF (type read from content).",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/{incident_id}/attachments",
    response_model=AttachmentRead,
    status_code=status.HTTP_201_CREATED,
    tags=["incidents"],
    summary="Attach an image or a PDF",
    openapi_extra=UPLOAD_BODY,
)
def attach_file(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    incident_id: IncidentId,
    upload: Annotated[Upload, Depends(read_upload)],
) -> AttachmentRead:
    """Attach a file sent as the `file` field of a multipart form (415 for other types, 413
    above the size limit)."""
    incident = service.get_visible_or_raise(
        session=session, principal=principal, incident_id=incident_id
    )
    attachment = flows.add_attachment(
        runtime=runtime,
        session=session,
        principal=principal,
        incident=incident,
        file_name=upload.file_name,
        content=upload.content,
    )
    return AttachmentRead.model_validate(attachment)


@router.get(
    "/{incident_id}/attachments/{attachment_id}",
    response_class=FileResponse,
    tags=["incidents"],
    summary="Download an attachment",
    responses={200: {"content": {t: {} for t in files.ALLOWED_TYPES}}},
)
def download_attachment(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    incident_id: IncidentId,
    attachment_id: AttachmentId,
) -> FileResponse:
    """Download an attachment (as a file to save, never rendered in place)."""
    service.get_visible_or_raise(session=session, principal=principal, incident_id=incident_id)
    attachment = service.get_attachment(
        session=session, incident_id=incident_id, attachment_id=attachment_id
    )
    if attachment is None:
        raise NotFound("incidents.attachment.not_found", id=attachment_id)
    path = files.path_of(runtime.settings.data_dir, attachment.sha256)
    if not path.is_file():
        raise NotFound("incidents.attachment.file_missing", id=attachment_id)
    return FileResponse(
        path,
        media_type=attachment.content_type,
        filename=attachment.file_name,
        content_disposition_type="attachment",
        headers={
            **NO_SNIFF,
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )
