"""Background jobs: named callables run every N seconds on one thread, with their own transaction.

Jobs receive the runtime; each run is independent, a failing run is logged and retried at the
next tick. Stopping waits for the current run to finish.

With several workers on PostgreSQL every worker registers the same jobs, but a job runs on one
worker only: the `gate` (set by core/fanout.py) lets through the jobs marked `every_worker`
(work on the process's own memory, or safe side by side: the outbox leases its owners) and the
others only on the worker holding the leader lock. So a sweep (device health, SLA breaches,
due dates, KPIs, purges) never runs twice at once, and rules' pending confirmations run where
the rule engine's state is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A periodic task."""

    name: str
    every_seconds: float
    run: Callable[[], object]
    next_at: float = field(default=0.0)
    # Run on every worker (its own memory, or safe concurrently), not on the leader only.
    every_worker: bool = False


class JobRunner:
    """Runs registered jobs on a daemon thread until stopped."""

    def __init__(self, *, tick_seconds: float = 0.2) -> None:
        self._jobs: list[Job] = []
        self._tick = tick_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Whether a job may run in this process now (None: always; set by core/fanout.py).
        self.gate: Callable[[Job], bool] | None = None

    def add(
        self,
        name: str,
        every_seconds: float,
        run: Callable[[], object],
        *,
        every_worker: bool = False,
    ) -> None:
        """Register a job; it first runs one period after start."""
        job = Job(name=name, every_seconds=every_seconds, run=run, every_worker=every_worker)
        self._jobs.append(job)

    @property
    def jobs(self) -> list[str]:
        """The names of the registered jobs."""
        return [job.name for job in self._jobs]

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None:
            return
        now = time.monotonic()
        for job in self._jobs:
            job.next_at = now + job.every_seconds
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cityops-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after the current run."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_due(self, now: float | None = None) -> None:
        """Run every job whose time has come (also used by tests to drive jobs by hand)."""
        now = time.monotonic() if now is None else now
        gate = self.gate
        for job in self._jobs:
            if now >= job.next_at:
                job.next_at = now + job.every_seconds
                if gate is not None and not gate(job):
                    continue  # another worker runs it
                try:
                    job.run()
                except Exception:
                    log.exception("job failed", extra={"job": job.name})

    def _loop(self) -> None:
        while not self._stop.wait(self._tick):
            self.run_due()
