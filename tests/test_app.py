"""The application shell: operations endpoints, error shapes, languages, OpenAPI."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient
from sqlalchemy import text

from cityops.app import GC_YOUNG_THRESHOLD, create_app
from cityops.core.config import Settings
from cityops.core.runtime import Runtime


def test_healthz_answers(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


def test_readyz_reports_database_and_migrations(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"]["current"] == body["checks"]["migrations"]["head"]


def test_readyz_is_503_when_schema_is_behind(client: TestClient, runtime: Runtime) -> None:
    with runtime.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/api/v1/units/26041")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert 'cityops_http_requests_total{method="GET",route="/healthz",status="200"}' in body
    assert 'route="/api/v1/units/{code}"' in body
    assert "cityops_http_request_duration_seconds_bucket" in body


def test_unknown_route_is_problem_json_in_vietnamese_by_default(client: TestClient) -> None:
    response = client.get("/api/v1/khong-co")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404
    assert body["type"] == "urn:cityops:problem:not-found"
    assert body["title"] == "Không tìm thấy"
    assert response.headers["content-language"] == "vi"


def test_language_follows_accept_language_and_query(client: TestClient) -> None:
    english = client.get("/api/v1/khong-co", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert english.json()["title"] == "Not found"
    assert english.headers["content-language"] == "en"
    forced = client.get("/api/v1/khong-co?lang=vi", headers={"Accept-Language": "en"})
    assert forced.json()["title"] == "Không tìm thấy"


def test_validation_errors_name_the_field(client: TestClient) -> None:
    response = client.get("/api/v1/units/locate", params={"lat": "north", "lon": "106.8"})
    assert response.status_code == 422
    body = response.json()
    assert body["title"] == "Dữ liệu gửi lên không hợp lệ"
    assert any(error["field"] == "lat" for error in body["errors"])


def test_method_not_allowed_is_problem_json(client: TestClient) -> None:
    response = client.put("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


def test_openapi_document_lists_the_platform_api(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/units" in paths
    assert "/api/v1/auth/token" in paths
    assert "/api/v1/audit" in paths


def test_message_catalogues_have_the_same_keys_in_both_languages(runtime: Runtime) -> None:
    assert runtime.translate.keys("vi") == runtime.translate.keys("en")


def test_a_warm_start_keeps_the_start_up_objects_out_of_the_collector(settings: Settings) -> None:
    # A served process (warm start) freezes what start-up built, so no full collection walks
    # the routes, the unit index and the rules again; the test processes (no warm start) do
    # not, or every test's app would stay in memory.
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        app = create_app(settings.model_copy(update={"warm_start": True}))
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() > 100_000
            assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        app.state.runtime.engine.dispose()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_test_apps_leave_the_collector_alone(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0
