"""Orchestration of the notify context: who hears about an alert or incident event, and how.

`install(runtime)` subscribes `route_event` inside the publishing transaction to every
`alerts.*` and `incidents.*` event: the outbox rows of every notification are written in the
transaction that caused them, so a rolled-back change notifies nobody and a committed one is
delivered at least once.

Recipients of an event are the active users who
- hold the read permission of its family (ALERT_READ / INCIDENT_READ),
- and whose scope covers its unit and departments, or who are addressed by it (the incident's
  assignee; the escalation's `notify_user_ids`), whatever their scope,
- and whose preferences ask for its kind and severity (`only_mine`: only what is assigned to
  them or their department, or escalated to them). Being the one assigned, or an escalation
  target, is not optional: those messages go out whatever the kinds and severity chosen,
- minus the person who caused the event.
Each gets one message per chosen channel, in their language, held until the end of their quiet
hours unless it is critical. Webhooks get every matching event, signed.

Users and preferences are read through a short-lived directory (`Directory`), rebuilt when a
user, preference or webhook changes in this process and at least every `DIRECTORY_TTL` seconds
(for changes made by other processes), so routing does not scan the user table per event.
"""

from __future__ import annotations

import logging
import time as monotonic_time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Counter
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from cityops.auth import service as auth_service
from cityops.auth.enums import role_permissions
from cityops.core import outbox
from cityops.core.config import Settings
from cityops.core.errors import Forbidden, Invalid, TooManyRequests
from cityops.core.events import Event
from cityops.core.outbox import Delivery, Parcel
from cityops.core.outbox_smtp import smtp_configured
from cityops.core.runtime import Runtime
from cityops.core.security import GLOBAL_SCOPE, Principal, Scope
from cityops.notify import channels, service
from cityops.notify.enums import (
    DEFAULT_CHANNELS,
    DEFAULT_EVENTS,
    OUTBOX_CHANNELS,
    SEVERITY_RANK,
    SOURCE,
    TEST_SOURCE,
    WEBHOOK_CHANNEL,
    Channel,
    EventKind,
    Severity,
)
from cityops.notify.messages import Notice, Renderer, read_event
from cityops.notify.models import NotifyPreference, Webhook
from cityops.units import service as unit_service

log = logging.getLogger(__name__)

FAMILIES = ("alerts.", "incidents.")
DIRECTORY_KEY = "notify.directory"
METRICS_KEY = "notify.metrics"
# How long a directory built from the database is trusted without a local change.
DIRECTORY_TTL = 30.0
# Changes to these tables make the directory stale.
WATCHED_TABLES = frozenset({"auth_user", "notify_preference", "notify_webhook"})
_STALE = "notify.directory_stale"
# One test message per channel and user per minute: an SMS costs money.
TEST_INTERVAL = timedelta(minutes=1)
WEBHOOK_OWNER = "notify:webhook:"
QUIET_SUFFIX = ":quiet"


def owner_key(channel: str, recipient: int | str) -> str:
    """The outbox owner of a recipient's messages on a channel (delivered in order).

    Messages held by quiet hours use this key plus `:quiet`, in order among themselves.
    """
    return f"notify:{channel}:{recipient}"


# --- preferences in force --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prefs:
    """A user's preferences, as routing reads them."""

    events: frozenset[str]
    channels: tuple[str, ...]
    phone: str | None
    zalo_user_id: str | None
    min_severity: str
    quiet_start: str | None
    quiet_end: str | None
    only_mine: bool
    is_default: bool

    @property
    def min_rank(self) -> int:
        """The rank of the lowest severity wanted."""
        return SEVERITY_RANK.get(Severity(self.min_severity), 0)

    @property
    def quiet(self) -> tuple[time, time] | None:
        """The quiet-hours window (local start, end), if any."""
        if self.quiet_start is None or self.quiet_end is None:
            return None
        return time.fromisoformat(self.quiet_start), time.fromisoformat(self.quiet_end)


DEFAULT_PREFS = Prefs(
    events=frozenset(str(kind) for kind in DEFAULT_EVENTS),
    channels=tuple(str(channel) for channel in DEFAULT_CHANNELS),
    phone=None,
    zalo_user_id=None,
    min_severity=Severity.LOW,
    quiet_start=None,
    quiet_end=None,
    only_mine=True,
    is_default=True,
)


