"""Orchestration of the citizen context: taking a report in (validation, abuse control, routing to
a commune or ward and a department, duplicates, the incident), following its incident back to the
report and its reporters, moderation, rating, erasure of personal data and the profile's catalogue.

Every function works inside the caller's transaction. `install(runtime)` subscribes this context
to the incidents' events, inside their transaction, so a report changes with its incident or not
at all.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from cityops.auth import service as auth_service
from cityops.auth.enums import role_permissions
from cityops.citizen import photos, service
from cityops.citizen.enums import AttributeType, CitizenEvent, Moderation, NoteKind, ReportStatus
from cityops.citizen.models import CitizenService, Report, Reporter, ReportNote, ReportPhoto
from cityops.core import outbox
from cityops.core.clock import Clock
from cityops.core.db import insert_objects
from cityops.core.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests
from cityops.core.events import Event
from cityops.core.outbox_smtp import CHANNEL as SMTP_CHANNEL
from cityops.core.outbox_smtp import smtp_configured
from cityops.core.runtime import Runtime
from cityops.core.security import Permission, Principal
from cityops.incidents import files as incident_files
from cityops.incidents import flows as incidents_flows
from cityops.incidents import service as incident_service
from cityops.incidents.enums import IncidentEvent, TimelineKind
from cityops.incidents.schemas import IncidentCreate
from cityops.notify import channels as notify_channels
from cityops.notify import service as notify_service
from cityops.units import service as unit_service

DUPLICATE_RADIUS_M = 50.0
DUPLICATE_WINDOW = timedelta(days=7)
# How many possible duplicates a report's answer names.
NOTICE_DUPLICATES = 5
RETENTION_JOB = "citizen.erase_personal_data"
RETENTION_BATCH = 1000
JURISDICTIONS = ("75", "dongnai.gov.vn")
# Length limits of what a client may send (Open311 caps descriptions at 4,000 characters).
LIMITS = {
    "description": 4000,
    "address_string": 500,
    "media_url": 1000,
    "first_name": 100,
    "last_name": 100,
    "email": 254,
    "phone": 32,
    "device_id": 100,
    "account_id": 100,
}
_TAG = re.compile(r"<[^>]{0,500}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINK = re.compile(r"(https?://|www\.)", re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
# Abusive words that send a report to the moderation queue (folded, whole words).
_ABUSE = re.compile(r"\b(dm|dcm|vcl|vl|deo|cho chet|lua dao)\b")
STATUS_TEXT = {
    "new": ("Đã tiếp nhận", "Received"),
    "assigned": ("Đã chuyển đơn vị xử lý", "Assigned to the responsible unit"),
    "in_progress": ("Đang xử lý", "In progress"),
    "resolved": ("Đã xử lý xong", "Resolved"),
    "closed": ("Đã đóng", "Closed"),
}
CLOSED_INCIDENT = ("resolved", "closed")
# The confirmation a reporter who left contacts gets at once (the link follows it).
RECEIPT_TEXT = (
    "Đã tiếp nhận. Theo dõi tại:",
    "Received. Follow it at:",
)
# Opens incidents for citizen reports: the report is the authority, not a user.
CITIZEN_PRINCIPAL = Principal(
    kind="system",
    id=0,
    name="citizen",
    role="system",
    permissions=frozenset({str(Permission.INCIDENT_CREATE)}),
)
# Attaches a report's photos to its incident, so staff see them where they work.
PHOTO_PRINCIPAL = Principal(
    kind="system",
    id=0,
    name="citizen",
    role="system",
    permissions=frozenset({str(Permission.INCIDENT_WORK)}),
)
CONTACT_FIELDS = ("first_name", "last_name", "email", "phone")
# Writes the retention job's erasures to the audit log.
ERASURE_PRINCIPAL = Principal(
    kind="system", id=0, name="citizen.retention", role="system", permissions=frozenset()
)
# The incident timeline's note when a report's photos are erased (staff read it in Vietnamese).
ERASURE_NOTE = {
    "request": "Ảnh của phản ánh {code} đã được xoá theo yêu cầu của người phản ánh "
    "(Luật Bảo vệ dữ liệu cá nhân 91/2025/QH15)",
    "retention": "Ảnh của phản ánh {code} đã được xoá khi hết thời hạn lưu trữ "
    "(Luật Bảo vệ dữ liệu cá nhân 91/2025/QH15)",
}
_ORPHANS = "citizen.orphan_files"
_ORPHANS_HOOKED = "citizen.orphan_files_hooked"


def install(runtime: Runtime) -> None:
    """Follow incidents back to their reports (inside the incidents' transaction)."""

    def changed(session: Session, event: Event) -> None:
        on_incident_changed(runtime=runtime, session=session, event=event)

    def commented(session: Session, event: Event) -> None:
        on_comment_added(runtime=runtime, session=session, event=event)

    runtime.bus.subscribe_in_transaction(IncidentEvent.CHANGED, changed)
    runtime.bus.subscribe_in_transaction(IncidentEvent.COMMENT_ADDED, commented)


def register_jobs(runtime: Runtime) -> None:
    """Erase expired personal data every hour."""
    from cityops.core.db import unit_of_work

    def run() -> None:
        with unit_of_work(runtime.session_factory) as session:
            erase_expired(runtime=runtime, session=session)

    runtime.jobs.add(RETENTION_JOB, 3600.0, run)


def _error(field_name: str, key: str, /, *, where: str = "body", **params: Any) -> dict[str, Any]:
    return {"field": field_name, "in": where, "key": key, "params": params}


def _invalid(errors: list[dict[str, Any]]) -> Invalid:
    return Invalid("citizen.invalid", errors=errors, count=len(errors))


# --- abuse control ---------------------------------------------------------------------------


class RateLimiter:
    """A sliding one-minute window of submissions per client, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def hit(self, client: str, per_minute: int) -> float | None:
        """Count one submission; return the seconds to wait if the client is over its limit."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(client, deque())
            while hits and hits[0] <= now - 60.0:
                hits.popleft()
            if len(hits) >= per_minute:
                return max(hits[0] + 60.0 - now, 0.0)
            hits.append(now)
            if len(self._hits) > 100_000:  # forget idle clients rather than grow without end
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - 60.0}
            return None


