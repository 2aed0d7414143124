"""Dossier imports from CSV, XLSX and JSON: header mapping, row validation, storing, the ledger.

Column names are accepted in English or Vietnamese, with or without diacritics, in any case
(`Ngày tiếp nhận`, `ngay_tiep_nhan` and `received_at` are the same column; see `COLUMNS`).
Times without an offset are local (Asia/Ho_Chi_Minh), as the provincial system exports them; a
date without a time is 00:00 for `received_at` and `completed_at` and the end of the day for
`due_at`. Every problem is reported with its line (CSV and XLSX: the line or row in the file,
the header being line 1; JSON: the item's position in the list, from 1), its column and a
reason; a refused row writes nothing.

A dossier is identified by (agency, code). Importing one already stored never duplicates it: an
identical row is skipped; a changed one is skipped too unless the import is told to update
(`update=True`), which then updates it in place (a later export where it is completed, say).

Two ways to run:
- `import_all` (the API): every row is validated first; one bad row refuses the whole request
  (422, nothing written); otherwise everything is written in the caller's transaction.
- `import_file` (the command line, files of any size): streamed in batches, each batch one
  transaction recorded in the import ledger; valid rows are imported, bad rows reported. A run
  that dies half-way is re-run as is: what was committed is recognised and skipped.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, BinaryIO
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from cityops.core.db import unit_of_work
from cityops.core.errors import DomainError, Invalid
from cityops.core.runtime import Runtime
from cityops.core.security import Principal, Scope
from cityops.core.text import fold
from cityops.egov import service
from cityops.egov.enums import (
    OPEN_STATUSES,
    AgencyKind,
    Channel,
    DossierStatus,
    ImportFormat,
    ImportStatus,
    Rating,
)
from cityops.egov.models import Procedure
from cityops.units.flows import local_date

BATCH_ROWS = 2000
MAX_CODE = 64
# Column → accepted names (compared folded: lower case, no diacritics, `_` for any gap).
COLUMNS: dict[str, tuple[str, ...]] = {
    "agency": ("agency", "agency_code", "co_quan", "co_quan_giai_quyet", "ma_co_quan"),
    "code": ("code", "dossier_code", "ma_ho_so", "so_ho_so"),
    "unit_code": (
        "unit",
        "unit_code",
        "don_vi_tiep_nhan",
        "noi_tiep_nhan",
        "ma_don_vi",
        "ma_xa",
    ),
    "procedure": ("procedure", "procedure_code", "ma_thu_tuc", "thu_tuc", "ma_tthc"),
    "received_at": ("received_at", "received", "ngay_tiep_nhan", "thoi_gian_tiep_nhan"),
    "due_at": ("due_at", "due", "ngay_hen_tra", "han_xu_ly", "han_giai_quyet"),
    "completed_at": (
        "completed_at",
        "completed",
        "ngay_hoan_thanh",
        "ngay_tra_ket_qua",
        "ngay_co_ket_qua",
    ),
    "status": ("status", "trang_thai", "tinh_trang"),
    "channel": ("channel", "hinh_thuc_nop", "kenh_nop"),
    "submitted_online": ("submitted_online", "online", "nop_truc_tuyen"),
    "paid_online": ("paid_online", "thanh_toan_truc_tuyen"),
    "digitised": ("digitised", "digitized", "so_hoa", "da_so_hoa"),
    "electronic_result": ("electronic_result", "ket_qua_dien_tu"),
    "reused_data": ("reused_data", "tai_su_dung_du_lieu"),
    "synced": ("synced", "dong_bo_dvcqg", "dong_bo"),
    "supplement_count": ("supplement_count", "so_lan_bo_sung"),
    "rating": ("rating", "danh_gia", "muc_do_hai_long"),
}
REQUIRED = ("agency", "code", "procedure", "received_at", "due_at")
_ALIASES = {alias: column for column, names in COLUMNS.items() for alias in names}
_GAP = re.compile(r"[^a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_TRUE = {"true", "1", "yes", "y", "x", "co", "dung", "t"}
_FALSE = {"false", "0", "no", "n", "khong", "sai", "f"}
_STATUS = {
    DossierStatus.RECEIVED: ("received", "da tiep nhan", "tiep nhan", "moi tiep nhan"),
    DossierStatus.PROCESSING: ("processing", "dang xu ly", "dang giai quyet"),
    DossierStatus.SUPPLEMENTING: ("supplementing", "cho bo sung", "yeu cau bo sung", "bo sung"),
    DossierStatus.COMPLETED: (
        "completed",
        "hoan thanh",
        "da hoan thanh",
        "da giai quyet",
        "da tra ket qua",
        "co ket qua",
    ),
    DossierStatus.REJECTED: ("rejected", "tu choi", "khong giai quyet"),
    DossierStatus.WITHDRAWN: ("withdrawn", "rut ho so", "da rut", "cong dan rut ho so"),
}
_CHANNEL = {
    Channel.ONLINE: ("online", "truc tuyen", "dich vu cong truc tuyen"),
    Channel.IN_PERSON: ("in_person", "in person", "truc tiep", "tai quay", "mot cua"),
    Channel.POSTAL: ("postal", "buu chinh", "qua buu chinh", "buu chinh cong ich"),
}
_RATING = {
    Rating.SATISFIED: ("satisfied", "hai long", "rat hai long", "like", "4", "5"),
    Rating.NEUTRAL: ("neutral", "binh thuong", "chap nhan duoc", "3"),
    Rating.UNSATISFIED: ("unsatisfied", "khong hai long", "chua hai long", "dislike", "1", "2"),
}


def _lookup(table: dict[Any, tuple[str, ...]]) -> dict[str, str]:
    return {word: str(value) for value, words in table.items() for word in words}


_STATUS_WORDS = _lookup(_STATUS)
_CHANNEL_WORDS = _lookup(_CHANNEL)
_RATING_WORDS = _lookup(_RATING)


class FileRefused(DomainError):
    """The file as a whole cannot be imported (unreadable, a required column missing)."""

    status, slug, title_key = 400, "bad-request", "error.bad_request"


class UnsupportedMediaType(DomainError):
    """Not a CSV, XLSX or JSON file."""

    status, slug, title_key = 415, "unsupported-media-type", "error.unsupported_media_type"


class PayloadTooLarge(DomainError):
    """More than one request may carry."""

    status, slug, title_key = 413, "payload-too-large", "error.payload_too_large"


@dataclass(frozen=True, slots=True)
class BadRow:
    """One problem with one row: where (line, column), the value, and why (a message key)."""

    line: int
    column: str | None
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    value: str | None = None


@dataclass(slots=True)
class ImportReport:
    """What an import did (or, on a dry run, would do)."""

    file_name: str
    format: str
    file_hash: str
    dry_run: bool = False
    update: bool = False
    import_id: int | None = None
    rows: int = 0
    imported: int = 0
    updated: int = 0
    skipped: int = 0  # already stored (identical, or changed but not updating)
    rejected: int = 0  # rows refused (each listed in `errors`)
    errors: list[BadRow] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    previous_runs: list[int] = field(default_factory=list)


def column_of(name: str) -> str | None:
    """The canonical column a header names (any accepted alias), or None."""
    return _ALIASES.get(_GAP.sub("_", fold(str(name))).strip("_"))


# --- reading files ------------------------------------------------------------------------------


def detect_format(name: str, content_type: str | None, head: bytes) -> ImportFormat:
    """Tell the format from the file name, then the content type; 415 if it is none of ours."""
    suffix = Path(name or "").suffix.lower()
    by_suffix = {".csv": ImportFormat.CSV, ".xlsx": ImportFormat.XLSX, ".json": ImportFormat.JSON}
    if suffix in by_suffix:
        return by_suffix[suffix]
    media = (content_type or "").split(";")[0].strip().lower()
    by_media = {
        "text/csv": ImportFormat.CSV,
        "application/csv": ImportFormat.CSV,
        "application/json": ImportFormat.JSON,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ImportFormat.XLSX,
    }
    if media in by_media:
        return by_media[media]
    if not suffix and head.startswith(b"PK\x03\x04"):
        return ImportFormat.XLSX
    raise UnsupportedMediaType("egov.import.unsupported_type", name=name or "-")


@dataclass(slots=True)
class Rows:
    """The rows of a file: (line, {column: raw value}) pairs, the columns ignored, a size hint."""

    items: Iterator[tuple[int, dict[str, Any] | None]]
    ignored: list[str]
    total: int | None


def _header(names: Iterable[Any]) -> tuple[list[str | None], list[str]]:
    mapped: list[str | None] = []
    ignored: list[str] = []
    taken: set[str] = set()
    for name in names:
        column = column_of(name) if name is not None else None
        if column is None or column in taken:
            if name is not None and str(name).strip():
                ignored.append(str(name).strip())
            mapped.append(None)
            continue
        taken.add(column)
        mapped.append(column)
    missing = [c for c in REQUIRED if c not in taken]
    if missing:
        raise FileRefused(
            "egov.import.missing_columns",
            columns=", ".join(missing),
            errors=[
                {
                    "field": c,
                    "in": "file",
                    "key": "egov.import.missing_column",
                    "params": {"column": c},
                }
                for c in missing
            ],
        )
    return mapped, ignored


def _release(text: io.TextIOWrapper) -> None:
    """Let go of a text wrapper without closing the binary stream its caller owns."""
    with contextlib.suppress(ValueError):  # already detached
        text.detach()


def _csv_rows(stream: BinaryIO, total: int | None) -> Rows:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        first = text.readline()
        if not first.strip():
            raise FileRefused("egov.import.empty")
        # Exports made with a Vietnamese locale separate with ';' (',' is the decimal mark).
        delimiter = max((",", ";", "\t"), key=first.count)
        header = next(csv.reader([first], delimiter=delimiter))
        mapped, ignored = _header(header)
    except UnicodeDecodeError as exc:
        _release(text)
        raise FileRefused("egov.import.unreadable", detail=str(exc)) from None
    except BaseException:
        _release(text)
        raise

    def items() -> Iterator[tuple[int, dict[str, Any] | None]]:
        reader = csv.reader(text, delimiter=delimiter)
        try:
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                row = {c: v for c, v in zip(mapped, values, strict=False) if c is not None}
                # The reader started after the header (line 1): its line count is one behind.
                yield reader.line_num + 1, row
        except (UnicodeDecodeError, csv.Error) as exc:
            raise FileRefused("egov.import.unreadable", detail=str(exc)) from None
        finally:
            _release(text)

    return Rows(items(), ignored, None if total is None else max(0, total - 1))


HEADER_SEARCH_ROWS = 20


def _is_header(values: tuple[Any, ...]) -> bool:
    columns = {column_of(v) for v in values if v is not None and str(v).strip()}
    return set(REQUIRED) <= columns


def _xlsx_rows(stream: IO[bytes]) -> Rows:
    import openpyxl

    try:
        # Read-only mode streams rows instead of building the whole sheet in memory.
        book = openpyxl.load_workbook(stream, read_only=True, data_only=True)
        sheet = book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        line = 0
        first: tuple[Any, ...] | None = None
        header: tuple[Any, ...] | None = None
        # Reports often carry a title above the table: the header is the first row naming
        # the required columns (or, failing that, the first row with anything in it).
        for values in rows:
            line += 1
            if not any(v is not None and str(v).strip() for v in values):
                continue
            first = first or values
            if _is_header(values) or line >= HEADER_SEARCH_ROWS:
                header = values if _is_header(values) else first
                break
    # openpyxl raises many kinds of errors on a malformed workbook (zip, XML, missing parts):
    # any of them means the file cannot be read.
    except Exception as exc:  # noqa: BLE001
        raise FileRefused("egov.import.unreadable", detail=str(exc)[:200]) from None
    if header is None:
        if first is None:
            raise FileRefused("egov.import.empty")
        header = first
    mapped, ignored = _header(header)
    total = sheet.max_row - line if isinstance(sheet.max_row, int) else None
    start = line

    def items() -> Iterator[tuple[int, dict[str, Any] | None]]:
        number = start
        try:
            for values in rows:
                number += 1
                if not any(v is not None and str(v).strip() for v in values):
                    continue
                yield number, {c: v for c, v in zip(mapped, values, strict=False) if c}
        except Exception as exc:  # noqa: BLE001 - as above, a malformed sheet
            raise FileRefused("egov.import.unreadable", detail=str(exc)[:200]) from None
        finally:
            book.close()

    return Rows(items(), ignored, total)


def json_rows(document: Any) -> Rows:
    """The rows of a JSON document: a list of objects, or `{"dossiers": [...]}`."""
    if isinstance(document, dict) and isinstance(document.get("dossiers"), list):
        document = document["dossiers"]
    if not isinstance(document, list):
        raise FileRefused("egov.import.unreadable", detail="expected a JSON list of dossiers")
    # Filled while the items are read (every item may carry other keys).
    ignored: list[str] = []

    def items() -> Iterator[tuple[int, dict[str, Any] | None]]:
        for number, item in enumerate(document, start=1):
            if not isinstance(item, dict):
                yield number, None
                continue
            row: dict[str, Any] = {}
            for name, value in item.items():
                column = column_of(name)
                if column is None or column in row:
                    if str(name) not in ignored:
                        ignored.append(str(name))
                else:
                    row[column] = value
            yield number, row

    return Rows(items(), ignored, len(document))


def _json_rows(stream: BinaryIO) -> Rows:
    try:
        document = json.loads(stream.read().decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FileRefused("egov.import.unreadable", detail=str(exc)[:200]) from None
    return json_rows(document)


def open_rows(fmt: ImportFormat, stream: BinaryIO, total_lines: int | None = None) -> Rows:
    """Read a file's rows in its format."""
    if fmt is ImportFormat.CSV:
        return _csv_rows(stream, total_lines)
    if fmt is ImportFormat.XLSX:
        return _xlsx_rows(stream)
    return _json_rows(stream)


