"""Routes of the KPI engine under /api/v1/kpi: the catalogue (CRUD), the input registry,
computed values, on-demand computation, ranking of units and the pilot evaluation.

Values, ranking and evaluation are JSON, or exports through `cityops.core.tables`:
`format=csv|xlsx|pdf` (or the Accept header) and `lang=vi|en` on the same query, e.g.
`/kpi/evaluation?go_live=2026-07-01&format=pdf&lang=vi` (a report: method, table, a chart per
indicator). Exports hold every matching row (no paging).

Reading needs kpi:read (every role holds it: KPIs are province-wide figures); changing the
catalogue and recomputing need kpi:admin.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile, status
from sqlalchemy.orm import Session

from cityops.core import tables
from cityops.core.deps import ClockDep, Limit, Offset, RuntimeDep, SessionDep
from cityops.core.i18n import format_number
from cityops.core.schemas import FIRST_DAY, LAST_DAY
from cityops.core.security import Permission, Principal, require
from cityops.core.tables import EXPORT_RESPONSES, Column, FormatQuery, Kind, LangQuery, Table, Tr
from cityops.kpi import flows, formula, inputs, service, statistics
from cityops.kpi.enums import Frequency, PlaceLevel, Sector
from cityops.kpi.periods import first_day, window
from cityops.kpi.schemas import (
    CODE_PATTERN,
    ComputeRequest,
    ComputeResult,
    EvaluationRead,
    IndicatorCreate,
    IndicatorPage,
    IndicatorRead,
    IndicatorUpdate,
    InputRead,
    RankingRead,
    RankRow,
    StatisticPage,
    StatisticRead,
    StatisticsImportRead,
    ValuePage,
    ValueRead,
)
from cityops.units import service as unit_service

router = APIRouter(prefix="/kpi", tags=["kpi"])

Reader = Annotated[Principal, Depends(require(Permission.KPI_READ))]
Admin = Annotated[Principal, Depends(require(Permission.KPI_ADMIN))]
CodePath = Annotated[str, Path(min_length=1, max_length=16, pattern=CODE_PATTERN)]
CodeQuery = Annotated[str, Query(min_length=1, max_length=16, pattern=CODE_PATTERN)]
PlaceCode = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.-]{1,64}$")]
Day = Annotated[date, Query(ge=FIRST_DAY, le=LAST_DAY)]
KNOWN = list(inputs.INPUTS)

VALUE_COLUMNS = [
    Column("indicator_code", "Mã chỉ tiêu", "Indicator"),
    Column("indicator_name", "Chỉ tiêu", "Indicator name", csv=False),
    Column("level", "Cấp", "Level"),
    Column("place_code", "Mã địa bàn", "Place code"),
    Column("place_name", "Địa bàn", "Place", csv=False),
    Column("period", "Loại kỳ", "Period kind"),
    Column("period_label", "Kỳ", "Period"),
    Column("period_start", "Ngày đầu kỳ", "Period start", Kind.DATE),
    Column("value", "Giá trị", "Value", Kind.FLOAT),
    Column("unit", "Đơn vị tính", "Unit", csv=False),
    Column("target", "Mục tiêu", "Target", Kind.FLOAT),
    Column("status", "Trạng thái", "Status"),
    Column("computed_at", "Thời điểm tính", "Computed at", Kind.DATETIME),
]
RANKING_COLUMNS = [
    Column("rank", "Hạng", "Rank", Kind.INT),
    Column("place_code", "Mã địa bàn", "Place code"),
    Column("name", "Phường, xã", "Commune/ward"),
    Column("value", "Giá trị", "Value", Kind.FLOAT),
    Column("status", "Trạng thái", "Status"),
]
EVALUATION_COLUMNS = [
    Column("indicator_code", "Mã", "Code"),
    Column("name", "Chỉ tiêu", "Indicator", sheet=False),
    Column("name_en", "Indicator", "Indicator", sheet=False),
    Column("indicator_name", "Chỉ tiêu", "Indicator", csv=False),
    Column("unit", "Đơn vị tính", "Unit"),
    Column("direction", "Chiều tốt", "Better when", sheet=False),
    Column("direction_text", "Chiều tốt", "Better when", csv=False),
    Column("pilot_before", "Thí điểm – trước", "Pilot – before", Kind.FLOAT),
    Column("pilot_after", "Thí điểm – sau", "Pilot – after", Kind.FLOAT),
    Column("control_before", "Còn lại – trước", "Rest – before", Kind.FLOAT),
    Column("control_after", "Còn lại – sau", "Rest – after", Kind.FLOAT),
    Column("pilot_change", "Thay đổi thí điểm", "Pilot change", Kind.FLOAT),
    Column("control_change", "Thay đổi còn lại", "Rest change", Kind.FLOAT),
    Column("did", "Khác biệt kép (DiD)", "Difference in differences", Kind.FLOAT),
    Column("improved", "Cải thiện", "Improved", Kind.BOOL),
    Column("inputs_text", "Số liệu đầu vào (tổng)", "Underlying inputs (sums)", csv=False),
]
GROUP_WINDOWS = {
    "pilot_before": Tr("Thí điểm, trước", "Pilot, before"),
    "pilot_after": Tr("Thí điểm, sau", "Pilot, after"),
    "control_before": Tr("Còn lại, trước", "Rest, before"),
    "control_after": Tr("Còn lại, sau", "Rest, after"),
}
DIRECTIONS = {
    "up": Tr("Tăng", "Up"),
    "down": Tr("Giảm", "Down"),
    "band": Tr("Trong khoảng", "Within a band"),
    "monitor": Tr("Theo dõi", "Monitored"),
}
PERIOD_WORDS = {
    "D": Tr("ngày", "days"),
    "M": Tr("tháng", "months"),
    "Q": Tr("quý", "quarters"),
    "Y": Tr("năm", "years"),
}


def _read(indicator: Any) -> IndicatorRead:
    read = IndicatorRead.model_validate(indicator)
    read.inputs = formula.names(indicator.formula)
    return read


# --- catalogue ------------------------------------------------------------------------------


@router.get("/indicators", response_model=IndicatorPage)
def list_indicators(
    session: SessionDep,
    _: Reader,
    limit: Limit = 100,
    offset: Offset = 0,
    sector: Sector | None = None,
    active: bool | None = None,
) -> IndicatorPage:
    """List the indicator catalogue (by sector, then code)."""
    rows, total = service.get_all(
        session=session,
        sector=sector.value if sector else None,
        active=active,
        limit=limit,
        offset=offset,
    )
    return IndicatorPage(items=[_read(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/indicators/{code}", response_model=IndicatorRead)
def get_indicator(code: CodePath, session: SessionDep, _: Reader) -> IndicatorRead:
    """Show one indicator."""
    return _read(service.get_or_raise(session=session, code=code))


@router.post("/indicators", response_model=IndicatorRead, status_code=status.HTTP_201_CREATED)
def create_indicator(
    indicator_in: IndicatorCreate, session: SessionDep, clock: ClockDep, _: Admin
) -> IndicatorRead:
    """Add an indicator; a formula naming an unknown input is refused (422 naming it)."""
    indicator = service.create(session=session, indicator_in=indicator_in, known=KNOWN, clock=clock)
    return _read(indicator)


@router.patch("/indicators/{code}", response_model=IndicatorRead)
def update_indicator(
    code: CodePath,
    indicator_in: IndicatorUpdate,
    session: SessionDep,
    clock: ClockDep,
    _: Admin,
) -> IndicatorRead:
    """Change an indicator (name, formula, targets, ...)."""
    indicator = service.get_or_raise(session=session, code=code)
    service.update(
        session=session, indicator=indicator, indicator_in=indicator_in, known=KNOWN, clock=clock
    )
    return _read(indicator)


@router.delete("/indicators/{code}", status_code=status.HTTP_204_NO_CONTENT)
def delete_indicator(code: CodePath, session: SessionDep, _: Admin) -> Response:
    """Delete an indicator and its computed values."""
    indicator = service.get_or_raise(session=session, code=code)
    service.delete_indicator(session=session, indicator=indicator)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/inputs", response_model=list[InputRead])
def list_inputs(_: Reader) -> list[InputRead]:
    """List the inputs a formula may name (pending ones have no connected source yet)."""
    return [
        InputRead(
            name=i.name,
            source=i.source,
            description=i.description,
            description_en=i.description_en,
            pending=i.pending,
        )
        for i in inputs.INPUTS.values()
    ]


# --- sector statistics ----------------------------------------------------------------------

MAX_STATISTICS_BYTES = 8 * 1024 * 1024
UnitQuery = Annotated[str | None, Query(max_length=16, pattern=r"^[0-9A-Za-z_.-]{1,16}$")]
YearQuery = Annotated[int | None, Query(ge=statistics.MIN_YEAR, le=2100)]
StatisticName = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]{1,64}$")]


@router.get("/statistics", response_model=StatisticPage)
def list_statistics(
    session: SessionDep,
    _: Reader,
    limit: Limit = 100,
    offset: Offset = 0,
    unit: UnitQuery = None,
    year: YearQuery = None,
    name: StatisticName = None,
) -> StatisticPage:
    """List yearly sector statistics per commune/ward (by year, name, unit)."""
    rows, total = service.get_statistics(
        session=session, unit_code=unit, year=year, name=name, limit=limit, offset=offset
    )
    return StatisticPage(
        items=[StatisticRead.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/statistics",
    response_model=StatisticsImportRead,
    description=(
        "Import yearly sector statistics from a CSV or XLSX file with the columns unit_code, "
        "year, name, value and optionally source. All or nothing: one bad row refuses the file "
        "(422, every problem listed with its line) and nothing is written; re-importing the "
        "same file changes nothing. Names: " + ", ".join(statistics.names()) + "."
    ),
)
def import_statistics(
    session: SessionDep,
    clock: ClockDep,
    _: Admin,
    file: Annotated[UploadFile, File(description="CSV or XLSX file")],
) -> StatisticsImportRead:
    """Import a statistics file (CSV or XLSX); answer what it added and changed."""
    data = file.file.read(MAX_STATISTICS_BYTES + 1)
    if len(data) > MAX_STATISTICS_BYTES:
        raise statistics.FileRefused("kpi.statistics.too_large", limit="8 MiB")
    report = statistics.import_file(
        session=session, clock=clock, file_name=file.filename or "", data=data
    )
    return StatisticsImportRead(
        rows=report.rows,
        imported=report.imported,
        updated=report.updated,
        unchanged=report.unchanged,
    )


# --- values -------------------------------------------------------------------------------


def _place_names(session: Session, lang: str) -> dict[str, str]:
    """Names of every unit (current and former) and area by code, in a language."""
    units, _ = unit_service.get_all(session=session, limit=100_000)
    areas, _ = unit_service.get_all_areas(session=session, limit=100_000)
    names = {a.code: tables.Tr(a.name, a.name_en or "").get(lang) for a in areas}
    names.update({u.code: tables.Tr(u.name, u.name_en or "").get(lang) for u in units})
    return names


def _indicator_names(session: Session, lang: str) -> dict[str, tuple[str, str]]:
    """Name (in a language) and unit of every indicator by code."""
    rows, _ = service.get_all(session=session)
    return {r.code: (Tr(r.name, r.name_en).get(lang), r.unit) for r in rows}


def _values_table(session: Session, reads: list[ValueRead], lang: str) -> Table:
    places = _place_names(session, lang)
    indicators = _indicator_names(session, lang)
    rows = []
    for r in reads:
        name, unit = indicators.get(r.indicator_code, (r.indicator_code, ""))
        rows.append(
            {
                **r.model_dump(),
                "indicator_name": name,
                "unit": unit,
                "place_name": places.get(r.place_code, r.place_code),
            }
        )
    table = Table(
        title=Tr("Giá trị chỉ tiêu KPI", "KPI values"),
        columns=VALUE_COLUMNS,
        rows=rows,
        key_columns=2,
    )
    codes = {r.indicator_code for r in reads}
    periods = {r.period_start for r in reads}
    place_set = {r.place_code for r in reads}
    if len(codes) == 1:
        (code,) = codes
        name, unit = indicators.get(code, (code, ""))
        title = Tr(f"{code} – {name}", f"{code} – {name}")
        if len(place_set) == 1:
            # One place over time: a line through its periods.
            ordered = sorted(rows, key=lambda row: row["period_start"])
            chart = tables.column_chart(
                Table(title=table.title, columns=VALUE_COLUMNS, rows=ordered),
                title=title,
                category="period_label",
                series=["value", "target"],
                kind="line",
                unit=unit,
                max_rows=120,
            )
        elif len(periods) == 1:
            # One period across places: a bar per place.
            chart = tables.column_chart(
                table,
                title=title,
                category="place_name",
                series=["value"],
                unit=unit,
                max_rows=120,
            )
        else:
            chart = None
        table.charts = [chart] if chart else []
    return table


@router.get("/values", response_model=ValuePage, responses=EXPORT_RESPONSES)
def list_values(
    request: Request,
    session: SessionDep,
    _: Reader,
    limit: Limit = 100,
    offset: Offset = 0,
    indicator: Annotated[list[str] | None, Query(max_length=200)] = None,
    sector: Sector | None = None,
    level: PlaceLevel | None = None,
    place: PlaceCode | None = None,
    period: Frequency | None = None,
    start: Day | None = None,
    end: Day | None = None,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """List computed values (filters: indicator, sector, level, place, period kind, dates).

    `start`/`end` bound the periods' first days; an export (csv, xlsx, pdf) holds every
    matching row, with a chart when it shows one indicator over one place or one period.
    """
    out = tables.wanted(request, fmt)
    export = out is not tables.ExportFormat.JSON
    codes = [c for c in indicator or [] if c] or None
    rows, total = service.get_values(
        session=session,
        indicator_codes=codes,
        sector=sector.value if sector else None,
        level=level.value if level else None,
        place_codes=[place] if place else None,
        period=period.value if period else None,
        start=start,
        end=end,
        limit=None if export else limit,
        offset=0 if export else offset,
    )
    reads = [ValueRead.model_validate(r) for r in rows]
    if export:
        language = tables.language(request, lang)
        table = _values_table(session, reads, language)
        return tables.respond(request, table, out, language, "kpi-values")
    return ValuePage(items=reads, total=total, limit=limit, offset=offset)


@router.post("/compute", response_model=ComputeResult)
def compute(
    compute_in: ComputeRequest, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> ComputeResult:
    """Compute (or recompute) indicators for the period containing `day`, now."""
    result = flows.compute(
        runtime=runtime,
        session=session,
        kind=compute_in.period,
        day=compute_in.day,
        codes=compute_in.indicators,
        publish=compute_in.publish,
    )
    return ComputeResult(**result)


@router.get("/ranking", response_model=RankingRead, responses=EXPORT_RESPONSES)
def ranking(
    request: Request,
    session: SessionDep,
    _: Reader,
    indicator: CodeQuery,
    day: Day,
    period: Frequency = Frequency.MONTH,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """Rank the communes/wards on one indicator for the period containing `day`, best first."""
    found = service.get_or_raise(session=session, code=indicator)
    first = first_day(period, day)
    rows = flows.rank(session=session, indicator=found, kind=period, first=first)
    label = window(period, first, "UTC").label
    read = RankingRead(
        indicator_code=found.code,
        direction=found.direction,
        period=period.value,
        period_label=label,
        items=[RankRow(**r) for r in rows],
    )
    out = tables.wanted(request, fmt)
    if out is tables.ExportFormat.JSON:
        return read
    language = tables.language(request, lang)
    name = Tr(found.name, found.name_en).get(language)
    table = Table(
        title=Tr(
            f"Xếp hạng phường, xã: {found.code} – {name} ({label})",
            f"Ranking of communes and wards: {found.code} – {name} ({label})",
        ),
        columns=RANKING_COLUMNS,
        rows=[r.model_dump() for r in read.items],
        notes=[
            Tr(
                f"Đơn vị tính: {found.unit}. Thứ tự: tốt nhất trước "
                f"({'thấp hơn là tốt hơn' if found.direction == 'down' else 'cao hơn trước'}).",
                f"Unit: {found.unit}. Order: best first "
                f"({'lower is better' if found.direction == 'down' else 'highest first'}).",
            )
        ],
        key_columns=3,
    )
    chart = tables.column_chart(
        table,
        title=Tr(f"{found.code} – {name}", f"{found.code} – {name}"),
        category="name",
        series=["value"],
        unit=found.unit,
        max_rows=120,
    )
    table.charts = [chart] if chart else []
    return tables.respond(request, table, out, language, f"kpi-ranking-{found.code}-{label}")


def _inputs_text(inputs: dict[str, dict[str, float | None]], lang: str) -> str:
    """The summed inputs behind each group's value, one line per group and window."""
    lines = []
    for key, label in GROUP_WINDOWS.items():
        sums = inputs.get(key) or {}
        if sums:
            figures = ", ".join(
                f"{name} = {format_number(v, lang, 0 if v is None or float(v).is_integer() else 2)}"
                for name, v in sums.items()
            )
            lines.append(f"{label.get(lang)}: {figures}")
    return "; ".join(lines)


