"""Generators: deterministic per seed, physically plausible, with the right daily and seasonal
shapes, and anomalies where and when the schedule puts them."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from statistics import mean

import pytest

from cityops.simulate import anomalies as anom
from cityops.simulate.catalog import build_catalog, by_slug
from cityops.simulate.generators import flood_status, observe, traffic_at, tri_an_level

SEED = 7
ASSETS = build_catalog(1)
SLUGS = by_slug(ASSETS)
T = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)

# Physical ranges per attribute (inclusive); a simulated value outside one is a defect.
RANGES = {
    "pm25": (0, 600), "pm10": (0, 1000), "no2": (0, 400), "o3": (0, 400), "co": (0, 30),
    "so2": (0, 400), "temperature": (10, 42), "relativeHumidity": (0.2, 1.0),
    "airQualityIndex": (0, 500), "precipitation": (0, 90), "windSpeed": (0, 30),
    "windDirection": (0, 360), "atmosphericPressure": (995, 1020), "pH": (5.5, 9.0),
    "O2": (0, 10), "bod": (0, 60), "cod": (0, 150), "tss": (0, 400), "NH4": (0, 10),
    "turbidity": (0, 400), "flow": (0, 1000), "intensity": (0, 12000),
    "averageVehicleSpeed": (5, 110), "occupancy": (0, 2000), "travelTimeIndex": (1, 4),
    "fillingLevel": (0, 1), "illuminanceLevel": (0, 1), "LAeq": (35, 90), "LAmax": (40, 110),
    "bedOccupancy": (70, 110), "attendanceRate": (85, 100), "outpatientVisits": (0, 5000),
    "occupiedSpotNumber": (0, 120), "availableSpotNumber": (0, 120),
}  # fmt: skip


def _hours(start: datetime, days: int, step_hours: int = 1) -> list[datetime]:
    return [start + timedelta(hours=h) for h in range(0, 24 * days, step_hours)]


def test_same_seed_and_time_give_the_same_values() -> None:
    for asset in ASSETS:
        assert observe(asset, T, SEED) == observe(asset, T, SEED)


def test_different_seeds_give_different_values() -> None:
    air = SLUGS["aq-bien-hoa-trung-tam"]
    first = [observe(air, t, 1) for t in _hours(T, 1)]
    second = [observe(air, t, 2) for t in _hours(T, 1)]
    assert first != second


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        observe(ASSETS[0], datetime(2026, 1, 1), SEED)


@pytest.mark.parametrize(
    "start", [datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)]
)
def test_every_value_stays_in_its_physical_range_over_a_month(start: datetime) -> None:
    seen = set()
    for t in _hours(start, 30, 3):
        for asset in ASSETS:
            values = observe(asset, t, SEED)
            for key, value in (values or {}).items():
                if key in RANGES:
                    low, high = RANGES[key]
                    assert low <= value <= high, (asset.slug, key, value, t)
                    seen.add(key)
            if asset.kind in ("traffic", "parking") and values is not None:
                assert 0 <= values["occupancy"] <= 1  # a fraction in these models
    assert len(seen) >= 25


def test_rush_hour_traffic_exceeds_night_traffic() -> None:
    day = datetime(2026, 11, 18, tzinfo=anom.VN)  # a Wednesday
    for asset in (a for a in ASSETS if a.kind == "traffic"):
        rush = traffic_at(SEED, asset, (day + timedelta(hours=7, minutes=30)).astimezone(UTC))
        night = traffic_at(SEED, asset, (day + timedelta(hours=3)).astimezone(UTC))
        assert rush["intensity"] > 3 * night["intensity"], asset.slug


def test_urban_bien_hoa_is_congested_at_rush_hour() -> None:
    day = datetime(2026, 11, 18, tzinfo=anom.VN)
    tti = [
        traffic_at(SEED, SLUGS[slug], (day + timedelta(hours=h)).astimezone(UTC))["travelTimeIndex"]
        for slug in ("tf-ql1a-ho-nai", "tf-dong-khoi-tam-hiep", "tf-pham-van-thuan")
        for h in (7.5, 17.5)
    ]
    assert all(1.5 <= x <= 2.6 for x in tti), tti


def test_expressway_carries_about_65000_vehicles_a_day() -> None:
    segment = SLUGS["tf-cao-toc-hld-long-thanh"]
    day = datetime(2026, 11, 18, tzinfo=anom.VN)
    total = sum(
        traffic_at(SEED, segment, (day + timedelta(minutes=m)).astimezone(UTC))["intensity"] / 4
        for m in range(0, 24 * 60, 15)
    )
    assert 55_000 <= total <= 75_000


def test_dry_season_pm25_is_higher_than_rainy_season() -> None:
    air = [a for a in ASSETS if a.kind == "air"]

    def month_mean(start: datetime) -> float:
        return mean(
            v["pm25"]
            for t in _hours(start, 28, 2)
            for a in air
            if (v := observe(a, t, SEED)) is not None
        )

    assert month_mean(datetime(2026, 2, 1, tzinfo=UTC)) > 1.3 * month_mean(
        datetime(2026, 8, 1, tzinfo=UTC)
    )


def test_tri_an_is_lowest_in_april_may_and_highest_in_october_november() -> None:
    by_month: dict[int, list[float]] = defaultdict(list)
    for day in range(365):
        t = datetime(2026, 1, 1, 5, tzinfo=UTC) + timedelta(days=day)
        by_month[t.month].append(tri_an_level(SEED, t))
    means = {m: mean(v) for m, v in by_month.items()}
    assert min(means, key=lambda m: means[m]) in (4, 5)
    assert max(means, key=lambda m: means[m]) in (10, 11)
    assert 50.5 <= min(min(v) for v in by_month.values()) <= 52.0
    assert 61.0 <= max(max(v) for v in by_month.values()) <= 62.0


def test_schools_are_silent_on_weekends_and_in_summer() -> None:
    school = SLUGS["sch-thpt-ngo-quyen"]
    saturday = datetime(2026, 11, 21, 9, tzinfo=anom.VN)
    summer = datetime(2026, 7, 15, 9, tzinfo=anom.VN)
    monday = datetime(2026, 11, 23, 9, tzinfo=anom.VN)
    assert observe(school, saturday, SEED) is None
    assert observe(school, summer, SEED) is None
    assert observe(school, monday, SEED) is not None


def test_streetlights_are_on_at_night_and_off_at_noon() -> None:
    light = SLUGS["sl-dong-khoi-01"]
    night = observe(light, datetime(2026, 11, 20, 20, tzinfo=anom.VN), 99)
    noon = observe(light, datetime(2026, 11, 20, 12, tzinfo=anom.VN), 99)
    assert night is not None
    assert noon is not None
    assert night["powerState"] == "on"
    assert noon["powerState"] == "off"


def test_waste_containers_fill_during_the_day_and_are_emptied() -> None:
    container = SLUGS["wc-cho-bien-hoa"]
    emptied_days = 0
    for d in range(7):
        day = datetime(2026, 11, 16, tzinfo=anom.VN) + timedelta(days=d)
        readings = [observe(container, day + timedelta(hours=h), SEED) for h in (6, 10, 14, 18, 19)]
        levels = [r["fillingLevel"] for r in readings if r is not None]
        assert len(levels) == 5
        assert levels[0] <= levels[1] <= levels[2] <= levels[3]
        evening = readings[4]
        assert evening is not None
        if evening["dateLastEmptying"] == (day + timedelta(hours=18.5)).strftime(
            "%Y-%m-%dT11:30:00Z"
        ):
            emptied_days += 1
            assert levels[4] < levels[3]
    # Crews miss a round now and then, not most days.
    assert emptied_days >= 5


START = datetime(2026, 9, 1, tzinfo=UTC)
SCHEDULE = anom.schedule(SEED, START, START + timedelta(days=60))


def test_a_two_month_schedule_holds_every_kind_of_anomaly() -> None:
    assert {a.kind for a in SCHEDULE} == set(anom.KINDS)


@pytest.mark.parametrize("anomaly", [a for a in SCHEDULE if a.kind == anom.PM25_SPIKE][:4])
def test_pm25_spike_lifts_vn_aqi_above_150(anomaly: anom.Anomaly) -> None:
    asset = SLUGS[anomaly.slug]
    inside = anomaly.start + (anomaly.end - anomaly.start) / 2
    values = observe(asset, inside, SEED)
    if values is None:  # the same station may be silent at that moment
        assert any(a.kind == anom.SENSOR_SILENT for a in anom.active(SEED, asset.slug, inside))
        return
    assert values["airQualityIndex"] > 150
    assert values["airQualityLevel"] in ("bad", "veryBad", "hazardous")


def test_river_passes_alarm_level_one_only_during_a_flood_anomaly() -> None:
    gauge = SLUGS[anom.RIVER_TARGET]
    floods = [a for a in SCHEDULE if a.kind == anom.RIVER_FLOOD]
    assert floods
    for flood in floods:
        middle = flood.start + (flood.end - flood.start) / 2
        values = observe(gauge, middle, SEED)
        assert values is not None
        assert values["waterLevel"] >= gauge.params["alarm1"]
        assert values["floodLevelStatus"] != "normal"
        # The storm before it: heavy rain that afternoon in Biên Hòa.
        weather = SLUGS[anom.RIVER_STORM_ZONE]
        rain = sum(
            observe(weather, flood.start - timedelta(hours=h), SEED)["precipitation"]  # type: ignore[index]
            for h in range(1, 6)
        )
        assert rain > 20
    for t in _hours(START, 60, 1):
        if not any(f.covers(t) for f in floods):
            level = observe(gauge, t, SEED)
            if level is not None:
                assert flood_status(level["waterLevel"], gauge.params) == "normal", t


def test_ql51_congestion_and_hospital_surge_fire_in_their_windows() -> None:
    jams = [a for a in SCHEDULE if a.kind == anom.CONGESTION]
    surges = [a for a in SCHEDULE if a.kind == anom.HOSPITAL_SURGE]
    assert jams
    assert surges
    for jam in jams:
        values = traffic_at(SEED, SLUGS[jam.slug], jam.start + timedelta(minutes=30))
        assert jam.slug.startswith("tf-ql51")
        assert values["congested"]
        assert values["travelTimeIndex"] >= 2.5
    for surge in surges:
        values = observe(SLUGS[surge.slug], surge.start + timedelta(hours=1), SEED)
        assert values is not None
        assert values["bedOccupancy"] > 95
        outside = observe(SLUGS[surge.slug], surge.start - timedelta(days=3), SEED)
        if outside is not None and not anom.active(
            SEED, surge.slug, surge.start - timedelta(days=3)
        ):
            assert outside["bedOccupancy"] <= 93


def test_a_silent_sensor_reports_nothing_for_its_hour() -> None:
    silences = [a for a in SCHEDULE if a.kind == anom.SENSOR_SILENT]
    assert silences
    for silence in silences:
        asset = SLUGS[silence.slug]
        assert observe(asset, silence.start + timedelta(minutes=20), SEED) is None
        assert silence.end - silence.start == timedelta(hours=1)
        after = silence.end + timedelta(minutes=5)
        if not anom.active(SEED, asset.slug, after):
            assert observe(asset, after, SEED) is not None
