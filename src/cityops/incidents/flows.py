"""Orchestration of the incidents context: creating incidents (by hand or from an alert), the
workflow with its permissions, SLA deadlines and escalation, comments, attachments, events,
and the seeding of the profile's categories, policies and holidays.

Every function works inside the caller's transaction and publishes its events after commit.
`install(runtime)` subscribes this context to the alerts' events at start-up.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from cityops.auth import service as auth_service
from cityops.auth.enums import Role, role_permissions
from cityops.core.clock import Clock
from cityops.core.errors import Conflict, Invalid
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import GLOBAL_SCOPE, SYSTEM_PRINCIPAL, Permission, Principal, Scope
from cityops.incidents import calendar, files, service
from cityops.incidents.enums import (
    ASSIGNABLE_STATUSES,
    OPEN_STATUSES,
    TRANSITIONS,
    AlertEvent,
    HolidayKind,
    IncidentEvent,
    IncidentSource,
    IncidentStatus,
    Severity,
    SlaDeadline,
    TimelineKind,
)
from cityops.incidents.models import (
    Holiday,
    Incident,
    IncidentAttachment,
    IncidentCategory,
    IncidentComment,
    SlaPolicy,
)
from cityops.incidents.schemas import AssignIn, IncidentCreate, IncidentUpdate
from cityops.incidents.service import field_error
from cityops.units import service as unit_service

log = logging.getLogger(__name__)

SLA_JOB = "incidents.check_sla"
SLA_EVERY_SECONDS = 30.0
# Incidents handled per deadline kind in one run of the SLA job: bounded transactions.
SLA_BATCH = 500
MAX_ESCALATION = 2
FALLBACK_CATEGORY = "other"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def install(runtime: Runtime) -> None:
    """Subscribe the incidents context to the alerts' events (inside their transaction)."""

    def opened(session: Session, event: Event) -> None:
        on_alert_opened(runtime=runtime, session=session, event=event)

    def resolved(session: Session, event: Event) -> None:
        on_alert_resolved(runtime=runtime, session=session, event=event)

    runtime.bus.subscribe_in_transaction(AlertEvent.OPENED, opened)
    runtime.bus.subscribe_in_transaction(AlertEvent.RESOLVED, resolved)


# --- helpers ---------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _actor_id(principal: Principal | None) -> int | None:
    return principal.id if principal is not None and principal.kind == "user" else None


def _correlation_id(session: Session) -> str:
    # A request's id follows its events, so a notification can be traced to the click.
    return _request_id(session.info.get("request")) or uuid.uuid4().hex


def _request_id(request: Any) -> str | None:
    request_id = getattr(getattr(request, "state", None), "request_id", None)
    return str(request_id) if request_id else None


