"""The composition root: `create_app(settings)` wires the contexts into one ASGI application."""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

from cityops import __version__
from cityops.alerts import api as alerts_api
from cityops.alerts import flows as alerts_flows
from cityops.auth import api as auth_api
from cityops.auth import flows as auth_flows
from cityops.citizen import api as citizen_api
from cityops.citizen import install as citizen_install
from cityops.citizen import open311 as citizen_open311
from cityops.citizen import register_jobs as citizen_jobs
from cityops.context import api as context_api
from cityops.context import subscriptions as context_subscriptions
from cityops.core import fanout, ops, outbox_mqtt
from cityops.core.clock import Clock
from cityops.core.config import Settings
from cityops.core.deps import refuse_nul
from cityops.core.errors import install_error_handlers
from cityops.core.etag import GZIP_LEVEL, GZIP_MINIMUM
from cityops.core.logging import configure_logging
from cityops.core.metrics import RequestContextMiddleware
from cityops.core.outbox_smtp import CHANNEL as SMTP_CHANNEL
from cityops.core.outbox_smtp import smtp_configured, smtp_sender
from cityops.core.routing import guard_routes
from cityops.core.runtime import Runtime
from cityops.egov import api as egov_api
from cityops.egov import install as egov_install
from cityops.incidents import api as incidents_api
from cityops.incidents import flows as incidents_flows
from cityops.incidents import jobs as incidents_jobs
from cityops.ingest import api as ingest_api
from cityops.ingest import jobs as ingest_jobs
from cityops.ingest.mqtt import MqttBridge
from cityops.kpi import api as kpi_api
from cityops.kpi import install as kpi_install
from cityops.notify import api as notify_api
from cityops.notify import flows as notify_flows
from cityops.programme import api as programme_api
from cityops.registry import MESSAGE_PACKAGES, import_models
from cityops.units import api as units_api
from cityops.units import service as unit_service
from cityops.web import api as web_api
from cityops.web import desk as web_desk
from cityops.web import mapdata as web_mapdata
from cityops.web import measure as web_measure
from cityops.web import public as web_public
from cityops.web import sectors as web_sectors
from cityops.web import stream as web_stream