def preferences_of(row: NotifyPreference | None) -> Prefs:
    """Return the preferences in force for a stored row (the defaults for none)."""
    if row is None:
        return DEFAULT_PREFS
    return Prefs(
        events=frozenset(row.events or ()),
        channels=tuple(row.channels or ()),
        phone=row.phone,
        zalo_user_id=row.zalo_user_id,
        min_severity=row.min_severity,
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        only_mine=row.only_mine,
        is_default=False,
    )


def available_channels(settings: Settings) -> list[str]:
    """The channels this server can send through (configured in the settings)."""
    found = []
    if smtp_configured(settings):
        found.append(Channel.EMAIL.value)
    if settings.sms_gateway_url:
        found.append(Channel.SMS.value)
    if settings.zalo_gateway_url:
        found.append(Channel.ZALO.value)
    return found


def quiet_until(now: datetime, quiet: tuple[time, time] | None, zone: ZoneInfo) -> datetime | None:
    """Return when quiet hours end if `now` falls inside them (local window), else None."""
    if quiet is None:
        return None
    start, end = quiet
    local = now.astimezone(zone)
    moment = local.time().replace(tzinfo=None)
    inside = start <= moment < end if start < end else (moment >= start or moment < end)
    if not inside:
        return None
    until = datetime.combine(local.date(), end, tzinfo=zone)
    if until <= local:
        until += timedelta(days=1)
    return until.astimezone(UTC)


# --- the directory ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """An active user as routing needs them."""

    id: int
    full_name: str
    email: str | None
    language: str
    permissions: frozenset[str]
    scope: Scope
    department_code: str | None
    prefs: Prefs
    role: str = ""


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """An enabled webhook as routing needs it."""

    id: int
    url: str
    secret: str
    patterns: tuple[str, ...]
    unit_codes: frozenset[str] | None
    department_code: str | None


@dataclass(frozen=True)
class Directory:
    """A snapshot of who can be notified: users with preferences, unit names, webhooks."""

    recipients: tuple[Recipient, ...]
    unit_names: dict[str, tuple[str, str | None]]
    webhooks: tuple[WebhookTarget, ...]
    built_at: float


def build_directory(*, session: Session) -> Directory:
    """Read users, their scopes and preferences, unit names and enabled webhooks."""
    # Units first: resolving scopes then finds them in the session instead of one query each.
    units, _ = unit_service.get_all(session=session, limit=100_000)
    users = []
    offset = 0
    while True:
        page, total = auth_service.get_all(
            session=session, scope=GLOBAL_SCOPE, limit=1000, offset=offset
        )
        users.extend(page)
        offset += len(page)
        if not page or offset >= total:
            break
    prefs = {row.user_id: row for row in service.get_all_preferences(session=session)}
    # Scopes repeat (every officer of one ward shares one): resolve each distinct one once.
    scopes: dict[tuple[str | None, str | None, str | None], Scope] = {}
    recipients = []
    for user in users:
        if not user.is_active:
            continue
        key = (user.unit_code, user.area_code, user.department_code)
        scope = scopes.get(key)
        if scope is None:
            scope = scopes[key] = auth_service.resolve_scope(
                session=session,
                unit_code=user.unit_code,
                area_code=user.area_code,
                department_code=user.department_code,
            )
        recipients.append(
            Recipient(
                id=user.id,
                full_name=user.full_name,
                email=user.email,
                language=user.language,
                permissions=role_permissions(user.role),
                scope=scope,
                department_code=user.department_code,
                prefs=preferences_of(prefs.get(user.id)),
                role=user.role,
            )
        )
    webhooks, _ = service.get_all_webhooks(session=session, enabled=True, limit=None)
    subtrees: dict[str, frozenset[str]] = {}
    targets = []
    for hook in webhooks:
        unit_codes = None
        if hook.unit_code is not None:
            unit_codes = subtrees.get(hook.unit_code)
            if unit_codes is None:
                unit_codes = subtrees[hook.unit_code] = unit_service.get_subtree_codes(
                    session=session, unit_code=hook.unit_code
                )
        targets.append(
            WebhookTarget(
                id=hook.id,
                url=hook.url,
                secret=hook.secret,
                patterns=tuple(hook.event_types or ()),
                unit_codes=unit_codes,
                department_code=hook.department_code,
            )
        )
    return Directory(
        recipients=tuple(recipients),
        unit_names={unit.code: (unit.name, unit.name_en) for unit in units},
        webhooks=tuple(targets),
        built_at=monotonic_time.monotonic(),
    )