def check_rate(runtime: Runtime, client: str) -> None:
    """Raise 429 when a client sent more reports this minute than the setting allows."""
    limiter = runtime.caches.setdefault("citizen.rate", RateLimiter())
    wait = limiter.hit(client, runtime.settings.citizen_rate_per_minute)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            "citizen.rate_limited", headers={"Retry-After": str(seconds)}, seconds=seconds
        )


def clean_text(value: str) -> tuple[str, bool]:
    """Return text without markup or control characters, and whether markup was removed."""
    text = _CONTROL.sub("", value.replace("\r\n", "\n"))
    stripped = _TAG.sub("", text)
    # What remains is plain text; lone angle brackets are escaped wherever it is rendered.
    return stripped.strip(), stripped != text


def moderation_reason(description: str, had_markup: bool) -> str | None:
    """Return why a report goes to the moderation queue, or None."""
    from cityops.core.text import fold

    if had_markup:
        return "markup"
    if _LINK.search(description):
        return "link"
    if _ABUSE.search(fold(description).lower()):
        return "language"
    return None


# --- API keys (Open311 clients) --------------------------------------------------------------


def open311_client(*, runtime: Runtime, session: Session, api_key: str | None) -> int:
    """Return the id of a valid Open311 client key allowed to submit, or raise 403."""
    if not api_key or len(api_key) > 200:
        raise Forbidden("citizen.open311.api_key")
    prefix = auth_service.split_api_key(api_key)
    if not prefix:
        raise Forbidden("citizen.open311.api_key")
    # Every report checks its key: the keys' terms are reference data (dropped at once when a
    # key or a user changes in this process).
    clients: dict[str, tuple[int | None, str, datetime | None, bool]] = runtime.reference.get(
        session, "citizen:open311_clients", ("auth_api_key", "auth_user"), dict
    )
    client = clients.get(prefix)
    if client is None:
        client = _open311_client_terms(session, prefix)
        if client[0] is not None:  # unknown prefixes are not kept: anyone can send them
            clients[prefix] = client
    key_id, key_hash, expires_at, may_submit = client
    if key_id is None or not auth_service.digest_matches(api_key, key_hash):
        raise Forbidden("citizen.open311.api_key")
    if not may_submit or (expires_at is not None and expires_at <= runtime.clock.now()):
        raise Forbidden("citizen.open311.api_key")
    return key_id


def _open311_client_terms(
    session: Session, prefix: str
) -> tuple[int | None, str, datetime | None, bool]:
    """Return a key's id, hash, expiry and whether it may submit (id None: no such key)."""
    row = auth_service.get_api_key_by_prefix(session=session, prefix=prefix)
    if row is None:
        return None, "", None, False
    permissions = set(row.permissions)
    if row.created_by is not None:
        creator = auth_service.get(session=session, user_id=row.created_by)
        allowed = role_permissions(creator.role) if creator and creator.is_active else frozenset()
        permissions &= set(allowed)
    may_submit = row.revoked_at is None and str(Permission.CITIZEN_SUBMIT) in permissions
    return row.id, row.key_hash, row.expires_at, may_submit


def check_jurisdiction(jurisdiction_id: str | None) -> None:
    """Raise 404 for a jurisdiction this server does not serve (empty means not given)."""
    if jurisdiction_id and jurisdiction_id.strip() not in JURISDICTIONS:
        raise NotFound("citizen.open311.jurisdiction", id=jurisdiction_id[:64])


# --- submissions -----------------------------------------------------------------------------


@dataclass(slots=True)
class Submission:
    """A report as sent (Open311 POST or the public page), before validation."""

    service_code: str | None = None
    lat: str | None = None
    long: str | None = None
    address_string: str | None = None
    description: str | None = None
    media_url: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    duplicate_of: str | None = None


_ATTRIBUTE = re.compile(r"^attribute\[([^\]]{1,64})\](\[\])?$")


def submission_from_form(form: Mapping[str, list[str]]) -> Submission:
    """Read an Open311 form body (`attribute[CODE]`, `attribute[CODE][]` included)."""
    sub = Submission()
    for key, values in form.items():
        match = _ATTRIBUTE.match(key)
        if match:
            sub.attributes.setdefault(match.group(1), []).extend(v for v in values if v != "")
            continue
        value = values[-1] if values else None
        if key in Submission.__dataclass_fields__ and key != "attributes":
            setattr(sub, key, value if value not in ("", None) else None)
    return sub


@dataclass(slots=True)
class Created:
    """A report just taken in, and what to tell the client."""

    report: Report
    notice: str | None
    duplicates: list[Report]


def _number(
    text: str | None, name: str, low: float, high: float, errors: list[Any]
) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        errors.append(_error(name, "citizen.field.coordinate", low=low, high=high))
        return None
    return value


def _attributes(
    service_row: service.ServiceTerms, given: dict[str, list[str]], errors: list[Any]
) -> dict[str, Any]:
    defined = {a["code"]: a for a in service_row.attributes if a.get("variable", True)}
    out: dict[str, Any] = {}
    for code in given:
        if code not in defined:
            errors.append(_error(f"attribute[{code}]", "citizen.attribute.unknown", code=code))
    for code, spec in defined.items():
        values = given.get(code, [])
        name = f"attribute[{code}]"
        if not values:
            if spec.get("required"):
                errors.append(_error(name, "citizen.attribute.required", code=code))
            continue
        datatype = spec.get("datatype", AttributeType.STRING)
        keys = {str(v["key"]) for v in spec.get("values", [])}
        if datatype == AttributeType.MULTI:
            bad = [v for v in values if v not in keys]
            if bad:
                errors.append(_error(name, "citizen.attribute.value", code=code, value=bad[0][:50]))
            out[code] = list(dict.fromkeys(values))[:50]
            continue
        value = values[-1]
        if datatype == AttributeType.SINGLE and value not in keys:
            errors.append(_error(name, "citizen.attribute.value", code=code, value=value[:50]))
        elif datatype == AttributeType.NUMBER:
            try:
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError(value)
            except ValueError:
                errors.append(_error(name, "citizen.attribute.number", code=code))
        elif datatype == AttributeType.DATETIME and parse_datetime(value) is None:
            errors.append(_error(name, "citizen.attribute.datetime", code=code))
        limit = 4000 if datatype == AttributeType.TEXT else 500
        text, _ = clean_text(value)
        if len(text) > limit:
            errors.append(_error(name, "citizen.field.too_long", limit=limit))
        out[code] = text
    return out


