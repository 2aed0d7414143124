"""Database work of the citizen context: the service catalogue, reports, notes and reporters.

Functions flush, never commit. Public queries read `citizen_report` only: the reporter's personal
data sit in `citizen_reporter` and are read by `get_reporter` alone.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, String, bindparam, case, delete, func, select, type_coerce
from sqlalchemy.orm import Session, load_only

from cityops.citizen.enums import Moderation, NoteKind, ReportStatus
from cityops.citizen.models import CitizenService, Report, Reporter, ReportNote, ReportPhoto
from cityops.core.clock import Clock
from cityops.core.errors import Conflict, NotFound
from cityops.core.refcache import ReferenceCache

# Tracking codes: no 0/O, 1/I/L, so a code read over the phone is typed right.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
EARTH_RADIUS_M = 6_371_000.0
# Reports shown publicly: not waiting for a moderator, not hidden by one.
PUBLIC_MODERATION = (str(Moderation.NONE), str(Moderation.APPROVED))
# At most this many reports of one service in a duplicate search box are read (a box 100 m wide
# holds a handful; the bound only keeps a pathological spot cheap).
DUPLICATE_SCAN_LIMIT = 200


def new_tracking_code() -> str:
    """Return a fresh, unguessable tracking code such as `PA-7KQ2-M9XD`."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"PA-{body[:4]}-{body[4:]}"


def new_token() -> str:
    """Return a fresh Open311 token."""
    return secrets.token_hex(16)


# --- catalogue -------------------------------------------------------------------------------


def get_service(*, session: Session, service_code: str) -> CitizenService | None:
    """Return a service by code, or None."""
    return session.get(CitizenService, service_code)


@dataclass(frozen=True, slots=True)
class ServiceTerms:
    """What taking a report in reads of its service (reference data, not an ORM row)."""

    code: str
    name: str
    is_active: bool
    department_code: str
    incident_category: str
    severity: str
    sla_hours: int
    attributes: tuple[dict[str, Any], ...]


def service_terms(*, session: Session) -> dict[str, ServiceTerms]:
    """Return every service's terms by code."""
    rows = session.execute(
        select(
            CitizenService.code,
            CitizenService.name,
            CitizenService.is_active,
            CitizenService.department_code,
            CitizenService.incident_category,
            CitizenService.severity,
            CitizenService.sla_hours,
            CitizenService.attributes,
        )
    ).all()
    return {
        code: ServiceTerms(code, name, bool(active), dept, category, severity, hours, tuple(attrs))
        for code, name, active, dept, category, severity, hours, attrs in rows
    }


def get_service_terms(*, session: Session, reference: ReferenceCache) -> Mapping[str, ServiceTerms]:
    """Return every service's terms by code, kept until the catalogue changes (the report's
    hot path reads its service's terms on every report)."""
    terms: Mapping[str, ServiceTerms] = reference.get(
        session, "citizen:services", ("citizen_service",), lambda: service_terms(session=session)
    )
    return terms


def get_service_or_raise(*, session: Session, service_code: str) -> CitizenService:
    """Return a service by code, or raise 404."""
    found = get_service(session=session, service_code=service_code)
    if found is None:
        raise NotFound("citizen.service.not_found", code=service_code)
    return found


def get_all_services(*, session: Session, active_only: bool = False) -> list[CitizenService]:
    """Return the catalogue in display order."""
    query = select(CitizenService).order_by(CitizenService.position, CitizenService.code)
    if active_only:
        query = query.where(CitizenService.is_active.is_(True))
    return list(session.scalars(query).all())


