"""API shapes of the KPI context: indicators, input registry, values, ranking, evaluation."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from cityops.core.schemas import FIRST_DAY, LAST_DAY, SINGLE_LINE, Page, ReadModel, WriteModel
from cityops.kpi.enums import Direction, Frequency, PlaceLevel, Sector, SpatialLevel

CODE_PATTERN = r"^[A-Z][A-Z0-9]{0,15}$"
Code = Annotated[str, Field(min_length=1, max_length=16, pattern=CODE_PATTERN)]
Key = Annotated[str, Field(min_length=3, max_length=100, pattern=r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$")]
Name = Annotated[str, Field(min_length=1, max_length=300, pattern=SINGLE_LINE)]
Short = Annotated[str, Field(min_length=1, max_length=32, pattern=SINGLE_LINE)]
Formula = Annotated[str, Field(min_length=1, max_length=500, pattern=SINGLE_LINE)]
Target = Annotated[float, Field(ge=-1e12, le=1e12)]
Reference = Annotated[str, Field(max_length=300, pattern=SINGLE_LINE)]
Description = Annotated[str, Field(max_length=4000, pattern=r"^[^\x00]*$")]


class IndicatorRead(ReadModel):
    """An indicator of the catalogue."""

    code: str
    key: str
    name: str
    name_en: str
    sector: str
    unit: str
    direction: str
    formula: str
    inputs: list[str] = Field(default_factory=list)
    frequency: str
    spatial_level: str
    target_2025: float | None
    target_2030: float | None
    reference: str | None
    description: str | None
    is_active: bool


class IndicatorPage(Page[IndicatorRead]):
    """Indicators of the catalogue."""


class IndicatorCreate(WriteModel):
    """A new indicator; its formula may only name registered inputs."""

    code: Code
    key: Key
    name: Name
    name_en: Name
    sector: Sector
    unit: Short
    direction: Direction
    formula: Formula
    frequency: Frequency = Frequency.MONTH
    spatial_level: SpatialLevel = SpatialLevel.COMMUNE
    target_2025: Target | None = None
    target_2030: Target | None = None
    reference: Reference | None = None
    description: Description | None = None
    is_active: bool = True


class IndicatorUpdate(WriteModel):
    """Changes to an indicator (fields left out stay as they are)."""

    name: Name | None = None
    name_en: Name | None = None
    unit: Short | None = None
    direction: Direction | None = None
    formula: Formula | None = None
    frequency: Frequency | None = None
    spatial_level: SpatialLevel | None = None
    target_2025: Target | None = None
    target_2030: Target | None = None
    reference: Reference | None = None
    description: Description | None = None
    is_active: bool | None = None


class InputRead(BaseModel):
    """A registered input a formula may use."""

    name: str
    source: str
    description: str
    description_en: str
    pending: bool


class ValueRead(ReadModel):
    """A computed value of an indicator for one place and period."""

    indicator_code: str
    level: str
    place_code: str
    period: str
    period_start: date
    period_label: str
    value: float | None
    target: float | None
    status: str
    inputs: dict[str, Any]
    computed_at: datetime


class ValuePage(Page[ValueRead]):
    """Computed values."""


class StatisticRead(ReadModel):
    """One yearly sector statistic of one commune/ward."""

    unit_code: str
    year: int
    name: str
    value: float
    source: str | None
    updated_at: datetime


class StatisticPage(Page[StatisticRead]):
    """Sector statistics."""


class StatisticsImportRead(BaseModel):
    """What a statistics import did: rows read, added, changed, already identical."""

    rows: int
    imported: int
    updated: int
    unchanged: int


class ComputeRequest(WriteModel):
    """Compute (or recompute) indicators for one period."""

    period: Frequency = Frequency.MONTH
    day: date = Field(
        ge=FIRST_DAY,
        le=LAST_DAY,
        description="Any day inside the period (its first day is used).",
    )
    indicators: list[Code] | None = Field(default=None, max_length=200)
    publish: bool = Field(default=True, description="Also publish NGSI-LD entities.")


class ComputeResult(BaseModel):
    """What a computation wrote."""

    period: str
    period_label: str
    indicators: int
    values: int
    published: int


class RankRow(BaseModel):
    """One unit's place in the ranking of an indicator."""

    rank: int
    place_code: str
    name: str
    value: float
    status: str


class RankingRead(BaseModel):
    """Units ranked best first on one indicator and period (units without a value left out)."""

    indicator_code: str
    direction: str
    period: str
    period_label: str
    items: list[RankRow]


class EvaluationRow(BaseModel):
    """The difference-in-differences of one indicator: pilot areas against the rest."""

    indicator_code: str
    name: str
    name_en: str
    unit: str
    direction: str
    pilot_before: float | None
    pilot_after: float | None
    control_before: float | None
    control_after: float | None
    pilot_change: float | None
    control_change: float | None
    did: float | None
    improved: bool | None
    inputs: dict[str, dict[str, float | None]]


class EvaluationRead(BaseModel):
    """The pilot evaluation: groups, windows and one row per indicator."""

    go_live: date
    period: str
    before: str
    after: str
    pilot_areas: list[str]
    pilot_units: int
    control_units: int
    rows: list[EvaluationRow]


__all__ = ["PlaceLevel"]
