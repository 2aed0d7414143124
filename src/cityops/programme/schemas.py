"""API shapes of the programme context: phases, items, budget lines, milestones, the board's
views (responsibility matrix, roadmap, budget split, late items, progress) and import reports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from cityops.core.schemas import FIRST_DAY, LAST_DAY, SINGLE_LINE, Page, ReadModel, WriteModel
from cityops.programme.enums import BudgetSource, ItemStatus, Role

# Codes travel in URLs and spreadsheets: letters, digits, dot, dash, underscore.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
Code = Annotated[str, Field(min_length=1, max_length=32, pattern=CODE_PATTERN)]
DepartmentCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$", max_length=32)]
SectorCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", max_length=32)]
UnitCode = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,16}$", max_length=16)]
Name = Annotated[str, Field(min_length=1, max_length=300, pattern=SINGLE_LINE)]
Description = Annotated[str, Field(max_length=4000, pattern=r"^[^\x00]*$")]
Year = Annotated[int, Field(ge=2000, le=2100)]
Percent = Annotated[int, Field(ge=0, le=100)]
# Whole đồng; a quadrillion đồng bounds any line (and stays exact in JavaScript numbers).
Amount = Annotated[int, Field(ge=0, le=10**15)]
Weight = Annotated[int, Field(ge=1, le=100)]
# Dates are bounded so no calendar arithmetic overflows.
Day = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY)]

MAX_UNITS = 500
MAX_DEPARTMENTS = 50
MAX_LINES = 200


# --- phases ----------------------------------------------------------------------------------


class PhaseRead(ReadModel):
    """A phase of the programme and its planned split of funding."""

    code: str
    name: str
    name_en: str | None
    description: str | None
    start_year: int
    end_year: int
    planned_recurrent_pct: int
    planned_investment_pct: int


class PhasePage(Page[PhaseRead]):
    """The phases."""


def _check_split(recurrent: int | None, investment: int | None) -> None:
    if recurrent is not None and investment is not None and recurrent + investment != 100:
        raise ValueError("planned_recurrent_pct + planned_investment_pct must be 100")


class PhaseCreate(WriteModel):
    """A new phase; the split defaults to 40 % recurrent / 60 % development investment."""

    code: Code
    name: Name
    name_en: Name | None = None
    description: Description | None = None
    start_year: Year
    end_year: Year
    planned_recurrent_pct: Percent = 40
    planned_investment_pct: Percent = 60

    @model_validator(mode="after")
    def _consistent(self) -> PhaseCreate:
        if self.end_year < self.start_year:
            raise ValueError("end_year must not be before start_year")
        _check_split(self.planned_recurrent_pct, self.planned_investment_pct)
        return self


class PhaseUpdate(WriteModel):
    """Changes to a phase; a split is given as both percentages, summing to 100."""

    name: Name | None = None
    name_en: Name | None = None
    description: Description | None = None
    start_year: Year | None = None
    end_year: Year | None = None
    planned_recurrent_pct: Percent | None = None
    planned_investment_pct: Percent | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PhaseUpdate:
        if (self.planned_recurrent_pct is None) != (self.planned_investment_pct is None):
            raise ValueError("give both planned_recurrent_pct and planned_investment_pct")
        _check_split(self.planned_recurrent_pct, self.planned_investment_pct)
        return self


# --- budget lines and milestones ---------------------------------------------------------------


class BudgetLineIn(WriteModel):
    """Money for one year from one source. `disbursed` may exceed `allocated` (carry-over)."""

    year: Year
    source: BudgetSource
    allocated: Amount
    disbursed: Amount = 0


class BudgetReplace(WriteModel):
    """The complete list of an item's budget lines (replaces the old list)."""

    lines: Annotated[list[BudgetLineIn], Field(max_length=MAX_LINES)]


class BudgetLineRead(ReadModel):
    """A budget line; `over_disbursed` flags disbursement above the allocation."""

    year: int
    source: str
    allocated: int
    disbursed: int
    over_disbursed: bool = False


class MilestoneCreate(WriteModel):
    """A new milestone of an item."""

    name: Name
    name_en: Name | None = None
    due_date: Day
    done_date: Day | None = None
    weight: Weight = 1


