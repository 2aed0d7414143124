"""API shapes of the egov context: procedures, dossiers, import reports, the 766 indicators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cityops.core.schemas import Page, ReadModel
from cityops.egov.enums import Channel, DossierStatus, DueState


class ProcedureRead(ReadModel):
    """An administrative procedure."""

    code: str
    name: str
    name_en: str | None
    field: str
    field_en: str | None
    level: str
    department_code: str | None
    online_level: str
    time_limit_days: int = Field(description="Time limit in working days.")
    has_fee: bool
    payment_integrated: bool


class ProcedurePage(Page[ProcedureRead]):
    """One page of procedures."""


class DossierRead(ReadModel):
    """A dossier as stored."""

    id: int
    agency_code: str
    code: str
    unit_code: str
    procedure_code: str
    received_at: datetime
    due_at: datetime
    completed_at: datetime | None
    status: str
    channel: str
    submitted_online: bool
    paid_online: bool
    digitised: bool
    electronic_result: bool
    reused_data: bool | None
    synced: bool | None
    supplement_count: int
    rating: str | None
    import_id: int | None


class DossierPage(Page[DossierRead]):
    """One page of dossiers."""


class DueDossierRead(DossierRead):
    """An open dossier past, or close to, its due date."""

    state: DueState


class DueDossierPage(Page[DueDossierRead]):
    """One page of open dossiers due soon or overdue."""

    horizon_end: datetime = Field(description="Due before this instant counts as due soon.")


class DossierIn(BaseModel):
    """One dossier as sent to `POST /egov/dossiers` (any accepted column name works too).

    Times: ISO 8601 (an offset-less time is Asia/Ho_Chi_Minh), or `dd/mm/yyyy [hh:mm]`.
    """

    model_config = ConfigDict(extra="allow")

    agency: str = Field(description="Department code (SXD, SYT, ...) or commune/ward code.")
    code: str = Field(max_length=64, description="Dossier code, unique per agency.")
    unit_code: str | None = Field(
        default=None, description="Where it was received (default: the commune, or the province)."
    )
    procedure: str = Field(description="Procedure code of the national database.")
    received_at: str
    due_at: str
    completed_at: str | None = None
    status: DossierStatus | None = None
    channel: Channel | None = None
    submitted_online: bool | None = None
    paid_online: bool | None = None
    digitised: bool | None = None
    electronic_result: bool | None = None
    reused_data: bool | None = None
    synced: bool | None = None
    supplement_count: int | None = Field(default=None, ge=0)
    rating: str | int | None = Field(
        default=None, description="satisfied | neutral | unsatisfied, or 1–5 (1–2 unsatisfied)."
    )


class BadRowRead(BaseModel):
    """One problem of one row."""

    line: int = Field(description="CSV/XLSX: line in the file (header = 1); JSON: item number.")
    column: str | None
    value: str | None
    reason: str
    key: str


class ImportReportRead(BaseModel):
    """What an import did (a dry run: what it would do, with every problem listed)."""

    import_id: int | None
    file_name: str
    format: str
    file_hash: str
    dry_run: bool
    update: bool
    rows: int
    imported: int
    updated: int
    skipped: int = Field(description="Already stored: identical, or changed without `update`.")
    rejected: int
    errors: list[BadRowRead]
    ignored_columns: list[str]
    previous_runs: list[int] = Field(description="Earlier import runs of the same content.")


class ImportRead(ReadModel):
    """One import run of the ledger."""

    id: int
    file_hash: str
    file_name: str
    format: str
    source: str
    actor: str
    rows: int
    imported: int
    updated: int
    skipped: int
    errors: int
    batches_done: int
    status: str
    started_at: datetime
    finished_at: datetime | None


class ImportPage(Page[ImportRead]):
    """One page of import runs."""


class PeriodRead(BaseModel):
    """A reporting period."""

    label: str
    kind: str
    start: datetime
    end: datetime
    as_of: datetime = Field(description="When it was judged: its end, or now if still running.")


class BandRead(BaseModel):
    """A rating band."""

    code: str
    name: str
    min: float


class IndicatorRead(BaseModel):
    """One indicator's raw value and points."""

    id: str
    group: str
    name: str
    measure: str | None
    scoring: str
    threshold: float | None
    status: str = Field(description="confirmed | inferred | unconfirmed (egov-766.md).")
    evaluated: bool = Field(description="False: no data (source not held, or nothing to count).")
    numerator: int | float | None
    denominator: int | float | None
    value: float | None = Field(description="Percent (0–100), or days for 2.2.")
    unit: str
    points: float | None
    max_points: float = Field(description="Points at stake (0 when not evaluated).")


class GroupRead(BaseModel):
    """One indicator group's points."""

    key: str
    name: str
    points: float
    max_points: float
    full_points: float


class ScoreRead(BaseModel):
    """The 766 result of one agency or unit."""

    code: str
    kind: str
    name: str
    dossiers: int = Field(description="Handled in the period (completed, or still open).")
    received: int
    completed: int
    open: int
    overdue_open: int
    on_time: int
    points: float
    max_points: float
    total: float | None = Field(description="Points over the points at stake, on 100.")
    band: BandRead | None
    rank: int | None
    ranked: bool = Field(description="False below the minimum dossier count for ranking.")
    groups: list[GroupRead]
    indicators: list[IndicatorRead]


class IndicatorTableRead(BaseModel):
    """The indicators of every agency or unit with dossiers in a period."""

    period: PeriodRead
    group_by: str
    min_dossiers_for_rank: int
    ranked: int
    items: list[ScoreRead]


class ProcedureStatRead(BaseModel):
    """One procedure's figures within a scorecard (2.1 and 2.2 per procedure)."""

    procedure_code: str
    name: str
    dossiers: int
    received: int
    completed: int
    on_time: int
    on_time_percent: float | None
    average_days: float | None
    online_percent: float | None


class ScorecardRead(BaseModel):
    """One agency's or unit's scorecard: its result, rank among its peers, and procedures."""

    period: PeriodRead
    group_by: str
    min_dossiers_for_rank: int
    ranked: int = Field(description="How many agencies or units were ranked.")
    item: ScoreRead
    procedures: list[ProcedureStatRead]


def as_dict(model: BaseModel) -> dict[str, Any]:
    """A model as JSON-ready values."""
    return model.model_dump(mode="json")
