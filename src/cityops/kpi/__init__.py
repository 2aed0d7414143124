"""KPI engine: the indicator catalogue, computation per unit, area and period, targets, ranking
and the pilot evaluation."""

from __future__ import annotations

from cityops.core.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Register the KPI jobs (hourly recomputation of the running and previous month)."""
    from cityops.kpi import jobs

    jobs.register(runtime)
