"""The Decision 766 scoring: configuration, measures, points, totals, rating bands and ranks.

Pure functions over counts that the service aggregates in SQL. What is scored, with how many
points and which rule, is profile data (`profiles/<name>/egov_766.json`), because several of the
decision's points and thresholds are unconfirmed and the national portal has changed them.

Rules (egov-766.md §3): *proportional* `points × rate`; *threshold* `points × min(1, rate ÷ T)`;
*monitor* reported, never scored. An indicator whose denominator is zero, or whose data CityOps
does not hold (no `measure`), is not evaluated: the total is the points earned over the points
of the indicators evaluated, scaled to 100, so that a missing source does not sink everyone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import date
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cityops.units.profile import profile_folder


@dataclass(slots=True)
class Counts:
    """What one agency or unit did in a period (one row of the SQL aggregate, or their sum).

    Dossier sets: *handled* = completed in the period or still in progress at its end (2.1);
    *received* = received in the period; *completed* = completed in the period. Procedure
    counts (`procs*`, `online_used`) are filled in per grouping by the flows.
    """

    handled: int = 0
    on_time: int = 0
    completed: int = 0
    electronic: int = 0  # completed with an electronic result
    handling_days: float = 0.0  # summed over completed dossiers (calendar days)
    received: int = 0
    online: int = 0  # received, submitted online
    fee: int = 0  # received, for a fee-bearing procedure
    paid: int = 0  # received, fee-bearing, paid online
    digitised: int = 0  # received, components digitised and result electronic
    reuse_known: int = 0
    reused: int = 0
    synced_known: int = 0
    synced: int = 0
    unsatisfied: int = 0  # handled, rated "unsatisfied"
    open: int = 0  # still in progress at the period's end
    overdue_open: int = 0  # of those, past their due date
    procs: int = 0
    procs_online: int = 0
    procs_fee: int = 0
    procs_fee_integrated: int = 0
    online_used: int = 0

    @property
    def late(self) -> int:
        """Handled dossiers not on time."""
        return self.handled - self.on_time

    def add(self, other: Counts) -> None:
        """Add another row's counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


# measure → (numerator, denominator) from counts.
MEASURES: dict[str, Callable[[Counts], tuple[float, float]]] = {
    "synced": lambda c: (c.synced, c.synced_known),
    "on_time": lambda c: (c.on_time, c.handled),
    "handling_days": lambda c: (c.handling_days, c.completed),
    "procedures_online": lambda c: (c.procs_online, c.procs),
    "online_services_used": lambda c: (c.online_used, c.procs_online),
    "online_share": lambda c: (c.online, c.received),
    "payment_integrated": lambda c: (c.procs_fee_integrated, c.procs_fee),
    "paid_online": lambda c: (c.paid, c.fee),
    "electronic_result": lambda c: (c.electronic, c.completed),
    "digitised": lambda c: (c.digitised, c.received),
    "reused_data": lambda c: (c.reused, c.reuse_known),
    # 100 % − (share overdue + share disliked), over the handled dossiers; never below 0.
    "procedure_satisfaction": lambda c: (max(0, c.handled - c.late - c.unsatisfied), c.handled),
}
# Measures whose value is a quantity (days), not a share.
QUANTITIES = frozenset({"handling_days"})


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BandConfig(_Config):
    """A rating band (xếp loại): totals from `min` up."""

    code: str
    min: float
    name: str
    name_en: str
    status: str = "unconfirmed"


class GroupConfig(_Config):
    """An indicator group and its maximum points."""

    key: str
    name: str
    name_en: str
    points: float


class IndicatorConfig(_Config):
    """One indicator: what it measures and how it is scored."""

    id: str
    group: str
    measure: str | None  # None: CityOps holds no data for it yet
    points: float = Field(ge=0)
    scoring: Literal["proportional", "threshold", "monitor"]
    threshold: float | None = Field(default=None, gt=0, le=1)
    status: str = "unconfirmed"
    name: str
    name_en: str


