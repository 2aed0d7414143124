"""Reporting periods (month, quarter, year) and the working-day calendar deadlines count in.

Periods are local (Asia/Ho_Chi_Minh): October 2026 runs from 1 October 00:00 local time to
1 November 00:00 local time, stored and compared in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cityops.core.schemas import FIRST_DAY, LAST_DAY

_PERIOD = re.compile(r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|[Qq](?P<quarter>[1-4])))?$")
MIN_YEAR, MAX_YEAR = FIRST_DAY.year, LAST_DAY.year


@dataclass(frozen=True, slots=True)
class Period:
    """A reporting period (kỳ): its label, kind and UTC bounds [start, end)."""

    label: str
    kind: str  # month | quarter | year
    start: datetime
    end: datetime

    def as_of(self, now: datetime) -> datetime:
        """The instant the period is judged at: its end, or now if it is still running."""
        return min(self.end, now)


def parse_period(text: str, timezone: str) -> Period | None:
    """Parse `2026`, `2026-Q4` or `2026-10`; None if it is none of these."""
    match = _PERIOD.match(text.strip())
    if match is None:
        return None
    year = int(match["year"])
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    if match["month"]:
        month = int(match["month"])
        if not 1 <= month <= 12:
            return None
        first, after = date(year, month, 1), _add_months(date(year, month, 1), 1)
        label, kind = f"{year}-{month:02d}", "month"
    elif match["quarter"]:
        quarter = int(match["quarter"])
        first = date(year, 3 * quarter - 2, 1)
        after, label, kind = _add_months(first, 3), f"{year}-Q{quarter}", "quarter"
    else:
        first, after, label, kind = date(year, 1, 1), date(year + 1, 1, 1), str(year), "year"
    zone = ZoneInfo(timezone)
    return Period(
        label=label,
        kind=kind,
        start=local_midnight(first, zone),
        end=local_midnight(after, zone),
    )


def current_period(now: datetime, timezone: str, kind: str = "month") -> Period:
    """The month (or quarter, or year) containing `now`, in local time."""
    local = now.astimezone(ZoneInfo(timezone))
    if kind == "year":
        text = f"{local.year}"
    elif kind == "quarter":
        text = f"{local.year}-Q{(local.month - 1) // 3 + 1}"
    else:
        text = f"{local.year}-{local.month:02d}"
    period = parse_period(text, timezone)
    assert period is not None
    return period


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """00:00 local time of a day, in UTC."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


class WorkCalendar:
    """Working days: not a weekend day and not a public holiday (or compensatory day off)."""

    def __init__(self, *, timezone: str, weekend: Iterable[int], holidays: Iterable[date]) -> None:
        self.zone = ZoneInfo(timezone)
        self.weekend = frozenset(weekend)  # Monday = 0
        self.holidays = frozenset(holidays)

    def is_working_day(self, day: date) -> bool:
        """Whether offices are open on a (local) day."""
        return day.weekday() not in self.weekend and day not in self.holidays

    def add_working_days(self, at: datetime, days: int) -> datetime:
        """The same local time of day, `days` working days later (a day off counts for none)."""
        local = at.astimezone(self.zone)
        day = local.date()
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return datetime.combine(day, local.timetz()).astimezone(UTC)

    def working_days(self, first: date, last: date) -> list[date]:
        """The working days from `first` to `last` inclusive."""
        out: list[date] = []
        day = first
        while day <= last:
            if self.is_working_day(day):
                out.append(day)
            day += timedelta(days=1)
        return out
