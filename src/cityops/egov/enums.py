"""Dossier states, channels, ratings, procedure levels and event names of the egov context."""

from __future__ import annotations

from enum import StrEnum


class DossierStatus(StrEnum):
    """Where a dossier stands. The last three are closed and carry `completed_at`."""

    RECEIVED = "received"  # đã tiếp nhận
    PROCESSING = "processing"  # đang xử lý
    SUPPLEMENTING = "supplementing"  # chờ bổ sung hồ sơ
    COMPLETED = "completed"  # đã có kết quả
    REJECTED = "rejected"  # từ chối giải quyết
    WITHDRAWN = "withdrawn"  # công dân rút hồ sơ


OPEN_STATUSES = frozenset(
    {DossierStatus.RECEIVED, DossierStatus.PROCESSING, DossierStatus.SUPPLEMENTING}
)


class Channel(StrEnum):
    """How a dossier was submitted."""

    ONLINE = "online"  # trực tuyến
    IN_PERSON = "in_person"  # trực tiếp tại bộ phận một cửa
    POSTAL = "postal"  # qua dịch vụ bưu chính công ích


class Rating(StrEnum):
    """The citizen's rating of a dossier's handling; `unsatisfied` is the portal's "dislike"."""

    SATISFIED = "satisfied"
    NEUTRAL = "neutral"
    UNSATISFIED = "unsatisfied"


class ProcedureLevel(StrEnum):
    """Who handles a procedure: a provincial department or a commune/ward's People's Committee."""

    PROVINCE = "province"
    COMMUNE = "commune"


class OnlineLevel(StrEnum):
    """How far a procedure is offered online (DVCTT một phần / toàn trình)."""

    NONE = "none"
    PARTIAL = "partial"
    FULL = "full"


class AgencyKind(StrEnum):
    """What an agency code names."""

    DEPARTMENT = "department"
    COMMUNE = "commune"


class GroupBy(StrEnum):
    """How indicators are cut: by the agency handling the dossier, or the unit receiving it."""

    AGENCY = "agency"
    UNIT = "unit"


class DueState(StrEnum):
    """The due-date state of an open dossier, announced once each."""

    DUE_SOON = "due_soon"
    OVERDUE = "overdue"


class ImportStatus(StrEnum):
    """Progress of one import run in the ledger."""

    RUNNING = "running"  # batches are being committed (or the run died: re-run it)
    DONE = "done"
    FAILED = "failed"


class ImportFormat(StrEnum):
    """What an import read."""

    CSV = "csv"
    XLSX = "xlsx"
    JSON = "json"
    DEMO = "demo"


EVENT_DUE_SOON = "egov.dossier_due_soon"
EVENT_OVERDUE = "egov.dossier_overdue"
DUE_JOB = "egov.due_dates"