class MilestoneUpdate(WriteModel):
    """Changes to a milestone; `done_date: null` reopens it."""

    name: Name | None = None
    name_en: Name | None = None
    due_date: Day | None = None
    done_date: Day | None = None
    weight: Weight | None = None


class MilestoneRead(ReadModel):
    """A milestone; `late` while its due date has passed and it is not done."""

    id: int
    name: str
    name_en: str | None
    due_date: date
    done_date: date | None
    weight: int
    late: bool = False
    days_late: int | None = None


# --- items -------------------------------------------------------------------------------------


class ItemRead(BaseModel):
    """A programme item with its budget totals and whether it is late."""

    id: int
    code: str
    name: str
    name_en: str | None
    description: str | None
    phase_code: str
    sector: str
    owner_department_code: str
    supporting_department_codes: list[str]
    unit_codes: list[str]
    status: ItemStatus
    progress: int
    start_date: date | None
    end_date: date | None
    allocated: int
    disbursed: int
    late: bool
    days_late: int | None
    updated_at: datetime


class ItemPage(Page[ItemRead]):
    """One page of items."""


class Ref(BaseModel):
    """A department or unit named by code and names."""

    code: str
    name: str
    name_en: str | None = None


class ItemDetail(ItemRead):
    """An item with its departments, units, budget lines and milestones."""

    owner_department: Ref
    supporting_departments: list[Ref]
    units: list[Ref]
    budget: list[BudgetLineRead]
    milestones: list[MilestoneRead]


class ItemCreate(WriteModel):
    """A new item, optionally with its units, supporting departments, budget and milestones."""

    code: Code
    name: Name
    name_en: Name | None = None
    description: Description | None = None
    phase_code: Code
    sector: SectorCode
    owner_department_code: DepartmentCode
    supporting_department_codes: list[DepartmentCode] = Field(
        default_factory=list, max_length=MAX_DEPARTMENTS
    )
    unit_codes: list[UnitCode] = Field(default_factory=list, max_length=MAX_UNITS)
    status: ItemStatus = ItemStatus.PLANNED
    progress: Percent = 0
    start_date: Day | None = None
    end_date: Day | None = None
    budget: list[BudgetLineIn] = Field(default_factory=list, max_length=MAX_LINES)
    milestones: list[MilestoneCreate] = Field(default_factory=list, max_length=MAX_LINES)


class ItemUpdate(WriteModel):
    """Changes to an item; lists, when given, replace the old ones.

    A department officer of the owner department may change `progress` and `status` (not to
    or from `cancelled`); everything else needs programme:admin.
    """

    name: Name | None = None
    name_en: Name | None = None
    description: Description | None = None
    phase_code: Code | None = None
    sector: SectorCode | None = None
    owner_department_code: DepartmentCode | None = None
    supporting_department_codes: (
        Annotated[list[DepartmentCode], Field(max_length=MAX_DEPARTMENTS)] | None
    ) = None
    unit_codes: Annotated[list[UnitCode], Field(max_length=MAX_UNITS)] | None = None
    status: ItemStatus | None = None
    progress: Percent | None = None
    start_date: Day | None = None
    end_date: Day | None = None


# --- views -------------------------------------------------------------------------------------


class MatrixDepartment(BaseModel):
    """A row of the responsibility matrix: a department and how many items it owns/supports."""

    code: str
    name: str
    name_en: str | None
    owned: int
    supporting: int


class MatrixItem(BaseModel):
    """A column of the responsibility matrix: an item and its participating units."""

    code: str
    name: str
    name_en: str | None
    phase_code: str
    sector: str
    status: str
    owner_department_code: str
    unit_count: int


class MatrixCell(BaseModel):
    """What a department does for an item."""

    department_code: str
    item_code: str
    role: Role


class MatrixRead(BaseModel):
    """The responsibility matrix (department × item)."""

    departments: list[MatrixDepartment]
    items: list[MatrixItem]
    cells: list[MatrixCell]


class RoadmapItem(BaseModel):
    """A bar of the Gantt chart with its milestones."""

    id: int
    code: str
    name: str
    name_en: str | None
    owner_department_code: str
    status: str
    progress: int
    start_date: date | None
    end_date: date | None
    late: bool
    days_late: int | None
    milestones: list[MilestoneRead]


