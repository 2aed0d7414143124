"""Routes of the programme board: phases, items, budget lines, milestones, the views
(responsibility matrix, roadmap, budget split, late items, progress) and spreadsheet import.

Every list and view is also an export through `cityops.core.tables`: `format=csv|xlsx|pdf` (or
the Accept header) and `lang=vi|en`; CSV is UTF-8 with a byte-order mark so Excel shows
Vietnamese correctly; an export holds every matching row (no paging).
Reading needs programme:read; writing programme:admin, except that programme:report lets a
department report progress, status and milestones of the items it owns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile, status
from sqlalchemy.orm import Session

from cityops.core import tables
from cityops.core.deps import (
    MAX_ID,
    ClockDep,
    LangDep,
    Limit,
    Offset,
    RuntimeDep,
    SessionDep,
    TranslatorDep,
)
from cityops.core.errors import Forbidden, Invalid
from cityops.core.schemas import FIRST_DAY, LAST_DAY
from cityops.core.security import Permission, Principal, require
from cityops.core.tables import EXPORT_RESPONSES, Column, FormatQuery, Kind, LangQuery, Table, Tr
from cityops.programme import flows, imports, service
from cityops.programme.enums import ItemStatus, ProgressBy
from cityops.programme.models import ProgrammeItem, ProgrammeMilestone
from cityops.programme.schemas import (
    CODE_PATTERN,
    BudgetLineRead,
    BudgetRead,
    BudgetReplace,
    ImportCounts,
    ImportProblem,
    ImportReport,
    ItemCreate,
    ItemDetail,
    ItemPage,
    ItemRead,
    ItemUpdate,
    LateItem,
    LateMilestone,
    LateRead,
    MatrixRead,
    MilestoneCreate,
    MilestoneRead,
    MilestoneUpdate,
    PhaseCreate,
    PhasePage,
    PhaseRead,
    PhaseUpdate,
    ProgressRead,
    Ref,
    RoadmapItem,
    RoadmapPhase,
    RoadmapRead,
    RoadmapSector,
)
from cityops.units import service as unit_service

router = APIRouter(prefix="/programme", tags=["programme"])

Reader = Annotated[Principal, Depends(require(Permission.PROGRAMME_READ))]
Admin = Annotated[Principal, Depends(require(Permission.PROGRAMME_ADMIN))]
CodePath = Annotated[str, Path(min_length=1, max_length=32, pattern=CODE_PATTERN)]
MilestonePk = Annotated[int, Path(ge=1, le=MAX_ID)]
PhaseFilter = Annotated[str | None, Query(max_length=32, pattern=CODE_PATTERN)]
SectorFilter = Annotated[str | None, Query(max_length=32, pattern=r"^[a-z][a-z0-9_]{0,31}$")]
DepartmentFilter = Annotated[
    str | None,
    Query(
        max_length=32,
        pattern=r"^[A-Z][A-Z0-9_]{0,31}$",
        description="Items this department owns or supports.",
    ),
]
AsOf = Annotated[
    date | None,
    Query(
        ge=FIRST_DAY,
        le=LAST_DAY,
        description="Judge lateness on this date (default: today in the province).",
    ),
]


MAX_UPLOAD = imports.MAX_FILE_BYTES


async def get_today(runtime: RuntimeDep, clock: ClockDep, as_of: AsOf = None) -> date:
    """The date lateness is judged on: `as_of`, or today in the province by the clock."""
    if as_of is not None:
        return as_of
    return clock.now().astimezone(ZoneInfo(runtime.settings.timezone)).date()


Today = Annotated[date, Depends(get_today)]


# --- exports ---------------------------------------------------------------------------------


def _export(
    request: Request,
    fmt: tables.ExportFormat,
    lang: str | None,
    title: Tr,
    columns: Sequence[Column],
    rows: Sequence[dict[str, Any]],
    filename: str,
    *,
    key_columns: int = 1,
    chart: tuple[str, Sequence[str], Tr, str] | None = None,
    chart_rows: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Response:
    """Answer rows as an export; `chart` = (category column, series columns, title, unit)."""
    language = tables.language(request, lang)
    table = Table(title=title, columns=columns, rows=rows, key_columns=key_columns)
    if chart is not None:
        category, series, chart_title, unit = chart
        drawn = tables.column_chart(
            table, title=chart_title, category=category, series=series, unit=unit, only=chart_rows
        )
        table.charts = [drawn] if drawn else []
    return tables.respond(request, table, fmt, language, filename)


# --- helpers -----------------------------------------------------------------------------------


def _item_reads(session: Session, items: Sequence[ProgrammeItem], today: date) -> list[ItemRead]:
    stats = service.get_item_stats(session=session, item_ids=[i.id for i in items], today=today)
    return [
        ItemRead(
            id=item.id,
            code=item.code,
            name=item.name,
            name_en=item.name_en,
            description=item.description,
            phase_code=item.phase_code,
            sector=item.sector,
            owner_department_code=item.owner_department_code,
            supporting_department_codes=item.supporting_department_codes,
            unit_codes=item.unit_codes,
            status=ItemStatus(item.status),
            progress=item.progress,
            start_date=item.start_date,
            end_date=item.end_date,
            allocated=stats[item.id].allocated,
            disbursed=stats[item.id].disbursed,
            late=stats[item.id].days_late is not None,
            days_late=stats[item.id].days_late,
            updated_at=item.updated_at,
        )
        for item in items
    ]


def _milestone_read(
    milestone: ProgrammeMilestone, item: ProgrammeItem, today: date
) -> MilestoneRead:
    days = service.milestone_days_late(milestone, item, today)
    return MilestoneRead(
        id=milestone.id,
        name=milestone.name,
        name_en=milestone.name_en,
        due_date=milestone.due_date,
        done_date=milestone.done_date,
        weight=milestone.weight,
        late=days > 0,
        days_late=days or None,
    )


def _department_ref(session: Session, code: str) -> Ref:
    department = unit_service.get_department(session=session, department_code=code)
    if department is None:
        return Ref(code=code, name=code)
    return Ref(code=code, name=department.name, name_en=department.name_en)


def _item_detail(session: Session, item: ProgrammeItem, today: date) -> ItemDetail:
    base = _item_reads(session, [item], today)[0]
    units = []
    for code in item.unit_codes:
        unit = unit_service.get(session=session, unit_code=code)
        units.append(
            Ref(code=code, name=unit.name, name_en=unit.name_en)
            if unit
            else Ref(code=code, name=code)
        )
    return ItemDetail(
        **base.model_dump(),
        owner_department=_department_ref(session, item.owner_department_code),
        supporting_departments=[
            _department_ref(session, code) for code in item.supporting_department_codes
        ],
        units=units,
        budget=[
            BudgetLineRead(
                year=line.year,
                source=line.source,
                allocated=line.allocated,
                disbursed=line.disbursed,
                over_disbursed=line.disbursed > line.allocated,
            )
            for line in service.get_budget_lines(session=session, item=item)
        ],
        milestones=[
            _milestone_read(m, item, today)
            for m in service.get_milestones(session=session, item_ids=[item.id])
        ],
    )


def _check_reporter(principal: Principal, item: ProgrammeItem) -> None:
    """Let admins through; let reporters through for the items their department owns."""
    if principal.can(Permission.PROGRAMME_ADMIN):
        return
    principal.check(Permission.PROGRAMME_REPORT)
    if not principal.scope.covers_department(item.owner_department_code):
        raise Forbidden("programme.item.not_owner", code=item.code)


# --- phases ------------------------------------------------------------------------------------

PHASE_COLUMNS = [
    Column("code", "Mã", "Code"),
    Column("name", "Tên giai đoạn", "Phase"),
    Column("name_en", "Tên tiếng Anh", "Name in English"),
    Column("description", "Mô tả", "Description"),
    Column("start_year", "Năm bắt đầu", "Start year", Kind.INT),
    Column("end_year", "Năm kết thúc", "End year", Kind.INT),
    Column("planned_recurrent_pct", "Kế hoạch chi thường xuyên", "Planned recurrent", Kind.PERCENT),
    Column(
        "planned_investment_pct",
        "Kế hoạch chi đầu tư phát triển",
        "Planned investment",
        Kind.PERCENT,
    ),
]


@router.get(
    "/phases", summary="List the programme's phases", response_model=PhasePage,
    responses=EXPORT_RESPONSES,
)  # fmt: skip
def list_phases(
    request: Request,
    session: SessionDep,
    _principal: Reader,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """List the phases with their planned split of funding, oldest first."""
    phases = [PhaseRead.model_validate(p) for p in service.get_all_phases(session=session)]
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        rows = [p.model_dump() for p in phases]
        title = Tr("Các giai đoạn của chương trình", "Programme phases")
        return _export(request, out, lang, title, PHASE_COLUMNS, rows, "phases")
    return PhasePage(items=phases, total=len(phases), limit=len(phases), offset=0)


@router.get("/phases/{code}", summary="Read a phase", response_model=PhaseRead)
def read_phase(code: CodePath, session: SessionDep, _principal: Reader) -> PhaseRead:
    """Return one phase."""
    return PhaseRead.model_validate(service.get_phase_or_raise(session=session, phase_code=code))


@router.post(
    "/phases",
    summary="Create a phase",
    response_model=PhaseRead,
    status_code=status.HTTP_201_CREATED,
)
def create_phase(
    phase_in: PhaseCreate, session: SessionDep, clock: ClockDep, _principal: Admin
) -> PhaseRead:
    """Create a phase (default split 40 % recurrent / 60 % development investment)."""
    return PhaseRead.model_validate(
        service.create_phase(session=session, phase_in=phase_in, clock=clock)
    )


@router.patch("/phases/{code}", summary="Update a phase", response_model=PhaseRead)
def update_phase(
    code: CodePath,
    phase_in: PhaseUpdate,
    session: SessionDep,
    clock: ClockDep,
    _principal: Admin,
) -> PhaseRead:
    """Change a phase's names, years or planned split."""
    phase = service.get_phase_or_raise(session=session, phase_code=code)
    return PhaseRead.model_validate(
        service.update_phase(session=session, phase=phase, phase_in=phase_in, clock=clock)
    )


