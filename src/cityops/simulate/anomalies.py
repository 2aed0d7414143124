"""Scheduled anomalies: a pure function of (seed, local day) decides what goes wrong and when.

Kinds: a PM2.5 spike at a Biên Hòa air station (VN_AQI above 150 for 1–3 h), the Đồng Nai river
at Biên Hòa rising past alarm level I after an afternoon storm (rainy season only), congestion
on a QL51 segment, a hospital surge past 95 % bed occupancy, and a sensor going silent for one
hour. The same seed always yields the same schedule.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache

from cityops.simulate.noise import u01

# Việt Nam keeps UTC+7 all year (no daylight saving time).
VN = timezone(timedelta(hours=7))

PM25_SPIKE = "pm25_spike"
RIVER_FLOOD = "river_flood"
CONGESTION = "congestion"
HOSPITAL_SURGE = "hospital_surge"
SENSOR_SILENT = "sensor_silent"
KINDS: tuple[str, ...] = (PM25_SPIKE, RIVER_FLOOD, CONGESTION, HOSPITAL_SURGE, SENSOR_SILENT)

PM25_TARGETS: tuple[str, ...] = (
    "aq-bien-hoa-trung-tam",
    "aq-kcn-bien-hoa-1",
    "aq-kcn-bien-hoa-2",
    "aq-kcn-amata",
)
RIVER_TARGET = "wl-song-dong-nai-bien-hoa"
# The storm that precedes a river anomaly falls on this weather zone.
RIVER_STORM_ZONE = "kttv-bien-hoa"
CONGESTION_TARGETS: tuple[str, ...] = (
    "tf-ql51-long-binh-tan",
    "tf-ql51-tam-phuoc",
    "tf-ql51-long-thanh",
    "tf-ql51-phuoc-thai",
)
HOSPITAL_TARGETS: tuple[str, ...] = (
    "bv-da-khoa-dong-nai",
    "bv-da-khoa-thong-nhat",
    "bv-nhi-dong-nai",
    "bv-dkkv-long-khanh",
    "bv-dkkv-long-thanh",
    "bv-dkkv-dinh-quan",
    "bv-da-khoa-binh-phuoc",
)
SILENT_TARGETS: tuple[str, ...] = (
    *PM25_TARGETS,
    "aq-long-thanh",
    "aq-nhon-trach",
    "wq-song-dong-nai-hoa-an",
    "wq-song-thi-vai-phuoc-an",
    "ww-kcn-amata",
    "tf-ql1a-ho-nai",
    "tf-dong-khoi-tam-hiep",
    "kttv-long-khanh",
    "nl-nga-tu-vung-tau",
)

# Probability per local day (demo): spikes are likelier in the dry season, when PM is high.
P_SPIKE_DRY, P_SPIKE_WET = 0.35, 0.15
P_RIVER = 0.12
P_CONGESTION = 0.3
P_SURGE = 0.12
P_SILENT = 0.5
DRY_MONTHS = frozenset({12, 1, 2, 3, 4})
RAINY_MONTHS = frozenset(range(5, 12))


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something going wrong at one asset over a time window [start, end)."""

    kind: str
    slug: str
    start: datetime
    end: datetime

    def covers(self, t: datetime) -> bool:
        """Tell whether the anomaly is active at an instant."""
        return self.start <= t < self.end


def _at(day: date, hours: float) -> datetime:
    return (datetime.combine(day, time(), VN) + timedelta(hours=hours)).astimezone(UTC)


def _pick(seed: int, options: tuple[str, ...], *parts: object) -> str:
    return options[int(u01(seed, *parts) * len(options)) % len(options)]


