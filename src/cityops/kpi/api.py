"""Routes of the KPI engine under /api/v1/kpi: the catalogue (CRUD), the input registry,
computed values (JSON or CSV), on-demand computation, ranking of units and the pilot evaluation
(JSON or CSV).

Reading needs kpi:read (every role holds it: KPIs are province-wide figures); changing the
catalogue and recomputing need kpi:admin.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from cityops.core.deps import ClockDep, Limit, Offset, RuntimeDep, SessionDep
from cityops.core.security import Permission, Principal, require
from cityops.kpi import flows, formula, inputs, service
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
    ValuePage,
    ValueRead,
)
from cityops.programme.api import CSV_RESPONSE, FormatQuery, csv_response, wants_csv

router = APIRouter(prefix="/kpi", tags=["kpi"])

Reader = Annotated[Principal, Depends(require(Permission.KPI_READ))]
Admin = Annotated[Principal, Depends(require(Permission.KPI_ADMIN))]
CodePath = Annotated[str, Path(min_length=1, max_length=16, pattern=CODE_PATTERN)]
CodeQuery = Annotated[str, Query(min_length=1, max_length=16, pattern=CODE_PATTERN)]
PlaceCode = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.-]{1,64}$")]
Day = Annotated[date, Query(ge=date(2000, 1, 1), le=date(2100, 12, 31))]
KNOWN = list(inputs.INPUTS)

VALUE_COLUMNS = [
    "indicator_code",
    "level",
    "place_code",
    "period",
    "period_label",
    "period_start",
    "value",
    "target",
    "status",
    "computed_at",
]
EVALUATION_COLUMNS = [
    "indicator_code",
    "name",
    "name_en",
    "unit",
    "direction",
    "pilot_before",
    "pilot_after",
    "control_before",
    "control_after",
    "pilot_change",
    "control_change",
    "did",
    "improved",
]


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


# --- values -------------------------------------------------------------------------------


@router.get("/values", response_model=ValuePage, responses=CSV_RESPONSE)
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
) -> Any:
    """List computed values (filters: indicator, sector, level, place, period kind, dates).

    `start`/`end` bound the periods' first days; CSV holds every matching row.
    """
    csv_wanted = wants_csv(request, fmt)
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
        limit=None if csv_wanted else limit,
        offset=0 if csv_wanted else offset,
    )
    reads = [ValueRead.model_validate(r) for r in rows]
    if csv_wanted:
        return csv_response(
            VALUE_COLUMNS, (r.model_dump(mode="json") for r in reads), "kpi-values.csv"
        )
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


@router.get("/ranking", response_model=RankingRead)
def ranking(
    session: SessionDep,
    _: Reader,
    indicator: CodeQuery,
    day: Day,
    period: Frequency = Frequency.MONTH,
) -> RankingRead:
    """Rank the communes/wards on one indicator for the period containing `day`, best first."""
    found = service.get_or_raise(session=session, code=indicator)
    first = first_day(period, day)
    rows = flows.rank(session=session, indicator=found, kind=period, first=first)
    label = window(period, first, "UTC").label
    return RankingRead(
        indicator_code=found.code,
        direction=found.direction,
        period=period.value,
        period_label=label,
        items=[RankRow(**r) for r in rows],
    )


@router.get("/evaluation", response_model=EvaluationRead, responses=CSV_RESPONSE)
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
) -> Any:
    """Pilot evaluation: pilot areas (former Biên Hòa, Long Khánh) against the rest of the
    province, before and after `go_live`, as a difference-in-differences table.

    `indicator` picks indicators (default: every active one). CSV has one row per indicator.
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
    if wants_csv(request, fmt):
        return csv_response(
            EVALUATION_COLUMNS,
            (r.model_dump(mode="json") for r in read.rows),
            f"kpi-pilot-evaluation-{go_live.isoformat()}.csv",
        )
    return read
