"""Page routes: the unit directory (the operations screen arrives with the dashboard)."""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cityops.core.deps import ClockDep, LangDep, SessionDep, SettingsDep, TranslatorDep
from cityops.core.i18n import LANGUAGES, format_number
from cityops.units import service as unit_service

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(resources.files("cityops.web") / "templates"))
templates.env.filters["number"] = format_number


def _render(request: Request, name: str, lang: str, translate: Any, **context: Any) -> Response:
    def t(key: str, **params: Any) -> str:
        return str(translate(key, lang, **params))

    return templates.TemplateResponse(
        request, name, {"lang": lang, "t": t, "path": request.url.path, **context}
    )


@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    """Send visitors to the unit directory."""
    return RedirectResponse("/units", status_code=307)


@router.get("/units", response_class=HTMLResponse)
def unit_directory(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    lang: LangDep,
    translate: TranslatorDep,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """List the current communes and wards, the pilot areas and the departments."""
    today = clock.now().astimezone(ZoneInfo(settings.timezone)).date()
    province = unit_service.get_province(session=session)
    current, _ = unit_service.get_all(session=session, on=today, level="commune", limit=1000)
    shown = current
    if q:
        shown, _ = unit_service.get_all(session=session, on=today, level="commune", q=q, limit=1000)
    legacy, _ = unit_service.get_all(session=session, level="district", limit=1000)
    legacy_names = {unit.code: unit.name for unit in legacy}
    formed_from = {
        code: [legacy_names.get(legacy_code, legacy_code) for legacy_code in legacy_codes]
        for code, legacy_codes in unit_service.get_lineage_map(session=session).items()
    }
    areas, _ = unit_service.get_all_areas(session=session, limit=100)
    area_units = {
        area.code: unit_service.get_area_units(session=session, area_code=area.code)
        for area in areas
    }
    departments, _ = unit_service.get_all_departments(session=session, limit=200)
    counts = {
        "phuong": sum(1 for u in current if u.unit_type == "phuong"),
        "xa": sum(1 for u in current if u.unit_type == "xa"),
        "legacy": sum(1 for u in legacy if u.valid_to is not None and u.valid_to < today),
        "areas": len(areas),
        "departments": len(departments),
    }
    return _render(
        request,
        "units.html",
        lang,
        translate,
        province=province,
        today=today,
        units=shown,
        q=q or "",
        counts=counts,
        formed_from=formed_from,
        areas=areas,
        area_units=area_units,
        departments=departments,
    )


@router.get("/lang/{code}")
def switch_language(code: str, next: str = "/") -> Response:
    """Remember the visitor's language in a cookie and go back to the page they were on."""
    target = next if next.startswith("/") and not urlsplit(next).netloc else "/"
    response = RedirectResponse(target, status_code=303)
    if code in LANGUAGES:
        response.set_cookie("cityops_lang", code, max_age=365 * 24 * 3600, samesite="lax")
    return response
