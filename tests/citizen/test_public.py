"""Reports from the public page (`POST /api/v1/citizen/submissions`): photos checked and stored
without metadata, the EXIF position used when nothing was pinned, consent for contacts, the
photos on the incident and in Open311; messages in the reporter's language; staff linking a
report to a duplicate's incident."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from cityops.core.runtime import Runtime

from ..receiver import Receiver
from ..smtp_sink import SmtpSink
from .conftest import API, OPEN311, REPORTER, TAM_HIEP_POINT, TRAN_BIEN, WARD, Submit, report_id
from .images import metadata_left, photo
from .test_reports import public, staff_view, work_through

Headers = dict[str, str]
SUBMIT = f"{API}/citizen/submissions"


def send(
    client: TestClient,
    fields: dict[str, Any],
    photos: list[bytes] | None = None,
    *,
    lang: str | None = None,
    name: str = "anh.jpg",
) -> Any:
    """Post the public page's multipart form."""
    files = [("photos", (name, content, "application/octet-stream")) for content in photos or []]
    # No photo: the part a browser sends for an empty file input keeps the body multipart.
    files = files or [("photos", ("", b"", "application/octet-stream"))]
    params = {"lang": lang} if lang else None
    return client.post(SUBMIT, data=fields, files=files, params=params)


def created(response: Any) -> dict[str, Any]:
    """The body of an accepted submission."""
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def count_public(client: TestClient) -> int:
    """How many reports the public Open311 list holds."""
    return len(client.get(f"{OPEN311}/requests.json").json())


def test_photo_locates_the_report_and_is_stored_without_metadata(
    client: TestClient, login_as: Callable[..., Headers]
) -> None:
    original = photo(gps=(10.938, 106.835))  # Phường Trấn Biên
    body = created(
        send(client, {"service_code": "MT-01", "description": "Rác chất đống"}, [original])
    )
    code = body["tracking_code"]
    assert body["unit_code"] == WARD
    assert body["department_code"] == "SNNMT"
    assert body["photos"] == 1
    assert re.fullmatch(rf"/public/reports/{code}\?key=[0-9a-f]{{32}}", body["tracking_url"])
    served = client.get(f"{API}/citizen/reports/{code}/photos/1")
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert metadata_left(served.content) == []
    assert client.get(f"{API}/citizen/reports/{code}/photos/2").status_code == 404
    # Open311 media_url is the public photo address.
    item = public(client, code)
    assert item["media_url"] == f"https://ioc.dongnai.gov.vn/api/v1/citizen/reports/{code}/photos/1"
    assert abs(item["lat"] - 10.938) < 1e-4
    assert abs(item["long"] - 106.835) < 1e-4
    # Staff see the photo on the incident, without metadata either.
    operator = login_as("operator")
    report = staff_view(client, operator, code)
    assert report["photo_urls"] == [item["media_url"]]
    incident = client.get(f"{API}/incidents/{report['incident_id']}", headers=operator).json()
    assert incident["unit_code"] == WARD
    assert incident["department_code"] == "SNNMT"
    [attachment] = incident["attachments"]
    assert attachment["content_type"] == "image/jpeg"
    assert attachment["file_name"] == f"{code}-1.jpg"
    download = client.get(
        f"{API}/incidents/{report['incident_id']}/attachments/{attachment['id']}", headers=operator
    )
    assert download.status_code == 200
    assert metadata_left(download.content) == []


def test_a_pinned_place_wins_over_the_photo_and_png_webp_are_cleaned(
    client: TestClient,
) -> None:
    photos = [photo("PNG", gps=(10.938, 106.835)), photo("WEBP", gps=(10.938, 106.835))]
    body = created(send(client, {"service_code": "MT-01", **TAM_HIEP_POINT}, photos))
    assert body["unit_code"] == "26017"  # the pin (Tam Hiệp), not the photos' place
    code = body["tracking_code"]
    for position, kind in ((1, "image/png"), (2, "image/webp")):
        served = client.get(f"{API}/citizen/reports/{code}/photos/{position}")
        assert served.headers["content-type"] == kind
        assert metadata_left(served.content) == []


def test_bad_photos_are_refused_naming_the_field_and_nothing_is_written(
    client: TestClient,
) -> None:
    before = count_public(client)
    base = {"service_code": "MT-01", **TRAN_BIEN}
    gif = send(client, base, [b"GIF89a" + b"\x00" * 64], name="a.gif")
    assert gif.status_code == 422, gif.text
    assert gif.json()["errors"][0]["field"] == "photos"
    renamed = send(client, base, [b"%PDF-1.7 not an image"], name="photo.jpg")
    assert renamed.status_code == 422
    broken = send(client, base, [b"\xff\xd8\xff\xe0" + b"junk" * 50])
    assert broken.status_code == 422
    assert "photos" in broken.text
    four = send(client, base, [photo()] * 4)
    assert four.status_code == 422, four.text
    assert four.json()["errors"][0]["field"] == "photos"
    huge = send(client, base, [b"\xff\xd8\xff" + b"\x00" * (8 * 1024 * 1024)])
    assert huge.status_code == 413, huge.text
    assert huge.json()["errors"][0]["field"] == "photos"
    not_multipart = client.post(SUBMIT, json=base)
    assert not_multipart.status_code == 415
    no_service = send(client, {**TRAN_BIEN})
    assert no_service.status_code == 422
    assert count_public(client) == before


