"""The service from outside: discovery, status codes with OperationOutcome bodies, CORS, and the
spec's card rules (cds-hooks-2.0.md §14 items 1–32, 41–53) checked on real responses."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cds_service.fhir.resources import bundle_resources
from cds_service.replay import build_request
from tests.conftest import RECORDS, hook_body, load_record

TOKEN = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
ALLOWED_TOKENS = {"context.userId", "context.patientId", "context.encounterId",
                  "userPractitionerId", "userPractitionerRoleId", "userPatientId",
                  "userRelatedPersonId"}
RECORD_NAMES = sorted(p.stem for p in RECORDS.glob("*.json"))


def outcome(response) -> str:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    diagnostics = body["issue"][0]["diagnostics"]
    assert isinstance(diagnostics, str) and diagnostics
    return diagnostics


def request_for(client, name: str, hook: str = "patient-view") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    record = load_record(name)
    resources = bundle_resources(record)
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return build_request(client.get("/cds-services").get_json(), "tma-bone-assessment", hook,
                         resources, patient)


# The contract's assessment object always carries its flags and rules lists (product-contract.md).
CONTRACT_LISTS = {".extension.tma-bone-assessment.flags", ".extension.tma-bone-assessment.rules"}


def no_empty_values(value: Any, path: str = "") -> None:
    """Spec: no null, "", [] or {} anywhere in a response (cards: [] excepted at the top)."""
    assert value is not None, path
    if isinstance(value, (str, list, dict)) and path not in CONTRACT_LISTS:
        assert len(value) > 0, path
    if isinstance(value, dict):
        for key, item in value.items():
            no_empty_values(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            no_empty_values(item, f"{path}[{index}]")


# ------------------------------------------------------------------ discovery (items 1–11)


def test_discovery_document(client):
    response = client.get("/cds-services")
    assert response.status_code == 200 and response.mimetype == "application/json"
    services = response.get_json()["services"]
    pairs = [(s["id"], s["hook"]) for s in services]
    assert ("tma-bone-assessment", "patient-view") in pairs
    assert len(pairs) == len(set(pairs))
    for service in services:
        for key in ("hook", "description", "id", "title"):
            assert isinstance(service[key], str) and service[key]
        no_empty_values(service)
        for template in service.get("prefetch", {}).values():
            assert isinstance(template, str) and template
            assert set(TOKEN.findall(template)) <= ALLOWED_TOKENS
            assert "draftOrders" not in template and "selections" not in template
            path, _, query = template.partition("?")
            assert re.fullmatch(r"[A-Z][A-Za-z]+(/\{\{context\.\w+\}\})?", path)
            for param in filter(None, query.split("&")):
                name = param.split("=", 1)[0]
                assert name in {"patient", "subject", "code", "date", "status", "_count",
                                "_sort", "category"}, template


def test_prefetch_templates_ask_only_for_what_the_rules_use(client):
    prefetch = client.get("/cds-services").get_json()["services"][0]["prefetch"]
    kinds = {t.split("?")[0].split("/")[0] for t in prefetch.values()}
    assert kinds == {"Patient", "Condition", "Procedure", "Observation", "DiagnosticReport",
                     "ImagingStudy", "MedicationRequest"}
    assert all("_count=" in t for k, t in prefetch.items() if k != "patient")
    assert "http://loinc.org|4537-7" in prefetch["observations"]


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


# ------------------------------------------------------------------ status codes


@pytest.mark.parametrize(("mutate", "where"), (
    (lambda b: b.pop("hook"), "hook"),
    (lambda b: b.pop("hookInstance"), "hookInstance"),
    (lambda b: b.pop("context"), "context"),
    (lambda b: b["context"].pop("patientId"), "context.patientId"),
    (lambda b: b["context"].pop("userId"), "context.userId"),
    (lambda b: b.update(hook="order-sign"), "hook"),
    (lambda b: b.update(fhirAuthorization={"access_token": "x", "token_type": "Bearer",
                                           "expires_in": 60, "scope": "s", "subject": "c"}),
     "fhirServer"),
    (lambda b: b.update(context=[1, 2]), "context"),
    (lambda b: b.update(prefetch="nope"), "prefetch"),
    (lambda b: b["context"].update(patientId=5), "context.patientId"),
))
def test_invalid_requests_get_400_saying_where(client, mutate, where):
    body = hook_body(prefetch={})
    mutate(body)
    response = client.post("/cds-services/tma-bone-assessment", json=body)
    assert response.status_code == 400
    assert where in outcome(response)
    assert response.get_json()["issue"][0]["expression"] == [where]


def test_missing_patient_id_message_is_the_contract_example(client):
    body = hook_body(prefetch={})
    del body["context"]["patientId"]
    response = client.post("/cds-services/tma-bone-assessment", json=body)
    assert outcome(response) == "context.patientId is required for hook patient-view"


def test_malformed_json_is_400(client):
    response = client.post("/cds-services/tma-bone-assessment", data=b'{"hook": ',
                           content_type="application/json")
    assert response.status_code == 400 and "not valid JSON" in outcome(response)


def test_body_not_an_object_is_400(client):
    response = client.post("/cds-services/tma-bone-assessment", json=[1])
    assert response.status_code == 400


def test_unknown_service_is_404(client):
    response = client.post("/cds-services/no-such-service", json=hook_body())
    assert response.status_code == 404 and "no-such-service" in outcome(response)


def test_missing_required_prefetch_without_fhir_server_is_412(client):
    response = client.post("/cds-services/tma-bone-assessment", json=hook_body())
    assert response.status_code == 412 and "fhirServer" in outcome(response)


def test_body_over_the_limit_is_413():
    from tests.conftest import make_app

    client = make_app(max_body_bytes=1000).test_client()
    body = hook_body(prefetch={"patient": {"resourceType": "Patient", "text": "x" * 2000}})
    response = client.post("/cds-services/tma-bone-assessment", json=body)
    assert response.status_code == 413
    outcome(response)


def test_not_json_is_415(client):
    response = client.post("/cds-services/tma-bone-assessment", data="hook=patient-view",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and "application/json" in outcome(response)


def test_wrong_methods_are_405_with_an_operation_outcome(client):
    assert client.get("/cds-services/tma-bone-assessment").status_code == 405
    response = client.post("/cds-services", json={})
    assert response.status_code == 405
    outcome(response)


def test_unknown_fields_and_extensions_are_ignored(client):
    body = request_for(client, "om-probable-ptb-esr")
    body["extension"] = {"com.example.x": 1}
    body["somethingNew"] = True
    assert client.post("/cds-services/tma-bone-assessment", json=body).status_code == 200


# ------------------------------------------------------------------ CORS


@pytest.mark.parametrize("path", ("/cds-services", "/cds-services/tma-bone-assessment",
                                  "/cds-services/tma-bone-assessment/feedback"))
def test_cors_preflight_without_a_token(path):
    from tests.conftest import make_app

    client = make_app(auth_required=False).test_client()
    response = client.options(path, headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] in ("*",
                                                                "https://sandbox.cds-hooks.org")
    assert {"GET", "POST"} <= {m.strip() for m in
                               response.headers["Access-Control-Allow-Methods"].split(",")}
    headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in headers and "content-type" in headers


def test_cors_header_on_errors_and_allow_list():
    from tests.conftest import make_app

    open_client = make_app().test_client()
    response = open_client.post("/cds-services/nope", json={},
                                headers={"Origin": "http://localhost:8080"})
    assert response.status_code == 404 and "Access-Control-Allow-Origin" in response.headers
    strict = make_app(cors_origins=("https://ehr.example.org",)).test_client()
    denied = strict.options("/cds-services", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers
    allowed = strict.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"


# ------------------------------------------------------------------ cards (items 13–32)


def check_card(card: dict[str, Any]) -> None:
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert isinstance(card["source"]["label"], str) and card["source"]["label"]
    assert card["source"].get("url", "https://").startswith(("https://", "http://"))
    assert isinstance(card["uuid"], str) and card["uuid"]
    assert isinstance(card.get("detail", "x"), str)
    suggestions = card.get("suggestions", [])
    if suggestions:
        assert card["selectionBehavior"] in ("at-most-one", "any")
    if card.get("selectionBehavior") == "at-most-one":
        assert sum(1 for s in suggestions if s.get("isRecommended")) <= 1
    for suggestion in suggestions:
        assert isinstance(suggestion["label"], str) and suggestion["label"]
        assert isinstance(suggestion["uuid"], str)
        assert isinstance(suggestion.get("isRecommended", False), bool)
        for action in suggestion["actions"]:
            assert action["type"] in ("create", "update", "delete")
            assert isinstance(action["description"], str) and action["description"]
            if action["type"] in ("create", "update"):
                assert isinstance(action["resource"]["resourceType"], str)
            else:
                assert re.fullmatch(r"[A-Z]\w+/[\w.-]+", action["resourceId"])
                assert "resource" not in action
    for reason in card.get("overrideReasons", []):
        assert reason["code"] and reason["system"] and reason["display"]
    for link in card.get("links", []):
        assert link["label"] and link["url"].startswith("http") and link["type"] in (
            "absolute", "smart")
    no_empty_values(card)


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_every_fixture_answers_200_with_spec_valid_cards(client, name):
    response = client.post("/cds-services/tma-bone-assessment", json=request_for(client, name))
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"cards"}
    uuids = [c["uuid"] for c in body["cards"]]
    assert len(uuids) == len(set(uuids))
    for card in body["cards"]:
        check_card(card)


def test_unrelated_chart_gets_an_empty_card_list(client):
    response = client.post("/cds-services/tma-bone-assessment",
                           json=request_for(client, "unrelated-old-amputation"))
    assert response.get_json() == {"cards": []}


def test_assessment_card_carries_the_contract_extension(client):
    body = client.post("/cds-services/tma-bone-assessment",
                       json=request_for(client, "om-probable-ptb-esr")).get_json()
    assessment = body["cards"][0]["extension"]["tma-bone-assessment"]
    assert assessment == {"osteomyelitis": "probable", "heterotopicOssification": "present",
                          "flags": ["ho-ulcer-coexistence"],
                          "rules": ["OM-2", "OM-4", "HO-1", "HO-7"], "side": "left",
                          "daysSinceAmputation": 42,
                          # what the card names in words: amputation, probe-to-bone, the
                          # radiograph, ESR, the ulcer (product-contract.md `evidence`)
                          "evidence": ["Procedure/proc-1", "Observation/obs-3",
                                       "DiagnosticReport/rep-8", "Observation/obs-4",
                                       "Condition/cond-2"]}
    assert body["cards"][0]["indicator"] == "warning"
    assert body["cards"][0]["summary"] == ("Left TMA day 42: osteomyelitis probable; "
                                           "heterotopic ossification present")


def test_response_never_contains_the_access_token(client, httpserver):
    httpserver.expect_request("/Patient/pt-om-probable").respond_with_json(
        {"resourceType": "Patient", "id": "pt-om-probable"})
    body = request_for(client, "om-probable-ptb-esr")
    del body["prefetch"]["patient"]
    from tests.conftest import make_app

    app_client = make_app(fhir_server_allowlist=(httpserver.url_for("/").rstrip("/"),)
                          ).test_client()
    body.update(fhirServer=httpserver.url_for("/").rstrip("/"),
                fhirAuthorization={"access_token": "TOKEN-SHOULD-NOT-ECHO",
                                   "token_type": "Bearer", "expires_in": 60, "scope": "s",
                                   "subject": "c"})
    response = app_client.post("/cds-services/tma-bone-assessment", json=body)
    assert response.status_code == 200
    assert "TOKEN-SHOULD-NOT-ECHO" not in response.get_data(as_text=True)
    assert "TOKEN-SHOULD-NOT-ECHO" not in json.dumps(dict(response.headers))


def test_card_uuids_are_random_version_4_and_unique_across_calls(client):
    import uuid as uuid_module

    seen = set()
    for _ in range(3):
        body = client.post("/cds-services/tma-bone-assessment",
                           json=request_for(client, "crp-mg-dl-wound")).get_json()
        for card in body["cards"]:
            ids = [card["uuid"], *(s["uuid"] for s in card.get("suggestions", []))]
            for value in ids:
                assert uuid_module.UUID(value).version == 4
                assert value not in seen
                seen.add(value)
    assert len(seen) > 20


def test_an_internal_error_is_a_500_outcome_and_logs_no_request_data(capfd):
    """A bug answers 500 with a generic OperationOutcome; the log gets the frames, not the
    exception's message (which could quote patient data)."""
    from tests.conftest import make_app

    app = make_app()
    runtime = app.extensions["cds_service"]

    def broken(service, request, client=None):
        raise ValueError(f"bad value for patient {request.patient_id}")

    runtime.answer = broken
    body = hook_body(prefetch={})
    body["context"]["patientId"] = "PATIENT-SECRET-42"
    response = app.test_client().post("/cds-services/tma-bone-assessment", json=body)
    assert response.status_code == 500
    assert "PATIENT-SECRET-42" not in response.get_data(as_text=True)
    err = capfd.readouterr().err
    assert '"event": "request.failed"' in err and "ValueError" in err
    assert "PATIENT-SECRET-42" not in err
