"""Page routes of the incident desk: `/incidents` (filtered, paginated list) and
`/incidents/{code}` (detail, timeline, comments, attachments, SLA countdown and the actions the
user's permissions allow). Reads go through the incidents service with the user's scope; every
change is made by the browser through the incidents API, which enforces permissions again."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from cityops.auth import service as auth_service
from cityops.auth.enums import role_permissions
from cityops.core.deps import LangDep, RuntimeDep, SessionDep, TranslatorDep
from cityops.core.security import GLOBAL_SCOPE, OptionalPrincipal, Permission, Principal
from cityops.incidents import api as incidents_api
from cityops.incidents import service as incident_service
from cityops.incidents.enums import TRANSITIONS, IncidentStatus, Severity
from cityops.incidents.schemas import IncidentRead
from cityops.units import service as unit_service
from cityops.web.api import _login_redirect, _render, error_page, templates

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25
STATUSES = tuple(str(s) for s in IncidentStatus)
SEVERITIES = tuple(str(s) for s in Severity)
CODE = r"^[A-Za-z0-9_.-]{1,64}$"

# The strings desk.js needs (actions, errors, countdown).
DESK_KEYS = (
    "web.desk.sla.left",
    "web.desk.sla.overdue",
    "web.desk.sla.met",
    "web.desk.action.failed",
    "web.desk.action.saved",
    "web.desk.assignee.none",
)


def local_time(value: datetime | None, zone: str = "Asia/Ho_Chi_Minh") -> str:
    """Format an instant as the province's local date and time (dd/mm/yyyy HH:MM)."""
    if value is None:
        return "–"
    return value.astimezone(ZoneInfo(zone)).strftime("%d/%m/%Y %H:%M")


templates.env.filters["localtime"] = local_time


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


templates.env.filters["isotime"] = _iso


def _forbidden(request: Request, lang: str, translate: Any, principal: Principal) -> Response:
    return _error(request, lang, translate, principal, 403, "web.desk.forbidden")


def _error(
    request: Request,
    lang: str,
    translate: Any,
    principal: Principal,
    status: int,
    key: str,
    **params: Any,
) -> Response:
    return error_page(
        request,
        lang,
        translate,
        principal,
        status=status,
        title_key="web.desk.title",
        message_key=key,
        back=("/incidents", "web.desk.back"),
        **params,
    )


def _names(items: Any, lang: str) -> dict[str, str]:
    return {
        item.code: (getattr(item, "name_en", None) if lang == "en" else None) or item.name
        for item in items
    }


