"""Programme spreadsheets: an XLSX workbook or CSV files → located, checked rows → a plan.

A workbook holds up to four sheets; CSV files hold one each. Sheets and files are recognised by
name, in English or Vietnamese, with or without diacritics (`items`, `Hạng mục`, `hang_muc`);
so are column headers. Other sheets (instructions, notes) are ignored with a warning.

phases      code, name, name_en, description, start_year, end_year,
            planned_recurrent_pct, planned_investment_pct (default 40/60; one gives the other)
items       code, name, name_en, description, phase, sector, owner (department code),
            supporting (department codes), units (unit or area codes; an area stands for its
            member units), status, progress (0–100), start_date, end_date
budget      item, year, source (recurrent | investment; "vốn sự nghiệp", "đầu tư phát triển"),
            allocated, disbursed (whole VND)
milestones  item, name, name_en, due_date, done_date, weight (1–100, default 1)

Lists are separated by `;` or `,`; dates are YYYY-MM-DD or DD/MM/YYYY (or date cells); amounts
may carry thousands separators (`12.500.000.000`). CSV files are UTF-8 (Excel: "CSV UTF-8"),
comma- or semicolon-separated; lines starting with `#` before the header are comments. Row
numbers are the spreadsheet's (header row included), so a reported row is found as numbered.

A row describes its item completely for the columns the sheet has: an empty cell clears an
optional field (or takes the default), a column the sheet lacks leaves the field as it is.
Every item named in the budget (or milestones) sheet gets exactly the lines (milestones) listed
for it there; items not named keep theirs.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from cityops.core.schemas import FIRST_DAY, LAST_DAY
from cityops.core.text import fold
from cityops.programme import service
from cityops.programme.enums import BudgetSource, ItemStatus
from cityops.programme.schemas import CODE_PATTERN, BudgetLineIn, MilestoneCreate

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000  # per sheet
MAX_COLUMNS = 64
MAX_PROBLEMS = 500  # reported; counting goes on

KINDS = ("phases", "items", "budget", "milestones")
WORKBOOK = "workbook"  # the kind given for a file to read as an XLSX workbook, whatever its name

_NON_WORD = re.compile(r"[^a-z0-9]+")


def _key(text: str) -> str:
    """A header or sheet name as a comparable key: `Tiến độ (%)` → `tien_do`."""
    return _NON_WORD.sub("_", fold(text)).strip("_")


SHEET_NAMES: dict[str, str] = {
    alias: kind
    for kind, aliases in {
        "phases": ("phases", "phase", "giai_doan", "cac_giai_doan"),
        "items": ("items", "item", "hang_muc", "danh_muc_hang_muc", "danh_muc"),
        "budget": ("budget", "budget_lines", "ngan_sach", "kinh_phi", "nguon_von", "von"),
        "milestones": ("milestones", "milestone", "moc", "moc_tien_do", "cac_moc"),
    }.items()
    for alias in aliases
}

_ITEM_REF = ("item", "item_code", "code", "ma_hang_muc", "hang_muc", "ma")
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "phases": {
        "code": ("code", "ma", "ma_giai_doan", "giai_doan", "phase"),
        "name": ("name", "name_vi", "ten", "ten_giai_doan"),
        "name_en": ("name_en", "english_name", "ten_en", "ten_tieng_anh"),
        "description": ("description", "mo_ta", "ghi_chu"),
        "start_year": ("start_year", "nam_bat_dau", "tu_nam"),
        "end_year": ("end_year", "nam_ket_thuc", "den_nam"),
        "planned_recurrent_pct": (
            "planned_recurrent_pct",
            "recurrent_pct",
            "ty_le_von_su_nghiep",
            "von_su_nghiep",
            "su_nghiep",
        ),
        "planned_investment_pct": (
            "planned_investment_pct",
            "investment_pct",
            "ty_le_von_dau_tu_phat_trien",
            "ty_le_von_dau_tu",
            "von_dau_tu_phat_trien",
            "dau_tu_phat_trien",
        ),
    },
    "items": {
        "code": ("code", "item", "item_code", "ma", "ma_hang_muc"),
        "name": ("name", "name_vi", "ten", "ten_hang_muc", "hang_muc"),
        "name_en": ("name_en", "english_name", "ten_en", "ten_tieng_anh"),
        "description": ("description", "mo_ta", "noi_dung"),
        "phase": ("phase", "phase_code", "giai_doan", "ma_giai_doan"),
        "sector": ("sector", "linh_vuc"),
        "owner": (
            "owner",
            "owner_department",
            "owner_department_code",
            "chu_tri",
            "don_vi_chu_tri",
            "co_quan_chu_tri",
        ),
        "supporting": (
            "supporting",
            "supporting_departments",
            "supporting_department_codes",
            "phoi_hop",
            "don_vi_phoi_hop",
            "co_quan_phoi_hop",
        ),
        "units": (
            "units",
            "unit_codes",
            "participating_units",
            "don_vi_tham_gia",
            "dia_ban",
            "dia_ban_trien_khai",
        ),
        "status": ("status", "trang_thai"),
        "progress": ("progress", "progress_pct", "tien_do", "tien_do_pct", "ty_le_hoan_thanh"),
        "start_date": ("start_date", "start", "ngay_bat_dau", "bat_dau", "tu_ngay"),
        "end_date": ("end_date", "end", "ngay_ket_thuc", "ket_thuc", "den_ngay"),
    },
    "budget": {
        "item": _ITEM_REF,
        "year": ("year", "nam"),
        "source": ("source", "nguon", "nguon_von", "loai_von"),
        "allocated": (
            "allocated",
            "allocated_vnd",
            "phan_bo",
            "da_phan_bo",
            "von_phan_bo",
            "kinh_phi_phan_bo",
            "du_toan",
            "ke_hoach_von",
        ),
        "disbursed": (
            "disbursed",
            "disbursed_vnd",
            "giai_ngan",
            "da_giai_ngan",
            "kinh_phi_giai_ngan",
        ),
    },
    "milestones": {
        "item": _ITEM_REF,
        "name": ("name", "name_vi", "milestone", "ten", "ten_moc", "moc", "noi_dung"),
        "name_en": ("name_en", "english_name", "ten_en", "ten_tieng_anh"),
        "due_date": ("due_date", "due", "han", "thoi_han", "han_hoan_thanh", "ngay_den_han"),
        "done_date": ("done_date", "done", "ngay_hoan_thanh", "hoan_thanh"),
        "weight": ("weight", "trong_so"),
    },
}

# Columns a sheet must have (items also need name, phase, sector and owner for new items:
# checked per row, so a sheet that only updates progress may leave them out).
REQUIRED: dict[str, tuple[str, ...]] = {
    "phases": ("code",),
    "items": ("code",),
    "budget": ("item", "year", "source", "allocated"),
    "milestones": ("item", "name", "due_date"),
}

STATUS_WORDS: dict[str, str] = {
    alias: str(status)
    for status, aliases in {
        ItemStatus.PLANNED: ("planned", "ke_hoach", "chua_trien_khai", "chuan_bi"),
        ItemStatus.IN_PROGRESS: (
            "in_progress",
            "dang_trien_khai",
            "dang_thuc_hien",
            "trien_khai",
        ),
        ItemStatus.DONE: ("done", "completed", "hoan_thanh", "da_hoan_thanh"),
        ItemStatus.DELAYED: ("delayed", "late", "cham", "cham_tien_do", "tre_han"),
        ItemStatus.CANCELLED: ("cancelled", "canceled", "huy", "da_huy", "dung_trien_khai"),
    }.items()
    for alias in aliases
}

SOURCE_WORDS: dict[str, str] = {
    alias: str(source)
    for source, aliases in {
        BudgetSource.RECURRENT: (
            "recurrent",
            "su_nghiep",
            "von_su_nghiep",
            "thuong_xuyen",
            "chi_thuong_xuyen",
        ),
        BudgetSource.INVESTMENT: (
            "investment",
            "dau_tu",
            "dau_tu_phat_trien",
            "von_dau_tu",
            "von_dau_tu_phat_trien",
            "dtpt",
        ),
    }.items()
    for alias in aliases
}


# --- problems ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong (or worth a warning) at a place in the file."""

    sheet: str
    row: int | None
    column: str | None
    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_error(self) -> dict[str, Any]:
        """Return the problem as a problem+json field error (rendered at the edge)."""
        where = self.sheet if self.row is None else f"{self.sheet}[{self.row}]"
        return {
            "field": f"{where}.{self.column}" if self.column else where,
            "in": "body",
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "key": self.key,
            "params": self.params,
        }


