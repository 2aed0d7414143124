"""Database work of the alerts context: rules (validated by kind, with every reference checked),
alerts and their history, and the engine's per-rule state.

Services flush, never commit; the caller (request, evaluator batch, job, command) owns the
transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import ValidationError
from sqlalchemy import ColumnElement, delete, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cityops.alerts.enums import (
    INCIDENT_CATEGORIES,
    AlertEventKind,
    AlertStatus,
    Resolution,
    RuleKind,
)
from cityops.alerts.models import Alert, AlertEvent, AlertRule, RuleState
from cityops.alerts.schemas import CONDITION_MODELS, CompositeCondition, RuleCreate
from cityops.core.errors import Conflict, Invalid
from cityops.core.security import Principal, Scope
from cityops.units import service as unit_service

# Kinds whose rules observe one attribute of one entity type.
OBSERVING_KINDS = frozenset({RuleKind.THRESHOLD, RuleKind.RATE_OF_CHANGE})
GEO_ATTRIBUTE = "location"
TEMPORAL_PATH = "/ngsi-ld/v1/temporal/entities/"
MAX_SNOOZE = timedelta(days=30)


def field_error(field: str, key: str, /, **params: Any) -> dict[str, Any]:
    """Describe one field's problem by message key (rendered in the caller's language)."""
    return {"field": field, "in": "body", "key": key, "params": params}


# --- rules -----------------------------------------------------------------------------------


def get(*, session: Session, rule_id: int) -> AlertRule | None:
    """Return a rule by id."""
    return session.get(AlertRule, rule_id)


def get_by_code(*, session: Session, code: str) -> AlertRule | None:
    """Return a rule by code."""
    return session.scalars(select(AlertRule).where(AlertRule.code == code)).one_or_none()


def get_by_codes(*, session: Session, codes: Iterable[str]) -> dict[str, AlertRule]:
    """Return the rules named by codes, by code."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = session.scalars(select(AlertRule).where(AlertRule.code.in_(wanted)))
    return {rule.code: rule for rule in rows}


def get_enabled(*, session: Session) -> list[AlertRule]:
    """Return every enabled rule, by id."""
    return list(
        session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id))
    )


def get_all(
    *,
    session: Session,
    kind: str | None = None,
    entity_type: str | None = None,
    attribute: str | None = None,
    severity: str | None = None,
    sector: str | None = None,
    enabled: bool | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AlertRule], int]:
    """Return one page of rules matching the filters and how many match."""
    conditions: list[ColumnElement[bool]] = []
    if kind is not None:
        conditions.append(AlertRule.kind == kind)
    if entity_type is not None:
        conditions.append(AlertRule.entity_type == entity_type)
    if attribute is not None:
        conditions.append(AlertRule.attribute == attribute)
    if severity is not None:
        conditions.append(AlertRule.severity == severity)
    if sector is not None:
        conditions.append(AlertRule.sector == sector)
    if enabled is not None:
        conditions.append(AlertRule.enabled.is_(enabled))
    if q:
        pattern = f"%{q.lower()}%"
        conditions.append(
            or_(
                func.lower(AlertRule.code).like(pattern),
                func.lower(AlertRule.name_vi).like(pattern),
                func.lower(AlertRule.name_en).like(pattern),
            )
        )
    total = session.scalar(select(func.count()).select_from(AlertRule).where(*conditions)) or 0
    rows = session.scalars(
        select(AlertRule).where(*conditions).order_by(AlertRule.code).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def get_composites(*, session: Session) -> dict[str, list[str]]:
    """Return every composite rule's members, by the composite's code."""
    rows = session.execute(
        select(AlertRule.code, AlertRule.condition).where(AlertRule.kind == RuleKind.COMPOSITE)
    )
    return {code: list((condition or {}).get("rules") or []) for code, condition in rows}


def rules_signature(*, session: Session) -> tuple[int, int, str]:
    """Return a token that changes whenever a rule is added, changed or deleted."""
    count, ids, latest = session.execute(
        select(func.count(), func.sum(AlertRule.id), func.max(AlertRule.updated_at))
    ).one()
    return int(count or 0), int(ids or 0), str(latest)


@lru_cache(maxsize=1)
def _validation_keys() -> frozenset[str]:
    """The `validation.<type>` messages the catalogues hold (core's and this package's)."""
    keys: set[str] = set()
    for package in ("cityops.core", "cityops.alerts"):
        text = (resources.files(package) / "locales" / "en.json").read_text("utf-8")
        keys |= {key for key in json.loads(text) if key.startswith("validation.")}
    return frozenset(keys)


def pydantic_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """Turn a pydantic refusal into field errors with message keys (translated at the edge)."""
    out: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err.get("loc", ()))
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "body")
        key = f"validation.{err.get('type')}"
        params = {name: str(value) for name, value in (err.get("ctx") or {}).items()}
        if key not in _validation_keys() or key == "validation.value_error":
            key, params = "validation.value_error", {"message": str(err.get("msg", ""))}
        out.append(field_error(where, key, **params))
    return out


