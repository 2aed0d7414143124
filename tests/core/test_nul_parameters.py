"""A NUL character in a path or query parameter is refused with a 422 that names it, in the
error shape of the API asked, on every database (PostgreSQL refuses NUL in text)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import UserFactory


def test_query_parameter_with_nul_is_refused_and_named(
    client: TestClient, login_as: UserFactory
) -> None:
    headers = login_as("admin")
    response = client.get("/api/v1/incidents?status=new&sector=env%00ironment", headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert [(e["field"], e["in"]) for e in body["errors"]] == [("sector", "query")]
    assert "NUL" in body["errors"][0]["message"]


def test_message_follows_the_language(client: TestClient, login_as: UserFactory) -> None:
    headers = {**login_as("admin"), "Accept-Language": "vi"}
    body = client.get("/api/v1/incidents?q=a%00", headers=headers).json()
    assert body["errors"][0]["message"].startswith("Văn bản không được chứa ký tự NUL")


def test_path_parameter_with_nul_is_refused(client: TestClient, login_as: UserFactory) -> None:
    response = client.get("/api/v1/units/bien%00hoa", headers=login_as("admin"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "path"


def test_open311_answers_in_its_own_error_shape(client: TestClient) -> None:
    json_answer = client.get("/open311/v2/requests.json?service_code=roads%00")
    assert json_answer.status_code == 400
    assert json_answer.json()[0]["code"] == 400
    assert json_answer.json()[0]["description"].startswith("service_code:")
    xml_answer = client.get("/open311/v2/requests.xml?status=open%00")
    assert xml_answer.status_code == 400
    assert "<errors>" in xml_answer.text
    assert "status:" in xml_answer.text


def test_ngsi_ld_answers_in_its_own_error_shape(client: TestClient, login_as: UserFactory) -> None:
    response = client.get(
        "/ngsi-ld/v1/entities?type=AirQualityObserved%00", headers=login_as("admin")
    )
    # As any other bad query parameter there (`limit=0`): 400 BadRequestData.
    like = client.get("/ngsi-ld/v1/entities?limit=0", headers=login_as("admin"))
    assert response.status_code == like.status_code == 400
    assert response.json()["type"] == like.json()["type"]
    assert response.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert "NUL" in response.json()["errors"][0]["message"]


def test_an_encoded_percent_sign_is_not_a_nul(client: TestClient) -> None:
    # `%2500` is the text "%00", which is allowed.
    response = client.get("/open311/v2/requests.json?service_code=%2500")
    assert response.status_code == 200
    assert response.json() == []