def get_directory(runtime: Runtime, session: Session) -> Directory:
    """Return the cached directory, rebuilding it when stale."""
    found = runtime.caches.get(DIRECTORY_KEY)
    if isinstance(found, Directory) and monotonic_time.monotonic() - found.built_at < DIRECTORY_TTL:
        return found
    directory = build_directory(session=session)
    runtime.caches[DIRECTORY_KEY] = directory
    return directory


def _watch_changes(runtime: Runtime) -> None:
    """Drop the directory when a transaction that changed users, preferences or webhooks ends."""
    factory = runtime.session_factory

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        if session.info.get(_STALE):
            return
        for obj in (*session.new, *session.dirty, *session.deleted):
            if getattr(obj, "__tablename__", None) in WATCHED_TABLES:
                session.info[_STALE] = True
                return

    def after_end(session: Session, *_args: Any) -> None:
        # Also on rollback: a directory read inside that transaction saw its changes.
        if session.info.pop(_STALE, False):
            runtime.caches.pop(DIRECTORY_KEY, None)

    sa_event.listen(factory, "before_flush", before_flush)
    sa_event.listen(factory, "after_commit", after_end)
    sa_event.listen(factory, "after_soft_rollback", after_end)


# --- routing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pick:
    """Why a recipient gets a notice: the kind written for them, and whether it is addressed."""

    recipient: Recipient
    kind: EventKind
    addressed: bool


def _in_scope(scope: Scope, notice: Notice) -> bool:
    if not scope.covers_unit(notice.unit_code):
        return False
    return scope.department_code is None or scope.department_code in notice.department_codes


def group_roles(settings: Settings, notice: Notice) -> frozenset[str]:
    """Return the roles of the named groups an alert's rule notifies (`notify_groups`)."""
    groups = settings.notify_groups
    return frozenset(role for name in notice.groups for role in groups.get(name, ()))


def choose(
    recipient: Recipient, notice: Notice, roles: frozenset[str] = frozenset()
) -> Pick | None:
    """Decide whether a user hears about a notice, and as which kind."""
    if recipient.id == notice.actor_id or notice.permission not in recipient.permissions:
        return None
    assignee = notice.assignee_id is not None and recipient.id == notice.assignee_id
    target = recipient.id in notice.notify_user_ids
    department = (
        notice.family == "incident"
        and recipient.department_code is not None
        and recipient.department_code in notice.department_codes
    )
    in_scope = _in_scope(recipient.scope, notice)
    if not (assignee or target or in_scope):
        return None
    # In a group the rule names ("ioc", "leaders"): the opening is addressed to them, and the
    # resolution is theirs too (only_mine does not hide it).
    grouped = in_scope and recipient.role in roles
    target = target or (grouped and notice.kind is EventKind.ALERT_OPENED)
    # Most specific first: "assigned to you" says more than "an incident changed".
    candidates: list[tuple[EventKind, bool]] = []
    if notice.assignment and (assignee or department):
        candidates.append((EventKind.INCIDENT_ASSIGNED, assignee))
    if notice.kind is not None:
        candidates.append(
            (
                notice.kind,
                target and notice.kind in (EventKind.ESCALATED, EventKind.ALERT_OPENED),
            )
        )
    prefs = recipient.prefs
    concerned = assignee or target or department or grouped
    for kind, addressed in candidates:
        if addressed:
            return Pick(recipient, kind, True)
        if kind not in prefs.events or SEVERITY_RANK[notice.severity] < prefs.min_rank:
            continue
        if prefs.only_mine and not concerned:
            continue
        return Pick(recipient, kind, False)
    return None