class EgovConfig(_Config):
    """The profile's 766 configuration and working-day calendar."""

    source: str = ""
    procedures_file: str = "egov_procedures.csv"
    min_dossiers_for_rank: int = Field(default=30, ge=0)
    weekend: list[int] = Field(default=[5, 6])
    holidays_note: str = ""
    holidays: list[date] = Field(default_factory=list)
    bands: list[BandConfig]
    groups: list[GroupConfig]
    indicators: list[IndicatorConfig]

    @model_validator(mode="after")
    def _consistent(self) -> EgovConfig:
        groups = {g.key: g for g in self.groups}
        problems: list[str] = []
        for ind in self.indicators:
            if ind.group not in groups:
                problems.append(f"indicator {ind.id}: unknown group {ind.group!r}")
            if ind.measure is not None and ind.measure not in MEASURES:
                problems.append(f"indicator {ind.id}: unknown measure {ind.measure!r}")
            if ind.scoring == "threshold" and ind.threshold is None:
                problems.append(f"indicator {ind.id}: threshold scoring needs a threshold")
        for key, group in groups.items():
            total = sum(i.points for i in self.indicators if i.group == key)
            if abs(total - group.points) > 1e-9:
                problems.append(
                    f"group {key}: indicator points add up to {total}, not {group.points}"
                )
        if not self.bands or min(b.min for b in self.bands) > 0:
            problems.append("bands must cover totals from 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def band(self, total: float) -> BandConfig:
        """The rating band a total falls in."""
        for band in sorted(self.bands, key=lambda b: -b.min):
            if total >= band.min:
                return band
        return min(self.bands, key=lambda b: b.min)


@lru_cache(maxsize=8)
def load_config(profile: str) -> EgovConfig:
    """Load a profile's 766 configuration (ValueError if it is inconsistent)."""
    text = (profile_folder(profile) / "egov_766.json").read_text(encoding="utf-8")
    return EgovConfig.model_validate(json.loads(text))


# --- scoring ------------------------------------------------------------------------------------


@dataclass(slots=True)
class IndicatorResult:
    """One indicator of one agency or unit: its raw value, its points, and whether it counted."""

    config: IndicatorConfig
    numerator: float | None
    denominator: float | None
    rate: float | None  # a share 0–1, or days for quantities
    points: float | None
    max_points: float  # the points at stake (0 when not evaluated or monitor-only)
    evaluated: bool


@dataclass(slots=True)
class GroupResult:
    """A group's points earned over the points of its indicators evaluated."""

    config: GroupConfig
    points: float = 0.0
    max_points: float = 0.0


@dataclass(slots=True)
class Score:
    """The full result of one agency or unit."""

    indicators: list[IndicatorResult]
    groups: list[GroupResult]
    points: float
    max_points: float
    total: float | None  # 0–100
    band: BandConfig | None
    rank: int | None = None
    ranked: bool = False


def points_for(indicator: IndicatorConfig, rate: float) -> float:
    """Points an indicator earns at a rate (0–1)."""
    rate = max(0.0, min(1.0, rate))
    if indicator.scoring == "threshold" and indicator.threshold:
        return indicator.points * min(1.0, rate / indicator.threshold)
    if indicator.scoring == "proportional":
        return indicator.points * rate
    return 0.0


def evaluate(config: EgovConfig, counts: Counts) -> Score:
    """Score one agency or unit from its counts."""
    groups = {g.key: GroupResult(config=g) for g in config.groups}
    results: list[IndicatorResult] = []
    for ind in config.indicators:
        if ind.measure is None:
            results.append(IndicatorResult(ind, None, None, None, None, 0.0, False))
            continue
        numerator, denominator = MEASURES[ind.measure](counts)
        if denominator <= 0:
            results.append(IndicatorResult(ind, numerator, denominator, None, None, 0.0, False))
            continue
        rate = numerator / denominator
        if ind.scoring == "monitor":
            results.append(IndicatorResult(ind, numerator, denominator, rate, None, 0.0, True))
            continue
        points = points_for(ind, rate)
        results.append(IndicatorResult(ind, numerator, denominator, rate, points, ind.points, True))
        groups[ind.group].points += points
        groups[ind.group].max_points += ind.points
    earned = sum(g.points for g in groups.values())
    at_stake = sum(g.max_points for g in groups.values())
    total = 100.0 * earned / at_stake if at_stake > 0 else None
    return Score(
        indicators=results,
        groups=list(groups.values()),
        points=earned,
        max_points=at_stake,
        total=total,
        band=config.band(total) if total is not None else None,
    )


def rank(scores: Iterable[tuple[Score, int]], min_dossiers: int) -> None:
    """Rank scores by total (1 = best; ties share a rank), given each one's dossier count.

    Only scores with a total and at least `min_dossiers` handled dossiers are ranked: a unit with
    three dossiers, all on time, must not top a unit with three thousand (small-sample guard).
    """
    eligible: list[Score] = []
    for score, dossiers in scores:
        score.ranked = score.total is not None and dossiers >= min_dossiers
        score.rank = None
        if score.ranked:
            eligible.append(score)
    eligible.sort(key=lambda s: -round(s.total or 0.0, 2))
    previous: float | None = None
    current = 0
    for position, score in enumerate(eligible, start=1):
        value = round(score.total or 0.0, 2)
        if value != previous:
            current, previous = position, value
        score.rank = current