def parse_datetime(text: str) -> datetime | None:
    """Parse a W3C date-time with its time zone; None if it is not one."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
        if value.tzinfo is None:
            return None
        # A time with no UTC equivalent (0001-01-01T00:00+07:00) is not one either.
        value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return value


def _contacts(sub: Submission, errors: list[Any]) -> dict[str, str | None]:
    fields: dict[str, str | None] = {}
    for name in ("first_name", "last_name", "device_id", "account_id"):
        raw = getattr(sub, name)
        fields[name] = clean_text(raw)[0] or None if raw else None
    fields["email"] = None
    if sub.email:
        email = sub.email.strip()
        if not _EMAIL.match(email):
            errors.append(_error("email", "citizen.field.email"))
        fields["email"] = email
    fields["phone"] = None
    if sub.phone:
        phone = notify_service.normalize_phone(sub.phone)
        if phone is None:
            errors.append(_error("phone", "citizen.field.phone"))
        fields["phone"] = phone
    return fields


@dataclass(slots=True)
class Plan:
    """A report checked, located and routed, ready to be written (nothing of it is yet)."""

    report_in: service.NewReport
    service_row: service.ServiceTerms
    contacts: dict[str, str | None]
    original: Report | None  # the report it asked to be linked to (`duplicate_of`)
    duplicates: list[Report]
    held: bool  # waiting for a moderator: no incident yet
    request: Any = None  # the request it came with (audit rows, event correlation)


# What a plan reads of the reports near a new one: codes and places for the notice and the
# batch's own duplicates, the incident and deadline a linked report shares.
PLANNED_COLUMNS = (
    Report.id,
    Report.tracking_code,
    Report.service_code,
    Report.lat,
    Report.lon,
    Report.duplicate_of,
    Report.incident_id,
    Report.incident_code,
    Report.expected_at,
)


def plan_report(
    *,
    runtime: Runtime,
    session: Session,
    sub: Submission,
    client_id: int | None,
    language: str | None = None,
) -> Plan:
    """Check a report and decide everything about it (unit, department, duplicates,
    moderation, deadline) with reads only: a bad report raises its 4xx here."""
    if not sub.service_code:
        raise _invalid([_error("service_code", "citizen.field.required")])
    services = service.get_service_terms(session=session, reference=runtime.reference)
    service_row = services.get(sub.service_code)
    if service_row is None or not service_row.is_active:
        raise NotFound("citizen.service.not_found", code=sub.service_code[:40])
    errors: list[dict[str, Any]] = []
    for name, limit in LIMITS.items():
        value = getattr(sub, name)
        if value is not None and len(value) > limit:
            errors.append(_error(name, "citizen.field.too_long", limit=limit))
    if errors:
        raise _invalid(errors)
    lat = _number(sub.lat, "lat", -90, 90, errors)
    lon = _number(sub.long, "long", -180, 180, errors)
    if (sub.lat is None) != (sub.long is None):
        errors.append(_error("long" if sub.long is None else "lat", "citizen.field.pair"))
    address = clean_text(sub.address_string)[0] or None if sub.address_string else None
    if sub.lat is None and sub.long is None and address is None:
        errors.append(_error("lat", "citizen.field.location"))
    description, had_markup = clean_text(sub.description or "")
    media_url = sub.media_url.strip() if sub.media_url else None
    if media_url is not None:
        parts = urlsplit(media_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or _CONTROL.search(media_url):
            errors.append(_error("media_url", "citizen.field.url"))
    attributes = _attributes(service_row, sub.attributes, errors)
    contacts = _contacts(sub, errors)
    if errors:
        raise _invalid(errors)
    unit_code: str | None = None
    if lat is not None and lon is not None:
        unit_code = unit_service.locate_code(
            session=session, lat=lat, lon=lon, caches=runtime.caches
        )
        if unit_code is None:
            raise _invalid([_error("lat", "citizen.field.outside")])
    elif address is not None:
        unit_code = unit_from_address(runtime=runtime, session=session, address=address)
    now = runtime.clock.now()
    duplicates: list[Report] = []
    if lat is not None and lon is not None:
        duplicates = service.find_duplicates(
            session=session,
            service_code=service_row.code,
            lat=lat,
            lon=lon,
            since=now - DUPLICATE_WINDOW,
            radius_m=DUPLICATE_RADIUS_M,
            # The answer names five; a report linked to another needs to find it among all.
            limit=None if sub.duplicate_of else NOTICE_DUPLICATES,
            columns=PLANNED_COLUMNS,
        )
    original: Report | None = None
    if sub.duplicate_of:
        original = next(
            (r for r in duplicates if r.tracking_code == sub.duplicate_of.strip().upper()), None
        )
        if original is None:
            raise _invalid([_error("duplicate_of", "citizen.duplicate.not_near")])
    reason = moderation_reason(description, had_markup)
    if any(contacts.values()):
        # Kept with the contacts only: it says which language their messages are sent in.
        contacts["language"] = language if language in ("vi", "en") else "vi"
    return Plan(
        report_in=service.NewReport(
            service_code=service_row.code,
            description=description,
            address=address,
            lat=lat,
            lon=lon,
            media_url=media_url,
            attributes=attributes,
            unit_code=unit_code,
            department_code=service_row.department_code,
            client_id=client_id,
            moderation=str(Moderation.PENDING if reason else Moderation.NONE),
            flag_reason=reason,
            requested_at=now,
            expected_at=now + timedelta(hours=service_row.sla_hours),
            duplicate_of=original.id if original is not None else None,
        ),
        service_row=service_row,
        contacts=contacts,
        original=original,
        duplicates=duplicates,
        held=reason is not None,
    )


def write_reports(*, runtime: Runtime, session: Session, plans: Sequence[Plan]) -> list[Created]:
    """Write planned reports (arriving together) with their incidents, contacts, history and
    messages: one statement per table for all of them, not one per report.

    A plan can be written again after a rollback: its report is built anew each time."""
    reports = [service.new_report(plan.report_in) for plan in plans]
    opening = [i for i, plan in enumerate(plans) if plan.original is None and not plan.held]
    incidents = incidents_flows.create_incidents(
        runtime=runtime,
        session=session,
        principal=CITIZEN_PRINCIPAL,
        incidents_in=[_incident_in(reports[i], plans[i].service_row) for i in opening],
        requests=[plans[i].request for i in opening],
    )
    for i, incident in zip(opening, incidents, strict=True):
        reports[i].incident_id, reports[i].incident_code = incident.id, incident.code
    for plan, report in zip(plans, reports, strict=True):
        if plan.original is not None:
            original = plan.original
            report.incident_id, report.incident_code = original.incident_id, original.incident_code
            report.expected_at = original.expected_at
    insert_objects(session, reports)
    insert_objects(
        session,
        [
            Reporter(report_id=report.id, **plan.contacts)
            for plan, report in zip(plans, reports, strict=True)
            if any(plan.contacts.values())
        ],
    )
    notes = [
        service.new_note(
            report=report,
            at=report.requested_at,
            kind=NoteKind.RECEIVED,
            description="Đã tiếp nhận",
        )
        for report in reports
    ]
    notes += [
        service.new_note(
            report=report,
            at=report.requested_at,
            kind=NoteKind.DUPLICATE,
            description=f"Gộp với phản ánh {plan.original.tracking_code}",
        )
        for plan, report in zip(plans, reports, strict=True)
        if plan.original is not None
    ]
    insert_objects(session, notes)
    created: list[Created] = []
    for index, (plan, report) in enumerate(zip(plans, reports, strict=True)):
        duplicates = _with_batch_duplicates(plan, report, plans[:index], reports[:index])
        if plan.contacts["email"] or plan.contacts["phone"]:
            confirm_receipt(runtime=runtime, session=session, report=report, contacts=plan.contacts)
        notice: str | None = None
        if plan.original is not None:
            notice = f"Linked to {plan.original.tracking_code}"
        elif plan.held:
            # Said plainly, so the client knows why the report is not listed yet.
            notice = "Held for moderation"
        elif duplicates:
            codes = ", ".join(r.tracking_code for r in duplicates[:NOTICE_DUPLICATES])
            notice = f"Possible duplicate of {codes}"
        runtime.bus.publish_after_commit(
            session,
            Event(
                type=str(CitizenEvent.REPORT_CREATED),
                data=_event_data(report),
                at=report.requested_at,
            ),
        )
        created.append(Created(report=report, notice=notice, duplicates=duplicates))
    return created


def _with_batch_duplicates(
    plan: Plan, report: Report, earlier: Sequence[Plan], written: Sequence[Report]
) -> list[Report]:
    # The reports written before this one in its batch were not there when it was planned: a
    # batch names its duplicates as if its reports had come one after the other.
    if report.lat is None or report.lon is None:
        return plan.duplicates
    near = [
        (service.distance_m(report.lat, report.lon, other.lat, other.lon), other)
        for other_plan, other in zip(earlier, written, strict=True)
        if other.service_code == report.service_code
        and not other_plan.held
        and other.duplicate_of is None
        and other.lat is not None
        and other.lon is not None
    ]
    found = [(d, r) for d, r in near if d <= DUPLICATE_RADIUS_M]
    if not found:
        return plan.duplicates
    known = [
        (service.distance_m(report.lat, report.lon, r.lat or 0.0, r.lon or 0.0), r)
        for r in plan.duplicates
    ]
    return [r for _, r in sorted([*known, *found], key=lambda pair: pair[0])]


def unit_from_address(*, runtime: Runtime, session: Session, address: str) -> str | None:
    """Return the commune or ward an address names in full ("phường Trấn Biên"), if any."""
    from cityops.core.text import fold

    names: list[tuple[str, str]] | None = runtime.caches.get("citizen.unit_names")
    if names is None:
        units, _ = unit_service.get_all(
            session=session, on=runtime.clock.now().date(), level="commune", limit=10_000
        )
        # Longest first, so "phuong long binh tan" wins over "phuong long binh".
        names = sorted(
            ((unit.name_folded.lower(), unit.code) for unit in units), key=lambda p: -len(p[0])
        )
        runtime.caches["citizen.unit_names"] = names
    folded = f" {' '.join(fold(address).lower().replace(',', ' ').split())} "
    return next((code for name, code in names if f" {name} " in folded), None)


def _event_data(report: Report) -> dict[str, Any]:
    # No personal data: events reach the live stream and webhooks.
    return {
        "report_id": report.id,
        "tracking_code": report.tracking_code,
        "service_code": report.service_code,
        "status": report.status,
        "unit_code": report.unit_code,
        "department_code": report.department_code,
        "incident_id": report.incident_id,
        "duplicate_of": report.duplicate_of,
        "moderation": report.moderation,
        "lat": report.lat,
        "lon": report.lon,
    }


def open_incident(
    *,
    runtime: Runtime,
    session: Session,
    report: Report,
    service_row: CitizenService,
    photos: bool = True,
) -> None:
    """Open the incident that handles a report, with its service's department and category.

    `photos`: attach the report's stored photos to the incident (False for a report just
    created, which has none yet).
    """
    incident = incidents_flows.create_incident(
        runtime=runtime,
        session=session,
        principal=CITIZEN_PRINCIPAL,
        incident_in=_incident_in(report, service_row),
    )
    report.incident_id, report.incident_code = incident.id, incident.code
    session.flush()
    stored = service.get_photos(session=session, report_id=report.id) if photos else []
    if stored:
        # A report approved by a moderator: its photos were stored when it came in.
        data_dir = runtime.settings.data_dir
        _attach_photos(
            runtime=runtime,
            session=session,
            report=report,
            items=[(p, incident_files.path_of(data_dir, p.sha256).read_bytes()) for p in stored],
        )


def _incident_in(
    report: Report, service_row: CitizenService | service.ServiceTerms
) -> IncidentCreate:
    # The incident that handles a report: its service's department and category.
    summary = " ".join(report.description.split())[:200] or (report.address or "")[:200]
    title = f"{service_row.name}: {summary}".strip().rstrip(":")[:300]
    body = [report.description] if report.description else []
    if report.address:
        body.append(f"Địa chỉ: {report.address}")
    body.append(f"Mã phản ánh: {report.tracking_code}")
    return IncidentCreate(
        title=title,
        description="\n".join(body)[:10_000],
        category_code=service_row.incident_category,
        severity=service_row.severity,
        lat=report.lat,
        lon=report.lon,
        unit_code=report.unit_code,
        department_code=service_row.department_code,
        source_ref=f"citizen:{report.tracking_code}",
    )


# --- incidents → reports ---------------------------------------------------------------------


def on_incident_changed(*, runtime: Runtime, session: Session, event: Event) -> None:
    """Carry an incident's status change to its reports and tell their reporters."""
    data = event.data
    status, previous = data.get("status"), data.get("previous_status")
    if not isinstance(data.get("incident_id"), int) or status == previous or status is None:
        return
    reports = service.get_by_incident(session=session, incident_id=data["incident_id"])
    if not reports:
        return
    vi, en = STATUS_TEXT.get(str(status), (str(status), str(status)))
    closed = status in CLOSED_INCIDENT
    for report in reports:
        report.status = str(ReportStatus.CLOSED if closed else ReportStatus.OPEN)
        report.closed_at = event.at if closed else None
        report.status_notes = vi
        report.updated_at = event.at
        service.add_note(
            session=session, report=report, at=event.at, kind=NoteKind.STATUS, description=vi
        )
    _tell_reporters(
        runtime=runtime, session=session, reports=reports, text=vi, text_en=en, at=event.at
    )