class RoadmapSector(BaseModel):
    """The items of one sector in one phase."""

    sector: str
    items: list[RoadmapItem]


class RoadmapPhase(BaseModel):
    """A phase with its items grouped by sector."""

    code: str
    name: str
    name_en: str | None
    start_year: int
    end_year: int
    start_date: date
    end_date: date
    sectors: list[RoadmapSector]


class RoadmapRead(BaseModel):
    """The roadmap, shaped for a Gantt chart, as of a date (milestone lateness)."""

    as_of: date
    phases: list[RoadmapPhase]


class BudgetSplit(BaseModel):
    """Money by source for a year, a phase or the whole programme, against the planned split.

    Shares are of the allocation; variances are actual minus planned, in percentage points;
    rates are disbursed over allocated. Percentages are None where there is nothing to divide.
    """

    scope: str  # "year" | "phase" | "overall"
    phase_code: str | None
    year: int | None
    allocated_recurrent: int
    allocated_investment: int
    allocated_total: int
    disbursed_recurrent: int
    disbursed_investment: int
    disbursed_total: int
    recurrent_share_pct: float | None
    investment_share_pct: float | None
    planned_recurrent_pct: float | None
    planned_investment_pct: float | None
    recurrent_variance_pp: float | None
    investment_variance_pp: float | None
    disbursement_rate_pct: float | None
    recurrent_disbursement_rate_pct: float | None
    investment_disbursement_rate_pct: float | None


class BudgetWarning(BaseModel):
    """A budget line whose disbursement exceeds its allocation (carry-over, or an error)."""

    item_code: str
    year: int
    source: str
    allocated: int
    disbursed: int


class BudgetPhase(BaseModel):
    """A phase's split per year and in total."""

    code: str
    name: str
    name_en: str | None
    years: list[BudgetSplit]
    total: BudgetSplit


class BudgetRead(BaseModel):
    """The budget split per phase and year, and overall."""

    phases: list[BudgetPhase]
    overall: BudgetSplit
    warnings: list[BudgetWarning]


class LateMilestone(BaseModel):
    """A milestone past its due date and not done."""

    id: int
    name: str
    name_en: str | None
    due_date: date
    days_late: int


class LateItem(BaseModel):
    """An item with milestones past due; `days_late` is its most overdue milestone's."""

    id: int
    code: str
    name: str
    name_en: str | None
    phase_code: str
    sector: str
    owner_department_code: str
    status: str
    progress: int
    days_late: int
    milestones: list[LateMilestone]


class LateRead(BaseModel):
    """Items late against their milestones as of a date, most overdue first."""

    as_of: date
    items: list[LateItem]


class ProgressGroup(BaseModel):
    """Progress of the items of one sector or one owner department.

    `mean_progress` is the plain mean of item progress; `weighted_progress` weights each item
    by its allocated budget (None when nothing is allocated).
    """

    key: str
    name: str | None
    name_en: str | None
    items: int
    planned: int
    in_progress: int
    done: int
    delayed: int
    cancelled: int
    late: int
    mean_progress: float | None
    weighted_progress: float | None
    allocated: int
    disbursed: int


class ProgressRead(BaseModel):
    """Progress per sector or per department, as of a date (lateness)."""

    by: str
    as_of: date
    groups: list[ProgressGroup]


# --- import ------------------------------------------------------------------------------------


class ImportCounts(BaseModel):
    """How many rows of each kind an import touched in one way."""

    phases: int = 0
    items: int = 0
    budget_lines: int = 0
    milestones: int = 0


class ImportProblem(BaseModel):
    """A located remark about the file: sheet, row (header = 1), column and reason."""

    sheet: str
    row: int | None
    column: str | None
    message: str
    type: str


class ImportReport(BaseModel):
    """What an import did (or, in a dry run, would do)."""

    dry_run: bool
    rows: dict[str, int]
    created: ImportCounts
    updated: ImportCounts
    unchanged: ImportCounts
    deleted: ImportCounts
    skipped: ImportCounts
    warnings: list[ImportProblem]
