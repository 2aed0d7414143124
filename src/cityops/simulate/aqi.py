"""VN_AQI: the Vietnamese air-quality index of Decision 1459/QĐ-TCMT (12/11/2019).

Pure functions, no I/O. The hourly index of a pollutant is interpolated linearly between the
breakpoints of Table 1 of the Decision; the hourly VN_AQI is the largest pollutant index. Dust
(PM2.5, PM10) enters the hourly index through its NowCast concentration over the last 12 hours.

Concentrations are in µg/m³ for every pollutant, CO included (the Decision's table gives CO in
µg/m³: 10,000 µg/m³ = 10 mg/m³); `co_mg` converts the mg/m³ the sensors report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Index values I_i at the breakpoints (Decision 1459, Table 1, column "I_i").
INDEX_BREAKPOINTS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)

# Concentration breakpoints BP_i in µg/m³ (Decision 1459, Table 1). PM uses the 24-hour column,
# applied to the NowCast concentration for the hourly index; gases use the 1-hour columns.
CONCENTRATION_BREAKPOINTS: Mapping[str, tuple[float, ...]] = {
    "o3": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "co": (0, 10_000, 30_000, 45_000, 60_000, 90_000, 120_000, 150_000),
    "so2": (0, 125, 350, 550, 800, 1600, 2100, 2630),
    "no2": (0, 100, 200, 700, 1200, 2350, 3100, 3850),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
    "pm25": (0, 25, 50, 80, 150, 250, 350, 500),
}

POLLUTANTS: tuple[str, ...] = tuple(CONCENTRATION_BREAKPOINTS)
DUST: frozenset[str] = frozenset({"pm25", "pm10"})

# The NowCast needs two of the three most recent hours (Decision 1459, section on PM NowCast).
NOWCAST_HOURS = 12


@dataclass(frozen=True, slots=True)
class Band:
    """One VN_AQI band: its upper bound, code, Vietnamese name and display colour."""

    upper: int
    code: str
    name_vi: str
    color: str


# Bands of Decision 1459, Table 2 (colours as RGB hex of the Decision's colour table).
BANDS: tuple[Band, ...] = (
    Band(50, "good", "Tốt", "#00e400"),
    Band(100, "moderate", "Trung bình", "#ffff00"),
    Band(150, "poor", "Kém", "#ff7e00"),
    Band(200, "bad", "Xấu", "#ff0000"),
    Band(300, "veryBad", "Rất xấu", "#8f3f97"),
    Band(10**9, "hazardous", "Nguy hại", "#7e0023"),
)


def co_mg(mg_per_m3: float) -> float:
    """Convert a CO concentration from mg/m³ to the µg/m³ of the breakpoint table."""
    return mg_per_m3 * 1000.0


def _round_half_up(value: float) -> int:
    # The Decision rounds the index to an integer; half-up, not Python's banker's rounding.
    return math.floor(value + 0.5)


def pollutant_index(pollutant: str, concentration: float) -> int:
    """Return the VN_AQI sub-index of one pollutant at a concentration (µg/m³), capped at 500."""
    breakpoints = CONCENTRATION_BREAKPOINTS[pollutant]
    if concentration != concentration or concentration < 0:  # NaN or negative: not a reading
        raise ValueError(f"invalid {pollutant} concentration: {concentration}")
    if concentration >= breakpoints[-1]:
        return INDEX_BREAKPOINTS[-1]
    for i in range(len(breakpoints) - 1):
        low, high = breakpoints[i], breakpoints[i + 1]
        if concentration < high:
            i_low, i_high = INDEX_BREAKPOINTS[i], INDEX_BREAKPOINTS[i + 1]
            return _round_half_up((i_high - i_low) / (high - low) * (concentration - low) + i_low)
    return INDEX_BREAKPOINTS[-1]  # unreachable: the last breakpoint is handled above


def nowcast(hourly: Sequence[float | None]) -> float | None:
    """Return the NowCast concentration from hourly values, most recent first (up to 12).

    w* = c_min / c_max over the available hours; w = max(w*, 1/2); NowCast = Σ wⁱ⁻¹·cᵢ / Σ wⁱ⁻¹.
    With w = 1/2 and twelve hours this equals the Decision's Σ (1/2)ⁱ·cᵢ to within 0.03 %.
    Returns None when fewer than two of the three most recent hours are available.
    """
    values = list(hourly[:NOWCAST_HOURS])
    if sum(1 for c in values[:3] if c is not None) < 2:
        return None
    present = [c for c in values if c is not None]
    c_max, c_min = max(present), min(present)
    w = 1.0 if c_max <= 0 else max(c_min / c_max, 0.5)
    weights = [(w**i, c) for i, c in enumerate(values) if c is not None]
    return sum(weight * c for weight, c in weights) / sum(weight for weight, _ in weights)


def hourly_aqi(concentrations: Mapping[str, float | None]) -> tuple[int, str] | None:
    """Return (VN_AQI, dominant pollutant) from hourly concentrations in µg/m³, or None.

    Give PM2.5 and PM10 as NowCast concentrations (see `nowcast`). Pollutants that are missing
    or None are left out; the Decision requires at least one.
    """
    best: tuple[int, str] | None = None
    for pollutant in POLLUTANTS:
        value = concentrations.get(pollutant)
        if value is None:
            continue
        index = pollutant_index(pollutant, value)
        if best is None or index > best[0]:
            best = (index, pollutant)
    return best


def band(aqi: int) -> Band:
    """Return the band an index falls in."""
    for candidate in BANDS:
        if aqi <= candidate.upper:
            return candidate
    return BANDS[-1]
