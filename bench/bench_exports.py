"""Benchmark: render the largest table the pages export, KPI values of the 95 communes/wards ×
55 indicators for one month (5,225 rows, the columns of GET /kpi/values), as CSV, XLSX and PDF.

The rows are made up in the shape `kpi.api` builds them (codes, Vietnamese indicator and place
names, values, targets, times); no database is needed: what is timed is cityops.core.tables
(openpyxl for XLSX, reportlab with DejaVu Sans for PDF), in-process, one core.
Run: .venv/bin/python bench/bench_exports.py [--repeat N] [--units 95] [--indicators 55]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cityops.core import tables
from cityops.kpi.api import VALUE_COLUMNS

NAMES = ["Phường Trấn Biên", "Phường Long Khánh", "Xã Định Quán", "Phường Bình Phước"]
INDICATORS = ["Nồng độ bụi PM2,5 trung bình", "Tỷ lệ hồ sơ xử lý trước hạn, đúng hạn"]


def rows(units: int, indicators: int) -> list[dict[str, Any]]:
    """One month of values: every indicator for every commune/ward."""
    computed = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)
    out = []
    for i in range(indicators):
        for u in range(units):
            value = None if (i + u) % 11 == 0 else 10.0 + (i * 7 + u * 13) % 900 / 7
            out.append(
                {
                    "indicator_code": f"K{i + 1}",
                    "indicator_name": INDICATORS[i % len(INDICATORS)],
                    "level": "unit",
                    "place_code": f"26{u:03d}",
                    "place_name": f"{NAMES[u % len(NAMES)]} {u}",
                    "period": "M",
                    "period_label": "2026-10",
                    "period_start": date(2026, 10, 1),
                    "value": value,
                    "unit": "%",
                    "target": 80.0,
                    "status": "no_data" if value is None else "met" if value > 80 else "not_met",
                    "computed_at": computed,
                }
            )
    return out


def main() -> None:
    """Render the table in each format and print the times and sizes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--units", type=int, default=95)
    parser.add_argument("--indicators", type=int, default=55)
    args = parser.parse_args()
    table = tables.Table(
        title=tables.Tr("Giá trị chỉ tiêu KPI", "KPI values"),
        columns=VALUE_COLUMNS,
        rows=rows(args.units, args.indicators),
        key_columns=2,
    )
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    fonts = tables.load_fonts(None)
    renderers = {
        "csv": lambda: tables.render_csv(table),
        "xlsx": lambda: tables.render_xlsx(table, lang="vi", zone=zone, now=now),
        "pdf": lambda: tables.render_pdf(table, lang="vi", zone=zone, now=now, fonts=fonts),
    }
    print(f"KPI values table: {len(table.rows):,} rows × {len(table.columns)} columns")
    for name, render in renderers.items():
        walls, cpus, size = [], [], 0
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            body = render()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            size = len(body)
        extra = ""
        if name == "pdf":
            from pypdf import PdfReader

            extra = f", {len(PdfReader(io.BytesIO(body)).pages)} pages"
        print(
            f"  {name:<5} wall median {statistics.median(walls):7.3f} s (min {min(walls):.3f})"
            f"   CPU median {statistics.median(cpus):7.3f} s   {size / 1024:8.0f} KiB{extra}"
            f"   ({args.repeat} runs)"
        )


if __name__ == "__main__":
    main()
