"""API shapes of the alerts context: rules (with the parameters of each kind), alerts and their
history, and the actions on alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from cityops.alerts.enums import CompositeMode, Direction, GeoTrigger, Operator, RuleKind, Severity
from cityops.core.schemas import SINGLE_LINE, Instant, Page, ReadModel, WriteModel

RuleCode = Annotated[
    str, StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=SINGLE_LINE)]
Description = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
EntityType = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
]
AttributeName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
UnitCode = Annotated[
    str, StringConstraints(min_length=1, max_length=16, pattern=r"^[0-9A-Za-z_-]+$")
]
AreaCode = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
]
DepartmentCode = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Z][A-Z0-9_]*$")
]
SectorCode = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
]
CategoryCode = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
]
ChannelName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]
Note = Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
HhMm = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]

MAX_SNOOZE_MINUTES = 30 * 24 * 60


def _error(error_type: str, message: str) -> PydanticCustomError:
    # The type names a `validation.<type>` message, so the refusal is shown in the reader's
    # language (the English text is the fallback).
    return PydanticCustomError(error_type, message)


# --- condition parameters, one model per kind ------------------------------------------------


class ThresholdCondition(WriteModel):
    """A value compared with a limit; clears only past the limit ∓ hysteresis, and must hold
    `min_duration_seconds` (judged on observation times) before it fires."""

    op: Operator
    # A number; text and true/false only with "==".
    value: Finite | bool | Annotated[str, StringConstraints(max_length=200, pattern=SINGLE_LINE)]
    hysteresis: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] = 0.0
    min_duration_seconds: Annotated[int, Field(ge=0, le=7 * 86400)] = 0

    @model_validator(mode="after")
    def _numeric_unless_equal(self) -> ThresholdCondition:
        numeric = isinstance(self.value, float | int) and not isinstance(self.value, bool)
        if not numeric and self.op is not Operator.EQ:
            raise _error("alerts_needs_number", "a comparison other than == needs a number")
        if not numeric and self.hysteresis:
            raise _error("alerts_hysteresis_numbers", "hysteresis applies to numbers only")
        return self


class RateOfChangeCondition(WriteModel):
    """A value rising, falling or moving by more than `limit` within `window_minutes`."""

    window_minutes: Annotated[int, Field(ge=1, le=24 * 60)]
    limit: Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]
    direction: Direction = Direction.EITHER
    hysteresis: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _hysteresis_below_limit(self) -> RateOfChangeCondition:
        if self.hysteresis >= self.limit:
            raise _error("alerts_hysteresis_limit", "hysteresis must be smaller than the limit")
        return self


class MissingDataCondition(WriteModel):
    """A device feeding a matching entity went offline (silent past twice its interval)."""


class GeoFenceCondition(WriteModel):
    """An entity's location entering or leaving a fence: an area or a list of units."""

    trigger: GeoTrigger
    area_code: AreaCode | None = None
    unit_codes: Annotated[list[UnitCode], Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_fence(self) -> GeoFenceCondition:
        if (self.area_code is None) == (self.unit_codes is None):
            raise _error(
                "alerts_one_fence", "give the fence as area_code or as unit_codes (one of them)"
            )
        return self


class CompositeCondition(WriteModel):
    """All, or any, of other rules firing on the same entity."""

    mode: CompositeMode
    rules: Annotated[list[RuleCode], Field(min_length=2, max_length=20)]

    @model_validator(mode="after")
    def _distinct(self) -> CompositeCondition:
        if len(set(self.rules)) != len(self.rules):
            raise _error("alerts_distinct", "each item may be named once")
        return self


CONDITION_MODELS: dict[RuleKind, type[WriteModel]] = {
    RuleKind.THRESHOLD: ThresholdCondition,
    RuleKind.RATE_OF_CHANGE: RateOfChangeCondition,
    RuleKind.MISSING_DATA: MissingDataCondition,
    RuleKind.GEO_FENCE: GeoFenceCondition,
    RuleKind.COMPOSITE: CompositeCondition,
}

_CONDITION_DOC = (
    "Parameters of the kind. threshold: {op: > >= < <= ==, value, hysteresis, "
    "min_duration_seconds}; rate_of_change: {window_minutes, limit, direction: rise|fall|either, "
    "hysteresis}; missing_data: {}; geo_fence: {trigger: enter|leave, area_code | unit_codes}; "
    "composite: {mode: all|any, rules: [rule codes]}."
)


# --- rules -----------------------------------------------------------------------------------


class ScheduleIn(WriteModel):
    """When a rule may open alerts: days of the week (1 = Monday) and a local time window
    (Asia/Ho_Chi_Minh; a window may cross midnight). Outside it, open alerts still resolve."""

    days: Annotated[
        list[Annotated[int, Field(ge=1, le=7)]],
        Field(min_length=1, max_length=7, default_factory=lambda: [1, 2, 3, 4, 5, 6, 7]),
    ]
    start: HhMm | None = None
    end: HhMm | None = None

    @model_validator(mode="after")
    def _window(self) -> ScheduleIn:
        if len(set(self.days)) != len(self.days):
            raise _error("alerts_distinct", "each item may be named once")
        if (self.start is None) != (self.end is None):
            raise _error("alerts_both_ends", "give both start and end, or neither")
        if self.start is not None and self.start == self.end:
            raise _error("alerts_empty_window", "start and end must differ")
        self.days = sorted(self.days)
        return self


class IncidentPolicyIn(WriteModel):
    """Open an incident of this category (for this department, default: by sector)."""

    category: CategoryCode
    department_code: DepartmentCode | None = None


class PolicyIn(WriteModel):
    """What firing does: open an incident (or not) and notify channels."""

    incident: IncidentPolicyIn | None = None
    notify: Annotated[list[ChannelName], Field(max_length=10, default_factory=list)]

    @model_validator(mode="after")
    def _distinct(self) -> PolicyIn:
        if len(set(self.notify)) != len(self.notify):
            raise _error("alerts_distinct", "each item may be named once")
        return self


class RuleCreate(WriteModel):
    """A new rule."""

    code: RuleCode
    name_vi: Name
    name_en: Name
    description: Description | None = None
    kind: RuleKind
    entity_type: EntityType | None = None
    attribute: AttributeName | None = None
    condition: Annotated[dict[str, Any], Field(description=_CONDITION_DOC, default_factory=dict)]
    unit_codes: Annotated[list[UnitCode], Field(min_length=1, max_length=200)] | None = None
    area_code: AreaCode | None = None
    schedule: ScheduleIn | None = None
    severity: Severity
    sector: SectorCode | None = None
    policy: Annotated[PolicyIn, Field(default_factory=PolicyIn)]
    enabled: bool = True


class RuleUpdate(WriteModel):
    """Changes to a rule; fields left out stay as they are, `null` clears an optional field.
    The rule as changed is validated whole, as on creation."""

    name_vi: Name | None = None
    name_en: Name | None = None
    description: Description | None = None
    kind: RuleKind | None = None
    entity_type: EntityType | None = None
    attribute: AttributeName | None = None
    condition: Annotated[dict[str, Any], Field(description=_CONDITION_DOC)] | None = None
    unit_codes: Annotated[list[UnitCode], Field(min_length=1, max_length=200)] | None = None
    area_code: AreaCode | None = None
    schedule: ScheduleIn | None = None
    severity: Severity | None = None
    sector: SectorCode | None = None
    policy: PolicyIn | None = None
    enabled: bool | None = None


class RuleRead(ReadModel):
    """A rule as the API shows it."""

    id: int
    code: str
    name_vi: str
    name_en: str
    description: str | None
    kind: str
    entity_type: str | None
    attribute: str | None
    condition: dict[str, Any]
    unit_codes: list[str] | None
    area_code: str | None
    schedule: dict[str, Any] | None
    severity: str
    sector: str | None
    policy: dict[str, Any]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class RulePage(Page[RuleRead]):
    """One page of rules."""


class ImportResult(BaseModel):
    """What an import did, by rule code."""

    created: list[str]
    updated: list[str]
    unchanged: list[str]


# --- alerts ----------------------------------------------------------------------------------


class AlertRead(ReadModel):
    """An alert as listed."""

    id: int
    rule_id: int | None
    rule_code: str
    kind: str
    fingerprint: str
    tenant: str
    entity_id: str
    entity_type: str | None
    attribute: str | None
    unit_code: str | None
    department_code: str | None
    lat: float | None
    lon: float | None
    severity: str
    sector: str | None
    title_vi: str
    title_en: str
    policy: dict[str, Any]
    status: str
    snoozed_until: datetime | None
    opened_at: datetime
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: int | None
    resolved_at: datetime | None
    resolved_by: int | None
    resolution: str | None
    first_value: Any
    last_value: Any
    last_value_at: datetime | None


class AlertPage(Page[AlertRead]):
    """One page of alerts."""


class AlertEventRead(ReadModel):
    """One entry of an alert's history; `observation` links to the observation in the NGSI-LD
    temporal API (send the `tenant` as the NGSILD-Tenant header)."""

    id: int
    kind: str
    at: datetime
    actor_id: int | None
    actor_name: str | None
    value: Any
    observed_at: datetime | None
    tenant: str | None
    entity_id: str | None
    attribute: str | None
    correlation_id: str | None
    note: str | None
    details: dict[str, Any] | None
    observation: str | None = None


class AlertDetail(AlertRead):
    """An alert with its full history."""

    history: list[AlertEventRead]


class AcknowledgeIn(WriteModel):
    """Acknowledge an alert (someone is on it)."""

    note: Note | None = None


class SnoozeIn(WriteModel):
    """Snooze an alert for some minutes or until a time (at most 30 days ahead)."""

    minutes: Annotated[int, Field(ge=1, le=MAX_SNOOZE_MINUTES)] | None = None
    until: Instant | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SnoozeIn:
        if (self.minutes is None) == (self.until is None):
            raise _error("alerts_snooze_one", "give minutes or until (one of them)")
        return self


class ResolveIn(WriteModel):
    """Resolve an alert by hand, saying why."""

    note: Note | None = None