class ImportRefused(Exception):
    """The file cannot be imported; `problems` say where and why (nothing was written)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


class _CellError(ValueError):
    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


# --- reading sheets ----------------------------------------------------------------------------


@dataclass(slots=True)
class Table:
    """One sheet: its kind, name as written, header texts and the non-empty rows."""

    kind: str
    sheet: str
    header_row: int
    headers: dict[str, str] = field(default_factory=dict)  # canonical name → text as written
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def column(self, name: str) -> str:
        """The column as the file names it (the canonical name if the sheet lacks it)."""
        return self.headers.get(name, name)


def kind_of(name: str) -> str | None:
    """Return the kind of sheet a sheet or file name stands for, if any."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return SHEET_NAMES.get(_key(stem))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _table(kind: str, sheet: str, rows: list[tuple[int, list[Any]]], notes: list[Problem]) -> Table:
    """Turn raw rows into a table: find the header, map columns, keep non-empty rows."""
    header_at: int | None = None
    headers: list[Any] = []
    body: list[tuple[int, list[Any]]] = []
    for number, cells in rows:
        if all(_blank(c) for c in cells):
            continue
        if header_at is None:
            if isinstance(cells[0], str) and cells[0].lstrip().startswith("#"):
                continue  # a comment above the header
            header_at, headers = number, cells
            continue
        body.append((number, cells))
    if header_at is None:
        raise ImportRefused([Problem(sheet, None, None, "programme.import.no_header")])
    table = Table(kind=kind, sheet=sheet, header_row=header_at)
    index: dict[str, int] = {}
    aliases = {alias: name for name, names in COLUMNS[kind].items() for alias in names}
    for position, text in enumerate(headers):
        if _blank(text):
            continue
        name = aliases.get(_key(str(text)))
        if name is None:
            notes.append(Problem(sheet, header_at, str(text), "programme.import.unknown_column"))
            continue
        if name in index:
            raise ImportRefused(
                [Problem(sheet, header_at, str(text), "programme.import.duplicate_column")]
            )
        index[name] = position
        table.headers[name] = str(text).strip()
    missing = [name for name in REQUIRED[kind] if name not in index]
    if missing:
        raise ImportRefused(
            [
                Problem(sheet, header_at, name, "programme.import.missing_column", {"name": name})
                for name in missing
            ]
        )
    if len(body) > MAX_ROWS:
        raise ImportRefused(
            [Problem(sheet, None, None, "programme.import.too_many_rows", {"max": MAX_ROWS})]
        )
    for number, cells in body:
        table.rows.append(
            (
                number,
                {name: cells[i] if i < len(cells) else None for name, i in index.items()},
            )
        )
    return table