def create_service(*, session: Session, service_in: dict[str, Any], clock: Clock) -> CitizenService:
    """Add a service to the catalogue."""
    if get_service(session=session, service_code=service_in["code"]) is not None:
        raise Conflict("citizen.service.exists", code=service_in["code"])
    now = clock.now()
    row = CitizenService(**service_in, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def update_service(
    *, session: Session, service: CitizenService, changes: dict[str, Any], clock: Clock
) -> CitizenService:
    """Change a service's fields."""
    for name, value in changes.items():
        setattr(service, name, value)
    service.updated_at = clock.now()
    session.flush()
    return service


def delete_service(*, session: Session, service: CitizenService) -> None:
    """Remove a service nobody ever reported under (retire it otherwise)."""
    used = session.scalar(select(Report.id).where(Report.service_code == service.code).limit(1))
    if used is not None:
        raise Conflict("citizen.service.in_use", code=service.code)
    session.delete(service)
    session.flush()


# --- reports ---------------------------------------------------------------------------------


@dataclass(slots=True)
class NewReport:
    """Everything needed to insert a report (flows decides the values)."""

    service_code: str
    description: str
    address: str | None
    lat: float | None
    lon: float | None
    media_url: str | None
    attributes: dict[str, Any]
    unit_code: str | None
    department_code: str | None
    client_id: int | None
    moderation: str
    flag_reason: str | None
    requested_at: datetime
    expected_at: datetime | None
    duplicate_of: int | None = None


def new_report(report_in: NewReport) -> Report:
    """Return a new report, open, with a new tracking code and token, not yet in any session."""
    return Report(
        tracking_code=new_tracking_code(),
        token=new_token(),
        service_code=report_in.service_code,
        status=str(ReportStatus.OPEN),
        description=report_in.description,
        address=report_in.address,
        lat=report_in.lat,
        lon=report_in.lon,
        media_url=report_in.media_url,
        attributes=report_in.attributes,
        unit_code=report_in.unit_code,
        department_code=report_in.department_code,
        client_id=report_in.client_id,
        moderation=report_in.moderation,
        flag_reason=report_in.flag_reason,
        requested_at=report_in.requested_at,
        updated_at=report_in.requested_at,
        expected_at=report_in.expected_at,
        duplicate_of=report_in.duplicate_of,
    )


def get(*, session: Session, report_id: int) -> Report | None:
    """Return a report by id, or None."""
    return session.get(Report, report_id)


def get_by_code(*, session: Session, tracking_code: str) -> Report | None:
    """Return a report by its tracking code (the Open311 service_request_id), or None."""
    return session.scalars(
        select(Report).where(Report.tracking_code == tracking_code.strip().upper())
    ).one_or_none()


def get_by_code_or_raise(*, session: Session, tracking_code: str) -> Report:
    """Return a report by tracking code, or raise 404."""
    report = get_by_code(session=session, tracking_code=tracking_code)
    if report is None:
        raise NotFound("citizen.report.not_found", code=tracking_code[:40])
    return report


def get_by_token(*, session: Session, token: str) -> Report | None:
    """Return a report by its Open311 token, or None."""
    return session.scalars(select(Report).where(Report.token == token)).one_or_none()


def get_by_incident(*, session: Session, incident_id: int) -> list[Report]:
    """Return the reports sharing an incident."""
    return list(
        session.scalars(
            select(Report).where(Report.incident_id == incident_id).order_by(Report.id)
        ).all()
    )


def get_by_duplicate(*, session: Session, report_id: int) -> list[Report]:
    """Return the reports linked to a report as its duplicates."""
    return list(
        session.scalars(
            select(Report).where(Report.duplicate_of == report_id).order_by(Report.id)
        ).all()
    )


# In this order: open311.request_shape reads them by position.
PUBLIC_COLUMNS = (
    Report.id,
    Report.tracking_code,
    Report.service_code,
    Report.status,
    Report.status_notes,
    Report.description,
    Report.address,
    Report.lat,
    Report.lon,
    Report.media_url,
    Report.department_code,
    Report.unit_code,
    Report.requested_at,
    Report.updated_at,
    Report.expected_at,
    Report.duplicate_of,
)
_TIMES = {"requested_at", "updated_at", "expected_at"}
# The same columns, the times without UTCDateTime's result processing (String has none).
RAW_TIME_COLUMNS = tuple(
    type_coerce(c, String()).label(c.key) if c.key in _TIMES else c for c in PUBLIC_COLUMNS
)


def get_all_public(
    *,
    session: Session,
    tracking_codes: Sequence[str] = (),
    service_codes: Sequence[str] = (),
    statuses: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    unit_codes: Sequence[str] = (),
    limit: int = 1000,
    offset: int = 0,
    raw_times: bool = False,
) -> list[Row[Any]]:
    """Return public columns of visible reports, newest first (Core rows: the hot path).

    With `raw_times` the three times come as the driver gives them (SQLite: UTC text such as
    `2026-11-20 03:00:00.000000`; PostgreSQL: aware datetimes), for a caller that formats them
    itself: parsing and re-zoning thousands of them is most of a long list's cost.
    """
    columns = RAW_TIME_COLUMNS if raw_times else PUBLIC_COLUMNS
    query = select(*columns).where(Report.moderation.in_(PUBLIC_MODERATION))
    if tracking_codes:
        query = query.where(Report.tracking_code.in_([c.upper() for c in tracking_codes]))
    else:
        if service_codes:
            query = query.where(Report.service_code.in_(list(service_codes)))
        if statuses:
            query = query.where(Report.status.in_(list(statuses)))
        if unit_codes:
            query = query.where(Report.unit_code.in_(list(unit_codes)))
        if start is not None:
            query = query.where(Report.requested_at >= start)
        if end is not None:
            query = query.where(Report.requested_at <= end)
    query = query.order_by(Report.requested_at.desc(), Report.id.desc())
    # Through the connection: plain rows, without the ORM's result machinery; all() fetches
    # them in one call to the driver rather than one per row.
    rows: list[Row[Any]] = list(
        session.connection().execute(query.limit(limit).offset(offset)).all()  # type: ignore[arg-type]
    )
    return rows


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance between two points, in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


# Built once: a report's hot path runs it with new values only (building the statement cost
# more than running it).
_NEAR_OPEN = (
    select(Report.id, Report.lat, Report.lon, Report.requested_at)
    .where(
        Report.service_code == bindparam("service"),
        Report.status == str(ReportStatus.OPEN),
        Report.lat.between(bindparam("lat_low"), bindparam("lat_high")),
        Report.lon.between(bindparam("lon_low"), bindparam("lon_high")),
        Report.requested_at >= bindparam("since", type_=Report.requested_at.type),
        Report.moderation.in_(PUBLIC_MODERATION),
        Report.duplicate_of.is_(None),
    )
    .limit(DUPLICATE_SCAN_LIMIT)
)


def find_duplicates(
    *,
    session: Session,
    service_code: str,
    lat: float,
    lon: float,
    since: datetime,
    radius_m: float,
    limit: int | None = None,
    columns: Sequence[Any] = (),
) -> list[Report]:
    """Return open, public reports of a service within `radius_m` of a point since a time,
    nearest first (only the `limit` nearest, when given).

    `columns`: load only these of each report (the others raise once the session is gone): a
    new report's plan reads a few, and converting the rest (the attributes' JSON, the times)
    cost a tenth of taking a report in."""
    # A bounding box on the indexed columns first, the exact distance after. No ORDER BY: with
    # one, SQLite walks the (status, requested_at) index through every open report of the week
    # (8-17 ms at a million reports) instead of the (service, status, lat) one (under 0.1 ms);
    # the few rows a box holds are sorted here.
    dlat = radius_m / 111_320.0
    dlon = radius_m / (111_320.0 * max(math.cos(math.radians(lat)), 0.01))
    # Positions first (a few plain columns); whole reports only for the ones that are near.
    rows = session.execute(
        _NEAR_OPEN,
        {
            "service": service_code,
            "lat_low": lat - dlat,
            "lat_high": lat + dlat,
            "lon_low": lon - dlon,
            "lon_high": lon + dlon,
            "since": since,
        },
    ).all()
    near = sorted(
        (distance_m(lat, lon, r_lat, r_lon), at, report_id)
        for report_id, r_lat, r_lon, at in rows
        if r_lat is not None and r_lon is not None
    )
    ids = [report_id for distance, _at, report_id in near if distance <= radius_m][:limit]
    if not ids:
        return []
    query = select(Report).where(Report.id.in_(ids))
    if columns:
        query = query.options(load_only(*columns))
    found = {r.id: r for r in session.scalars(query)}
    return [found[report_id] for report_id in ids if report_id in found]


def get_pending_moderation(*, session: Session, limit: int, offset: int) -> list[Report]:
    """Return reports waiting for a moderator, oldest first."""
    return list(
        session.scalars(
            select(Report)
            .where(Report.moderation == str(Moderation.PENDING))
            .order_by(Report.id)
            .limit(limit)
            .offset(offset)
        ).all()
    )


# --- notes -----------------------------------------------------------------------------------


def new_note(*, report: Report, at: datetime, kind: NoteKind, description: str) -> ReportNote:
    """Return an entry of a report's public history, not yet in any session."""
    return ReportNote(
        report_id=report.id,
        at=at,
        kind=str(kind),
        status=report.status,
        description=description[:2000],
    )


def add_note(
    *, session: Session, report: Report, at: datetime, kind: NoteKind, description: str
) -> ReportNote:
    """Append an entry to a report's public history."""
    note = new_note(report=report, at=at, kind=kind, description=description)
    # Written with the transaction's next flush (a report's first notes go in with its incident).
    session.add(note)
    return note


def get_notes(*, session: Session, report_ids: Sequence[int]) -> dict[int, list[ReportNote]]:
    """Return the history of several reports, oldest first, by report id."""
    out: dict[int, list[ReportNote]] = {rid: [] for rid in report_ids}
    if not report_ids:
        return out
    rows = session.scalars(
        select(ReportNote).where(ReportNote.report_id.in_(list(report_ids))).order_by(ReportNote.id)
    ).all()
    for row in rows:
        out[row.report_id].append(row)
    return out


# --- photos ----------------------------------------------------------------------------------


def create_photo(
    *,
    session: Session,
    report: Report,
    position: int,
    content_type: str,
    size: int,
    width: int,
    height: int,
    sha256: str,
    at: datetime,
) -> ReportPhoto:
    """Record a stored (metadata-free) photo of a report."""
    photo = ReportPhoto(
        report_id=report.id,
        position=position,
        content_type=content_type,
        size=size,
        width=width,
        height=height,
        sha256=sha256,
        created_at=at,
    )
    session.add(photo)
    session.flush()
    return photo


def get_photos(*, session: Session, report_id: int) -> list[ReportPhoto]:
    """Return a report's photos in the reporter's order."""
    return list(
        session.scalars(
            select(ReportPhoto)
            .where(ReportPhoto.report_id == report_id)
            .order_by(ReportPhoto.position)
        ).all()
    )


def get_photo(*, session: Session, report_id: int, position: int) -> ReportPhoto | None:
    """Return one photo of a report by its position (1, 2, 3), or None."""
    return session.scalars(
        select(ReportPhoto).where(
            ReportPhoto.report_id == report_id, ReportPhoto.position == position
        )
    ).one_or_none()


def count_photos(*, session: Session, report_ids: Sequence[int]) -> dict[int, int]:
    """Return how many photos each of several reports has."""
    if not report_ids:
        return {}
    rows = session.execute(
        select(ReportPhoto.report_id, func.count())
        .where(ReportPhoto.report_id.in_(list(report_ids)))
        .group_by(ReportPhoto.report_id)
    ).all()
    return {int(r[0]): int(r[1]) for r in rows}


# --- personal data ---------------------------------------------------------------------------


def get_reporter(*, session: Session, report_id: int) -> Reporter | None:
    """Return a report's reporter: personal data, for staff handling the case only."""
    return session.get(Reporter, report_id)


def get_reporters(*, session: Session, report_ids: Sequence[int]) -> list[Reporter]:
    """Return the reporters of several reports (those who left contact details)."""
    if not report_ids:
        return []
    return list(
        session.scalars(select(Reporter).where(Reporter.report_id.in_(list(report_ids)))).all()
    )


def erase_reporter(*, session: Session, report: Report, at: datetime) -> None:
    """Erase a reporter's contacts for good."""
    session.execute(delete(Reporter).where(Reporter.report_id == report.id))
    report.personal_data_erased_at = at
    session.flush()


def delete_photos(*, session: Session, report_id: int) -> None:
    """Remove the records of a report's photos (their files are the caller's business)."""
    session.execute(delete(ReportPhoto).where(ReportPhoto.report_id == report_id))
    session.flush()


def get_photo_references(*, session: Session, sha256s: Sequence[str]) -> set[str]:
    """Return which of these contents some report's photo still uses."""
    if not sha256s:
        return set()
    return set(
        session.scalars(
            select(ReportPhoto.sha256).where(ReportPhoto.sha256.in_(list(sha256s))).distinct()
        ).all()
    )


def get_expired(*, session: Session, closed_before: datetime, limit: int) -> list[Report]:
    """Return reports closed before a time that still hold personal data: contacts, photos or
    a media_url (at most `limit`, oldest id first)."""
    old = (Report.closed_at.is_not(None), Report.closed_at < closed_before)
    # Three narrow queries (each on a small table or an index) rather than one wide OR.
    ids: set[int] = set()
    for query in (
        select(Reporter.report_id).join(Report, Report.id == Reporter.report_id).where(*old),
        select(ReportPhoto.report_id)
        .join(Report, Report.id == ReportPhoto.report_id)
        .where(*old)
        .distinct(),
        select(Report.id).where(*old, Report.media_url.is_not(None)),
    ):
        ids.update(session.scalars(query.limit(limit)).all())
    if not ids:
        return []
    chosen = sorted(ids)[:limit]
    return list(session.scalars(select(Report).where(Report.id.in_(chosen)).order_by(Report.id)))


# --- satisfaction (Decision 766) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Satisfaction:
    """Reports closed in a period: how many, how many on time, rated, and rated satisfied."""

    closed: int
    closed_on_time: int
    rated: int
    satisfied: int

    @property
    def satisfaction_rate(self) -> float | None:
        """Share of rated reports whose reporter was satisfied (None when nobody rated)."""
        return self.satisfied / self.rated if self.rated else None

    @property
    def on_time_rate(self) -> float | None:
        """Share of closed reports closed by their expected time."""
        return self.closed_on_time / self.closed if self.closed else None


def _satisfaction_columns() -> tuple[Any, ...]:
    on_time = func.sum(
        case((Report.expected_at.is_(None) | (Report.closed_at <= Report.expected_at), 1), else_=0)
    )
    return (
        func.count(),
        on_time,
        func.count(Report.satisfied),
        func.sum(case((Report.satisfied.is_(True), 1), else_=0)),
    )


def _satisfaction_of(row: Any) -> Satisfaction:
    return Satisfaction(
        closed=int(row[0] or 0),
        closed_on_time=int(row[1] or 0),
        rated=int(row[2] or 0),
        satisfied=int(row[3] or 0),
    )


def _closed_in(start: datetime, end: datetime) -> list[Any]:
    # A duplicate shares its original's incident: counting it would count one case twice.
    return [Report.closed_at >= start, Report.closed_at < end, Report.duplicate_of.is_(None)]


def satisfaction(
    *,
    session: Session,
    start: datetime,
    end: datetime,
    unit_codes: Sequence[str] | None = None,
    department_code: str | None = None,
) -> Satisfaction:
    """Count reports closed in [start, end): on time, rated and satisfied (766 indicators)."""
    conditions = _closed_in(start, end)
    if unit_codes is not None:
        conditions.append(Report.unit_code.in_(list(unit_codes)))
    if department_code is not None:
        conditions.append(Report.department_code == department_code)
    return _satisfaction_of(
        session.execute(select(*_satisfaction_columns()).where(*conditions)).one()
    )


def satisfaction_by_unit(
    *, session: Session, start: datetime, end: datetime
) -> dict[str, Satisfaction]:
    """The same counts per commune/ward (reports with no unit are left out): KPI inputs."""
    rows = session.execute(
        select(Report.unit_code, *_satisfaction_columns())
        .where(*_closed_in(start, end), Report.unit_code.is_not(None))
        .group_by(Report.unit_code)
    )
    return {row[0]: _satisfaction_of(row[1:]) for row in rows}