def _evaluation_table(session: Session, read: EvaluationRead, lang: str) -> Table:
    """The pilot evaluation as a report: the method, the table, a chart per indicator."""
    areas = []
    for code in read.pilot_areas:
        area = unit_service.get_area(session=session, area_code=code)
        areas.append(Tr(area.name, area.name_en or area.name) if area else Tr(code, code))
    pilot_vi = " và ".join(a.vi for a in areas)
    pilot_en = " and ".join(a.en for a in areas)
    words = PERIOD_WORDS.get(read.period, Tr(read.period, read.period))
    go_live_vi = read.go_live.strftime("%d/%m/%Y")
    method = Tr(
        "Phương pháp khác biệt kép (difference in differences): mỗi chỉ tiêu được so sánh giữa "
        f"vùng thí điểm ({pilot_vi}: {read.pilot_units} phường, xã) và phần còn lại của tỉnh "
        f"({read.control_units} phường, xã), trước và sau ngày vận hành {go_live_vi}; "
        "DiD = thay đổi ở vùng thí điểm − thay đổi ở phần còn lại. "
        f"Giai đoạn trước: {read.before}, giai đoạn sau: {read.after} (theo {words.vi}); giá trị "
        "của mỗi nhóm là công thức của chỉ tiêu tính trên tổng các số liệu đầu vào của các đơn "
        "vị trong nhóm, các tổng này được ghi ở cột cuối.",
        "Difference in differences: each indicator is compared between the pilot areas "
        f"({pilot_en}: {read.pilot_units} communes and wards) and the rest of the province "
        f"({read.control_units} communes and wards), before and after the go-live date "
        f"{read.go_live.isoformat()}; DiD = change in the pilot areas − change in the rest. "
        f"Before: {read.before}, after: {read.after} (in {words.en}); each group's value is "
        "the indicator's formula over its units' summed inputs, listed in the last column.",
    )
    rows = []
    charts = []
    for r in read.rows:
        name = Tr(r.name, r.name_en).get(lang)
        rows.append(
            {
                **r.model_dump(),
                "indicator_name": name,
                "direction_text": DIRECTIONS.get(r.direction, Tr(r.direction, r.direction)).get(
                    lang
                ),
                "inputs_text": _inputs_text(r.inputs, lang),
            }
        )
        if all(
            v is None for v in (r.pilot_before, r.pilot_after, r.control_before, r.control_after)
        ):
            continue
        charts.append(
            tables.Chart(
                title=Tr(f"{r.indicator_code} – {name}", f"{r.indicator_code} – {name}"),
                categories=[Tr("Trước", "Before").get(lang), Tr("Sau", "After").get(lang)],
                series=[
                    tables.Series(Tr("Thí điểm", "Pilot"), [r.pilot_before, r.pilot_after]),
                    tables.Series(
                        Tr("Phần còn lại", "Rest of the province"),
                        [r.control_before, r.control_after],
                    ),
                ],
                unit=r.unit,
            )
        )
    return Table(
        title=Tr(
            f"Đánh giá thí điểm – vận hành từ {go_live_vi}",
            f"Pilot evaluation – live since {read.go_live.isoformat()}",
        ),
        columns=EVALUATION_COLUMNS,
        rows=rows,
        charts=charts,
        notes=[method],
        footer=[
            Tr(
                "Cải thiện: DiD theo chiều tốt của chỉ tiêu (tăng là tốt: DiD > 0; giảm là tốt: "
                "DiD < 0); ô trống: không có số liệu.",
                "Improved: DiD in the indicator's good direction (up: DiD > 0; down: DiD < 0); "
                "an empty cell: no data.",
            )
        ],
        key_columns=2,
    )


