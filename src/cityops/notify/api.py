"""Routes of the notify context: one's own preferences, webhooks, the delivery log, tests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from cityops.auth import service as auth_service
from cityops.core import outbox
from cityops.core.deps import MAX_ID, Limit, Offset, RuntimeDep, SessionDep
from cityops.core.errors import Conflict, Forbidden, NotFound
from cityops.core.security import CurrentPrincipal, Permission, Principal, require
from cityops.notify import channels, flows, service
from cityops.notify.enums import DeliveryStatus
from cityops.notify.models import Webhook
from cityops.notify.schemas import (
    DeliveryPage,
    DeliveryRead,
    PreferenceRead,
    PreferenceUpdate,
    TestMessageCreate,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookRead,
    WebhookUpdate,
)

router = APIRouter()

AdminPrincipal = Annotated[Principal, Depends(require(Permission.NOTIFY_ADMIN))]
WebhookId = Annotated[int, Path(ge=1, le=MAX_ID)]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID)]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _user_id(principal: Principal) -> int:
    if principal.kind != "user":
        raise Forbidden("notify.users_only")
    return principal.id


def _preference_read(*, session: SessionDep, runtime: RuntimeDep, user_id: int) -> PreferenceRead:
    row = service.get_preference(session=session, user_id=user_id)
    prefs = flows.preferences_of(row)
    return PreferenceRead(
        user_id=user_id,
        events=sorted(prefs.events),
        channels=list(prefs.channels),
        phone=prefs.phone,
        zalo_user_id=prefs.zalo_user_id,
        min_severity=prefs.min_severity,
        quiet_start=prefs.quiet_start,
        quiet_end=prefs.quiet_end,
        only_mine=prefs.only_mine,
        is_default=prefs.is_default,
        time_zone=runtime.settings.timezone,
        available_channels=flows.available_channels(runtime.settings),
        updated_at=row.updated_at if row is not None else None,
    )


# --- one's own preferences -------------------------------------------------------------------


@router.get(
    "/me/notification-preferences",
    tags=["notifications"],
    summary="Read one's notification preferences",
    response_model=PreferenceRead,
)
def read_my_preferences(
    session: SessionDep, runtime: RuntimeDep, principal: CurrentPrincipal
) -> PreferenceRead:
    """Return the caller's preferences in force (the defaults if they never set any)."""
    return _preference_read(session=session, runtime=runtime, user_id=_user_id(principal))


@router.put(
    "/me/notification-preferences",
    tags=["notifications"],
    summary="Set one's notification preferences",
    response_model=PreferenceRead,
)
def set_my_preferences(
    preference_in: PreferenceUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
) -> PreferenceRead:
    """Replace the caller's preferences: kinds, channels, addresses, severity, quiet hours."""
    user_id = _user_id(principal)
    user = auth_service.get(session=session, user_id=user_id)
    if user is None:
        raise Forbidden("notify.users_only")
    service.set_preference(
        session=session,
        user_id=user_id,
        user_email=user.email,
        preference_in=preference_in,
        available=flows.available_channels(runtime.settings),
        clock=runtime.clock,
    )
    return _preference_read(session=session, runtime=runtime, user_id=user_id)


@router.delete(
    "/me/notification-preferences",
    tags=["notifications"],
    summary="Go back to the default notification preferences",
    status_code=status.HTTP_204_NO_CONTENT,
)
def reset_my_preferences(session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Forget the caller's preferences: the defaults apply again."""
    service.delete_preference(session=session, user_id=_user_id(principal))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/notifications/test",
    tags=["notifications"],
    summary="Send oneself a test notification",
    response_model=DeliveryRead,
    status_code=status.HTTP_202_ACCEPTED,
)
def send_test_message(
    message_in: TestMessageCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
) -> DeliveryRead:
    """Queue a test message to the caller's own address on a channel (one a minute)."""
    _user_id(principal)
    queued = flows.send_test(
        runtime=runtime, session=session, principal=principal, channel=message_in.channel
    )
    return delivery_read(queued)


# --- webhooks --------------------------------------------------------------------------------


def _webhook_in_scope(*, session: SessionDep, principal: Principal, webhook_id: int) -> Webhook:
    webhook = service.get_webhook(session=session, webhook_id=webhook_id)
    if webhook is None or not principal.scope.covers(
        unit_code=webhook.unit_code, department_code=webhook.department_code
    ):
        # Out of scope looks the same as absent.
        raise NotFound("notify.webhook.not_found", id=webhook_id)
    return webhook


def _created(webhook: Webhook, secret: str, response: Response) -> WebhookCreated:
    response.headers.update(NO_STORE)
    return WebhookCreated(**WebhookRead.model_validate(webhook).model_dump(), secret=secret)


@router.get(
    "/notifications/webhooks",
    tags=["notifications"],
    summary="List webhooks",
    response_model=WebhookPage,
)
def list_webhooks(
    session: SessionDep, principal: AdminPrincipal, limit: Limit = 50, offset: Offset = 0
) -> WebhookPage:
    """List the webhooks in the caller's scope (never their secrets)."""
    webhooks, total = service.get_all_webhooks(
        session=session, scope=principal.scope, limit=limit, offset=offset
    )
    return WebhookPage(
        items=[WebhookRead.model_validate(w) for w in webhooks],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/notifications/webhooks",
    tags=["notifications"],
    summary="Create a webhook (its signing secret is shown this once)",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
)
def create_webhook(
    webhook_in: WebhookCreate,
    response: Response,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AdminPrincipal,
) -> WebhookCreated:
    """Create a webhook receiving signed events of the chosen types, within the caller's scope."""
    principal.check_scope(
        unit_code=webhook_in.unit_code, department_code=webhook_in.department_code
    )
    webhook, secret = service.create_webhook(
        session=session, webhook_in=webhook_in, clock=runtime.clock
    )
    return _created(webhook, secret, response)


