"""Operations end to end, as the "done when" of issue 4 reads: a pollution spike at a Biên Hòa
air station opens an alert, the alert opens an incident for the environment department and the
station's ward, an operator's live stream shows both, a breached SLA escalates the incident to
the department head (who gets an e-mail), the alert resolves by itself when the air clears, and
the timeline and the audit log hold every step. A user scoped to another ward sees none of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cityops.alerts import flows as alert_flows
from cityops.auth import service as auth_service
from cityops.auth.schemas import UserCreate
from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.db import unit_of_work
from cityops.core.events import Event
from cityops.core.runtime import Runtime
from cityops.core.security import SYSTEM_PRINCIPAL
from cityops.incidents import jobs as incident_jobs

from ..conftest import TEST_PASSWORD
from ..smtp_sink import SmtpSink
from ..web.live import LiveServer, SseClient, SseEvent

API = "/api/v1"
NGSI = "/ngsi-ld/v1"
STATION = "urn:ngsi-ld:AirQualityObserved:dn-aq-tran-bien-e2e"
TRAN_BIEN = (106.838, 10.936)  # lon, lat: Phường Trấn Biên (26041), former Biên Hòa city
WARD = "26041"
OTHER_WARD = "26080"  # Long Khánh
ENV = "SNNMT"

Headers = dict[str, str]


def iso(at: Any) -> str:
    """Format an instant as NGSI-LD does."""
    return str(at.strftime("%Y-%m-%dT%H:%M:%S.")) + f"{at.microsecond // 1000:03d}Z"


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on a free local port."""
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    """E-mail to the sink; streams poll other workers rarely, so what arrives came at once."""
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_sink.port,
            "smtp_security": "none",
            "smtp_from": "Trung tâm IOC Đồng Nai <ioc@dongnai.gov.vn>",
            "stream_poll_seconds": 30.0,
        }
    )


@pytest.fixture
def live(app: FastAPI) -> Iterator[LiveServer]:
    """The test's app served by a real uvicorn server."""
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def engine(runtime: Runtime) -> Iterator[alert_flows.Engine]:
    """The rule engine's evaluator thread, running as it does under `cityops serve`."""
    engine = alert_flows.engine_of(runtime)
    engine.start()
    yield engine
    engine.stop()