def read_workbook(data: bytes, name: str, notes: list[Problem]) -> list[Table]:
    """Read the recognised sheets of an XLSX workbook."""
    from openpyxl import load_workbook

    try:
        with warnings.catch_warnings():
            # openpyxl warns about spreadsheet features it drops (validation, styles): harmless.
            warnings.simplefilter("ignore")
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - any failure of the parser on these bytes means "not XLSX"
        raise ImportRefused([Problem(name, None, None, "programme.import.bad_workbook")]) from None
    tables: list[Table] = []
    try:
        for sheet in book.worksheets:
            kind = kind_of(sheet.title)
            if kind is None:
                notes.append(Problem(sheet.title, None, None, "programme.import.unknown_sheet"))
                continue
            rows: list[tuple[int, list[Any]]] = []
            for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
                if number > MAX_ROWS + 50:
                    too_many = {"max": MAX_ROWS}
                    raise ImportRefused(
                        [
                            Problem(
                                sheet.title, None, None, "programme.import.too_many_rows", too_many
                            )
                        ]
                    )
                rows.append((number, list(cells[:MAX_COLUMNS])))
            tables.append(_table(kind, sheet.title, rows, notes))
    except ImportRefused:
        raise
    except Exception:  # noqa: BLE001 - a sheet the parser cannot read: the file is not usable
        raise ImportRefused([Problem(name, None, None, "programme.import.bad_workbook")]) from None
    finally:
        book.close()
    return tables


