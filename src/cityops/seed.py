"""Seeding a profile (the Đồng Nai one by default): what a province would configure."""

from __future__ import annotations

from cityops.alerts import flows as alerts_flows
from cityops.citizen import flows as citizen_flows
from cityops.core.db import unit_of_work
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.egov import demo as egov_demo
from cityops.egov import flows as egov_flows
from cityops.incidents import flows as incidents_flows
from cityops.kpi import flows as kpi_flows
from cityops.programme import flows as programme_flows
from cityops.units import flows as units_flows


def seed(runtime: Runtime, *, profile: str | None = None) -> dict[str, int]:
    """Load the profile's reference data; running it again changes nothing that is already there."""
    with unit_of_work(runtime.session_factory) as session:
        # Reference data from the profile is not an operator's action: it is not audited.
        session.info["actor"] = SYSTEM_PRINCIPAL
        session.info["audit"] = False
        name = profile or runtime.settings.profile
        counts = units_flows.seed_profile(session=session, profile=name, clock=runtime.clock)
        # The programme board (phases, items, budget, milestones), through its import.
        counts.update(
            programme_flows.seed_profile(session=session, profile=name, clock=runtime.clock)
        )
        # Incident categories name departments: seeded after the units context.
        counts |= incidents_flows.seed_profile(session=session, profile=name, clock=runtime.clock)
        # The rule pack (profiles/<name>/rules.yaml): missing codes only, tuned rules stay.
        counts["rules"] = alerts_flows.seed_rules(runtime=runtime, session=session, profile=name)
        # The citizen service catalogue names departments and incident categories.
        counts |= citizen_flows.seed_profile(session=session, profile=name, clock=runtime.clock)
        counts |= egov_flows.seed_profile(session=session, profile=name, clock=runtime.clock)
        # Demo dossiers (a year of them), so the 766 scorecard has something to show.
        counts |= egov_demo.seed_demo(runtime=runtime, session=session)
        # The KPI catalogue and population per unit and year (profiles/<name>/kpi/).
        counts |= kpi_flows.seed_profile(session=session, profile=name, clock=runtime.clock)
        return counts
