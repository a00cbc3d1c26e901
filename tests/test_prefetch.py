"""Prefetch decisions and fetching from the EHR's FHIR server (cds-hooks-2.0.md §2.4, items 33–39).

The FHIR server is a real HTTP server on 127.0.0.1 (pytest-httpserver) so the exact queries and
headers the service sends can be asserted.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

import pytest
from werkzeug import Response

from cds_service.fhir.resources import bundle_resources
from cds_service.fhir.search import search
from cds_service.preview import visible_text
from cds_service.replay import build_request
from tests.conftest import load_record, make_app

TOKEN = "opaque-access-token-123"
RECORD = "om-probable-ptb-esr"
PATIENT = "pt-om-probable"


def full_request(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    resources = bundle_resources(load_record(RECORD))
    return build_request(client.get("/cds-services").get_json(), "tma-bone-assessment",
                         "patient-view", resources, PATIENT)


def assessment(response) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"][0]["extension"]["tma-bone-assessment"]


def serve_record(httpserver) -> list[str]:  # type: ignore[no-untyped-def]
    """Answer every read/search from the fixture record, as a FHIR server would; log queries."""
    resources = bundle_resources(load_record(RECORD))
    seen: list[str] = []

    def handler(request):  # type: ignore[no-untyped-def]
        query = unquote(request.query_string.decode())
        url = request.path.lstrip("/") + (f"?{query}" if query else "")
        seen.append(url)
        answer = search(resources, url)
        if answer is None:
            return Response('{"resourceType":"OperationOutcome","issue":[]}', 404,
                            content_type="application/fhir+json")
        import json

        return Response(json.dumps(answer), 200, content_type="application/fhir+json")

    httpserver.expect_request(__import__("re").compile(".*")).respond_with_handler(handler)
    return seen


def server_app(httpserver, **settings: Any):  # type: ignore[no-untyped-def]
    base = httpserver.url_for("/").rstrip("/")
    return make_app(fhir_server_allowlist=(base,), **settings).test_client(), base


def with_server(body: dict[str, Any], base: str, token: str | None = TOKEN) -> dict[str, Any]:
    body["fhirServer"] = base
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer",
                                     "expires_in": 300, "scope": "patient/*.read",
                                     "subject": "tma-cds"}
    return body


def test_full_prefetch_needs_no_fhir_server(client):
    assert assessment(client.post("/cds-services/tma-bone-assessment",
                                  json=full_request(client)))["osteomyelitis"] == "probable"


def test_missing_keys_are_fetched_with_the_bearer_token_and_exact_queries(httpserver):
    seen = serve_record(httpserver)
    client, base = server_app(httpserver)
    body = full_request(client)
    templates = client.get("/cds-services").get_json()["services"][0]["prefetch"]
    for key in ("observations", "medications"):
        del body["prefetch"][key]
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert assessment(response)["osteomyelitis"] == "probable"
    expected = {templates[k].replace("{{context.patientId}}", PATIENT)
                for k in ("observations", "medications")}
    assert set(seen) == expected  # only the missing keys, exactly the rendered templates
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert "fhir+json" in request.headers["Accept"]


def test_no_prefetch_at_all_fetches_everything_and_gives_the_same_answer(httpserver, client):
    expected = assessment(client.post("/cds-services/tma-bone-assessment",
                                      json=full_request(client)))
    serve_record(httpserver)
    app_client, base = server_app(httpserver)
    body = full_request(app_client)
    del body["prefetch"]
    response = app_client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert assessment(response) == expected
    assert len(httpserver.log) == 7


@pytest.mark.parametrize("empty", (None, {"resourceType": "Bundle", "type": "searchset",
                                          "total": 0}))
def test_null_and_empty_bundle_mean_no_data_and_are_not_refetched(httpserver, empty):
    serve_record(httpserver)
    client, base = server_app(httpserver)
    body = full_request(client)
    body["prefetch"]["medications"] = empty
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert response.status_code == 200
    assert httpserver.log == []


def test_operation_outcome_prefetch_is_fetched_again(httpserver):
    seen = serve_record(httpserver)
    client, base = server_app(httpserver)
    body = full_request(client)
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "timeout"}]}
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert assessment(response)["osteomyelitis"] == "probable"
    assert [u.split("?")[0] for u in seen] == ["Condition"]


def test_operation_outcome_prefetch_without_server_is_412(client):
    body = full_request(client)
    body["prefetch"]["procedures"] = {"resourceType": "OperationOutcome", "issue": []}
    response = client.post("/cds-services/tma-bone-assessment", json=body)
    assert response.status_code == 412
    assert "procedures" in response.get_json()["issue"][0]["diagnostics"]


def test_missing_optional_data_is_named_on_the_card(client):
    body = full_request(client)
    del body["prefetch"]["medications"]
    response = client.post("/cds-services/tma-bone-assessment", json=body)
    detail = visible_text(response.get_json()["cards"][0])
    assert "Medication requests: not available" in detail


def test_a_fhir_server_not_on_the_allow_list_gets_no_request(httpserver, client):
    serve_record(httpserver)
    body = full_request(client)
    del body["prefetch"]["observations"]
    response = client.post("/cds-services/tma-bone-assessment",
                           json=with_server(body, httpserver.url_for("/").rstrip("/")))
    assert response.status_code == 412
    assert httpserver.log == []


@pytest.mark.parametrize("answer", (
    Response("oops", 500), Response("busy", 503), Response("<html>", 200,
                                                           content_type="text/html"),
    Response('{"resourceType": "OperationOutcome", "issue": []}', 200),
    Response('{"not": "fhir"}', 200, content_type="application/json"),
))
def test_fhir_server_errors_give_412_for_required_data(httpserver, answer):
    httpserver.expect_request(__import__("re").compile(".*")).respond_with_response(answer)
    client, base = server_app(httpserver, fhir_timeout=1.0)
    body = full_request(client)
    del body["prefetch"]["observations"]
    started = time.monotonic()
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert response.status_code == 412
    assert time.monotonic() - started < 2.5
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_a_hanging_fhir_server_gives_412_within_the_budget(httpserver):
    def slow(request):  # type: ignore[no-untyped-def]
        time.sleep(1.2)
        return Response("{}", 200)

    httpserver.expect_request(__import__("re").compile(".*")).respond_with_handler(slow)
    client, base = server_app(httpserver, fhir_timeout=0.5)
    body = full_request(client)
    del body["prefetch"]["observations"]
    started = time.monotonic()
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    elapsed = time.monotonic() - started
    assert response.status_code == 412 and elapsed < 2 * 0.5 + 0.5
    time.sleep(1.3)  # let the stub finish its sleeping request before the next test uses it


def test_prefetched_bundle_with_a_next_link_is_paged_on_the_same_server(httpserver):
    client, base = server_app(httpserver)
    body = full_request(client)
    observations = body["prefetch"]["observations"]
    first, rest = observations["entry"][:2], observations["entry"][2:]
    observations["entry"] = first
    observations["link"] = [{"relation": "next", "url": f"{base}/Observation?page=2"}]
    httpserver.expect_request("/Observation", query_string="page=2").respond_with_json({
        "resourceType": "Bundle", "type": "searchset", "entry": rest,
        "link": [{"relation": "next", "url": f"{base}/Observation?page=3"}]})
    httpserver.expect_request("/Observation", query_string="page=3").respond_with_json({
        "resourceType": "Bundle", "type": "searchset", "entry": []})
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert assessment(response)["osteomyelitis"] == "probable"
    assert len(httpserver.log) == 2


def test_next_link_to_another_server_is_not_followed(httpserver):
    client, base = server_app(httpserver)
    body = full_request(client)
    body["prefetch"]["observations"]["link"] = [
        {"relation": "next", "url": "http://127.0.0.2:9/Observation?page=2"}]
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert response.status_code == 200
    assert "only the first page" in visible_text(response.get_json()["cards"][0])


def test_page_cap_stops_endless_paging(httpserver):
    client, base = server_app(httpserver, fhir_page_cap=3)
    httpserver.expect_request("/Observation").respond_with_json({
        "resourceType": "Bundle", "type": "searchset", "entry": [],
        "link": [{"relation": "next", "url": f"{base}/Observation?page=n"}]})
    body = full_request(client)
    del body["prefetch"]["observations"]
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert response.status_code == 200
    assert len(httpserver.log) == 3


def test_an_oversized_fhir_answer_is_refused(httpserver):
    """An answer larger than the hook's fetch limit (after decompression) is data the service
    cannot have."""
    httpserver.expect_request("/Observation").respond_with_json({
        "resourceType": "Bundle", "type": "searchset", "entry": [], "padding": "x" * 20_000})
    client, base = server_app(httpserver, fhir_fetch_max_bytes=10_000)
    body = full_request(client)
    del body["prefetch"]["observations"]
    response = client.post("/cds-services/tma-bone-assessment", json=with_server(body, base))
    assert response.status_code == 412
    assert "larger than" in response.get_json()["issue"][0]["diagnostics"]
