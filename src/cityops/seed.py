"""Seeding a profile (the Đồng Nai one by default): what a province would configure."""

from __future__ import annotations

from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.egov import demo as egov_demo
from cityops.egov import flows as egov_flows
from cityops.units import flows as units_flows


def seed(runtime: Runtime, *, profile: str | None = None) -> dict[str, int]:
    """Load the profile's reference data; running it again changes nothing that is already there."""
    with unit_of_work(runtime.session_factory) as session:
        # Reference data from the profile is not an operator's action: it is not audited.
        session.info["actor"] = SYSTEM_PRINCIPAL
        session.info["audit"] = False
        name = profile or runtime.settings.profile
        counts = units_flows.seed_profile(session=session, profile=name, clock=runtime.clock)
        counts |= egov_flows.seed_profile(session=session, profile=name, clock=runtime.clock)
        # Demo dossiers (a year of them), so the 766 scorecard has something to show.
        counts |= egov_demo.seed_demo(runtime=runtime, session=session)
        return counts