def _matches(hook: WebhookTarget, notice: Notice) -> bool:
    if not any(fnmatchcase(notice.event.type, pattern) for pattern in hook.patterns):
        return False
    if hook.unit_codes is not None and notice.unit_code not in hook.unit_codes:
        return False
    return hook.department_code is None or hook.department_code in notice.department_codes


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One outbox row to write."""

    channel: str
    owner: str
    target: str
    payload: bytes
    content_type: str
    headers: dict[str, str] | None = None
    not_before: datetime | None = None


def plan(
    *, runtime: Runtime, directory: Directory, notice: Notice, now: datetime
) -> list[Outgoing]:
    """Return the messages an event causes (people first, then webhooks); writes nothing."""
    settings = runtime.settings
    renderer = Renderer(
        notice=notice,
        translate=runtime.translate,
        settings=settings,
        unit_names=directory.unit_names,
        at=now,
    )
    available = set(available_channels(settings))
    zone = ZoneInfo(settings.timezone)
    rows: list[Outgoing] = []
    roles = group_roles(settings, notice)
    for recipient in directory.recipients:
        pick = choose(recipient, notice, roles)
        if pick is None:
            continue
        held = (
            None
            if notice.severity is Severity.CRITICAL
            else quiet_until(now, recipient.prefs.quiet, zone)
        )
        for channel in recipient.prefs.channels:
            if channel not in available:
                continue
            message = _message(
                settings=settings,
                renderer=renderer,
                recipient=recipient,
                kind=pick.kind,
                channel=Channel(channel),
            )
            if message is not None:
                rows.append(message if held is None else _hold(message, held))
    rows.extend(_webhook_messages(directory.webhooks, notice, now))
    return rows


def _hold(message: Outgoing, until: datetime) -> Outgoing:
    # Held messages queue under an owner of their own: the outbox keeps an owner's order, so
    # on the recipient's main owner a held message would also hold back a critical one.
    return Outgoing(
        channel=message.channel,
        owner=f"{message.owner}{QUIET_SUFFIX}",
        target=message.target,
        payload=message.payload,
        content_type=message.content_type,
        headers=message.headers,
        not_before=until,
    )


def _message(
    *,
    settings: Settings,
    renderer: Renderer,
    recipient: Recipient,
    kind: EventKind,
    channel: Channel,
) -> Outgoing | None:
    lang = recipient.language
    rendered = renderer.render(kind, lang)
    return _addressed(
        settings=settings,
        recipient=recipient,
        channel=channel,
        draft=(lambda: renderer.draft(kind, lang)),
        short=rendered.sms,
        long=rendered.zalo,
    )


def _addressed(
    *,
    settings: Settings,
    recipient: Recipient,
    channel: Channel,
    draft: Callable[[], channels.EmailDraft],
    short: str,
    long: str,
) -> Outgoing | None:
    """Write one message for a recipient on a channel; None if they have no address there."""
    owner = owner_key(channel, recipient.id)
    prefs = recipient.prefs
    if channel is Channel.EMAIL:
        if not recipient.email:
            return None
        return Outgoing(
            channel=OUTBOX_CHANNELS[channel],
            owner=owner,
            target=recipient.email,
            payload=draft().to(recipient.email, recipient.full_name),
            content_type="message/rfc822",
        )
    if channel is Channel.SMS:
        if not prefs.phone:
            return None
        values = {
            "phone": prefs.phone,
            "phone_national": service.national_phone(prefs.phone),
            "message": short,
        }
        return Outgoing(
            channel=OUTBOX_CHANNELS[channel],
            owner=owner,
            target=settings.sms_gateway_url,
            payload=channels.render_gateway(settings.sms_gateway_template, values),
            content_type="application/json",
        )
    if not prefs.zalo_user_id:
        return None
    values = {"zalo_user_id": prefs.zalo_user_id, "message": long}
    return Outgoing(
        channel=OUTBOX_CHANNELS[channel],
        owner=owner,
        target=settings.zalo_gateway_url,
        payload=channels.render_gateway(settings.zalo_gateway_template, values),
        content_type="application/json",
    )


def _webhook_messages(
    hooks: Iterable[WebhookTarget], notice: Notice, now: datetime
) -> list[Outgoing]:
    matching = [hook for hook in hooks if _matches(hook, notice)]
    if not matching:
        return []
    event = notice.event
    body = channels.webhook_body(
        event_type=event.type, at=event.at, data=dict(event.data), event_id=channels.new_event_id()
    )
    return [
        Outgoing(
            channel=WEBHOOK_CHANNEL,
            owner=f"{WEBHOOK_OWNER}{hook.id}",
            target=hook.url,
            payload=body,
            content_type="application/json",
            headers=channels.webhook_headers(
                secret=hook.secret, event_type=event.type, at=now, body=body
            ),
        )
        for hook in matching
    ]


def _write(
    *, session: Session, rows: Iterable[Outgoing], now: datetime, source: str, source_ref: str
) -> int:
    # One multi-row statement per event: a statement per message cost more than routing.
    return outbox.enqueue_many(
        session=session,
        now=now,
        messages=[
            outbox.Outgoing(
                channel=row.channel,
                owner=row.owner,
                source=source,
                source_ref=source_ref[:300],
                target=row.target,
                payload=row.payload,
                content_type=row.content_type,
                headers=row.headers,
                not_before=row.not_before,
            )
            for row in rows
        ],
    )


@dataclass(frozen=True, slots=True)
class Planned:
    """The notifications one event causes, ready to write."""

    rows: list[Outgoing]
    now: datetime
    source_ref: str

    def write(self, session: Session) -> int:
        """Queue the rows in the session's transaction; return how many."""
        return _write(
            session=session, rows=self.rows, now=self.now, source=SOURCE, source_ref=self.source_ref
        )


