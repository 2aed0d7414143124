"""Orchestration of the egov context: the 766 indicators per agency or unit, due-date events,
and seeding the profile's procedures (and the demo dossiers).

The KPI engine and the pages read `compute_indicators` and `scorecard`; the alerts package turns
the `egov.dossier_due_soon` / `egov.dossier_overdue` events into alerts.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from cityops.core.clock import Clock
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.egov import service
from cityops.egov.enums import (
    EVENT_DUE_SOON,
    EVENT_OVERDUE,
    AgencyKind,
    DueState,
    GroupBy,
    OnlineLevel,
    ProcedureLevel,
)
from cityops.egov.models import Dossier, Procedure
from cityops.egov.periods import Period, WorkCalendar
from cityops.egov.scoring import Counts, EgovConfig, Score, evaluate, load_config, rank
from cityops.units.flows import local_date
from cityops.units.profile import profile_folder

log = logging.getLogger(__name__)

DUE_BATCH = 1000  # due-date events per job run; the next run takes the rest


def config_of(runtime: Runtime) -> EgovConfig:
    """The 766 configuration of the runtime's profile."""
    return load_config(runtime.settings.profile)


@lru_cache(maxsize=8)
def _calendar(profile: str, timezone: str) -> WorkCalendar:
    config = load_config(profile)
    return WorkCalendar(timezone=timezone, weekend=config.weekend, holidays=config.holidays)


def calendar_of(runtime: Runtime) -> WorkCalendar:
    """The working-day calendar of the runtime's profile."""
    return _calendar(runtime.settings.profile, runtime.settings.timezone)


# --- indicators -----------------------------------------------------------------------------


@dataclass(slots=True)
class GroupScore:
    """The 766 result of one agency or unit in a period."""

    code: str
    kind: str  # department | commune (agencies); province | commune (units)
    name: str
    name_en: str | None
    counts: Counts
    score: Score
    procedures: dict[str, Counts] = field(default_factory=dict)


@dataclass(slots=True)
class IndicatorTable:
    """The indicators of every agency or unit of a period, ranked."""

    period: Period
    as_of: datetime
    group_by: GroupBy
    items: list[GroupScore]


def _procedure_counts(counts: Counts, procedures: list[Procedure], used_online: set[str]) -> None:
    online = [p for p in procedures if p.online_level != OnlineLevel.NONE.value]
    counts.procs = len(procedures)
    counts.procs_online = len(online)
    counts.procs_fee = sum(1 for p in procedures if p.has_fee)
    counts.procs_fee_integrated = sum(1 for p in procedures if p.has_fee and p.payment_integrated)
    counts.online_used = sum(1 for p in online if p.code in used_online)


def _competence(agency: service.Agency | None, procedures: dict[str, Procedure]) -> list[Procedure]:
    """The procedures an agency handles: its department's, or every commune-level one."""
    if agency is None:
        return []
    if agency.kind is AgencyKind.COMMUNE:
        return [p for p in procedures.values() if p.level == ProcedureLevel.COMMUNE.value]
    return [p for p in procedures.values() if p.department_code == agency.code]


def compute_indicators(
    *,
    runtime: Runtime,
    session: Session,
    period: Period,
    group_by: GroupBy,
    now: datetime | None = None,
) -> IndicatorTable:
    """Compute the 766 indicators of every agency (or unit) with dossiers in a period, ranked.

    Dossier counts come from one SQL aggregate per (agency or unit, procedure). Procedure-based
    indicators (3.1, 3.2, 3.4) count, for an agency, the procedures within its competence
    (its department's, or every commune-level one for a commune/ward); for a unit, the
    procedures it received dossiers for in the period.
    """
    now = now or runtime.clock.now()
    config = config_of(runtime)
    procedures = service.get_procedure_map(session=session)
    rows = service.get_aggregates(session=session, period=period, now=now, group_by=group_by)
    today = local_date(runtime.clock, runtime.settings.timezone)
    agencies = service.get_agencies(session=session, on=today)
    places = service.get_places(session=session, on=today)

    per_key: dict[str, GroupScore] = {}
    used_online: dict[str, set[str]] = {}
    for row in rows:
        procedure = procedures.get(row.procedure_code)
        counts = row.counts
        # Payments count only for fee-bearing procedures (3.5's denominator).
        if procedure is not None and procedure.has_fee:
            counts.fee = counts.received
        else:
            counts.paid = 0
        item = per_key.get(row.key)
        if item is None:
            item = _new_group(row.key, group_by, agencies, places, config)
            per_key[row.key] = item
        item.counts.add(counts)
        item.procedures[row.procedure_code] = counts
        if counts.online:
            used_online.setdefault(row.key, set()).add(row.procedure_code)

    for key, item in per_key.items():
        if group_by is GroupBy.AGENCY:
            handled = _competence(agencies.get(key), procedures)
        else:
            handled = [procedures[c] for c in item.procedures if c in procedures]
        _procedure_counts(item.counts, handled, used_online.get(key, set()))
        item.score = evaluate(config, item.counts)
    rank(((i.score, i.counts.handled) for i in per_key.values()), config.min_dossiers_for_rank)
    items = sorted(
        per_key.values(),
        key=lambda i: (
            i.score.rank is None,
            i.score.rank or 0,
            -(i.score.total or -1.0),
            i.code,
        ),
    )
    return IndicatorTable(period=period, as_of=period.as_of(now), group_by=group_by, items=items)


