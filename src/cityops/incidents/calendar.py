"""Business time: working hours of the province, weekends, public holidays and make-up days.

SLA deadlines of policies marked `business_hours` count only working time. The working hours are
profile data (`profiles/<name>/working_hours.json`); holidays and make-up working days are rows
of the `holiday` table (editable). All arithmetic is exact: adding a duration and measuring the
business time between the start and the result gives the duration back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

# A calendar with no working time at all would make `add` loop forever: give up after this.
MAX_DAYS = 3660
WORKING_HOURS_FILE = "working_hours.json"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """When people work on an ordinary working day, in the province's time zone."""

    timezone: str
    workdays: frozenset[int]  # date.weekday() numbers, Monday = 0
    windows: tuple[tuple[time, time], ...]

    def __post_init__(self) -> None:
        previous: time | None = None
        for start, end in self.windows:
            if not start < end or (previous is not None and start < previous):
                raise ValueError("working hours must be ordered, non-overlapping windows")
            previous = end


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """Working hours plus the exceptions of the calendar (days off, make-up working days)."""

    hours: WorkingHours
    days_off: frozenset[date] = field(default_factory=frozenset)
    working_days: frozenset[date] = field(default_factory=frozenset)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone working hours are expressed in."""
        return ZoneInfo(self.hours.timezone)

    def is_working_day(self, day: date) -> bool:
        """Whether people work on a date (a holiday is not; a make-up Saturday is)."""
        if day in self.days_off:
            return False
        if day in self.working_days:
            return True
        return day.weekday() in self.hours.workdays

    def intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working intervals of a date, as UTC instants (none on a day off)."""
        if not self.is_working_day(day):
            return []
        zone = self.zone
        return [
            (
                datetime.combine(day, start, tzinfo=zone).astimezone(UTC),
                datetime.combine(day, end, tzinfo=zone).astimezone(UTC),
            )
            for start, end in self.hours.windows
        ]

    def _days_from(self, start: datetime) -> Iterator[date]:
        # One day earlier than the local date: an interval of the previous local day never
        # reaches past midnight, but starting early costs nothing and guards odd zones.
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(MAX_DAYS):
            yield day
            day += timedelta(days=1)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """Return the instant when `duration` of working time has passed after `start`.

        A positive duration always ends inside working hours (possibly at the very end of a
        window); a zero duration moves `start` to the next working instant.
        """
        if start.tzinfo is None:
            raise ValueError("start must be tz-aware")
        if duration < timedelta(0):
            raise ValueError("duration must not be negative")
        remaining = duration
        for day in self._days_from(start):
            for begin, end in self.intervals(day):
                if end <= start:
                    continue
                begin = max(begin, start)
                available = end - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
        raise ValueError("the calendar has no working time in the next ten years")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Return the working time between two instants (zero if `end` is not after `start`)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("instants must be tz-aware")
        total = timedelta(0)
        if end <= start:
            return total
        last_day = end.astimezone(self.zone).date() + timedelta(days=1)
        for day in self._days_from(start):
            if day > last_day:
                break
            for begin, finish in self.intervals(day):
                overlap = min(finish, end) - max(begin, start)
                if overlap > timedelta(0):
                    total += overlap
        return total

    def is_working_time(self, at: datetime) -> bool:
        """Whether an instant falls inside working hours (window ends included)."""
        day = at.astimezone(self.zone).date()
        return any(begin <= at <= end for begin, end in self.intervals(day))


def deadline(
    *, start: datetime, minutes: int, business_hours: bool, calendar: WorkCalendar
) -> datetime:
    """Return the deadline `minutes` after `start`, in working time or around the clock."""
    duration = timedelta(minutes=minutes)
    return calendar.add(start, duration) if business_hours else start + duration


def _parse_time(text: str) -> time:
    return time.fromisoformat(text.strip())


def parse_working_hours(data: dict[str, object]) -> WorkingHours:
    """Build working hours from their JSON description; raise ValueError naming the problem."""
    zone = str(data.get("timezone") or "Asia/Ho_Chi_Minh")
    ZoneInfo(zone)  # raises for an unknown zone
    days = data.get("workdays")
    hours = data.get("hours")
    if not isinstance(days, list) or not all(isinstance(d, str) for d in days):
        raise ValueError("workdays must be a list of day names (mon … sun)")
    if not isinstance(hours, list) or not hours:
        raise ValueError("hours must be a non-empty list of [start, end] pairs")
    try:
        workdays = frozenset(WEEKDAYS.index(d.strip().lower()[:3]) for d in days)
    except ValueError as exc:
        raise ValueError(f"unknown day name in workdays: {days}") from exc
    windows: list[tuple[time, time]] = []
    for pair in hours:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError("each working-hours window is a [start, end] pair")
        windows.append((_parse_time(str(pair[0])), _parse_time(str(pair[1]))))
    return WorkingHours(timezone=zone, workdays=workdays, windows=tuple(windows))


@lru_cache(maxsize=8)
def load_working_hours(profile: str) -> WorkingHours:
    """Load a profile's working hours (`profiles/<name>/working_hours.json`)."""
    if not _PROFILE_NAME.match(profile):
        raise ValueError(f"not a profile name: {profile!r}")
    file = resources.files("cityops") / "profiles" / profile / WORKING_HOURS_FILE
    return parse_working_hours(json.loads(file.read_text(encoding="utf-8")))


def build_calendar(hours: WorkingHours, exceptions: Iterable[tuple[date, bool]]) -> WorkCalendar:
    """Combine working hours with calendar exceptions given as (date, is_day_off) pairs."""
    days_off: set[date] = set()
    working: set[date] = set()
    for day, off in exceptions:
        (days_off if off else working).add(day)
    return WorkCalendar(hours=hours, days_off=frozenset(days_off), working_days=frozenset(working))
