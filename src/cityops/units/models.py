"""Tables of the units context: administrative units, lineage, areas and departments."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cityops.core.db import Audited, Base, JSONType, UTCDateTime


class AdminUnit(Audited, Base):
    """An administrative unit (province, commune/ward, or a legacy district), valid over dates."""

    __tablename__ = "admin_unit"
    # Geometry is large and re-derivable; the audit log records that it changed, not its content.
    __audit_exclude__ = frozenset({"geometry"})
    # The unit a row of this table belongs to is the row itself.
    __audit_unit__ = "code"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    name_folded: Mapped[str] = mapped_column(String(200), index=True)
    unit_type: Mapped[str] = mapped_column(String(32), index=True)
    level: Mapped[str] = mapped_column(String(16), index=True)
    parent_code: Mapped[str | None] = mapped_column(
        String(16), ForeignKey("admin_unit.code"), index=True
    )
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    area_km2: Mapped[float | None] = mapped_column(Float)
    population: Mapped[int | None] = mapped_column(Integer)
    contact: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Deferred: polygons are large and most reads (lists, search, lineage) never need them.
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JSONType, deferred=True)
    min_lon: Mapped[float | None] = mapped_column(Float)
    min_lat: Mapped[float | None] = mapped_column(Float)
    max_lon: Mapped[float | None] = mapped_column(Float)
    max_lat: Mapped[float | None] = mapped_column(Float)
    boundary_source: Mapped[str] = mapped_column(String(16), default="demo")
    # Bumped on every geometry change: the point locator's cache is keyed by the sum of these
    # (a timestamp alone would not do under a frozen or skewed clock).
    boundary_version: Mapped[int] = mapped_column(Integer, default=0)
    boundary_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def bbox(self) -> list[float] | None:
        """The bounding box as [min_lon, min_lat, max_lon, max_lat], if the unit has a boundary."""
        box = (self.min_lon, self.min_lat, self.max_lon, self.max_lat)
        if any(v is None for v in box):
            return None
        return [float(v) for v in box if v is not None]

    __table_args__ = (
        Index("ix_admin_unit_bbox", "min_lon", "min_lat", "max_lon", "max_lat"),
        Index("ix_admin_unit_validity", "valid_from", "valid_to"),
    )


class UnitLineage(Audited, Base):
    """A current unit was formed (wholly or partly) from a legacy unit."""

    __tablename__ = "unit_lineage"

    unit_code: Mapped[str] = mapped_column(
        String(16), ForeignKey("admin_unit.code", ondelete="CASCADE"), primary_key=True
    )
    legacy_code: Mapped[str] = mapped_column(
        String(16), ForeignKey("admin_unit.code", ondelete="CASCADE"), primary_key=True, index=True
    )


class Area(Audited, Base):
    """A named group of units (a pilot area, a service zone) usable wherever a unit is."""

    __tablename__ = "area"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    # Folded Vietnamese and English names together, so either finds the area.
    name_folded: Mapped[str] = mapped_column(String(401), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    members: Mapped[list[AreaMember]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="AreaMember.unit_code",
        passive_deletes=True,
    )

    @property
    def unit_codes(self) -> list[str]:
        """The codes of the member units, sorted."""
        return sorted(member.unit_code for member in self.members)


class AreaMember(Audited, Base):
    """A unit belongs to an area."""

    __tablename__ = "area_member"

    area_code: Mapped[str] = mapped_column(
        String(64), ForeignKey("area.code", ondelete="CASCADE"), primary_key=True
    )
    unit_code: Mapped[str] = mapped_column(
        String(16), ForeignKey("admin_unit.code", ondelete="CASCADE"), primary_key=True, index=True
    )


class Department(Audited, Base):
    """A provincial department (sở, ban, ngành) that owns one or more sectors."""

    __tablename__ = "department"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    name_folded: Mapped[str] = mapped_column(String(401), index=True)
    contact: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    sector_rows: Mapped[list[DepartmentSector]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="DepartmentSector.sector",
        passive_deletes=True,
    )

    @property
    def sectors(self) -> list[str]:
        """The sectors this department owns, sorted."""
        return sorted(row.sector for row in self.sector_rows)


class DepartmentSector(Audited, Base):
    """A sector is owned by exactly one department, so routing by sector has one answer."""

    __tablename__ = "department_sector"

    sector: Mapped[str] = mapped_column(String(32), primary_key=True)
    department_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("department.code", ondelete="CASCADE"), index=True
    )
