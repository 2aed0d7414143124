"""Operations endpoints: liveness, readiness (database and migrations) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from cityops.core import migrate
from cityops.core.deps import runtime_of
from cityops.core.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Answer as long as the process is alive (on the event loop: no thread hop)."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and migrated to head")
def readyz(request: Request) -> Response:
    """Answer 200 only when the database answers and its schema is at the shipped head."""
    runtime = runtime_of(request)
    checks: dict[str, Any] = {}
    ready = True
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, head = migrate.current_revision(runtime.engine), migrate.head_revision()
        checks["migrations"] = {"current": current, "head": head}
        ready = current == head
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as such
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = False
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Expose request counts and latencies in the Prometheus text format."""
    return Response(runtime_of(request).metrics.render(), media_type=CONTENT_TYPE)
