"""Who hears about an alert or incident event: permissions, scope, preferences, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cityops.core.clock import FrozenClock
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.notify import service
from cityops.notify.flows import quiet_until

from ..smtp_sink import SmtpSink
from .conftest import PersonFactory, Publisher, deliver, email_of, load_fixture, messages

ALERTS = {"events": ["alert_opened"], "channels": ["email"]}
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def test_an_incident_dispatched_to_a_department_emails_its_officers_in_their_language(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    # Default preferences: e-mail about what is assigned to them (or their department).
    officer = person("department_officer", department_code="SYT")
    english = person("department_officer", department_code="SYT", language="en")
    person("department_officer", department_code="SGDDT")  # another department: nothing
    publish("incidents.incident_created", "incident_created")
    assert deliver(runtime) == 2
    mails = {mail.rcpt_tos[0]: mail for mail in smtp_sink.wait_for(2)}
    assert set(mails) == {email_of(runtime, officer), email_of(runtime, english)}

    vi = mails[email_of(runtime, officer)]
    assert vi.message["Subject"] == (
        "[CityOps] Sự cố SC-2026-000007 được giao xử lý: "
        "Quá tải khoa cấp cứu Bệnh viện Đa khoa Đồng Nai"
    )
    assert vi.message["To"].addresses[0].display_name == "Nguyễn Văn Department_Officer"
    assert "Địa bàn: Phường Tam Hiệp" in vi.text
    assert "Mức độ: cao" in vi.text
    assert "Hạn xử lý: 14:00 20/11/2026" in vi.text  # 07:00Z in Đồng Nai time
    assert "https://ioc.dongnai.gov.vn/incidents/7" in vi.text

    en = mails[email_of(runtime, english)]
    assert en.message["Subject"].startswith("[CityOps] Incident SC-2026-000007 assigned:")
    assert "Where: Phường Tam Hiệp" in en.text
    assert "Severity: high" in en.text


def test_users_without_preferences_hear_only_about_what_is_addressed_to_them(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    person("operator")  # province-wide, default preferences
    person("viewer")
    publish("alerts.alert_opened", "alert_opened", severity="critical")
    publish("incidents.incident_created", "incident_created")
    assert deliver(runtime) == 0
    assert smtp_sink.mails == []


def test_preferences_filter_event_kinds_and_severities(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    operator = person("operator", prefs={**ALERTS, "min_severity": "high"})
    publish("alerts.alert_opened", "alert_opened", alert_id=1, severity="medium")
    publish("alerts.alert_resolved", "alert_opened", alert_id=2, severity="critical")
    publish("incidents.incident_created", "incident_created", severity="critical")
    assert deliver(runtime) == 0
    publish("alerts.alert_opened", "alert_opened", alert_id=3, severity="high")
    publish("alerts.alert_opened", "alert_opened", alert_id=4, severity="critical")
    assert deliver(runtime) == 2
    mails = smtp_sink.wait_for(2)
    assert {mail.rcpt_tos[0] for mail in mails} == {email_of(runtime, operator)}
    assert [mail.message["Subject"] for mail in mails] == [
        "[CityOps] Cảnh báo mức cao: Chất lượng không khí rất xấu (VN_AQI 212) – Phường Tam Hiệp",
        "[CityOps] Cảnh báo mức nghiêm trọng: Chất lượng không khí rất xấu (VN_AQI 212) – "
        "Phường Tam Hiệp",
    ]
    assert "https://ioc.dongnai.gov.vn/alerts/3" in mails[0].text


def test_a_ward_officer_hears_nothing_about_another_ward(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    tam_hiep = person("unit_officer", unit_code="26017", prefs=ALERTS)
    publish("alerts.alert_opened", "alert_opened", alert_id=1, unit_code="26041")  # Trấn Biên
    publish("alerts.alert_opened", "alert_opened", alert_id=2, unit_code=None)  # province-wide
    assert deliver(runtime) == 0
    publish("alerts.alert_opened", "alert_opened", alert_id=3, unit_code="26017")
    assert deliver(runtime) == 1
    (mail,) = smtp_sink.wait_for(1)
    assert mail.rcpt_tos == [email_of(runtime, tam_hiep)]


def test_an_area_operator_hears_about_its_pilot_area_only(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    person("operator", area_code="bien-hoa-cu", prefs=ALERTS)
    publish("alerts.alert_opened", "alert_opened", alert_id=1, unit_code="26080")  # Long Khánh
    assert deliver(runtime) == 0
    publish("alerts.alert_opened", "alert_opened", alert_id=2, unit_code="26017")  # Tam Hiệp
    assert deliver(runtime) == 1


def test_quiet_hours_hold_a_medium_alert_until_they_end_but_not_a_critical_one(
    runtime: Runtime,
    clock: FrozenClock,
    smtp_sink: SmtpSink,
    person: PersonFactory,
    publish: Publisher,
) -> None:
    # It is 10:00 in Đồng Nai; the officer is not to be disturbed from 09:30 to 12:00.
    person("operator", prefs={**ALERTS, "quiet_start": "09:30", "quiet_end": "12:00"})
    publish("alerts.alert_opened", "alert_opened", alert_id=1, severity="medium")
    publish("alerts.alert_opened", "alert_opened", alert_id=2, severity="critical")
    assert deliver(runtime) == 1
    (urgent,) = smtp_sink.wait_for(1)
    assert "nghiêm trọng" in urgent.message["Subject"]
    (held,) = messages(runtime, source_ref="alerts.alert_opened:1")
    assert held.next_attempt_at == datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
    # Another critical one during quiet hours is not held back behind the held message.
    publish("alerts.alert_opened", "alert_opened", alert_id=3, severity="critical")
    assert deliver(runtime) == 1

    clock.advance(timedelta(hours=1, minutes=59))  # 11:59
    assert deliver(runtime) == 0
    clock.advance(timedelta(minutes=1))  # 12:00
    assert deliver(runtime) == 1
    assert "trung bình" in smtp_sink.wait_for(3)[2].message["Subject"]


def test_quiet_hours_may_span_midnight() -> None:
    night = (time(22, 0), time(6, 0))
    late = datetime(2026, 11, 20, 23, 30, tzinfo=HCM)
    early = datetime(2026, 11, 21, 5, 0, tzinfo=HCM)
    assert quiet_until(late, night, HCM) == datetime(2026, 11, 21, 6, 0, tzinfo=HCM)
    assert quiet_until(early, night, HCM) == datetime(2026, 11, 21, 6, 0, tzinfo=HCM)
    assert quiet_until(datetime(2026, 11, 21, 6, 0, tzinfo=HCM), night, HCM) is None
    assert quiet_until(datetime(2026, 11, 21, 12, 0, tzinfo=HCM), night, HCM) is None
    assert quiet_until(late, None, HCM) is None


def test_an_escalation_reaches_its_targets_whatever_their_scope_and_choices(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    # The head of another department, and a leader who only asked for alerts by e-mail.
    head = person("leader", department_code="SNV", prefs={**ALERTS, "only_mine": True})
    silent = person("leader", department_code="SNV", prefs={"events": [], "channels": []})
    bystander = person("leader", department_code="SNV")
    publish("incidents.incident_escalated", "incident_escalated", notify_user_ids=[head, silent])
    assert deliver(runtime) == 1
    (mail,) = smtp_sink.wait_for(1)
    assert mail.rcpt_tos == [email_of(runtime, head)]
    assert mail.message["Subject"] == (
        "[CityOps] Sự cố SC-2026-000007 được chuyển lên cấp 1: "
        "Quá tải khoa cấp cứu Bệnh viện Đa khoa Đồng Nai"
    )
    assert "Lý do: Quá hạn tiếp nhận 30 phút" in mail.text
    assert email_of(runtime, bystander) not in {m.rcpt_tos[0] for m in smtp_sink.mails}


def test_the_assignee_hears_of_the_assignment_and_others_of_the_status(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    # The assignee works in another ward: being assigned reaches them all the same.
    assignee = person("unit_officer", unit_code="26041")
    watcher = person("operator", prefs={"events": ["incident_status"], "channels": ["email"]})
    incident = load_fixture("incident_created")
    publish(
        "incidents.incident_changed",
        incident,
        change="assignment",
        assignee_id=assignee,
        department_codes=[],
        department_code=None,
    )
    publish(
        "incidents.incident_changed",
        incident,
        change="status",
        status="in_progress",
        previous_status="new",
        assignee_id=assignee,
        actor_id=assignee,  # the assignee started the work: they are not told about it
    )
    assert deliver(runtime) == 2
    mails = {mail.rcpt_tos[0]: mail for mail in smtp_sink.wait_for(2)}
    assert "được giao xử lý" in mails[email_of(runtime, assignee)].message["Subject"]
    status = mails[email_of(runtime, watcher)]
    assert status.message["Subject"].startswith(
        "[CityOps] Sự cố SC-2026-000007 chuyển sang “đang xử lý”"
    )
    assert "chuyển từ “mới” sang “đang xử lý”" in status.text


def test_a_rolled_back_transaction_sends_nothing(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory
) -> None:
    person("operator", prefs=ALERTS)
    session = runtime.session_factory()
    runtime.bus.publish_after_commit(
        session,
        Event(
            type="alerts.alert_opened", data=load_fixture("alert_opened"), at=runtime.clock.now()
        ),
    )
    assert messages(runtime) == []  # queued in the session, not yet visible
    session.rollback()
    session.close()
    assert deliver(runtime) == 0
    assert messages(runtime) == []
    assert smtp_sink.mails == []


def test_new_users_and_changed_preferences_apply_to_the_next_event(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    first = person("operator", prefs=ALERTS)
    publish("alerts.alert_opened", "alert_opened", alert_id=1)
    second = person("operator", prefs=ALERTS)  # created after the directory was cached
    with unit_of_work(runtime.session_factory) as session:
        service.delete_preference(session=session, user_id=first)  # back to the defaults
    publish("alerts.alert_opened", "alert_opened", alert_id=2)
    assert deliver(runtime) == 2
    received = {
        (mail.rcpt_tos[0], mail.text.split("/alerts/")[1][0]) for mail in smtp_sink.wait_for(2)
    }
    assert received == {(email_of(runtime, first), "1"), (email_of(runtime, second), "2")}


def test_events_of_other_families_and_kinds_notify_nobody(
    runtime: Runtime, person: PersonFactory, publish: Publisher
) -> None:
    person("operator", prefs={"events": ["alert_opened", "alert_resolved"], "channels": ["email"]})
    publish("alerts.alert_acknowledged", "alert_opened")
    publish("context.attribute_changed", {"unit_code": "26017", "severity": "critical"})
    assert messages(runtime) == []


def test_odd_payloads_degrade_the_message_instead_of_failing(
    runtime: Runtime, smtp_sink: SmtpSink, person: PersonFactory, publish: Publisher
) -> None:
    person("operator", prefs={"events": ["incident_created"], "channels": ["email"]})
    publish(
        "incidents.incident_created",
        {"incident_id": "x", "severity": "extreme", "department_codes": "SYT", "title": None},
    )
    assert deliver(runtime) == 1
    (mail,) = smtp_sink.wait_for(1)
    assert mail.message["Subject"] == "[CityOps] Sự cố mới —: —"
