"""Routes of the citizen context under /api/v1/citizen: the service catalogue (admins), reports
for the staff handling them (with the reporter's contacts, in scope), moderation, and the
reporter's own actions by tracking code (rating, erasure) and the duplicate check.

The Open311 API lives in open311.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlalchemy.orm import Session

from cityops.citizen import flows, service
from cityops.citizen.models import Report
from cityops.citizen.schemas import (
    DuplicateRead,
    ErasureIn,
    ModerationIn,
    NoteRead,
    RatingIn,
    ReporterRead,
    ReportRead,
    ServiceCreate,
    ServiceRead,
    ServiceUpdate,
)
from cityops.core.deps import ClockDep, Limit, Offset, RuntimeDep, SessionDep
from cityops.core.errors import Invalid, NotFound
from cityops.core.security import Permission, Principal, require
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


def _read(session: Session, report: Report, *, with_reporter: bool) -> ReportRead:
    out = ReportRead.model_validate(report)
    notes = service.get_notes(session=session, report_ids=[report.id])[report.id]
    out.notes = [NoteRead.model_validate(n) for n in notes]
    if with_reporter:
        reporter = service.get_reporter(session=session, report_id=report.id)
        out.reporter = ReporterRead.model_validate(reporter) if reporter else None
    return out


@router.get("/reports/{code}", response_model=ReportRead, summary="Read a report (staff)")
def read_report(session: SessionDep, principal: Handler, code: CodePath) -> ReportRead:
    """Return a report in scope, with its reporter's contacts for those handling the case."""
    report = service.get_by_code(session=session, tracking_code=code)
    if report is None or not _in_scope(principal, report):
        raise NotFound("citizen.report.not_found", code=code)
    return _read(session, report, with_reporter=True)


@router.get("/moderation", response_model=list[ReportRead], summary="Flagged reports")
def moderation_queue(
    session: SessionDep, _principal: Moderator, limit: Limit = 50, offset: Offset = 0
) -> list[ReportRead]:
    """List reports waiting for a moderator, oldest first."""
    rows = service.get_pending_moderation(session=session, limit=limit, offset=offset)
    return [_read(session, r, with_reporter=False) for r in rows]


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
    return _read(session, report, with_reporter=False)


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
    """Record whether the reporter is satisfied with the result (once, after closing)."""
    flows.check_rate(runtime, f"ip:{request.client.host if request.client else '-'}")
    report = service.get_by_code_or_raise(session=session, tracking_code=code)
    flows.rate(
        runtime=runtime,
        session=session,
        report=report,
        satisfied=rating.satisfied,
        comment=rating.comment,
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
    """Erase the reporter's name and contacts, given the tracking code and their e-mail or phone."""
    flows.check_rate(runtime, f"ip:{request.client.host if request.client else '-'}")
    flows.request_erasure(
        runtime=runtime, session=session, tracking_code=code, contact=body.contact
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
