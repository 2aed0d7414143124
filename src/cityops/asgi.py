"""ASGI entry point for servers: `uvicorn cityops.asgi:app` (settings from the environment)."""

from __future__ import annotations

from cityops.app import create_app

app = create_app(configure_logs=True)
