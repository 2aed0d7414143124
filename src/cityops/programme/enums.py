"""Item statuses, budget sources and responsibility roles of the programme context."""

from __future__ import annotations

from enum import StrEnum


class ItemStatus(StrEnum):
    """Where a programme item (hạng mục) stands."""

    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    DELAYED = "delayed"
    CANCELLED = "cancelled"


class BudgetSource(StrEnum):
    """The two funding sources of the programme."""

    RECURRENT = "recurrent"  # vốn sự nghiệp (recurrent expenditure)
    INVESTMENT = "investment"  # vốn đầu tư phát triển (development investment)


class Role(StrEnum):
    """What a department does for an item in the responsibility matrix."""

    OWNER = "owner"  # chủ trì
    SUPPORTING = "supporting"  # phối hợp


class ProgressBy(StrEnum):
    """How the progress view groups items."""

    SECTOR = "sector"
    DEPARTMENT = "department"


# Statuses whose milestones no longer count as late: the work is delivered or dropped.
CLOSED_STATUSES = (ItemStatus.DONE, ItemStatus.CANCELLED)
