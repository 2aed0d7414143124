"""Statuses, severities, sources, timeline kinds and event names of the incidents context."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cityops.core.security import Permission


class IncidentStatus(StrEnum):
    """Where an incident is in its workflow."""

    NEW = "new"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


# Statuses in which the incident still needs work (its SLA clock runs).
OPEN_STATUSES = (IncidentStatus.NEW, IncidentStatus.ASSIGNED, IncidentStatus.IN_PROGRESS)
# Statuses in which assignment may still change.
ASSIGNABLE_STATUSES = OPEN_STATUSES


class Severity(StrEnum):
    """How serious an incident is (shared with alerts)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class IncidentSource(StrEnum):
    """How an incident came to be."""

    MANUAL = "manual"
    ALERT = "alert"
    REPORT = "report"


class DepartmentRole(StrEnum):
    """What part a department plays in an incident."""

    MAIN = "main"
    SUPPORT = "support"


class HolidayKind(StrEnum):
    """A calendar exception: a weekday off, or a weekend day worked in exchange for one."""

    DAY_OFF = "day_off"
    WORKING_DAY = "working_day"


class SlaDeadline(StrEnum):
    """The two deadlines an SLA policy sets."""

    ACK = "ack"
    RESOLVE = "resolve"


class TimelineKind(StrEnum):
    """What a timeline entry records."""

    CREATED = "created"
    ASSIGNED = "assigned"
    REASSIGNED = "reassigned"
    STARTED = "started"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    UPDATED = "updated"
    COMMENTED = "commented"
    ATTACHMENT_ADDED = "attachment_added"
    SLA_BREACHED = "sla_breached"
    ESCALATED = "escalated"
    ALERT_CLEARED = "alert_cleared"


class IncidentEvent(StrEnum):
    """Events the incidents context publishes on the bus (after their transaction commits)."""

    CREATED = "incidents.incident_created"
    CHANGED = "incidents.incident_changed"
    COMMENT_ADDED = "incidents.comment_added"
    SLA_BREACHED = "incidents.sla_breached"
    ESCALATED = "incidents.incident_escalated"


class AlertEvent(StrEnum):
    """Events of the alerts context this context listens to."""

    OPENED = "alerts.alert_opened"
    RESOLVED = "alerts.alert_resolved"


@dataclass(frozen=True, slots=True)
class Step:
    """One allowed move of the workflow: the permission it needs and whether a note is required."""

    kind: TimelineKind
    permission: Permission
    note_required: bool = False


# The workflow: from a status, the statuses one may move to and what each move needs.
# Moving to "assigned" goes through assignment (departments, assignee): see flows.assign.
TRANSITIONS: dict[IncidentStatus, dict[IncidentStatus, Step]] = {
    IncidentStatus.NEW: {
        IncidentStatus.ASSIGNED: Step(TimelineKind.ASSIGNED, Permission.INCIDENT_ASSIGN),
    },
    IncidentStatus.ASSIGNED: {
        IncidentStatus.IN_PROGRESS: Step(TimelineKind.STARTED, Permission.INCIDENT_WORK),
    },
    IncidentStatus.IN_PROGRESS: {
        IncidentStatus.RESOLVED: Step(
            TimelineKind.RESOLVED, Permission.INCIDENT_WORK, note_required=True
        ),
    },
    IncidentStatus.RESOLVED: {
        IncidentStatus.CLOSED: Step(TimelineKind.CLOSED, Permission.INCIDENT_ASSIGN),
        IncidentStatus.IN_PROGRESS: Step(
            TimelineKind.REOPENED, Permission.INCIDENT_ASSIGN, note_required=True
        ),
    },
    IncidentStatus.CLOSED: {
        IncidentStatus.IN_PROGRESS: Step(
            TimelineKind.REOPENED, Permission.INCIDENT_ASSIGN, note_required=True
        ),
    },
}
