"""Orchestration of the programme context: applying a checked spreadsheet import, all or
nothing, and seeding a profile's programme through the same import."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.errors import Invalid
from cityops.programme import imports, service
from cityops.programme.imports import ImportRefused, Plan, Problem
from cityops.programme.models import ProgrammePhase

PROFILE_FOLDER = "programme"
_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
KINDS = ("phases", "items", "budget_lines", "milestones")


def _counts() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)


@dataclass(slots=True)
class ImportResult:
    """What an import did: counts per outcome and kind, rows read, and warnings."""

    rows: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=_counts)
    updated: dict[str, int] = field(default_factory=_counts)
    unchanged: dict[str, int] = field(default_factory=_counts)
    deleted: dict[str, int] = field(default_factory=_counts)
    skipped: dict[str, int] = field(default_factory=_counts)
    warnings: list[Problem] = field(default_factory=list)

    def tally(self, kind: str, changes: service.Changes) -> None:
        """Add a replacement's counts."""
        self.created[kind] += changes.created
        self.updated[kind] += changes.updated
        self.unchanged[kind] += changes.unchanged
        self.deleted[kind] += changes.deleted


def refused(problems: list[Problem]) -> Invalid:
    """The 422 error for a refused import: every located problem (up to a bound)."""
    shown = problems[: imports.MAX_PROBLEMS]
    return Invalid(
        "programme.import.refused",
        errors=[p.as_error() for p in shown],
        count=len(problems),
    )


def apply_plan(
    *, session: Session, plan: Plan, clock: Clock, only_new: bool = False
) -> ImportResult:
    """Write a checked plan: phases, items, then budget lines and milestones per item.

    `only_new` (seeding) leaves existing phases and items, with their lines, as they are.
    """
    result = ImportResult(rows=dict(plan.rows), warnings=list(plan.warnings))
    now = clock.now()
    changed_phases: list[tuple[imports.PhaseRow, ProgrammePhase]] = []
    for row in plan.phases:
        phase = service.get_phase(session=session, phase_code=row.code)
        if phase is None:
            session.add(ProgrammePhase(code=row.code, **row.values, created_at=now, updated_at=now))
            result.created["phases"] += 1
        elif only_new:
            result.skipped["phases"] += 1
        elif service.set_phase_values(phase=phase, values=row.values):
            phase.updated_at = now
            changed_phases.append((row, phase))
            result.updated["phases"] += 1
        else:
            result.unchanged["phases"] += 1
    session.flush()
    existing = service.get_by_codes(session=session, codes=[r.code for r in plan.items])
    skip: set[str] = set()
    for item_row in plan.items:
        item = existing.get(item_row.code)
        if item is not None and only_new:
            skip.add(item_row.code)
            result.skipped["items"] += 1
            continue
        # One flush for all items: flushing per item costs time in the size of the session.
        _, changed = service.write_item(
            session=session,
            item=item,
            code=item_row.code,
            values=item_row.values,
            clock=clock,
            flush=False,
        )
        outcome = result.created if item is None else result.updated if changed else None
        (outcome or result.unchanged)["items"] += 1
    session.flush()
    wanted = (set(plan.budget) | set(plan.milestones)) - skip
    ids = {
        code: item.id for code, item in service.get_by_codes(session=session, codes=wanted).items()
    }
    for code in set(plan.budget) & skip:
        result.skipped["budget_lines"] += len(plan.budget[code])
    for code in set(plan.milestones) & skip:
        result.skipped["milestones"] += len(plan.milestones[code])
    result.tally(
        "budget_lines",
        service.replace_budgets(
            session=session,
            lines_by_item={ids[c]: lines for c, lines in plan.budget.items() if c not in skip},
        ),
    )
    result.tally(
        "milestones",
        service.replace_milestones_of(
            session=session,
            milestones_by_item={
                ids[c]: milestones for c, milestones in plan.milestones.items() if c not in skip
            },
        ),
    )
    # A phase narrowed by the file must still hold the items the file did not touch.
    for row, phase in changed_phases:
        try:
            service.check_phase_fits(session=session, phase=phase)
        except Invalid as exc:
            raise ImportRefused(
                [Problem(row.sheet, row.row, None, exc.key or "", dict(exc.params))]
            ) from None
    return result


Progress = Callable[[str], None]


def _import(
    *,
    session: Session,
    read: Callable[[list[Problem]], list[imports.Table]],
    clock: Clock,
    only_new: bool,
    progress: Progress | None,
) -> ImportResult:
    notes: list[Problem] = []
    step = progress or (lambda _stage: None)
    try:
        step("read")
        tables = read(notes)
        step("check")
        plan = imports.build_plan(session=session, tables=tables, notes=notes)
        step("write")
        result = apply_plan(session=session, plan=plan, clock=clock, only_new=only_new)
    except ImportRefused as exc:
        raise refused(exc.problems) from None
    step("done")
    return result


def import_files(
    *,
    session: Session,
    files: list[tuple[str, bytes, str | None]],
    clock: Clock,
    only_new: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    """Read, check and apply (name, bytes, kind) files in the caller's transaction.

    Raises `Invalid` (422) listing every bad row by sheet, row and column; nothing is written
    then (the caller's transaction is rolled back). `progress(stage)` is told each stage.
    """
    return _import(
        session=session,
        read=lambda notes: imports.read_files(files, notes),
        clock=clock,
        only_new=only_new,
        progress=progress,
    )


def import_paths(
    *, session: Session, paths: list[Path], clock: Clock, progress: Progress | None = None
) -> ImportResult:
    """Import files from disk (a folder stands for the CSV and XLSX files in it)."""
    return _import(
        session=session,
        read=lambda notes: imports.read_paths(paths, notes),
        clock=clock,
        only_new=False,
        progress=progress,
    )


def _folder_files(folder: Traversable) -> list[tuple[str, bytes, str | None]]:
    return [
        (entry.name, entry.read_bytes(), None)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.is_file() and entry.name.lower().endswith((".csv", ".xlsx"))
    ]


def seed_profile(*, session: Session, profile: str, clock: Clock) -> dict[str, int]:
    """Load the profile's programme (phases, items, budget, milestones) if it ships one.

    Existing phases and items are left as they are: operators and departments edit them.
    """
    if not _PROFILE_NAME.match(profile):
        raise ValueError(f"not a profile name: {profile!r}")
    folder = resources.files("cityops") / "profiles" / profile / PROFILE_FOLDER
    if not folder.is_dir():
        return {}
    result = import_files(session=session, files=_folder_files(folder), clock=clock, only_new=True)
    return {
        "programme_phases": result.created["phases"],
        "programme_items": result.created["items"],
        "programme_budget_lines": result.created["budget_lines"],
        "programme_milestones": result.created["milestones"],
    }
