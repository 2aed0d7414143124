"""Scheduled work of the KPI context: recompute the running month and the month before.

The previous month is recomputed too because late data (dossiers completed, incidents
resolved, history back-filled) still changes it in the first days of a month.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.kpi import flows
from cityops.kpi.enums import COMPUTE_JOB, Frequency
from cityops.kpi.periods import window

log = logging.getLogger(__name__)

COMPUTE_EVERY_SECONDS = 3600.0


def recompute(runtime: Runtime) -> int:
    """Recompute the current and the previous month; return how many values were written."""
    today = runtime.clock.now().astimezone(ZoneInfo(runtime.settings.timezone)).date()
    current = window(Frequency.MONTH, today, runtime.settings.timezone)
    written = 0
    for day in (current.first - timedelta(days=1), current.first):
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            result = flows.compute(runtime=runtime, session=session, kind=Frequency.MONTH, day=day)
        written += int(result["values"])
    log.info("KPI values recomputed", extra={"values": written})
    return written


def register(runtime: Runtime) -> None:
    """Register the KPI jobs on the runtime's job runner."""
    runtime.jobs.add(COMPUTE_JOB, COMPUTE_EVERY_SECONDS, lambda: recompute(runtime))


def compute_recent(runtime: Runtime, months: int = 6) -> int:
    """Compute the last `months` months, this and the previous quarter, and this year.

    The demo runs it at start so the KPI pages have values and trends before the hourly job
    first runs; return how many values were written. Only the two months the hourly job
    recomputes are published as NGSI-LD entities: publishing is most of the cost.
    """
    tz = runtime.settings.timezone
    today = runtime.clock.now().astimezone(ZoneInfo(tz)).date()
    month = window(Frequency.MONTH, today, tz)
    quarter = window(Frequency.QUARTER, today, tz)
    periods = [(Frequency.MONTH, month.shift(-n, tz).first) for n in range(months - 1, -1, -1)]
    periods += [
        (Frequency.QUARTER, quarter.shift(-1, tz).first),
        (Frequency.QUARTER, quarter.first),
        (Frequency.YEAR, today),
    ]
    published = {(Frequency.MONTH, month.first), (Frequency.MONTH, month.shift(-1, tz).first)}
    written = 0
    for kind, day in periods:
        with unit_of_work(runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            result = flows.compute(
                runtime=runtime,
                session=session,
                kind=kind,
                day=day,
                publish=(kind, day) in published,
            )
        written += int(result["values"])
    log.info("KPI values computed for the demo", extra={"values": written})
    return written
