"""Group commit of citizen reports: the reports that arrive together are written in one
transaction (one commit, one fsync, one turn of SQLite's write lock) and with one statement per
table for all of them, instead of a transaction and a dozen statements each.

A request first plans its report (`flows.plan_report`: every check, the unit, the department,
duplicates; reads only, so a bad report gets its 4xx before it waits for anything), then hands
the plan to the process's `ReportWriter` and waits. Whoever finds the writer idle becomes the
leader: it takes every waiting plan (up to `MAX_BATCH`), writes them all with
`flows.write_reports`, runs each job's `finish` (the public page stores its photos there) and
commits once; then it hands leadership to the first job still waiting, so no request writes
more than one batch. A request returns after its batch's commit, so a 201 still means
committed. If the batch fails (nothing of it is then written), each job is written again alone,
so only a job that fails alone gets the error. A batch of one is the same path: there is no
second way to take a report in.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from cityops.citizen import flows
from cityops.core.db import begin_writing
from cityops.core.runtime import Runtime
from cityops.incidents import service as incident_service

MAX_BATCH = 64
_CACHE_KEY = "citizen.writer"


@dataclass(slots=True)
class _Job:
    plan: flows.Plan
    finish: Callable[[Session, flows.Created], Any] | None
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class ReportWriter:
    """Runs jobs that write reports in shared transactions, one batch at a time."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._lock = threading.Lock()
        self._waiting: deque[_Job] = deque()
        self._writing = False
        # Figures for benchmarks and tests: batches written and jobs in them.
        self.batches = 0
        self.jobs = 0

    def waiting(self) -> int:
        """Return how many jobs wait for a batch."""
        with self._lock:
            return len(self._waiting)

    def run(
        self,
        plan: flows.Plan,
        *,
        finish: Callable[[Session, flows.Created], Any] | None = None,
    ) -> Any:
        """Write a planned report in the next batch; return what `finish(session, created)`
        returns (or the `Created` report) once that batch committed, or raise its own error
        (nothing of it written)."""
        job = _Job(plan=plan, finish=finish)
        with self._lock:
            self._waiting.append(job)
            if not self._writing:
                self._writing = job.lead = True
        while True:
            if job.lead:
                self._lead()
            if job.done:
                break
            job.wake.wait()
            job.wake.clear()
        if job.error is not None:
            raise job.error
        return job.result

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the writer busy meanwhile: reports that arrive wait, then are written together
        as one batch (tests; a pause for maintenance)."""
        with self._lock:
            while self._writing:
                self._lock.release()
                time.sleep(0.001)
                self._lock.acquire()
            self._writing = True
        try:
            yield
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        # The first job still waiting leads the next batch; none: the writer is idle.
        with self._lock:
            if self._waiting:
                successor = self._waiting[0]
                successor.lead = True
                successor.wake.set()
            else:
                self._writing = False

    def run_batch(self, plans: list[flows.Plan]) -> list[Any]:
        """Write `plans` as one batch now (benchmarks): each one's `Created`, or its error."""
        jobs = [_Job(plan=plan, finish=None) for plan in plans]
        self._write(jobs)
        return [job.error if job.error is not None else job.result for job in jobs]

    def _lead(self) -> None:
        with self._lock:
            batch = [self._waiting.popleft() for _ in range(min(MAX_BATCH, len(self._waiting)))]
        try:
            self._write(batch)
        except BaseException as exc:
            for job in batch:  # interrupted: nobody waits for a result that will not come
                if job.error is None:
                    job.error, job.result = exc, None
            raise
        finally:
            self._hand_over()
            for job in batch:
                job.lead = False
                job.done = True
                job.wake.set()

    def _write(self, batch: list[_Job]) -> None:
        """Write a batch in one transaction; if it fails, write each job alone."""
        session = self._runtime.session_factory()
        try:
            begin_writing(session)
            # Incident codes are counted up for the whole batch at once.
            incident_service.expect_codes(session=session, count=len(batch))
            created = flows.write_reports(
                runtime=self._runtime, session=session, plans=[job.plan for job in batch]
            )
            for job, report in zip(batch, created, strict=True):
                if job.finish is None:
                    job.result = report
                    continue
                # What it writes is audited as done by its own request.
                session.info["request"] = job.plan.request
                job.result = job.finish(session, report)
                session.flush()
            session.info.pop("request", None)
            session.commit()
            self.batches += 1
            self.jobs += len(batch)
        except Exception as exc:  # noqa: BLE001 - each job is tried alone, to find the culprit
            session.rollback()
            for job in batch:
                job.result = None
            if len(batch) == 1:
                batch[0].error = exc
                return
            for job in batch:
                self._write([job])
        finally:
            session.close()


def writer_of(runtime: Runtime) -> ReportWriter:
    """Return this process's report writer (one per runtime)."""
    writer = runtime.caches.get(_CACHE_KEY)
    if writer is None:
        writer = runtime.caches.setdefault(_CACHE_KEY, ReportWriter(runtime))
    assert isinstance(writer, ReportWriter)
    return writer
