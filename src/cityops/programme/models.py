"""Tables of the programme context: phases, items with their units and departments, budget
lines by year and source, and milestones.

Money is whole Vietnamese đồng in BIGINT columns (VND has no minor unit; a province's
programme runs to thousands of billions, past a 32-bit integer).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cityops.core.db import Audited, Base, UTCDateTime

STATUS_VALUES = "'planned', 'in_progress', 'done', 'delayed', 'cancelled'"
SOURCE_VALUES = "'recurrent', 'investment'"


class ProgrammePhase(Audited, Base):
    """A phase of the programme (2022–2025, 2026–2030) and its planned split of funding."""

    __tablename__ = "programme_phase"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    name_en: Mapped[str | None] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    start_year: Mapped[int] = mapped_column(Integer)
    end_year: Mapped[int] = mapped_column(Integer)
    # Whole percentages of the phase's funding planned from each source (40/60 in Đồng Nai).
    planned_recurrent_pct: Mapped[int] = mapped_column(Integer, default=40)
    planned_investment_pct: Mapped[int] = mapped_column(Integer, default=60)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("end_year >= start_year", name="years"),
        CheckConstraint(
            "planned_recurrent_pct >= 0 AND planned_investment_pct >= 0 "
            "AND planned_recurrent_pct + planned_investment_pct = 100",
            name="split",
        ),
    )


class ProgrammeItem(Audited, Base):
    """An item (hạng mục) of the programme, owned by one department."""

    __tablename__ = "programme_item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The stable identity spreadsheets re-import by.
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    name_en: Mapped[str | None] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    phase_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("programme_phase.code"), index=True
    )
    sector: Mapped[str] = mapped_column(String(32), index=True)
    owner_department_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("department.code"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    unit_rows: Mapped[list[ProgrammeItemUnit]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="ProgrammeItemUnit.unit_code",
        passive_deletes=True,
    )
    department_rows: Mapped[list[ProgrammeItemDepartment]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="ProgrammeItemDepartment.department_code",
        passive_deletes=True,
    )

    __table_args__ = (
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
        CheckConstraint(f"status IN ({STATUS_VALUES})", name="status"),
        CheckConstraint(
            "start_date IS NULL OR end_date IS NULL OR start_date <= end_date", name="dates"
        ),
    )

    @property
    def unit_codes(self) -> list[str]:
        """The codes of the participating units, sorted."""
        return sorted(row.unit_code for row in self.unit_rows)

    @property
    def supporting_department_codes(self) -> list[str]:
        """The codes of the supporting departments, sorted."""
        return sorted(row.department_code for row in self.department_rows)


class ProgrammeItemUnit(Audited, Base):
    """A commune, ward (or legacy district) takes part in an item."""

    __tablename__ = "programme_item_unit"

    item_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("programme_item.id", ondelete="CASCADE"), primary_key=True
    )
    unit_code: Mapped[str] = mapped_column(
        String(16), ForeignKey("admin_unit.code"), primary_key=True, index=True
    )


class ProgrammeItemDepartment(Audited, Base):
    """A department supports (phối hợp) an item it does not own."""

    __tablename__ = "programme_item_department"

    item_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("programme_item.id", ondelete="CASCADE"), primary_key=True
    )
    department_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("department.code"), primary_key=True, index=True
    )


class ProgrammeBudget(Audited, Base):
    """Money for one item, one year, one source: allocated and disbursed, in VND."""

    __tablename__ = "programme_budget"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("programme_item.id", ondelete="CASCADE"), index=True
    )
    year: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    allocated: Mapped[int] = mapped_column(BigInteger)
    # May exceed `allocated`: funds carried over from an earlier year (chuyển nguồn) are
    # disbursed against this year's line. The budget view flags it; it is not refused.
    disbursed: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        UniqueConstraint("item_id", "year", "source", name="uq_programme_budget_line"),
        CheckConstraint(f"source IN ({SOURCE_VALUES})", name="source"),
        CheckConstraint("allocated >= 0 AND disbursed >= 0", name="amounts"),
    )


class ProgrammeMilestone(Audited, Base):
    """A dated milestone of an item; late while its due date has passed and it is not done."""

    __tablename__ = "programme_milestone"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("programme_item.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(300))
    name_en: Mapped[str | None] = mapped_column(String(300))
    due_date: Mapped[date] = mapped_column(Date, index=True)
    done_date: Mapped[date | None] = mapped_column(Date)
    # Relative weight of the milestone within its item (1–100).
    weight: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        UniqueConstraint("item_id", "name", name="uq_programme_milestone_name"),
        CheckConstraint("weight >= 1 AND weight <= 100", name="weight"),
    )
