"""Table exports: one description of a table, answered as CSV, XLSX or PDF.

A list or view route keeps producing its JSON (its response model is unchanged); when the caller
asks for another format it describes its rows as a `Table` and returns `respond(...)`:

- `format=json|csv|xlsx|pdf` (query), else the Accept header (`text/csv`,
  `application/vnd.openxmlformats-officedocument.spreadsheetml.sheet`, `application/pdf`; JSON
  wins ties and anything unknown). A bad `format` is a 422 naming the field.
- `lang=vi|en` (query) picks the language of titles, headers and values; default the request's
  language (cookie `cityops_lang`, then Accept-Language), else Vietnamese.
- CSV: UTF-8 with a byte-order mark (so Excel shows Vietnamese), CRLF lines, a header row of the
  column keys, text a spreadsheet would run as a formula quoted. Unchanged from the CSV the
  packages wrote before this module.
- XLSX (openpyxl): a "data" sheet with a styled, frozen header row of translated labels, column
  widths, numbers stored as numbers with number formats, dates as dates; an "about" sheet (title,
  generation time, notes); a "charts" sheet with native Excel charts when the table has any.
- PDF (reportlab): A4, landscape when the table is wide, title, generation time in the
  deployment's time zone, notes, the table with its header row repeated on every page (columns
  that do not fit are split into further blocks that repeat the first `key_columns`), charts
  drawn with reportlab.graphics, "page x/y" on every page. Text is set in a TrueType font that
  covers Vietnamese: DejaVu Sans (Debian `fonts-dejavu-core`), or the file named by
  `CITYOPS_PDF_FONT`; without one the answer is 503 naming the package, never a PDF with
  broken glyphs.

Every export holds every matching row: routes lift their paging for non-JSON formats.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import quote
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from fastapi import Query, Request
from fastapi.responses import Response

from cityops.core.errors import Invalid, ServiceUnavailable, request_language
from cityops.core.i18n import format_number

CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PDF_MEDIA_TYPE = "application/pdf"
JSON_MEDIA_TYPE = "application/json"
DEFAULT_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FONT_PACKAGE = "fonts-dejavu-core"
# A PDF is laid out in memory; beyond this many rows ask for XLSX/CSV or narrower filters.
MAX_PDF_ROWS = 20_000
# A character every Vietnamese text needs: a font without it would print boxes.
_VIETNAMESE_PROBE = "ệ"


class ExportFormat(StrEnum):
    """How a list or view is answered."""

    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"


MEDIA_TYPES = {
    ExportFormat.JSON: JSON_MEDIA_TYPE,
    ExportFormat.CSV: CSV_MEDIA_TYPE,
    ExportFormat.XLSX: XLSX_MEDIA_TYPE,
    ExportFormat.PDF: PDF_MEDIA_TYPE,
}

FormatQuery = Annotated[
    ExportFormat | None,
    Query(
        alias="format",
        description=(
            "json (default), csv, xlsx or pdf; the Accept header (text/csv, application/vnd."
            "openxmlformats-officedocument.spreadsheetml.sheet, application/pdf) also works. "
            "Exports hold every matching row."
        ),
    ),
]
LangQuery = Annotated[
    Literal["vi", "en"] | None,
    Query(
        alias="lang",
        description="Language of an export's titles and headers (default: yours, else vi).",
    ),
]
EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            PDF_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "JSON; or CSV (UTF-8 with BOM), XLSX or PDF with `format` or Accept.",
    },
    503: {"description": "PDF asked for but no font covering Vietnamese is installed."},
}


class Kind(StrEnum):
    """What a column holds: decides number formats, alignment and display."""

    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    PERCENT = "percent"  # 0–100, not a fraction
    MONEY = "money"  # whole VND
    DATE = "date"
    DATETIME = "datetime"
    BOOL = "bool"


NUMERIC = frozenset({Kind.INT, Kind.FLOAT, Kind.PERCENT, Kind.MONEY})


class Tr(NamedTuple):
    """A text in Vietnamese and English."""

    vi: str
    en: str

    def get(self, lang: str) -> str:
        """The text in `lang` (English only when asked for and present)."""
        return self.en if lang == "en" and self.en else self.vi


@dataclass(frozen=True)
class Column:
    """A column: the key rows are read by (the CSV header), a label vi/en and a kind."""

    key: str
    vi: str = ""
    en: str = ""
    kind: Kind = Kind.TEXT
    # Where the column appears: CSV keeps its historical columns (keys), XLSX and PDF may show
    # names where CSV has codes, or one translated column where CSV has both languages.
    csv: bool = True
    sheet: bool = True

    def label(self, lang: str) -> str:
        """The header shown in XLSX and PDF (the key when no label was given)."""
        return Tr(self.vi or self.key, self.en or self.vi or self.key).get(lang)


@dataclass(frozen=True)
class Series:
    """One series of a chart: a name and a value per category."""

    name: Tr
    values: Sequence[float | None]


@dataclass(frozen=True)
class Chart:
    """A bar or line chart over categories."""

    title: Tr
    categories: Sequence[str]
    series: Sequence[Series]
    kind: Literal["bar", "line"] = "bar"
    unit: str = ""


@dataclass
class Table:
    """A titled table with typed columns, rows, optional charts, notes and a footer."""

    title: Tr
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    charts: Sequence[Chart] = ()
    notes: Sequence[Tr] = ()
    footer: Sequence[Tr] = ()
    # Columns repeated in every block when a PDF splits a wide table.
    key_columns: int = 1
    # Charts of a PDF placed before the table (a report) instead of after it.
    charts_first: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def column_chart(
    table: Table,
    *,
    title: Tr,
    category: str,
    series: Sequence[str],
    kind: Literal["bar", "line"] = "bar",
    unit: str = "",
    max_rows: int = 60,
    only: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Chart | None:
    """A chart over some columns of a table's rows (those `only` keeps); None when there is
    no such row or more than `max_rows`."""
    rows = [row for row in table.rows if only is None or only(row)]
    if not rows or len(rows) > max_rows:
        return None
    by_key = {c.key: c for c in table.columns}
    return Chart(
        title=title,
        categories=[_plain(row.get(category)) for row in rows],
        series=[
            Series(
                name=Tr(by_key[key].label("vi"), by_key[key].label("en")),
                values=[_number(row.get(key)) for row in rows],
            )
            for key in series
        ],
        kind=kind,
        unit=unit,
    )


# --- choosing the format ---------------------------------------------------------------------


def _accepted(request: Request) -> dict[str, float]:
    """The quality the Accept header gives each media type it names."""
    best: dict[str, float] = {}
    for part in request.headers.get("accept", "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        media = media.lower()
        best[media] = max(best.get(media, 0.0), quality)
    return best


def wanted(request: Request, fmt: ExportFormat | None) -> ExportFormat:
    """The format to answer in: `format` decides, else the Accept header (JSON on a tie)."""
    if fmt is not None:
        return fmt
    accepted = _accepted(request)
    choice, quality = ExportFormat.JSON, accepted.get(JSON_MEDIA_TYPE, 0.0)
    for candidate in (ExportFormat.CSV, ExportFormat.XLSX, ExportFormat.PDF):
        q = accepted.get(MEDIA_TYPES[candidate], 0.0)
        if q > quality:
            choice, quality = candidate, q
    return choice


def language(request: Request, lang: str | None) -> str:
    """The export's language: `lang`, else the request's negotiated language."""
    return lang or request_language(request)


# --- cells -----------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _iso(value: datetime) -> str:
    # The same text pydantic writes in JSON (UTC as Z), so CSV and JSON agree.
    return value.isoformat().replace("+00:00", "Z")


def csv_cell(value: Any) -> Any:
    """A value as CSV writes it: '' for none, true/false, a;b for lists, ISO dates."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        # Text that a spreadsheet would run as a formula is quoted (CSV injection).
        return "'" + value
    return value


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _text(value: Any) -> str:
    """Text for XLSX/PDF: NFC (precomposed, what the font's glyphs cover), lists joined,
    control characters (which XLSX refuses and fonts lack) dropped."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    return _CONTROL.sub("", unicodedata.normalize("NFC", str(value)))


# A PDF cell longer than this is cut: a paragraph taller than a page cannot be laid out.
_MAX_PDF_CELL = 1500


_YES_NO = {"vi": ("Có", "Không"), "en": ("Yes", "No")}


def display(value: Any, kind: Kind, lang: str, zone: ZoneInfo) -> str:
    """A value as a person reads it in the PDF: 12.737,2 in Vietnamese, dd/mm/yyyy dates."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        yes, no = _YES_NO.get(lang, _YES_NO["vi"])
        return yes if value else no
    if kind in NUMERIC:
        number = _number(value)
        if number is None:
            return _text(value)
        if kind in (Kind.INT, Kind.MONEY):
            return format_number(number, lang, 0)
        digits = 0 if number.is_integer() else 2
        text = format_number(number, lang, digits)
        return f"{text} %" if kind is Kind.PERCENT else text
    if isinstance(value, datetime):
        local = value.astimezone(zone) if value.tzinfo else value
        return local.strftime("%d/%m/%Y %H:%M" if lang == "vi" else "%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y") if lang == "vi" else value.isoformat()
    return _text(value)


