"""Vocabulary of the citizen context: report statuses, moderation states, note kinds, events."""

from __future__ import annotations

from enum import StrEnum


class ReportStatus(StrEnum):
    """Open311 status of a report."""

    OPEN = "open"
    CLOSED = "closed"


class Moderation(StrEnum):
    """Where a report is in moderation: not flagged, waiting for a moderator, hidden, approved."""

    NONE = "none"
    PENDING = "pending"
    HIDDEN = "hidden"
    APPROVED = "approved"


class NoteKind(StrEnum):
    """What a history note records."""

    RECEIVED = "received"
    STATUS = "status"
    COMMENT = "comment"
    DUPLICATE = "duplicate"


class AttributeType(StrEnum):
    """Open311 attribute data types."""

    STRING = "string"
    NUMBER = "number"
    DATETIME = "datetime"
    TEXT = "text"
    SINGLE = "singlevaluelist"
    MULTI = "multivaluelist"


class CitizenEvent(StrEnum):
    """Events the citizen context publishes (after commit)."""

    REPORT_CREATED = "citizen.report_created"
    REPORT_RATED = "citizen.report_rated"
