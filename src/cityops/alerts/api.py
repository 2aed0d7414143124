"""Routes of the alerts context: rules (CRUD and YAML import) and alerts (list, read with
history, acknowledge, snooze, resolve), every alert filtered by the caller's scope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status

from cityops.alerts import flows, service
from cityops.alerts.enums import AlertStatus, RuleKind, Severity
from cityops.alerts.models import Alert, AlertRule
from cityops.alerts.schemas import (
    AcknowledgeIn,
    AlertDetail,
    AlertEventRead,
    AlertPage,
    AlertRead,
    ImportResult,
    ResolveIn,
    RuleCreate,
    RulePage,
    RuleRead,
    RuleUpdate,
    SnoozeIn,
)
from cityops.core.deps import MAX_ID, Limit, Offset, RuntimeDep, SessionDep
from cityops.core.errors import DomainError, Invalid, NotFound
from cityops.core.schemas import SINGLE_LINE, Instant
from cityops.core.security import Permission, Principal, require
from cityops.units import service as unit_service

router = APIRouter()

RuleId = Annotated[int, Path(ge=1, le=MAX_ID)]
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]
RuleReader = Annotated[Principal, Depends(require(Permission.RULE_READ))]
RuleAdmin = Annotated[Principal, Depends(require(Permission.RULE_ADMIN))]
AlertReader = Annotated[Principal, Depends(require(Permission.ALERT_READ))]
AlertManager = Annotated[Principal, Depends(require(Permission.ALERT_MANAGE))]
Text = Annotated[str | None, Query(max_length=100, pattern=SINGLE_LINE)]
YAML_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml"})


class UnsupportedMediaType(DomainError):
    """The body is not in a media type the route reads."""

    status, slug, title_key = 415, "unsupported-media-type", "error.unsupported_media_type"


class PayloadTooLarge(DomainError):
    """The body is larger than the route accepts."""

    status, slug, title_key = 413, "payload-too-large", "error.payload_too_large"


# --- rules -----------------------------------------------------------------------------------


def _rule(session: SessionDep, rule_id: int) -> AlertRule:
    rule = service.get(session=session, rule_id=rule_id)
    if rule is None:
        raise NotFound("alerts.rule.not_found", id=rule_id)
    return rule


@router.get("/rules", tags=["rules"], summary="List alert rules", response_model=RulePage)
def list_rules(
    session: SessionDep,
    _principal: RuleReader,
    kind: RuleKind | None = None,
    entity_type: Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_]+$")] = None,
    attribute: Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_]+$")] = None,
    severity: Severity | None = None,
    sector: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z0-9_]+$")] = None,
    enabled: bool | None = None,
    q: Text = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> RulePage:
    """List rules, optionally by kind, entity type, attribute, severity, sector or state."""
    rules, total = service.get_all(
        session=session,
        kind=kind,
        entity_type=entity_type,
        attribute=attribute,
        severity=severity,
        sector=sector,
        enabled=enabled,
        q=q,
        limit=limit,
        offset=offset,
    )
    return RulePage(
        items=[RuleRead.model_validate(r) for r in rules], total=total, limit=limit, offset=offset
    )


@router.post(
    "/rules",
    tags=["rules"],
    summary="Create an alert rule",
    response_model=RuleRead,
    status_code=status.HTTP_201_CREATED,
)
def create_rule(
    rule_in: RuleCreate, session: SessionDep, runtime: RuntimeDep, principal: RuleAdmin
) -> RuleRead:
    """Create a rule; an invalid one is refused with the reason (422)."""
    rule = flows.create_rule(runtime=runtime, session=session, rule_in=rule_in, principal=principal)
    return RuleRead.model_validate(rule)


_IMPORT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "string", "maxLength": flows.MAX_IMPORT_BYTES}}
            for media in ("application/yaml", "text/yaml")
        },
    }
}


async def _yaml_body(request: Request) -> str:
    """Read the body as YAML text, refusing other media types, large bodies and bad encodings."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in YAML_TYPES:
        raise UnsupportedMediaType("alerts.import.media_type")
    raw = await request.body()
    if len(raw) > flows.MAX_IMPORT_BYTES:
        raise PayloadTooLarge("alerts.import.too_large", max=flows.MAX_IMPORT_BYTES)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(
            "alerts.import.encoding",
            errors=[service.field_error("body", "alerts.import.encoding")],
        ) from None


YamlBody = Annotated[str, Depends(_yaml_body)]


@router.post(
    "/rules/import",
    tags=["rules"],
    summary="Import rules from YAML (all or nothing)",
    response_model=ImportResult,
    openapi_extra=_IMPORT_DOC,
    responses={422: {"description": "Invalid rules, each with its index, code and reason"}},
)
def import_rules(
    text: YamlBody, session: SessionDep, runtime: RuntimeDep, principal: RuleAdmin
) -> ImportResult:
    """Create new codes and replace known ones; one invalid rule refuses the whole file."""
    return flows.import_rules(runtime=runtime, session=session, text=text, principal=principal)


@router.get(
    "/rules/{rule_id}", tags=["rules"], summary="Read an alert rule", response_model=RuleRead
)
def read_rule(rule_id: RuleId, session: SessionDep, _principal: RuleReader) -> RuleRead:
    """Return one rule."""
    return RuleRead.model_validate(_rule(session, rule_id))