# --- responses -------------------------------------------------------------------------------


def ascii_filename(name: str) -> str:
    """A file name any client accepts: Vietnamese letters without marks, safe characters only."""
    plain = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    plain = plain.encode("ascii", "ignore").decode("ascii")
    plain = re.sub(r"[^A-Za-z0-9._-]+", "-", plain).strip("-.")
    return plain or "export"


def _attachment(media_type: str, body: bytes, filename: str) -> Response:
    header = f"attachment; filename=\"{ascii_filename(filename)}\"; filename*=UTF-8''" + quote(
        filename, safe=""
    )
    return Response(body, media_type=media_type, headers={"Content-Disposition": header})


def respond(
    request: Request, table: Table, fmt: ExportFormat, lang: str | None, filename: str
) -> Response:
    """Answer a table as CSV, XLSX or PDF; `filename` is without its extension."""
    runtime = request.app.state.runtime
    lang = language(request, lang)
    if fmt is ExportFormat.CSV:
        return _attachment("text/csv; charset=utf-8", render_csv(table), f"{filename}.{fmt.value}")
    zone = ZoneInfo(runtime.settings.timezone)
    now = runtime.clock.now()
    if fmt is ExportFormat.XLSX:
        body = render_xlsx(table, lang=lang, zone=zone, now=now)
        return _attachment(XLSX_MEDIA_TYPE, body, f"{filename}.xlsx")
    if fmt is ExportFormat.PDF:
        if len(table.rows) > MAX_PDF_ROWS:
            raise Invalid(
                "export.pdf.too_many_rows",
                errors=[
                    {
                        "field": "format",
                        "in": "query",
                        "key": "export.pdf.too_many_rows",
                        "params": {"rows": len(table.rows), "max": MAX_PDF_ROWS},
                    }
                ],
                rows=len(table.rows),
                max=MAX_PDF_ROWS,
            )
        fonts = load_fonts(runtime.settings.pdf_font)
        body = render_pdf(table, lang=lang, zone=zone, now=now, fonts=fonts)
        return _attachment(PDF_MEDIA_TYPE, body, f"{filename}.pdf")
    raise ValueError(f"respond() answers exports, not {fmt}")  # JSON stays with the route