def on_comment_added(*, runtime: Runtime, session: Session, event: Event) -> None:
    """Publish an incident's public comment on its reports and send it to their reporters."""
    data = event.data
    note = data.get("note")
    if data.get("public") is not True or not isinstance(note, str) or not note.strip():
        return
    if not isinstance(data.get("incident_id"), int):
        return
    reports = service.get_by_incident(session=session, incident_id=data["incident_id"])
    text = clean_text(note)[0][:2000]
    for report in reports:
        report.status_notes = text
        report.updated_at = event.at
        service.add_note(
            session=session, report=report, at=event.at, kind=NoteKind.COMMENT, description=text
        )
    if reports:
        _tell_reporters(
            runtime=runtime, session=session, reports=reports, text=text, text_en=text, at=event.at
        )


def reporter_message(code: str, text: str, language: str | None) -> tuple[str, str]:
    """Return the subject and first line of a message to a reporter, in their language."""
    if language == "en":
        return f"[CityOps] Report {code}", f"Report {code}: {text}"
    return f"[CityOps] Phản ánh {code}", f"Phản ánh {code}: {text}"


def _tell_reporters(
    *,
    runtime: Runtime,
    session: Session,
    reports: list[Report],
    text: str,
    text_en: str,
    at: datetime,
) -> None:
    by_id = {r.id: r for r in reports}
    for reporter in service.get_reporters(session=session, report_ids=list(by_id)):
        report = by_id[reporter.report_id]
        _message_reporter(
            runtime=runtime,
            session=session,
            report=report,
            email=reporter.email,
            phone=reporter.phone,
            language=reporter.language,
            text=text_en if reporter.language == "en" else text,
            at=at,
        )