@router.get(
    "/notifications/webhooks/{webhook_id}",
    tags=["notifications"],
    summary="Read a webhook",
    response_model=WebhookRead,
)
def read_webhook(
    webhook_id: WebhookId, session: SessionDep, principal: AdminPrincipal
) -> WebhookRead:
    """Return one webhook and how its last deliveries went."""
    return WebhookRead.model_validate(
        _webhook_in_scope(session=session, principal=principal, webhook_id=webhook_id)
    )


@router.patch(
    "/notifications/webhooks/{webhook_id}",
    tags=["notifications"],
    summary="Update a webhook",
    response_model=WebhookRead,
)
def update_webhook(
    webhook_id: WebhookId,
    webhook_in: WebhookUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AdminPrincipal,
) -> WebhookRead:
    """Change a webhook's name, URL, event types, filters, or pause it."""
    webhook = _webhook_in_scope(session=session, principal=principal, webhook_id=webhook_id)
    webhook = service.update_webhook(
        session=session, webhook=webhook, webhook_in=webhook_in, clock=runtime.clock
    )
    principal.check_scope(unit_code=webhook.unit_code, department_code=webhook.department_code)
    return WebhookRead.model_validate(webhook)


@router.delete(
    "/notifications/webhooks/{webhook_id}",
    tags=["notifications"],
    summary="Delete a webhook",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_webhook(
    webhook_id: WebhookId, session: SessionDep, runtime: RuntimeDep, principal: AdminPrincipal
) -> Response:
    """Delete a webhook; what was still queued for it is given up."""
    webhook = _webhook_in_scope(session=session, principal=principal, webhook_id=webhook_id)
    flows.delete_webhook(runtime=runtime, session=session, webhook=webhook)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/notifications/webhooks/{webhook_id}/rotate-secret",
    tags=["notifications"],
    summary="Give a webhook a new signing secret (shown this once)",
    response_model=WebhookCreated,
)
def rotate_webhook_secret(
    webhook_id: WebhookId,
    response: Response,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: AdminPrincipal,
) -> WebhookCreated:
    """Replace a webhook's secret; new messages are signed with it."""
    webhook = _webhook_in_scope(session=session, principal=principal, webhook_id=webhook_id)
    secret = service.rotate_webhook_secret(session=session, webhook=webhook, clock=runtime.clock)
    return _created(webhook, secret, response)


@router.post(
    "/notifications/webhooks/{webhook_id}/test",
    tags=["notifications"],
    summary="Send a signed test event to a webhook",
    response_model=DeliveryRead,
    status_code=status.HTTP_202_ACCEPTED,
)
def test_webhook(
    webhook_id: WebhookId, session: SessionDep, runtime: RuntimeDep, principal: AdminPrincipal
) -> DeliveryRead:
    """Queue a `notify.test` event to the webhook, signed like every other."""
    webhook = _webhook_in_scope(session=session, principal=principal, webhook_id=webhook_id)
    return delivery_read(flows.send_webhook_test(runtime=runtime, session=session, webhook=webhook))


# --- the delivery log ------------------------------------------------------------------------


def delivery_read(message: outbox.OutboxMessage) -> DeliveryRead:
    """Return a delivery as shown: no body, no headers, no credentials in the target."""
    return DeliveryRead(
        id=message.id,
        channel=message.channel,
        source=message.source,
        source_ref=message.source_ref,
        owner=message.owner,
        target=channels.redact_target(message.target),
        status=DeliveryStatus(message.status),
        attempts=message.attempts,
        max_attempts=message.max_attempts,
        created_at=message.created_at,
        next_attempt_at=message.next_attempt_at,
        last_attempt_at=message.last_attempt_at,
        delivered_at=message.delivered_at,
        last_status=message.last_status,
        last_error=message.last_error,
    )


def _global_admin(principal: AdminPrincipal) -> Principal:
    # Outbox messages carry no unit: only a province-wide administrator reads the whole log.
    if not principal.scope.is_global:
        raise Forbidden("notify.delivery.global_only")
    return principal


LogPrincipal = Annotated[Principal, Depends(_global_admin)]
Code = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


@router.get(
    "/notifications/deliveries",
    tags=["notifications"],
    summary="Read the delivery log",
    response_model=DeliveryPage,
)
def list_deliveries(
    session: SessionDep,
    _principal: LogPrincipal,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    channel: Code = None,
    source: Code = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeliveryPage:
    """List outbox messages, newest first: attempts, last status and error of each."""
    messages, total = service.get_all_deliveries(
        session=session,
        status=delivery_status,
        channel=channel,
        source=source,
        limit=limit,
        offset=offset,
    )
    return DeliveryPage(
        items=[delivery_read(m) for m in messages], total=total, limit=limit, offset=offset
    )


@router.post(
    "/notifications/deliveries/{delivery_id}/retry",
    tags=["notifications"],
    summary="Retry a delivery now",
    response_model=DeliveryRead,
)
def retry_delivery(
    delivery_id: DeliveryId, session: SessionDep, runtime: RuntimeDep, _principal: LogPrincipal
) -> DeliveryRead:
    """Put a failed or waiting message back at the head of the queue (three more attempts)."""
    message = service.get_delivery(session=session, delivery_id=delivery_id)
    if message is None:
        raise NotFound("notify.delivery.not_found", id=delivery_id)
    if message.status == outbox.DELIVERED:
        raise Conflict("notify.delivery.delivered", id=delivery_id)
    outbox.retry_now(session=session, message_id=delivery_id, now=runtime.clock.now())
    session.refresh(message)
    return delivery_read(message)
