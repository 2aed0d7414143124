"""Enumerations of the KPI context: direction, frequency, spatial level, status, place level."""

from __future__ import annotations

from enum import StrEnum

COMPUTE_JOB = "kpi.compute"


class Direction(StrEnum):
    """Which way is better: up, down, inside a band of targets, or no better way (monitor)."""

    UP = "up"
    DOWN = "down"
    BAND = "band"
    MONITOR = "monitor"


class Frequency(StrEnum):
    """Period kinds an indicator is computed for: day, month, quarter, year."""

    DAY = "D"
    MONTH = "M"
    QUARTER = "Q"
    YEAR = "Y"


class SpatialLevel(StrEnum):
    """The finest level an indicator is meaningful at."""

    PROVINCE = "province"
    AREA = "area"
    COMMUNE = "commune"


class PlaceLevel(StrEnum):
    """Where a value was computed: one commune/ward, a named area, or the whole province."""

    UNIT = "unit"
    AREA = "area"
    PROVINCE = "province"


class Status(StrEnum):
    """A value against its target: met, not met, or no target / no value."""

    MET = "met"
    NOT_MET = "not_met"
    NO_TARGET = "no_target"
    NO_DATA = "no_data"


class Sector(StrEnum):
    """The eight sectors of the catalogue (kpi-catalog.md)."""

    HEALTH = "health"
    EDUCATION = "education"
    TRANSPORT = "transport"
    ENVIRONMENT = "environment"
    CONSTRUCTION = "construction"
    SOCIAL = "social"
    PUBLIC_ORDER = "public_order"
    EGOV = "egov"