def read_csv(data: bytes, name: str, kind: str, notes: list[Problem]) -> Table:
    """Read one CSV file of a kind (UTF-8, comma or semicolon separated)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused([Problem(name, None, None, "programme.import.not_utf8")]) from None
    if "\x00" in text:
        raise ImportRefused([Problem(name, None, None, "programme.import.not_utf8")])
    header = next(
        (line for line in text.splitlines() if line.strip() and not line.startswith("#")), ""
    )
    # Excel in a Vietnamese locale separates with ';' (',' is the decimal mark there).
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[Any]]] = []
    try:
        for cells in reader:
            # line_num is the line the row ended on: its number for one-line rows.
            rows.append((reader.line_num, list(cells)))
            if len(rows) > MAX_ROWS + 50:
                raise ImportRefused(
                    [Problem(name, None, None, "programme.import.too_many_rows", {"max": MAX_ROWS})]
                )
    except csv.Error as exc:
        raise ImportRefused(
            [Problem(name, reader.line_num, None, "programme.import.bad_csv", {"detail": str(exc)})]
        ) from None
    return _table(kind, name, rows, notes)


def read_files(files: list[tuple[str, bytes, str | None]], notes: list[Problem]) -> list[Table]:
    """Read (name, bytes, kind) files: workbooks (.xlsx, or kind `workbook`) and CSV files
    whose kind is given or comes from the name."""
    tables: list[Table] = []
    for name, data, kind in files:
        if len(data) > MAX_FILE_BYTES:
            raise ImportRefused(
                [Problem(name, None, None, "programme.import.too_large", {"max": MAX_FILE_BYTES})]
            )
        if (
            kind == WORKBOOK
            or name.lower().endswith(".xlsx")
            or (kind is None and data[:2] == b"PK")
        ):
            tables.extend(read_workbook(data, name, notes))
            continue
        kind = kind or kind_of(name)
        if kind is None:
            raise ImportRefused([Problem(name, None, None, "programme.import.unknown_file")])
        tables.append(read_csv(data, name, kind, notes))
    seen: dict[str, str] = {}
    for table in tables:
        if table.kind in seen:
            raise ImportRefused(
                [
                    Problem(
                        table.sheet,
                        None,
                        None,
                        "programme.import.twice",
                        {"kind": table.kind, "other": seen[table.kind]},
                    )
                ]
            )
        seen[table.kind] = table.sheet
    if not tables:
        raise ImportRefused([Problem("-", None, None, "programme.import.nothing")])
    return tables


def read_paths(paths: list[Path], notes: list[Problem]) -> list[Table]:
    """Read files from disk; a folder stands for the CSV and XLSX files inside it."""
    files: list[tuple[str, bytes, str | None]] = []
    for path in paths:
        members = (
            sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".xlsx"))
            if path.is_dir()
            else [path]
        )
        for member in members:
            if member.stat().st_size > MAX_FILE_BYTES:
                raise ImportRefused(
                    [
                        Problem(
                            member.name,
                            None,
                            None,
                            "programme.import.too_large",
                            {"max": MAX_FILE_BYTES},
                        )
                    ]
                )
            files.append((member.name, member.read_bytes(), None))
    return read_files(files, notes)


# --- cells -------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MULTILINE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CODE = re.compile(CODE_PATTERN)
_GROUPED = re.compile(r"^\d{1,3}(?:([.,])\d{3})(?:\1\d{3})*$")
_DMY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")


def _text(value: Any, *, max_length: int = 300, multiline: bool = False) -> str | None:
    if _blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    text = unicodedata.normalize("NFC", str(value).strip())
    if (_MULTILINE_CONTROL if multiline else _CONTROL).search(text):
        raise _CellError("programme.import.bad_text")
    if len(text) > max_length:
        raise _CellError("programme.import.too_long", max=max_length)
    return text


def _code(value: Any) -> str | None:
    text = _text(value, max_length=32)
    if text is not None and not _CODE.match(text):
        raise _CellError("programme.import.bad_code", value=text)
    return text


def _code_or_none(value: Any) -> str | None:
    """The code in a cell, or None if it holds none (or no valid one)."""
    try:
        return _code(value)
    except _CellError:
        return None


def _int(value: Any, *, low: int, high: int, key: str = "programme.import.bad_number") -> int:
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip().replace("\u00a0", "").replace(" ", "").removesuffix("%")
        for suffix in ("VND", "vnd", "đ", "đồng"):
            text = text.removesuffix(suffix)
        if text.isdigit():
            number = int(text)
        elif _GROUPED.match(text):
            number = int(re.sub(r"[.,]", "", text))
        elif re.fullmatch(r"\d+[.,]0+", text):
            number = int(re.split(r"[.,]", text)[0])
    if number is None:
        raise _CellError(key, value=str(value)[:50])
    if not low <= number <= high:
        raise _CellError("programme.import.out_of_range", value=number, low=low, high=high)
    return number


def _date(value: Any) -> date | None:
    if _blank(value):
        return None
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = str(value).strip()
        match = _DMY.match(text)
        try:
            if match:
                day = date(int(match[3]), int(match[2]), int(match[1]))
            else:
                day = date.fromisoformat(text[:10] if len(text) >= 10 else text)
        except ValueError:
            raise _CellError("programme.import.bad_date", value=text[:50]) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise _CellError("programme.import.bad_date", value=day.isoformat())
    return day


def _list(value: Any) -> list[str]:
    text = _text(value, max_length=20_000)
    if text is None:
        return []
    return [part.strip() for part in re.split(r"[;,\s]+", text) if part.strip()]


def _word(value: Any, words: dict[str, str], key: str) -> str | None:
    text = _text(value, max_length=64)
    if text is None:
        return None
    found = words.get(_key(text))
    if found is None:
        raise _CellError(key, value=text)
    return found


# --- the plan ----------------------------------------------------------------------------------


@dataclass(slots=True)
class PhaseRow:
    """A phase to create or update."""

    row: int
    sheet: str
    code: str
    values: dict[str, Any]


@dataclass(slots=True)
class ItemRow:
    """An item to create or update, with its complete values."""

    row: int
    code: str
    values: service.ItemValues


@dataclass(slots=True)
class Plan:
    """What the file asks for, checked; applied by `flows.apply_plan`."""

    phases: list[PhaseRow] = field(default_factory=list)
    items: list[ItemRow] = field(default_factory=list)
    budget: dict[str, list[BudgetLineIn]] = field(default_factory=dict)
    milestones: dict[str, list[MilestoneCreate]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)


class _Collector:
    """Collects problems; a cell reader that records instead of raising."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def cell(
        self, table: Table, number: int, name: str, reader: Callable[[Any], Any], value: Any
    ) -> tuple[bool, Any]:
        """Read a cell; on a bad value, record where and why and return (False, None)."""
        try:
            return True, reader(value)
        except _CellError as exc:
            self.add(Problem(table.sheet, number, table.column(name), exc.key, exc.params))
            return False, None