# --- validating rows ----------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


class _Refused(Exception):
    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


_DMY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def parse_time(value: Any, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime:
    """Read a time: ISO 8601, `dd/mm/yyyy [hh:mm[:ss]]`, or a spreadsheet date/datetime."""
    try:
        return _parse_time(value, zone, end_of_day=end_of_day)
    except OverflowError:
        # At the ends of the calendar (01/01/0001 local) a time has no UTC equivalent.
        raise _Refused("egov.import.bad_time") from None


def _parse_time(value: Any, zone: ZoneInfo, *, end_of_day: bool) -> datetime:
    if isinstance(value, datetime):
        if end_of_day and value.tzinfo is None and value.time() == time(0):
            # A spreadsheet date cell reads back as midnight: for a due date it means the day.
            return _day(value.date(), zone, end_of_day)
        moment = value
    elif isinstance(value, date):
        return _day(value, zone, end_of_day)
    else:
        text = _text(value)
        if text is None:
            raise _Refused("egov.import.required")
        match = _DMY.match(text)
        try:
            if match:
                day, month, year, hour, minute, second = match.groups()
                day_value = date(int(year), int(month), int(day))
                if hour is None:
                    return _day(day_value, zone, end_of_day)
                moment = datetime.combine(day_value, time(int(hour), int(minute), int(second or 0)))
            elif len(text) == 10:
                return _day(date.fromisoformat(text), zone, end_of_day)
            else:
                moment = datetime.fromisoformat(text)
        except ValueError:
            raise _Refused("egov.import.bad_time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _day(day: date, zone: ZoneInfo, end_of_day: bool) -> datetime:
    # A due date without a time means "by the end of that day".
    moment = datetime.combine(day, time(23, 59, 59) if end_of_day else time(0), tzinfo=zone)
    return moment.astimezone(UTC)


@lru_cache(maxsize=4096)
def _folded(text: str) -> str:
    """`fold`, remembered: a file repeats the same few words (true, online, đã hoàn thành)."""
    return fold(text)


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = _folded(_text(value) or "")
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Refused("egov.import.bad_bool")


def _word(value: Any, words: dict[str, str], key: str) -> str | None:
    text = _text(value)
    if text is None:
        return None
    folded = _folded(text)
    found = words.get(folded) or words.get(folded.replace("_", " "))
    if found is None:
        raise _Refused(key)
    return found


class RowValidator:
    """Validates rows against the stored agencies, units and procedures and the caller's scope."""

    def __init__(
        self,
        *,
        session: Session,
        runtime: Runtime,
        scope: Scope,
        agencies: dict[str, service.Agency] | None = None,
    ) -> None:
        today = local_date(runtime.clock, runtime.settings.timezone)
        self.zone = ZoneInfo(runtime.settings.timezone)
        self.now = runtime.clock.now()
        self.scope = scope
        self.agencies = agencies or service.get_agencies(session=session, on=today)
        self.places = service.get_places(session=session, on=today)
        self.procedures: dict[str, Procedure] = service.get_procedure_map(session=session)
        self.province = next((p.code for p in self.places.values() if p.level == "province"), None)
        self.seen: dict[tuple[str, str], int] = {}
        # A little slack for clocks that differ between the source system and this server.
        self.latest = self.now + timedelta(minutes=5)

    def validate(
        self, line: int, raw: dict[str, Any] | None, bad: list[BadRow]
    ) -> dict[str, Any] | None:
        """Return the dossier's column values, or None after adding its problems to `bad`."""
        if raw is None:
            bad.append(BadRow(line, None, "egov.import.not_object"))
            return None
        problems: list[BadRow] = []
        out: dict[str, Any] = {}

        def take(column: str, reader: Callable[[Any], Any]) -> Any:
            value = raw.get(column)
            try:
                return reader(value)
            except _Refused as refused:
                shown = _text(value)
                problems.append(
                    BadRow(
                        line, column, refused.key, refused.params, shown[:200] if shown else None
                    )
                )
                return None

        agency = take("agency", self._agency)
        code = take("code", self._code)
        unit = take("unit_code", lambda v: self._unit(v, agency))
        procedure = take("procedure", self._procedure)
        received = take("received_at", lambda v: self._time(v, required=True))
        due = take("due_at", lambda v: self._time(v, required=True, end_of_day=True))
        completed = take("completed_at", lambda v: self._time(v, required=False))
        status = take("status", lambda v: _word(v, _STATUS_WORDS, "egov.import.bad_status"))
        channel = take("channel", lambda v: _word(v, _CHANNEL_WORDS, "egov.import.bad_channel"))
        online = take("submitted_online", _bool)
        flags = {
            name: take(name, _bool)
            for name in ("paid_online", "digitised", "electronic_result", "reused_data", "synced")
        }
        supplements = take("supplement_count", self._count)
        rating = take("rating", lambda v: _word(v, _RATING_WORDS, "egov.import.bad_rating"))

        bad_columns = {p.column for p in problems}

        def refuse(column: str, key: str, **params: Any) -> None:
            problems.append(BadRow(line, column, key, params, _text(raw.get(column))))

        if received is not None and due is not None and due < received:
            refuse("due_at", "egov.import.before_received")
        if received is not None and completed is not None and completed < received:
            refuse("completed_at", "egov.import.before_received")
        if status is None and "status" not in bad_columns:
            # No status given: a completion time says it is closed.
            status = DossierStatus.COMPLETED.value if completed else DossierStatus.RECEIVED.value
        if status in OPEN_STATUSES and completed is not None:
            refuse("status", "egov.import.open_but_completed", status=status)
        elif (
            status is not None
            and status not in OPEN_STATUSES
            and completed is None
            and "completed_at" not in bad_columns
        ):
            refuse("completed_at", "egov.import.completed_required", status=status)
        if channel is None and "channel" not in bad_columns:
            channel = Channel.ONLINE.value if online else Channel.IN_PERSON.value
        if online is None:
            online = channel == Channel.ONLINE.value
        elif channel is not None and online != (channel == Channel.ONLINE.value):
            refuse("submitted_online", "egov.import.channel_conflict", channel=channel)
        if agency is not None and code is not None:
            first = self.seen.get((agency, code))
            if first is not None:
                refuse("code", "egov.import.duplicate_in_file", line=first)
        if (
            agency is not None
            and unit is not None
            and not service.in_scope(self.scope, agency_code=agency, unit_code=unit)
        ):
            refuse("agency", "egov.import.out_of_scope")
        if problems:
            bad.extend(problems)
            return None
        assert agency is not None
        assert code is not None
        self.seen[(agency, code)] = line
        out.update(
            agency_code=agency,
            code=code,
            unit_code=unit,
            procedure_code=procedure,
            received_at=received,
            due_at=due,
            completed_at=completed,
            status=status,
            channel=channel,
            submitted_online=bool(online),
            paid_online=bool(flags["paid_online"]),
            digitised=bool(flags["digitised"]),
            electronic_result=bool(flags["electronic_result"]),
            reused_data=flags["reused_data"],
            synced=flags["synced"],
            supplement_count=supplements or 0,
            rating=rating,
        )
        return out

    def _agency(self, value: Any) -> str:
        text = _text(value)
        if text is None:
            raise _Refused("egov.import.required")
        found = self.agencies.get(text) or self.agencies.get(text.upper())
        if found is None:
            raise _Refused("egov.import.unknown_agency")
        return found.code

    def _code(self, value: Any) -> str:
        text = _text(value)
        if text is None:
            raise _Refused("egov.import.required")
        if len(text) > MAX_CODE or _CONTROL.search(text):
            raise _Refused("egov.import.bad_code", max=MAX_CODE)
        return text

    def _unit(self, value: Any, agency: str | None) -> str | None:
        text = _text(value)
        if text is None:
            if agency is None:
                return None
            # Not given: a commune's own dossier was received there; a department's, at the
            # provincial public-administration centre.
            kind = self.agencies[agency].kind
            return agency if kind is AgencyKind.COMMUNE else self.province
        if text not in self.places:
            raise _Refused("egov.import.unknown_unit")
        return text

    def _procedure(self, value: Any) -> str:
        text = _text(value)
        if text is None:
            raise _Refused("egov.import.required")
        if text not in self.procedures:
            raise _Refused("egov.import.unknown_procedure")
        return text

    def _time(self, value: Any, *, required: bool, end_of_day: bool = False) -> datetime | None:
        if _text(value) is None and not isinstance(value, (date, datetime)):
            if required:
                raise _Refused("egov.import.required")
            return None
        moment = parse_time(value, self.zone, end_of_day=end_of_day)
        if not end_of_day and moment > self.latest:
            raise _Refused("egov.import.future_time")
        return moment

    @staticmethod
    def _count(value: Any) -> int:
        text = _text(value)
        if text is None:
            return 0
        try:
            number = int(text)
        except ValueError:
            raise _Refused("egov.import.bad_count") from None
        if not 0 <= number <= 1000:
            raise _Refused("egov.import.bad_count")
        return number


# --- storing ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Stored:
    imported: int = 0
    updated: int = 0
    skipped: int = 0


def store(
    *,
    session: Session,
    rows: list[dict[str, Any]],
    update: bool,
    import_id: int | None,
    now: datetime,
    dry_run: bool = False,
) -> _Stored:
    """Write valid rows: new dossiers inserted, known ones skipped (or updated if asked)."""
    result = _Stored()
    existing = service.get_existing(session=session, codes={r["code"] for r in rows})
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for row in rows:
        known = existing.get((row["agency_code"], row["code"]))
        if known is None:
            inserts.append({**row, "import_id": import_id, "created_at": now, "updated_at": now})
            continue
        changed = {k: row[k] for k in service.COMPARED if row[k] != known[k]}
        if not changed or not update:
            result.skipped += 1
            continue
        if "due_at" in changed or "completed_at" in changed:
            # A new due date or a completion: the due-date state is judged afresh.
            changed.update(announced=None, announced_at=None)
        updates.append({"id": known["id"], **changed, "updated_at": now})
    if not dry_run:
        service.create_many(session=session, rows=inserts)
        service.update_many(session=session, rows=updates)
    result.imported, result.updated = len(inserts), len(updates)
    return result


def _actor(principal: Principal) -> str:
    return f"{principal.kind}:{principal.name}"


def import_all(
    *,
    runtime: Runtime,
    session: Session,
    rows: Rows,
    file_name: str,
    fmt: ImportFormat,
    file_hash: str,
    principal: Principal,
    source: str,
    update: bool = False,
    dry_run: bool = False,
    max_rows: int | None = None,
) -> ImportReport:
    """Validate every row, then import all of them in the caller's transaction, or none.

    Raises `Invalid` (422) listing every problem when any row is bad; nothing is written then.
    """
    report = ImportReport(
        file_name=file_name, format=fmt.value, file_hash=file_hash, dry_run=dry_run, update=update
    )
    validator = RowValidator(session=session, runtime=runtime, scope=principal.scope)
    valid: list[dict[str, Any]] = []
    refused: set[int] = set()
    for line, raw in rows.items:
        report.rows += 1
        if max_rows is not None and report.rows > max_rows:
            raise PayloadTooLarge("egov.import.too_many_rows", limit=max_rows)
        before = len(report.errors)
        row = validator.validate(line, raw, report.errors)
        if row is None:
            if len(report.errors) > before:
                refused.add(line)
            continue
        valid.append(row)
    report.ignored_columns = list(rows.ignored)
    report.rejected = len(refused)
    report.previous_runs = [
        r.id for r in service.get_imports_of_file(session=session, file_hash=file_hash)
    ]
    if report.errors and not dry_run:
        raise Invalid(
            "egov.import.rejected",
            count=report.rejected,
            errors=[_problem(bad) for bad in report.errors[:1000]],
        )
    if report.rows == 0:
        raise FileRefused("egov.import.empty")
    report.errors.sort(key=lambda b: b.line)
    run = None
    if not dry_run:
        run = service.create_import(
            session=session,
            file_hash=file_hash,
            file_name=file_name,
            fmt=fmt.value,
            source=source,
            actor=_actor(principal),
            clock=runtime.clock,
        )
        report.import_id = run.id
    stored = store(
        session=session,
        rows=valid,
        update=update,
        import_id=report.import_id,
        now=runtime.clock.now(),
        dry_run=dry_run,
    )
    report.imported, report.updated, report.skipped = (
        stored.imported,
        stored.updated,
        stored.skipped,
    )
    if run is not None:
        run.rows, run.imported, run.updated = report.rows, report.imported, report.updated
        run.skipped, run.batches_done = report.skipped, 1
        run.status, run.finished_at = ImportStatus.DONE.value, runtime.clock.now()
        session.flush()
    return report


def _problem(bad: BadRow) -> dict[str, Any]:
    """A bad row as a problem+json field error (translated at the edge)."""
    error: dict[str, Any] = {
        "line": bad.line,
        "field": bad.column or "row",
        "in": "file",
        "key": bad.key,
        "params": bad.params,
    }
    if bad.value is not None:
        error["value"] = bad.value
    return error


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 of a file's bytes and its number of lines (a size hint for progress)."""
    digest = hashlib.sha256()
    lines = 0
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    return digest.hexdigest(), lines


def import_file(
    *,
    runtime: Runtime,
    path: Path,
    principal: Principal,
    update: bool = False,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int, int | None], None] | None = None,
) -> ImportReport:
    """Import a file of any size in batches (one transaction each, recorded in the ledger).

    Valid rows are imported and bad ones reported; a re-run of the same file skips what is
    already stored. `progress(rows_done, rows_total_or_None)` is called after each batch.
    """
    with path.open("rb") as probe:
        head = probe.read(8)
    fmt = detect_format(path.name, None, head)
    file_hash, lines = hash_file(path)
    report = ImportReport(
        file_name=path.name, format=fmt.value, file_hash=file_hash, dry_run=dry_run, update=update
    )
    with path.open("rb") as stream:
        rows = open_rows(fmt, stream, lines + 1)
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = principal
            validator = RowValidator(session=session, runtime=runtime, scope=principal.scope)
            previous = service.get_imports_of_file(session=session, file_hash=file_hash)
            report.previous_runs = [r.id for r in previous]
            if not dry_run:
                run = service.create_import(
                    session=session,
                    file_hash=file_hash,
                    file_name=path.name,
                    fmt=fmt.value,
                    source="cli",
                    actor=_actor(principal),
                    clock=runtime.clock,
                )
                report.import_id = run.id
        batch: list[dict[str, Any]] = []
        refused: set[int] = set()
        try:
            for line, raw in rows.items:
                report.rows += 1
                before = len(report.errors)
                row = validator.validate(line, raw, report.errors)
                if row is not None:
                    batch.append(row)
                elif len(report.errors) > before:
                    refused.add(line)
                if len(batch) >= batch_rows:
                    _commit_batch(runtime, report, batch, len(refused), principal)
                    batch = []
                    if progress is not None:
                        progress(report.rows, rows.total)
            _commit_batch(runtime, report, batch, len(refused), principal)
            report.rejected = len(refused)
            report.ignored_columns = list(rows.ignored)
            _finish(runtime, report, ImportStatus.DONE)
        except BaseException:
            report.rejected = len(refused)
            _finish(runtime, report, ImportStatus.FAILED)
            raise
        if progress is not None:
            progress(report.rows, report.rows)
    report.errors.sort(key=lambda b: b.line)
    return report