def _unknown_units(session: Session, codes: Sequence[str]) -> list[str]:
    return [
        code
        for code in dict.fromkeys(codes)
        if unit_service.get(session=session, unit_code=code) is None
    ]


def _check_condition(
    session: Session, rule_in: RuleCreate, errors: list[dict[str, Any]]
) -> dict[str, Any] | None:
    model = CONDITION_MODELS[rule_in.kind]
    try:
        condition = model.model_validate(rule_in.condition)
    except ValidationError as exc:
        errors.extend(pydantic_errors(exc, "condition"))
        return None
    normalized: dict[str, Any] = condition.model_dump(mode="json", exclude_none=True)
    if rule_in.kind is RuleKind.GEO_FENCE:
        area = normalized.get("area_code")
        if area is not None and unit_service.get_area(session=session, area_code=area) is None:
            errors.append(field_error("condition.area_code", "alerts.rule.unknown_area", code=area))
        for code in _unknown_units(session, normalized.get("unit_codes") or []):
            errors.append(
                field_error("condition.unit_codes", "alerts.rule.unknown_unit", code=code)
            )
    return normalized


def _check_fields(
    rule_in: RuleCreate, errors: list[dict[str, Any]]
) -> tuple[str | None, str | None]:
    kind = rule_in.kind
    entity_type, attribute = rule_in.entity_type, rule_in.attribute
    if (kind in OBSERVING_KINDS or kind is RuleKind.GEO_FENCE) and entity_type is None:
        errors.append(field_error("entity_type", "alerts.rule.required_for_kind", kind=kind))
    if kind in OBSERVING_KINDS and attribute is None:
        errors.append(field_error("attribute", "alerts.rule.required_for_kind", kind=kind))
    if kind is RuleKind.GEO_FENCE:
        attribute = attribute or GEO_ATTRIBUTE
    if kind in (RuleKind.MISSING_DATA, RuleKind.COMPOSITE) and attribute is not None:
        errors.append(field_error("attribute", "alerts.rule.not_for_kind", kind=kind))
    if kind is RuleKind.COMPOSITE and entity_type is not None:
        errors.append(field_error("entity_type", "alerts.rule.not_for_kind", kind=kind))
    return entity_type, attribute


def _check_scope(session: Session, rule_in: RuleCreate, errors: list[dict[str, Any]]) -> None:
    for code in _unknown_units(session, rule_in.unit_codes or []):
        errors.append(field_error("unit_codes", "alerts.rule.unknown_unit", code=code))
    area = rule_in.area_code
    if area is not None and unit_service.get_area(session=session, area_code=area) is None:
        errors.append(field_error("area_code", "alerts.rule.unknown_area", code=area))
    if rule_in.sector is not None and (
        unit_service.get_department_by_sector(session=session, sector=rule_in.sector) is None
    ):
        errors.append(field_error("sector", "alerts.rule.unknown_sector", sector=rule_in.sector))
    incident = rule_in.policy.incident
    if incident is not None:
        if incident.category not in INCIDENT_CATEGORIES:
            errors.append(
                field_error(
                    "policy.incident.category",
                    "alerts.rule.unknown_category",
                    category=incident.category,
                    expected=", ".join(sorted(INCIDENT_CATEGORIES)),
                )
            )
        department = incident.department_code
        if department is not None and (
            unit_service.get_department(session=session, department_code=department) is None
        ):
            errors.append(
                field_error(
                    "policy.incident.department_code",
                    "alerts.rule.unknown_department",
                    code=department,
                )
            )