def tracking_link(settings: Any, report: Report, language: str | None) -> str:
    """Return a report's tracking page for its reporter: their language and their key (which
    lets them rate the result)."""
    link = f"{settings.public_url.rstrip('/')}/public/reports/{report.tracking_code}"
    lang = "lang=en&" if language == "en" else ""
    return f"{link}?{lang}key={report.token}"


def confirm_receipt(
    *, runtime: Runtime, session: Session, report: Report, contacts: Mapping[str, str | None]
) -> None:
    """Tell a reporter who left an e-mail or phone that the report arrived, with its code."""
    language = contacts.get("language")
    vi, en = RECEIPT_TEXT
    _message_reporter(
        runtime=runtime,
        session=session,
        report=report,
        email=contacts.get("email"),
        phone=contacts.get("phone"),
        language=language,
        text=en if language == "en" else vi,
        at=report.requested_at,
        link_in_sms=True,
    )


def _message_reporter(
    *,
    runtime: Runtime,
    session: Session,
    report: Report,
    email: str | None,
    phone: str | None,
    language: str | None,
    text: str,
    at: datetime,
    link_in_sms: bool = False,
) -> None:
    # Through the outbox, in the causing transaction: sent once it commits, retried on failure.
    settings = runtime.settings
    link = tracking_link(settings, report, language)
    subject, message = reporter_message(report.tracking_code, text, language)
    owner = f"citizen:{report.tracking_code}"
    if email and smtp_configured(settings):
        mail = EmailMessage()
        mail["From"] = settings.smtp_from
        mail["To"] = email
        mail["Subject"] = subject
        mail["Date"] = format_datetime(at)
        mail["Message-ID"] = make_msgid(domain="cityops.local")
        mail.set_content(f"{message}\n\n{link}\n")
        outbox.enqueue(
            session=session,
            now=at,
            channel=SMTP_CHANNEL,
            owner=owner,
            source="citizen",
            target=email,
            payload=mail.as_bytes(),
            content_type="message/rfc822",
            source_ref=report.tracking_code,
        )
    if phone and settings.sms_gateway_url:
        short = notify_channels.unaccent(message) if settings.sms_unaccented else message
        if link_in_sms:
            # The link whole, whatever the text's length: a cut link is no link.
            short = f"{short[: max(notify_channels.SMS_MAX - len(link) - 1, 0)]} {link}"
        values = {
            "phone": phone,
            "phone_national": notify_service.national_phone(phone),
            "message": short[: notify_channels.SMS_MAX] if not link_in_sms else short,
        }
        outbox.enqueue(
            session=session,
            now=at,
            channel="sms",
            owner=owner,
            source="citizen",
            target=settings.sms_gateway_url,
            payload=notify_channels.render_gateway(settings.sms_gateway_template, values),
            content_type="application/json",
            source_ref=report.tracking_code,
        )


