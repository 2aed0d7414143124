"""Business time: working hours, weekends, holidays and make-up days, exact both ways."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityops.incidents import calendar

VN = ZoneInfo("Asia/Ho_Chi_Minh")
HOURS = calendar.load_working_hours("dongnai")
# Part of the seeded 2026 calendar: National Day (with its swap) and the Culture Day proposal.
CAL = calendar.build_calendar(
    HOURS,
    [
        (date(2026, 8, 22), False),  # Saturday worked in exchange for Monday 31 August
        (date(2026, 8, 31), True),
        (date(2026, 9, 1), True),
        (date(2026, 9, 2), True),
        (date(2026, 11, 24), True),
    ],
)


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """An instant given in Đồng Nai time."""
    return datetime(year, month, day, hour, minute, tzinfo=VN)


def test_the_profile_sets_office_hours_monday_to_friday() -> None:
    assert HOURS.timezone == "Asia/Ho_Chi_Minh"
    assert HOURS.workdays == frozenset(range(5))
    assert HOURS.windows == ((time(7, 30), time(11, 30)), (time(13, 0), time(17, 0)))


@pytest.mark.parametrize(
    ("start", "minutes", "expected"),
    [
        # Inside the morning window.
        (local(2026, 11, 20, 10), 60, local(2026, 11, 20, 11)),
        # Across lunch: 90 minutes until 11:30, then 30 after 13:00.
        (local(2026, 11, 20, 10), 120, local(2026, 11, 20, 13, 30)),
        # Ending exactly when the window closes.
        (local(2026, 11, 20, 10), 90, local(2026, 11, 20, 11, 30)),
        # Friday afternoon runs over the weekend into Monday 23 November.
        (local(2026, 11, 20, 16), 120, local(2026, 11, 23, 8, 30)),
        # Before opening: the clock starts at 07:30.
        (local(2026, 11, 23, 6), 30, local(2026, 11, 23, 8)),
        # At night: the next morning.
        (local(2026, 11, 19, 21), 60, local(2026, 11, 20, 8, 30)),
        # A holiday (Tuesday 24 November here) is skipped.
        (local(2026, 11, 23, 16), 120, local(2026, 11, 25, 8, 30)),
        # The Saturday worked in exchange counts; Monday 31 August to 2 September do not.
        (local(2026, 8, 21, 16, 30), 60, local(2026, 8, 22, 8)),
        (local(2026, 8, 28, 16), 120, local(2026, 9, 3, 8, 30)),
        # Two working days from Friday 10:00.
        (local(2026, 11, 20, 10), 960, local(2026, 11, 25, 10)),
    ],
)
def test_adding_working_time(start: datetime, minutes: int, expected: datetime) -> None:
    assert CAL.add(start, timedelta(minutes=minutes)) == expected
    assert CAL.between(start, expected) == timedelta(minutes=minutes)


def test_measuring_working_time() -> None:
    assert CAL.between(local(2026, 11, 20, 7), local(2026, 11, 20, 18)) == timedelta(hours=8)
    # A whole calendar week with one holiday: four working days.
    assert CAL.between(local(2026, 11, 23, 0), local(2026, 11, 30, 0)) == timedelta(hours=32)
    assert CAL.between(local(2026, 11, 21, 9), local(2026, 11, 22, 15)) == timedelta(0)
    assert CAL.between(local(2026, 11, 20, 15), local(2026, 11, 20, 14)) == timedelta(0)


def test_zero_and_invalid_durations() -> None:
    saturday = local(2026, 11, 21, 9)
    assert CAL.add(saturday, timedelta(0)) == local(2026, 11, 23, 7, 30)
    with pytest.raises(ValueError, match="negative"):
        CAL.add(saturday, timedelta(minutes=-1))
    with pytest.raises(ValueError, match="tz-aware"):
        CAL.add(datetime(2026, 11, 20, 10), timedelta(minutes=1))


def test_a_calendar_without_working_time_gives_up() -> None:
    idle = calendar.WorkCalendar(
        hours=calendar.WorkingHours(
            timezone="Asia/Ho_Chi_Minh",
            workdays=frozenset(),
            windows=((time(8), time(9)),),
        )
    )
    with pytest.raises(ValueError, match="no working time"):
        idle.add(local(2026, 1, 1, 8), timedelta(minutes=1))


def test_working_hours_are_checked_when_read() -> None:
    with pytest.raises(ValueError, match="ordered"):
        calendar.parse_working_hours(
            {"workdays": ["mon"], "hours": [["13:00", "17:00"], ["07:30", "11:30"]]}
        )
    with pytest.raises(ValueError, match="day name"):
        calendar.parse_working_hours({"workdays": ["someday"], "hours": [["07:30", "11:30"]]})
    with pytest.raises(ValueError, match="pair"):
        calendar.parse_working_hours({"workdays": ["mon"], "hours": [["07:30"]]})


instants = st.datetimes(
    min_value=datetime(2025, 12, 1),
    max_value=datetime(2027, 12, 31),
    timezones=st.just(UTC),
)
durations = st.integers(min_value=1, max_value=60 * 24 * 30).map(lambda m: timedelta(minutes=m))
holidays = st.sets(
    st.dates(min_value=date(2025, 12, 1), max_value=date(2028, 3, 31)), max_size=40
).map(lambda days: calendar.build_calendar(HOURS, [(d, True) for d in days]))


@settings(max_examples=200, deadline=None)
@given(start=instants, duration=durations, work=holidays)
def test_adding_then_measuring_gives_the_duration_back(
    start: datetime, duration: timedelta, work: calendar.WorkCalendar
) -> None:
    end = work.add(start, duration)
    assert end > start
    assert work.between(start, end) == duration


@settings(max_examples=200, deadline=None)
@given(start=instants, duration=durations, work=holidays)
def test_a_deadline_never_lands_on_a_day_off_or_outside_hours(
    start: datetime, duration: timedelta, work: calendar.WorkCalendar
) -> None:
    end = work.add(start, duration)
    day = end.astimezone(VN).date()
    assert day not in work.days_off
    assert day.weekday() < 5
    assert work.is_working_time(end)
    clock = end.astimezone(VN).time()
    assert time(7, 30) < clock <= time(11, 30) or time(13, 0) < clock <= time(17, 0)


@settings(max_examples=100, deadline=None)
@given(start=instants, first=durations, second=durations)
def test_adding_in_two_steps_is_adding_once(
    start: datetime, first: timedelta, second: timedelta
) -> None:
    assert CAL.add(CAL.add(start, first), second) == CAL.add(start, first + second)


@settings(max_examples=100, deadline=None)
@given(start=instants, end=instants)
def test_working_time_never_exceeds_elapsed_time(start: datetime, end: datetime) -> None:
    measured = CAL.between(start, end)
    assert timedelta(0) <= measured <= max(timedelta(0), end - start)