class People:
    """Users of the scenario, created in the database and logged in through the API."""

    def __init__(self, client: TestClient, runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime
        self.usernames: dict[str, str] = {}
        self.ids: dict[str, int] = {}

    def add(self, name: str, role: str, **scope: str) -> None:
        """Create an active user with an e-mail address."""
        username = f"{name}-{uuid.uuid4().hex[:6]}"
        with unit_of_work(self.runtime.session_factory) as session:
            session.info["actor"] = SYSTEM_PRINCIPAL
            user = auth_service.create_user(
                session=session,
                user_in=UserCreate(
                    username=username,
                    password=TEST_PASSWORD,
                    full_name=f"Nguyễn Văn {name.title()}",
                    role=role,
                    email=f"{username}@dongnai.gov.vn",
                    **scope,
                ),
                clock=self.runtime.clock,
                settings=self.runtime.settings,
            )
            self.ids[name] = user.id
        self.usernames[name] = username

    def email(self, name: str) -> str:
        """The e-mail address of a user."""
        return f"{self.usernames[name]}@dongnai.gov.vn"

    def headers(self, name: str) -> Headers:
        """Fresh bearer headers (tokens expire as the test clock moves)."""
        response = self.client.post(
            f"{API}/auth/token",
            data={"username": self.usernames[name], "password": TEST_PASSWORD},
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _kind(event: SseEvent) -> tuple[str, Any]:
    return event.type, event.data.get("rule_code") or event.data.get("change")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _items(client: TestClient, path: str, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"{API}{path}", params={"limit": 200, **params}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_pollution_spike_in_bien_hoa_runs_the_whole_operations_chain(
    client: TestClient,
    runtime: Runtime,
    live: LiveServer,
    engine: alert_flows.Engine,
    clock: FrozenClock,
    smtp_sink: SmtpSink,
) -> None:
    people = People(client, runtime)
    people.add("admin", "admin")
    people.add("operator", "operator")
    people.add("head", "leader", department_code=ENV)
    people.add("ward", "unit_officer", unit_code=WARD)
    people.add("far", "unit_officer", unit_code=OTHER_WARD)
    admin = {**people.headers("admin"), "Content-Type": "application/json"}
    bus: list[Event] = []
    runtime.bus.subscribe("*", bus.append)

    streams = {
        name: SseClient(f"{live.url}{API}/stream", headers=people.headers(name))
        for name in ("operator", "ward", "far")
    }
    try:
        for stream in streams.values():
            assert stream.status == 200, stream.body
        t0 = clock.now()
        station = {
            "id": STATION,
            "type": "AirQualityObserved",
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": TRAN_BIEN},
            },
            "dateObserved": {"type": "Property", "value": iso(t0)},
            "airQualityIndex": {"type": "Property", "value": 88, "observedAt": iso(t0)},
        }
        created = client.post(f"{NGSI}/entities", json=station, headers=admin)
        assert created.status_code == 201, created.text

        # --- The spike: VN_AQI 176 ("Xấu"). ------------------------------------------------
        spike = {"airQualityIndex": {"type": "Property", "value": 176, "observedAt": iso(t0)}}
        patched = client.patch(f"{NGSI}/entities/{STATION}/attrs", json=spike, headers=admin)
        assert patched.status_code == 204, patched.text
        seen = streams["operator"].collect(
            lambda e: _kind(e) == ("alerts.alert_opened", "aqi-bad"),
            lambda e: e.type == "incidents.incident_created",
            timeout=10,
        )
        ops = [e for e in seen if e.type.startswith(("alerts.", "incidents."))]
        # The alert comes first on the wall, then the incident it opened.
        assert [_kind(e) for e in ops] == [
            ("alerts.alert_opened", "aqi-poor"),
            ("alerts.alert_opened", "aqi-bad"),
            ("incidents.incident_created", "created"),
        ]
        alert = ops[1].data
        incident_event = ops[2].data
        assert (alert["unit_code"], alert["severity"], alert["value"]) == (WARD, "medium", 176)
        assert incident_event["alert_id"] == alert["alert_id"]
        assert (incident_event["department_code"], incident_event["unit_code"]) == (ENV, WARD)
        # The incident exists as soon as the alert does: opened in the alert's own transaction.
        incident_id = incident_event["incident_id"]
        incident = client.get(f"{API}/incidents/{incident_id}", headers=admin).json()
        assert _at(incident["created_at"]) == _at(alert["opened_at"])
        assert incident["category_code"] == "air_pollution"
        # On the map where the station is, though the spike's PATCH carried no location.
        assert (incident["lon"], incident["lat"]) == pytest.approx(TRAN_BIEN)
        assert (incident["department_code"], incident["unit_code"]) == (ENV, WARD)
        assert (incident["source"], incident["status"]) == ("alert", "assigned")
        # The ward's officer sees the same on their stream; Long Khánh's sees nothing of it.
        ward_seen = streams["ward"].collect(
            lambda e: e.type == "incidents.incident_created", timeout=10
        )
        assert ("alerts.alert_opened", "aqi-bad") in [_kind(e) for e in ward_seen]

        # --- Nobody starts work: the SLA passes and the incident escalates. ---------------
        # Medium severity: two working hours to start (Friday 10:00 → 12:00 … 13:30).
        assert incident["due_ack_at"] == "2026-11-20T06:30:00Z"
        clock.advance(timedelta(hours=3, minutes=31))
        assert incident_jobs.check_sla(runtime) == 1
        escalated = [e for e in bus if e.type == "incidents.incident_escalated"]
        assert len(escalated) == 1
        assert people.ids["head"] in escalated[0].data["notify_user_ids"]
        assert people.ids["far"] not in escalated[0].data["notify_user_ids"]
        assert runtime.outbox is not None
        runtime.outbox.drain()
        to_head = [m for m in smtp_sink.mails if people.email("head") in m.rcpt_tos]
        assert to_head, [m.rcpt_tos for m in smtp_sink.mails]
        assert any(str(incident["code"]) in m.message["Subject"] + m.text for m in to_head)
        assert not [m for m in smtp_sink.mails if people.email("far") in m.rcpt_tos]

        # --- The air clears, through the band of hysteresis first. ------------------------
        admin = {**people.headers("admin"), "Content-Type": "application/json"}
        t1 = clock.now()

        def measure(value: int, at: Any) -> None:
            body = {"airQualityIndex": {"type": "Property", "value": value, "observedAt": iso(at)}}
            response = client.patch(f"{NGSI}/entities/{STATION}/attrs", json=body, headers=admin)
            assert response.status_code == 204, response.text

        measure(145, t1)  # under 150 but within the 10 points of hysteresis: still open
        streams["operator"].collect(
            lambda e: e.type == "context.attribute_changed" and e.data["value"] == 145, timeout=10
        )
        engine_idle(engine)
        alert_now = client.get(f"{API}/alerts/{alert['alert_id']}", headers=admin).json()
        assert alert_now["status"] == "open"
        measure(62, t1 + timedelta(minutes=10))
        resolved = streams["operator"].collect(
            lambda e: _kind(e) == ("alerts.alert_resolved", "aqi-bad"), timeout=10
        )
        assert [e for e in resolved if e.type == "alerts.alert_resolved"]
        alert_now = client.get(f"{API}/alerts/{alert['alert_id']}", headers=admin).json()
        assert (alert_now["status"], alert_now["resolution"]) == ("resolved", "auto")

        # --- Every transition is in the timeline and in the audit log. --------------------
        detail = client.get(f"{API}/incidents/{incident_id}", headers=admin).json()
        kinds = [entry["kind"] for entry in detail["timeline"]]
        assert kinds == [
            "created",
            "assigned",
            "sla_breached",
            "escalated",
            "alert_cleared",
        ], kinds
        assert detail["escalation_level"] == 1
        audit = _items(
            client, "/audit", admin, resource_type="incident", resource_id=str(incident_id)
        )
        assert audit, "the incident's changes are in the audit log"
        # Newest first: the escalation, then the creation from the alert (by the system).
        assert [(e["action"], e["actor_kind"]) for e in audit] == [
            ("update", "system"),
            ("create", "system"),
        ]
        assert audit[1]["after"]["alert_id"] == alert["alert_id"]
        assert (audit[0]["before"]["escalation_level"], audit[0]["after"]["escalation_level"]) == (
            0,
            1,
        )

        # --- Long Khánh's officer never saw any of it, on any route or on the stream. -----
        far = people.headers("far")
        assert _items(client, "/alerts", far) == []
        assert _items(client, "/incidents", far) == []
        for path in (f"/alerts/{alert['alert_id']}", f"/incidents/{incident_id}"):
            assert client.get(f"{API}{path}", headers=far).status_code in (403, 404)
        report = client.get(f"{API}/incidents/sla-report", headers=far)
        assert report.status_code == 200, report.text
        assert all(row["total"] == 0 for row in report.json().get("rows", [])), report.json()
        far_seen = streams["far"].drain(0.5)
        assert not [e for e in far_seen if e.type.startswith(("alerts.", "incidents."))]
        assert not [e for e in far_seen if e.data.get("entity_id") == STATION]
        ward = people.headers("ward")
        assert {a["rule_code"] for a in _items(client, "/alerts", ward)} == {"aqi-poor", "aqi-bad"}
        assert [i["id"] for i in _items(client, "/incidents", ward)] == [incident_id]
    finally:
        for stream in streams.values():
            stream.close()


def engine_idle(engine: alert_flows.Engine, timeout: float = 5.0) -> None:
    """Wait until the evaluator thread has nothing left to evaluate."""
    import time

    deadline = time.monotonic() + timeout
    while engine.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # the batch taken off the queue is written in its own transaction