# Which spreadsheet column a service field error belongs to.
_ITEM_FIELDS = {
    "phase_code": "phase",
    "owner_department_code": "owner",
    "supporting_department_codes": "supporting",
    "unit_codes": "units",
}


def _phase_rows(
    table: Table, existing: dict[str, tuple[int, int, int]], out: _Collector
) -> list[PhaseRow]:
    rows: list[PhaseRow] = []
    seen: dict[str, int] = {}
    for number, raw in table.rows:
        ok, code = out.cell(table, number, "code", _code, raw["code"])
        if not ok:
            continue
        if code is None:
            out.add(Problem(table.sheet, number, table.column("code"), "programme.import.required"))
            continue
        if code in seen:
            out.add(
                Problem(
                    table.sheet,
                    number,
                    table.column("code"),
                    "programme.import.duplicate",
                    {"value": code, "first": seen[code]},
                )
            )
            continue
        seen[code] = number
        values: dict[str, Any] = {}
        readers: dict[str, Callable[[Any], Any]] = {
            "name": _text,
            "name_en": _text,
            "description": lambda v: _text(v, max_length=4000, multiline=True),
            "start_year": lambda v: None if _blank(v) else _int(v, low=2000, high=2100),
            "end_year": lambda v: None if _blank(v) else _int(v, low=2000, high=2100),
            "planned_recurrent_pct": lambda v: None if _blank(v) else _int(v, low=0, high=100),
            "planned_investment_pct": lambda v: None if _blank(v) else _int(v, low=0, high=100),
        }
        bad = False
        for name, reader in readers.items():
            if name not in raw:
                continue
            ok, value = out.cell(table, number, name, reader, raw[name])
            bad = bad or not ok
            values[name] = value
        if bad:
            continue
        current = existing.get(code)
        for name in ("name", "start_year", "end_year"):
            if values.get(name) is None and (current is None or name in values):
                out.add(
                    Problem(table.sheet, number, table.column(name), "programme.import.required")
                )
                bad = True
        rec, inv = (
            values.pop("planned_recurrent_pct", None),
            values.pop("planned_investment_pct", None),
        )
        if rec is None and inv is None:
            if current is None:
                rec, inv = 40, 60
        elif rec is None:
            rec = 100 - inv
        elif inv is None:
            inv = 100 - rec
        if rec is not None and inv is not None:
            if rec + inv != 100:
                out.add(
                    Problem(
                        table.sheet,
                        number,
                        table.column("planned_investment_pct"),
                        "programme.import.split_not_100",
                    )
                )
                bad = True
            values["planned_recurrent_pct"], values["planned_investment_pct"] = rec, inv
        start = values.get("start_year", current[0] if current else None)
        end = values.get("end_year", current[1] if current else None)
        if start is not None and end is not None and end < start:
            out.add(
                Problem(
                    table.sheet,
                    number,
                    table.column("end_year"),
                    "programme.phase.years_reversed",
                )
            )
            bad = True
        if not bad:
            rows.append(PhaseRow(row=number, sheet=table.sheet, code=code, values=values))
    return rows