@router.get("/incidents", response_class=HTMLResponse)
def incident_list(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    status: Annotated[list[str] | None, Query(max_length=5)] = None,
    severity: Annotated[list[str] | None, Query(max_length=4)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    department: Annotated[str | None, Query(max_length=32)] = None,
    unit: Annotated[str | None, Query(max_length=16)] = None,
    overdue: Annotated[str | None, Query(max_length=5)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """List the incidents the user may see, filtered and paginated."""
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Permission.INCIDENT_READ):
        return _forbidden(request, lang, translate, principal)
    categories, _ = incident_service.get_all_categories(session=session, limit=500)
    departments, _ = unit_service.get_all_departments(session=session, limit=200)
    today = runtime.clock.now().astimezone(ZoneInfo(runtime.settings.timezone)).date()
    units, _ = unit_service.get_all(session=session, on=today, level="commune", limit=1000)
    category_names = _names(categories, lang)
    department_names = _names(departments, lang)
    unit_names = {u.code: u.name for u in units}
    # Values the selects do not offer (a hand-edited address) are dropped, not an error page.
    chosen: dict[str, Any] = {
        "status": [s for s in status or [] if s in STATUSES],
        "severity": [s for s in severity or [] if s in SEVERITIES],
        "category": category if category in category_names else "",
        "department": department if department in department_names else "",
        "unit": unit if unit in unit_names else "",
        "overdue": overdue if overdue in ("true", "false") else "",
    }
    now = runtime.clock.now()
    rows, total = incident_service.get_all(
        session=session,
        scope=principal.scope,
        now=now,
        statuses=chosen["status"] or None,
        unit_codes=(
            unit_service.get_subtree_codes(session=session, unit_code=chosen["unit"])
            if chosen["unit"]
            else None
        ),
        department_code=chosen["department"] or None,
        severities=chosen["severity"] or None,
        category_code=chosen["category"] or None,
        overdue={"true": True, "false": False}.get(str(chosen["overdue"])),
        sort="-created_at",
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    pages = max(1, -(-total // PAGE_SIZE))
    query = [(key, value) for key, value in chosen.items() if isinstance(value, str) and value]
    query += [(key, v) for key in ("status", "severity") for v in chosen[key]]

    def page_link(number: int) -> str:
        return "/incidents?" + urlencode([*query, ("page", str(number))])

    return _render(
        request,
        "incidents.html",
        lang,
        translate,
        user=principal,
        rows=[IncidentRead.model_validate(row) for row in rows],
        total=total,
        page=page,
        pages=pages,
        page_link=page_link,
        chosen=chosen,
        statuses=STATUSES,
        severities=SEVERITIES,
        categories=category_names,
        departments=department_names,
        units=unit_names,
        zone=runtime.settings.timezone,
    )


@router.get("/incidents/{code}", response_class=HTMLResponse)
def incident_detail(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    code: Annotated[str, Path(max_length=64)],
) -> Response:
    """Show one incident with its timeline, comments, attachments, deadlines and actions."""
    if principal is None:
        return _login_redirect(request)
    if not principal.can(Permission.INCIDENT_READ):
        return _forbidden(request, lang, translate, principal)
    incident = incident_service.get_by_code(session=session, code=code)
    if incident is None or not incident_service.can_see(scope=principal.scope, incident=incident):
        return _error(request, lang, translate, principal, 404, "web.desk.not_found", code=code)
    detail = incidents_api.get_incident(
        session=session, runtime=runtime, principal=principal, incident_id=incident.id
    )
    departments, _ = unit_service.get_all_departments(session=session, limit=200)
    department_names = _names(departments, lang)
    category = incident_service.get_category(session=session, category_code=detail.category_code)
    unit = unit_service.get(session=session, unit_code=detail.unit_code or "")
    # Who may be assigned: active users whose role can work on incidents; desk.js narrows the
    # choice to the chosen department (the API checks the assignee can see the incident).
    assignees: list[dict[str, Any]] = []
    if principal.can(Permission.INCIDENT_ASSIGN):
        users, _ = auth_service.get_all(session=session, scope=GLOBAL_SCOPE, limit=500)
        assignees = [
            {
                "id": u.id,
                "name": u.full_name or u.username,
                "department": u.department_code or "",
            }
            for u in users
            if u.is_active and Permission.INCIDENT_WORK in role_permissions(u.role)
        ]
    names = {a["id"]: a["name"] for a in assignees}
    if detail.assignee_id is not None and detail.assignee_id not in names:
        user = auth_service.get(session=session, user_id=detail.assignee_id)
        names[detail.assignee_id] = (user.full_name or user.username) if user else "?"
    transitions = [
        {"to": str(to), "note_required": step.note_required}
        for to, step in TRANSITIONS.get(IncidentStatus(detail.status), {}).items()
        if to in detail.allowed_transitions
        and to != IncidentStatus.ASSIGNED
        and principal.can(step.permission)
    ]
    open_ = detail.status in ("new", "assigned", "in_progress")
    config = {
        "id": detail.id,
        "code": detail.code,
        "lang": lang,
        "dueAck": _iso(detail.due_ack_at) if detail.acknowledged_at is None else "",
        "dueResolve": _iso(detail.due_resolve_at) if open_ else "",
        "assignees": assignees,
        "strings": {key: str(translate(key, lang)) for key in DESK_KEYS},
    }
    return _render(
        request,
        "incidents_detail.html",
        lang,
        translate,
        user=principal,
        incident=detail,
        category=(
            (category.name_en if lang == "en" and category.name_en else category.name)
            if category
            else detail.category_code
        ),
        unit_name=unit.name if unit else "",
        departments=department_names,
        assignee_name=names.get(detail.assignee_id) if detail.assignee_id else None,
        can_assign=principal.can(Permission.INCIDENT_ASSIGN) and open_,
        can_comment=principal.can(Permission.INCIDENT_WORK),
        transitions=transitions,
        zone=runtime.settings.timezone,
        config=json.dumps(config, ensure_ascii=False).replace("</", "<\\/"),
    )
