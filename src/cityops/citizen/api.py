"""Routes of the citizen context under /api/v1/citizen: the service catalogue (admins), reports
for the staff handling them (with the reporter's contacts, in scope), moderation, and the
reporter's own actions by tracking code (rating, erasure) and the duplicate check.

The Open311 API lives in open311.py.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cityops.citizen import flows, photos, service
from cityops.citizen.enums import Moderation
from cityops.citizen.models import Report
from cityops.citizen.schemas import (
    DuplicateRead,
    ErasureIn,
    LinkIn,
    ModerationIn,
    NoteRead,
    RatingIn,
    ReporterRead,
    ReportRead,
    ServiceCreate,
    ServiceRead,
    ServiceUpdate,
    SubmissionRead,
)
from cityops.citizen.writer import writer_of
from cityops.core.deps import ClockDep, Limit, Offset, RuntimeDep, SessionDep, runtime_of
from cityops.core.errors import BadRequest, Invalid, NotFound, request_language
from cityops.core.runtime import Runtime
from cityops.core.security import Permission, Principal, require
from cityops.incidents import files as incident_files
from cityops.incidents import service as incident_service
from cityops.units import service as unit_service

router = APIRouter(prefix="/citizen", tags=["citizen reports"])

Admin = Annotated[Principal, Depends(require(Permission.CITIZEN_ADMIN))]
Handler = Annotated[Principal, Depends(require(Permission.CITIZEN_HANDLE))]
Moderator = Annotated[Principal, Depends(require(Permission.CITIZEN_MODERATE))]
ServicePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
CodePath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$")]


def _check_refs(session: Session, department: str | None, category: str | None) -> None:
    errors = []
    if department is not None and (
        unit_service.get_department(session=session, department_code=department) is None
    ):
        errors.append(
            {
                "field": "department_code",
                "in": "body",
                "key": "citizen.department.unknown",
                "params": {"code": department},
            }
        )
    if category is not None and (
        incident_service.get_category(session=session, category_code=category) is None
    ):
        errors.append(
            {
                "field": "incident_category",
                "in": "body",
                "key": "citizen.category.unknown",
                "params": {"code": category},
            }
        )
    if errors:
        raise Invalid("citizen.invalid", errors=errors, count=len(errors))


def _attributes(items: list[Any]) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items]


@router.get("/services", response_model=list[ServiceRead], summary="List the service catalogue")
def list_services(session: SessionDep, _principal: Admin) -> list[Any]:
    """List every service, retired ones included."""
    return service.get_all_services(session=session)


@router.post("/services", response_model=ServiceRead, status_code=201, summary="Add a service")
def create_service(
    session: SessionDep, clock: ClockDep, _principal: Admin, service_in: ServiceCreate
) -> Any:
    """Add a service citizens can report under."""
    _check_refs(session, service_in.department_code, service_in.incident_category)
    fields = service_in.model_dump()
    fields["attributes"] = _attributes(service_in.attributes)
    return service.create_service(session=session, service_in=fields, clock=clock)


@router.get("/services/{code}", response_model=ServiceRead, summary="Read a service")
def read_service(session: SessionDep, _principal: Admin, code: ServicePath) -> Any:
    """Return one service."""
    return service.get_service_or_raise(session=session, service_code=code)


@router.patch("/services/{code}", response_model=ServiceRead, summary="Change a service")
def update_service(
    session: SessionDep,
    clock: ClockDep,
    _principal: Admin,
    code: ServicePath,
    service_in: ServiceUpdate,
) -> Any:
    """Change a service (retire it with is_active=false)."""
    row = service.get_service_or_raise(session=session, service_code=code)
    _check_refs(session, service_in.department_code, service_in.incident_category)
    changes = service_in.model_dump(exclude_unset=True)
    for name in (
        "name",
        "name_en",
        "group",
        "group_en",
        "department_code",
        "incident_category",
        "severity",
        "sla_hours",
        "is_active",
        "position",
        "attributes",
    ):
        if name in changes and changes[name] is None:
            raise Invalid(
                "citizen.invalid",
                errors=[
                    {"field": name, "in": "body", "key": "citizen.field.required", "params": {}}
                ],
                count=1,
            )
    if service_in.attributes is not None:
        changes["attributes"] = _attributes(service_in.attributes)
    return service.update_service(session=session, service=row, changes=changes, clock=clock)


@router.delete(
    "/services/{code}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete an unused service",
)
def delete_service(session: SessionDep, _principal: Admin, code: ServicePath) -> Response:
    """Delete a service nobody reported under (retire it otherwise)."""
    row = service.get_service_or_raise(session=session, service_code=code)
    service.delete_service(session=session, service=row)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- staff -----------------------------------------------------------------------------------


def _in_scope(principal: Principal, report: Report) -> bool:
    return principal.scope.covers(
        unit_code=report.unit_code, department_code=report.department_code
    )


def _read(runtime: Runtime, session: Session, report: Report, *, with_reporter: bool) -> ReportRead:
    out = ReportRead.model_validate(report)
    notes = service.get_notes(session=session, report_ids=[report.id])[report.id]
    out.notes = [NoteRead.model_validate(n) for n in notes]
    if with_reporter:
        reporter = service.get_reporter(session=session, report_id=report.id)
        out.reporter = ReporterRead.model_validate(reporter) if reporter else None
    out.photo_urls = [
        flows.photo_url(runtime.settings, report.tracking_code, p.position)
        for p in service.get_photos(session=session, report_id=report.id)
    ]
    return out


@router.get("/reports/{code}", response_model=ReportRead, summary="Read a report (staff)")
def read_report(
    session: SessionDep, runtime: RuntimeDep, principal: Handler, code: CodePath
) -> ReportRead:
    """Return a report in scope, with its reporter's contacts for those handling the case."""
    report = service.get_by_code(session=session, tracking_code=code)
    if report is None or not _in_scope(principal, report):
        raise NotFound("citizen.report.not_found", code=code)
    return _read(runtime, session, report, with_reporter=True)