@router.get("/evaluation", response_model=EvaluationRead, responses=EXPORT_RESPONSES)
def evaluation(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    _: Reader,
    go_live: Day,
    indicator: Annotated[list[str] | None, Query(max_length=100)] = None,
    period: Frequency = Frequency.MONTH,
    before: Annotated[int, Query(ge=1, le=36)] = 6,
    after: Annotated[int, Query(ge=1, le=36)] = 6,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """Pilot evaluation: pilot areas (former Biên Hòa, Long Khánh) against the rest of the
    province, before and after `go_live`, as a difference-in-differences table.

    `indicator` picks indicators (default: every active one). CSV and XLSX have one row per
    indicator; the PDF is a report (method, table with the summed inputs, a chart per
    indicator: before/after, pilot against the rest).
    """
    codes = [c for c in indicator or [] if c] or None
    if codes is not None:
        found = [service.get_or_raise(session=session, code=c) for c in codes]
    else:
        found, _total = service.get_all(session=session, active=True)
    result = flows.evaluate_pilot(
        runtime=runtime,
        session=session,
        indicators=found,
        go_live=go_live,
        kind=period,
        before=before,
        after=after,
    )
    read = EvaluationRead(**result)
    out = tables.wanted(request, fmt)
    if out is tables.ExportFormat.JSON:
        return read
    language = tables.language(request, lang)
    table = _evaluation_table(session, read, language)
    return tables.respond(
        request, table, out, language, f"kpi-pilot-evaluation-{go_live.isoformat()}"
    )