# --- moderation, rating, erasure -------------------------------------------------------------


def moderate(*, runtime: Runtime, session: Session, report: Report, approve: bool) -> Report:
    """Approve a flagged report (its incident opens) or hide it (it closes, never shown)."""
    if report.moderation != Moderation.PENDING:
        raise Conflict("citizen.moderation.not_pending", code=report.tracking_code)
    now = runtime.clock.now()
    report.updated_at = now
    if approve:
        report.moderation = str(Moderation.APPROVED)
        service_row = service.get_service_or_raise(
            session=session, service_code=report.service_code
        )
        open_incident(runtime=runtime, session=session, report=report, service_row=service_row)
    else:
        report.moderation = str(Moderation.HIDDEN)
        report.status = str(ReportStatus.CLOSED)
        report.closed_at = now
    session.flush()
    return report


def reporter_key_matches(report: Report, key: str | None) -> bool:
    """Tell whether a key is the report's reporter key (sent only to the reporter)."""
    return bool(key) and secrets.compare_digest(report.token.encode(), (key or "").encode())


def rate(
    *,
    runtime: Runtime,
    session: Session,
    report: Report,
    satisfied: bool,
    comment: str | None,
    key: str | None,
) -> Report:
    """Record the reporter's rating of a closed report (once; the reporter key is required)."""
    if not reporter_key_matches(report, key):
        # Tracking codes are public (Open311 lists them): the key keeps the 766 tally honest.
        raise Forbidden("citizen.rating.key", code=report.tracking_code)
    if report.status != ReportStatus.CLOSED or report.moderation == Moderation.HIDDEN:
        raise Conflict("citizen.rating.not_closed", code=report.tracking_code)
    if report.rated_at is not None:
        raise Conflict("citizen.rating.done", code=report.tracking_code)
    now = runtime.clock.now()
    report.satisfied = satisfied
    report.rating_comment = clean_text(comment)[0][:1000] or None if comment else None
    report.rated_at = now
    session.flush()
    runtime.bus.publish_after_commit(
        session,
        Event(
            type=str(CitizenEvent.REPORT_RATED),
            data={**_event_data(report), "satisfied": satisfied},
            at=now,
        ),
    )
    return report


def request_erasure(
    *,
    runtime: Runtime,
    session: Session,
    tracking_code: str,
    contact: str | None,
    key: str | None = None,
) -> None:
    """Erase a reporter's personal data at their request: tracking code + their e-mail or phone,
    or + the reporter key of their tracking link."""
    if not contact and not key:
        raise _invalid([_error("contact", "citizen.field.required")])
    report = service.get_by_code(session=session, tracking_code=tracking_code)
    reporter = (
        service.get_reporter(session=session, report_id=report.id) if report is not None else None
    )
    given = (contact or "").strip()
    phone = notify_service.normalize_phone(given) if given else None
    matches = (
        reporter is not None
        and bool(given)
        and (
            (reporter.email is not None and reporter.email.lower() == given.lower())
            or (reporter.phone is not None and phone is not None and reporter.phone == phone)
        )
    )
    if report is not None and not matches and key and reporter_key_matches(report, key):
        if (
            reporter is None
            and report.media_url is None
            and not service.count_photos(session=session, report_ids=[report.id])
        ):
            return  # already erased: asking again with the key changes nothing
        matches = True
    if report is None or not matches:
        # One answer for "no such report" and "not your contact": nothing to learn by guessing.
        raise NotFound("citizen.erasure.no_match")
    erase_personal_data(runtime=runtime, session=session, report=report, reason="request")


def erase_expired(*, runtime: Runtime, session: Session) -> int:
    """Erase personal data of reports closed longer ago than the retention setting."""
    now = runtime.clock.now()
    cutoff = now - timedelta(days=runtime.settings.citizen_retention_days)
    reports = service.get_expired(session=session, closed_before=cutoff, limit=RETENTION_BATCH)
    for report in reports:
        erase_personal_data(runtime=runtime, session=session, report=report, reason="retention")
    return len(reports)


def erase_personal_data(
    *, runtime: Runtime, session: Session, report: Report, reason: str
) -> dict[str, Any]:
    """Erase what identifies a reporter: contacts, photos (records, the automatic copies on
    incidents, then the files) and media_url; copies staff attached themselves stay; audit it.

    Returns the audit entry's summary (no personal data in it)."""
    now = runtime.clock.now()
    had_contacts = service.get_reporter(session=session, report_id=report.id) is not None
    service.erase_reporter(session=session, report=report, at=now)
    stored = service.get_photos(session=session, report_id=report.id)
    positions: dict[str, list[int]] = {}
    for photo in stored:
        positions.setdefault(photo.sha256, []).append(photo.position)
    removed: dict[int, list[int]] = {}
    kept: list[dict[str, Any]] = []
    copy_prefix = f"{report.tracking_code}-"
    for attachment in incident_service.get_attachments_by_sha256(
        session=session, sha256s=sorted(positions)
    ):
        if attachment.uploaded_by is not None:
            # A person chose to attach these bytes to a case (evidence): that copy is the
            # incident's now, readable by its staff only, and it stays.
            kept.extend(
                {
                    "position": position,
                    "incident_id": attachment.incident_id,
                    "attachment_id": attachment.id,
                    "uploaded_by": attachment.uploaded_by,
                }
                for position in positions[attachment.sha256]
            )
        elif attachment.uploaded_by_name == PHOTO_PRINCIPAL.name and (
            attachment.file_name.startswith(copy_prefix)
        ):
            # The copy this context made when the incident opened: it goes with the photo.
            removed.setdefault(attachment.incident_id, []).append(attachment.id)
            incident_service.delete_attachment(session=session, attachment=attachment)
    for incident_id, attachment_ids in removed.items():
        incident = incident_service.get(session=session, incident_id=incident_id)
        if incident is not None:
            incident_service.add_entry(
                session=session,
                incident=incident,
                at=now,
                kind=str(TimelineKind.UPDATED),
                actor=PHOTO_PRINCIPAL,
                note=ERASURE_NOTE[reason].format(code=report.tracking_code),
                data={"removed_attachment_ids": attachment_ids, "reason": reason},
            )
    if stored:
        service.delete_photos(session=session, report_id=report.id)
        _remove_files_after_commit(runtime, session, set(positions))
    media_url_removed = report.media_url is not None
    # The client's own photo address as well: it shows the same kind of picture.
    report.media_url = None
    summary: dict[str, Any] = {
        "reason": reason,
        "contacts_erased": had_contacts,
        "photos_deleted": sorted(p.position for p in stored),
        "media_url_removed": media_url_removed,
        "incident_copies_removed": [
            {"incident_id": key, "attachment_ids": ids} for key, ids in removed.items()
        ],
        "kept_as_evidence": kept,
    }
    auth_service.create_audit_entry(
        session=session,
        at=now,
        action="erase",
        resource_type="citizen_report",
        resource_id=report.tracking_code,
        actor=ERASURE_PRINCIPAL if reason == "retention" else None,
        actor_name="reporter",
        unit_code=report.unit_code,
        after=summary,
    )
    session.flush()
    return summary


