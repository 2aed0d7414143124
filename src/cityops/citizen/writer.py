"""Group commit of citizen reports: the reports that arrive together are written in one
transaction (one commit, one fsync, one turn of SQLite's write lock) instead of one each.

A request hands its work (a function of a session) to the process's `ReportWriter` and waits.
Whoever finds the writer idle becomes the leader: it takes every waiting job (up to
`MAX_BATCH`), runs each in its own savepoint inside one transaction and commits once; then it
hands leadership to the first job still waiting, so no request writes more than one batch. A
job that fails rolls back its savepoint only: it gets its own error, the others commit. A
request returns after its batch's commit, so a 201 still means committed. A batch of one is
the same path: there is no second way to take a report in.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from cityops.core.db import begin_writing
from cityops.core.runtime import Runtime
from cityops.incidents import service as incident_service

MAX_BATCH = 64
_EVENTS = "pending_events"  # cityops.core.events: what the session publishes after its commit
_CACHE_KEY = "citizen.writer"


@dataclass(slots=True)
class _Job:
    work: Callable[[Session], Any]
    request: Any
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

    def run(self, work: Callable[[Session], Any], *, request: Any = None) -> Any:
        """Run `work(session)` in the next batch; return its result once that batch committed,
        or raise its own error (nothing of it written)."""
        job = _Job(work=work, request=request)
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

    def run_batch(self, works: list[Callable[[Session], Any]]) -> list[Any]:
        """Write `works` as one batch now (benchmarks): each one's result, or its error."""
        jobs = [_Job(work=work, request=None) for work in works]
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
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._writing = False
            for job in batch:
                job.lead = False
                job.done = True
                job.wake.set()

    def _write(self, batch: list[_Job]) -> None:
        """Write a batch in one transaction; if its commit fails, write each job alone."""
        session = self._runtime.session_factory()
        try:
            begin_writing(session)
            for index, job in enumerate(batch):
                # Incident codes are counted up for the whole batch at once.
                _run_in_savepoint(session, job, len(batch) - index)
            session.commit()
            self.batches += 1
            self.jobs += len(batch)
        except Exception as exc:  # noqa: BLE001 - the commit failed: each job is tried alone
            session.rollback()
            survivors = [job for job in batch if job.error is None]
            if len(batch) == 1 or not survivors:
                for job in survivors:
                    job.error, job.result = exc, None
                return
            for job in survivors:
                job.result = None
                self._write([job])
        finally:
            session.close()


def _run_in_savepoint(session: Session, job: _Job, remaining: int) -> None:
    # What a transaction keeps in session.info (events to publish after the commit, stream log
    # and audit rows to write) must lose this job's part when its savepoint rolls back, and
    # keep the others' whatever the rollback hooks drop.
    kept = {key: value.copy() for key, value in session.info.items() if _pending(value)}
    session.info["request"] = job.request
    incident_service.expect_codes(session=session, count=remaining)
    savepoint = session.begin_nested()
    try:
        job.result = job.work(session)
        # Flushed now, so its audit rows name its own request.
        session.flush()
        # SQLAlchemy runs its commit hooks on a savepoint's release too: the events wait
        # aside, so that they are published after the batch's real commit, not before.
        held = session.info.pop(_EVENTS, [])
        try:
            savepoint.commit()
        finally:
            session.info[_EVENTS] = held + session.info.pop(_EVENTS, [])
    except Exception as exc:  # noqa: BLE001 - handed back to the job's own request
        if savepoint.is_active:
            savepoint.rollback()
        for key in [k for k, v in session.info.items() if _pending(v)]:
            if key not in kept:
                del session.info[key]
        session.info.update(kept)
        job.error = exc
    finally:
        # The next job starts as a request's own session would: no request, no actor.
        session.info.pop("request", None)
        session.info.pop("actor", None)


def _pending(value: object) -> bool:
    # Lists (events, stream log and audit rows to write) and sets (tables changed, for the
    # reference cache) that hooks fill during a transaction.
    return isinstance(value, list | set)


def writer_of(runtime: Runtime) -> ReportWriter:
    """Return this process's report writer (one per runtime)."""
    writer = runtime.caches.get(_CACHE_KEY)
    if writer is None:
        writer = runtime.caches.setdefault(_CACHE_KEY, ReportWriter(runtime))
    assert isinstance(writer, ReportWriter)
    return writer
