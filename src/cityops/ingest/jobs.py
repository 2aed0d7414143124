"""Scheduled work of the ingest context: device health."""

from __future__ import annotations

import logging

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.ingest import flows

log = logging.getLogger(__name__)


def device_health(runtime: Runtime) -> int:
    """Mark silent devices offline in one transaction; return how many went offline."""
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        offline = flows.check_device_health(runtime=runtime, session=session)
    if offline:
        log.info("devices went offline", extra={"count": len(offline)})
    return len(offline)


def register(runtime: Runtime) -> None:
    """Register the ingest jobs on the runtime's job runner."""
    runtime.jobs.add(flows.HEALTH_JOB, flows.HEALTH_EVERY_SECONDS, lambda: _run_health(runtime))


def _run_health(runtime: Runtime) -> None:
    device_health(runtime)