@router.patch(
    "/rules/{rule_id}", tags=["rules"], summary="Change an alert rule", response_model=RuleRead
)
def update_rule(
    rule_id: RuleId,
    rule_in: RuleUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: RuleAdmin,
) -> RuleRead:
    """Change a rule; disabling it (or changing its kind) resolves its open alerts."""
    rule = flows.update_rule(
        runtime=runtime,
        session=session,
        rule=_rule(session, rule_id),
        rule_in=rule_in,
        principal=principal,
    )
    return RuleRead.model_validate(rule)


@router.delete(
    "/rules/{rule_id}",
    tags=["rules"],
    summary="Delete an alert rule",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_rule(
    rule_id: RuleId, session: SessionDep, runtime: RuntimeDep, principal: RuleAdmin
) -> Response:
    """Delete a rule (not one a composite names); its alerts keep their history."""
    flows.delete_rule(
        runtime=runtime, session=session, rule=_rule(session, rule_id), principal=principal
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- alerts ----------------------------------------------------------------------------------


def _alert_in_scope(session: SessionDep, principal: Principal, alert_id: int) -> Alert:
    alert = service.get_alert(session=session, alert_id=alert_id)
    if alert is None or not principal.scope.covers(
        unit_code=alert.unit_code, department_code=alert.department_code
    ):
        # Out of scope looks the same as absent.
        raise NotFound("alerts.alert.not_found", id=alert_id)
    return alert


def _detail(session: SessionDep, alert: Alert) -> AlertDetail:
    history = []
    for event in service.get_history(session=session, alert_id=alert.id):
        item = AlertEventRead.model_validate(event)
        item.observation = service.observation_link(
            entity_id=event.entity_id, attribute=event.attribute, observed_at=event.observed_at
        )
        history.append(item)
    return AlertDetail(**AlertRead.model_validate(alert).model_dump(), history=history)


@router.get("/alerts", tags=["alerts"], summary="List alerts", response_model=AlertPage)
def list_alerts(
    session: SessionDep,
    principal: AlertReader,
    alert_status: Annotated[list[AlertStatus] | None, Query(alias="status", max_length=4)] = None,
    severity: Annotated[list[Severity] | None, Query(max_length=4)] = None,
    rule: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_.-]+$")] = None,
    unit: Annotated[str | None, Query(max_length=16, pattern=r"^[0-9A-Za-z_-]+$")] = None,
    area: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9-]+$")] = None,
    entity: Annotated[str | None, Query(max_length=256, pattern=SINGLE_LINE)] = None,
    sector: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z0-9_]+$")] = None,
    since: Annotated[Instant | None, Query(description="Opened at or after.")] = None,
    until: Annotated[Instant | None, Query(description="Opened before.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AlertPage:
    """List the alerts in the caller's scope, newest first. `unit` includes its descendants
    and, for a legacy unit, the current units formed from it."""
    units: frozenset[str] | None = None
    if unit is not None:
        units = flows.unit_reach(session, unit)
    if area is not None:
        members = unit_service.get_area_unit_codes(session=session, area_code=area) or frozenset()
        units = members if units is None else units & members
    alerts, total = service.get_all_alerts(
        session=session,
        scope=principal.scope,
        status=alert_status,
        severity=severity,
        rule_code=rule,
        unit_codes=units,
        entity_id=entity,
        sector=sector,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return AlertPage(
        items=[AlertRead.model_validate(a) for a in alerts], total=total, limit=limit, offset=offset
    )


@router.get(
    "/alerts/{alert_id}",
    tags=["alerts"],
    summary="Read an alert with its history",
    response_model=AlertDetail,
)
def read_alert(alert_id: AlertId, session: SessionDep, principal: AlertReader) -> AlertDetail:
    """Return one alert in the caller's scope, with its history and links to the observations
    that raised and cleared it."""
    return _detail(session, _alert_in_scope(session, principal, alert_id))


@router.post(
    "/alerts/{alert_id}/acknowledge",
    tags=["alerts"],
    summary="Acknowledge an alert",
    response_model=AlertDetail,
)
def acknowledge_alert(
    alert_id: AlertId,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AlertManager,
    body: Annotated[AcknowledgeIn | None, Body()] = None,
) -> AlertDetail:
    """Say someone is on it."""
    alert = _alert_in_scope(session, principal, alert_id)
    flows.acknowledge_alert(
        runtime=runtime,
        session=session,
        alert=alert,
        principal=principal,
        note=body.note if body else None,
    )
    return _detail(session, alert)


@router.post(
    "/alerts/{alert_id}/snooze",
    tags=["alerts"],
    summary="Snooze an alert",
    response_model=AlertDetail,
)
def snooze_alert(
    alert_id: AlertId,
    body: SnoozeIn,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AlertManager,
) -> AlertDetail:
    """Snooze for some minutes or until a time; it still resolves by itself if it clears."""
    alert = _alert_in_scope(session, principal, alert_id)
    flows.snooze_alert(
        runtime=runtime,
        session=session,
        alert=alert,
        principal=principal,
        minutes=body.minutes,
        until=body.until,
        note=body.note,
    )
    return _detail(session, alert)


@router.post(
    "/alerts/{alert_id}/resolve",
    tags=["alerts"],
    summary="Resolve an alert by hand",
    response_model=AlertDetail,
)
def resolve_alert(
    alert_id: AlertId,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AlertManager,
    body: Annotated[ResolveIn | None, Body()] = None,
) -> AlertDetail:
    """Resolve with a note; a new alert opens only once the condition clears and holds again."""
    alert = _alert_in_scope(session, principal, alert_id)
    flows.resolve_alert(
        runtime=runtime,
        session=session,
        alert=alert,
        principal=principal,
        note=body.note if body else None,
    )
    return _detail(session, alert)