def merged_blank(values: service.ItemValues, field_name: str) -> bool:
    """Whether a required item field is still empty (reported as missing, not as unknown)."""
    return field_name in ("phase_code", "sector", "owner_department_code") and not getattr(
        values, field_name
    )


def _item_rows(
    table: Table,
    *,
    session: Session,
    refs: service.References,
    out: _Collector,
) -> list[ItemRow]:
    codes: dict[str, int] = {}
    # (row, code, values read, columns that could not be read)
    parsed: list[tuple[int, str, dict[str, Any], set[str]]] = []
    readers: dict[str, Callable[[Any], Any]] = {
        "name": _text,
        "name_en": _text,
        "description": lambda v: _text(v, max_length=4000, multiline=True),
        "phase": _code,
        "sector": lambda v: _text(v, max_length=32),
        "owner": lambda v: _text(v, max_length=32),
        "supporting": _list,
        "units": _list,
        "status": lambda v: _word(v, STATUS_WORDS, "programme.import.bad_status"),
        "progress": lambda v: None if _blank(v) else _int(v, low=0, high=100),
        "start_date": _date,
        "end_date": _date,
    }
    for number, raw in table.rows:
        ok, code = out.cell(table, number, "code", _code, raw["code"])
        if not ok:
            continue
        if code is None:
            out.add(Problem(table.sheet, number, table.column("code"), "programme.import.required"))
            continue
        if code in codes:
            out.add(
                Problem(
                    table.sheet,
                    number,
                    table.column("code"),
                    "programme.import.duplicate",
                    {"value": code, "first": codes[code]},
                )
            )
            continue
        codes[code] = number
        values: dict[str, Any] = {}
        unreadable: set[str] = set()
        for name, reader in readers.items():
            if name not in raw:
                continue
            ok, value = out.cell(table, number, name, reader, raw[name])
            if ok:
                values[name] = value
            else:
                unreadable.add(name)
        parsed.append((number, code, values, unreadable))
    existing = service.get_by_codes(session=session, codes=[code for _, code, _, _ in parsed])
    rows: list[ItemRow] = []
    for number, code, values, unreadable in parsed:
        item = existing.get(code)
        # The readable cells of a row with unreadable ones are still checked, so one pass
        # reports every problem of the row.
        bad = bool(unreadable)
        for name in ("name", "phase", "sector", "owner"):
            if name in unreadable:
                continue
            if values.get(name) is None and (item is None or name in values):
                out.add(
                    Problem(table.sheet, number, table.column(name), "programme.import.required")
                )
                bad = True
        merged = (
            service.values_of(item)
            if item is not None
            else service.ItemValues(
                name="",
                name_en=None,
                description=None,
                phase_code="",
                sector="",
                owner_department_code="",
                status=str(ItemStatus.PLANNED),
                progress=0,
                start_date=None,
                end_date=None,
                supporting_department_codes=[],
                unit_codes=[],
            )
        )
        for name, value in values.items():
            if name == "phase":
                merged.phase_code = value
            elif name == "owner":
                merged.owner_department_code = value
            elif name == "supporting":
                merged.supporting_department_codes = list(dict.fromkeys(value))
            elif name == "units":
                expanded: list[str] = []
                for token in value:
                    expanded.extend(sorted(refs.areas.get(token, ())) or [token])
                merged.unit_codes = list(dict.fromkeys(expanded))
            elif name == "status":
                merged.status = value or str(ItemStatus.PLANNED)
            elif name == "progress":
                merged.progress = 0 if value is None else value
            else:
                setattr(merged, name, value)
        found = 0
        for problem in service.check_item(refs=refs, values=merged):
            base = problem["field"].split("[", 1)[0]
            name = _ITEM_FIELDS.get(base, base)
            # Missing required values and unreadable cells are reported once, above.
            if name in unreadable or merged_blank(merged, base):
                continue
            found += 1
            out.add(
                Problem(table.sheet, number, table.column(name), problem["key"], problem["params"])
            )
        if not bad and not found:
            rows.append(ItemRow(row=number, code=code, values=merged))
    return rows