def plan_event(*, runtime: Runtime, session: Session, event: Event) -> Planned | None:
    """Work out the notifications an event causes (None: none); writes nothing."""
    notice = read_event(event)
    if notice is None:
        return None
    now = runtime.clock.now()
    rows = plan(runtime=runtime, directory=get_directory(runtime, session), notice=notice, now=now)
    if not rows:
        return None
    ref = f"{event.type}:{notice.ref_id}" if notice.ref_id is not None else event.type
    return Planned(rows=rows, now=now, source_ref=ref)


def route_event(*, runtime: Runtime, session: Session, event: Event) -> int:
    """Queue the notifications an alert or incident event causes; return how many."""
    planned = plan_event(runtime=runtime, session=session, event=event)
    return 0 if planned is None else planned.write(session)


# --- test messages ---------------------------------------------------------------------------


def _recipient_of(*, session: Session, principal: Principal) -> Recipient:
    user = auth_service.get(session=session, user_id=principal.id)
    if principal.kind != "user" or user is None:
        raise Forbidden("notify.users_only")
    return Recipient(
        id=user.id,
        full_name=user.full_name,
        email=user.email,
        language=user.language,
        permissions=principal.permissions,
        scope=principal.scope,
        department_code=user.department_code,
        prefs=preferences_of(service.get_preference(session=session, user_id=user.id)),
        role=user.role,
    )


def send_test(
    *, runtime: Runtime, session: Session, principal: Principal, channel: Channel
) -> outbox.OutboxMessage:
    """Queue a test message to the caller on one channel (now, whatever their quiet hours)."""
    recipient = _recipient_of(session=session, principal=principal)
    settings, translate, now = runtime.settings, runtime.translate, runtime.clock.now()
    if channel not in available_channels(settings):
        raise Invalid(
            "notify.test.refused",
            errors=[
                service.field_error("channel", "notify.preference.channel_off", channel=channel)
            ],
        )
    owner = owner_key(channel, recipient.id)
    last = service.get_last_delivery(session=session, owner=owner, source=TEST_SOURCE)
    if last is not None and now - last.created_at < TEST_INTERVAL:
        wait = int((TEST_INTERVAL - (now - last.created_at)).total_seconds()) + 1
        raise TooManyRequests(
            "notify.test.too_soon", headers={"Retry-After": str(wait)}, seconds=wait
        )
    lang = recipient.language
    params = {"channel": translate(f"notify.channel.{channel}", lang), "url": settings.public_url}
    subject = translate("notify.test.subject", lang, **params)
    body = translate("notify.test.body", lang, **params)
    short = channels.unaccent(subject) if settings.sms_unaccented else subject
    message = _addressed(
        settings=settings,
        recipient=recipient,
        channel=channel,
        draft=lambda: channels.draft_email(
            settings=settings, subject=subject, body=body, language=lang, at=now
        ),
        short=short[: channels.SMS_MAX],
        long=f"{subject}\n{body}",
    )
    if message is None:
        missing = {
            Channel.EMAIL: "notify.preference.no_email",
            Channel.SMS: "notify.preference.no_phone",
            Channel.ZALO: "notify.preference.no_zalo",
        }[channel]
        raise Invalid("notify.test.refused", errors=[service.field_error("channel", missing)])
    _write(session=session, rows=[message], now=now, source=TEST_SOURCE, source_ref="test")
    queued = service.get_last_delivery(session=session, owner=owner, source=TEST_SOURCE)
    assert queued is not None
    return queued


