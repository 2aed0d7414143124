"""Attachments: images and PDF only (sniffed from the bytes), size limited, stored once, and
downloaded as files that browsers do not sniff or render in place."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from cityops.core.config import Settings
from cityops.core.runtime import Runtime

from .conftest import ENV, FAR_WARD, INCIDENTS, IncidentFactory, Person, PersonFactory


def png(width: int = 2, height: int = 2) -> bytes:
    """A real, tiny PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
# A Windows program: "MZ", then the DOS stub.
EXE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"
    + b"This program cannot be run in DOS mode" * 4
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A small attachment limit, so the size check can be tried with small files."""
    return settings.model_copy(update={"attachment_max_bytes": 4096})


def _upload(
    client: TestClient,
    incident_id: int,
    headers: dict[str, str],
    name: str,
    content: bytes,
    declared: str = "image/jpeg",
) -> Response:
    return client.post(
        f"{INCIDENTS}/{incident_id}/attachments",
        files={"file": (name, content, declared)},
        headers=headers,
    )


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("hien-truong.png", png(), "image/png"),
        ("anh.jpg", JPEG, "image/jpeg"),
        ("bien-ban.pdf", PDF, "application/pdf"),
        ("anh.webp", WEBP, "image/webp"),
        ("anh.gif", GIF, "image/gif"),
    ],
)
def test_images_and_pdf_are_accepted_with_their_sniffed_type(
    client: TestClient,
    runtime: Runtime,
    operator: Person,
    open_incident: IncidentFactory,
    name: str,
    content: bytes,
    kind: str,
) -> None:
    incident_id = open_incident()["id"]
    # The declared type is ignored: the bytes decide.
    response = _upload(client, incident_id, operator.headers, name, content, "text/plain")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["content_type"] == kind
    assert body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    stored = Path(runtime.settings.data_dir) / "attachments" / body["sha256"][:2]
    assert (stored / body["sha256"][2:4] / body["sha256"]).read_bytes() == content

    download = client.get(
        f"{INCIDENTS}/{incident_id}/attachments/{body['id']}", headers=operator.headers
    )
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["content-type"].startswith(kind)
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in download.headers["content-security-policy"]


def test_other_files_are_refused_whatever_their_name(
    client: TestClient, operator: Person, open_incident: IncidentFactory
) -> None:
    incident_id = open_incident()["id"]
    for name, content in (
        ("anh-hien-truong.jpg", EXE),
        ("bao-cao.pdf", b"<html><script>alert(1)</script></html>"),
        ("anh.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'),
    ):
        response = _upload(client, incident_id, operator.headers, name, content)
        assert response.status_code == 415, response.text
        problem = response.json()
        assert problem["type"] == "urn:cityops:problem:unsupported-media-type"
        assert "PDF" in problem["detail"]
    empty = _upload(client, incident_id, operator.headers, "rong.jpg", b"")
    assert empty.status_code == 422
    detail = client.get(f"{INCIDENTS}/{incident_id}", headers=operator.headers).json()
    assert detail["attachments"] == []


def test_files_over_the_limit_are_refused(
    client: TestClient, operator: Person, open_incident: IncidentFactory
) -> None:
    incident_id = open_incident()["id"]
    exactly = JPEG + b"\x00" * (4096 - len(JPEG))
    assert _upload(client, incident_id, operator.headers, "vua.jpg", exactly).status_code == 201
    over = _upload(client, incident_id, operator.headers, "lon.jpg", exactly + b"\x00")
    assert over.status_code == 413
    assert over.json()["type"] == "urn:cityops:problem:payload-too-large"
    # A body far over the limit is refused from its announced length, before it is read.
    huge = _upload(client, incident_id, operator.headers, "rat-lon.jpg", JPEG + b"\x00" * 200_000)
    assert huge.status_code == 413
    # Anything but a multipart form is refused.
    raw = client.post(
        f"{INCIDENTS}/{incident_id}/attachments",
        content=JPEG,
        headers={**operator.headers, "Content-Type": "image/jpeg"},
    )
    assert raw.status_code == 415
    missing = client.post(
        f"{INCIDENTS}/{incident_id}/attachments",
        files={"other": ("a.jpg", JPEG, "image/jpeg")},
        headers=operator.headers,
    )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "file"


def test_names_are_cleaned_and_the_upload_is_in_the_timeline(
    client: TestClient, operator: Person, open_incident: IncidentFactory
) -> None:
    incident_id = open_incident()["id"]
    response = _upload(client, incident_id, operator.headers, "../../etc/Ảnh hiện trường.jpg", JPEG)
    body = response.json()
    assert body["file_name"] == "Ảnh hiện trường.jpg"
    assert body["uploaded_by"] == operator.id
    # The same content twice is stored once but listed twice.
    again = _upload(client, incident_id, operator.headers, "lan-hai.jpg", JPEG).json()
    assert again["sha256"] == body["sha256"]
    detail = client.get(f"{INCIDENTS}/{incident_id}", headers=operator.headers).json()
    assert [a["file_name"] for a in detail["attachments"]] == ["Ảnh hiện trường.jpg", "lan-hai.jpg"]
    entries = [e for e in detail["timeline"] if e["kind"] == "attachment_added"]
    assert [e["data"]["attachment_id"] for e in entries] == [body["id"], again["id"]]
    download = client.get(
        f"{INCIDENTS}/{incident_id}/attachments/{body['id']}", headers=operator.headers
    )
    assert (
        "filename*=utf-8''%E1%BA%A2nh%20hi%E1%BB%87n%20tr%C6%B0%E1%BB%9Dng.jpg"
        in (download.headers["content-disposition"])
    )


def test_attachments_follow_the_incident_s_scope_and_permissions(
    client: TestClient,
    operator: Person,
    person: PersonFactory,
    open_incident: IncidentFactory,
) -> None:
    incident_id = open_incident()["id"]
    other_id = open_incident()["id"]
    attachment = _upload(client, incident_id, operator.headers, "a.jpg", JPEG).json()
    url = f"{INCIDENTS}/{incident_id}/attachments/{attachment['id']}"
    viewer = person("viewer")
    outsider = person("unit_officer", unit_code=FAR_WARD)
    officer = person("department_officer", department_code=ENV)
    # Readers may download; only people working on incidents may upload.
    assert client.get(url, headers=viewer.headers).status_code == 200
    assert _upload(client, incident_id, viewer.headers, "b.jpg", JPEG).status_code == 403
    assert _upload(client, incident_id, officer.headers, "c.jpg", JPEG).status_code == 201
    # Outside the scope, the incident and its files do not exist.
    assert client.get(url, headers=outsider.headers).status_code == 404
    assert _upload(client, incident_id, outsider.headers, "d.jpg", JPEG).status_code == 404
    # An attachment is reached only through its own incident.
    wrong = f"{INCIDENTS}/{other_id}/attachments/{attachment['id']}"
    assert client.get(wrong, headers=operator.headers).status_code == 404
    assert client.get(url, headers={}).status_code == 401
