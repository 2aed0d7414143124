"""Value generators: what each asset measures at an instant, as a pure function.

`observe(asset, t, seed)` returns the asset's dynamic attributes at `t` (UTC), or None when the
asset reports nothing then (a silent sensor, a school outside school hours). Climate figures
come from facts.md §9 (HCMC normals, lowered for the province), water levels from §5.2, road
volumes from §6, hospital sizes from §4; shapes not covered by facts.md are marked demo.

Units follow the Smart Data Models conventions (data-models.md §1.2): fractions 0–1 for
relativeHumidity, occupancy, fillingLevel and illuminanceLevel; µg/m³ for pollutants except CO
in mg/m³; traffic `intensity` is a flow rate in vehicles per hour, both directions.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cityops.simulate import anomalies as anom
from cityops.simulate import aqi
from cityops.simulate.catalog import Asset
from cityops.simulate.noise import jitter, signed, smooth, u01

VN = anom.VN
HOUR = 3600.0
DAY = 86400.0

# UN/CEFACT common codes per attribute (data-models.md §1.2 table; M1 = mg/L, MMT = mm,
# MTS = m/s, DD = degree, A97 = hPa, MQH = m³/h, LTR = litre, C62 = one, for fractions).
UNIT_CODES: Mapping[str, str] = {
    "pm25": "GQ", "pm10": "GQ", "no2": "GQ", "o3": "GQ", "so2": "GQ", "co": "GP",
    "temperature": "CEL", "relativeHumidity": "C62", "precipitation": "MMT",
    "windSpeed": "MTS", "windDirection": "DD", "atmosphericPressure": "A97",
    "waterLevel": "MTR", "O2": "M1", "bod": "M1", "cod": "M1", "tss": "M1", "NH4": "M1",
    "flow": "MQH", "averageVehicleSpeed": "KMH", "occupancy": "C62", "travelTimeIndex": "C62",
    "fillingLevel": "C62", "illuminanceLevel": "C62", "LAeq": "2N", "LAmax": "2N",
    "bedOccupancy": "P1", "attendanceRate": "P1", "binCapacity": "LTR",
}  # fmt: skip

# facts.md §9: WMO normals for Ho Chi Minh City (Tân Sơn Nhất), January first.
HCMC_TEMP = (26.4, 27.7, 29.2, 30.2, 29.6, 28.5, 28.2, 28.1, 27.9, 27.6, 26.9, 26.1)
HCMC_RAIN_MM = (13.8, 4.1, 10.5, 50.4, 218.4, 311.7, 293.7, 269.8, 327.1, 266.7, 116.5, 48.3)
HCMC_RAIN_DAYS = (2.4, 1.0, 1.9, 5.4, 17.8, 19.0, 22.9, 22.4, 23.1, 20.9, 12.1, 6.7)
# Relative humidity: HCMC normals raised towards the province's 80–82 % (facts.md §9).
HCMC_RH = (69, 68, 68, 70, 76, 80, 80, 81, 82, 83, 78, 73)
RH_PROVINCE_SHIFT = 4.0

# Demo: PM seasonal factor, dry season (Dec–Apr) above the rainy season; January first.
PM_SEASON = (1.4, 1.4, 1.3, 1.15, 0.95, 0.8, 0.75, 0.75, 0.75, 0.8, 1.0, 1.3)
# Demo: PM by local hour: traffic peaks 7–9 h and 17–19 h, night inversion, afternoon mixing.
PM_HOURLY = (
    1.05, 1.0, 0.98, 0.98, 1.0, 1.08, 1.25, 1.45, 1.4, 1.15, 0.95, 0.8,
    0.72, 0.7, 0.72, 0.78, 0.95, 1.25, 1.4, 1.35, 1.25, 1.18, 1.12, 1.08,
)  # fmt: skip

# Hourly share of daily traffic (sums to 1). Expressway peaks ≈ 8.5 % (facts.md §6).
TRAFFIC_SHARE: Mapping[str, tuple[float, ...]] = {
    "urban": (
        0.008, 0.005, 0.004, 0.004, 0.008, 0.022, 0.058, 0.085, 0.080, 0.055, 0.047, 0.047,
        0.045, 0.042, 0.045, 0.050, 0.062, 0.085, 0.082, 0.060, 0.040, 0.033, 0.020, 0.013,
    ),
    "highway": (
        0.016, 0.013, 0.012, 0.013, 0.018, 0.030, 0.052, 0.068, 0.066, 0.056, 0.051, 0.050,
        0.048, 0.048, 0.050, 0.055, 0.063, 0.068, 0.064, 0.050, 0.038, 0.030, 0.024, 0.019,
    ),
    "expressway": (
        0.010, 0.008, 0.007, 0.008, 0.013, 0.027, 0.060, 0.085, 0.078, 0.056, 0.047, 0.045,
        0.044, 0.044, 0.047, 0.054, 0.068, 0.085, 0.072, 0.050, 0.036, 0.026, 0.017, 0.013,
    ),
}  # fmt: skip
# Day-of-week factors, Monday first. Expressway weekends reach 75,000/day (facts.md §6).
TRAFFIC_WEEKDAY: Mapping[str, tuple[float, ...]] = {
    "urban": (1.0, 1.0, 1.0, 1.0, 1.03, 0.95, 0.85),
    "highway": (1.0, 0.98, 0.98, 1.0, 1.05, 1.05, 1.02),
    "expressway": (0.98, 0.96, 0.96, 0.98, 1.05, 1.12, 1.15),
}

# Tết (Lunar New Year) days: schools close and towns empty for about a week (public calendar).
TET = (date(2025, 1, 29), date(2026, 2, 17), date(2027, 2, 6), date(2028, 1, 26))
PUBLIC_HOLIDAYS = frozenset({(1, 1), (4, 30), (5, 1), (9, 2)})


def local(t: datetime) -> datetime:
    """Return the instant in Việt Nam time (UTC+7)."""
    return t.astimezone(VN)


def _hour_of(lt: datetime) -> float:
    return lt.hour + lt.minute / 60.0 + lt.second / 3600.0


def _interp_hourly(table: tuple[float, ...], hour: float) -> float:
    i = int(hour) % 24
    frac = hour - int(hour)
    return table[i] + (table[(i + 1) % 24] - table[i]) * frac


def _interp_monthly(table: tuple[float, ...], lt: datetime) -> float:
    # Values sit at mid-month; interpolate linearly between neighbouring months.
    days = calendar.monthrange(lt.year, lt.month)[1]
    pos = (lt.day - 1 + _hour_of(lt) / 24.0) / days - 0.5
    m = lt.month - 1
    other = (m + (1 if pos >= 0 else -1)) % 12
    return table[m] + (table[other] - table[m]) * abs(pos)


def is_tet(d: date) -> bool:
    """Tell whether a date falls in the Tết break (five days before to six days after)."""
    return any(-5 <= (d - tet).days <= 6 for tet in TET)


# --- weather ---------------------------------------------------------------------------------


def storm(seed: int, zone: str, day: date, rain_scale: float = 1.0) -> tuple[float, float, float]:
    """Return (start hour, duration hours, mm) of a local day's convective storm; mm 0 if dry."""
    forced = anom.storm_forced(seed, zone, day)
    if forced is not None:
        return forced
    m = day.month - 1
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    key = day.isoformat()
    if u01(seed, "wet", zone, key) >= HCMC_RAIN_DAYS[m] / days_in_month:
        return 0.0, 0.0, 0.0
    # Afternoon convective storms (facts.md §9): start 13–18 h, last 1–3 h; amounts exponential
    # around the month's mean per rain day, capped at the 80-odd mm of the heaviest storms.
    mean = HCMC_RAIN_MM[m] * rain_scale / HCMC_RAIN_DAYS[m]
    mm = min(-mean * math.log(max(1.0 - u01(seed, "mm", zone, key), 1e-9)), 85.0)
    start = 13.0 + 5.0 * u01(seed, "start", zone, key)
    hours = 1.0 + 2.0 * u01(seed, "hours", zone, key)
    return start, hours, round(mm, 1)


