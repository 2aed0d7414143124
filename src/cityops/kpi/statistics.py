"""Import of yearly sector statistics (the `statistics` inputs) from CSV or XLSX.

Columns: `unit_code`, `year`, `name`, `value` and optionally `source` (header names compared in
lower case; `unit`, `nam`, `ten`/`chi_so`, `gia_tri`, `nguon` are accepted too). CSV lines
starting with `#` are comments; the separator is `,`, `;` or a tab. Line numbers are the file's
(CSV: the line, the header being line 1 unless comments come first; XLSX: the sheet row).

All or nothing, as egov's dossier import through the API: every row is validated first and every
problem is reported with its line (unknown unit, unknown statistic name — the message lists the
valid names —, year out of range, value not a number or negative, the same unit/year/name twice);
one bad row refuses the file and nothing is written. A statistics file is small (a few thousand
rows a year), so the command line behaves the same way. Rows are keyed by (unit, year, name):
re-importing a file changes nothing, a corrected value replaces the stored one.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.errors import DomainError, Invalid
from cityops.core.text import fold
from cityops.kpi import inputs, service
from cityops.units.models import AdminUnit

MIN_YEAR = 2000
MAX_ROWS = 100_000
MAX_SOURCE = 300
COLUMNS: dict[str, tuple[str, ...]] = {
    "unit_code": ("unit_code", "unit", "ma_xa", "ma_don_vi", "ma_dvhc"),
    "year": ("year", "nam"),
    "name": ("name", "statistic", "ten", "chi_so", "ma_chi_so"),
    "value": ("value", "gia_tri", "so_lieu"),
    "source": ("source", "nguon", "nguon_so_lieu"),
}
REQUIRED = ("unit_code", "year", "name", "value")
_ALIASES = {alias: column for column, names in COLUMNS.items() for alias in names}
_GAP = re.compile(r"[^a-z0-9]+")
_YEAR = re.compile(r"[0-9]{4}")  # ASCII digits only (str.isdigit accepts '²')


def names() -> list[str]:
    """The statistic names a file may hold: the registry's `statistics` inputs."""
    return [i.name for i in inputs.INPUTS.values() if i.source == "statistics"]


class FileRefused(DomainError):
    """The file as a whole cannot be read (not CSV/XLSX, unreadable, a column missing)."""


class UnsupportedMediaType(DomainError):
    """Neither a CSV nor an XLSX file."""

    status, slug, title_key = 415, "unsupported-media-type", "error.unsupported_media_type"


@dataclass(slots=True)
class Report:
    """What an import did: rows read, added, changed, already identical."""

    rows: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def _column(name: Any) -> str | None:
    return _ALIASES.get(_GAP.sub("_", fold(str(name or ""))).strip("_"))


def _header(values: list[Any]) -> list[str | None]:
    mapped = [_column(v) for v in values]
    missing = [c for c in REQUIRED if c not in mapped]
    if missing:
        raise FileRefused(
            "kpi.statistics.missing_columns",
            columns=", ".join(missing),
            errors=[
                {
                    "field": c,
                    "in": "file",
                    "key": "kpi.statistics.missing_column",
                    "params": {"column": c},
                }
                for c in missing
            ],
        )
    return mapped