def _budget_rows(
    table: Table,
    *,
    phase_of: dict[str, str],
    refs: service.References,
    out: _Collector,
    notes: list[Problem],
) -> dict[str, list[BudgetLineIn]]:
    lines: dict[str, list[BudgetLineIn]] = {}
    seen: dict[tuple[str, int, str], int] = {}
    amount = 10**15
    for number, raw in table.rows:
        cells: dict[str, Any] = {}
        bad = False
        for name, reader in (
            ("item", _code),
            ("year", lambda v: None if _blank(v) else _int(v, low=2000, high=2100)),
            ("source", lambda v: _word(v, SOURCE_WORDS, "programme.import.bad_source")),
            (
                "allocated",
                lambda v: (
                    None
                    if _blank(v)
                    else _int(v, low=0, high=amount, key="programme.import.bad_amount")
                ),
            ),
            (
                "disbursed",
                lambda v: (
                    0
                    if _blank(v)
                    else _int(v, low=0, high=amount, key="programme.import.bad_amount")
                ),
            ),
        ):
            ok, value = out.cell(table, number, name, reader, raw.get(name))
            bad = bad or not ok
            if ok and value is None:
                out.add(
                    Problem(table.sheet, number, table.column(name), "programme.import.required")
                )
                bad = True
            cells[name] = value
        if bad:
            continue
        code, year, source = cells["item"], cells["year"], cells["source"]
        phase = phase_of.get(code)
        if phase is None:
            out.add(
                Problem(
                    table.sheet,
                    number,
                    table.column("item"),
                    "programme.import.unknown_item",
                    {"code": code},
                )
            )
            continue
        key = (code, year, source)
        if key in seen:
            out.add(
                Problem(
                    table.sheet,
                    number,
                    table.column("source"),
                    "programme.import.duplicate_line",
                    {"code": code, "year": year, "source": source, "first": seen[key]},
                )
            )
            continue
        seen[key] = number
        years = refs.phases.get(phase)
        if years is not None and not years[0] <= year <= years[1]:
            out.add(
                Problem(
                    table.sheet,
                    number,
                    table.column("year"),
                    "programme.budget.outside_phase",
                    {"year": year, "phase": phase, "start": years[0], "end": years[1]},
                )
            )
            continue
        if cells["disbursed"] > cells["allocated"]:
            notes.append(
                Problem(
                    table.sheet,
                    number,
                    table.column("disbursed"),
                    "programme.budget.over_disbursed",
                    {"allocated": cells["allocated"], "disbursed": cells["disbursed"]},
                )
            )
        lines.setdefault(code, []).append(
            BudgetLineIn(
                year=year,
                source=BudgetSource(source),
                allocated=cells["allocated"],
                disbursed=cells["disbursed"],
            )
        )
    return lines


