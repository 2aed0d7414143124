"""Citizen reports (phản ánh hiện trường): the service catalogue, reports routed to a commune or
ward and a department as incidents, the Open311 GeoReport v2 API, tracking, rating and the
protection of reporters' personal data."""

from __future__ import annotations

from cityops.core.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Follow incidents back to their reports (bus wiring; called from build_runtime)."""
    from cityops.citizen import flows

    flows.install(runtime)


def register_jobs(runtime: Runtime) -> None:
    """Register the retention job that erases expired personal data (called from create_app)."""
    from cityops.citizen import flows

    flows.register_jobs(runtime)
