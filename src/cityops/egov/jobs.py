"""Scheduled work of the egov context: announce dossiers about to pass, or past, their due date."""

from __future__ import annotations

import logging

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.egov import flows
from cityops.egov.enums import DUE_JOB

log = logging.getLogger(__name__)

DUE_EVERY_SECONDS = 300.0


def check_due_dates(runtime: Runtime) -> dict[str, int]:
    """Announce newly due-soon and newly overdue dossiers in one transaction; return the counts."""
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        counts = flows.announce_due(runtime=runtime, session=session)
    if any(counts.values()):
        log.info("dossier due dates announced", extra=counts)
    return counts


def register(runtime: Runtime) -> None:
    """Register the egov jobs on the runtime's job runner."""
    runtime.jobs.add(DUE_JOB, DUE_EVERY_SECONDS, lambda: check_due_dates(runtime))