def find_cycle(graph: Mapping[str, Sequence[str]], start: str) -> list[str] | None:
    """Return a cycle of composites through `start` (as codes, start first), or None."""
    path: list[str] = []
    seen: set[str] = set()

    def visit(code: str) -> list[str] | None:
        if code in path:
            return [*path[path.index(code) :], code]
        if code in seen:
            return None
        seen.add(code)
        path.append(code)
        for member in graph.get(code, ()):
            found = visit(member)
            if found is not None:
                return found
        path.pop()
        return None

    return visit(start)


def check_rule(
    *,
    session: Session,
    rule_in: RuleCreate,
    known: Callable[[str], bool],
    graph: Mapping[str, Sequence[str]],
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Validate a rule whole: its kind's parameters, its fields, every code it names and its
    composite members (`known(code)` tells whether a rule exists; `graph` gives every
    composite's members, this rule included). Return its stored values, or the field errors."""
    errors: list[dict[str, Any]] = []
    entity_type, attribute = _check_fields(rule_in, errors)
    condition = _check_condition(session, rule_in, errors)
    _check_scope(session, rule_in, errors)
    if rule_in.kind is RuleKind.COMPOSITE and condition is not None:
        members = CompositeCondition.model_validate(condition).rules
        for i, code in enumerate(members):
            if code == rule_in.code:
                errors.append(field_error(f"condition.rules[{i}]", "alerts.rule.self_member"))
            elif not known(code):
                errors.append(
                    field_error(f"condition.rules[{i}]", "alerts.rule.unknown_member", code=code)
                )
        cycle = find_cycle({**graph, rule_in.code: members}, rule_in.code)
        if cycle is not None and rule_in.code not in members:
            errors.append(
                field_error("condition.rules", "alerts.rule.cycle", cycle=" → ".join(cycle))
            )
    if errors:
        return None, errors
    assert condition is not None
    schedule = rule_in.schedule.model_dump(mode="json") if rule_in.schedule else None
    incident = rule_in.policy.incident
    policy = {
        "incident": incident.model_dump(mode="json") if incident is not None else None,
        "notify": list(rule_in.policy.notify),
    }
    values = {
        "code": rule_in.code,
        "name_vi": rule_in.name_vi,
        "name_en": rule_in.name_en,
        "description": rule_in.description,
        "kind": str(rule_in.kind),
        "entity_type": entity_type,
        "attribute": attribute,
        "condition": condition,
        "unit_codes": list(dict.fromkeys(rule_in.unit_codes)) if rule_in.unit_codes else None,
        "area_code": rule_in.area_code,
        "schedule": schedule,
        "severity": str(rule_in.severity),
        "sector": rule_in.sector,
        "policy": policy,
        "enabled": rule_in.enabled,
    }
    return values, []


def rule_values(rule: AlertRule) -> dict[str, Any]:
    """Return a rule's stored values in the form `check_rule` produces (to compare)."""
    return {
        "code": rule.code,
        "name_vi": rule.name_vi,
        "name_en": rule.name_en,
        "description": rule.description,
        "kind": rule.kind,
        "entity_type": rule.entity_type,
        "attribute": rule.attribute,
        "condition": rule.condition,
        "unit_codes": rule.unit_codes,
        "area_code": rule.area_code,
        "schedule": rule.schedule,
        "severity": rule.severity,
        "sector": rule.sector,
        "policy": rule.policy,
        "enabled": rule.enabled,
    }


def rule_input(rule: AlertRule) -> dict[str, Any]:
    """Return a rule as a creation document (what PATCH merges changes into)."""
    values = rule_values(rule)
    values["policy"] = dict(rule.policy)
    return {key: value for key, value in values.items() if value is not None}


def validate_or_raise(
    *, session: Session, rule_in: RuleCreate, exclude: str | None = None
) -> dict[str, Any]:
    """Validate one rule against the stored ones; return its values or raise 422."""
    graph = get_composites(session=session)
    if exclude is not None:
        graph.pop(exclude, None)

    def known(code: str) -> bool:
        return get_by_code(session=session, code=code) is not None

    values, errors = check_rule(session=session, rule_in=rule_in, known=known, graph=graph)
    if errors or values is None:
        raise Invalid("alerts.rule.invalid", errors=errors, count=len(errors))
    return values


def create(*, session: Session, values: Mapping[str, Any], now: datetime) -> AlertRule:
    """Store a validated rule (see `check_rule`)."""
    if get_by_code(session=session, code=values["code"]) is not None:
        raise Conflict("alerts.rule.exists", code=values["code"])
    rule = AlertRule(**values, created_at=now, updated_at=now)
    session.add(rule)
    session.flush()
    return rule


def update(*, session: Session, rule: AlertRule, values: Mapping[str, Any], now: datetime) -> bool:
    """Apply validated values to a rule; return whether anything changed."""
    changed = False
    for name, value in values.items():
        if name != "code" and getattr(rule, name) != value:
            setattr(rule, name, value)
            changed = True
    if changed:
        rule.updated_at = now
        session.flush()
    return changed


def delete_rule(*, session: Session, rule: AlertRule) -> None:
    """Delete a rule; its alerts keep their history (with the rule's code only)."""
    session.delete(rule)
    session.flush()


def composites_naming(*, session: Session, code: str) -> list[str]:
    """Return the codes of the composites that name a rule as a member."""
    return sorted(c for c, members in get_composites(session=session).items() if code in members)


# --- alerts ----------------------------------------------------------------------------------


def fingerprint(rule_id: int, tenant: str, entity_id: str) -> str:
    """Return the identity of "this rule on this entity" (one open alert per fingerprint)."""
    return hashlib.sha1(
        f"{rule_id}|{tenant}|{entity_id}".encode(), usedforsecurity=False
    ).hexdigest()


def get_alert(*, session: Session, alert_id: int) -> Alert | None:
    """Return an alert by id."""
    return session.get(Alert, alert_id)


def get_open_for_rule(*, session: Session, rule_id: int) -> list[Alert]:
    """Return a rule's alerts not yet resolved."""
    return list(
        session.scalars(select(Alert).where(Alert.rule_id == rule_id, Alert.open_key.is_not(None)))
    )


def get_all_alerts(
    *,
    session: Session,
    scope: Scope,
    status: Sequence[str] | None = None,
    severity: Sequence[str] | None = None,
    rule_code: str | None = None,
    unit_codes: frozenset[str] | None = None,
    entity_id: str | None = None,
    sector: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Alert], int]:
    """Return one page of the alerts in a scope, newest first, and how many match."""
    conditions = [
        scope.unit_filter(Alert.unit_code),
        scope.department_filter(Alert.department_code),
    ]
    if status:
        conditions.append(Alert.status.in_(list(status)))
    if severity:
        conditions.append(Alert.severity.in_(list(severity)))
    if rule_code is not None:
        conditions.append(Alert.rule_code == rule_code)
    if unit_codes is not None:
        conditions.append(Alert.unit_code.in_(sorted(unit_codes)))
    if entity_id is not None:
        conditions.append(Alert.entity_id == entity_id)
    if sector is not None:
        conditions.append(Alert.sector == sector)
    if since is not None:
        conditions.append(Alert.opened_at >= since)
    if until is not None:
        conditions.append(Alert.opened_at < until)
    total = session.scalar(select(func.count()).select_from(Alert).where(*conditions)) or 0
    rows = session.scalars(
        select(Alert)
        .where(*conditions)
        .order_by(Alert.opened_at.desc(), Alert.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def get_history(*, session: Session, alert_id: int) -> list[AlertEvent]:
    """Return an alert's history, oldest first."""
    return list(
        session.scalars(
            select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
        )
    )


def get_due_snoozed(*, session: Session, now: datetime) -> list[Alert]:
    """Return the snoozed alerts whose snooze has ended."""
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.status == AlertStatus.SNOOZED, Alert.snoozed_until <= now)
            .order_by(Alert.id)
        )
    )


