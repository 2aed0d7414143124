"""Fixtures of the programme tests: an administrator, a small programme whose views are worked
out by hand (the seeded demo programme is removed first), and workbook builders."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.programme import service
from cityops.programme.models import (
    ProgrammeBudget,
    ProgrammeItem,
    ProgrammeItemDepartment,
    ProgrammeItemUnit,
    ProgrammeMilestone,
    ProgrammePhase,
)
from cityops.programme.schemas import ItemCreate, PhaseCreate

API = "/api/v1/programme"
BN = 1_000_000_000  # one billion đồng

# The small programme (amounts in billions of đồng). Judged on 2026-11-20 (the test clock).
PHASES = [
    {"code": "P1", "name": "Giai đoạn 1", "start_year": 2024, "end_year": 2026},
    {
        "code": "P2",
        "name": "Giai đoạn 2",
        "start_year": 2027,
        "end_year": 2028,
        "planned_recurrent_pct": 30,
        "planned_investment_pct": 70,
    },
]
ITEMS: list[dict[str, Any]] = [
    {
        "code": "A",
        "name": "Trung tâm điều hành y tế",
        "phase_code": "P1",
        "sector": "health",
        "owner_department_code": "SYT",
        "supporting_department_codes": ["SKHCN", "SNV"],
        "unit_codes": ["26041", "26068"],
        "status": "in_progress",
        "progress": 50,
        "start_date": "2024-01-01",
        "end_date": "2026-12-31",
        "budget": [
            {"year": 2024, "source": "recurrent", "allocated": 400, "disbursed": 400},
            {"year": 2024, "source": "investment", "allocated": 600, "disbursed": 500},
            # Carried-over funds: disbursed above the allocation (a warning, not an error).
            {"year": 2025, "source": "recurrent", "allocated": 100, "disbursed": 150},
        ],
        "milestones": [
            {"name": "Bảng điều hành", "due_date": "2026-10-01"},  # 50 days late
            {"name": "Kết nối bệnh viện", "due_date": "2026-11-19", "done_date": "2026-11-18"},
            {"name": "Vận hành", "due_date": "2026-12-31"},  # not yet due
        ],
    },
    {
        "code": "B",
        "name": "Nền tảng LGSP",
        "phase_code": "P1",
        "sector": "egov",
        "owner_department_code": "SKHCN",
        "supporting_department_codes": ["SYT"],
        "unit_codes": ["26080"],
        "status": "delayed",
        "progress": 30,
        "budget": [{"year": 2025, "source": "investment", "allocated": 900, "disbursed": 450}],
        "milestones": [
            {"name": "Kết nối NDXP", "due_date": "2026-06-30"},  # 143 days late
            {"name": "Kết nối sở, ngành", "due_date": "2026-09-30"},  # 51 days late
        ],
    },
    {
        "code": "C",
        "name": "Wifi công cộng",
        "phase_code": "P1",
        "sector": "egov",
        "owner_department_code": "SKHCN",
        "status": "done",
        "progress": 100,
        "budget": [{"year": 2026, "source": "recurrent", "allocated": 600, "disbursed": 600}],
        # Past due and not ticked, but the item is done: not late.
        "milestones": [{"name": "Lắp đặt", "due_date": "2025-01-01"}],
    },
    {
        "code": "D",
        "name": "Camera giao thông",
        "phase_code": "P2",
        "sector": "transport",
        "owner_department_code": "SXD",
        "status": "cancelled",
        "progress": 0,
        # Past due, but the item is cancelled: not late.
        "milestones": [{"name": "Khảo sát", "due_date": "2026-03-01"}],
    },
    {
        "code": "E",
        "name": "Trung tâm điều hành giao thông",
        "phase_code": "P2",
        "sector": "transport",
        "owner_department_code": "SXD",
        "status": "planned",
        "progress": 0,
        "start_date": "2027-01-01",
        "end_date": "2028-12-31",
        "budget": [
            {"year": 2027, "source": "recurrent", "allocated": 300, "disbursed": 0},
            {"year": 2027, "source": "investment", "allocated": 700, "disbursed": 0},
        ],
        "milestones": [{"name": "Phê duyệt", "due_date": "2027-03-01"}],
    },
]


def in_billions(item: dict[str, Any]) -> dict[str, Any]:
    """An item body with its budget amounts turned from billions into đồng."""
    lines = [
        {**line, "allocated": line["allocated"] * BN, "disbursed": line["disbursed"] * BN}
        for line in item.get("budget", [])
    ]
    return {**item, "budget": lines}


def wipe(session: Session) -> None:
    """Remove every programme row (the seeded demo programme included)."""
    for model in (
        ProgrammeMilestone,
        ProgrammeBudget,
        ProgrammeItemUnit,
        ProgrammeItemDepartment,
        ProgrammeItem,
        ProgrammePhase,
    ):
        session.execute(delete(model))


@pytest.fixture
def admin(login_as: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Bearer headers of a global administrator."""
    return login_as("admin")


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    """A session on the test's database; its work is rolled back at the end."""
    db = runtime.session_factory()
    try:
        yield db
    finally:
        db.rollback()
        db.close()


@pytest.fixture
def empty_programme(runtime: Runtime) -> None:
    """A database without any programme rows."""
    with unit_of_work(runtime.session_factory) as db:
        db.info["actor"] = SYSTEM_PRINCIPAL
        wipe(db)


@pytest.fixture
def known(runtime: Runtime, empty_programme: None) -> None:
    """The small programme above, instead of the seeded one."""
    with unit_of_work(runtime.session_factory) as db:
        db.info["actor"] = SYSTEM_PRINCIPAL
        for phase in PHASES:
            service.create_phase(session=db, phase_in=PhaseCreate(**phase), clock=runtime.clock)
        for item in ITEMS:
            service.create(
                session=db,
                item_in=ItemCreate.model_validate(in_billions(item)),
                clock=runtime.clock,
            )


@pytest.fixture
def count(runtime: Runtime) -> Callable[[type[Any]], int]:
    """Count the rows of a table."""

    def counter(model: type[Any]) -> int:
        with runtime.session_factory() as db:
            return int(db.scalar(select(func.count()).select_from(model)) or 0)

    return counter


def workbook(sheets: dict[str, list[list[Any]]]) -> bytes:
    """An XLSX workbook with these sheets (name → rows, the first row the header)."""
    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
