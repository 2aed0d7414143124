"""Erasure covers photos (Law 91/2025/QH15): after a reporter's request or the retention job, the
photos they sent are gone from disk, from the public pages and from Open311, and the copies made
on the incident go with them; a copy staff attached to the incident themselves (evidence) stays,
staff-only, and the audit log says which."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cityops.core.clock import FrozenClock
from cityops.core.config import Settings
from cityops.core.runtime import Runtime
from cityops.incidents import files as incident_files

from .conftest import API, OPEN311, REPORTER, TRAN_BIEN, Submit, report_id
from .images import photo
from .test_public import created, send
from .test_reports import staff_view, work_through

Headers = dict[str, str]


def _stored(client: TestClient, settings: Settings, code: str, position: int) -> Path:
    """Where a report's photo is kept on disk (its content's SHA-256), read through the API."""
    served = client.get(f"{API}/citizen/reports/{code}/photos/{position}")
    assert served.status_code == 200, served.text
    path = incident_files.path_of(settings.data_dir, hashlib.sha256(served.content).hexdigest())
    assert path.is_file()
    return path


def _erase(client: TestClient, code: str, contact: str) -> None:
    done = client.post(f"{API}/citizen/reports/{code}/erasure", json={"contact": contact})
    assert done.status_code == 204, done.text


def _public_show_no_photo(client: TestClient, code: str) -> None:
    for position in (1, 2, 3):
        assert client.get(f"{API}/citizen/reports/{code}/photos/{position}").status_code == 404
    for url in (
        f"{OPEN311}/requests/{code}.json",
        f"{OPEN311}/requests.json?service_request_id={code}",
    ):
        items = [i for i in client.get(url).json() if i["service_request_id"] == code]
        assert len(items) == 1
        assert "media_url" not in items[0]
    xml = client.get(f"{OPEN311}/requests/{code}.xml")
    assert xml.status_code == 200
    assert "<media_url>" not in xml.text
    page = client.get(f"/public/reports/{code}")
    assert page.status_code == 200
    assert "/photos/" not in page.text


def _audit(client: TestClient, admin: Headers, code: str) -> dict[str, Any]:
    response = client.get(
        f"{API}/audit",
        params={"resource_type": "citizen_report", "resource_id": code, "action": "erase"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    [entry] = response.json()["items"]
    for secret in (REPORTER["email"], "912345678", "Thị Hồng"):
        assert secret not in response.text
    after: dict[str, Any] = entry["after"]
    return after


def test_erasure_deletes_photos_and_incident_copies_but_keeps_staff_evidence(
    client: TestClient,
    settings: Settings,
    login_as: Callable[..., Headers],
    admin: Headers,
) -> None:
    pictures = [photo(colour=(200, 30, 30)), photo(colour=(30, 200, 30))]
    fields = {"service_code": "MT-01", **TRAN_BIEN, **REPORTER, "consent": "true"}
    code = created(send(client, fields, pictures))["tracking_code"]
    first, second = _stored(client, settings, code, 1), _stored(client, settings, code, 2)
    operator = login_as("operator")
    incident_id = staff_view(client, operator, code)["incident_id"]
    incident_url = f"{API}/incidents/{incident_id}"
    copies = client.get(incident_url, headers=operator).json()["attachments"]
    assert [a["file_name"] for a in copies] == [f"{code}-1.jpg", f"{code}-2.jpg"]
    # Staff keep the second photo as evidence: they attach it to the incident themselves.
    evidence_bytes = client.get(f"{API}/citizen/reports/{code}/photos/2").content
    kept = client.post(
        f"{incident_url}/attachments",
        files={"file": ("bang-chung.jpg", evidence_bytes, "image/jpeg")},
        headers=operator,
    )
    assert kept.status_code == 201, kept.text

    _erase(client, code, REPORTER["email"])

    assert not first.exists()
    assert second.exists()  # the incident's evidence copy still needs the content
    _public_show_no_photo(client, code)
    operator = login_as("operator")
    report = staff_view(client, operator, code)
    assert report["photo_urls"] == []
    assert report["media_url"] is None
    assert report["reporter"] is None
    assert report["personal_data_erased_at"] is not None
    incident = client.get(incident_url, headers=operator).json()
    assert [a["id"] for a in incident["attachments"]] == [kept.json()["id"]]
    download = client.get(f"{incident_url}/attachments/{kept.json()['id']}", headers=operator)
    assert download.status_code == 200
    assert download.content == evidence_bytes
    notes = [e.get("note") or "" for e in incident["timeline"]]
    assert any(code in n and "theo yêu cầu" in n for n in notes)
    # The audit log says what went and what stayed, without the reporter's details.
    after = _audit(client, admin, code)
    assert after["reason"] == "request"
    assert after["contacts_erased"] is True
    assert after["photos_deleted"] == [1, 2]
    assert after["media_url_removed"] is True
    assert [e["position"] for e in after["kept_as_evidence"]] == [2]
    assert after["kept_as_evidence"][0]["attachment_id"] == kept.json()["id"]
    assert len(after["incident_copies_removed"][0]["attachment_ids"]) == 2
    # Asked again: nothing left to match, the same 404 as for a wrong contact.
    again = client.post(
        f"{API}/citizen/reports/{code}/erasure", json={"contact": REPORTER["email"]}
    )
    assert again.status_code == 404


def test_a_photo_another_report_also_uses_stays_for_that_report(
    client: TestClient, settings: Settings, login_as: Callable[..., Headers]
) -> None:
    same = photo(colour=(10, 10, 240))
    mine = created(
        send(
            client,
            {"service_code": "MT-01", **TRAN_BIEN, "phone": "0912345678", "consent": "true"},
            [same],
        )
    )["tracking_code"]
    # The same picture sent for another report elsewhere (re-encoded to the same bytes).
    theirs = created(
        send(client, {"service_code": "MT-01", "lat": "10.954", "long": "106.859"}, [same])
    )["tracking_code"]
    path = _stored(client, settings, mine, 1)
    assert _stored(client, settings, theirs, 1) == path
    # A report held for moderation (no incident yet) is erased all the same.
    held = created(
        send(
            client,
            {
                "service_code": "KH-01",
                **TRAN_BIEN,
                "description": "Xem www.example.vn",
                "email": "a.b@example.vn",
                "consent": "true",
            },
            [photo(colour=(1, 2, 3))],
        )
    )
    assert held["moderation"] == "pending"
    held_path = _stored(client, settings, held["tracking_code"], 1)

    _erase(client, mine, "0912345678")
    _erase(client, held["tracking_code"], "a.b@example.vn")

    assert path.exists()
    assert client.get(f"{API}/citizen/reports/{theirs}/photos/1").status_code == 200
    _public_show_no_photo(client, mine)
    assert not held_path.exists()
    operator = login_as("operator")
    assert staff_view(client, operator, held["tracking_code"])["photo_urls"] == []
    incident_id = staff_view(client, operator, theirs)["incident_id"]
    their_copies = client.get(f"{API}/incidents/{incident_id}", headers=operator).json()
    assert [a["file_name"] for a in their_copies["attachments"]] == [f"{theirs}-1.jpg"]


def test_retention_job_deletes_photos_and_media_url_after_closing(
    client: TestClient,
    settings: Settings,
    submit: Submit,
    login_as: Callable[..., Headers],
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    # Anonymous: no contacts, yet the photo may show the reporter's face, house or plate.
    code = created(send(client, {"service_code": "MT-01", **TRAN_BIEN}, [photo()]))["tracking_code"]
    path = _stored(client, settings, code, 1)
    streetlight = report_id(
        submit(
            service_code="CS-01",
            media_url="https://anh.example.vn/cot-den.jpg",
            lat="10.9420",
            long="106.835",
        )
    )
    still_open = report_id(
        submit(service_code="TN-01", media_url="https://anh.example.vn/o-ga.jpg", **TRAN_BIEN)
    )
    operator = login_as("operator")
    work_through(client, login_as, staff_view(client, operator, code)["incident_id"], "SNNMT")
    work_through(client, login_as, staff_view(client, operator, streetlight)["incident_id"], "SXD")
    clock.advance(timedelta(days=settings.citizen_retention_days - 1))
    runtime.jobs.run_due(time.monotonic() + 10 * 3600)
    assert path.exists()  # not yet
    clock.advance(timedelta(days=2))
    runtime.jobs.run_due(time.monotonic() + 20 * 3600)
    assert not path.exists()
    _public_show_no_photo(client, code)
    _public_show_no_photo(client, streetlight)
    media = client.get(f"{OPEN311}/requests/{still_open}.json").json()[0]["media_url"]
    assert media == "https://anh.example.vn/o-ga.jpg"  # still open: still needed
    after = _audit(client, login_as("admin"), code)  # a fresh token: the clock moved
    assert after["reason"] == "retention"
    assert after["contacts_erased"] is False
    assert after["photos_deleted"] == [1]
    incident_id = staff_view(client, login_as("operator"), code)["incident_id"]
    incident = client.get(f"{API}/incidents/{incident_id}", headers=login_as("operator")).json()
    assert incident["attachments"] == []


def test_an_anonymous_reporter_erases_photos_with_the_key_of_their_link(
    client: TestClient, settings: Settings
) -> None:
    body = created(send(client, {"service_code": "MT-01", **TRAN_BIEN}, [photo()]))
    code, mine = body["tracking_code"], body["tracking_url"]
    key = mine.rsplit("key=", 1)[1]
    path = _stored(client, settings, code, 1)
    # Only the reporter's own link offers erasure.
    assert 'id="erase-form"' in client.get(mine).text
    assert 'id="erase-form"' not in client.get(f"/public/reports/{code}").text
    url = f"{API}/citizen/reports/{code}/erasure"
    neither = client.post(url, json={})
    assert neither.status_code == 422
    assert neither.json()["errors"][0]["field"] == "contact"
    assert client.post(url, json={"key": "0" * 32}).status_code == 404
    assert client.post(url, json={"contact": "someone@example.vn", "key": "ab"}).status_code == 404
    assert path.exists()
    done = client.post(url, json={"key": key})
    assert done.status_code == 204, done.text
    assert not path.exists()
    _public_show_no_photo(client, code)
    assert client.post(url, json={"key": key}).status_code == 204  # nothing left: no change