def get_unresolved_of_type(*, session: Session, entity_type: str) -> list[tuple[str, str | None]]:
    """Return (entity id, unit code) of the unresolved alerts on entities of one type."""
    rows = session.execute(
        select(Alert.entity_id, Alert.unit_code)
        .where(Alert.entity_type == entity_type, Alert.status != AlertStatus.RESOLVED)
        .distinct()
    )
    return [(entity_id, unit_code) for entity_id, unit_code in rows]


def observation_link(
    *, entity_id: str | None, attribute: str | None, observed_at: datetime | None
) -> str | None:
    """Return the NGSI-LD temporal API address of one observation (the instant itself)."""
    if not entity_id or not attribute or observed_at is None:
        return None
    start = observed_at.replace(microsecond=observed_at.microsecond // 1000 * 1000)
    end = start + timedelta(milliseconds=1)
    query = urlencode(
        {
            "attrs": attribute,
            "timerel": "between",
            "timeAt": _iso(start),
            "endTimeAt": _iso(end),
        }
    )
    return f"{TEMPORAL_PATH}{quote(entity_id, safe=':')}?{query}"


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def actor_of(principal: Principal | None) -> tuple[int | None, str | None]:
    """Return the (user id, name) an action is recorded under (no id for machines)."""
    if principal is None:
        return None, None
    return (principal.id if principal.kind == "user" else None), principal.name[:64]


def add_event(
    *,
    session: Session,
    alert: Alert,
    kind: AlertEventKind,
    at: datetime,
    actor: Principal | None = None,
    value: Any = None,
    observed_at: datetime | None = None,
    correlation_id: str | None = None,
    note: str | None = None,
    details: dict[str, Any] | None = None,
) -> AlertEvent:
    """Append an entry to an alert's history."""
    actor_id, actor_name = actor_of(actor)
    event = AlertEvent(
        alert_id=alert.id,
        kind=str(kind),
        at=at,
        actor_id=actor_id,
        actor_name=actor_name,
        value=value,
        observed_at=observed_at,
        tenant=alert.tenant,
        entity_id=alert.entity_id,
        attribute=alert.attribute,
        correlation_id=correlation_id,
        note=note,
        details=details,
    )
    session.add(event)
    return event


def acknowledge(
    *, session: Session, alert: Alert, actor: Principal, now: datetime, note: str | None
) -> AlertEvent:
    """Acknowledge an alert (a snoozed one stays snoozed, and wakes up acknowledged)."""
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict("alerts.alert.resolved", id=alert.id)
    if alert.acknowledged_at is not None:
        raise Conflict("alerts.alert.already_acknowledged", id=alert.id)
    alert.acknowledged_at = now
    alert.acknowledged_by = actor_of(actor)[0]
    if alert.status == AlertStatus.OPEN:
        alert.status = AlertStatus.ACKNOWLEDGED
    alert.updated_at = now
    event = add_event(
        session=session,
        alert=alert,
        kind=AlertEventKind.ACKNOWLEDGED,
        at=now,
        actor=actor,
        note=note,
    )
    session.flush()
    return event


def snooze(
    *,
    session: Session,
    alert: Alert,
    actor: Principal,
    now: datetime,
    until: datetime,
    note: str | None,
) -> AlertEvent:
    """Snooze an alert until a time; it still resolves by itself when its condition clears."""
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict("alerts.alert.resolved", id=alert.id)
    if until <= now or until - now > MAX_SNOOZE:
        raise Invalid(
            "alerts.alert.snooze_window",
            errors=[field_error("until", "alerts.alert.snooze_window", days=MAX_SNOOZE.days)],
            days=MAX_SNOOZE.days,
        )
    alert.status = AlertStatus.SNOOZED
    alert.snoozed_until = until
    alert.updated_at = now
    event = add_event(
        session=session,
        alert=alert,
        kind=AlertEventKind.SNOOZED,
        at=now,
        actor=actor,
        note=note,
        details={"until": _iso(until.astimezone(now.tzinfo))},
    )
    session.flush()
    return event


def unsnooze(*, session: Session, alert: Alert, now: datetime) -> AlertEvent:
    """End an alert's snooze: back to acknowledged if it was, else open."""
    alert.status = AlertStatus.ACKNOWLEDGED if alert.acknowledged_at else AlertStatus.OPEN
    alert.snoozed_until = None
    alert.updated_at = now
    event = add_event(session=session, alert=alert, kind=AlertEventKind.UNSNOOZED, at=now)
    session.flush()
    return event


def resolved_values(
    *,
    opened_at: datetime,
    now: datetime,
    resolution: Resolution,
    actor_id: int | None = None,
    value: Any = None,
    observed_at: datetime | None = None,
) -> dict[str, Any]:
    """Return the fields of an alert as resolved (by its last observation, or now)."""
    values: dict[str, Any] = {
        "status": AlertStatus.RESOLVED.value,
        "open_key": None,
        "snoozed_until": None,
        "resolved_at": max(observed_at or now, opened_at),
        "resolved_by": actor_id,
        "resolution": str(resolution),
        "updated_at": now,
    }
    if observed_at is not None:
        values.update(last_value=value, last_value_at=observed_at)
    return values


def insert_alerts(*, session: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    """Insert new alerts in one statement and give each row its id.

    SQLite cannot hand back the ids of a multi-row insert in order, so they are read back:
    the rows of this transaction are the newest ones of these fingerprints created `now`, and
    autoincrement ids follow the insertion order."""
    if not rows:
        return
    before = session.scalar(select(func.max(Alert.id))) or 0
    session.execute(insert(Alert), rows)
    ids = session.scalars(
        select(Alert.id)
        .where(
            Alert.id > before,
            Alert.created_at == now,
            Alert.fingerprint.in_(sorted({row["fingerprint"] for row in rows})),
        )
        .order_by(Alert.id)
    ).all()
    if len(ids) != len(rows):
        raise RuntimeError("alerts written concurrently: the batch is retried")
    for row, alert_id in zip(rows, ids, strict=True):
        row["id"] = alert_id


def resolve(
    *,
    session: Session,
    alert: Alert,
    now: datetime,
    resolution: Resolution,
    actor: Principal | None = None,
    note: str | None = None,
) -> AlertEvent:
    """Resolve an alert by hand or with its rule (the engine resolves in bulk)."""
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict("alerts.alert.resolved", id=alert.id)
    fields = resolved_values(
        opened_at=alert.opened_at, now=now, resolution=resolution, actor_id=actor_of(actor)[0]
    )
    for name, value in fields.items():
        setattr(alert, name, value)
    event = add_event(
        session=session,
        alert=alert,
        kind=AlertEventKind.RESOLVED,
        at=now,
        actor=actor,
        note=note,
        details={"resolution": str(resolution)},
    )
    session.flush()
    return event


def get_open_by_keys(*, session: Session, keys: Iterable[str]) -> dict[str, Alert]:
    """Return the alerts not yet resolved with these fingerprints, by fingerprint."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.scalars(select(Alert).where(Alert.open_key.in_(wanted)))
    return {str(alert.open_key): alert for alert in rows}


def get_alerts(*, session: Session, ids: Iterable[int]) -> dict[int, Alert]:
    """Return alerts by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {alert.id: alert for alert in session.scalars(select(Alert).where(Alert.id.in_(wanted)))}


def event_row(
    *,
    alert: Alert | Mapping[str, Any],
    kind: AlertEventKind,
    at: datetime,
    value: Any = None,
    observed_at: datetime | None = None,
    correlation_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a history entry of an alert (a stored one, or a new one's row) as a row."""

    def get(name: str) -> Any:
        return alert[name] if isinstance(alert, Mapping) else getattr(alert, name)

    return {
        "alert_id": get("id"),
        "kind": str(kind),
        "at": at,
        "actor_id": None,
        "actor_name": None,
        "value": value,
        "observed_at": observed_at,
        "tenant": get("tenant"),
        "entity_id": get("entity_id"),
        "attribute": get("attribute"),
        "correlation_id": correlation_id,
        "note": None,
        "details": details,
    }


def add_events(*, session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Append history entries in one statement."""
    if rows:
        session.execute(insert(AlertEvent), list(rows))


# --- engine state ----------------------------------------------------------------------------


def get_states(*, session: Session) -> list[RuleState]:
    """Return every stored rule state of enabled rules."""
    return list(
        session.scalars(
            select(RuleState)
            .join(AlertRule, AlertRule.id == RuleState.rule_id)
            .where(AlertRule.enabled.is_(True))
        )
    )


def upsert_states(*, session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write rule states in one statement (insert, or update the row of the same key)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RuleState)
    statement = statement.on_conflict_do_update(
        index_elements=["rule_id", "tenant", "entity_id"],
        set_={
            name: statement.excluded[name]
            for name in (
                "active",
                "pending_since",
                "alert_id",
                "last_value",
                "last_observed_at",
                "data",
                "updated_at",
            )
        },
    )
    session.execute(statement, list(rows))


def delete_states(*, session: Session, rule_id: int) -> None:
    """Forget what the engine remembers of a rule."""
    session.execute(delete(RuleState).where(RuleState.rule_id == rule_id))
