"""Page routes: the login page, the operations screen and the public unit directory."""

from __future__ import annotations

import json
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import Headers

from cityops.context import service as context_service
from cityops.core.deps import ClockDep, LangDep, SessionDep, SettingsDep, TranslatorDep
from cityops.core.etag import GZIP_MINIMUM, accepts_gzip, compress
from cityops.core.i18n import LANGUAGES, format_number
from cityops.core.security import OptionalPrincipal, Permission, Principal
from cityops.units import service as unit_service

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(resources.files("cityops.web") / "templates"))
templates.env.filters["number"] = format_number


def _render(
    request: Request,
    name: str,
    lang: str,
    translate: Any,
    user: Principal | None = None,
    **context: Any,
) -> Response:
    def t(key: str, **params: Any) -> str:
        return str(translate(key, lang, **params))

    path = request.url.path
    if request.url.query:
        path = f"{path}?{request.url.query}"
    return templates.TemplateResponse(
        request,
        name,
        {"lang": lang, "t": t, "path": request.url.path, "here": path, "user": user, **context},
    )


def error_page(
    request: Request,
    lang: str,
    translate: Any,
    user: Principal | None,
    *,
    status: int,
    title_key: str,
    message_key: str,
    back: tuple[str, str],
    **params: Any,
) -> Response:
    """Render the staff pages' error page (403, 404): what went wrong and the way back.

    `back` is the link's (address, message key).
    """
    response = _render(
        request,
        "error.html",
        lang,
        translate,
        user=user,
        title_key=title_key,
        message_key=message_key,
        params=params,
        back_href=back[0],
        back_key=back[1],
    )
    response.status_code = status
    return response


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect would let a phishing link bounce through our login.
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def _login_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """Show the login form; a visitor already logged in goes straight on."""
    target = _safe_next(next)
    if principal is not None and principal.via == "cookie":
        return RedirectResponse(target, status_code=303)
    return _render(request, "login.html", lang, translate, next=target)


# The strings of the live feed and the incidents layer (feed.js).
DESK_FEED_KEYS = (
    *(f"web.feed.{key}" for key in ("alert", "incident", "live", "offline")),
    *(
        f"web.feed.{verb}"
        for verb in ("opened", "acknowledged", "snoozed", "resolved", "created", "changed")
    ),
    *(f"web.feed.{verb}" for verb in ("comment", "sla", "escalated")),
    *(f"web.desk.severity.{s}" for s in ("low", "medium", "high", "critical")),
    *(f"web.desk.status.{s}" for s in ("new", "assigned", "in_progress", "resolved", "closed")),
    "web.desk.layer.incidents",
)

OPS_KEYS = (
    "web.ops.loading",
    "web.ops.sensors",
    "web.ops.worst_aqi",
    "web.ops.river_alarms",
    "web.ops.hospital_max",
    "web.ops.none",
    "web.ops.units",
    "web.ops.updated",
    "web.ops.layer.boundaries",
    "web.ops.layer.sensors",
    "web.ops.layer.tiles",
    "web.ops.popup.aqi",
    "web.ops.popup.water",
    "web.ops.popup.beds",
    "web.ops.popup.details",
    "web.ops.popup.observed",
    "web.ops.load_failed",
    "web.aqi.good",
    "web.aqi.moderate",
    "web.aqi.poor",
    "web.aqi.bad",
    "web.aqi.veryBad",
    "web.aqi.hazardous",
    "web.flood.normal",
    "web.flood.alarm1",
    "web.flood.alarm2",
    "web.flood.alarm3",
    "web.user.logout_failed",
    "web.ops2.cluster",
    *DESK_FEED_KEYS,
)


def early_requests(feed_kinds: list[str]) -> list[str]:
    """Return the layer requests the operations screen sends from its head, as its scripts do.

    Each address is the one the script builds (operations.js, feed.js, layers.js), so that the
    script takes the early response instead of asking again."""
    facilities = {
        "type": "PointOfInterest",
        "options": "keyValues",
        "pick": "id,name,location,category,capacity",
        "limit": "1000",
        "offset": "0",
    }
    return [
        "/api/v1/units/geometry?level=commune",
        "/api/v1/map/sensors",
        *(["/api/v1/map/incidents"] if "incidents" in feed_kinds else []),
        *(["/api/v1/alerts?status=open&limit=30"] if "alerts" in feed_kinds else []),
        f"/ngsi-ld/v1/entities?{urlencode(facilities)}",
    ]


