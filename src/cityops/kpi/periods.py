"""KPI periods: a day, month, quarter or year in local time (Asia/Ho_Chi_Minh), with UTC bounds.

A period is named by its kind and its first day (`M` + 2026-10-01 is October 2026); any day
inside it is accepted and moved back to the first day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cityops.kpi.enums import Frequency


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class Window:
    """A period: its kind, first local day, label and UTC bounds [start, end)."""

    kind: Frequency
    first: date
    label: str
    start: datetime
    end: datetime

    @property
    def year(self) -> int:
        """The calendar year the period starts in (population and targets are per year)."""
        return self.first.year

    def shift(self, count: int, timezone: str) -> Window:
        """The period `count` periods later (earlier when negative)."""
        if self.kind is Frequency.DAY:
            first = self.first + timedelta(days=count)
        elif self.kind is Frequency.MONTH:
            first = _add_months(self.first, count)
        elif self.kind is Frequency.QUARTER:
            first = _add_months(self.first, 3 * count)
        else:
            first = date(self.first.year + count, 1, 1)
        return window(self.kind, first, timezone)


def first_day(kind: Frequency, day: date) -> date:
    """The first day of the period of this kind that contains `day`."""
    if kind is Frequency.DAY:
        return day
    if kind is Frequency.MONTH:
        return day.replace(day=1)
    if kind is Frequency.QUARTER:
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return date(day.year, 1, 1)


def window(kind: Frequency, day: date, timezone: str) -> Window:
    """The period of this kind containing `day`, with its UTC bounds."""
    zone = ZoneInfo(timezone)
    first = first_day(kind, day)
    if kind is Frequency.DAY:
        after, label = first + timedelta(days=1), first.isoformat()
    elif kind is Frequency.MONTH:
        after, label = _add_months(first, 1), f"{first.year}-{first.month:02d}"
    elif kind is Frequency.QUARTER:
        after, label = _add_months(first, 3), f"{first.year}-Q{(first.month - 1) // 3 + 1}"
    else:
        after, label = date(first.year + 1, 1, 1), str(first.year)

    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=zone).astimezone(UTC)

    return Window(kind, first, label, midnight(first), midnight(after))


def span(first: Window, last: Window) -> Window:
    """One window from the start of `first` to the end of `last` (for before/after totals)."""
    return Window(first.kind, first.first, f"{first.label}..{last.label}", first.start, last.end)