@router.delete("/phases/{code}", summary="Delete a phase", status_code=status.HTTP_204_NO_CONTENT)
def delete_phase(code: CodePath, session: SessionDep, _principal: Admin) -> Response:
    """Delete a phase that has no items."""
    service.delete_phase(
        session=session, phase=service.get_phase_or_raise(session=session, phase_code=code)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- items -------------------------------------------------------------------------------------

ITEM_COLUMNS = [
    Column("code", "Mã", "Code"),
    Column("name", "Nhiệm vụ", "Item"),
    Column("name_en", "Tên tiếng Anh", "Name in English"),
    Column("phase_code", "Giai đoạn", "Phase"),
    Column("sector", "Lĩnh vực", "Sector"),
    Column("owner_department_code", "Cơ quan chủ trì", "Owner department"),
    Column("supporting_department_codes", "Cơ quan phối hợp", "Supporting departments"),
    Column("unit_codes", "Địa bàn", "Communes and wards"),
    Column("status", "Trạng thái", "Status"),
    Column("progress", "Tiến độ", "Progress", Kind.PERCENT),
    Column("start_date", "Bắt đầu", "Start", Kind.DATE),
    Column("end_date", "Kết thúc", "End", Kind.DATE),
    Column("allocated", "Kinh phí bố trí (đồng)", "Allocated (VND)", Kind.MONEY),
    Column("disbursed", "Đã giải ngân (đồng)", "Disbursed (VND)", Kind.MONEY),
    Column("late", "Chậm", "Late", Kind.BOOL),
    Column("days_late", "Số ngày chậm", "Days late", Kind.INT),
]


@router.get("/items", summary="List items", response_model=ItemPage, responses=EXPORT_RESPONSES)
def list_items(
    request: Request,
    session: SessionDep,
    _principal: Reader,
    today: Today,
    phase: PhaseFilter = None,
    sector: SectorFilter = None,
    department: DepartmentFilter = None,
    owner: Annotated[
        str | None,
        Query(
            max_length=32,
            pattern=r"^[A-Z][A-Z0-9_]{0,31}$",
            description="Items this department owns.",
        ),
    ] = None,
    item_status: Annotated[ItemStatus | None, Query(alias="status")] = None,
    late: Annotated[
        bool | None, Query(description="Only items with (true) or without (false) late milestones.")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """List items by phase, sector, department, status or lateness, with budget totals."""
    out = tables.wanted(request, fmt)
    export = out is not tables.ExportFormat.JSON
    items, total = service.get_all(
        session=session,
        today=today,
        phase_code=phase,
        sector=sector,
        department_code=department,
        owner_department_code=owner,
        status=item_status,
        late=late,
        limit=service.MAX_ROWS if export else limit,
        offset=0 if export else offset,
    )
    reads = _item_reads(session, items, today)
    if export:
        rows = [r.model_dump() for r in reads]
        title = Tr("Nhiệm vụ của chương trình", "Programme items")
        return _export(request, out, lang, title, ITEM_COLUMNS, rows, "items", key_columns=2)
    return ItemPage(items=reads, total=total, limit=limit, offset=offset)


@router.get("/items/{code}", summary="Read an item", response_model=ItemDetail)
def read_item(code: CodePath, session: SessionDep, _principal: Reader, today: Today) -> ItemDetail:
    """Return an item with its departments, units, budget lines and milestones."""
    return _item_detail(session, service.get_by_code_or_raise(session=session, code=code), today)


@router.post(
    "/items",
    summary="Create an item",
    response_model=ItemDetail,
    status_code=status.HTTP_201_CREATED,
)
def create_item(
    item_in: ItemCreate, session: SessionDep, clock: ClockDep, _principal: Admin, today: Today
) -> ItemDetail:
    """Create an item with its units, supporting departments, budget lines and milestones."""
    item = service.create(session=session, item_in=item_in, clock=clock)
    return _item_detail(session, item, today)


# Fields a department may report on the items it owns.
REPORT_FIELDS = frozenset({"progress", "status"})


@router.patch("/items/{code}", summary="Update an item", response_model=ItemDetail)
def update_item(
    code: CodePath,
    item_in: ItemUpdate,
    session: SessionDep,
    clock: ClockDep,
    principal: Reader,
    today: Today,
) -> ItemDetail:
    """Change an item; the owner department may report its progress and status."""
    item = service.get_by_code_or_raise(session=session, code=code)
    _check_reporter(principal, item)
    if not principal.can(Permission.PROGRAMME_ADMIN):
        if not item_in.model_fields_set <= REPORT_FIELDS:
            raise Forbidden("programme.item.report_fields_only")
        if ItemStatus.CANCELLED in (item_in.status, item.status):
            raise Forbidden("programme.item.cancel_needs_admin")
    item = service.update(session=session, item=item, item_in=item_in, clock=clock)
    return _item_detail(session, item, today)


@router.delete("/items/{code}", summary="Delete an item", status_code=status.HTTP_204_NO_CONTENT)
def delete_item(code: CodePath, session: SessionDep, _principal: Admin) -> Response:
    """Delete an item with its budget lines and milestones."""
    service.delete(session=session, item=service.get_by_code_or_raise(session=session, code=code))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/items/{code}/budget", summary="Replace an item's budget lines",
    response_model=list[BudgetLineRead],
)  # fmt: skip
def replace_budget(
    code: CodePath, budget_in: BudgetReplace, session: SessionDep, _principal: Admin
) -> list[BudgetLineRead]:
    """Replace the item's budget lines (years within its phase; one line per year and source)."""
    item = service.get_by_code_or_raise(session=session, code=code)
    lines = service.set_budget(session=session, item=item, lines=budget_in.lines)
    return [
        BudgetLineRead(
            year=line.year,
            source=line.source,
            allocated=line.allocated,
            disbursed=line.disbursed,
            over_disbursed=line.disbursed > line.allocated,
        )
        for line in lines
    ]


@router.post(
    "/items/{code}/milestones",
    summary="Add a milestone",
    response_model=MilestoneRead,
    status_code=status.HTTP_201_CREATED,
)
def create_milestone(
    code: CodePath,
    milestone_in: MilestoneCreate,
    session: SessionDep,
    principal: Reader,
    today: Today,
) -> MilestoneRead:
    """Add a milestone to an item (admins, or the owner department)."""
    item = service.get_by_code_or_raise(session=session, code=code)
    _check_reporter(principal, item)
    milestone = service.create_milestone(session=session, item=item, milestone_in=milestone_in)
    return _milestone_read(milestone, item, today)


@router.patch(
    "/items/{code}/milestones/{milestone_id}",
    summary="Update a milestone (mark it done with done_date)",
    response_model=MilestoneRead,
)
def update_milestone(
    code: CodePath,
    milestone_id: MilestonePk,
    milestone_in: MilestoneUpdate,
    session: SessionDep,
    principal: Reader,
    today: Today,
) -> MilestoneRead:
    """Change a milestone of an item (admins, or the owner department)."""
    item = service.get_by_code_or_raise(session=session, code=code)
    _check_reporter(principal, item)
    milestone = service.get_milestone_or_raise(
        session=session, item=item, milestone_id=milestone_id
    )
    milestone = service.update_milestone(
        session=session, milestone=milestone, milestone_in=milestone_in
    )
    return _milestone_read(milestone, item, today)


@router.delete(
    "/items/{code}/milestones/{milestone_id}",
    summary="Delete a milestone",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_milestone(
    code: CodePath, milestone_id: MilestonePk, session: SessionDep, principal: Reader
) -> Response:
    """Delete a milestone of an item (admins, or the owner department)."""
    item = service.get_by_code_or_raise(session=session, code=code)
    _check_reporter(principal, item)
    service.delete_milestone(
        session=session,
        milestone=service.get_milestone_or_raise(
            session=session, item=item, milestone_id=milestone_id
        ),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- views -------------------------------------------------------------------------------------


@router.get(
    "/matrix",
    summary="Responsibility matrix (department × item)",
    response_model=MatrixRead,
    responses=EXPORT_RESPONSES,
)
def matrix(
    request: Request,
    session: SessionDep,
    _principal: Reader,
    phase: PhaseFilter = None,
    sector: SectorFilter = None,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """Who owns (chủ trì) and who supports (phối hợp) each item, and how many units take part.

    CSV: one row per department, one column per item (owner / supporting), and a last row
    counting each item's participating units.
    """
    data = service.get_matrix(session=session, phase_code=phase, sector=sector)
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        codes = [item["code"] for item in data.items]
        roles: dict[str, dict[str, str]] = {}
        for cell in data.cells:
            roles.setdefault(cell["department_code"], {})[cell["item_code"]] = cell["role"]
        rows: list[dict[str, Any]] = [
            {
                "department_code": d["code"],
                "department_name": d["name"],
                "owned": d["owned"],
                "supporting": d["supporting"],
                **roles.get(d["code"], {}),
            }
            for d in data.departments
        ]
        rows.append(
            {
                "department_name": "participating_units",
                **{item["code"]: item["unit_count"] for item in data.items},
            }
        )
        columns = [
            Column("department_code", "Mã cơ quan", "Department code"),
            Column("department_name", "Cơ quan", "Department"),
            Column("owned", "Số nhiệm vụ chủ trì", "Items owned", Kind.INT),
            Column("supporting", "Số nhiệm vụ phối hợp", "Items supported", Kind.INT),
            *(Column(code) for code in codes),
        ]
        title = Tr("Ma trận trách nhiệm (cơ quan × nhiệm vụ)", "Responsibility matrix")
        return _export(request, out, lang, title, columns, rows, "matrix", key_columns=2)
    return MatrixRead.model_validate(
        {"departments": data.departments, "items": data.items, "cells": data.cells}
    )


ROADMAP_COLUMNS = [
    Column("kind", "Loại dòng", "Row"),
    Column("phase_code", "Giai đoạn", "Phase"),
    Column("sector", "Lĩnh vực", "Sector"),
    Column("item_code", "Mã nhiệm vụ", "Item code"),
    Column("name", "Tên", "Name"),
    Column("owner_department_code", "Cơ quan chủ trì", "Owner department"),
    Column("start_date", "Bắt đầu", "Start", Kind.DATE),
    Column("end_date", "Kết thúc / hạn", "End / due", Kind.DATE),
    Column("done_date", "Hoàn thành", "Done", Kind.DATE),
    Column("status", "Trạng thái", "Status"),
    Column("progress", "Tiến độ", "Progress", Kind.PERCENT),
    Column("late", "Chậm", "Late", Kind.BOOL),
    Column("days_late", "Số ngày chậm", "Days late", Kind.INT),
]


@router.get(
    "/roadmap",
    summary="Roadmap: items and milestones by phase and sector (for a Gantt chart)",
    response_model=RoadmapRead,
    responses=EXPORT_RESPONSES,
)
def roadmap(
    request: Request,
    session: SessionDep,
    _principal: Reader,
    today: Today,
    phase: PhaseFilter = None,
    sector: SectorFilter = None,
    department: DepartmentFilter = None,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """Return each phase's items grouped by sector, with start/end dates and milestones.

    CSV: one row per item (kind `item`) followed by its milestones (kind `milestone`, due date
    as end date).
    """
    data = service.get_roadmap(
        session=session, today=today, phase_code=phase, sector=sector, department_code=department
    )
    stats = service.get_item_stats(
        session=session, item_ids=[i.id for _, items in data for i, _ in items], today=today
    )
    phases: list[RoadmapPhase] = []
    for phase_row, items in data:
        sectors: dict[str, list[RoadmapItem]] = {}
        for item, milestones in items:
            days = stats[item.id].days_late
            sectors.setdefault(item.sector, []).append(
                RoadmapItem(
                    id=item.id,
                    code=item.code,
                    name=item.name,
                    name_en=item.name_en,
                    owner_department_code=item.owner_department_code,
                    status=item.status,
                    progress=item.progress,
                    start_date=item.start_date,
                    end_date=item.end_date,
                    late=days is not None,
                    days_late=days,
                    milestones=[_milestone_read(m, item, today) for m in milestones],
                )
            )
        phases.append(
            RoadmapPhase(
                code=phase_row.code,
                name=phase_row.name,
                name_en=phase_row.name_en,
                start_year=phase_row.start_year,
                end_year=phase_row.end_year,
                start_date=date(phase_row.start_year, 1, 1),
                end_date=date(phase_row.end_year, 12, 31),
                sectors=[RoadmapSector(sector=s, items=v) for s, v in sectors.items()],
            )
        )
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        rows: list[dict[str, Any]] = []
        for p in phases:
            for s in p.sectors:
                for i in s.items:
                    common = {"phase_code": p.code, "sector": s.sector, "item_code": i.code}
                    rows.append(
                        {
                            **common,
                            **i.model_dump(),
                            "kind": "item",
                        }
                    )
                    rows.extend(
                        {
                            **common,
                            "kind": "milestone",
                            "name": m.name,
                            "owner_department_code": i.owner_department_code,
                            "end_date": m.due_date,
                            "done_date": m.done_date,
                            "late": m.late,
                            "days_late": m.days_late,
                        }
                        for m in i.milestones
                    )
        title = Tr("Lộ trình thực hiện", "Roadmap")
        return _export(request, out, lang, title, ROADMAP_COLUMNS, rows, "roadmap", key_columns=4)
    return RoadmapRead(as_of=today, phases=phases)


BUDGET_COLUMNS = [
    Column("scope", "Phạm vi", "Scope"),
    Column("phase_code", "Giai đoạn", "Phase"),
    Column("year", "Năm", "Year", Kind.INT),
    Column("allocated_recurrent", "Bố trí – thường xuyên", "Allocated – recurrent", Kind.MONEY),
    Column("allocated_investment", "Bố trí – đầu tư", "Allocated – investment", Kind.MONEY),
    Column("allocated_total", "Bố trí – tổng", "Allocated – total", Kind.MONEY),
    Column("disbursed_recurrent", "Giải ngân – thường xuyên", "Disbursed – recurrent", Kind.MONEY),
    Column("disbursed_investment", "Giải ngân – đầu tư", "Disbursed – investment", Kind.MONEY),
    Column("disbursed_total", "Giải ngân – tổng", "Disbursed – total", Kind.MONEY),
    Column("recurrent_share_pct", "Tỷ lệ thường xuyên", "Recurrent share", Kind.PERCENT),
    Column("investment_share_pct", "Tỷ lệ đầu tư", "Investment share", Kind.PERCENT),
    Column("planned_recurrent_pct", "Kế hoạch thường xuyên", "Planned recurrent", Kind.PERCENT),
    Column("planned_investment_pct", "Kế hoạch đầu tư", "Planned investment", Kind.PERCENT),
    Column(
        "recurrent_variance_pp",
        "Chênh lệch thường xuyên (điểm %)",
        "Recurrent variance (pp)",
        Kind.FLOAT,
    ),
    Column(
        "investment_variance_pp",
        "Chênh lệch đầu tư (điểm %)",
        "Investment variance (pp)",
        Kind.FLOAT,
    ),
    Column("disbursement_rate_pct", "Tỷ lệ giải ngân", "Disbursement rate", Kind.PERCENT),
    Column(
        "recurrent_disbursement_rate_pct",
        "Tỷ lệ giải ngân thường xuyên",
        "Recurrent disbursement rate",
        Kind.PERCENT,
    ),
    Column(
        "investment_disbursement_rate_pct",
        "Tỷ lệ giải ngân đầu tư",
        "Investment disbursement rate",
        Kind.PERCENT,
    ),
]


@router.get(
    "/budget",
    summary="Budget by source per phase and year against the planned 40/60 split",
    response_model=BudgetRead,
    responses=EXPORT_RESPONSES,
)
def budget(
    request: Request,
    session: SessionDep,
    _principal: Reader,
    phase: PhaseFilter = None,
    sector: SectorFilter = None,
    department: Annotated[
        str | None,
        Query(
            max_length=32,
            pattern=r"^[A-Z][A-Z0-9_]{0,31}$",
            description="Items this department owns.",
        ),
    ] = None,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """Allocated and disbursed by source (recurrent / development investment), the actual
    share against the phase's planned split with the variance in percentage points, and the
    disbursement rate; lines disbursed above their allocation are listed as warnings.

    CSV: one row per phase and year, one per phase total, and one overall.
    """
    data = service.get_budget_split(
        session=session, phase_code=phase, sector=sector, department_code=department
    )
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        rows = [row for p in data.phases for row in (*p["years"], p["total"])]
        rows.append(data.overall)
        for row in rows:
            # The chart's category: "P1 2025", "P1", or the overall line.
            label = " ".join(str(row.get(k) or "") for k in ("phase_code", "year")).strip()
            row.setdefault("label", label or str(row.get("scope")))
        title = Tr("Kinh phí theo nguồn và giai đoạn", "Budget by source and phase")
        chart = (
            "label",
            ["allocated_total", "disbursed_total"],
            Tr("Bố trí và giải ngân (đồng)", "Allocated and disbursed (VND)"),
            "VND",
        )
        return _export(
            request,
            out,
            lang,
            title,
            BUDGET_COLUMNS,
            rows,
            "budget",
            key_columns=3,
            chart=chart,
            chart_rows=lambda row: row.get("scope") == "year",  # totals would dwarf the years
        )
    return BudgetRead.model_validate(
        {"phases": data.phases, "overall": data.overall, "warnings": data.warnings}
    )


LATE_COLUMNS = [
    Column("item_code", "Mã nhiệm vụ", "Item code"),
    Column("name", "Nhiệm vụ", "Item"),
    Column("phase_code", "Giai đoạn", "Phase"),
    Column("sector", "Lĩnh vực", "Sector"),
    Column("owner_department_code", "Cơ quan chủ trì", "Owner department"),
    Column("status", "Trạng thái", "Status"),
    Column("progress", "Tiến độ", "Progress", Kind.PERCENT),
    Column("milestone", "Mốc", "Milestone"),
    Column("due_date", "Hạn", "Due", Kind.DATE),
    Column("days_late", "Số ngày chậm", "Days late", Kind.INT),
]


@router.get(
    "/late",
    summary="Items late against their milestones",
    response_model=LateRead,
    responses=EXPORT_RESPONSES,
)
def late_items(
    request: Request,
    session: SessionDep,
    _principal: Reader,
    today: Today,
    phase: PhaseFilter = None,
    sector: SectorFilter = None,
    department: DepartmentFilter = None,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """Open items (not done, not cancelled) with milestones past due and not done, most
    overdue first. CSV: one row per late milestone."""
    data = service.get_late(
        session=session, today=today, phase_code=phase, sector=sector, department_code=department
    )
    items = [
        LateItem(
            id=item.id,
            code=item.code,
            name=item.name,
            name_en=item.name_en,
            phase_code=item.phase_code,
            sector=item.sector,
            owner_department_code=item.owner_department_code,
            status=item.status,
            progress=item.progress,
            days_late=max(days for _, days in milestones),
            milestones=[
                LateMilestone(
                    id=m.id, name=m.name, name_en=m.name_en, due_date=m.due_date, days_late=days
                )
                for m, days in milestones
            ],
        )
        for item, milestones in data
    ]
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        rows = [
            {
                **item.model_dump(exclude={"milestones", "days_late"}),
                "item_code": item.code,
                "milestone": m.name,
                "due_date": m.due_date,
                "days_late": m.days_late,
            }
            for item in items
            for m in item.milestones
        ]
        title = Tr("Nhiệm vụ chậm so với mốc", "Items late against their milestones")
        return _export(request, out, lang, title, LATE_COLUMNS, rows, "late", key_columns=2)
    return LateRead(as_of=today, items=items)


PROGRESS_COLUMNS = [
    Column("key", "Mã", "Key"),
    Column("name", "Nhóm", "Group"),
    Column("items", "Số nhiệm vụ", "Items", Kind.INT),
    Column("planned", "Kế hoạch", "Planned", Kind.INT),
    Column("in_progress", "Đang thực hiện", "In progress", Kind.INT),
    Column("done", "Hoàn thành", "Done", Kind.INT),
    Column("delayed", "Tạm dừng", "Delayed", Kind.INT),
    Column("cancelled", "Hủy", "Cancelled", Kind.INT),
    Column("late", "Chậm", "Late", Kind.INT),
    Column("mean_progress", "Tiến độ bình quân", "Mean progress", Kind.PERCENT),
    Column("weighted_progress", "Tiến độ theo kinh phí", "Budget-weighted progress", Kind.PERCENT),
    Column("allocated", "Kinh phí bố trí (đồng)", "Allocated (VND)", Kind.MONEY),
    Column("disbursed", "Đã giải ngân (đồng)", "Disbursed (VND)", Kind.MONEY),
]


@router.get(
    "/progress",
    summary="Progress per sector or per owner department",
    response_model=ProgressRead,
    responses=EXPORT_RESPONSES,
)
def progress(
    request: Request,
    session: SessionDep,
    _principal: Reader,
    today: Today,
    by: ProgressBy = ProgressBy.SECTOR,
    phase: PhaseFilter = None,
    fmt: FormatQuery = None,
    lang: LangQuery = None,
) -> Any:
    """Items by status, late items, mean and budget-weighted progress, and money, per group."""
    groups = service.get_progress(session=session, today=today, by=by, phase_code=phase)
    out = tables.wanted(request, fmt)
    if out is not tables.ExportFormat.JSON:
        by_sector = by is ProgressBy.SECTOR
        title = Tr(
            f"Tiến độ theo {'lĩnh vực' if by_sector else 'cơ quan chủ trì'}",
            f"Progress by {'sector' if by_sector else 'owner department'}",
        )
        chart = (
            "key",
            ["mean_progress", "weighted_progress"],
            Tr("Tiến độ (%)", "Progress (%)"),
            "%",
        )
        return _export(
            request, out, lang, title, PROGRESS_COLUMNS, groups, f"progress-{by}", chart=chart
        )
    return ProgressRead.model_validate({"by": str(by), "as_of": today, "groups": groups})


# --- import ------------------------------------------------------------------------------------


def _read_upload(upload: UploadFile, field: str) -> bytes:
    data = upload.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise Invalid(
            "programme.import.too_large",
            errors=[
                {
                    "field": field,
                    "in": "body",
                    "key": "programme.import.too_large",
                    "params": {"max": MAX_UPLOAD},
                }
            ],
            max=MAX_UPLOAD,
        )
    return data


Upload = Annotated[UploadFile | None, File()]


@router.post(
    "/import",
    summary="Import the programme from a spreadsheet (XLSX workbook or CSV files)",
    response_model=ImportReport,
)
def import_programme(
    session: SessionDep,
    clock: ClockDep,
    translate: TranslatorDep,
    lang: LangDep,
    _principal: Admin,
    workbook: Annotated[
        UploadFile | None,
        File(description="An XLSX workbook with sheets phases, items, budget, milestones."),
    ] = None,
    phases: Upload = None,
    items: Upload = None,
    budget: Upload = None,
    milestones: Upload = None,
    dry_run: Annotated[bool, Query(description="Check and report, write nothing.")] = False,
) -> ImportReport:
    """Import phases, items, budget lines and milestones, all or nothing.

    Sheets (or CSV files), with English or Vietnamese names and headers:
    **phases** (code, name, name_en, description, start_year, end_year, planned_recurrent_pct,
    planned_investment_pct); **items** (code, name, name_en, description, phase, sector, owner,
    supporting, units (unit or area codes), status, progress, start_date, end_date);
    **budget** (item, year, source: recurrent | investment, allocated, disbursed, in whole VND);
    **milestones** (item, name, name_en, due_date, done_date, weight). Lists are separated by
    `;`; dates are YYYY-MM-DD or DD/MM/YYYY. An item named in the budget (milestones) sheet gets
    exactly the lines (milestones) listed there. Re-importing updates items by code: nothing is
    duplicated. A refused file is a 422 whose `errors` name the sheet, row and column of every
    bad cell; disbursement above allocation is a warning in the report.
    """
    files: list[tuple[str, bytes, str | None]] = []
    if workbook is not None:
        files.append(
            (workbook.filename or "workbook.xlsx", _read_upload(workbook, "workbook"), "workbook")
        )
    for kind, upload in (
        ("phases", phases),
        ("items", items),
        ("budget", budget),
        ("milestones", milestones),
    ):
        if upload is not None:
            files.append((upload.filename or f"{kind}.csv", _read_upload(upload, kind), kind))
    if not files:
        raise Invalid(
            "programme.import.nothing",
            errors=[{"field": "workbook", "in": "body", "key": "programme.import.nothing"}],
        )
    result = flows.import_files(session=session, files=files, clock=clock)
    if dry_run:
        session.rollback()
    return ImportReport(
        dry_run=dry_run,
        rows=result.rows,
        created=ImportCounts(**result.created),
        updated=ImportCounts(**result.updated),
        unchanged=ImportCounts(**result.unchanged),
        deleted=ImportCounts(**result.deleted),
        skipped=ImportCounts(**result.skipped),
        warnings=[
            ImportProblem(
                sheet=w.sheet,
                row=w.row,
                column=w.column,
                message=translate(w.key, lang, **w.params),
                type=w.key,
            )
            for w in result.warnings
        ],
    )
