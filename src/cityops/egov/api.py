"""Routes of the egov context: procedures, dossiers (lists, imports, due dates), the 766 indicators.

Every list is JSON by default, or an export through `cityops.core.tables`: `format=csv|xlsx|pdf`
(or the Accept header) and `lang=vi|en`; CSV is UTF-8 with a byte order mark, so spreadsheet
programs show Vietnamese correctly. An export holds the rows of the page asked for (`limit`,
`offset`), as the CSV always did.

Imports through the API are all-or-nothing per request: if any row is bad the answer is 422 with
every problem (line, column, reason) and nothing is written; `dry_run=true` answers 200 with the
same report and writes nothing. Dossiers already stored are skipped (`update=true`: updated).
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError

from cityops.core import tables
from cityops.core.deps import MAX_ID, LangDep, Limit, Offset, RuntimeDep, SessionDep
from cityops.core.errors import Conflict, Forbidden, Invalid, NotFound
from cityops.core.schemas import FIRST_DAY, LAST_DAY, SINGLE_LINE
from cityops.core.security import Permission, Principal, Scope, require
from cityops.core.tables import EXPORT_RESPONSES, Column, FormatQuery, Kind, LangQuery, Table, Tr
from cityops.egov import flows, imports, service
from cityops.egov.enums import (
    DossierStatus,
    DueState,
    GroupBy,
    ImportFormat,
    OnlineLevel,
    ProcedureLevel,
)
from cityops.egov.periods import Period, current_period, parse_period
from cityops.egov.schemas import (
    BadRowRead,
    BandRead,
    DossierIn,
    DossierPage,
    DossierRead,
    DueDossierPage,
    DueDossierRead,
    GroupRead,
    ImportPage,
    ImportRead,
    ImportReportRead,
    IndicatorRead,
    IndicatorTableRead,
    PeriodRead,
    ProcedurePage,
    ProcedureRead,
    ProcedureStatRead,
    ScorecardRead,
    ScoreRead,
)
from cityops.egov.scoring import QUANTITIES, Counts, EgovConfig, Score, evaluate
from cityops.units.flows import local_date

router = APIRouter(tags=["egov"])

Reader = Annotated[Principal, Depends(require(Permission.EGOV_READ))]
Importer = Annotated[Principal, Depends(require(Permission.EGOV_ADMIN))]
Code = Annotated[str | None, Query(max_length=32, pattern=SINGLE_LINE)]
PeriodText = Annotated[
    str | None,
    Query(
        max_length=16,
        pattern=SINGLE_LINE,
        description="A month (2026-10), a quarter (2026-Q4) or a year (2026); default: this month.",
    ),
]
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
MAX_UPLOAD_ROWS = 100_000
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_BODY_ITEMS = 10_000
COLUMN_DOC = "; ".join(
    f"`{column}`: {', '.join(names)}" for column, names in imports.COLUMNS.items()
)


# --- helpers ------------------------------------------------------------------------------------


# Labels and kinds of the columns exports show; a column without one shows its key.
LABELS: dict[str, tuple[str, str, Kind]] = {
    "id": ("Số thứ tự", "Id", Kind.INT),
    "code": ("Mã", "Code", Kind.TEXT),
    "name": ("Tên", "Name", Kind.TEXT),
    "name_en": ("Tên tiếng Anh", "Name in English", Kind.TEXT),
    "field": ("Lĩnh vực", "Field", Kind.TEXT),
    "field_en": ("Lĩnh vực (tiếng Anh)", "Field in English", Kind.TEXT),
    "level": ("Cấp thực hiện", "Level", Kind.TEXT),
    "department_code": ("Sở, ngành", "Department", Kind.TEXT),
    "online_level": ("Mức dịch vụ công trực tuyến", "Online level", Kind.TEXT),
    "time_limit_days": ("Thời hạn (ngày làm việc)", "Time limit (working days)", Kind.INT),
    "has_fee": ("Có phí, lệ phí", "Has a fee", Kind.BOOL),
    "payment_integrated": ("Thanh toán trực tuyến", "Online payment", Kind.BOOL),
    "agency_code": ("Cơ quan", "Agency", Kind.TEXT),
    "unit_code": ("Phường, xã", "Commune/ward", Kind.TEXT),
    "procedure_code": ("Thủ tục", "Procedure", Kind.TEXT),
    "received_at": ("Tiếp nhận", "Received", Kind.DATETIME),
    "due_at": ("Hẹn trả", "Due", Kind.DATETIME),
    "completed_at": ("Hoàn thành", "Completed", Kind.DATETIME),
    "status": ("Trạng thái", "Status", Kind.TEXT),
    "channel": ("Kênh nộp", "Channel", Kind.TEXT),
    "submitted_online": ("Nộp trực tuyến", "Submitted online", Kind.BOOL),
    "paid_online": ("Thanh toán trực tuyến", "Paid online", Kind.BOOL),
    "digitised": ("Số hóa", "Digitised", Kind.BOOL),
    "electronic_result": ("Kết quả điện tử", "Electronic result", Kind.BOOL),
    "reused_data": ("Tái sử dụng dữ liệu", "Reused data", Kind.BOOL),
    "synced": ("Đồng bộ", "Synced", Kind.BOOL),
    "supplement_count": ("Số lần bổ sung", "Supplements", Kind.INT),
    "rating": ("Đánh giá", "Rating", Kind.TEXT),
    "import_id": ("Lần nhập", "Import", Kind.INT),
    "state": ("Tình trạng hạn", "Due state", Kind.TEXT),
    "file_hash": ("Mã băm tệp", "File hash", Kind.TEXT),
    "file_name": ("Tệp", "File", Kind.TEXT),
    "format": ("Định dạng", "Format", Kind.TEXT),
    "source": ("Nguồn", "Source", Kind.TEXT),
    "actor": ("Người nhập", "By", Kind.TEXT),
    "rows": ("Số dòng", "Rows", Kind.INT),
    "imported": ("Đã nhập", "Imported", Kind.INT),
    "updated": ("Đã cập nhật", "Updated", Kind.INT),
    "skipped": ("Bỏ qua", "Skipped", Kind.INT),
    "errors": ("Lỗi", "Errors", Kind.INT),
    "batches_done": ("Số lô", "Batches", Kind.INT),
    "started_at": ("Bắt đầu", "Started", Kind.DATETIME),
    "finished_at": ("Kết thúc", "Finished", Kind.DATETIME),
    "rank": ("Hạng", "Rank", Kind.INT),
    "kind": ("Loại", "Kind", Kind.TEXT),
    "dossiers": ("Số hồ sơ", "Dossiers", Kind.INT),
    "received": ("Tiếp nhận", "Received", Kind.INT),
    "completed": ("Đã giải quyết", "Completed", Kind.INT),
    "open": ("Đang giải quyết", "Open", Kind.INT),
    "overdue_open": ("Đang quá hạn", "Open overdue", Kind.INT),
    "total": ("Tổng điểm (thang 100)", "Score (of 100)", Kind.FLOAT),
    "band": ("Xếp loại", "Rating band", Kind.TEXT),
    "points": ("Điểm", "Points", Kind.FLOAT),
    "max_points": ("Điểm tối đa", "Maximum points", Kind.FLOAT),
    "period": ("Kỳ", "Period", Kind.TEXT),
    "group": ("Nhóm", "Group", Kind.TEXT),
    "measure": ("Đại lượng", "Measure", Kind.TEXT),
    "scoring": ("Cách chấm", "Scoring", Kind.TEXT),
    "threshold": ("Ngưỡng", "Threshold", Kind.FLOAT),
    "evaluated": ("Được đánh giá", "Evaluated", Kind.BOOL),
    "numerator": ("Tử số", "Numerator", Kind.FLOAT),
    "denominator": ("Mẫu số", "Denominator", Kind.FLOAT),
    "value": ("Giá trị", "Value", Kind.FLOAT),
    "unit": ("Đơn vị", "Unit", Kind.TEXT),
}
# Per-indicator and per-group columns of the 766 table: `2.1_numerator`, `g1_points`.
SUFFIXES = {
    "numerator": ("tử số", "numerator", Kind.FLOAT),
    "denominator": ("mẫu số", "denominator", Kind.FLOAT),
    "value": ("giá trị", "value", Kind.FLOAT),
    "points": ("điểm", "points", Kind.FLOAT),
    "max_points": ("điểm tối đa", "maximum points", Kind.FLOAT),
}


def _column(key: str) -> Column:
    """The export column of a key, labelled from LABELS (or by its suffix)."""
    if key in LABELS:
        vi, en, kind = LABELS[key]
        return Column(key, vi, en, kind)
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if key.endswith(f"_{suffix}"):
            vi, en, kind = SUFFIXES[suffix]
            head = key.removesuffix(f"_{suffix}")
            return Column(key, f"{head} – {vi}", f"{head} – {en}", kind)
    return Column(key)


def _export(
    request: Request,
    out: tables.ExportFormat,
    lang: str | None,
    title: Tr,
    rows: list[dict[str, Any]],
    keys: list[str],
    filename: str,
    *,
    key_columns: int = 1,
    chart: tuple[str, str, Tr] | None = None,
    columns: dict[str, Column] | None = None,
) -> Response:
    """Answer rows as an export; `chart` = (category column, value column, title); `columns`
    overrides the labels of some keys."""
    language = tables.language(request, lang)
    named = columns or {}
    table = Table(
        title=title,
        columns=[named.get(k) or _column(k) for k in keys],
        rows=rows,
        key_columns=key_columns,
    )
    if chart is not None:
        category, value, chart_title = chart
        drawn = tables.column_chart(
            table, title=chart_title, category=category, series=[value], max_rows=120
        )
        table.charts = [drawn] if drawn else []
    return tables.respond(request, table, out, language, filename)


def _period(runtime: RuntimeDep, text: str | None, lang: str) -> Period:
    timezone = runtime.settings.timezone
    if text is None or not text.strip():
        return current_period(runtime.clock.now(), timezone)
    period = parse_period(text, timezone)
    if period is None:
        message = runtime.translate("egov.period.invalid", lang)
        raise Invalid(
            "egov.period.invalid",
            errors=[{"field": "period", "in": "query", "message": message, "type": "period"}],
        )
    return period


def _local_day(runtime: RuntimeDep, day: date | None) -> datetime | None:
    if day is None:
        return None
    zone = ZoneInfo(runtime.settings.timezone)
    return datetime.combine(day, datetime.min.time(), tzinfo=zone)


def _number(value: float | None) -> int | float | None:
    """A count as an integer; a sum of days rounded."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(value, 4)