def _new_group(
    key: str,
    group_by: GroupBy,
    agencies: dict[str, service.Agency],
    places: dict[str, service.Place],
    config: EgovConfig,
) -> GroupScore:
    empty = evaluate(config, Counts())
    if group_by is GroupBy.AGENCY:
        agency = agencies.get(key)
        if agency is not None:
            return GroupScore(key, agency.kind.value, agency.name, agency.name_en, Counts(), empty)
    else:
        place = places.get(key)
        if place is not None:
            return GroupScore(key, place.level, place.name, place.name_en, Counts(), empty)
    # A code no longer current (a unit merged away): shown by its code.
    return GroupScore(key, "unknown", key, None, Counts(), empty)


# --- due dates ------------------------------------------------------------------------------


def due_horizon(runtime: Runtime, now: datetime) -> datetime:
    """The instant up to which an open dossier's due date counts as "soon"."""
    days = runtime.settings.egov_due_soon_working_days
    return calendar_of(runtime).add_working_days(now, days)


def due_event_data(
    dossier: Dossier, procedure: Procedure | None, agencies: dict[str, service.Agency]
) -> dict[str, Any]:
    """The payload of a due-date event."""
    agency = agencies.get(dossier.agency_code)
    is_department = agency is not None and agency.kind is AgencyKind.DEPARTMENT
    return {
        "dossier_id": dossier.id,
        "code": dossier.code,
        "agency_code": dossier.agency_code,
        "agency_kind": agency.kind.value if agency is not None else None,
        "agency_name": agency.name if agency is not None else dossier.agency_code,
        "department_code": dossier.agency_code if is_department else None,
        "unit_code": dossier.unit_code,
        "procedure_code": dossier.procedure_code,
        "procedure_name": procedure.name if procedure is not None else None,
        "procedure_name_en": procedure.name_en if procedure is not None else None,
        "status": dossier.status,
        "received_at": dossier.received_at.isoformat(),
        "due_at": dossier.due_at.isoformat(),
        "sector": "egov",
    }


def announce_due(
    *, runtime: Runtime, session: Session, now: datetime | None = None, limit: int = DUE_BATCH
) -> dict[str, int]:
    """Publish an event for each open dossier newly due soon or newly overdue (once per state).

    A dossier first seen already past due is announced overdue only. The events are published
    after the caller's transaction commits, together with the remembered state.
    """
    now = now or runtime.clock.now()
    horizon = due_horizon(runtime, now)
    pending = service.get_unannounced(session=session, now=now, horizon_end=horizon, limit=limit)
    counts = {DueState.DUE_SOON.value: 0, DueState.OVERDUE.value: 0}
    if not pending:
        return counts
    procedures = service.get_procedure_map(session=session)
    agencies = service.get_agencies(
        session=session, on=local_date(runtime.clock, runtime.settings.timezone)
    )
    for dossier in pending:
        state = DueState.OVERDUE if dossier.due_at < now else DueState.DUE_SOON
        dossier.announced, dossier.announced_at = state.value, now
        data = {
            **due_event_data(dossier, procedures.get(dossier.procedure_code), agencies),
            "state": state.value,
        }
        event_type = EVENT_OVERDUE if state is DueState.OVERDUE else EVENT_DUE_SOON
        runtime.bus.publish_after_commit(session, Event(type=event_type, data=data, at=now))
        counts[state.value] += 1
    session.flush()
    return counts


# --- seeding --------------------------------------------------------------------------------


def _flag(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes")


def read_procedures(profile: str) -> list[dict[str, Any]]:
    """The procedures a profile lists (`egov_procedures.csv`), as column values."""
    config = load_config(profile)
    text = (profile_folder(profile) / config.procedures_file).read_text(encoding="utf-8-sig")
    out: list[dict[str, Any]] = []
    for row in csv.DictReader(io.StringIO(text)):
        out.append(
            {
                "code": row["code"].strip(),
                "name": row["name"].strip(),
                "name_en": row["name_en"].strip() or None,
                "field": row["field"].strip(),
                "field_en": row["field_en"].strip() or None,
                "level": ProcedureLevel(row["level"].strip()).value,
                "department_code": row["department_code"].strip() or None,
                "online_level": OnlineLevel(row["online_level"].strip()).value,
                "time_limit_days": int(row["time_limit_days"]),
                "has_fee": _flag(row["has_fee"]),
                "payment_integrated": _flag(row["payment_integrated"]),
            }
        )
    return out


def seed_profile(*, session: Session, profile: str, clock: Clock) -> dict[str, int]:
    """Seed the profile's procedures; those already present are left as they are."""
    existing = set(service.get_procedure_map(session=session))
    created = 0
    for values in read_procedures(profile):
        if values["code"] in existing:
            continue
        service.create_procedure(session=session, values=values, clock=clock)
        created += 1
    return {"procedures": created}