def rain_between(seed: int, zone: str, a: datetime, b: datetime, rain_scale: float = 1.0) -> float:
    """Return the rain (mm) falling in [a, b) in a weather zone."""
    total = 0.0
    day = local(a).date() - timedelta(days=1)
    last = local(b).date()
    while day <= last:
        start, hours, mm = storm(seed, zone, day, rain_scale)
        if mm > 0:
            s = datetime(day.year, day.month, day.day, tzinfo=VN) + timedelta(hours=start)
            e = s + timedelta(hours=hours)
            overlap = (min(e, b) - max(s, a)).total_seconds()
            if overlap > 0:
                total += mm * overlap / (hours * HOUR)
        day += timedelta(days=1)
    return total


def _zone_params(asset: Asset) -> tuple[float, float]:
    offsets = {
        "kttv-bien-hoa": (-1.0, 1.055),
        "kttv-long-khanh": (-1.5, 1.1),
        "kttv-dong-xoai": (-1.5, 1.2),
        "kttv-tan-phu": (-2.0, 1.15),
    }
    return offsets.get(asset.zone, (-1.0, 1.0))


def weather_at(seed: int, asset: Asset, t: datetime) -> dict[str, float]:
    """Return temperature, humidity, rain and wind in an asset's weather zone at `t`."""
    temp_offset, rain_scale = _zone_params(asset)
    lt = local(t)
    h = _hour_of(lt)
    ts = t.timestamp()
    dry = lt.month in anom.DRY_MONTHS
    mean = _interp_monthly(HCMC_TEMP, lt) + temp_offset
    amplitude = 4.5 if dry else 3.5
    # Coolest near 5–6 h, warmest near 14 h: a skewed daily wave.
    phase = 2 * math.pi * (h - 14.0) / 24.0
    temp = mean + amplitude * (math.cos(phase) + 0.2 * math.cos(2 * phase))
    temp += 1.2 * smooth(seed, f"{asset.zone}:t", ts, 6 * HOUR) + 1.0 * smooth(
        seed, f"{asset.zone}:td", ts, 3 * DAY
    )
    rain_hour = rain_between(seed, asset.zone, t - timedelta(hours=1), t, rain_scale)
    raining = rain_hour > 0.05
    if raining:
        temp -= min(4.0, 1.5 + 0.1 * rain_hour)
    rh = _interp_monthly(HCMC_RH, lt) + RH_PROVINCE_SHIFT
    rh += 13.0 * math.cos(2 * math.pi * (h - 4.5) / 24.0) + 4.0 * smooth(
        seed, f"{asset.zone}:rh", ts, 8 * HOUR
    )
    if raining:
        rh = max(rh, 92.0 + 5.0 * u01(seed, asset.zone, "rhr", int(ts // 600)))
    rh = min(max(rh, 35.0), 99.0)
    # Wind: south-west monsoon in the rainy season, north-east/east trades in the dry season.
    wind = 1.6 + 1.4 * max(0.0, math.sin(math.pi * (h - 9.0) / 10.0))
    wind *= 1.0 + 0.3 * smooth(seed, f"{asset.zone}:w", ts, 2 * HOUR)
    if raining:
        wind += 4.0 + 6.0 * u01(seed, asset.zone, "gust", int(ts // 600))
    direction = (100.0 if dry else 235.0) + 40.0 * smooth(seed, f"{asset.zone}:wd", ts, 4 * HOUR)
    pressure = (
        1009.5
        + 1.3 * math.cos(4 * math.pi * (h - 10.0) / 24.0)
        + 1.5 * smooth(seed, f"{asset.zone}:p", ts, 2 * DAY)
    )
    return {
        "temperature": round(temp, 1),
        "relativeHumidity": round(rh / 100.0, 3),
        "precipitation": round(rain_hour, 1),
        "windSpeed": round(wind, 1),
        "windDirection": round(direction % 360.0, 0),
        "atmosphericPressure": round(pressure, 1),
    }


def _weather(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    return dict(weather_at(seed, asset, t))


# --- air -------------------------------------------------------------------------------------


def _spike(seed: int, slug: str, t: datetime) -> bool:
    return any(a.kind == anom.PM25_SPIKE for a in anom.active(seed, slug, t))


def pm25_at(seed: int, asset: Asset, t: datetime) -> float:
    """Return the PM2.5 concentration (µg/m³) at a station at an instant."""
    if _spike(seed, asset.slug, t):
        # A plume (open burning, an industrial upset): 250–380 µg/m³ lifts VN_AQI above 150.
        return round(250.0 + 130.0 * u01(seed, asset.slug, "spike", int(t.timestamp() // HOUR)), 1)
    lt = local(t)
    ts = t.timestamp()
    _, rain_scale = _zone_params(asset)
    base = float(asset.params["pm25"])
    value = base * _interp_monthly(PM_SEASON, lt) * _interp_hourly(PM_HOURLY, _hour_of(lt))
    value *= math.exp(0.22 * smooth(seed, f"{asset.slug}:pm", ts, 3 * HOUR))
    value *= math.exp(0.18 * smooth(seed, f"{asset.slug}:pmd", ts, 2 * DAY))
    # Rain washout: the last three hours of rain scrub the air.
    rain = rain_between(seed, asset.zone, t - timedelta(hours=3), t, rain_scale)
    value /= 1.0 + 0.06 * rain
    return round(max(value * jitter(seed, f"{asset.slug}:pm", ts, 0.03), 3.0), 1)


def _air(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    lt = local(t)
    h = _hour_of(lt)
    ts = t.timestamp()
    traffic = float(asset.params.get("traffic", 0.5))
    industry = float(asset.params.get("industry", 0.3))
    season = _interp_monthly(PM_SEASON, lt)
    pm25 = pm25_at(seed, asset, t)
    coarse = 1.55 + 0.25 * industry + 0.1 * smooth(seed, f"{asset.slug}:c", ts, DAY)
    pm10 = round(pm25 * coarse, 1)
    rush = _interp_hourly(TRAFFIC_SHARE["urban"], h) / 0.0417
    no2 = (14.0 + 38.0 * traffic) * (0.45 + 0.55 * rush) * math.sqrt(season)
    no2 *= math.exp(0.2 * smooth(seed, f"{asset.slug}:no2", ts, 4 * HOUR))
    co = (0.45 + 1.1 * traffic) * (0.5 + 0.5 * rush) * math.sqrt(season)
    co *= math.exp(0.2 * smooth(seed, f"{asset.slug}:co", ts, 4 * HOUR))
    so2 = (5.0 + 32.0 * industry) * season**0.3
    so2 *= math.exp(0.3 * smooth(seed, f"{asset.slug}:so2", ts, 5 * HOUR))
    sun = max(0.0, math.sin(math.pi * (h - 6.0) / 12.0)) ** 1.5
    weather = weather_at(seed, asset, t)
    cloud = 0.45 if weather["precipitation"] > 0 else (0.1 if lt.month in anom.DRY_MONTHS else 0.3)
    o3 = 18.0 + 95.0 * sun * (1.0 - cloud) * (0.8 + 0.2 * season)
    o3 *= math.exp(0.15 * smooth(seed, f"{asset.slug}:o3", ts, 4 * HOUR))
    values = {
        "pm25": pm25,
        "pm10": pm10,
        "no2": round(no2 * jitter(seed, f"{asset.slug}:no2", ts, 0.03), 1),
        "o3": round(o3 * jitter(seed, f"{asset.slug}:o3", ts, 0.03), 1),
        "co": round(co * jitter(seed, f"{asset.slug}:co", ts, 0.03), 2),
        "so2": round(so2 * jitter(seed, f"{asset.slug}:so2", ts, 0.03), 1),
        "temperature": weather["temperature"],
        "relativeHumidity": weather["relativeHumidity"],
    }
    # Hourly VN_AQI (Decision 1459): PM through the NowCast of the last 12 hours.
    pm25_hours = [pm25] + [pm25_at(seed, asset, t - timedelta(hours=k)) for k in range(1, 12)]
    coarse_hours = [value * coarse for value in pm25_hours]
    index = aqi.hourly_aqi(
        {
            "pm25": aqi.nowcast(pm25_hours),
            "pm10": aqi.nowcast(coarse_hours),
            "no2": values["no2"],
            "o3": values["o3"],
            "co": aqi.co_mg(values["co"]),
            "so2": values["so2"],
        }
    )
    if index is not None:
        values["airQualityIndex"] = index[0]
        values["airQualityLevel"] = aqi.band(index[0]).code
    return values


# --- water -----------------------------------------------------------------------------------

# Tidal constituents (period in hours, share of the tidal amplitude): M2, S2, K1, O1. The
# Đồng Nai at Biên Hòa has a mixed, mainly semi-diurnal tide from the East Sea (demo shares).
TIDES = ((12.4206, 0.45), (12.0, 0.15), (23.9345, 0.25), (25.8193, 0.15))
# Seasonal rise of the river (m, share of the asset's `seasonal`), highest October–November.
RIVER_SEASON = (0.4, 0.3, 0.15, 0.0, 0.0, 0.15, 0.3, 0.45, 0.7, 1.0, 1.0, 0.7)


def flood_status(level: float, params: Mapping[str, Any]) -> str:
    """Return the alarm state of a river level: normal, alarm1, alarm2 or alarm3."""
    if level >= float(params["alarm3"]):
        return "alarm3"
    if level >= float(params["alarm2"]):
        return "alarm2"
    if level >= float(params["alarm1"]):
        return "alarm1"
    return "normal"


def _river_level(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    p = asset.params
    lt = local(t)
    ts = t.timestamp()
    hours = ts / HOUR
    _, rain_scale = _zone_params(asset)
    tide = 0.0
    for i, (period, share) in enumerate(TIDES):
        phase = 2 * math.pi * u01(seed, asset.slug, "tide", i)
        tide += share * math.cos(2 * math.pi * hours / period + phase)
    level = float(p["mean"]) + float(p["seasonal"]) * _interp_monthly(RIVER_SEASON, lt)
    level += float(p["tide"]) * tide
    rain = rain_between(seed, asset.zone, t - timedelta(hours=48), t, rain_scale)
    if float(p["tide"]) > 0:
        level += min(0.002 * rain, 0.08)
    else:
        # Upstream, untided: the river answers the last two days of rain.
        level += min(0.02 * rain, 1.5)
    level += 0.02 * smooth(seed, f"{asset.slug}:l", ts, HOUR)
    for a in anom.active(seed, asset.slug, t):
        if a.kind == anom.RIVER_FLOOD:
            frac = (t - a.start) / (a.end - a.start)
            crest = float(p["alarm1"]) + 0.05 + 0.3 * math.sin(math.pi * frac)
            level = max(level + 0.55, crest)
    level = round(level, 2)
    return {"waterLevel": level, "floodLevelStatus": flood_status(level, p)}


def reservoir_status(level: float, params: Mapping[str, Any]) -> str:
    """Return the state of Trị An's level against the thresholds of facts.md §5.2."""
    if level < float(params["dead"]):
        return "belowDeadLevel"
    if level <= float(params["low_critical"]):
        return "lowCritical"
    if level <= float(params["low_warning"]):
        return "lowWarning"
    if level >= float(params["discharge"]):
        return "discharge"
    if level >= float(params["discharge_watch"]):
        return "dischargeWatch"
    return "normal"


# Trị An's yearly cycle (facts.md §5.2): lowest at the end of the dry season (≈ 5 May), highest
# October–November (≈ 1 November).
TRI_AN_LOW_DOY = 125
TRI_AN_HIGH_DOY = 305


def _tri_an_extremes(seed: int, year: int) -> tuple[float, float]:
    # Lows of 50.5–52 m and highs of 61–62 m in the years facts.md cites.
    low = 50.7 + 1.2 * u01(seed, "tri-an-low", year)
    high = 61.0 + 0.9 * u01(seed, "tri-an-high", year)
    return low, high


def tri_an_level(seed: int, t: datetime) -> float:
    """Return Trị An's level (m above sea level) at an instant."""
    lt = local(t)
    doy = lt.timetuple().tm_yday - 1 + _hour_of(lt) / 24.0
    year = lt.year
    if TRI_AN_LOW_DOY <= doy < TRI_AN_HIGH_DOY:
        low, high = _tri_an_extremes(seed, year)
        frac = (doy - TRI_AN_LOW_DOY) / (TRI_AN_HIGH_DOY - TRI_AN_LOW_DOY)
        return low + (high - low) * (1 - math.cos(math.pi * frac)) / 2
    # Falling limb, from 1 November of one year to 5 May of the next.
    if doy >= TRI_AN_HIGH_DOY:
        start_year, since = year, doy - TRI_AN_HIGH_DOY
    else:
        start_year = year - 1
        since = doy + (366 if calendar.isleap(start_year) else 365) - TRI_AN_HIGH_DOY
    _, high = _tri_an_extremes(seed, start_year)
    low, _ = _tri_an_extremes(seed, start_year + 1)
    length = (366 if calendar.isleap(start_year) else 365) - TRI_AN_HIGH_DOY + TRI_AN_LOW_DOY
    frac = min(since / length, 1.0)
    return high - (high - low) * (1 - math.cos(math.pi * frac)) / 2


def _reservoir(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    level = tri_an_level(seed, t) + 0.02 * smooth(seed, asset.slug, t.timestamp(), 6 * HOUR)
    level = round(level, 2)
    return {"waterLevel": level, "reservoirStatus": reservoir_status(level, asset.params)}


def _water_quality(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    p = asset.params
    lt = local(t)
    h = _hour_of(lt)
    ts = t.timestamp()
    s = asset.slug
    _, rain_scale = _zone_params(asset)
    rain = rain_between(seed, asset.zone, t - timedelta(hours=48), t, rain_scale)
    wet = lt.month in anom.RAINY_MONTHS
    temp = _interp_monthly(HCMC_TEMP, lt) - 1.0 + 0.8 * math.cos(2 * math.pi * (h - 15.0) / 24)
    # Photosynthesis lifts dissolved oxygen in the afternoon; run-off lowers it.
    o2 = float(p["do"]) + 0.5 * math.sin(math.pi * (h - 8.0) / 12.0) - 0.01 * rain
    o2 += 0.3 * smooth(seed, f"{s}:o2", ts, 6 * HOUR)
    bod = (
        float(p["bod"])
        * (1 + 0.25 * smooth(seed, f"{s}:bod", ts, 12 * HOUR))
        * (1 + min(0.004 * rain, 0.4))
    )
    cod = float(p["cod"]) * bod / float(p["bod"]) * (1 + 0.1 * smooth(seed, f"{s}:cod", ts, DAY))
    tss = float(p["tss"]) * (1.5 if wet else 0.8) * (1 + min(0.02 * rain, 2.0))
    tss *= 1 + 0.2 * smooth(seed, f"{s}:tss", ts, 8 * HOUR)
    nh4 = float(p["nh4"]) * (1 + 0.35 * smooth(seed, f"{s}:nh4", ts, 10 * HOUR))
    ph = (7.3 if "Thị Vải" in str(p["river"]) else 7.0) + 0.25 * smooth(seed, f"{s}:ph", ts, DAY)
    return {
        "temperature": round(temp, 1),
        "pH": round(ph, 2),
        "O2": round(min(max(o2, 1.5), 8.5), 2),
        "bod": round(bod, 1),
        "cod": round(cod, 1),
        "tss": round(tss, 1),
        "NH4": round(max(nh4, 0.01), 2),
        "turbidity": round(tss * 0.8 * jitter(seed, f"{s}:turb", ts, 0.04), 1),
    }


def _wastewater(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    # Treated effluent within QCVN 40:2011/BTNMT column B (COD ≤ 150, TSS ≤ 100, NH4 ≤ 10 mg/L).
    lt = local(t)
    h = _hour_of(lt)
    ts = t.timestamp()
    s = asset.slug
    shift = 1.0 if 6 <= h < 22 else 0.55
    weekday = 0.6 if lt.weekday() == 6 else 1.0
    flow = float(asset.params["flow"]) * shift * weekday
    flow *= 1 + 0.12 * smooth(seed, f"{s}:q", ts, 2 * HOUR)
    return {
        "temperature": round(30.5 + 1.5 * smooth(seed, f"{s}:t", ts, 6 * HOUR), 1),
        "pH": round(7.2 + 0.35 * smooth(seed, f"{s}:ph", ts, 6 * HOUR), 2),
        "cod": round(48.0 * (1 + 0.3 * smooth(seed, f"{s}:cod", ts, 4 * HOUR)), 1),
        "tss": round(28.0 * (1 + 0.35 * smooth(seed, f"{s}:tss", ts, 4 * HOUR)), 1),
        "NH4": round(3.0 * (1 + 0.5 * smooth(seed, f"{s}:nh4", ts, 5 * HOUR)), 2),
        "flow": round(flow * jitter(seed, f"{s}:q", ts, 0.03), 1),
    }


# --- traffic, parking, lights, waste, noise -------------------------------------------------


def traffic_at(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    """Return the flow, speed, occupancy and travel-time index of a road segment."""
    p = asset.params
    lt = local(t)
    ts = t.timestamp()
    profile = str(p["profile"])
    day_factor = TRAFFIC_WEEKDAY[profile][lt.weekday()]
    if is_tet(lt.date()):
        day_factor *= 0.7
    share = _interp_hourly(TRAFFIC_SHARE[profile], _hour_of(lt))
    flow = float(p["aadt"]) * day_factor * share
    flow *= 1 + 0.06 * smooth(seed, f"{asset.slug}:f", ts, 900.0)
    flow *= jitter(seed, f"{asset.slug}:f", ts, 0.03)
    ratio = flow / float(p["capacity"])
    # BPR link-performance function (α 0.15, β 4): TTI 1.5–2.5 at urban rush hours.
    tti = 1.0 + 0.15 * ratio**4
    _, rain_scale = _zone_params(asset)
    if rain_between(seed, asset.zone, t - timedelta(minutes=30), t, rain_scale) > 0.5:
        tti *= 1.15
    if any(a.kind == anom.CONGESTION for a in anom.active(seed, asset.slug, t)):
        # A crash or breakdown: the queue halves throughput and crawls.
        tti = max(tti, 2.8 + 0.6 * u01(seed, asset.slug, "jam", int(ts // 300)))
        flow *= 0.6
    tti = min(tti, 4.0)
    speed = float(p["speed"]) / tti * jitter(seed, f"{asset.slug}:v", ts, 0.03)
    occupancy = min(0.95, 0.08 * ratio * tti + 0.01)
    return {
        "intensity": round(flow),
        "averageVehicleSpeed": round(speed, 1),
        "occupancy": round(occupancy, 3),
        "travelTimeIndex": round(tti, 2),
        "congested": tti >= 1.5,
    }


# Demo occupancy profiles of on-street parking, by local hour.
PARKING_PROFILE: Mapping[str, tuple[float, ...]] = {
    "commercial": (
        0.15, 0.1, 0.08, 0.08, 0.08, 0.12, 0.25, 0.45, 0.6, 0.7, 0.78, 0.82,
        0.75, 0.7, 0.72, 0.75, 0.8, 0.85, 0.9, 0.92, 0.85, 0.65, 0.4, 0.25,
    ),
    "office": (
        0.05, 0.05, 0.05, 0.05, 0.05, 0.08, 0.3, 0.75, 0.92, 0.95, 0.95, 0.85,
        0.7, 0.85, 0.93, 0.92, 0.85, 0.6, 0.3, 0.15, 0.1, 0.08, 0.06, 0.05,
    ),
    "market": (
        0.1, 0.1, 0.15, 0.3, 0.6, 0.85, 0.95, 0.95, 0.9, 0.8, 0.7, 0.6,
        0.45, 0.4, 0.45, 0.55, 0.65, 0.7, 0.6, 0.45, 0.3, 0.2, 0.15, 0.1,
    ),
}  # fmt: skip


def _parking(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    lt = local(t)
    ts = t.timestamp()
    profile = str(asset.params["profile"])
    occ = _interp_hourly(PARKING_PROFILE[profile], _hour_of(lt))
    if lt.weekday() >= 5:
        occ *= 0.45 if profile == "office" else 1.12
    occ += 0.07 * smooth(seed, f"{asset.slug}:o", ts, 1800.0)
    occ = min(max(occ, 0.0), 1.0)
    total = int(asset.params["spots"])
    occupied = min(total, max(0, round(total * occ)))
    return {
        "occupiedSpotNumber": occupied,
        "availableSpotNumber": total - occupied,
        "occupancy": round(occupied / total, 3),
    }


def sun_times(day: date, lat: float, lon: float) -> tuple[float, float]:
    """Return local (UTC+7) sunrise and sunset hours for a day (NOAA approximation)."""
    n = day.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + n) / 365.0)
    b = 2 * math.pi * (n - 81) / 364.0
    eot = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)  # minutes
    phi = math.radians(lat)
    # −0.833°: refraction and the solar disc's radius.
    cos_w = (math.sin(math.radians(-0.833)) - math.sin(phi) * math.sin(decl)) / (
        math.cos(phi) * math.cos(decl)
    )
    w = math.degrees(math.acos(min(max(cos_w, -1.0), 1.0)))
    noon = 12.0 - (lon - 105.0) / 15.0 - eot / 60.0
    return noon - w / 15.0, noon + w / 15.0


def _streetlight(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    lt = local(t)
    h = _hour_of(lt)
    rise, set_ = sun_times(lt.date(), asset.lat, asset.lon)
    # Photocells switch a few minutes after sunset and before sunrise; dimmed 23–4 h to save power.
    if h >= set_ + 0.1 or h < rise - 0.1:
        state = "low" if (h >= 23.0 or h < 4.0) else "on"
    else:
        state = "off"
    # A lamp fails on ≈ 1 % of nights and stays dark 1–4 days until the crew replaces it.
    status = "ok"
    for back in range(0, 5):
        d = lt.date() - timedelta(days=back)
        if u01(seed, asset.slug, "fail", d.isoformat()) < 0.01:
            fail_at = datetime(d.year, d.month, d.day, tzinfo=VN) + timedelta(
                hours=18 + 6 * u01(seed, asset.slug, "fh", d.isoformat())
            )
            fixed = fail_at + timedelta(days=1 + 3 * u01(seed, asset.slug, "fd", d.isoformat()))
            if fail_at <= t < fixed:
                status = "defectiveLamp"
    level = {"on": 1.0, "low": 0.5, "off": 0.0}[state]
    if status != "ok":
        level = 0.0
    return {"powerState": state, "status": status, "illuminanceLevel": level}


# Collection rounds (local hours, demo): early morning and evening, as Biên Hòa's crews work.
ROUNDS = (5.5, 18.5)
# Share of a day's waste thrown away by local hour (markets in the morning, homes at night).
WASTE_ACTIVITY = (
    0.01, 0.005, 0.005, 0.005, 0.02, 0.05, 0.08, 0.08, 0.07, 0.06, 0.055, 0.06,
    0.06, 0.045, 0.04, 0.045, 0.05, 0.06, 0.07, 0.06, 0.045, 0.03, 0.02, 0.015,
)  # fmt: skip
_WASTE_CUMULATIVE = tuple(sum(WASTE_ACTIVITY[:i]) for i in range(25))


def _activity_until(hour: float) -> float:
    i = int(hour)
    return _WASTE_CUMULATIVE[i] + (hour - i) * WASTE_ACTIVITY[i % 24] if i < 24 else 1.0


def _waste(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    lt = local(t)
    rate = float(asset.params["fill"]) * 0.5  # per day, as a fraction of the container
    rate *= 1 + 0.2 * signed(seed, asset.slug, "rate", lt.date().isoformat())
    # Walk back through the rounds to the last one the crew did not miss (5 % are missed).
    level = 0.0
    emptied: datetime | None = None
    day, hour = lt.date(), _hour_of(lt)
    cursor_day, cursor_hour = day, hour
    for _ in range(8):
        previous = [r for r in ROUNDS if r <= cursor_hour]
        if previous:
            r = previous[-1]
            level += rate * 2 * (_activity_until(cursor_hour) - _activity_until(r))
            if u01(seed, asset.slug, "missed", cursor_day.isoformat(), r) >= 0.05:
                emptied = datetime(cursor_day.year, cursor_day.month, cursor_day.day, tzinfo=VN)
                emptied += timedelta(hours=r)
                break
            cursor_hour = r - 1e-6
        else:
            level += rate * 2 * _activity_until(cursor_hour)
            cursor_day -= timedelta(days=1)
            cursor_hour = 24.0 - 1e-9
    values: dict[str, Any] = {"fillingLevel": round(min(level, 1.0), 3)}
    values["status"] = "ok"
    if emptied is not None:
        values["dateLastEmptying"] = emptied.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return values


def _noise(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    lt = local(t)
    h = _hour_of(lt)
    ts = t.timestamp()
    base = float(asset.params["base"])
    rush = _interp_hourly(TRAFFIC_SHARE["urban"], h) / 0.085
    laeq = base - 12.0 + 13.0 * rush**0.5
    laeq += 1.2 * smooth(seed, f"{asset.slug}:n", ts, 1800.0) + 0.4 * signed(
        seed, asset.slug, int(ts)
    )
    _, rain_scale = _zone_params(asset)
    if rain_between(seed, asset.zone, t - timedelta(minutes=30), t, rain_scale) > 0.5:
        laeq += 2.0
    laeq = min(max(laeq, 38.0), 90.0)
    lamax = laeq + 9.0 + 5.0 * u01(seed, asset.slug, "max", int(ts // 60))
    return {"LAeq": round(laeq, 1), "LAmax": round(lamax, 1)}


# --- facilities ------------------------------------------------------------------------------

# Dengue and respiratory seasons fill wards in the rainy months (demo), January first.
HOSPITAL_SEASON = (0.0, -0.01, -0.02, -0.01, 0.0, 0.01, 0.03, 0.04, 0.04, 0.03, 0.01, 0.0)


def _hospital(seed: int, asset: Asset, t: datetime) -> dict[str, Any]:
    lt = local(t)
    ts = t.timestamp()
    beds = int(asset.params["beds"])
    # Demo: normal bed occupancy 78–93 %; a surge (anomaly) pushes it to 96–105 %.
    occ = 0.86 + HOSPITAL_SEASON[lt.month - 1] + 0.035 * smooth(seed, asset.slug, ts, 2 * DAY)
    occ += (-0.025 if lt.weekday() >= 5 else 0.01) + 0.01 * math.sin(
        2 * math.pi * (_hour_of(lt) - 10) / 24
    )
    occ = min(max(occ, 0.78), 0.93)
    if any(a.kind == anom.HOSPITAL_SURGE for a in anom.active(seed, asset.slug, t)):
        occ = 0.96 + 0.09 * u01(seed, asset.slug, "surge", int(ts // HOUR))
    # Outpatient visits: 85–110 % of the nominal on working days (facts.md §4), weekends fewer.
    day_key = lt.date().isoformat()
    visits = float(asset.params["visits"]) * (0.85 + 0.25 * u01(seed, asset.slug, "v", day_key))
    if lt.weekday() == 5:
        visits *= 0.5
    elif lt.weekday() == 6:
        visits *= 0.25
    occupied = round(beds * occ)
    return {
        "occupancy": occupied,
        "bedOccupancy": round(100.0 * occupied / beds, 1),
        "outpatientVisits": round(visits),
    }


def school_day(d: date) -> bool:
    """Tell whether pupils attend on a date: weekdays outside summer, Tết and public holidays."""
    if d.weekday() >= 5 or (d.month, d.day) in PUBLIC_HOLIDAYS or is_tet(d):
        return False
    # Summer break: 1 June to 4 September (the school year opens on 5 September).
    return not (6 <= d.month <= 8 or (d.month == 9 and d.day < 5))


def _school(seed: int, asset: Asset, t: datetime) -> dict[str, Any] | None:
    lt = local(t)
    h = _hour_of(lt)
    if not school_day(lt.date()) or not 6.5 <= h < 17.0:
        return None
    key = lt.date().isoformat()
    rate = 96.0 + 1.5 * signed(seed, asset.slug, "a", key) - (1.0 if lt.weekday() == 0 else 0.0)
    if storm(seed, asset.zone, lt.date())[2] > 20.0:
        rate -= 2.0
    places = int(asset.params["places"])
    # Fewer pupils on site at lunch break (11:30–13:30): many go home.
    present_share = 0.6 if 11.5 <= h < 13.5 else 1.0
    present = round(places * rate / 100.0 * present_share)
    return {"attendanceRate": round(rate, 1), "occupancy": present}


_GENERATORS: Mapping[str, Callable[[int, Asset, datetime], dict[str, Any] | None]] = {
    "weather": _weather,
    "air": _air,
    "river_level": _river_level,
    "reservoir": _reservoir,
    "water_quality": _water_quality,
    "wastewater": _wastewater,
    "traffic": traffic_at,
    "parking": _parking,
    "streetlight": _streetlight,
    "waste": _waste,
    "noise": _noise,
    "hospital": _hospital,
    "school": _school,
}


def observe(asset: Asset, t: datetime, seed: int) -> dict[str, Any] | None:
    """Return the asset's measured attributes at `t` (tz-aware), or None if it reports nothing."""
    if t.tzinfo is None:
        raise ValueError("observe needs a tz-aware datetime")
    t = t.astimezone(UTC)
    if any(a.kind == anom.SENSOR_SILENT for a in anom.active(seed, asset.slug, t)):
        return None
    return _GENERATORS[asset.kind](seed, asset, t)
