"""Database work of the notify context: preferences, webhooks and the delivery log.

Services flush, never commit; the request or the job owns the transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cityops.core import outbox
from cityops.core.clock import Clock
from cityops.core.errors import Invalid
from cityops.core.security import Scope
from cityops.notify.enums import Channel
from cityops.notify.models import NotifyPreference, Webhook
from cityops.notify.schemas import PreferenceUpdate, WebhookCreate, WebhookUpdate
from cityops.units import service as unit_service

SECRET_MARK = "whsec_"  # noqa: S105 - the prefix of generated secrets, not a secret
# Vietnamese mobile numbers: 0 or +84/84, then 9 digits starting 3, 5, 7, 8 or 9.
_MOBILE = re.compile(r"^(?:\+84|84|0)([35789][0-9]{8})$")
_SEPARATORS = re.compile(r"[ .()-]")


def field_error(field: str, key: str, /, **params: Any) -> dict[str, Any]:
    """Describe one field's problem by message key (rendered in the caller's language)."""
    return {"field": field, "in": "body", "key": key, "params": params}


def normalize_phone(text: str) -> str | None:
    """Return a Vietnamese mobile number as E.164 (+84…), or None if it is not one."""
    match = _MOBILE.fullmatch(_SEPARATORS.sub("", text))
    return f"+84{match.group(1)}" if match else None


def national_phone(e164: str) -> str:
    """Return an E.164 Vietnamese number in national form (0…)."""
    return "0" + e164.removeprefix("+84")


# --- preferences -----------------------------------------------------------------------------


def get_preference(*, session: Session, user_id: int) -> NotifyPreference | None:
    """Return a user's preferences, or None when they never set any."""
    return session.get(NotifyPreference, user_id)


def get_all_preferences(*, session: Session) -> list[NotifyPreference]:
    """Return every stored preference row (for the routing directory)."""
    return list(session.scalars(select(NotifyPreference)).all())


def set_preference(
    *,
    session: Session,
    user_id: int,
    user_email: str | None,
    preference_in: PreferenceUpdate,
    available: Collection[str],
    clock: Clock,
) -> NotifyPreference:
    """Replace a user's preferences after checking addresses, channels and quiet hours."""
    errors: list[dict[str, Any]] = []
    phone: str | None = None
    if preference_in.phone is not None:
        phone = normalize_phone(preference_in.phone)
        if phone is None:
            errors.append(field_error("phone", "notify.preference.phone_invalid"))
    for index, channel in enumerate(preference_in.channels):
        where = f"channels[{index}]"
        if channel not in available:
            errors.append(field_error(where, "notify.preference.channel_off", channel=channel))
        elif channel is Channel.EMAIL and not user_email:
            errors.append(field_error(where, "notify.preference.no_email"))
        elif channel is Channel.SMS and preference_in.phone is None:
            errors.append(field_error(where, "notify.preference.no_phone"))
        elif channel is Channel.ZALO and preference_in.zalo_user_id is None:
            errors.append(field_error(where, "notify.preference.no_zalo"))
    start, end = preference_in.quiet_start, preference_in.quiet_end
    if (start is None) != (end is None):
        missing = "quiet_end" if end is None else "quiet_start"
        errors.append(field_error(missing, "notify.preference.quiet_pair"))
    elif start is not None and start == end:
        errors.append(field_error("quiet_end", "notify.preference.quiet_empty"))
    if errors:
        raise Invalid("notify.preference.invalid", errors=errors, count=len(errors))
    row = get_preference(session=session, user_id=user_id)
    if row is None:
        row = NotifyPreference(user_id=user_id)
        session.add(row)
    row.events = [str(kind) for kind in preference_in.events]
    row.channels = [str(channel) for channel in preference_in.channels]
    row.phone = phone
    row.zalo_user_id = preference_in.zalo_user_id
    row.min_severity = str(preference_in.min_severity)
    row.quiet_start, row.quiet_end = start, end
    row.only_mine = preference_in.only_mine
    row.updated_at = clock.now()
    session.flush()
    return row


def delete_preference(*, session: Session, user_id: int) -> None:
    """Forget a user's preferences: the defaults apply again."""
    row = get_preference(session=session, user_id=user_id)
    if row is not None:
        session.delete(row)
        session.flush()


# --- webhooks --------------------------------------------------------------------------------


def new_secret() -> str:
    """Return a fresh webhook signing secret."""
    return SECRET_MARK + secrets.token_urlsafe(32)


def get_webhook(*, session: Session, webhook_id: int) -> Webhook | None:
    """Return a webhook by id."""
    return session.get(Webhook, webhook_id)


