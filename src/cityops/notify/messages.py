"""Reading operations events and rendering them as messages people read.

`read_event` turns an `alerts.*` / `incidents.*` event of the operations contract into a
`Notice` (what it is about, where, how severe, who is addressed); `Renderer` writes the subject,
e-mail body, SMS and Zalo text of a notice in Vietnamese or English from the templates in
`locales/`. Event payloads come from other contexts: every field is read defensively, so a
missing or odd value degrades the message instead of failing the publishing transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cityops.core.config import Settings
from cityops.core.events import Event
from cityops.core.i18n import Translator
from cityops.core.security import Permission
from cityops.notify.channels import SMS_MAX, ZALO_MAX, EmailDraft, draft_email, unaccent
from cityops.notify.enums import EventKind, Severity

ALERT_KINDS = {
    "alerts.alert_opened": EventKind.ALERT_OPENED,
    "alerts.alert_resolved": EventKind.ALERT_RESOLVED,
}
INCIDENT_KINDS = {
    "incidents.incident_created": EventKind.INCIDENT_CREATED,
    "incidents.comment_added": EventKind.COMMENT_ADDED,
    "incidents.sla_breached": EventKind.SLA_BREACHED,
    "incidents.incident_escalated": EventKind.ESCALATED,
}
# Words of `change` (incidents.incident_changed) that mean the incident went to someone.
ASSIGNMENT_WORDS = ("assign", "department", "dispatch")
MISSING = "—"


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _severity(value: Any) -> Severity:
    try:
        return Severity(str(value))
    except ValueError:
        return Severity.MEDIUM  # an unknown severity is neither hidden nor treated as critical


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.lower()]
    if isinstance(value, list | tuple | set):
        return [str(item).lower() for item in value]
    if isinstance(value, dict):
        return [str(key).lower() for key in value]
    return []


@dataclass(frozen=True)
class Notice:
    """An alert or incident event as notifications see it."""

    event: Event
    family: str  # "alert" | "incident"
    ref_id: int | None
    severity: Severity
    unit_code: str | None
    department_codes: tuple[str, ...]
    assignee_id: int | None
    actor_id: int | None
    permission: str
    # The kind for users the event reaches through their scope (None: nobody that way).
    kind: EventKind | None
    # Whether the event gives the incident to its assignee / departments (INCIDENT_ASSIGNED).
    assignment: bool = False
    # Escalation targets: they hear about it whatever their scope.
    notify_user_ids: frozenset[int] = field(default_factory=frozenset)
    # Named groups an alert's rule notifies (`policy.notify`: "ioc", "leaders", ...).
    groups: tuple[str, ...] = ()

    @property
    def data(self) -> Mapping[str, Any]:
        """The event's payload."""
        return self.event.data


def read_event(event: Event) -> Notice | None:
    """Return what an operations event is about, or None if it is not one."""
    data = event.data if isinstance(event.data, dict) else {}
    actor = _int(data.get("actor_id"))
    if event.type.startswith("alerts."):
        policy = data.get("policy") if isinstance(data.get("policy"), dict) else {}
        incident = policy.get("incident") if isinstance(policy, dict) else None
        department = _text(incident.get("department_code")) if isinstance(incident, dict) else None
        return Notice(
            event=event,
            family="alert",
            ref_id=_int(data.get("alert_id")),
            severity=_severity(data.get("severity")),
            unit_code=_text(data.get("unit_code")),
            department_codes=(department,) if department else (),
            assignee_id=None,
            actor_id=actor,
            permission=Permission.ALERT_READ,
            kind=ALERT_KINDS.get(event.type),
            groups=tuple(
                name
                for name in (
                    _text(item)
                    for item in _items(policy.get("notify") if isinstance(policy, dict) else None)
                )
                if name
            ),
        )
    if not event.type.startswith("incidents."):
        return None
    departments = [_text(code) for code in _items(data.get("department_codes")) if _text(code)]
    main = _text(data.get("department_code"))
    if main and main not in departments:
        departments.insert(0, main)
    assignee = _int(data.get("assignee_id"))
    kind = INCIDENT_KINDS.get(event.type)
    assignment = False
    if event.type == "incidents.incident_created":
        assignment = bool(assignee or departments)
    elif event.type == "incidents.incident_changed":
        words = _words(data.get("change"))
        assignment = any(word in item for item in words for word in ASSIGNMENT_WORDS)
        status, previous = _text(data.get("status")), _text(data.get("previous_status"))
        if "status" in words or (previous is not None and status != previous):
            kind = EventKind.INCIDENT_STATUS
    targets = frozenset(
        user_id
        for user_id in (_int(item) for item in _items(data.get("notify_user_ids")))
        if user_id is not None
    )
    return Notice(
        event=event,
        family="incident",
        ref_id=_int(data.get("incident_id")),
        severity=_severity(data.get("severity")),
        unit_code=_text(data.get("unit_code")),
        department_codes=tuple(code for code in departments if code),
        assignee_id=assignee,
        actor_id=actor,
        permission=Permission.INCIDENT_READ,
        kind=kind,
        assignment=assignment,
        notify_user_ids=targets if event.type == "incidents.incident_escalated" else frozenset(),
    )


