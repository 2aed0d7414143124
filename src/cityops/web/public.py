"""Public pages for citizens (no login): `/public/report` to send a report from a phone,
`/public/reports/{code}` to follow it and rate the result, and `/public/reports`, the public map
and list of reports. No page shows a reporter's name, phone, e-mail or photo metadata: they read
the report tables through the citizen service's public functions, never `citizen_reporter`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cityops.citizen import flows as citizen_flows
from cityops.citizen import photos as citizen_photos
from cityops.citizen import service as citizen_service
from cityops.citizen.enums import Moderation, ReportStatus
from cityops.citizen.models import CitizenService
from cityops.core.deps import ClockDep, LangDep, RuntimeDep, SessionDep, SettingsDep, TranslatorDep
from cityops.core.schemas import SINGLE_LINE
from cityops.units import service as unit_service
from cityops.web.api import _render

router = APIRouter(prefix="/public", include_in_schema=False)

CodePath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$")]
Period = Literal["7", "30", "90"]
# Reports drawn on the public map at most (newest first).
MAP_LIMIT = 1000
LIST_LIMIT = 200

# Strings the page scripts need (kept in web/locales under web.public.).
REPORT_KEYS = (
    "web.public.js.choose_service",
    "web.public.js.choose_place",
    "web.public.js.too_many_photos",
    "web.public.js.locating",
    "web.public.js.located",
    "web.public.js.no_location",
    "web.public.js.pinned",
    "web.public.js.sending",
    "web.public.js.failed",
    "web.public.js.unreachable",
    "web.public.js.duplicates",
    "web.public.js.follow",
    "web.public.js.distance",
    "web.public.js.consent_needed",
)
TRACK_KEYS = (
    "web.public5.erase.confirm",
    "web.public5.erase.done",
    "web.public.js.rating_sent",
    "web.public.js.failed",
    "web.public.js.unreachable",
)
MAP_KEYS = ("web.public.status.open", "web.public.status.closed", "web.public.js.details")


def _json(value: Any) -> str:
    # Inside <script type="application/json">: a "</" in any text must not close the element.
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def _strings(translate: Any, lang: str, keys: tuple[str, ...]) -> dict[str, str]:
    return {key: str(translate(key, lang)) for key in keys}


def _service_view(row: CitizenService, en: bool) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name_en if en else row.name,
        "group": row.group_en if en else row.group,
        "description": row.description_en if en else row.description,
        "attributes": [
            {
                "code": a["code"],
                "datatype": a["datatype"],
                "required": a["required"],
                "description": a["description_en"] if en else a["description"],
                "values": [
                    {"key": v["key"], "name": v["name_en"] if en else v["name"]}
                    for v in a.get("values", [])
                ],
            }
            for a in sorted(row.attributes, key=lambda a: a["order"])
            if a.get("variable", True)
        ],
    }


def _grouped(services: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in services:
        groups.setdefault(item["group"], []).append(item)
    return list(groups.items())


def _unit_names(session: Session, runtime: Any) -> dict[str, str]:
    today = runtime.clock.now().astimezone(ZoneInfo(runtime.settings.timezone)).date()
    units, _ = unit_service.get_all(session=session, on=today, level="commune", limit=1000)
    return {u.code: u.name for u in units}


@router.get("/report", response_class=HTMLResponse)
def report_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    lang: LangDep,
    translate: TranslatorDep,
) -> Response:
    """Show the mobile-first form a citizen sends a report with."""
    en = lang == "en"
    services = [
        _service_view(row, en)
        for row in citizen_service.get_all_services(session=session, active_only=True)
    ]
    config = {
        "lang": lang,
        "tileUrl": runtime.settings.map_tile_url,
        "maxPhotos": citizen_photos.MAX_PHOTOS,
        "maxBytes": runtime.settings.citizen_photo_max_bytes,
        "strings": _strings(translate, lang, REPORT_KEYS),
    }
    return _render(
        request,
        "public_report.html",
        lang,
        translate,
        groups=_grouped(services),
        services=services,
        max_photos=citizen_photos.MAX_PHOTOS,
        max_mb=runtime.settings.citizen_photo_max_bytes // (1024 * 1024),
        config=_json(config),
    )


@router.get("/reports/{code}", response_class=HTMLResponse)
def tracking_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
    lang: LangDep,
    translate: TranslatorDep,
    code: CodePath,
    key: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9a-f]*$")] = None,
) -> Response:
    """Show a report's status, history and photos, and, to its reporter (the key of their
    tracking link), the rating form once it is resolved."""
    report = citizen_service.get_by_code(session=session, tracking_code=code)
    if report is None or report.moderation == Moderation.HIDDEN:
        response = _render(request, "public_missing.html", lang, translate, code=code.upper()[:40])
        response.status_code = 404
        return response
    en = lang == "en"
    zone = ZoneInfo(settings.timezone)
    row = citizen_service.get_service(session=session, service_code=report.service_code)
    department = (
        unit_service.get_department(session=session, department_code=report.department_code)
        if report.department_code
        else None
    )
    notes = citizen_service.get_notes(session=session, report_ids=[report.id])[report.id]
    photos = citizen_service.get_photos(session=session, report_id=report.id)
    original = (
        citizen_service.get(session=session, report_id=report.duplicate_of)
        if report.duplicate_of is not None
        else None
    )
    view = {
        "code": report.tracking_code,
        "service": (row.name_en if en else row.name) if row else report.service_code,
        "status": report.status,
        "closed": report.status == ReportStatus.CLOSED,
        "pending": report.moderation == Moderation.PENDING,
        "description": report.description,
        "address": report.address,
        "unit": _unit_names(session, runtime).get(report.unit_code or "", report.unit_code),
        "department": ((department.name_en or department.name) if en else department.name)
        if department
        else None,
        "requested_at": report.requested_at.astimezone(zone),
        "expected_at": report.expected_at.astimezone(zone) if report.expected_at else None,
        "closed_at": report.closed_at.astimezone(zone) if report.closed_at else None,
        "rated": report.rated_at is not None,
        "reporter": citizen_flows.reporter_key_matches(report, key),
        "satisfied": report.satisfied,
        "duplicate_of": original.tracking_code if original else None,
        "lat": report.lat,
        "lon": report.lon,
        "history": [
            {
                "at": note.at.astimezone(zone),
                "kind": note.kind,
                "text": citizen_flows.note_text(note, lang),
            }
            for note in notes
        ],
        "photos": [
            f"/api/v1/citizen/reports/{report.tracking_code}/photos/{p.position}" for p in photos
        ],
    }
    config = {
        "lang": lang,
        "code": report.tracking_code,
        "key": key if view["reporter"] else None,
        "strings": _strings(translate, lang, TRACK_KEYS),
    }
    response = _render(
        request, "public_tracking.html", lang, translate, report=view, config=_json(config)
    )
    # The reporter's link carries their key: it must not leak to other sites as a referrer.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/reports", response_class=HTMLResponse)
def reports_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    clock: ClockDep,
    lang: LangDep,
    translate: TranslatorDep,
    service: Annotated[str | None, Query(max_length=32, pattern=SINGLE_LINE)] = None,
    # Empty values are what the filter form sends for "all".
    status: Annotated[str | None, Query(pattern=r"^(open|closed)?$")] = None,
    unit: Annotated[str | None, Query(max_length=16, pattern=SINGLE_LINE)] = None,
    period: Period = "30",
) -> Response:
    """Show the public map and list of reports, by service, status, commune or ward and period."""
    en = lang == "en"
    zone = ZoneInfo(runtime.settings.timezone)
    services = citizen_service.get_all_services(session=session)
    names = {s.code: (s.name_en if en else s.name) for s in services}
    units = _unit_names(session, runtime)
    service_code = service or None
    unit_code = unit or None
    rows = citizen_service.get_all_public(
        session=session,
        service_codes=[service_code] if service_code else (),
        statuses=[status] if status else (),
        unit_codes=[unit_code] if unit_code else (),
        start=clock.now() - timedelta(days=int(period)),
        limit=MAP_LIMIT,
    )
    items = [
        {
            "code": r.tracking_code,
            "service": names.get(r.service_code, r.service_code),
            "status": r.status,
            "unit": units.get(r.unit_code or "", r.unit_code or ""),
            "at": r.requested_at.astimezone(zone),
            "lat": r.lat,
            "lon": r.lon,
        }
        for r in rows
    ]
    markers = [
        {
            "code": i["code"],
            "service": i["service"],
            "status": i["status"],
            "lat": i["lat"],
            "lon": i["lon"],
        }
        for i in items
        if i["lat"] is not None and i["lon"] is not None
    ]
    config = {
        "lang": lang,
        "tileUrl": runtime.settings.map_tile_url,
        "markers": markers,
        "strings": _strings(translate, lang, MAP_KEYS),
    }
    return _render(
        request,
        "public_reports.html",
        lang,
        translate,
        items=items[:LIST_LIMIT],
        total=len(items),
        services=[(s.code, names[s.code]) for s in services if s.is_active],
        units=sorted(units.items(), key=lambda pair: pair[1]),
        chosen={"service": service_code, "status": status, "unit": unit_code, "period": period},
        config=_json(config),
    )
