"""Scheduled work of the alerts context: snoozes ending, thresholds whose minimum duration
passed while their value stayed put, and rules changed by another process."""

from __future__ import annotations

import logging

from cityops.alerts import flows
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL

log = logging.getLogger(__name__)

UNSNOOZE_JOB = "alerts.unsnooze"
CONFIRM_JOB = "alerts.confirm_pending"
RULES_JOB = "alerts.rules_watch"
DOSSIERS_JOB = "alerts.settle_dossiers"
EVERY_SECONDS = 30.0


def unsnooze(runtime: Runtime) -> int:
    """Return snoozed alerts whose time is up to open (or acknowledged); return how many."""
    with unit_of_work(runtime.session_factory) as session:
        session.info["actor"] = SYSTEM_PRINCIPAL
        woken = flows.unsnooze_due(runtime=runtime, session=session)
    if woken:
        log.info("alerts unsnoozed", extra={"count": woken})
    return woken


def confirm_pending(runtime: Runtime) -> int:
    """Open the thresholds that have held for their minimum duration; return how many."""
    return flows.engine_of(runtime).confirm_pending()


def watch_rules(runtime: Runtime) -> bool:
    """Reload the engine if the stored rules changed elsewhere (the command line, a peer)."""
    return flows.engine_of(runtime).check_rules()


def settle_dossiers(runtime: Runtime) -> int:
    """Re-check dossiers with unresolved due-date alerts (closed, or given a later date)."""
    with unit_of_work(runtime.session_factory) as session:
        return flows.settle_dossiers(runtime=runtime, session=session)


def register(runtime: Runtime) -> None:
    """Register the alerts jobs on the runtime's job runner."""
    runtime.jobs.add(UNSNOOZE_JOB, EVERY_SECONDS, lambda: unsnooze(runtime))
    runtime.jobs.add(CONFIRM_JOB, EVERY_SECONDS, lambda: confirm_pending(runtime))
    # Each worker's engine follows the stored rules (the leader evaluates, any may take over).
    runtime.jobs.add(RULES_JOB, EVERY_SECONDS, lambda: watch_rules(runtime), every_worker=True)
    runtime.jobs.add(DOSSIERS_JOB, 300.0, lambda: settle_dossiers(runtime))