def _milestone_rows(
    table: Table, *, phase_of: dict[str, str], out: _Collector
) -> dict[str, list[MilestoneCreate]]:
    milestones: dict[str, list[MilestoneCreate]] = {}
    seen: dict[tuple[str, str], int] = {}
    for number, raw in table.rows:
        cells: dict[str, Any] = {}
        bad = False
        for name, reader, required in (
            ("item", _code, True),
            ("name", _text, True),
            ("name_en", _text, False),
            ("due_date", _date, True),
            ("done_date", _date, False),
            ("weight", lambda v: 1 if _blank(v) else _int(v, low=1, high=100), False),
        ):
            ok, value = out.cell(table, number, name, reader, raw.get(name))
            bad = bad or not ok
            if ok and required and value is None:
                out.add(
                    Problem(table.sheet, number, table.column(name), "programme.import.required")
                )
                bad = True
            cells[name] = value
        if bad:
            continue
        code = cells.pop("item")
        if code not in phase_of:
            out.add(
                Problem(
                    table.sheet,
                    number,
                    table.column("item"),
                    "programme.import.unknown_item",
                    {"code": code},
                )
            )
            continue
        key = (code, cells["name"])
        if key in seen:
            out.add(
                Problem(
                    table.sheet,
                    number,
                    table.column("name"),
                    "programme.import.duplicate_milestone",
                    {"code": code, "name": cells["name"], "first": seen[key]},
                )
            )
            continue
        seen[key] = number
        try:
            milestone = MilestoneCreate(**cells)
        except ValidationError as exc:  # bounds already checked; kept for safety
            out.add(
                Problem(
                    table.sheet,
                    number,
                    None,
                    "programme.import.bad_row",
                    {"detail": exc.errors()[0]["msg"]},
                )
            )
            continue
        milestones.setdefault(code, []).append(milestone)
    return milestones


def build_plan(*, session: Session, tables: list[Table], notes: list[Problem]) -> Plan:
    """Check every row of every sheet against each other and the database.

    Raises ImportRefused with every problem found (up to MAX_PROBLEMS); warnings go to `notes`.
    """
    out = _Collector()
    by_kind = {table.kind: table for table in tables}
    refs = service.get_references(session=session, with_areas=True)
    plan = Plan(rows={table.kind: len(table.rows) for table in tables})
    if "phases" in by_kind:
        existing = {
            p.code: (p.start_year, p.end_year, p.planned_recurrent_pct)
            for p in service.get_all_phases(session=session)
        }
        plan.phases = _phase_rows(by_kind["phases"], existing, out)
        phases = dict(refs.phases)
        for row in plan.phases:
            start, end = phases.get(row.code, (0, 0))
            phases[row.code] = (
                row.values.get("start_year", start),
                row.values.get("end_year", end),
            )
        refs = replace(refs, phases=phases)
    if "items" in by_kind:
        plan.items = _item_rows(by_kind["items"], session=session, refs=refs, out=out)
    phase_of = {row.code: row.values.phase_code for row in plan.items}
    referenced: set[str] = set()
    for kind in ("budget", "milestones"):
        for _, raw in by_kind[kind].rows if kind in by_kind else []:
            ref = _code_or_none(raw.get("item"))
            if ref is not None:
                referenced.add(ref)
    # Items named in the budget or milestones sheets but not in the items sheet must exist.
    item_rows = {row.code for row in plan.items}
    failed_items: set[str] = set()
    for _, raw in by_kind["items"].rows if "items" in by_kind else []:
        ref = _code_or_none(raw.get("code"))
        if ref is not None and ref not in item_rows:
            failed_items.add(ref)
    for code, item in service.get_by_codes(
        session=session, codes=referenced - item_rows - failed_items
    ).items():
        phase_of[code] = item.phase_code
    # Rows of items that failed are not reported twice: their lines are skipped silently.
    for failed in failed_items:
        phase_of.pop(failed, None)
    known = dict(phase_of)
    if "budget" in by_kind:
        table = by_kind["budget"]
        table.rows = [
            (n, raw) for n, raw in table.rows if _code_or_none(raw.get("item")) not in failed_items
        ]
        plan.budget = _budget_rows(table, phase_of=known, refs=refs, out=out, notes=notes)
    if "milestones" in by_kind:
        table = by_kind["milestones"]
        table.rows = [
            (n, raw) for n, raw in table.rows if _code_or_none(raw.get("item")) not in failed_items
        ]
        plan.milestones = _milestone_rows(table, phase_of=known, out=out)
    if out.problems:
        raise ImportRefused(out.problems)
    plan.warnings = notes
    return plan