def _remove_files_after_commit(runtime: Runtime, session: Session, sha256s: set[str]) -> None:
    # Files are not transactional: they go only once the erasure is committed, and only if
    # nothing else (another report's photo, a staff attachment) uses the same content.
    pending: set[str] = session.info.setdefault(_ORPHANS, set())
    pending.update(sha256s)
    if session.info.get(_ORPHANS_HOOKED):
        return
    session.info[_ORPHANS_HOOKED] = True

    def committed(done: Session) -> None:
        files = done.info.pop(_ORPHANS, set())
        if files:
            remove_unused_files(runtime=runtime, sha256s=files)

    def rolled_back(done: Session) -> None:
        done.info.pop(_ORPHANS, None)

    sa_event.listen(session, "after_commit", committed)
    sa_event.listen(session, "after_rollback", rolled_back)


def remove_unused_files(*, runtime: Runtime, sha256s: set[str]) -> list[str]:
    """Delete stored contents no report photo or incident attachment uses; return them."""
    from cityops.core.db import unit_of_work

    with unit_of_work(runtime.session_factory) as session:
        used = service.get_photo_references(session=session, sha256s=sorted(sha256s))
        used |= {
            a.sha256
            for a in incident_service.get_attachments_by_sha256(
                session=session, sha256s=sorted(sha256s)
            )
        }
    gone = sorted(sha256s - used)
    for sha256 in gone:
        incident_files.path_of(runtime.settings.data_dir, sha256).unlink(missing_ok=True)
    return gone


# --- the public page: photos, following a duplicate, history in the reader's language --------


def photo_url(settings: Any, tracking_code: str, position: int) -> str:
    """Return the public address of a report's photo (the Open311 `media_url`)."""
    base = settings.public_url.rstrip("/")
    return f"{base}/api/v1/citizen/reports/{tracking_code}/photos/{position}"


def check_photos(*, runtime: Runtime, uploads: list[bytes]) -> list[photos.Photo]:
    """Check up to three photos and return them without metadata (4xx naming `photos`)."""
    if len(uploads) > photos.MAX_PHOTOS:
        raise _invalid([_error("photos", "citizen.photo.too_many", limit=photos.MAX_PHOTOS)])
    limit = runtime.settings.citizen_photo_max_bytes
    cleaned: list[photos.Photo] = []
    for index, content in enumerate(uploads, start=1):
        if len(content) > limit:
            raise incident_files.PayloadTooLarge(
                "citizen.photo.too_large",
                errors=[
                    _error(
                        "photos",
                        "citizen.photo.too_large",
                        number=index,
                        megabytes=f"{limit / 1048576:.0f}",
                    )
                ],
                number=index,
                megabytes=f"{limit / 1048576:.0f}",
            )
        if not content:
            raise _invalid([_error("photos", "citizen.photo.empty", number=index)])
        try:
            cleaned.append(photos.clean(content))
        except photos.PhotoError as exc:
            raise _invalid([_error("photos", exc.key, number=index)]) from None
    return cleaned


def plan_public(
    *,
    runtime: Runtime,
    session: Session,
    sub: Submission,
    uploads: list[bytes],
    language: str,
    consent: bool,
) -> tuple[Plan, list[photos.Photo]]:
    """Check a report from the public page: consent given, photos cleaned, the EXIF position
    used when the place is not pinned; return its plan and its cleaned photos."""
    if not consent and any(getattr(sub, name) for name in CONTACT_FIELDS):
        # Law 91/2025/QH15: contact details are processed only with the reporter's consent.
        raise _invalid([_error("consent", "citizen.field.consent")])
    cleaned = check_photos(runtime=runtime, uploads=uploads)
    if sub.lat is None and sub.long is None:
        # Not pinned: where the first geotagged photo was taken.
        place = next((p.gps for p in cleaned if p.gps is not None), None)
        if place is not None:
            sub.lat, sub.long = f"{place[0]:.6f}", f"{place[1]:.6f}"
    plan = plan_report(runtime=runtime, session=session, sub=sub, client_id=None, language=language)
    return plan, cleaned


def add_photos(
    *, runtime: Runtime, session: Session, report: Report, cleaned: list[photos.Photo]
) -> list[ReportPhoto]:
    """Store a report's photos (content once, by SHA-256) and attach them to its incident.

    `report` may be one `write_reports` just inserted (not in the session): it is loaded."""
    if report not in session:
        loaded = service.get(session=session, report_id=report.id)
        assert loaded is not None  # written in this transaction
        report = loaded
    now = runtime.clock.now()
    stored: list[tuple[ReportPhoto, bytes]] = []
    for position, photo in enumerate(cleaned, start=1):
        sha256 = incident_files.store(runtime.settings.data_dir, photo.content)
        row = service.create_photo(
            session=session,
            report=report,
            position=position,
            content_type=photo.content_type,
            size=len(photo.content),
            width=photo.width,
            height=photo.height,
            sha256=sha256,
            at=now,
        )
        stored.append((row, photo.content))
    if report.media_url is None:
        report.media_url = photo_url(runtime.settings, report.tracking_code, 1)
    if report.incident_id is not None:
        _attach_photos(runtime=runtime, session=session, report=report, items=stored)
    session.flush()
    return [row for row, _ in stored]