def send_webhook_test(
    *, runtime: Runtime, session: Session, webhook: Webhook
) -> outbox.OutboxMessage:
    """Queue a signed `notify.test` event to one webhook."""
    now = runtime.clock.now()
    body = channels.webhook_body(
        event_type="notify.test",
        at=now,
        data={"webhook_id": webhook.id, "name": webhook.name},
        event_id=channels.new_event_id(),
    )
    owner = f"{WEBHOOK_OWNER}{webhook.id}"
    row = Outgoing(
        channel=WEBHOOK_CHANNEL,
        owner=owner,
        target=webhook.url,
        payload=body,
        content_type="application/json",
        headers=channels.webhook_headers(
            secret=webhook.secret, event_type="notify.test", at=now, body=body
        ),
    )
    _write(session=session, rows=[row], now=now, source=TEST_SOURCE, source_ref="test")
    queued = service.get_last_delivery(session=session, owner=owner, source=TEST_SOURCE)
    assert queued is not None
    return queued


def delete_webhook(*, runtime: Runtime, session: Session, webhook: Webhook) -> None:
    """Delete a webhook; its undelivered messages are given up (the endpoint is gone)."""
    service.cancel_pending(
        session=session,
        owner=f"{WEBHOOK_OWNER}{webhook.id}",
        reason="webhook deleted",
        at=runtime.clock.now(),
    )
    service.delete_webhook(session=session, webhook=webhook)


# --- wiring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyMetrics:
    """Counters of queued notifications and of routing failures."""

    queued: Counter
    failures: Counter


def _metrics(runtime: Runtime) -> NotifyMetrics:
    found = runtime.caches.get(METRICS_KEY)
    if isinstance(found, NotifyMetrics):
        return found
    registry = runtime.metrics.registry
    metrics = NotifyMetrics(
        queued=Counter(
            "cityops_notify_messages_queued",
            "Notifications queued in the outbox (people and webhooks)",
            registry=registry,
        ),
        failures=Counter(
            "cityops_notify_routing_failures",
            "Events whose notifications could not be queued (see the log)",
            registry=registry,
        ),
    )
    runtime.caches[METRICS_KEY] = metrics
    return metrics


def _record_webhook(session: Session, parcel: Parcel, delivery: Delivery, now: datetime) -> None:
    if not parcel.owner.startswith(WEBHOOK_OWNER):
        return
    webhook_id = parcel.owner.removeprefix(WEBHOOK_OWNER)
    if webhook_id.isdigit():
        service.record_webhook_result(
            session=session,
            webhook_id=int(webhook_id),
            ok=delivery.ok,
            error=None if delivery.ok else (delivery.error or "failed"),
            at=now,
        )


def install(runtime: Runtime) -> None:
    """Route alert and incident events to notifications; register the gateway senders."""
    metrics = _metrics(runtime)

    def on_event(session: Session, event: Event) -> None:
        if not event.type.startswith(FAMILIES):
            return
        try:
            planned = plan_event(runtime=runtime, session=session, event=event)
        except Exception:
            # A failure to work out the notifications (a bug, an odd payload) loses them,
            # logged and counted; it must not undo the alert or incident change itself.
            metrics.failures.inc()
            log.exception("notification routing failed", extra={"event_type": event.type})
            return
        if planned is not None:
            metrics.queued.inc(planned.write(session))

    runtime.bus.subscribe_in_transaction("*", on_event)
    _watch_changes(runtime)
    settings, dispatcher = runtime.settings, runtime.outbox
    if dispatcher is None:
        return
    if settings.sms_gateway_url:
        dispatcher.register_sender(
            OUTBOX_CHANNELS[Channel.SMS],
            channels.gateway_sender(settings.sms_gateway_headers, settings.gateway_timeout),
        )
    if settings.zalo_gateway_url:
        dispatcher.register_sender(
            OUTBOX_CHANNELS[Channel.ZALO],
            channels.gateway_sender(settings.zalo_gateway_headers, settings.gateway_timeout),
        )
    for source in (SOURCE, TEST_SOURCE):
        dispatcher.on_result(source, _record_webhook)
