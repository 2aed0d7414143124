"""Benchmark: the programme import and the board's views at a province-and-beyond size.

Creates a temporary SQLite database (migrated and seeded with the Đồng Nai profile), builds an
XLSX workbook of ITEMS items (8 budget lines and 3 milestones each) and times: reading and
checking the workbook, the first import, a re-import that changes nothing, and each view
(matrix, roadmap, budget split, late items, progress) computed by the service.
Run: .venv/bin/python bench/bench_programme.py [ITEMS]
"""

from __future__ import annotations

import io
import itertools
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from cityops.app import build_runtime
from cityops.core import migrate
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.programme import flows, service
from cityops.programme.enums import ProgressBy
from cityops.seed import seed

SECRET = secrets.token_urlsafe(48)
TODAY = date(2026, 11, 20)
SECTORS = [
    ("health", "SYT"), ("education", "SGDDT"), ("transport", "SXD"), ("environment", "SNNMT"),
    ("construction", "SXD"), ("social_security", "SNV"), ("public_order", "CAT"),
    ("egov", "SKHCN"),
]  # fmt: skip


def build_workbook(items: int) -> bytes:
    """An XLSX workbook of `items` items in phase 2026-2030 with budget lines and milestones."""
    book = Workbook(write_only=True)
    item_sheet = book.create_sheet("items")
    item_sheet.append(["code", "name", "phase", "sector", "owner", "supporting", "units",
                       "status", "progress", "start_date", "end_date"])  # fmt: skip
    budget = book.create_sheet("budget")
    budget.append(["item", "year", "source", "allocated", "disbursed"])
    milestones = book.create_sheet("milestones")
    milestones.append(["item", "name", "due_date", "done_date"])
    for n in range(items):
        code = f"BX-{n:05d}"
        sector, owner = SECTORS[n % len(SECTORS)]
        item_sheet.append(
            [
                code,
                f"Hạng mục thử {n}",
                "2026-2030",
                sector,
                owner,
                "VPUBND",
                "bien-hoa-cu",
                "in_progress",
                n % 100,
                "2026-01-01",
                "2029-12-31",
            ]
        )
        for year in range(2026, 2030):
            allocated = (n % 50 + 1) * 1_000_000_000
            budget.append([code, year, "recurrent", allocated * 2 // 5, allocated // 10])
            budget.append([code, year, "investment", allocated * 3 // 5, allocated // 5])
        for k, due in enumerate(("2026-06-30", "2026-12-31", "2028-06-30")):
            done = "2026-06-20" if k == 0 and n % 3 else None
            milestones.append([code, f"Mốc {k + 1}", due, done])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def timed(label: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    print(f"  {label:<38} {1000 * (time.perf_counter() - start):9.1f} ms")
    return result


def main() -> None:
    """Print import and view timings."""
    # 1,250 items make 10,000 budget lines: the most one sheet may hold.
    items = min(int(sys.argv[1]) if len(sys.argv) > 1 else 1250, 1250)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        runtime = build_runtime(
            Settings(
                database_url=f"sqlite:///{data_dir / 'bench.db'}",
                data_dir=data_dir,
                secret_key=SECRET,
            )
        )
        migrate.upgrade(runtime.engine)
        seed(runtime)
        data = build_workbook(items)
        print(
            f"programme: {items} items, {items * 8} budget lines, {items * 3} milestones "
            f"(workbook {len(data) / 1024:.0f} KiB), SQLite"
        )
        files: list[tuple[str, bytes, str | None]] = [("plan.xlsx", data, "workbook")]

        def run_import() -> flows.ImportResult:
            stamps: list[tuple[str, float]] = []
            with unit_of_work(runtime.session_factory) as session:
                session.info["actor"] = SYSTEM_PRINCIPAL
                result = flows.import_files(
                    session=session,
                    files=files,
                    clock=runtime.clock,
                    progress=lambda stage: stamps.append((stage, time.perf_counter())),
                )
            stamps.append(("commit", time.perf_counter()))
            steps = ", ".join(
                f"{stage} {1000 * (end - start):.0f} ms"
                for (stage, start), (_, end) in itertools.pairwise(stamps)
            )
            print(f"    ({steps})")
            return result

        first = timed("first import (read, check, write)", run_import)
        assert first.created["items"] == items
        again = timed("re-import, nothing changed", run_import)
        assert again.unchanged["items"] == items
        with runtime.session_factory() as session:
            timed("matrix", lambda: service.get_matrix(session=session))
            timed("roadmap", lambda: service.get_roadmap(session=session, today=TODAY))
            timed("budget split", lambda: service.get_budget_split(session=session))
            late = timed("late items", lambda: service.get_late(session=session, today=TODAY))
            timed(
                "progress by sector",
                lambda: service.get_progress(session=session, today=TODAY, by=ProgressBy.SECTOR),
            )
            page, _ = timed(
                "items page (50) with totals",
                lambda: service.get_all(session=session, today=TODAY, limit=50),
            )
            timed(
                "item stats for that page",
                lambda: service.get_item_stats(
                    session=session, item_ids=[i.id for i in page], today=TODAY
                ),
            )
        print(f"  late items found: {len(late)}")
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