def event_data(
    incident: Incident,
    *,
    change: str,
    previous_status: str | None = None,
    actor: Principal | None = None,
    note: str | None = None,
    public: bool | None = None,
    notify_user_ids: Sequence[int] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Return the payload of an incidents event (the keys of the operations event contract)."""
    return {
        "incident_id": incident.id,
        "code": incident.code,
        "title": incident.title,
        "status": incident.status,
        "previous_status": previous_status,
        "change": change,
        "severity": incident.severity,
        "category": incident.category_code,
        "sector": incident.sector,
        "unit_code": incident.unit_code,
        "department_code": incident.department_code,
        "department_codes": incident.department_codes,
        "assignee_id": incident.assignee_id,
        "alert_id": incident.alert_id,
        "lat": incident.lat,
        "lon": incident.lon,
        "due_ack_at": _iso(incident.due_ack_at),
        "due_resolve_at": _iso(incident.due_resolve_at),
        "escalation_level": incident.escalation_level,
        "actor_id": _actor_id(actor),
        "note": note,
        "public": public,
        "notify_user_ids": list(notify_user_ids),
        **extra,
    }


def publish(
    *,
    runtime: Runtime,
    session: Session,
    event_type: IncidentEvent,
    data: dict[str, Any],
    at: datetime,
    correlation_id: str | None = None,
) -> None:
    """Publish an incidents event once the transaction commits."""
    runtime.bus.publish_after_commit(
        session,
        Event(
            type=str(event_type),
            data=data,
            at=at,
            correlation_id=correlation_id or _correlation_id(session),
        ),
    )


def work_calendar(*, runtime: Runtime, session: Session) -> calendar.WorkCalendar:
    """Return the working calendar: the profile's working hours and the holiday table."""

    def build() -> calendar.WorkCalendar:
        hours = calendar.load_working_hours(runtime.settings.profile)
        return calendar.build_calendar(hours, service.get_calendar_exceptions(session=session))

    return runtime.reference.get(session, "incidents:calendar", ("holiday",), build)


def deadlines(
    *,
    runtime: Runtime,
    session: Session,
    category_code: str,
    severity: str,
    start: datetime,
) -> tuple[datetime | None, datetime | None]:
    """Return the acknowledgement and resolution deadlines of the applicable SLA policy."""
    policies = runtime.reference.get(
        session,
        "incidents:policies",
        ("sla_policy",),
        lambda: service.policy_terms(session=session),
    )
    policy = policies.get((category_code, severity)) or policies.get((None, severity))
    if policy is None:
        return None, None
    work = work_calendar(runtime=runtime, session=session) if policy.business_hours else None
    if work is None:
        hours = calendar.load_working_hours(runtime.settings.profile)
        work = calendar.WorkCalendar(hours=hours)

    def due(minutes: int) -> datetime:
        return calendar.deadline(
            start=start, minutes=minutes, business_hours=policy.business_hours, calendar=work
        )

    return due(policy.ack_minutes), due(policy.resolve_minutes)


def _local_year(runtime: Runtime, at: datetime) -> int:
    return at.astimezone(ZoneInfo(runtime.settings.timezone)).year


def _invalid(errors: list[dict[str, Any]]) -> Invalid:
    return Invalid("incidents.invalid", errors=errors, count=len(errors))


def _resolve_unit(
    *,
    runtime: Runtime,
    session: Session,
    unit_code: str | None,
    lat: float | None,
    lon: float | None,
) -> str | None:
    if unit_code is not None:
        if not unit_service.unit_exists(
            session=session, unit_code=unit_code, caches=runtime.caches
        ):
            raise _invalid([field_error("unit_code", "incidents.unit.unknown", code=unit_code)])
        return unit_code
    if lat is None or lon is None:
        return None
    return unit_service.locate_code(session=session, lat=lat, lon=lon, caches=runtime.caches)


def _supporting(main: str | None, codes: Sequence[str]) -> list[str]:
    return [code for code in dict.fromkeys(codes) if code != main]


def _check_department_fields(
    runtime: Runtime, session: Session, main: str | None, supporting: Sequence[str]
) -> None:
    # Field names point into the request as sent (before duplicates are dropped).
    fields = [("department_code", main)] if main is not None else []
    fields += [(f"supporting_department_codes[{i}]", c) for i, c in enumerate(supporting)]
    if not fields:
        return
    known = runtime.reference.get(
        session,
        "units:department_codes",
        ("department",),
        lambda: unit_service.get_department_codes(session=session),
    )
    service.check_departments(session=session, fields=fields, known=known)


def _active_category(runtime: Runtime, session: Session, code: str, field: str) -> Any:
    categories = runtime.reference.get(
        session,
        "incidents:categories",
        ("incident_category",),
        lambda: service.category_terms(session=session),
    )
    category = categories.get(code)
    if category is None:
        raise _invalid([field_error(field, "incidents.category.unknown", code=code)])
    if not category.is_active:
        raise _invalid([field_error(field, "incidents.category.retired", code=code)])
    return category


# --- creation --------------------------------------------------------------------------------


def create_incident(
    *, runtime: Runtime, session: Session, principal: Principal, incident_in: IncidentCreate
) -> Incident:
    """Open an incident by hand (or for an alert, when `alert_id` is given); status `new`."""
    [created] = create_incidents(
        runtime=runtime, session=session, principal=principal, incidents_in=[incident_in]
    )
    loaded = service.get(session=session, incident_id=created.id)
    assert loaded is not None  # inserted just now, in this transaction
    return loaded


def create_incidents(
    *,
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incidents_in: Sequence[IncidentCreate],
    requests: Sequence[Any] | None = None,
) -> list[Incident]:
    """Open several incidents at once (citizen reports arriving together): each is checked as
    `create_incident` checks one, then all are written with one statement per table.

    The incidents returned are not in the session (load one with `service.get` to change it).
    `requests`: the request each incident comes from (its audit rows and its event's
    correlation id name it), when they are not the session's one request.
    """
    if not incidents_in:
        return []
    now = runtime.clock.now()
    drafts = [_draft(runtime, session, principal, item, now) for item in incidents_in]
    year = _local_year(runtime, now)
    entries = []
    for incident in drafts:
        incident.code = service.next_code(session=session, year=year)
        entries.append(
            service.new_entry(
                incident=incident,
                at=now,
                kind=TimelineKind.CREATED,
                actor=principal,
                to_status=incident.status,
                data={
                    "source": incident.source,
                    "alert_id": incident.alert_id,
                    "category_code": incident.category_code,
                    "severity": incident.severity,
                    "unit_code": incident.unit_code,
                    "department_code": incident.department_code,
                },
            )
        )
    service.insert_many(
        session=session, incidents=drafts, entries=entries, now=now, requests=requests
    )
    for index, incident in enumerate(drafts):
        publish(
            runtime=runtime,
            session=session,
            event_type=IncidentEvent.CREATED,
            data=event_data(incident, change="created", actor=principal),
            at=now,
            correlation_id=_request_id(requests[index]) if requests else None,
        )
    return drafts


def _draft(
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident_in: IncidentCreate,
    now: datetime,
) -> Incident:
    # Every check of a new incident, and the incident itself (code still to give).
    principal.check(Permission.INCIDENT_CREATE)
    category = _active_category(runtime, session, incident_in.category_code, "category_code")
    main = incident_in.department_code or category.department_code
    _check_department_fields(
        runtime, session, incident_in.department_code, incident_in.supporting_department_codes
    )
    supporting = _supporting(main, incident_in.supporting_department_codes)
    if incident_in.alert_id is not None:
        existing = service.get_by_alert_id(session=session, alert_id=incident_in.alert_id)
        if existing is not None:
            raise Conflict(
                "incidents.alert.already_open", alert_id=incident_in.alert_id, code=existing.code
            )
    unit_code = _resolve_unit(
        runtime=runtime,
        session=session,
        unit_code=incident_in.unit_code,
        lat=incident_in.lat,
        lon=incident_in.lon,
    )
    severity = str(incident_in.severity or category.default_severity)
    due_ack, due_resolve = deadlines(
        runtime=runtime, session=session, category_code=category.code, severity=severity, start=now
    )
    incident = service.new(
        service.NewIncident(
            code="",
            title=incident_in.title,
            description=incident_in.description,
            category_code=category.code,
            sector=category.sector,
            severity=severity,
            status=str(IncidentStatus.NEW),
            source=str(
                IncidentSource.ALERT if incident_in.alert_id is not None else IncidentSource.MANUAL
            ),
            alert_id=incident_in.alert_id,
            source_ref=incident_in.source_ref,
            lat=incident_in.lat,
            lon=incident_in.lon,
            unit_code=unit_code,
            department_code=main,
            supporting_department_codes=supporting,
            assignee_id=None,
            created_by=_actor_id(principal),
            created_at=now,
            due_ack_at=due_ack,
            due_resolve_at=due_resolve,
        )
    )
    if not service.can_see(scope=principal.scope, incident=incident):
        # Nobody opens an incident they could not follow: outside their units or department.
        raise Invalid(
            "incidents.scope.outside",
            errors=[field_error("unit_code", "incidents.scope.outside_field")],
        )
    return incident


def _finite(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and low <= number <= high else None


def _one_line(value: Any, limit: int) -> str:
    return _CONTROL.sub(" ", str(value)).strip()[:limit] if value is not None else ""


def on_alert_opened(*, runtime: Runtime, session: Session, event: Event) -> Incident | None:
    """Open an incident for an alert whose rule asks for one; at most one per alert.

    Runs inside the alert's transaction: the incident exists exactly when the alert does. Data
    that does not fit (unknown category, department or unit) falls back to defaults rather than
    failing the alert.
    """
    data = event.data
    policy = data.get("policy")
    wanted = policy.get("incident") if isinstance(policy, dict) else None
    alert_id = data.get("alert_id")
    if not isinstance(wanted, dict):
        return None
    if not isinstance(alert_id, int) or isinstance(alert_id, bool) or alert_id < 1:
        log.warning("alert event without a usable alert_id", extra={"alert_id": alert_id})
        return None
    if service.get_by_alert_id(session=session, alert_id=alert_id) is not None:
        return None
    category = service.get_category(session=session, category_code=str(wanted.get("category")))
    if category is None or not category.is_active:
        category = service.get_category(session=session, category_code=FALLBACK_CATEGORY)
    if category is None:
        log.error("no category for an alert's incident", extra={"alert_id": alert_id})
        return None
    main = wanted.get("department_code")
    if not (
        isinstance(main, str)
        and unit_service.get_department(session=session, department_code=main) is not None
    ):
        main = category.department_code
    severity = data.get("severity")
    if severity not in set(Severity):
        severity = category.default_severity
    lat = _finite(data.get("lat"), -90, 90)
    lon = _finite(data.get("lon"), -180, 180)
    if lat is None or lon is None:
        lat = lon = None
    unit_code = data.get("unit_code")
    if not (isinstance(unit_code, str) and unit_service.get(session=session, unit_code=unit_code)):
        unit_code = _resolve_unit(
            runtime=runtime, session=session, unit_code=None, lat=lat, lon=lon
        )
    rule_code = _one_line(data.get("rule_code"), 100) or None
    title = _one_line(data.get("title_vi") or data.get("title_en"), 300) or category.name
    details = [
        _one_line(data.get("title_en"), 300),
        " · ".join(
            part
            for part in (
                f"rule {rule_code}" if rule_code else "",
                _one_line(data.get("entity_id"), 256),
                f"{_one_line(data.get('attribute'), 100)} = {_one_line(data.get('value'), 100)}"
                if data.get("attribute")
                else "",
            )
            if part
        ),
    ]
    now = runtime.clock.now()
    due_ack, due_resolve = deadlines(
        runtime=runtime,
        session=session,
        category_code=category.code,
        severity=str(severity),
        start=now,
    )
    status = IncidentStatus.ASSIGNED if main is not None else IncidentStatus.NEW
    incident = service.create(
        session=session,
        incident_in=service.NewIncident(
            code=service.next_code(session=session, year=_local_year(runtime, now)),
            title=title,
            description="\n".join(d for d in details if d) or None,
            category_code=category.code,
            sector=category.sector,
            severity=str(severity),
            status=str(status),
            source=str(IncidentSource.ALERT),
            alert_id=alert_id,
            source_ref=f"rule:{rule_code}" if rule_code else None,
            lat=lat,
            lon=lon,
            unit_code=unit_code,
            department_code=main,
            supporting_department_codes=[],
            assignee_id=None,
            created_by=None,
            created_at=now,
            due_ack_at=due_ack,
            due_resolve_at=due_resolve,
        ),
    )
    by = f"rule:{rule_code}" if rule_code else "rule"
    alert_facts = {
        "alert_id": alert_id,
        "rule_id": data.get("rule_id"),
        "rule_code": rule_code,
        "entity_id": data.get("entity_id"),
        "attribute": data.get("attribute"),
        "value": data.get("value"),
    }
    service.add_entry(
        session=session,
        incident=incident,
        at=now,
        kind=TimelineKind.CREATED,
        actor=SYSTEM_PRINCIPAL,
        actor_name=by,
        to_status=str(IncidentStatus.NEW),
        data={
            "source": incident.source,
            "category_code": category.code,
            "severity": incident.severity,
            "unit_code": unit_code,
            **alert_facts,
        },
    )
    if main is not None:
        service.add_entry(
            session=session,
            incident=incident,
            at=now,
            kind=TimelineKind.ASSIGNED,
            actor=SYSTEM_PRINCIPAL,
            actor_name=by,
            from_status=str(IncidentStatus.NEW),
            to_status=str(IncidentStatus.ASSIGNED),
            data={
                "department_code": main,
                "supporting_department_codes": [],
                "assignee_id": None,
                "assigned_by_rule": rule_code or True,
            },
        )
    publish(
        runtime=runtime,
        session=session,
        event_type=IncidentEvent.CREATED,
        data=event_data(incident, change="created"),
        at=now,
        correlation_id=event.correlation_id,
    )
    return incident


def on_alert_resolved(*, runtime: Runtime, session: Session, event: Event) -> None:
    """Note in the linked incident's timeline that its alert cleared (the incident stays open)."""
    alert_id = event.data.get("alert_id")
    if not isinstance(alert_id, int) or isinstance(alert_id, bool):
        return
    incident = service.get_by_alert_id(session=session, alert_id=alert_id)
    if incident is None:
        return
    service.add_entry(
        session=session,
        incident=incident,
        at=runtime.clock.now(),
        kind=TimelineKind.ALERT_CLEARED,
        actor=SYSTEM_PRINCIPAL,
        actor_name="alerts",
        data={
            "alert_id": alert_id,
            "resolved_at": event.data.get("resolved_at"),
            "alert_actor_id": event.data.get("actor_id"),
        },
    )


# --- workflow --------------------------------------------------------------------------------


def allowed_next(incident: Incident) -> list[IncidentStatus]:
    """Return the statuses the workflow allows next from the incident's status."""
    return sorted(TRANSITIONS.get(IncidentStatus(incident.status), {}))


def _invalid_transition(incident: Incident, to: str) -> Conflict:
    allowed = [str(s) for s in allowed_next(incident)]
    return Conflict(
        "incidents.transition.invalid",
        errors=[
            {
                **field_error(
                    "to",
                    "incidents.transition.not_allowed",
                    current=incident.status,
                    allowed=", ".join(allowed) or "—",
                ),
                "current_status": incident.status,
                "allowed": allowed,
            }
        ],
        code=incident.code,
        current=incident.status,
        to=to,
        allowed=", ".join(allowed) or "—",
    )


def _check_assignee(
    session: Session, incident: Incident, assignee_id: int, *, field: str = "assignee_id"
) -> None:
    user = auth_service.get(session=session, user_id=assignee_id)
    if user is None or not user.is_active:
        raise _invalid([field_error(field, "incidents.assignee.unknown", id=assignee_id)])
    if Permission.INCIDENT_WORK not in role_permissions(user.role):
        raise _invalid([field_error(field, "incidents.assignee.cannot_work", id=assignee_id)])
    scope = auth_service.user_scope(session=session, user=user)
    # The assignee belongs to a responsible department or is scoped to the incident's unit:
    # exactly the people who can see the incident.
    if not service.can_see(scope=scope, incident=incident):
        raise _invalid([field_error(field, "incidents.assignee.out_of_scope", id=assignee_id)])


def assign(
    *,
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident: Incident,
    assign_in: AssignIn,
) -> Incident:
    """Set the main and supporting departments and the assignee; `new` becomes `assigned`."""
    principal.check(Permission.INCIDENT_ASSIGN)
    if incident.status not in ASSIGNABLE_STATUSES:
        raise Conflict("incidents.assign.not_open", code=incident.code, current=incident.status)
    main = assign_in.department_code
    _check_department_fields(runtime, session, main, assign_in.supporting_department_codes)
    supporting = _supporting(main, assign_in.supporting_department_codes)
    before = {
        "department_code": incident.department_code,
        "supporting_department_codes": incident.supporting_department_codes,
        "assignee_id": incident.assignee_id,
    }
    service.set_departments(incident=incident, main=main, supporting=supporting)
    if assign_in.assignee_id is not None:
        _check_assignee(session, incident, assign_in.assignee_id)
    incident.assignee_id = assign_in.assignee_id
    after = {
        "department_code": main,
        "supporting_department_codes": sorted(supporting),
        "assignee_id": assign_in.assignee_id,
    }
    previous = incident.status
    first = previous == IncidentStatus.NEW
    if not first and after == before:
        return incident
    now = runtime.clock.now()
    if first:
        service.set_status(incident, str(IncidentStatus.ASSIGNED))
    incident.updated_at = now
    kind = TimelineKind.ASSIGNED if first else TimelineKind.REASSIGNED
    service.add_entry(
        session=session,
        incident=incident,
        at=now,
        kind=kind,
        actor=principal,
        from_status=previous if first else None,
        to_status=incident.status if first else None,
        note=assign_in.note,
        data={**after, "previous": before},
    )
    session.flush()
    publish(
        runtime=runtime,
        session=session,
        event_type=IncidentEvent.CHANGED,
        data=event_data(
            incident,
            change=str(kind),
            previous_status=previous,
            actor=principal,
            note=assign_in.note,
        ),
        at=now,
    )
    return incident


def transition(
    *,
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident: Incident,
    to: IncidentStatus,
    note: str | None,
) -> Incident:
    """Move an incident along its workflow, with the permission and note each step needs."""
    step = TRANSITIONS.get(IncidentStatus(incident.status), {}).get(to)
    if step is None:
        raise _invalid_transition(incident, str(to))
    text = (note or "").strip() or None
    if to == IncidentStatus.ASSIGNED:
        if incident.department_code is None:
            raise _invalid([field_error("to", "incidents.assign.department_required")])
        return assign(
            runtime=runtime,
            session=session,
            principal=principal,
            incident=incident,
            assign_in=AssignIn(
                department_code=incident.department_code,
                supporting_department_codes=incident.supporting_department_codes,
                assignee_id=incident.assignee_id,
                note=text,
            ),
        )
    principal.check(step.permission)
    if step.note_required and text is None:
        key = (
            "incidents.transition.reason_required"
            if step.kind == TimelineKind.REOPENED
            else "incidents.transition.note_required"
        )
        raise _invalid([field_error("note", key)])
    now = runtime.clock.now()
    previous = incident.status
    if step.kind == TimelineKind.STARTED:
        if incident.acknowledged_at is None:
            incident.acknowledged_at = now
        if incident.assignee_id is None and principal.kind == "user":
            # Whoever starts the work takes it, unless someone was named.
            incident.assignee_id = principal.id
    elif step.kind == TimelineKind.RESOLVED:
        incident.resolved_at = now
    elif step.kind == TimelineKind.CLOSED:
        incident.closed_at = now
    elif step.kind == TimelineKind.REOPENED:
        incident.resolved_at = None
        incident.closed_at = None
    service.set_status(incident, str(to))
    incident.updated_at = now
    service.add_entry(
        session=session,
        incident=incident,
        at=now,
        kind=step.kind,
        actor=principal,
        from_status=previous,
        to_status=incident.status,
        note=text,
        data={"assignee_id": incident.assignee_id} if step.kind == TimelineKind.STARTED else {},
    )
    session.flush()
    publish(
        runtime=runtime,
        session=session,
        event_type=IncidentEvent.CHANGED,
        data=event_data(
            incident, change=str(step.kind), previous_status=previous, actor=principal, note=text
        ),
        at=now,
    )
    return incident


def update_incident(
    *,
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident: Incident,
    incident_in: IncidentUpdate,
) -> Incident:
    """Edit an open incident: title and description (work), severity and category (assign).

    A new severity or category recomputes the deadlines from the creation time.
    """
    if incident.status not in OPEN_STATUSES:
        raise Conflict("incidents.update.not_open", code=incident.code, current=incident.status)
    data = incident_in.model_dump(mode="json", exclude_unset=True)
    for name in ("title", "severity", "category_code"):
        if name in data and data[name] is None:
            raise _invalid([field_error(name, "incidents.field.required", field=name)])
    if {"severity", "category_code"} & set(data):
        principal.check(Permission.INCIDENT_ASSIGN)
    elif not (principal.can(Permission.INCIDENT_WORK) or principal.can(Permission.INCIDENT_ASSIGN)):
        principal.check(Permission.INCIDENT_WORK)
    changes: dict[str, list[Any]] = {}
    if "category_code" in data and data["category_code"] != incident.category_code:
        category = _active_category(runtime, session, data["category_code"], "category_code")
        changes["category_code"] = [incident.category_code, category.code]
        incident.category_code = category.code
        if incident.sector != category.sector:
            changes["sector"] = [incident.sector, category.sector]
            incident.sector = category.sector
    if "severity" in data and data["severity"] != incident.severity:
        changes["severity"] = [incident.severity, data["severity"]]
        incident.severity = data["severity"]
    if "title" in data and data["title"] != incident.title:
        changes["title"] = [incident.title, data["title"]]
        service.set_title(incident, data["title"])
    if "description" in data and data["description"] != incident.description:
        changes["description"] = [incident.description, data["description"]]
        incident.description = data["description"]
    if not changes:
        return incident
    now = runtime.clock.now()
    if {"severity", "category_code"} & set(changes):
        due_ack, due_resolve = deadlines(
            runtime=runtime,
            session=session,
            category_code=incident.category_code,
            severity=incident.severity,
            start=incident.created_at,
        )
        changes["due_ack_at"] = [_iso(incident.due_ack_at), _iso(due_ack)]
        changes["due_resolve_at"] = [_iso(incident.due_resolve_at), _iso(due_resolve)]
        incident.due_ack_at, incident.due_resolve_at = due_ack, due_resolve
        service.refresh_overdue_at(incident)
    incident.updated_at = now
    service.add_entry(
        session=session,
        incident=incident,
        at=now,
        kind=TimelineKind.UPDATED,
        actor=principal,
        data={"changes": changes},
    )
    publish(
        runtime=runtime,
        session=session,
        event_type=IncidentEvent.CHANGED,
        data=event_data(
            incident,
            change=str(TimelineKind.UPDATED),
            previous_status=incident.status,
            actor=principal,
            fields=sorted(changes),
        ),
        at=now,
    )
    return incident


def add_comment(
    *,
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident: Incident,
    body: str,
    public: bool,
) -> IncidentComment:
    """Add a comment to an incident (by someone who works on incidents in its scope)."""
    principal.check(Permission.INCIDENT_WORK)
    now = runtime.clock.now()
    comment = service.create_comment(
        session=session, incident=incident, author=principal, body=body, public=public, at=now
    )
    incident.updated_at = now
    service.add_entry(
        session=session,
        incident=incident,
        at=now,
        kind=TimelineKind.COMMENTED,
        actor=principal,
        note=body,
        data={"comment_id": comment.id, "public": public},
    )
    publish(
        runtime=runtime,
        session=session,
        event_type=IncidentEvent.COMMENT_ADDED,
        data=event_data(
            incident,
            change=str(TimelineKind.COMMENTED),
            previous_status=incident.status,
            actor=principal,
            note=body,
            public=public,
            comment_id=comment.id,
        ),
        at=now,
    )
    return comment


def add_attachment(
    *,
    runtime: Runtime,
    session: Session,
    principal: Principal,
    incident: Incident,
    file_name: str | None,
    content: bytes,
) -> IncidentAttachment:
    """Attach an image or PDF: type sniffed from its bytes (415 otherwise), size limited (413)."""
    principal.check(Permission.INCIDENT_WORK)
    limit = runtime.settings.attachment_max_bytes
    if len(content) > limit:
        raise files.too_large(limit)
    if not content:
        raise _invalid([field_error("file", "incidents.attachment.empty")])
    content_type = files.sniff(content[:32])
    if content_type is None:
        raise files.UnsupportedMediaType(
            "incidents.attachment.type_refused", allowed=", ".join(files.ALLOWED_TYPES)
        )
    sha256 = files.store(runtime.settings.data_dir, content)
    now = runtime.clock.now()
    attachment = service.create_attachment(
        session=session,
        incident=incident,
        file_name=files.clean_name(file_name, content_type),
        content_type=content_type,
        size=len(content),
        sha256=sha256,
        uploader=principal,
        at=now,
    )
    incident.updated_at = now
    service.add_entry(
        session=session,
        incident=incident,
        at=now,
        kind=TimelineKind.ATTACHMENT_ADDED,
        actor=principal,
        data={
            "attachment_id": attachment.id,
            "file_name": attachment.file_name,
            "content_type": content_type,
            "size": attachment.size,
        },
    )
    return attachment


# --- SLA and escalation ----------------------------------------------------------------------


class EscalationTargets:
    """Who hears of an SLA breach: the superior level and the main department's head.

    The superior level is every active operator and leader whose scope has no department and
    covers the incident's unit (province-wide, or an area or unit containing it); the department
    head is an active leader scoped to the main department. Users are read once per job run.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._users: list[tuple[int, str, Scope]] | None = None

    def _load(self) -> list[tuple[int, str, Scope]]:
        if self._users is None:
            found: list[tuple[int, str, Scope]] = []
            for role in (Role.OPERATOR, Role.LEADER):
                users, _ = auth_service.get_all(
                    session=self._session, scope=GLOBAL_SCOPE, role=str(role), limit=10_000
                )
                for user in users:
                    if user.is_active:
                        scope = auth_service.user_scope(session=self._session, user=user)
                        found.append((user.id, user.role, scope))
            self._users = found
        return self._users

    def for_incident(self, incident: Incident) -> list[int]:
        """Return the ids of the users to notify of an escalation of this incident."""
        ids: set[int] = set()
        for user_id, role, scope in self._load():
            if not scope.covers_unit(incident.unit_code):
                continue
            superior = scope.department_code is None
            head = role == Role.LEADER and scope.department_code == incident.department_code
            if superior or head:
                ids.add(user_id)
        return sorted(ids)


def _breach(
    *,
    runtime: Runtime,
    session: Session,
    incident: Incident,
    deadline: SlaDeadline,
    now: datetime,
    targets: EscalationTargets,
) -> None:
    if deadline == SlaDeadline.ACK:
        incident.ack_breached = True
        due = incident.due_ack_at
    else:
        incident.resolve_breached = True
        due = incident.due_resolve_at
    incident.escalation_level = min(MAX_ESCALATION, incident.escalation_level + 1)
    incident.updated_at = now
    notify = targets.for_incident(incident)
    facts = {"deadline": str(deadline), "due_at": _iso(due)}
    service.add_entry(
        session=session,
        incident=incident,
        at=now,
        kind=TimelineKind.SLA_BREACHED,
        actor=SYSTEM_PRINCIPAL,
        actor_name="sla",
        data=facts,
    )
    service.add_entry(
        session=session,
        incident=incident,
        at=now,
        kind=TimelineKind.ESCALATED,
        actor=SYSTEM_PRINCIPAL,
        actor_name="sla",
        data={"level": incident.escalation_level, "notify_user_ids": notify, **facts},
    )
    correlation_id = uuid.uuid4().hex
    for event_type in (IncidentEvent.SLA_BREACHED, IncidentEvent.ESCALATED):
        publish(
            runtime=runtime,
            session=session,
            event_type=event_type,
            data=event_data(
                incident,
                change=str(TimelineKind.SLA_BREACHED)
                if event_type == IncidentEvent.SLA_BREACHED
                else str(TimelineKind.ESCALATED),
                previous_status=incident.status,
                notify_user_ids=notify,
                breach=str(deadline),
                due_at=_iso(due),
            ),
            at=now,
            correlation_id=correlation_id,
        )


def check_sla(*, runtime: Runtime, session: Session) -> int:
    """Mark newly breached deadlines, escalate, and publish; return how many were breached."""
    now = runtime.clock.now()
    targets = EscalationTargets(session)
    count = 0
    for incident in service.get_due_for_ack(session=session, now=now, limit=SLA_BATCH):
        _breach(
            runtime=runtime,
            session=session,
            incident=incident,
            deadline=SlaDeadline.ACK,
            now=now,
            targets=targets,
        )
        count += 1
    for incident in service.get_due_for_resolve(session=session, now=now, limit=SLA_BATCH):
        _breach(
            runtime=runtime,
            session=session,
            incident=incident,
            deadline=SlaDeadline.RESOLVE,
            now=now,
            targets=targets,
        )
        count += 1
    session.flush()
    return count


# --- seeding ---------------------------------------------------------------------------------


def _profile_rows(profile: str, filename: str) -> list[dict[str, str]]:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", profile):
        raise ValueError(f"not a profile name: {profile!r}")
    file = resources.files("cityops") / "profiles" / profile / filename
    if not file.is_file():
        return []
    text = file.read_text(encoding="utf-8-sig")
    return [
        {k.strip(): (v or "").strip() for k, v in row.items()}
        for row in csv.DictReader(io.StringIO(text))
    ]


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "x")


def seed_profile(*, session: Session, profile: str, clock: Clock) -> dict[str, int]:
    """Seed a profile's incident categories, SLA policies and holidays; a second run adds only
    what is missing (rows operators edited are left as they are)."""
    now = clock.now()
    counts = {"incident_categories": 0, "sla_policies": 0, "holidays": 0}
    add = session.add
    for row in _profile_rows(profile, "incident_categories.csv"):
        if service.get_category(session=session, category_code=row["code"]) is not None:
            continue
        department = row.get("department_code") or None
        if (
            department
            and unit_service.get_department(session=session, department_code=department) is None
        ):
            raise ValueError(f"category {row['code']}: unknown department {department!r}")
        add(
            IncidentCategory(
                code=row["code"],
                name=row["name"],
                name_en=row.get("name_en") or None,
                sector=row.get("sector") or None,
                department_code=department,
                default_severity=str(Severity(row.get("default_severity") or "medium")),
                is_active=True,
                created_at=now,
                updated_at=now,
            )
        )
        counts["incident_categories"] += 1
    session.flush()
    for row in _profile_rows(profile, "sla_policies.csv"):
        category = None if row["category"] in ("", "*") else row["category"]
        severity = str(Severity(row["severity"]))
        if (
            category is not None
            and service.get_category(session=session, category_code=category) is None
        ):
            raise ValueError(f"SLA policy for an unknown category {category!r}")
        existing, _ = service.get_all_policies(
            session=session, category_code=category, defaults_only=category is None, limit=100
        )
        if any(p.severity == severity for p in existing):
            continue
        add(
            SlaPolicy(
                category_code=category,
                severity=severity,
                ack_minutes=int(row["ack_minutes"]),
                resolve_minutes=int(row["resolve_minutes"]),
                business_hours=_flag(row.get("business_hours", "")),
                created_at=now,
                updated_at=now,
            )
        )
        counts["sla_policies"] += 1
        session.flush()
    for row in _profile_rows(profile, "holidays.csv"):
        day = date.fromisoformat(row["date"])
        if service.get_holiday(session=session, day=day) is not None:
            continue
        add(
            Holiday(
                day=day,
                kind=str(HolidayKind(row.get("kind") or "day_off")),
                name=row["name"],
                name_en=row.get("name_en") or None,
                created_at=now,
                updated_at=now,
            )
        )
        counts["holidays"] += 1
    session.flush()
    return counts