# --- CSV -------------------------------------------------------------------------------------


def render_csv(table: Table) -> bytes:
    """The table as CSV bytes: UTF-8 with BOM, CRLF lines, a header row of column keys."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    keys = [c.key for c in table.columns if c.csv]
    writer.writerow(keys)
    for row in table.rows:
        writer.writerow([csv_cell(row.get(key)) for key in keys])
    return buffer.getvalue().encode("utf-8")


# --- XLSX ------------------------------------------------------------------------------------

_XLSX_FORMATS = {
    Kind.INT: "0",
    Kind.FLOAT: "#,##0.00",
    Kind.PERCENT: '0.00" %"',
    Kind.MONEY: "#,##0",
    Kind.DATE: "yyyy-mm-dd",
    Kind.DATETIME: "yyyy-mm-dd hh:mm",
}
_SHEETS = {
    "vi": ("Dữ liệu", "Thông tin", "Biểu đồ"),
    "en": ("Data", "About", "Charts"),
}
_WORDS = {
    "vi": {"generated": "Thời điểm xuất", "rows": "Số dòng", "notes": "Ghi chú", "page": "Trang"},
    "en": {"generated": "Generated", "rows": "Rows", "notes": "Notes", "page": "Page"},
}


def _xlsx_value(value: Any, kind: Kind, zone: ZoneInfo) -> Any:
    if value is None:
        return None
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (bool, int, float)):
        return value
    if kind in NUMERIC:
        number = _number(value)  # a Decimal or a numeric string
        if number is not None:
            return int(number) if kind in (Kind.INT, Kind.MONEY) and number.is_integer() else number
        return _text(value)
    if isinstance(value, datetime):
        # Excel has no time zones: local wall time of the deployment.
        return (value.astimezone(zone) if value.tzinfo else value).replace(tzinfo=None)
    if isinstance(value, date):
        return value
    return _text(value)


def _local_stamp(now: datetime, zone: ZoneInfo, lang: str) -> str:
    local = now.astimezone(zone)
    stamp = local.strftime("%d/%m/%Y %H:%M" if lang == "vi" else "%Y-%m-%d %H:%M")
    return f"{stamp} ({zone.key})"


def render_xlsx(table: Table, *, lang: str, zone: ZoneInfo, now: datetime) -> bytes:
    """The table as an XLSX workbook: data, about and (when charted) charts sheets."""
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, LineChart, Reference
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    data_name, about_name, charts_name = _SHEETS.get(lang, _SHEETS["vi"])
    words = _WORDS.get(lang, _WORDS["vi"])
    book = Workbook()
    sheet = book.active
    sheet.title = data_name
    columns = [c for c in table.columns if c.sheet]
    sheet.append([c.label(lang) for c in columns])
    header_font = Font(bold=True, color="FFFFFF")
    header_fill = PatternFill("solid", fgColor="1F4E79")
    for cell in sheet[1]:
        cell.font = header_font
        cell.fill = header_fill
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    widths = [max(8, min(40, len(c.label(lang)) + 2)) for c in columns]
    for index, row in enumerate(table.rows):
        values = [_xlsx_value(row.get(c.key), c.kind, zone) for c in columns]
        sheet.append(values)
        for i, value in enumerate(values):
            if isinstance(value, str) and value.startswith("="):
                # openpyxl stores text starting with "=" as a formula: keep it text.
                sheet.cell(row=index + 2, column=i + 1).data_type = "s"
        if index < 500:  # widths from a sample: long tables need not be measured to the end
            for i, value in enumerate(values):
                if value is not None:
                    widths[i] = max(widths[i], min(60, len(str(value)) + 2))
    for i, column in enumerate(columns, start=1):
        letter = get_column_letter(i)
        sheet.column_dimensions[letter].width = widths[i - 1]
        number_format = _XLSX_FORMATS.get(column.kind)
        if number_format and table.rows:
            for (cell,) in sheet.iter_rows(
                min_row=2, max_row=len(table.rows) + 1, min_col=i, max_col=i
            ):
                cell.number_format = number_format
    sheet.freeze_panes = "A2"
    if columns and table.rows:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(table.rows) + 1}"

    about = book.create_sheet(about_name)
    about.append([table.title.get(lang)])
    about["A1"].font = Font(bold=True, size=14)
    about.append([words["generated"], _local_stamp(now, zone, lang)])
    about.append([words["rows"], len(table.rows)])
    for note in (*table.notes, *table.footer):
        about.append([note.get(lang)])
    about.column_dimensions["A"].width = 28
    about.column_dimensions["B"].width = 40

    if table.charts:
        charts = book.create_sheet(charts_name)
        top = 1
        for chart in table.charts:
            charts.cell(row=top, column=1, value=chart.title.get(lang)).font = Font(bold=True)
            header_row = top + 1
            for j, series in enumerate(chart.series, start=2):
                charts.cell(row=header_row, column=j, value=series.name.get(lang))
            for k, category in enumerate(chart.categories, start=1):
                charts.cell(row=header_row + k, column=1, value=_text(category))
                for j, series in enumerate(chart.series, start=2):
                    charts.cell(row=header_row + k, column=j, value=series.values[k - 1])
            last = header_row + len(chart.categories)
            native = BarChart() if chart.kind == "bar" else LineChart()
            native.title = chart.title.get(lang)
            native.y_axis.title = chart.unit or None
            native.height, native.width = 7.5, 16
            data = Reference(
                charts, min_col=2, max_col=1 + len(chart.series), min_row=header_row, max_row=last
            )
            native.add_data(data, titles_from_data=True)
            native.set_categories(
                Reference(charts, min_col=1, min_row=header_row + 1, max_row=last)
            )
            anchor_col = get_column_letter(len(chart.series) + 3)
            charts.add_chart(native, f"{anchor_col}{top}")
            # Leave room for the chart (about 15 rows) or the data, whichever is taller.
            top = max(last, top + 16) + 2
        charts.column_dimensions["A"].width = 28

    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- PDF -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fonts:
    """The registered regular and bold font names and the file they came from."""

    regular: str
    bold: str
    path: Path


_fonts_lock = threading.Lock()
_fonts: dict[Path, Fonts] = {}


def load_fonts(configured: Path | None) -> Fonts:
    """Register the PDF font (its -Bold sibling too); 503 naming the package when missing."""
    path = configured or DEFAULT_FONT
    with _fonts_lock:
        if path in _fonts:
            return _fonts[path]
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFError, TTFont

        def unavailable() -> ServiceUnavailable:
            return ServiceUnavailable(
                "export.pdf.font_missing", path=str(path), package=FONT_PACKAGE
            )

        if not path.is_file():
            raise unavailable()
        try:
            regular = TTFont(f"CityOps-{path.stem}", str(path))
        except (TTFError, OSError, ValueError) as exc:
            raise unavailable() from exc
        if ord(_VIETNAMESE_PROBE) not in regular.face.charToGlyph:
            raise unavailable()
        pdfmetrics.registerFont(regular)
        bold_path = path.with_name(f"{path.stem}-Bold{path.suffix}")
        bold_name = regular.fontName
        if bold_path.is_file():
            try:
                bold = TTFont(f"CityOps-{bold_path.stem}", str(bold_path))
            except (TTFError, OSError, ValueError):
                bold = None
            if bold is not None and ord(_VIETNAMESE_PROBE) in bold.face.charToGlyph:
                pdfmetrics.registerFont(bold)
                bold_name = bold.fontName
        fonts = Fonts(regular=regular.fontName, bold=bold_name, path=path)
        _fonts[path] = fonts
        return fonts


_PALETTE = ("#1F4E79", "#C55A11", "#548235", "#7F6000", "#7030A0", "#2E75B6")


def _chart_drawing(chart: Chart, lang: str, fonts: Fonts, width: float, height: float) -> Any:
    """A reportlab drawing of a bar or line chart with a title and a legend."""
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.charts.linecharts import HorizontalLineChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    drawing = Drawing(width, height)
    drawing.add(
        String(4, height - 12, _text(chart.title.get(lang)), fontName=fonts.bold, fontSize=8.5)
    )
    plot: Any = VerticalBarChart() if chart.kind == "bar" else HorizontalLineChart()
    plot.x, plot.y = 36, 34
    plot.width, plot.height = width - 48, height - 34 - 40
    data = [tuple(0.0 if v is None else float(v) for v in series.values) for series in chart.series]
    plot.data = data or [(0.0,)]
    cut = 14 if len(chart.categories) > 8 else 24
    plot.categoryAxis.categoryNames = [_text(c)[:cut] for c in chart.categories]
    plot.categoryAxis.labels.fontName = fonts.regular
    plot.categoryAxis.labels.fontSize = 6
    if len(chart.categories) > 8:
        plot.categoryAxis.labels.angle = 45
        plot.categoryAxis.labels.boxAnchor = "ne"
    plot.valueAxis.labels.fontName = fonts.regular
    plot.valueAxis.labels.fontSize = 6
    values = [v for row in data for v in row]
    low, high = min([0.0, *values]), max([0.0, *values])
    if low == high:
        high = low + 1.0
    plot.valueAxis.valueMin, plot.valueAxis.valueMax = low, high + (high - low) * 0.1
    for i in range(len(plot.data)):
        color = colors.HexColor(_PALETTE[i % len(_PALETTE)])
        if chart.kind == "bar":
            plot.bars[i].fillColor = color
            plot.bars[i].strokeColor = None
        else:
            plot.lines[i].strokeColor = color
            plot.lines[i].strokeWidth = 1.5
    drawing.add(plot)
    legend = Legend()
    legend.x, legend.y = 40, height - 22
    legend.fontName, legend.fontSize = fonts.regular, 7
    legend.alignment = "right"
    legend.columnMaximum = 1
    legend.dx, legend.dy = 7, 7
    legend.deltax = max(60, (width - 60) / max(1, len(chart.series)))
    legend.colorNamePairs = [
        (colors.HexColor(_PALETTE[i % len(_PALETTE)]), _text(s.name.get(lang))[:40])
        for i, s in enumerate(chart.series)
    ]
    drawing.add(legend)
    if chart.unit:
        drawing.add(String(4, height - 36, _text(chart.unit), fontName=fonts.regular, fontSize=6.5))
    return drawing


def _column_widths(
    columns: Sequence[Column], cells: Sequence[Sequence[str]], lang: str, font: str, size: float
) -> list[float]:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    widths = []
    for i, column in enumerate(columns):
        # The header may wrap onto two lines, but not inside a word.
        label = column.label(lang)
        longest = max((stringWidth(w, font, size) for w in label.split()), default=0.0)
        natural = max(stringWidth(label, font, size) / 2, longest) + 8
        for row in cells[:300]:
            natural = max(natural, stringWidth(row[i], font, size) + 8)
        widths.append(max(28.0, min(natural, 220.0 if column.kind is Kind.TEXT else 110.0)))
    return widths


def render_pdf(table: Table, *, lang: str, zone: ZoneInfo, now: datetime, fonts: Fonts) -> bytes:
    """The table as a PDF report: title, time, notes, table (header repeated), charts, pages."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer
    from reportlab.platypus import Table as PdfTable
    from reportlab.platypus import TableStyle as PdfTableStyle

    words = _WORDS.get(lang, _WORDS["vi"])
    columns = [c for c in table.columns if c.sheet]
    size = 7.5 if len(columns) > 8 else 8.5
    cells = [
        [display(row.get(c.key), c.kind, lang, zone)[:_MAX_PDF_CELL] for c in columns]
        for row in table.rows
    ]
    widths = _column_widths(columns, cells, lang, fonts.regular, size)
    margin = 12 * mm
    pagesize = A4
    if sum(widths) > A4[0] - 2 * margin or len(columns) > 7:
        pagesize = landscape(A4)
    available = pagesize[0] - 2 * margin

    title_style = ParagraphStyle("title", fontName=fonts.bold, fontSize=15, leading=19)
    meta_style = ParagraphStyle(
        "meta",
        fontName=fonts.regular,
        fontSize=8.5,
        leading=11,
        textColor=colors.HexColor("#555555"),
    )
    note_style = ParagraphStyle("note", fontName=fonts.regular, fontSize=9.5, leading=13)
    cell_style = ParagraphStyle("cell", fontName=fonts.regular, fontSize=size, leading=size + 2)
    head_style = ParagraphStyle(
        "head", fontName=fonts.bold, fontSize=size, leading=size + 2, textColor=colors.white
    )

    story: list[Any] = [
        Paragraph(escape(_text(table.title.get(lang))), title_style),
        Spacer(1, 2 * mm),
        Paragraph(
            escape(
                f"{words['generated']}: {_local_stamp(now, zone, lang)} · "
                f"{words['rows']}: {format_number(len(table.rows), lang)}"
            ),
            meta_style,
        ),
        Spacer(1, 3 * mm),
    ]
    for note in table.notes:
        story += [Paragraph(escape(_text(note.get(lang))), note_style), Spacer(1, 2 * mm)]

    chart_flowables: list[Any] = []
    if table.charts:
        per_row = max(1, int(available // (90 * mm)))
        chart_width = available / per_row - 4
        drawings = [
            _chart_drawing(chart, lang, fonts, chart_width, 62 * mm) for chart in table.charts
        ]
        grid = [drawings[i : i + per_row] for i in range(0, len(drawings), per_row)]
        grid[-1] += [""] * (per_row - len(grid[-1]))
        for drawn_row in grid:
            row_table = PdfTable([drawn_row], colWidths=[available / per_row] * per_row)
            chart_flowables += [KeepTogether([row_table]), Spacer(1, 3 * mm)]

    if table.charts_first:
        story += chart_flowables

    # Columns that do not fit side by side go into further blocks, each repeating the key
    # columns, so every page stays readable instead of shrinking the text to nothing.
    keys = list(range(min(table.key_columns, len(columns))))
    rest = [i for i in range(len(columns)) if i not in keys]
    blocks: list[list[int]] = []
    current = list(keys)
    for i in rest:
        if sum(widths[j] for j in current) + widths[i] > available and len(current) > len(keys):
            blocks.append(current)
            current = [*keys, i]
        else:
            current.append(i)
    blocks.append(current)

    numeric = [c.kind in NUMERIC for c in columns]
    for block in blocks:
        block_widths = [widths[i] for i in block]
        scale = min(1.0, available / sum(block_widths)) if block_widths else 1.0
        block_widths = [w * scale for w in block_widths]
        header = [Paragraph(escape(_text(columns[i].label(lang))), head_style) for i in block]
        body: list[list[Any]] = []
        for row in cells:
            line: list[Any] = []
            for k, i in enumerate(block):
                text = row[i]
                # A plain string is far cheaper than a paragraph: wrap only what overflows.
                if not numeric[i] and stringWidth(text, fonts.regular, size) > block_widths[k] - 6:
                    line.append(Paragraph(escape(text), cell_style))
                else:
                    line.append(text)
            body.append(line)
        style = [
            ("FONTNAME", (0, 0), (-1, -1), fonts.regular),
            ("FONTSIZE", (0, 0), (-1, -1), size),
            ("LEADING", (0, 0), (-1, -1), size + 2),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#1F4E79")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#A6A6A6")),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ]
        for k, i in enumerate(block):
            if numeric[i]:
                style.append(("ALIGN", (k, 1), (k, -1), "RIGHT"))
        if len(body) > 1:
            style.append(
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#F2F2F2")])
            )
        pdf_table = PdfTable(
            [header, *body], colWidths=block_widths, repeatRows=1, style=PdfTableStyle(style)
        )
        story += [pdf_table, Spacer(1, 4 * mm)]

    for note in table.footer:
        story += [Paragraph(escape(_text(note.get(lang))), meta_style), Spacer(1, 1.5 * mm)]
    if not table.charts_first:
        story += chart_flowables

    page_word = words["page"]
    footer_font = fonts.regular

    class NumberedCanvas(Canvas):  # type: ignore[misc]
        """Writes "page x/y" once the number of pages is known."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont(footer_font, 7.5)
                self.setFillColor(colors.HexColor("#555555"))
                self.drawRightString(
                    pagesize[0] - margin, 6 * mm, f"{page_word} {self._pageNumber}/{total}"
                )
                self.drawString(margin, 6 * mm, _text(table.title.get(lang))[:120])
                super().showPage()
            super().save()

    out = io.BytesIO()
    document = SimpleDocTemplate(
        out,
        pagesize=pagesize,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=14 * mm,
        title=_text(table.title.get(lang)),
        author="CityOps",
        creator="CityOps",
    )
    document.build(story, canvasmaker=NumberedCanvas)
    return out.getvalue()


def rows_of(models: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows from pydantic models (python values: dates stay dates, numbers numbers)."""
    return [m.model_dump() for m in models]