@dataclass(frozen=True, slots=True)
class Rendered:
    """One notice written for one kind and language, in each channel's form."""

    subject: str
    body: str
    sms: str
    zalo: str


class Renderer:
    """Writes the messages of one notice, once per (kind, language)."""

    def __init__(
        self,
        *,
        notice: Notice,
        translate: Translator,
        settings: Settings,
        unit_names: Mapping[str, tuple[str, str | None]],
        at: datetime,
    ) -> None:
        self.notice = notice
        self.at = at
        self.translate = translate
        self.settings = settings
        self.unit_names = unit_names
        self.zone = ZoneInfo(settings.timezone)
        self._done: dict[tuple[EventKind, str], Rendered] = {}
        self._drafts: dict[tuple[EventKind, str], EmailDraft] = {}

    def render(self, kind: EventKind, language: str) -> Rendered:
        """Return the messages of this notice for a kind, in a language."""
        key = (kind, language)
        found = self._done.get(key)
        if found is None:
            found = self._done[key] = self._render(kind, language)
        return found

    def draft(self, kind: EventKind, language: str) -> EmailDraft:
        """Return the e-mail of this notice for a kind and language, to address per recipient."""
        key = (kind, language)
        found = self._drafts.get(key)
        if found is None:
            rendered = self.render(kind, language)
            found = self._drafts[key] = draft_email(
                settings=self.settings,
                subject=rendered.subject,
                body=rendered.body,
                language=language,
                at=self.at,
            )
        return found

    def _render(self, kind: EventKind, lang: str) -> Rendered:
        params = self._params(lang)
        t = self.translate
        subject = t(f"notify.subject.{kind}", lang, **params)
        body = "\n\n".join(
            [t(f"notify.body.{kind}", lang, **params), t("notify.body.footer", lang, **params)]
        )
        zalo = f"{subject}\n{t(f'notify.body.{kind}', lang, **params)}"[:ZALO_MAX]
        return Rendered(subject=subject, body=body, sms=self._sms(kind, lang, params), zalo=zalo)

    def _sms(self, kind: EventKind, lang: str, params: dict[str, str]) -> str:
        def write(title: str) -> str:
            text = self.translate(f"notify.sms.{kind}", lang, **{**params, "title": title})
            return unaccent(text) if self.settings.sms_unaccented else text

        full = write(params["title"])
        if len(full) <= SMS_MAX:
            return full
        # Shorten the title, not the link: the link is how the reader finds the rest.
        room = SMS_MAX - len(write(""))
        title = params["title"][: max(0, room - 3)].rstrip() + "..." if room > 3 else ""
        return write(title)[:SMS_MAX]

    def _params(self, lang: str) -> dict[str, str]:
        notice, data, t = self.notice, self.notice.data, self.translate
        base = self.settings.public_url
        if notice.family == "alert":
            title = _text(data.get(f"title_{lang}")) or _text(data.get("title_vi"))
            link = f"{base}/alerts/{notice.ref_id}" if notice.ref_id else base
        else:
            title = _text(data.get("title"))
            link = f"{base}/incidents/{notice.ref_id}" if notice.ref_id else base
        return {
            "title": title or _text(data.get("rule_code")) or MISSING,
            "code": _text(data.get("code")) or (f"#{notice.ref_id}" if notice.ref_id else MISSING),
            "unit": self._unit(lang),
            "severity": t(f"notify.severity.{notice.severity}", lang),
            "status": self._status(data.get("status"), lang),
            "previous_status": self._status(data.get("previous_status"), lang),
            "value": _text(data.get("value")) or MISSING,
            "attribute": _text(data.get("attribute")) or MISSING,
            "level": _text(data.get("escalation_level")) or MISSING,
            "note": (_text(data.get("note")) or MISSING)[:500],
            "due": self._time(data.get("due_resolve_at")),
            "time": self._time(data.get("opened_at") or notice.event.at.isoformat()),
            "link": link,
        }

    def _unit(self, lang: str) -> str:
        code = self.notice.unit_code
        if code is None:
            return self.translate("notify.unit.none", lang)
        name, name_en = self.unit_names.get(code, (code, None))
        return (name_en or name) if lang == "en" else name

    def _status(self, value: Any, lang: str) -> str:
        status = _text(value)
        if status is None:
            return MISSING
        key = f"notify.status.{status}"
        return self.translate(key, lang) if self.translate.has(key) else status

    def _time(self, value: Any) -> str:
        text = _text(value)
        if text is None:
            return MISSING
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text
        if moment.tzinfo is None:
            return text
        return moment.astimezone(self.zone).strftime("%H:%M %d/%m/%Y")