@router.get("/moderation", response_model=list[ReportRead], summary="Flagged reports")
def moderation_queue(
    session: SessionDep,
    runtime: RuntimeDep,
    _principal: Moderator,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[ReportRead]:
    """List reports waiting for a moderator, oldest first."""
    rows = service.get_pending_moderation(session=session, limit=limit, offset=offset)
    return [_read(runtime, session, r, with_reporter=False) for r in rows]


@router.post(
    "/reports/{code}/moderation", response_model=ReportRead, summary="Approve or hide a report"
)
def moderate(
    session: SessionDep,
    runtime: RuntimeDep,
    _principal: Moderator,
    code: CodePath,
    decision: ModerationIn,
) -> ReportRead:
    """Approve a flagged report (its incident opens) or hide it."""
    report = service.get_by_code_or_raise(session=session, tracking_code=code)
    flows.moderate(
        runtime=runtime, session=session, report=report, approve=decision.decision == "approve"
    )
    return _read(runtime, session, report, with_reporter=False)


# --- the reporter (by tracking code) and the public ------------------------------------------


@router.post(
    "/reports/{code}/rating",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Rate a resolved report",
)
def rate_report(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    code: CodePath,
    rating: RatingIn,
) -> Response:
    """Record whether the reporter is satisfied with the result (once, after closing; with the
    reporter key from the tracking link they were given)."""
    flows.check_rate(runtime, f"ip:{request.client.host if request.client else '-'}")
    report = service.get_by_code_or_raise(session=session, tracking_code=code)
    flows.rate(
        runtime=runtime,
        session=session,
        report=report,
        satisfied=rating.satisfied,
        comment=rating.comment,
        key=rating.key,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/reports/{code}/erasure",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Erase my personal data",
)
def erase(
    request: Request, session: SessionDep, runtime: RuntimeDep, code: CodePath, body: ErasureIn
) -> Response:
    """Erase the reporter's contacts and photos, given the tracking code and their e-mail or
    phone, or the key of their tracking link."""
    flows.check_rate(runtime, f"ip:{request.client.host if request.client else '-'}")
    flows.request_erasure(
        runtime=runtime, session=session, tracking_code=code, contact=body.contact, key=body.key
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/duplicates", response_model=list[DuplicateRead], summary="Open reports near a point")
def duplicates(
    session: SessionDep,
    runtime: RuntimeDep,
    service_code: Annotated[str, Query(max_length=32)],
    lat: Annotated[float, Query(ge=-90, le=90)],
    lon: Annotated[float, Query(ge=-180, le=180)],
) -> list[DuplicateRead]:
    """Offer the open reports of a service within 50 m from the last 7 days (no personal data)."""
    if service_code not in service.get_service_terms(session=session, reference=runtime.reference):
        # No such service, no reports of it: answered without a query. (A NUL never gets here:
        # `core.deps.refuse_nul` refuses it for every route.)
        return []
    rows = service.find_duplicates(
        session=session,
        service_code=service_code,
        lat=lat,
        lon=lon,
        since=runtime.clock.now() - flows.DUPLICATE_WINDOW,
        radius_m=flows.DUPLICATE_RADIUS_M,
    )
    return [
        DuplicateRead(
            tracking_code=r.tracking_code,
            service_code=r.service_code,
            description=r.description,
            lat=r.lat,
            lon=r.lon,
            requested_at=r.requested_at,
            distance_m=round(service.distance_m(lat, lon, r.lat or 0.0, r.lon or 0.0), 1),
        )
        for r in rows
    ]


@router.post(
    "/reports/{code}/link",
    response_model=ReportRead,
    summary="Link a report to a duplicate's incident",
)
def link_report(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Handler,
    code: CodePath,
    link: LinkIn,
) -> ReportRead:
    """Make a report share another report's incident; both reporters then get its updates."""
    report = service.get_by_code(session=session, tracking_code=code)
    if report is None or not _in_scope(principal, report):
        raise NotFound("citizen.report.not_found", code=code)
    original = service.get_by_code(session=session, tracking_code=link.duplicate_of)
    if original is None or not _in_scope(principal, original):
        raise Invalid(
            "citizen.invalid",
            errors=[
                {
                    "field": "duplicate_of",
                    "in": "body",
                    "key": "citizen.report.not_found",
                    "params": {"code": link.duplicate_of},
                }
            ],
            count=1,
        )
    flows.link_duplicate(runtime=runtime, session=session, report=report, original=original)
    return _read(runtime, session, report, with_reporter=True)


# --- the public page: a report with photos, and the photos ------------------------------------

# Form fields besides the photos (description, attributes, contacts) never need more than this.
FORM_OVERHEAD = 64 * 1024
PositionPath = Annotated[int, Path(ge=1, le=photos.MAX_PHOTOS)]


@dataclass(frozen=True, slots=True)
class PublicForm:
    """A report sent from the public page: its text fields and the photos' bytes."""

    fields: dict[str, list[str]]
    uploads: list[bytes]


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise incident_files.too_large(limit)
        yield chunk


def _photo_field(key: str, **params: Any) -> Invalid:
    error = {"field": "photos", "in": "body", "key": key, "params": params}
    return Invalid("citizen.invalid", errors=[error], count=1)


async def read_public_form(request: Request) -> PublicForm:
    """Read the multipart form of the public page, refusing bodies over the size limit early."""
    per_photo = runtime_of(request).settings.citizen_photo_max_bytes
    limit = photos.MAX_PHOTOS * per_photo + FORM_OVERHEAD
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise incident_files.UnsupportedMediaType("citizen.photo.multipart_required")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise incident_files.too_large(limit)
    try:
        parser = MultiPartParser(
            request.headers,
            _limited(request.stream(), limit),
            max_files=photos.MAX_PHOTOS,
            max_fields=60,
            max_part_size=FORM_OVERHEAD,
        )
        form = await parser.parse()
    except MultiPartException as exc:
        if "files" in str(exc).lower():
            raise _photo_field("citizen.photo.too_many", limit=photos.MAX_PHOTOS) from None
        raise BadRequest("citizen.form.bad", reason=str(exc)[:200]) from None
    try:
        fields: dict[str, list[str]] = {}
        uploads: list[bytes] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "photos":
                    continue
                content = await value.read(per_photo + 1)
                # A file input left empty still sends a part with no name and no bytes.
                if content or value.filename:
                    uploads.append(content)
            else:
                fields.setdefault(key, []).append(value)
        return PublicForm(fields=fields, uploads=uploads)
    finally:
        await form.close()


PUBLIC_FORM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["service_code"],
                    "properties": {
                        "service_code": {"type": "string", "maxLength": 32},
                        "lat": {"type": "string", "maxLength": 32},
                        "long": {"type": "string", "maxLength": 32},
                        "address_string": {"type": "string", "maxLength": 500},
                        "description": {"type": "string", "maxLength": 4000},
                        "first_name": {"type": "string", "maxLength": 100},
                        "last_name": {"type": "string", "maxLength": 100},
                        "email": {"type": "string", "maxLength": 254},
                        "phone": {"type": "string", "maxLength": 32},
                        "duplicate_of": {"type": "string", "maxLength": 40},
                        "consent": {"type": "string", "enum": ["true", "false"]},
                        "photos": {
                            "type": "array",
                            "maxItems": photos.MAX_PHOTOS,
                            "items": {"type": "string", "format": "binary"},
                            "description": "JPEG, PNG or WebP; metadata removed when stored.",
                        },
                    },
                }
            }
        },
    }
}


