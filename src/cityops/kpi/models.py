"""Tables of the KPI context: the indicator catalogue, population per unit and year, yearly sector
statistics per unit, and the computed values with their history (one row per indicator × place ×
period).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cityops.core.db import Audited, Base, JSONType, UTCDateTime

DIRECTION_VALUES = "'up', 'down', 'band', 'monitor'"
FREQUENCY_VALUES = "'D', 'M', 'Q', 'Y'"


class KpiIndicator(Audited, Base):
    """An indicator of the catalogue: what it measures, its formula over named inputs, targets."""

    __tablename__ = "kpi_indicator"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)  # H2, G1, ...
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    name_en: Mapped[str] = mapped_column(String(300))
    sector: Mapped[str] = mapped_column(String(32), index=True)
    unit: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    formula: Mapped[str] = mapped_column(String(500))
    frequency: Mapped[str] = mapped_column(String(1))
    spatial_level: Mapped[str] = mapped_column(String(16))
    # Targets for the two programme horizons; a band direction reads them as [low, high].
    target_2025: Mapped[float | None] = mapped_column(Float)
    target_2030: Mapped[float | None] = mapped_column(Float)
    reference: Mapped[str | None] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"direction IN ({DIRECTION_VALUES})", name="direction"),
        CheckConstraint(f"frequency IN ({FREQUENCY_VALUES})", name="frequency"),
    )


class KpiPopulation(Audited, Base):
    """Population of one commune/ward in one year (the per-100,000 denominators)."""

    __tablename__ = "kpi_population"

    unit_code: Mapped[str] = mapped_column(
        String(16), ForeignKey("admin_unit.code"), primary_key=True
    )
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    population: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint("population >= 0", name="population"),)


class KpiStatistic(Audited, Base):
    """One yearly sector statistic of one commune/ward (physicians, live births, households, ...):
    the value of a `statistics` input of the KPI engine, imported from the sector's report."""

    __tablename__ = "kpi_statistic"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unit_code: Mapped[str] = mapped_column(String(16), ForeignKey("admin_unit.code"))
    year: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))  # a statistics input of kpi.inputs
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("unit_code", "year", "name"),
        Index("ix_kpi_statistic_name_year", "name", "year"),
        CheckConstraint("value >= 0", name="value"),
    )


class KpiValue(Base):
    """A computed value of an indicator for one place and period, with the inputs it came from.

    Recomputing a period replaces its row (`computed_at` moves); past periods stay, so the
    table is the indicator's history.
    """

    __tablename__ = "kpi_value"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    indicator_code: Mapped[str] = mapped_column(
        String(16), ForeignKey("kpi_indicator.code", ondelete="CASCADE")
    )
    level: Mapped[str] = mapped_column(String(8))  # PlaceLevel
    place_code: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(1))  # Frequency
    period_start: Mapped[date] = mapped_column(Date)
    period_label: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    target: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # Status
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("indicator_code", "level", "place_code", "period", "period_start"),
        Index("ix_kpi_value_period", "period", "period_start", "indicator_code"),
        Index("ix_kpi_value_place", "place_code", "indicator_code", "period"),
    )
