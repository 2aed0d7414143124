"""Scheduled work of the incidents context: the SLA check (breaches and escalation)."""

from __future__ import annotations

import logging

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.incidents import flows

log = logging.getLogger(__name__)


def check_sla(runtime: Runtime) -> int:
    """Mark breached SLA deadlines and escalate, in one transaction; return how many."""
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        breached = flows.check_sla(runtime=runtime, session=session)
    if breached:
        log.info("SLA deadlines breached", extra={"count": breached})
    return breached


def register(runtime: Runtime) -> None:
    """Register the incidents jobs on the runtime's job runner."""
    runtime.jobs.add(flows.SLA_JOB, flows.SLA_EVERY_SECONDS, lambda: _run_check(runtime))


def _run_check(runtime: Runtime) -> None:
    check_sla(runtime)