# A plain function: FastAPI runs it in a worker thread (SQLite's write lock, Pillow's work).
@router.post(
    "/submissions",
    response_model=SubmissionRead,
    status_code=status.HTTP_201_CREATED,
    summary="Send a report from the public page (photos included)",
    openapi_extra=PUBLIC_FORM_BODY,
)
def submit_public(
    request: Request,
    runtime: RuntimeDep,
    form: Annotated[PublicForm, Depends(read_public_form)],
) -> SubmissionRead:
    """Take in a citizen's report with up to three photos; answer with its tracking code."""
    flows.check_rate(runtime, f"ip:{request.client.host if request.client else '-'}")
    values = {k: v for k, v in form.fields.items() if k not in ("consent", "api_key")}
    consent = (form.fields.get("consent") or ["false"])[-1] == "true"
    sub = flows.submission_from_form(values)
    language = request_language(request)

    with runtime.session_factory() as session:
        plan, cleaned = flows.plan_public(
            runtime=runtime,
            session=session,
            sub=sub,
            uploads=form.uploads,
            language=language,
            consent=consent,
        )
    plan.request = request

    def finish(session: Session, created: flows.Created) -> SubmissionRead:
        report = created.report
        if cleaned:
            flows.add_photos(runtime=runtime, session=session, report=report, cleaned=cleaned)
        original = (
            service.get(session=session, report_id=report.duplicate_of)
            if report.duplicate_of is not None
            else None
        )
        return SubmissionRead(
            tracking_code=report.tracking_code,
            status=report.status,
            moderation=report.moderation,
            unit_code=report.unit_code,
            department_code=report.department_code,
            duplicate_of=original.tracking_code if original is not None else None,
            notice=created.notice,
            photos=len(service.get_photos(session=session, report_id=report.id)),
            # The reporter's own link: it carries the key that lets them rate the result.
            tracking_url=f"/public/reports/{report.tracking_code}?key={report.token}",
        )

    # Written with the reports that arrive meanwhile, in one transaction (citizen.writer).
    result: SubmissionRead = writer_of(runtime).run(plan, finish=finish)
    return result


@router.get(
    "/reports/{code}/photos/{position}",
    response_class=FileResponse,
    summary="A report's photo (no metadata)",
    responses={200: {"content": {t: {} for t in photos.ALLOWED_TYPES}}},
)
def report_photo(
    session: SessionDep, runtime: RuntimeDep, code: CodePath, position: PositionPath
) -> FileResponse:
    """Serve a photo of a public report, as re-encoded without metadata when it came in."""
    report = service.get_by_code(session=session, tracking_code=code)
    if report is None or report.moderation == Moderation.HIDDEN:
        raise NotFound("citizen.report.not_found", code=code)
    photo = service.get_photo(session=session, report_id=report.id, position=position)
    if photo is None:
        raise NotFound("citizen.photo.not_found", number=position)
    path = incident_files.path_of(runtime.settings.data_dir, photo.sha256)
    if not path.is_file():
        raise NotFound("citizen.photo.not_found", number=position)
    return FileResponse(
        path,
        media_type=photo.content_type,
        filename=f"{report.tracking_code}-{position}.{photos.EXTENSIONS[photo.content_type]}",
        content_disposition_type="inline",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "public, max-age=3600",
        },
    )
