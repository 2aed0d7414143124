"""Reading a profile's reference data: `profiles/<name>/profile.json` and the CSVs it names.

A province is data, not code: names, dates, lineage and departments all come from these files.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from cityops.core.text import fold

_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class UnitSeed:
    """One unit as the profile describes it."""

    code: str
    name: str
    unit_type: str
    level: str
    parent_code: str | None
    valid_from: date | None
    valid_to: date | None
    lat: float | None
    lon: float | None
    area_km2: float | None = None
    population: int | None = None
    name_en: str | None = None
    formed_from: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything a profile seeds, already resolved (names mapped to codes, dates picked)."""

    name: str
    config: dict[str, Any]
    province_code: str
    communes: tuple[UnitSeed, ...]
    legacy: tuple[UnitSeed, ...]
    legacy_provinces: tuple[UnitSeed, ...]
    areas: tuple[dict[str, Any], ...] = field(default=())
    departments: tuple[dict[str, Any], ...] = field(default=())

    def province(self, on: date) -> UnitSeed:
        """The province unit with the name and type valid on a date."""
        entry = province_name_on(self.config["province"]["names"], on)
        cfg = self.config["province"]
        return UnitSeed(
            code=self.province_code,
            name=entry["name"],
            name_en=entry.get("name_en"),
            unit_type=entry["unit_type"],
            level="province",
            parent_code=None,
            valid_from=None,
            valid_to=None,
            lat=cfg.get("lat"),
            lon=cfg.get("lon"),
            area_km2=cfg.get("area_km2"),
            population=cfg.get("population"),
        )


def province_name_on(names: list[dict[str, Any]], on: date) -> dict[str, Any]:
    """Pick the dated name entry in force on a date (the earliest one before any is in force)."""
    dated = sorted(names, key=lambda entry: entry["valid_from"])
    chosen = dated[0]
    for entry in dated:
        if date.fromisoformat(entry["valid_from"]) <= on:
            chosen = entry
    return chosen


def profile_folder(name: str) -> Traversable:
    """The data folder of a profile; refuse names that are not plain identifiers."""
    if not _PROFILE_NAME.match(name):
        raise ValueError(f"not a profile name: {name!r}")
    folder = resources.files("cityops") / "profiles" / name
    if not (folder / "profile.json").is_file():
        raise ValueError(f"no such profile: {name!r}")
    return folder


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip())


def _read_csv(folder: Traversable, filename: str) -> list[dict[str, str]]:
    text = (folder / filename).read_text(encoding="utf-8-sig")
    return [{k: _nfc(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def _legacy_name_key(province: str, name: str) -> tuple[str, str]:
    return fold(province), fold(name)


def expand_district_name(short: str, prefixes: dict[str, str]) -> str:
    """Turn a short legacy name (`TP Đồng Xoài`, `H. Phú Riềng`) into the full one."""
    for abbreviation, full in prefixes.items():
        if short.startswith(abbreviation):
            return full + short[len(abbreviation) :].strip()
    return short


@lru_cache(maxsize=8)
def load_profile(name: str) -> Profile:
    """Load and resolve a profile; raise ValueError naming every inconsistency found."""
    folder = profile_folder(name)
    config: dict[str, Any] = json.loads((folder / "profile.json").read_text(encoding="utf-8"))
    province_code = str(config["province"]["code"])
    reform = date.fromisoformat(config["reform_date"])
    prefixes: dict[str, str] = config["district_name_prefixes"]
    current_provinces = {fold(p) for p in config["current_province_names"]}

    legacy_provinces: list[UnitSeed] = []
    province_by_name: dict[str, str] = {}
    for entry in config.get("legacy_provinces", []):
        province_by_name[fold(entry["former_province"])] = entry["code"]
        legacy_provinces.append(
            UnitSeed(
                code=entry["code"],
                name=entry["name"],
                name_en=entry.get("name_en"),
                unit_type=entry["unit_type"],
                level="province",
                parent_code=None,
                valid_from=None,
                valid_to=date.fromisoformat(entry["valid_to"]),
                lat=entry.get("lat"),
                lon=entry.get("lon"),
            )
        )

    problems: list[str] = []
    legacy: list[UnitSeed] = []
    legacy_by_name: dict[tuple[str, str], str] = {}
    for row in _read_csv(folder, config["legacy_districts_file"]):
        former = fold(row["former_province"])
        if former in current_provinces:
            parent = province_code
        elif former in province_by_name:
            parent = province_by_name[former]
        else:
            problems.append(f"district {row['code']}: unknown province {row['former_province']!r}")
            continue
        key = _legacy_name_key(row["former_province"], row["name"])
        if key in legacy_by_name:
            problems.append(f"district {row['code']}: name {row['name']!r} is not unique")
        legacy_by_name[key] = row["code"]
        legacy.append(
            UnitSeed(
                code=row["code"],
                name=row["name"],
                unit_type=row["type"],
                level="district",
                parent_code=parent,
                valid_from=None,
                valid_to=date.fromordinal(reform.toordinal() - 1),
                lat=float(row["lat_approx"]),
                lon=float(row["lon_approx"]),
            )
        )

    communes: list[UnitSeed] = []
    for row in _read_csv(folder, config["communes_file"]):
        formed_from: list[str] = []
        for short in filter(None, (part.strip() for part in row["former_districts"].split(";"))):
            key = _legacy_name_key(row["former_province"], expand_district_name(short, prefixes))
            if key not in legacy_by_name:
                problems.append(f"commune {row['code']}: unknown former district {short!r}")
                continue
            formed_from.append(legacy_by_name[key])
        communes.append(
            UnitSeed(
                code=row["code"],
                name=row["name"],
                unit_type=row["type"],
                level="commune",
                parent_code=province_code,
                valid_from=reform,
                valid_to=None,
                lat=float(row["lat_approx"]),
                lon=float(row["lon_approx"]),
                area_km2=float(row["area_km2_approx"]) if row.get("area_km2_approx") else None,
                formed_from=tuple(formed_from),
            )
        )
    if problems:
        raise ValueError("profile " + name + ": " + "; ".join(problems))
    return Profile(
        name=name,
        config=config,
        province_code=province_code,
        communes=tuple(communes),
        legacy=tuple(legacy),
        legacy_provinces=tuple(legacy_provinces),
        areas=tuple(config.get("areas", [])),
        departments=tuple(config.get("departments", [])),
    )