def get_all_webhooks(
    *,
    session: Session,
    scope: Scope | None = None,
    enabled: bool | None = None,
    limit: int | None = 50,
    offset: int = 0,
) -> tuple[list[Webhook], int]:
    """Return one page of the webhooks within a scope (None: all), and how many match."""
    conditions = []
    if scope is not None:
        conditions += [
            scope.unit_filter(Webhook.unit_code),
            scope.department_filter(Webhook.department_code),
        ]
    if enabled is not None:
        conditions.append(Webhook.enabled.is_(enabled))
    total = session.scalar(select(func.count()).select_from(Webhook).where(*conditions)) or 0
    query = select(Webhook).where(*conditions).order_by(Webhook.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query).all()), int(total)


def _check_filters(*, session: Session, unit_code: str | None, department_code: str | None) -> None:
    errors = []
    if unit_code is not None and unit_service.get(session=session, unit_code=unit_code) is None:
        errors.append(field_error("unit_code", "notify.webhook.unknown_unit", code=unit_code))
    if (
        department_code is not None
        and unit_service.get_department(session=session, department_code=department_code) is None
    ):
        key = "notify.webhook.unknown_department"
        errors.append(field_error("department_code", key, code=department_code))
    if errors:
        raise Invalid("notify.webhook.invalid", errors=errors, count=len(errors))


def create_webhook(
    *, session: Session, webhook_in: WebhookCreate, clock: Clock
) -> tuple[Webhook, str]:
    """Create a webhook; return it and its secret (the only time the secret is returned)."""
    _check_filters(
        session=session, unit_code=webhook_in.unit_code, department_code=webhook_in.department_code
    )
    now = clock.now()
    secret = new_secret()
    webhook = Webhook(
        name=webhook_in.name,
        url=webhook_in.url,
        secret=secret,
        event_types=list(webhook_in.event_types),
        unit_code=webhook_in.unit_code,
        department_code=webhook_in.department_code,
        enabled=webhook_in.enabled,
        created_at=now,
        updated_at=now,
    )
    session.add(webhook)
    session.flush()
    return webhook, secret


def update_webhook(
    *, session: Session, webhook: Webhook, webhook_in: WebhookUpdate, clock: Clock
) -> Webhook:
    """Change a webhook's name, URL, event types, filters or state."""
    changes = webhook_in.model_dump(exclude_unset=True)
    for field in ("name", "url", "event_types", "enabled"):
        if field in changes and changes[field] is None:
            del changes[field]  # these cannot be empty: an explicit null leaves them as they are
    _check_filters(
        session=session,
        unit_code=changes.get("unit_code", webhook.unit_code),
        department_code=changes.get("department_code", webhook.department_code),
    )
    for field, value in changes.items():
        setattr(webhook, field, value)
    if session.is_modified(webhook):
        webhook.updated_at = clock.now()
    session.flush()
    return webhook


def rotate_webhook_secret(*, session: Session, webhook: Webhook, clock: Clock) -> str:
    """Give a webhook a new secret; return it (messages already queued keep the old signature)."""
    secret = new_secret()
    webhook.secret = secret
    webhook.updated_at = clock.now()
    session.flush()
    return secret


def delete_webhook(*, session: Session, webhook: Webhook) -> None:
    """Delete a webhook."""
    session.delete(webhook)
    session.flush()


def record_webhook_result(
    *, session: Session, webhook_id: int, ok: bool, error: str | None, at: datetime
) -> None:
    """Note how a delivery to a webhook went (a delivery-state write, not an audited edit)."""
    values: dict[str, Any] = (
        {"last_success_at": at} if ok else {"last_failure_at": at, "last_error": error}
    )
    session.execute(update(Webhook).where(Webhook.id == webhook_id).values(**values))


# --- the delivery log (the core outbox) ------------------------------------------------------


def get_delivery(*, session: Session, delivery_id: int) -> outbox.OutboxMessage | None:
    """Return one outbox message."""
    return session.get(outbox.OutboxMessage, delivery_id)


def get_all_deliveries(
    *,
    session: Session,
    status: str | None = None,
    channel: str | None = None,
    source: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[outbox.OutboxMessage], int]:
    """Return one page of the delivery log, newest first, and how many match."""
    return outbox.get_all(
        session=session,
        status=status,
        channel=channel,
        source=source,
        limit=limit,
        offset=offset,
    )


def get_last_delivery(*, session: Session, owner: str, source: str) -> outbox.OutboxMessage | None:
    """Return the newest message of an owner from a source."""
    return session.scalars(
        select(outbox.OutboxMessage)
        .where(outbox.OutboxMessage.owner == owner, outbox.OutboxMessage.source == source)
        .order_by(outbox.OutboxMessage.id.desc())
        .limit(1)
    ).first()


def cancel_pending(*, session: Session, owner: str, reason: str, at: datetime) -> int:
    """Mark an owner's undelivered messages failed (their endpoint is gone); return how many."""
    result = session.execute(
        update(outbox.OutboxMessage)
        .where(outbox.OutboxMessage.owner == owner, outbox.OutboxMessage.status == outbox.PENDING)
        .values(status=outbox.FAILED, last_error=reason[:500], last_attempt_at=at)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