@router.get("/", response_class=HTMLResponse)
def operations(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
) -> Response:
    """Show the operations screen: boundaries, sensors and key figures of the chosen area."""
    if principal is None:
        return _login_redirect(request)
    today = clock.now().astimezone(ZoneInfo(settings.timezone)).date()
    province = unit_service.get_province(session=session)
    current, _ = unit_service.get_all(session=session, on=today, level="commune", limit=1000)
    areas, _ = unit_service.get_all_areas(session=session, limit=100)
    # The live feed follows the kinds the user may read (the stream refuses others).
    feed_kinds = [
        kind
        for kind, permission in (
            ("alerts", Permission.ALERT_READ),
            ("incidents", Permission.INCIDENT_READ),
        )
        if principal.can(permission)
    ]
    config = {
        "lang": lang,
        "tileUrl": settings.map_tile_url,
        "timeZone": settings.timezone,
        "province": province.name if province else "",
        "units": [{"code": u.code, "name": u.name} for u in current],
        "areas": [
            {
                "code": area.code,
                "name": area.name_en if lang == "en" and area.name_en else area.name,
                "units": [
                    u.code
                    for u in unit_service.get_area_units(session=session, area_code=area.code)
                ],
            }
            for area in areas
        ],
        "strings": {key: str(translate(key, lang)) for key in OPS_KEYS},
        # The sensors layer follows entity changes on the stream, for the map's tenant.
        "liveEntities": principal.can(Permission.CONTEXT_READ),
        "tenant": principal.tenant or context_service.DEFAULT_TENANT,
        "feedKinds": feed_kinds,
    }
    return _render(
        request,
        "operations.html",
        lang,
        translate,
        user=principal,
        early=early_requests(feed_kinds),
        province=province,
        areas=config["areas"],
        units=current,
        config=json.dumps(config, ensure_ascii=False).replace("</", "<\\/"),
    )


@router.get("/units", response_class=HTMLResponse)
def unit_directory(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    lang: LangDep,
    translate: TranslatorDep,
    principal: OptionalPrincipal,
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
        user=principal,
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


# Vendor files worth compressing (images and fonts are compressed already).
COMPRESSIBLE = frozenset(
    {"text/javascript", "application/javascript", "text/css", "application/json", "image/svg+xml"}
)


class VendorFiles(StaticFiles):
    """The third-party libraries (Leaflet, markercluster, ECharts), cached long by browsers."""

    # The URLs carry no version, so a month rather than a year: an upgrade reaches every
    # browser within that time, and a wall screen reloading all day never refetches them.
    cache_control = "public, max-age=2592000"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (path, mtime, size) → the file gzip-compressed: Leaflet alone took ~20 ms of the
        # server's CPU per first load, compressed again by the middleware on every request.
        self._gzipped: dict[tuple[str, int, int], bytes] = {}

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Any, status_code: int = 200
    ) -> Response:
        """Serve a file with a long Cache-Control header, from its kept gzip copy when the
        client takes gzip (the middleware passes an encoded body through)."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = self.cache_control
        headers = Headers(scope=scope)
        if (
            response.status_code != 200
            or scope.get("method") != "GET"
            or "range" in headers
            or not accepts_gzip(headers.get("accept-encoding"))
            or stat_result.st_size < GZIP_MINIMUM
            or response.media_type not in COMPRESSIBLE
        ):
            return response
        key = (str(full_path), stat_result.st_mtime_ns, stat_result.st_size)
        packed = self._gzipped.get(key)
        if packed is None:
            with open(full_path, "rb") as file:
                packed = compress(file.read())
            self._gzipped[key] = packed
        kept = {
            name: response.headers[name]
            for name in ("etag", "last-modified", "cache-control")
            if name in response.headers
        }
        kept["Content-Encoding"] = "gzip"
        kept["Vary"] = "Accept-Encoding"
        return Response(packed, media_type=response.media_type, headers=kept)