def _commit_batch(
    runtime: Runtime,
    report: ImportReport,
    batch: list[dict[str, Any]],
    rejected: int,
    principal: Principal,
) -> None:
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = principal
        stored = store(
            session=session,
            rows=batch,
            update=report.update,
            import_id=report.import_id,
            now=runtime.clock.now(),
            dry_run=report.dry_run,
        )
        report.imported += stored.imported
        report.updated += stored.updated
        report.skipped += stored.skipped
        if report.import_id is not None:
            run = service.get_import(session=session, import_id=report.import_id)
            assert run is not None
            run.rows, run.imported, run.updated = report.rows, report.imported, report.updated
            run.skipped, run.errors = report.skipped, rejected
            run.batches_done += 1
            session.flush()


def _finish(runtime: Runtime, report: ImportReport, status: ImportStatus) -> None:
    if report.import_id is None:
        return
    with unit_of_work(runtime.session_factory) as session:
        run = service.get_import(session=session, import_id=report.import_id)
        if run is not None:
            run.rows, run.errors = report.rows, report.rejected
            run.status, run.finished_at = status.value, runtime.clock.now()


def describe(runtime: Runtime, bad: BadRow, lang: str) -> str:
    """Render a bad row's reason in a language."""
    return runtime.translate(bad.key, lang, **bad.params)
