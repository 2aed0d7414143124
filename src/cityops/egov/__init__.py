"""E-government: administrative-procedure dossiers and the Decision 766 service-quality index."""

from __future__ import annotations

from cityops.core.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Register the egov jobs (due-date alerts) on the runtime."""
    from cityops.egov import jobs

    jobs.register(runtime)