API_PREFIX = "/api/v1"


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Build the runtime shared by the app, the command line and background jobs."""
    import_models()
    runtime = Runtime.build(settings, packages=MESSAGE_PACKAGES, clock=clock)
    # PostgreSQL: events fanned out between workers, one leader for rules and jobs.
    fanout.install(runtime)
    auth_flows.install(runtime)
    if runtime.outbox is not None:
        runtime.outbox.register_sender("mqtt", outbox_mqtt.mqtt_sender())
        if smtp_configured(settings):
            runtime.outbox.register_sender(SMTP_CHANNEL, smtp_sender(settings))
    context_subscriptions.install(runtime)
    notify_flows.install(runtime)
    web_stream.install(runtime)
    web_mapdata.install(runtime)
    incidents_flows.install(runtime)
    citizen_install(runtime)
    return runtime


def register_outbox_jobs(runtime: Runtime) -> None:
    """Deliver the outbox every half second and purge delivered messages every hour."""
    outbox = runtime.outbox
    if outbox is None:
        return
    # Every worker delivers: the dispatcher leases each owner's messages to one worker.
    runtime.jobs.add("outbox.deliver", 0.5, outbox.run_once, every_worker=True)
    runtime.jobs.add("outbox.purge", 3600.0, outbox.purge)


# Objects allocated between two young collections: Python's default (700) runs one every few
# hundred allocations, several per request; a server allocates freely and frees nearly all of
# it by reference counting, so a larger young generation collects as much for less work.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Keep the objects of start-up (modules, routes, indexes, rules) out of the collector.

    A full collection walks every object in the process: with the app, its routes, the unit
    index and 1,000 rules loaded that is 0.25 s with the interpreter lock held, stalling every
    request and the rule engine (the flood bench saw one every few seconds). Frozen objects are
    never walked again; what the server allocates afterwards is collected as usual.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _start_bridge(bridge: MqttBridge, peers: fanout.Fanout | None) -> None:
    """Run the MQTT bridge here, or, with several workers, on the leader only: the deployment
    keeps one MQTT session (one client id, its persistent subscription and queued messages),
    which moves to the next leader when this one stops."""
    if peers is None:
        bridge.start()
        return
    lock = threading.Lock()

    def follow(leading: bool) -> None:
        with lock:
            if leading:
                bridge.start()
            else:
                bridge.stop()

    peers.on_leading(follow)
    follow(peers.leading)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    configure_logs: bool = False,
) -> FastAPI:
    """Create the CityOps application for the given settings."""
    settings = settings or Settings()
    if configure_logs:
        configure_logging(settings.log_level, json_lines=bool(settings.log_json))
    runtime = build_runtime(settings, clock=clock)
    ingest_jobs.register(runtime)
    context_subscriptions.register_jobs(runtime)
    incidents_jobs.register(runtime)
    egov_install(runtime)
    kpi_install(runtime)
    citizen_jobs(runtime)
    register_outbox_jobs(runtime)
    alerts_engine = alerts_flows.install(runtime)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Build the point → unit index before the first request rather than during it.
        if settings.warm_start:
            with runtime.session_factory() as session:
                unit_service.get_locator(session=session, caches=runtime.caches)
            settle_heap()
        # Listen to the other workers and decide who leads before jobs and rules start.
        peers = fanout.fanout_of(runtime)
        if peers is not None:
            # Only a worker running the rule engine and the jobs, or the MQTT bridge, competes
            # for the lead.
            peers.start(compete=settings.background_jobs or settings.mqtt_bridge)
        if settings.background_jobs:
            runtime.jobs.start()
            # Alerts: rules are evaluated on their own thread, as observations arrive.
            alerts_engine.start()
        # Ingest: the MQTT bridge runs on its own threads inside the server when enabled.
        bridge = MqttBridge(runtime) if settings.mqtt_bridge else None
        _app.state.mqtt_bridge = bridge
        if bridge is not None:
            _start_bridge(bridge, peers)
        try:
            yield
        finally:
            if bridge is not None:
                bridge.stop()
            alerts_engine.stop()
            runtime.jobs.stop()
            if peers is not None:
                peers.stop()
            outbox_mqtt.close(runtime.outbox)

    app = FastAPI(
        title="CityOps",
        version=__version__,
        description="Intelligent Operations Center for Đồng Nai: platform API.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul)],
    )
    app.state.runtime = runtime
    install_error_handlers(
        app,
        runtime.translate,
        renderers={
            "/ngsi-ld/": context_api.render_error,
            "/open311/": citizen_open311.render_error,
        },
    )
    # Starlette's GZip leaves text/event-stream alone, so /api/v1/stream is never buffered.
    # Level 6, not the default 9: the map layers (over a megabyte raw) compress in a third of
    # the time for a few per cent more bytes.
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM, compresslevel=GZIP_LEVEL)
    app.add_middleware(
        RequestContextMiddleware, metrics=runtime.metrics, negotiate=runtime.translate.negotiate
    )
    app.include_router(ops.router)
    app.include_router(auth_api.router, prefix=API_PREFIX)
    app.include_router(units_api.router, prefix=API_PREFIX)
    app.include_router(context_api.router)
    app.include_router(context_api.platform_router, prefix=API_PREFIX)
    app.include_router(ingest_api.router, prefix=API_PREFIX)
    app.include_router(notify_api.router, prefix=API_PREFIX)
    app.include_router(web_stream.router, prefix=API_PREFIX)
    app.include_router(web_mapdata.router, prefix=API_PREFIX)
    app.include_router(programme_api.router, prefix=API_PREFIX)
    app.include_router(incidents_api.router, prefix=API_PREFIX)
    app.include_router(alerts_api.router, prefix=API_PREFIX)
    app.include_router(egov_api.router, prefix=API_PREFIX)
    app.include_router(kpi_api.router, prefix=API_PREFIX)
    app.include_router(citizen_api.router, prefix=API_PREFIX)
    app.include_router(citizen_open311.router)
    app.include_router(web_api.router)
    app.include_router(web_desk.router)
    app.include_router(web_sectors.router)
    app.include_router(web_public.router)
    app.include_router(web_measure.router)
    static = resources.files("cityops.web") / "static"
    # Vendor files exist once scripts/web-assets.sh ran; without them the API still serves.
    app.mount(
        "/static/vendor",
        web_api.VendorFiles(directory=str(static / "vendor"), check_dir=False),
        name="vendor",
    )
    app.mount(
        "/static",
        StaticFiles(directory=str(resources.files("cityops.web") / "static")),
        name="static",
    )
    # Last, once every route is there: each router answers only for the paths it can serve.
    guard_routes(app)
    return app