def _attach_photos(
    *,
    runtime: Runtime,
    session: Session,
    report: Report,
    items: list[tuple[ReportPhoto, bytes]],
) -> None:
    incident = (
        incident_service.get(session=session, incident_id=report.incident_id)
        if report.incident_id is not None
        else None
    )
    if incident is None:
        return
    for row, content in items:
        if len(content) > runtime.settings.attachment_max_bytes:
            # A re-encoded PNG can outgrow the attachment limit: staff still have photo_urls.
            continue
        incidents_flows.add_attachment(
            runtime=runtime,
            session=session,
            principal=PHOTO_PRINCIPAL,
            incident=incident,
            file_name=f"{report.tracking_code}-{row.position}.{photos.EXTENSIONS[row.content_type]}",
            content=content,
        )


def link_duplicate(
    *, runtime: Runtime, session: Session, report: Report, original: Report
) -> Report:
    """Link a report to another's incident (staff): both reporters then get the same updates."""
    while original.duplicate_of is not None:
        parent = service.get(session=session, report_id=original.duplicate_of)
        if parent is None:
            break
        original = parent
    if original.id == report.id:
        raise Conflict("citizen.link.same", code=report.tracking_code)
    if report.duplicate_of is not None:
        raise Conflict("citizen.link.already", code=report.tracking_code)
    if original.incident_id is None or original.moderation == Moderation.HIDDEN:
        raise Conflict("citizen.link.no_incident", code=original.tracking_code)
    if service.get_by_duplicate(session=session, report_id=report.id):
        raise Conflict("citizen.link.has_duplicates", code=report.tracking_code)
    now = runtime.clock.now()
    report.duplicate_of = original.id
    report.incident_id, report.incident_code = original.incident_id, original.incident_code
    report.expected_at = original.expected_at
    report.status = original.status
    report.closed_at = original.closed_at
    report.status_notes = original.status_notes
    report.updated_at = now
    text = f"Gộp với phản ánh {original.tracking_code}"
    service.add_note(
        session=session, report=report, at=now, kind=NoteKind.DUPLICATE, description=text
    )
    photos_of = service.get_photos(session=session, report_id=report.id)
    if photos_of:
        data_dir = runtime.settings.data_dir
        _attach_photos(
            runtime=runtime,
            session=session,
            report=report,
            items=[(p, incident_files.path_of(data_dir, p.sha256).read_bytes()) for p in photos_of],
        )
    _tell_reporters(
        runtime=runtime,
        session=session,
        reports=[report],
        text=text,
        text_en=f"Linked to report {original.tracking_code}",
        at=now,
    )
    session.flush()
    return report


_STATUS_EN = dict(STATUS_TEXT.values())
_LINKED = re.compile(r"^Gộp với phản ánh (PA-[A-Z0-9-]{4,12})$")


def note_text(note: ReportNote, language: str) -> str:
    """Return a history note in the reader's language (staff comments stay as written)."""
    if language != "en":
        return note.description
    if note.kind == NoteKind.RECEIVED:
        return "Received"
    if note.kind == NoteKind.STATUS:
        return _STATUS_EN.get(note.description, note.description)
    if note.kind == NoteKind.DUPLICATE:
        match = _LINKED.match(note.description)
        return f"Linked to report {match.group(1)}" if match else note.description
    return note.description


def status_text(status: str, language: str) -> str:
    """Return an incident status in words, in the reader's language."""
    vi, en = STATUS_TEXT.get(status, (status, status))
    return en if language == "en" else vi


# --- profile ---------------------------------------------------------------------------------


def load_catalogue(profile: str) -> list[dict[str, Any]]:
    """Read the profile's service catalogue (profiles/<name>/citizen/services.yaml)."""
    path = resources.files("cityops.profiles") / profile / "citizen" / "services.yaml"
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return list(data.get("services", []))


def service_fields(item: Mapping[str, Any], position: int) -> dict[str, Any]:
    """Turn a catalogue entry into the columns of a service."""
    attributes = []
    for order, attr in enumerate(item.get("attributes", []), start=1):
        attributes.append(
            {
                "code": str(attr["code"]),
                "variable": bool(attr.get("variable", True)),
                "datatype": str(AttributeType(attr.get("datatype", "string"))),
                "required": bool(attr.get("required", False)),
                "datatype_description": str(attr.get("datatype_description", "")),
                "order": int(attr.get("order", order)),
                "description": str(attr["description"]),
                "description_en": str(attr.get("description_en", attr["description"])),
                "values": [
                    {
                        "key": str(v["key"]),
                        "name": str(v["name"]),
                        "name_en": str(v.get("name_en", v["name"])),
                    }
                    for v in attr.get("values", [])
                ],
            }
        )
    return {
        "code": str(item["code"]),
        "name": str(item["name"]),
        "name_en": str(item["name_en"]),
        "description": str(item.get("description", "")),
        "description_en": str(item.get("description_en", "")),
        "group": str(item["group"]),
        "group_en": str(item.get("group_en", item["group"])),
        "keywords": str(item.get("keywords", "")),
        "department_code": str(item["department"]),
        "incident_category": str(item["incident_category"]),
        "severity": str(item.get("severity", "medium")),
        "sla_hours": int(item["sla_hours"]),
        "attributes": attributes,
        "is_active": True,
        "position": position,
    }


def seed_profile(*, session: Session, profile: str, clock: Clock) -> dict[str, int]:
    """Add the profile's services that are missing (services admins edited stay as they are)."""
    added = 0
    for position, item in enumerate(load_catalogue(profile), start=1):
        if service.get_service(session=session, service_code=str(item["code"])) is not None:
            continue
        fields = service_fields(item, position)
        department = fields["department_code"]
        if unit_service.get_department(session=session, department_code=department) is None:
            raise ValueError(f"citizen service {fields['code']}: unknown department {department}")
        service.create_service(session=session, service_in=fields, clock=clock)
        added += 1
    return {"citizen_services": added}
