"""Unit conversions for ingest: declarative, linear, looked up by (from unit, to unit).

Units are named by UN/CEFACT common codes (`GQ` µg/m³, `CEL` °C ...); the usual symbols are
accepted as aliases (`ug/m3`, `°F`, `km/h`). A conversion is `value * scale + offset`; either a
device's attribute description names it explicitly (scale/offset) or it is found in the table
below. Gas mixing ratios (ppb, ppm) convert to mass concentrations with the substance's molar
mass at 25 °C and 1 atm (molar volume 24.45 L/mol), the convention of air-quality networks.
"""

from __future__ import annotations

from dataclasses import dataclass

# Symbol (lower case) → UN/CEFACT common code.
ALIASES: dict[str, str] = {
    "ug/m3": "GQ",
    "µg/m3": "GQ",
    "µg/m³": "GQ",
    "ug/m³": "GQ",
    "mg/m3": "GP",
    "mg/m³": "GP",
    "degc": "CEL",
    "°c": "CEL",
    "c": "CEL",
    "degf": "FAH",
    "°f": "FAH",
    "f": "FAH",
    "k": "KEL",
    "km/h": "KMH",
    "kmh": "KMH",
    "m/s": "MTS",
    "cm": "CMT",
    "mm": "MMT",
    "m": "MTR",
    "ppb": "61",
    "ppm": "59",
    "%": "P1",
    "percent": "P1",
    "fraction": "C62",
    "1": "C62",
    "hpa": "A97",
    "pa": "PAL",
    "mm/h": "H67",
    "l/m2": "MMT",
    "db": "2N",
    "dba": "2N",
    "w/m2": "D54",
    "m3/h": "MQH",
    "m3/s": "MQS",
    "mg/l": "M1",
    "ntu": "NTU",
    "us/cm": "G42",
    "µs/cm": "G42",
}

# Codes CityOps knows; a canonical unit must be one of these (or given without conversion).
KNOWN_CODES = frozenset(ALIASES.values()) | {"C62", "E30", "D33"}

# (from, to) → (scale, offset) for unit pairs that do not depend on the substance.
LINEAR: dict[tuple[str, str], tuple[float, float]] = {
    ("GQ", "GP"): (0.001, 0.0),
    ("GP", "GQ"): (1000.0, 0.0),
    ("FAH", "CEL"): (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    ("CEL", "FAH"): (9.0 / 5.0, 32.0),
    ("KEL", "CEL"): (1.0, -273.15),
    ("KMH", "MTS"): (1.0 / 3.6, 0.0),
    ("MTS", "KMH"): (3.6, 0.0),
    ("CMT", "MTR"): (0.01, 0.0),
    ("MMT", "MTR"): (0.001, 0.0),
    ("MTR", "CMT"): (100.0, 0.0),
    ("P1", "C62"): (0.01, 0.0),
    ("C62", "P1"): (100.0, 0.0),
    ("PAL", "A97"): (0.01, 0.0),
    ("A97", "PAL"): (100.0, 0.0),
    ("MQS", "MQH"): (3600.0, 0.0),
    ("MQH", "MQS"): (1.0 / 3600.0, 0.0),
}

# Molar masses (g/mol) of the gases air-quality stations report as mixing ratios.
MOLAR_MASS: dict[str, float] = {
    "no2": 46.0055,
    "no": 30.006,
    "o3": 47.997,
    "co": 28.010,
    "so2": 64.066,
    "nh3": 17.031,
    "h2s": 34.08,
    "sh2": 34.08,
    "c6h6": 78.11,
}
MOLAR_VOLUME_L = 24.45


@dataclass(frozen=True, slots=True)
class Linear:
    """A conversion `value * scale + offset`."""

    scale: float = 1.0
    offset: float = 0.0

    def __call__(self, value: float) -> float:
        """Convert one value."""
        return value * self.scale + self.offset


IDENTITY = Linear()


def unit_code(unit: str) -> str:
    """Return the UN/CEFACT code for a code or a known symbol (unknown text is kept as given)."""
    text = unit.strip()
    return ALIASES.get(text.lower(), text)


def find(from_unit: str, to_unit: str, *, substance: str | None = None) -> Linear | None:
    """Return the conversion between two units (codes or symbols), or None if there is none."""
    source, target = unit_code(from_unit), unit_code(to_unit)
    if source == target:
        return IDENTITY
    pair = LINEAR.get((source, target))
    if pair is not None:
        return Linear(*pair)
    mass = MOLAR_MASS.get((substance or "").lower())
    if mass is None:
        return None
    # 1 ppb = M / 24.45 µg/m³ and 1 ppm = M / 24.45 mg/m³ (25 °C, 1 atm).
    factor = mass / MOLAR_VOLUME_L
    gas: dict[tuple[str, str], float] = {
        ("61", "GQ"): factor,
        ("59", "GP"): factor,
        ("59", "GQ"): factor * 1000.0,
        ("61", "GP"): factor / 1000.0,
        ("GQ", "61"): 1.0 / factor,
        ("GP", "59"): 1.0 / factor,
    }
    scale = gas.get((source, target))
    return None if scale is None else Linear(scale, 0.0)