def _name(lang: str, vi: str, en: str | None) -> str:
    return en if lang == "en" and en else vi


# --- procedures ---------------------------------------------------------------------------------


@router.get(
    "/egov/procedures",
    response_model=ProcedurePage,
    summary="List administrative procedures",
    responses=EXPORT_RESPONSES,
)
def list_procedures(
    request: Request,
    session: SessionDep,
    _principal: Reader,
    level: ProcedureLevel | None = None,
    department: Code = None,
    field: Annotated[str | None, Query(max_length=200, pattern=SINGLE_LINE)] = None,
    online_level: OnlineLevel | None = None,
    q: Annotated[str | None, Query(max_length=200, pattern=SINGLE_LINE)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """List procedures (national database codes, time limits in working days, online level)."""
    rows, total = service.get_all_procedures(
        session=session,
        level=level.value if level else None,
        department_code=department,
        field=field,
        online_level=online_level.value if online_level else None,
        q=q,
        limit=limit,
        offset=offset,
    )
    items = [ProcedureRead.model_validate(p) for p in rows]
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        title = Tr("Thủ tục hành chính", "Administrative procedures")
        dumped = [i.model_dump() for i in items]
        return _export(
            request,
            out,
            lang,
            title,
            dumped,
            list(ProcedureRead.model_fields),
            "procedures",
            key_columns=2,
        )
    return ProcedurePage(items=items, total=total, limit=limit, offset=offset)


# --- dossiers -----------------------------------------------------------------------------------


@router.get(
    "/egov/dossiers/due",
    response_model=DueDossierPage,
    summary="Open dossiers overdue or due soon",
    responses=EXPORT_RESPONSES,
)
def list_due_dossiers(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    state: DueState | None = None,
    agency: Code = None,
    unit: Code = None,
    limit: Limit = 100,
    offset: Offset = 0,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """List open dossiers in scope past their due date or due within the horizon, soonest first.

    The horizon is `CITYOPS_EGOV_DUE_SOON_WORKING_DAYS` working days (default 1).
    """
    now = runtime.clock.now()
    horizon = flows.due_horizon(runtime, now)
    rows, total = service.get_due(
        session=session,
        scope=principal.scope,
        now=now,
        horizon_end=horizon,
        state=state,
        agency_code=agency,
        unit_code=unit,
        limit=limit,
        offset=offset,
    )
    items = [
        DueDossierRead(
            **DossierRead.model_validate(d).model_dump(),
            state=DueState.OVERDUE if d.due_at < now else DueState.DUE_SOON,
        )
        for d in rows
    ]
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        title = Tr("Hồ sơ quá hạn và sắp đến hạn", "Dossiers overdue or due soon")
        dumped = [i.model_dump() for i in items]
        return _export(
            request,
            out,
            lang,
            title,
            dumped,
            list(DueDossierRead.model_fields),
            "dossiers-due",
            key_columns=3,
        )
    return DueDossierPage(items=items, total=total, limit=limit, offset=offset, horizon_end=horizon)


@router.get(
    "/egov/dossiers",
    response_model=DossierPage,
    summary="List dossiers",
    responses=EXPORT_RESPONSES,
)
def list_dossiers(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    agency: Code = None,
    unit: Code = None,
    procedure: Code = None,
    status: DossierStatus | None = None,
    open: bool | None = None,
    overdue: Annotated[
        bool | None, Query(description="Open past due, or completed after the due date.")
    ] = None,
    received_from: Annotated[
        date | None,
        Query(description="Received on or after (local).", ge=FIRST_DAY, le=LAST_DAY),
    ] = None,
    received_to: Annotated[
        date | None, Query(description="Received before (local).", ge=FIRST_DAY, le=LAST_DAY)
    ] = None,
    q: Annotated[str | None, Query(max_length=64, pattern=SINGLE_LINE)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """List the dossiers in the caller's scope, newest received first."""
    flt = service.DossierFilter(
        agency_code=agency,
        unit_code=unit,
        procedure_code=procedure,
        status=status.value if status else None,
        open=open,
        overdue=overdue,
        received_from=_local_day(runtime, received_from),
        received_to=_local_day(runtime, received_to),
        q=q,
    )
    rows, total = service.get_all(
        session=session,
        scope=principal.scope,
        now=runtime.clock.now(),
        flt=flt,
        limit=limit,
        offset=offset,
    )
    items = [DossierRead.model_validate(d) for d in rows]
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        title = Tr("Hồ sơ thủ tục hành chính", "Dossiers")
        dumped = [i.model_dump() for i in items]
        return _export(
            request,
            out,
            lang,
            title,
            dumped,
            list(DossierRead.model_fields),
            "dossiers",
            key_columns=3,
        )
    return DossierPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/egov/dossiers/{dossier_id}", response_model=DossierRead, summary="Read a dossier")
def read_dossier(
    dossier_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, principal: Reader
) -> DossierRead:
    """Return one dossier in the caller's scope."""
    dossier = service.get(session=session, dossier_id=dossier_id)
    if dossier is None or not service.in_scope(
        principal.scope, agency_code=dossier.agency_code, unit_code=dossier.unit_code
    ):
        raise NotFound("egov.dossier.not_found", id=dossier_id)
    return DossierRead.model_validate(dossier)


def _report(runtime: RuntimeDep, report: imports.ImportReport, lang: str) -> ImportReportRead:
    return ImportReportRead(
        import_id=report.import_id,
        file_name=report.file_name,
        format=report.format,
        file_hash=report.file_hash,
        dry_run=report.dry_run,
        update=report.update,
        rows=report.rows,
        imported=report.imported,
        updated=report.updated,
        skipped=report.skipped,
        rejected=report.rejected,
        errors=[
            BadRowRead(
                line=bad.line,
                column=bad.column,
                value=bad.value,
                reason=imports.describe(runtime, bad, lang),
                key=bad.key,
            )
            for bad in report.errors
        ],
        ignored_columns=list(report.ignored_columns),
        previous_runs=report.previous_runs,
    )


def _run_import(
    *,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal,
    rows: imports.Rows,
    file_name: str,
    fmt: ImportFormat,
    file_hash: str,
    max_rows: int,
    dry_run: bool,
    update: bool,
    lang: str,
) -> ImportReportRead:
    try:
        report = imports.import_all(
            runtime=runtime,
            session=session,
            rows=rows,
            file_name=file_name,
            fmt=fmt,
            file_hash=file_hash,
            principal=principal,
            source="api",
            update=update,
            dry_run=dry_run,
            max_rows=max_rows,
        )
        session.flush()
    except IntegrityError:
        # Another import stored the same dossiers meanwhile: nothing of this one is kept.
        raise Conflict("egov.import.conflict") from None
    return _report(runtime, report, lang)


DryRun = Annotated[bool, Query(description="Validate and count only; write nothing.")]
Update = Annotated[bool, Query(description="Update dossiers already stored whose values changed.")]


@router.post(
    "/egov/dossiers/import",
    response_model=ImportReportRead,
    summary="Import a file of dossiers (CSV, XLSX or JSON)",
    description=(
        "All or nothing: one bad row refuses the request (422, every problem listed with its "
        "line, column and reason) and nothing is written; with `dry_run=true` the report lists "
        "the problems and nothing is written either. Dossiers already stored (same agency and "
        "code) are skipped, or updated with `update=true`. A file that is not CSV, XLSX or JSON "
        "is refused with 415, an unreadable one with 400. Up to 32 MiB and 100,000 rows; use "
        "`cityops import dossiers FILE` for more. Accepted column names (English or "
        f"Vietnamese, any case, with or without diacritics): {COLUMN_DOC}."
    ),
)
def import_dossier_file(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Importer,
    lang: LangDep,
    file: Annotated[UploadFile, File(description="A .csv, .xlsx or .json file.")],
    dry_run: DryRun = False,
    update: Update = False,
) -> ImportReportRead:
    """Import dossiers from an uploaded file; every row is checked before anything is written."""
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise imports.PayloadTooLarge("egov.import.too_large", limit="32 MiB")
    name = file.filename or "upload"
    fmt = imports.detect_format(name, file.content_type, data[:8])
    rows = imports.open_rows(fmt, io.BytesIO(data))
    return _run_import(
        runtime=runtime,
        session=session,
        principal=principal,
        rows=rows,
        file_name=name,
        fmt=fmt,
        file_hash=hashlib.sha256(data).hexdigest(),
        max_rows=MAX_UPLOAD_ROWS,
        dry_run=dry_run,
        update=update,
        lang=lang,
    )


async def _json_body(request: Request) -> Any:
    """Read the body as JSON, refusing what is too large or not JSON."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise imports.PayloadTooLarge("egov.import.too_large", limit="8 MiB")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Invalid(
            "egov.import.bad_json",
            errors=[{"field": "body", "in": "body", "key": "egov.import.bad_json"}],
        ) from None


@router.post(
    "/egov/dossiers",
    response_model=ImportReportRead,
    summary="Import dossiers sent as a JSON list",
    description=(
        "The same validation and all-or-nothing rule as the file import; `line` in the report "
        "is the item's position in the list (from 1). Up to 10,000 items per request."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "maxItems": MAX_BODY_ITEMS,
                        "items": DossierIn.model_json_schema(),
                    }
                }
            },
        }
    },
)
def import_dossier_list(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Importer,
    lang: LangDep,
    body: Annotated[Any, Depends(_json_body)],
    dry_run: DryRun = False,
    update: Update = False,
) -> ImportReportRead:
    """Import dossiers from a JSON list; every item is checked before anything is written."""
    rows = imports.json_rows(body)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return _run_import(
        runtime=runtime,
        session=session,
        principal=principal,
        rows=rows,
        file_name="request",
        fmt=ImportFormat.JSON,
        file_hash=digest,
        max_rows=MAX_BODY_ITEMS,
        dry_run=dry_run,
        update=update,
        lang=lang,
    )


@router.get(
    "/egov/imports",
    response_model=ImportPage,
    summary="The dossier import ledger",
    responses=EXPORT_RESPONSES,
)
def list_imports(
    request: Request,
    session: SessionDep,
    _principal: Importer,
    limit: Limit = 100,
    offset: Offset = 0,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """List import runs, newest first: file, who, rows imported, skipped and refused."""
    rows, total = service.get_all_imports(session=session, limit=limit, offset=offset)
    items = [ImportRead.model_validate(r) for r in rows]
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        title = Tr("Nhật ký nhập hồ sơ", "Dossier import ledger")
        dumped = [i.model_dump() for i in items]
        return _export(request, out, lang, title, dumped, list(ImportRead.model_fields), "imports")
    return ImportPage(items=items, total=total, limit=limit, offset=offset)


# --- indicators ---------------------------------------------------------------------------------


def _period_read(table: flows.IndicatorTable) -> PeriodRead:
    p = table.period
    return PeriodRead(label=p.label, kind=p.kind, start=p.start, end=p.end, as_of=table.as_of)


def _score_read(item: flows.GroupScore, config: EgovConfig, lang: str) -> ScoreRead:
    score: Score = item.score
    counts: Counts = item.counts
    indicators = []
    for r in score.indicators:
        c = r.config
        quantity = c.measure in QUANTITIES
        value = None if r.rate is None else (r.rate if quantity else 100.0 * r.rate)
        indicators.append(
            IndicatorRead(
                id=c.id,
                group=c.group,
                name=_name(lang, c.name, c.name_en),
                measure=c.measure,
                scoring=c.scoring,
                threshold=c.threshold,
                status=c.status,
                evaluated=r.evaluated,
                numerator=_number(r.numerator),
                denominator=_number(r.denominator),
                value=None if value is None else round(value, 2),
                unit="day" if quantity else "%",
                points=None if r.points is None else round(r.points, 4),
                max_points=r.max_points,
            )
        )
    band = score.band
    return ScoreRead(
        code=item.code,
        kind=item.kind,
        name=_name(lang, item.name, item.name_en),
        dossiers=counts.handled,
        received=counts.received,
        completed=counts.completed,
        open=counts.open,
        overdue_open=counts.overdue_open,
        on_time=counts.on_time,
        points=round(score.points, 4),
        max_points=score.max_points,
        total=None if score.total is None else round(score.total, 2),
        band=None
        if band is None
        else BandRead(code=band.code, name=_name(lang, band.name, band.name_en), min=band.min),
        rank=score.rank,
        ranked=score.ranked,
        groups=[
            GroupRead(
                key=g.config.key,
                name=_name(lang, g.config.name, g.config.name_en),
                points=round(g.points, 4),
                max_points=g.max_points,
                full_points=g.config.points,
            )
            for g in score.groups
        ],
        indicators=indicators,
    )


FLAT_KEYS = [
    "rank", "code", "kind", "name", "dossiers", "received", "completed", "open", "overdue_open",
    "total", "band", "points", "max_points",
]  # fmt: skip


def _flat(score: ScoreRead) -> dict[str, Any]:
    """One CSV row of a score: totals, then each group's and each indicator's figures."""
    row: dict[str, Any] = {
        "rank": score.rank,
        "code": score.code,
        "kind": score.kind,
        "name": score.name,
        "dossiers": score.dossiers,
        "received": score.received,
        "completed": score.completed,
        "open": score.open,
        "overdue_open": score.overdue_open,
        "total": score.total,
        "band": score.band.name if score.band else None,
        "points": score.points,
        "max_points": score.max_points,
    }
    for g in score.groups:
        row[f"{g.key}_points"] = g.points
        row[f"{g.key}_max_points"] = g.max_points
    for i in score.indicators:
        row[f"{i.id}_numerator"] = i.numerator
        row[f"{i.id}_denominator"] = i.denominator
        row[f"{i.id}_value"] = i.value
        row[f"{i.id}_points"] = i.points
    return row


def _group_in_scope(scope: Scope, group_by: GroupBy, code: str) -> bool:
    """Whether an agency's (or unit's) figures are within a scope."""
    if group_by is GroupBy.AGENCY:
        return service.in_scope(scope, agency_code=code, unit_code=None)
    return scope.department_code is None and (scope.unit_codes is None or code in scope.unit_codes)


@router.get(
    "/egov/indicators",
    response_model=IndicatorTableRead,
    summary="Decision 766 indicators per agency or unit",
    responses=EXPORT_RESPONSES,
)
def list_indicators(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    lang: LangDep,
    period: PeriodText = None,
    group_by: GroupBy = GroupBy.AGENCY,
    fmt: FormatQuery = None,
    export_lang: LangQuery = None,
) -> Any:
    """Return every agency's (or unit's) indicators, points, total, rating band and rank.

    Ranks are among all agencies (or units) of the province; the list shows those in the
    caller's scope.
    """
    config = flows.config_of(runtime)
    table = flows.compute_indicators(
        runtime=runtime,
        session=session,
        period=_period(runtime, period, lang),
        group_by=group_by,
    )
    items = [
        _score_read(i, config, lang)
        for i in table.items
        if _group_in_scope(principal.scope, group_by, i.code)
    ]
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        flat = [_flat(i) for i in items]
        keys = list(flat[0]) if flat else FLAT_KEYS
        label = table.period.label
        title = Tr(
            f"Bộ chỉ số 766 theo {'cơ quan' if group_by is GroupBy.AGENCY else 'địa bàn'}, "
            f"kỳ {label}",
            f"Decision 766 indicators by {group_by.value}, {label}",
        )
        chart = ("name", "total", Tr("Tổng điểm (thang 100)", "Score (of 100)"))
        return _export(
            request,
            out,
            export_lang or lang,
            title,
            flat,
            keys,
            f"egov-766-{label}-{group_by.value}",
            key_columns=4,
            chart=chart,
        )
    return IndicatorTableRead(
        period=_period_read(table),
        group_by=group_by.value,
        min_dossiers_for_rank=config.min_dossiers_for_rank,
        ranked=sum(1 for i in table.items if i.score.ranked),
        items=items,
    )


def _procedure_stats(
    item: flows.GroupScore, names: dict[str, tuple[str, str | None]], lang: str
) -> list[ProcedureStatRead]:
    out = []
    for code, c in sorted(item.procedures.items(), key=lambda kv: (-kv[1].handled, kv[0])):
        vi, en = names.get(code, (code, None))
        out.append(
            ProcedureStatRead(
                procedure_code=code,
                name=_name(lang, vi, en),
                dossiers=c.handled,
                received=c.received,
                completed=c.completed,
                on_time=c.on_time,
                on_time_percent=round(100.0 * c.on_time / c.handled, 2) if c.handled else None,
                average_days=round(c.handling_days / c.completed, 2) if c.completed else None,
                online_percent=round(100.0 * c.online / c.received, 2) if c.received else None,
            )
        )
    return out


@router.get(
    "/egov/scorecard/{code}",
    response_model=ScorecardRead,
    summary="One agency's or unit's 766 scorecard",
    responses=EXPORT_RESPONSES,
)
def read_scorecard(
    code: Annotated[str, Path(max_length=32, pattern=SINGLE_LINE)],
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reader,
    lang: LangDep,
    period: PeriodText = None,
    group_by: Annotated[
        GroupBy | None,
        Query(description="agency (default for departments and communes) or unit."),
    ] = None,
    fmt: FormatQuery = None,
    export_lang: LangQuery = None,
) -> Any:
    """Return an agency's (or a unit's) indicators, rank and per-procedure figures.

    As CSV: one row per indicator.
    """
    today = local_date(runtime.clock, runtime.settings.timezone)
    agencies = service.get_agencies(session=session, on=today)
    places = service.get_places(session=session, on=today)
    if group_by is None:
        group_by = GroupBy.AGENCY if code in agencies else GroupBy.UNIT
    known = agencies if group_by is GroupBy.AGENCY else places
    if code not in known:
        raise NotFound("egov.scorecard.not_found", code=code)
    if not _group_in_scope(principal.scope, group_by, code):
        raise Forbidden("error.forbidden.scope")
    config = flows.config_of(runtime)
    table = flows.compute_indicators(
        runtime=runtime,
        session=session,
        period=_period(runtime, period, lang),
        group_by=group_by,
    )
    item = next((i for i in table.items if i.code == code), None)
    if item is None:
        # No dossier in the period: every indicator unevaluated, no rank.
        entry = known[code]
        kind = entry.kind.value if isinstance(entry, service.Agency) else entry.level
        item = flows.GroupScore(
            code, kind, entry.name, entry.name_en, Counts(), evaluate(config, Counts())
        )
    names = {
        p.code: (p.name, p.name_en) for p in service.get_procedure_map(session=session).values()
    }
    score = _score_read(item, config, lang)
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        label = table.period.label
        rows = [{"code": score.code, "period": label, **i.model_dump()} for i in score.indicators]
        keys = ["code", "period", *IndicatorRead.model_fields]
        title = Tr(
            f"Phiếu điểm 766: {score.name} ({score.code}), kỳ {label}",
            f"Decision 766 scorecard: {score.name} ({score.code}), {label}",
        )
        chart = ("id", "points", Tr("Điểm theo chỉ số", "Points per indicator"))
        return _export(
            request,
            out,
            export_lang or lang,
            title,
            rows,
            keys,
            f"egov-766-{code}-{label}",
            key_columns=3,
            chart=chart,
            columns={"id": Column("id", "Chỉ số", "Indicator")},
        )
    return ScorecardRead(
        period=_period_read(table),
        group_by=group_by.value,
        min_dossiers_for_rank=config.min_dossiers_for_rank,
        ranked=sum(1 for i in table.items if i.score.ranked),
        item=score,
        procedures=_procedure_stats(item, names, lang),
    )