def test_contacts_need_consent_and_are_never_in_the_answer(
    client: TestClient, login_as: Callable[..., Headers]
) -> None:
    base = {"service_code": "MT-01", **TRAN_BIEN, **REPORTER}
    refused = send(client, base)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "consent"
    accepted = send(client, {**base, "consent": "true"}, lang="en")
    body = created(accepted)
    for secret in ("Thị Hồng", REPORTER["email"], "912345678"):
        assert secret not in accepted.text
    reporter = staff_view(client, login_as("operator"), body["tracking_code"])["reporter"]
    assert reporter["email"] == REPORTER["email"]
    assert reporter["language"] == "en"


def test_reporters_hear_in_their_own_language(
    client: TestClient,
    login_as: Callable[..., Headers],
    runtime: Runtime,
    smtp_sink: SmtpSink,
    http_receiver: Receiver,
) -> None:
    english = created(
        send(
            client,
            {
                "service_code": "MT-01",
                **TRAN_BIEN,
                "email": "visitor@example.com",
                "phone": "0987654321",
                "consent": "true",
            },
            lang="en",
        )
    )["tracking_code"]
    vietnamese = created(
        send(
            client,
            {
                "service_code": "MT-01",
                "duplicate_of": english,
                "lat": "10.9381",
                "long": "106.8351",
                "email": "nguoidan@example.vn",
                "consent": "true",
            },
        )
    )["tracking_code"]
    operator = login_as("operator")
    incident_id = staff_view(client, operator, english)["incident_id"]
    assert staff_view(client, operator, vietnamese)["incident_id"] == incident_id
    work_through(client, login_as, incident_id, "SNNMT")
    assert runtime.outbox is not None
    runtime.outbox.drain()
    mails = smtp_sink.wait_for(6)
    to_english = [m for m in mails if "visitor@example.com" in m.rcpt_tos]
    to_vietnamese = [m for m in mails if "nguoidan@example.vn" in m.rcpt_tos]
    assert any(f"Report {english}: Resolved" in m.text for m in to_english)
    assert all(m.message["Subject"] == f"[CityOps] Report {english}" for m in to_english)
    assert f"/public/reports/{english}?lang=en" in to_english[0].text
    assert any(f"Phản ánh {vietnamese}: Đã xử lý xong" in m.text for m in to_vietnamese)
    sms = [r.json() for r in http_receiver.requests if r.path == "/sms"]
    ours = [s["text"] for s in sms if s["to"] == "+84987654321"]
    assert ours
    assert all(text.startswith(f"Report {english}:") for text in ours)


def test_staff_link_a_report_to_a_duplicates_incident(
    client: TestClient,
    submit: Submit,
    login_as: Callable[..., Headers],
    runtime: Runtime,
    http_receiver: Receiver,
) -> None:
    first = report_id(submit(service_code="MT-01", **TRAN_BIEN, phone="0912345678"))
    # Sent from elsewhere in the ward, so never offered as a duplicate: two incidents.
    second = report_id(
        submit(service_code="MT-01", lat="10.9420", long="106.835", phone="0987654321")
    )
    operator = login_as("operator")
    target = staff_view(client, operator, first)
    assert staff_view(client, operator, second)["incident_id"] != target["incident_id"]
    link = f"{API}/citizen/reports/{second}/link"
    viewer = client.post(link, json={"duplicate_of": first}, headers=login_as("viewer"))
    assert viewer.status_code == 403
    elsewhere = login_as("department_officer", department_code="SYT")
    assert client.post(link, json={"duplicate_of": first}, headers=elsewhere).status_code == 404
    unknown = client.post(link, json={"duplicate_of": "PA-ZZZZ-ZZZZ"}, headers=operator)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "duplicate_of"
    itself = client.post(link, json={"duplicate_of": second}, headers=operator)
    assert itself.status_code == 409
    linked = client.post(link, json={"duplicate_of": first}, headers=operator)
    assert linked.status_code == 200, linked.text
    body = linked.json()
    assert body["incident_id"] == target["incident_id"]
    assert body["duplicate_of"] == target["id"]
    assert any(n["kind"] == "duplicate" for n in body["notes"])
    again = client.post(link, json={"duplicate_of": first}, headers=operator)
    assert again.status_code == 409
    work_through(client, login_as, target["incident_id"], "SNNMT")
    assert public(client, second)["status"] == "closed"
    assert runtime.outbox is not None
    runtime.outbox.drain()
    texts = {r.json()["to"]: r.json()["text"] for r in http_receiver.requests if r.path == "/sms"}
    assert {"+84912345678", "+84987654321"} <= set(texts)