@lru_cache(maxsize=8192)
def day_schedule(seed: int, day: date) -> tuple[Anomaly, ...]:
    """Return the anomalies that start on a local (UTC+7) day."""
    out: list[Anomaly] = []
    key = day.isoformat()
    p_spike = P_SPIKE_DRY if day.month in DRY_MONTHS else P_SPIKE_WET
    if u01(seed, PM25_SPIKE, key) < p_spike:
        start = 6 + int(u01(seed, PM25_SPIKE, key, "h") * 16)
        hours = 1 + int(u01(seed, PM25_SPIKE, key, "d") * 3)
        slug = _pick(seed, PM25_TARGETS, PM25_SPIKE, key, "s")
        out.append(Anomaly(PM25_SPIKE, slug, _at(day, start), _at(day, start + hours)))
    if day.month in RAINY_MONTHS and u01(seed, RIVER_FLOOD, key) < P_RIVER:
        # The storm falls 14–17 h (see `storm_forced`); the river peaks a few hours later.
        start = 17 + int(u01(seed, RIVER_FLOOD, key, "h") * 3)
        hours = 6 + int(u01(seed, RIVER_FLOOD, key, "d") * 5)
        out.append(Anomaly(RIVER_FLOOD, RIVER_TARGET, _at(day, start), _at(day, start + hours)))
    if u01(seed, CONGESTION, key) < P_CONGESTION:
        start = 6 + int(u01(seed, CONGESTION, key, "h") * 14)
        minutes = 60 + int(u01(seed, CONGESTION, key, "d") * 61)
        slug = _pick(seed, CONGESTION_TARGETS, CONGESTION, key, "s")
        out.append(Anomaly(CONGESTION, slug, _at(day, start), _at(day, start + minutes / 60.0)))
    if u01(seed, HOSPITAL_SURGE, key) < P_SURGE:
        start = int(u01(seed, HOSPITAL_SURGE, key, "h") * 24)
        hours = 6 + int(u01(seed, HOSPITAL_SURGE, key, "d") * 13)
        slug = _pick(seed, HOSPITAL_TARGETS, HOSPITAL_SURGE, key, "s")
        out.append(Anomaly(HOSPITAL_SURGE, slug, _at(day, start), _at(day, start + hours)))
    if u01(seed, SENSOR_SILENT, key) < P_SILENT:
        start = int(u01(seed, SENSOR_SILENT, key, "h") * 24)
        slug = _pick(seed, SILENT_TARGETS, SENSOR_SILENT, key, "s")
        out.append(Anomaly(SENSOR_SILENT, slug, _at(day, start), _at(day, start + 1)))
    return tuple(out)


# The demo's storyline (`script`): anomalies that happen whatever the seed's schedule says.
_scripted: tuple[Anomaly, ...] = ()
STORY_PAST_SPIKE = "aq-bien-hoa-trung-tam"
STORY_LIVE_SPIKE = "aq-kcn-bien-hoa-1"
STORY_SURGE = "bv-da-khoa-dong-nai"


def script(anomalies: Iterable[Anomaly]) -> None:
    """Make these anomalies happen on top of the seed's schedule (replacing any earlier script)."""
    global _scripted
    _scripted = tuple(anomalies)


def demo_story(anchor: datetime) -> tuple[Anomaly, ...]:
    """Return the demo's storyline around the moment it starts.

    A demo must show, from its first minutes, what the centre is for: a pollution episode in
    Biên Hòa in the history (its alert, incident and resolution are there to read), a hospital
    surge yesterday evening, and a new PM2.5 spike at a Biên Hòa industrial park two minutes
    after the start, live, so the operator sees the alert and its incident arrive.
    """
    anchor = anchor.replace(second=0, microsecond=0)
    return (
        Anomaly(
            PM25_SPIKE, STORY_PAST_SPIKE, anchor - timedelta(hours=30), anchor - timedelta(hours=27)
        ),
        Anomaly(
            HOSPITAL_SURGE, STORY_SURGE, anchor - timedelta(hours=20), anchor - timedelta(hours=9)
        ),
        Anomaly(
            PM25_SPIKE, STORY_LIVE_SPIKE, anchor + timedelta(minutes=2), anchor + timedelta(hours=2)
        ),
    )


def _days(start: datetime, end: datetime) -> Iterator[date]:
    day = start.astimezone(VN).date()
    last = end.astimezone(VN).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def schedule(seed: int, start: datetime, end: datetime) -> list[Anomaly]:
    """Return every anomaly overlapping [start, end), in start order."""
    out = [
        a
        for day in _days(start - timedelta(days=1), end)
        for a in (*day_schedule(seed, day), *_scripted)
        if a.start < end and a.end > start
    ]
    return sorted(set(out), key=lambda a: (a.start, a.kind, a.slug))


def active(seed: int, slug: str, t: datetime) -> list[Anomaly]:
    """Return the anomalies active at an asset at an instant (windows may cross midnight)."""
    day = t.astimezone(VN).date()
    scheduled = [
        a
        for d in (day - timedelta(days=1), day)
        for a in day_schedule(seed, d)
        if a.slug == slug and a.covers(t)
    ]
    return scheduled + [a for a in _scripted if a.slug == slug and a.covers(t)]


def storm_forced(seed: int, zone: str, day: date) -> tuple[float, float, float] | None:
    """Return (start hour, hours, mm) of the storm a river anomaly needs that day, if any."""
    if zone != RIVER_STORM_ZONE:
        return None
    for a in day_schedule(seed, day):
        if a.kind == RIVER_FLOOD:
            start = 14.0 + u01(seed, "storm", day.isoformat(), "h") * 1.5
            return (
                start,
                2.0 + u01(seed, "storm", day.isoformat(), "d"),
                55.0 + 25.0 * u01(seed, "storm", day.isoformat(), "mm"),
            )
    return None
