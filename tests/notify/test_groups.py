"""Named notification groups of the rule pack (`policy.notify`: "ioc", "leaders"): who in them
hears about an alert, by the roles of `CITYOPS_NOTIFY_GROUPS` and their scope, over real SMTP."""

from __future__ import annotations

import pytest

from cityops.core.config import Settings
from cityops.core.runtime import Runtime

from ..smtp_sink import SmtpSink
from .conftest import PersonFactory, Publisher, deliver, email_of

WARD = "26017"  # Phường Tam Hiệp, where the fixture's alert is
OTHER_WARD = "26080"  # Long Khánh
IOC = {"incident": None, "notify": ["ioc"]}
BOTH = {"incident": None, "notify": ["ioc", "leaders"]}


def _recipients(runtime: Runtime, sink: SmtpSink) -> set[str]:
    deliver(runtime)
    return {address for mail in sink.mails for address in mail.rcpt_tos}


def test_ioc_reaches_the_operators_whose_scope_covers_the_alert(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    # Default preferences (only e-mail about what is theirs, no alert kinds): the group is
    # what makes the alert theirs.
    province = person("operator")
    ward = person("operator", unit_code=WARD)
    person("operator", unit_code=OTHER_WARD)  # not their ward
    person("leader")  # a leader, and the rule names only "ioc"
    person("viewer")
    person("operator", email=None)  # no address: nothing to send to
    publish("alerts.alert_opened", "alert_opened", policy=IOC, severity="low")
    assert _recipients(runtime, smtp_sink) == {
        email_of(runtime, province),
        email_of(runtime, ward),
    }
    subject = smtp_sink.mails[0].message["Subject"]
    assert "Chất lượng không khí rất xấu" in subject


def test_leaders_reaches_leaders_in_scope_and_not_other_departments(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    operator = person("operator")
    province = person("leader")
    ward = person("leader", unit_code=WARD)
    head = person("leader", department_code="SNNMT")
    person("leader", department_code="SYT")  # health: not theirs
    person("leader", unit_code=OTHER_WARD)
    policy = {**BOTH, "incident": {"category": "air_pollution", "department_code": "SNNMT"}}
    publish("alerts.alert_opened", "alert_opened", policy=policy)
    assert _recipients(runtime, smtp_sink) == {
        email_of(runtime, user) for user in (operator, province, ward, head)
    }


def test_group_members_choose_their_channels_and_hear_the_resolution_if_they_want(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    wants_resolved = person(
        "operator", prefs={"events": ["alert_resolved"], "channels": ["email"], "only_mine": True}
    )
    person("operator", prefs={"events": ["incident_created"], "channels": ["email"]})
    publish(
        "alerts.alert_resolved",
        "alert_opened",
        policy=IOC,
        status="resolved",
        resolved_at="2026-11-20T04:00:00+00:00",
    )
    # A resolution is not addressed to the group: only those who asked for resolutions hear it
    # (and "only mine" does not hide it: the group makes it theirs).
    assert _recipients(runtime, smtp_sink) == {email_of(runtime, wants_resolved)}


def test_a_group_nobody_configured_reaches_nobody(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    person("operator")
    publish("alerts.alert_opened", "alert_opened", policy={"incident": None, "notify": ["pr"]})
    assert _recipients(runtime, smtp_sink) == set()


class TestConfiguredGroups:
    """Groups are settings: a deployment maps names to roles its own way."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(
            update={"notify_groups": {"ioc": ["unit_officer"], "press": ["viewer"]}}
        )

    def test_groups_follow_the_settings(
        self, runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
    ) -> None:
        person("operator")  # no longer in "ioc"
        officer = person("unit_officer", unit_code=WARD)
        person("unit_officer", unit_code=OTHER_WARD)
        viewer = person("viewer")
        publish("alerts.alert_opened", "alert_opened", policy={"incident": None, "notify": ["ioc"]})
        assert _recipients(runtime, smtp_sink) == {email_of(runtime, officer)}
        smtp_sink.mails.clear()
        publish(
            "alerts.alert_opened",
            "alert_opened",
            alert_id=42,
            policy={"incident": None, "notify": ["press"]},
        )
        assert _recipients(runtime, smtp_sink) == {email_of(runtime, viewer)}