def _csv_rows(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRefused("kpi.statistics.unreadable", detail=str(exc)[:200]) from None
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#")), None)
    if start is None:
        raise FileRefused("kpi.statistics.empty")
    delimiter = max((",", ";", "\t"), key=lines[start].count)
    try:
        mapped = _header(next(csv.reader([lines[start]], delimiter=delimiter)))
        for number in range(start + 1, len(lines)):
            line = lines[number]
            if not line.strip() or line.startswith("#"):
                continue
            values = next(csv.reader([line], delimiter=delimiter))
            yield number + 1, {c: v for c, v in zip(mapped, values, strict=False) if c}
    except csv.Error as exc:
        raise FileRefused("kpi.statistics.unreadable", detail=str(exc)[:200]) from None


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        rows = list(book.worksheets[0].iter_rows(values_only=True))
        book.close()
    # openpyxl raises many kinds of errors on a malformed workbook: all mean "unreadable".
    except Exception as exc:  # noqa: BLE001
        raise FileRefused("kpi.statistics.unreadable", detail=str(exc)[:200]) from None
    filled = [(n + 1, list(r)) for n, r in enumerate(rows) if any(str(v or "").strip() for v in r)]
    if not filled:
        raise FileRefused("kpi.statistics.empty")
    mapped = _header(filled[0][1])
    for number, values in filled[1:]:
        yield number, {c: v for c, v in zip(mapped, values, strict=False) if c}


def read_rows(file_name: str, data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """The (line, row) pairs of a CSV or XLSX file, told apart by content then name."""
    suffix = Path(file_name or "").suffix.lower()
    if data[:4] == b"PK\x03\x04" or suffix == ".xlsx":
        return _xlsx_rows(data)
    if suffix in ("", ".csv", ".txt"):
        return _csv_rows(data)
    raise UnsupportedMediaType("kpi.statistics.format", name=file_name)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _bad(line: int, column: str, key: str, value: Any, **params: Any) -> dict[str, Any]:
    shown = _text(value)[:100]
    return {
        "line": line,
        "field": column,
        "in": "file",
        "key": key,
        "params": {"line": line, "value": shown, **params},
        "value": shown,
    }


def validate(
    *, session: Session, rows: Iterator[tuple[int, dict[str, Any]]], max_year: int
) -> tuple[list[tuple[str, int, str, float, str | None]], list[dict[str, Any]]]:
    """Check every row; return the valid ones and every problem (each with its line)."""
    units = set(session.scalars(select(AdminUnit.code).where(AdminUnit.level == "commune")).all())
    known = names()
    valid_names = ", ".join(known)
    good: list[tuple[str, int, str, float, str | None]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, str], int] = {}
    for count, (line, row) in enumerate(rows, start=1):
        if count > MAX_ROWS:
            raise FileRefused("kpi.statistics.too_many_rows", limit=MAX_ROWS)
        before = len(errors)
        unit, name = _text(row.get("unit_code")), _text(row.get("name"))
        if unit not in units:
            errors.append(_bad(line, "unit_code", "kpi.statistics.unknown_unit", unit))
        if name not in known:
            errors.append(
                _bad(line, "name", "kpi.statistics.unknown_name", name, names=valid_names)
            )
        year_text = _text(row.get("year"))
        year = int(year_text) if _YEAR.fullmatch(year_text) else None
        if year is None or not MIN_YEAR <= year <= max_year:
            errors.append(
                _bad(
                    line, "year", "kpi.statistics.bad_year", year_text, low=MIN_YEAR, high=max_year
                )
            )
        raw = row.get("value")
        value: float | None
        try:
            value = float(raw) if isinstance(raw, int | float) else float(_text(raw))
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            errors.append(_bad(line, "value", "kpi.statistics.not_a_number", raw))
        elif value < 0:
            errors.append(_bad(line, "value", "kpi.statistics.negative", raw))
        source = _text(row.get("source"))[:MAX_SOURCE] or None
        if len(errors) > before or year is None or value is None:
            continue
        key = (unit, year, name)
        if key in seen:
            errors.append(_bad(line, "name", "kpi.statistics.duplicate", name, first=seen[key]))
            continue
        seen[key] = line
        good.append((unit, year, name, value, source))
    return good, errors


def import_file(*, session: Session, clock: Clock, file_name: str, data: bytes) -> Report:
    """Validate a statistics file and store all of it, or nothing (`Invalid` lists each bad
    row with its line)."""
    good, errors = validate(
        session=session, rows=read_rows(file_name, data), max_year=clock.now().year
    )
    if errors:
        raise Invalid("kpi.statistics.rejected", count=len(errors), errors=errors[:1000])
    if not good:
        raise FileRefused("kpi.statistics.empty")
    report = Report(rows=len(good))
    report.imported, report.updated, report.unchanged = service.upsert_statistics(
        session=session, rows=good, clock=clock
    )
    return report
