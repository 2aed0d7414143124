"""VN_AQI (Decision 1459/QĐ-TCMT) against values computed by hand from its breakpoint table."""

from __future__ import annotations

import pytest

from cityops.simulate import aqi


@pytest.mark.parametrize(
    ("pollutant", "concentration", "expected"),
    [
        # (100 − 50) / (50 − 25) × (35 − 25) + 50 = 70
        ("pm25", 35.0, 70),
        # a breakpoint maps onto its index exactly
        ("pm25", 80.0, 150),
        # (150 − 100) / (250 − 150) × (200 − 150) + 100 = 125
        ("pm10", 200.0, 125),
        # (100 − 50) / (200 − 160) × (180 − 160) + 50 = 75
        ("o3", 180.0, 75),
        # 35 mg/m³ = 35,000 µg/m³: 50 / 15,000 × 5,000 + 100 = 116.7 → 117
        ("co", aqi.co_mg(35.0), 117),
        # (100 − 50) / (200 − 100) × (150 − 100) + 50 = 75
        ("no2", 150.0, 75),
        # 50 / 125 × 100 = 40
        ("so2", 100.0, 40),
        # above the last breakpoint the index is capped at 500
        ("so2", 2700.0, 500),
        ("pm25", 0.0, 0),
    ],
)
def test_pollutant_index_matches_hand_computation(
    pollutant: str, concentration: float, expected: int
) -> None:
    assert aqi.pollutant_index(pollutant, concentration) == expected


def test_negative_concentration_is_refused() -> None:
    with pytest.raises(ValueError, match="pm25"):
        aqi.pollutant_index("pm25", -1.0)


def test_nowcast_uses_half_weight_when_air_changes_fast() -> None:
    # w* = 10 / 40 = 0.25 < 0.5, so w = 0.5: (40 + 0.5·20 + 0.25·10) / 1.75 = 30
    assert aqi.nowcast([40.0, 20.0, 10.0]) == pytest.approx(30.0)


def test_nowcast_uses_min_over_max_when_air_is_steady() -> None:
    # w = 20 / 30: (30 + (2/3)·20) / (1 + 2/3) = 26
    assert aqi.nowcast([30.0, 20.0]) == pytest.approx(26.0)


def test_nowcast_needs_two_of_the_last_three_hours() -> None:
    assert aqi.nowcast([30.0, None, None, 25.0]) is None
    assert aqi.nowcast([30.0, None, 20.0]) is not None


def test_overall_index_is_the_largest_pollutant_index() -> None:
    assert aqi.hourly_aqi({"pm25": 35.0, "o3": 180.0, "no2": 120.0, "co": None}) == (75, "o3")
    assert aqi.hourly_aqi({"pm25": 160.0, "o3": 50.0}) == (210, "pm25")
    assert aqi.hourly_aqi({}) is None


@pytest.mark.parametrize(
    ("index", "code"),
    [(0, "good"), (50, "good"), (51, "moderate"), (100, "moderate"), (101, "poor"),
     (150, "poor"), (151, "bad"), (200, "bad"), (201, "veryBad"), (300, "veryBad"),
     (301, "hazardous"), (500, "hazardous")],
)  # fmt: skip
def test_bands_follow_the_decision(index: int, code: str) -> None:
    assert aqi.band(index).code == code
