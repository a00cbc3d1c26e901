"""Hostile input never takes the service down (property-based, with hypothesis).

Request bodies with wrong types in every field, nulls, deep nesting, huge strings, non-UTF-8
bytes, wrong content types and oversize bodies; prefetched FHIR resources mutated field by field
(invalid dates, unknown resource types, string quantities, random JSON anywhere). Every answer
is 200 with valid cards or a 4xx OperationOutcome that says what was wrong: never a 5xx. After
every example a known-good request still gets its expected cards.

Bounded and reproducible: ``derandomize=True`` (the same examples on every run, no example
database), a fixed ``max_examples`` per property, and no FHIR server is ever contacted (the
allow-list is empty, so a ``fhirServer`` in a fuzzed body is never called).
"""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.app import create_app
from cds_service.fhir.resources import bundle_resources
from cds_service.replay import build_request, load_bundle, patient_id_of

pytestmark = pytest.mark.slow

RECORDS = Path(__file__).resolve().parents[1] / "fixtures" / "records"
MAX_BODY = 20_000
STATUSES = {200, 400, 404, 412, 413, 415}
NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)
SERVICE = "tma-bone-assessment"
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- the app and the known-good request ----------------------------------------------------------

class Quiet(dict):  # type: ignore[type-arg]
    """A dict that hypothesis prints as its name, not as 30 kB of JSON."""

    def __repr__(self) -> str:
        return "<fixture>"


@pytest.fixture(scope="module")
def client() -> Any:
    app = create_app({"auth_required": False, "database_url": "sqlite://",
                      "max_body_bytes": MAX_BODY, "fhir_server_allowlist": ()},
                     clock=lambda: NOW)
    return app.test_client()


def _record(name: str) -> tuple[list[dict[str, Any]], str]:
    resources = bundle_resources(load_bundle(RECORDS / f"{name}.json"))
    return resources, patient_id_of(resources, RECORDS / f"{name}.json")


@pytest.fixture(scope="module")
def discovery(client: Any) -> dict[str, Any]:
    return Quiet(client.get("/cds-services").get_json())


@pytest.fixture(scope="module")
def good(client: Any, discovery: dict[str, Any]) -> dict[str, Any]:
    """A prefetched patient-view request and the cards it must keep getting."""
    resources, patient = _record("om-probable-ptb-esr")
    body = build_request(discovery, SERVICE, "patient-view", resources, patient)
    response = client.post(f"/cds-services/{SERVICE}", json=body)
    assert response.status_code == 200
    return Quiet(body=body, cards=_stable(response.get_json()["cards"]))


def _stable(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def drop(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if k != "uuid"}
        if isinstance(value, list):
            return [drop(v) for v in value]
        return value

    return drop(cards)  # type: ignore[no-any-return]


def check_still_works(client: Any, good: dict[str, Any]) -> None:
    response = client.post(f"/cds-services/{SERVICE}", json=good["body"])
    assert response.status_code == 200
    assert _stable(response.get_json()["cards"]) == good["cards"]


# --- what every answer must look like ------------------------------------------------------------

def _no_empty_values(value: Any, where: str) -> None:
    """CDS Hooks §14 #32: no null, "", [] or {} in a response (but ``cards: []``); the inside
    of an ``extension`` is the service's own."""
    if isinstance(value, dict):
        assert value, f"{where} is an empty object"
        for key, item in value.items():
            if key != "extension":
                _no_empty_values(item, f"{where}.{key}")
    elif isinstance(value, list):
        assert value, f"{where} is an empty array"
        for i, item in enumerate(value):
            _no_empty_values(item, f"{where}[{i}]")
    else:
        assert value is not None and value != "", f"{where} is null or empty"


def check_card(card: dict[str, Any]) -> None:
    assert isinstance(card.get("summary"), str) and 0 < len(card["summary"]) < 140, card
    assert card.get("indicator") in ("info", "warning", "critical")
    assert isinstance(card.get("source"), dict)
    assert isinstance(card["source"].get("label"), str) and card["source"]["label"]
    assert card.get("detail") is None or isinstance(card["detail"], str)
    suggestions = card.get("suggestions")
    if suggestions is not None:
        assert card.get("selectionBehavior") in ("at-most-one", "any")
        for suggestion in suggestions:
            assert isinstance(suggestion.get("label"), str) and suggestion["label"]
            for action in suggestion.get("actions") or ():
                assert action.get("type") in ("create", "update", "delete")
                assert isinstance(action.get("description"), str) and action["description"]
                if action["type"] in ("create", "update"):
                    assert isinstance(action.get("resource"), dict)
                    assert isinstance(action["resource"].get("resourceType"), str)
    _no_empty_values(card, "card")


def check_answer(response: Any) -> None:
    assert response.status_code in STATUSES, (response.status_code, response.get_data()[:500])
    body = json.loads(response.get_data())
    if response.status_code == 200:
        assert set(body) == {"cards"} and isinstance(body["cards"], list)
        uuids = [c["uuid"] for c in body["cards"] if "uuid" in c]
        assert len(uuids) == len(set(uuids))
        for card in body["cards"]:
            check_card(card)
    else:
        assert body["resourceType"] == "OperationOutcome"
        diagnostics = body["issue"][0]["diagnostics"]
        assert isinstance(diagnostics, str) and diagnostics.strip()


def post(client: Any, body: Any, service: str = SERVICE, **kwargs: Any) -> Any:
    if "data" in kwargs:
        return client.post(f"/cds-services/{service}", **kwargs)
    return client.post(f"/cds-services/{service}", data=json.dumps(body),
                       content_type=kwargs.get("content_type", "application/json"))


# --- strategies ----------------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=30)
           | st.sampled_from(["", " ", "Patient/1", "2026-13-45", "2026-02-30T25:61:00Z",
                              "yesterday", "0000-00-00", "+275760-09-13", "NaN", "1e999",
                              "\u0000", "\ud7ff\ufffe", "final", "active", "Observation",
                              "Frobnicator", "OperationOutcome", "Bundle"]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indexes), the root excluded."""
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.append((*prefix, i))
            out += paths(item, (*prefix, i))
    return out


def set_at(value: Any, path: tuple[Any, ...], new: Any, delete: bool = False) -> Any:
    copied = copy.deepcopy(value)
    target = copied
    for part in path[:-1]:
        target = target[part]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return copied


@pytest.fixture(scope="module")
def bodies(discovery: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A valid, fully prefetched request per hook (order hooks with one draft order), also
    naming a FHIR server and a token (never called: it is not on the allow-list)."""
    resources, patient = _record("om-probable-ptb-esr")
    out = {}
    for hook, service in SERVICES.items():
        if not any(s["id"] == service for s in discovery["services"]):
            continue  # the order hooks may not be there yet
        body = build_request(discovery, service, hook, resources, patient,
                             DRAFT if hook != "patient-view" else None)
        body["fhirServer"] = "http://127.0.0.1:9/fhir"
        body["fhirAuthorization"] = {"access_token": "t", "token_type": "Bearer",
                                     "expires_in": 300, "scope": "patient/*.read",
                                     "subject": "cds"}
        body["context"]["encounterId"] = "enc-1"
        out[hook] = body
    return Quiet(out)


def _outside_prefetch(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Paths of a request, the prefetch only down to its keys (resources have their own test)."""
    return [p for p in paths(body) if p[0] != "prefetch" or len(p) <= 2]


DRAFT = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
    "resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
    "subject": {"reference": "Patient/pt-om-probable"},
    "medicationCodeableConcept": {"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11124"}]},
    "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
        "value": 1200, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}]}],
}}]}
SERVICES = {"patient-view": SERVICE, "order-select": "tma-order-select",
            "order-sign": "tma-order-sign"}


# --- request bodies ------------------------------------------------------------------------------

@FUZZ
@given(data=st.data(), hook=st.sampled_from(sorted(SERVICES)))
def test_any_field_of_a_request_set_to_anything(
    client: Any, good: dict[str, Any], bodies: dict[str, dict[str, Any]], data: Any, hook: str
) -> None:
    body = bodies.get(hook, bodies["patient-view"])
    path = data.draw(st.sampled_from(_outside_prefetch(body)), label="path")
    if data.draw(st.booleans(), label="delete"):
        body = set_at(body, path, None, delete=True)
    else:
        body = set_at(body, path, data.draw(JSON, label="value"))
    check_answer(post(client, body, SERVICES[hook]))
    check_still_works(client, good)


@settings(FUZZ, max_examples=60)
@given(body=JSON)
def test_any_json_as_the_whole_body(client: Any, good: dict[str, Any], body: Any) -> None:
    check_answer(post(client, body))
    check_still_works(client, good)


@settings(FUZZ, max_examples=60)
@given(raw=st.binary(max_size=200), prefix=st.sampled_from([b"", b'{"hook": "', b"\xef\xbb\xbf"]))
def test_arbitrary_bytes(client: Any, good: dict[str, Any], raw: bytes, prefix: bytes) -> None:
    check_answer(post(client, None, data=prefix + raw, content_type="application/json"))
    check_still_works(client, good)


@settings(FUZZ, max_examples=40)
@given(content_type=st.sampled_from([
    "text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data",
    "", "application/jsonx", "text/json; charset=latin-1", "application/json; charset=utf-16",
    "application/fhir+json; fhirVersion=4.0", "*/*", "application/json\x00"]))
def test_content_types(client: Any, good: dict[str, Any], content_type: str) -> None:
    response = client.post(f"/cds-services/{SERVICE}", data=json.dumps(good["body"]),
                           headers={"Content-Type": content_type} if content_type else {})
    check_answer(response)
    check_still_works(client, good)


@pytest.mark.parametrize("depth", [100, 900, 950, 1_500, 2_000, 100_000])
@pytest.mark.parametrize("where", ["body", "context", "prefetch", "resource", "used-resource"])
def test_deep_nesting(client: Any, good: dict[str, Any], depth: int, where: str) -> None:
    deep = "[" * depth + "]" * depth
    if where == "used-resource":  # inside the ESR Observation the rules read and validate
        raw = json.dumps(good["body"]).replace('"id": "obs-4"', f'"id": "obs-4", "note": {deep}')
        assert deep in raw
        response = post(client, None, data=raw.encode(), content_type="application/json")
        check_answer(response)
        check_still_works(client, good)
        return
    pattern = {
        "body": "{deep}",
        "context": ('{{"hook": "patient-view", "hookInstance": "x", "context": '
                    '{{"userId": "Practitioner/1", "patientId": "p", "extra": {deep}}}}}'),
        "prefetch": ('{{"hook": "patient-view", "hookInstance": "x", "context": '
                     '{{"userId": "Practitioner/1", "patientId": "p"}}, '
                     '"prefetch": {{"conditions": {deep}}}}}'),
        "resource": ('{{"hook": "patient-view", "hookInstance": "x", "context": '
                     '{{"userId": "Practitioner/1", "patientId": "p"}}, "prefetch": '
                     '{{"conditions": {{"resourceType": "Bundle", "entry": [{{"resource": '
                     '{{"resourceType": "Condition", "code": {deep}}}}}]}}}}}}'),
    }[where]
    raw = pattern.format(deep=deep).encode()
    response = post(client, None, data=raw, content_type="application/json")
    check_answer(response)
    if len(raw) > MAX_BODY:
        assert response.status_code == 413
    check_still_works(client, good)


@settings(FUZZ, max_examples=30)
@given(size=st.integers(min_value=MAX_BODY - 300, max_value=MAX_BODY * 3),
       field=st.sampled_from(["hookInstance", "patientId", "userId", "extra", "prefetch"]))
def test_huge_strings(client: Any, good: dict[str, Any], bodies: dict[str, dict[str, Any]],
                      size: int, field: str) -> None:
    body = copy.deepcopy(bodies["patient-view"])
    text = "x" * size
    if field in ("patientId", "userId"):
        body["context"][field] = text
    elif field == "prefetch":
        body["prefetch"]["conditions"]["entry"][0]["resource"]["code"]["text"] = text
    else:
        body[field] = text
    raw = json.dumps(body).encode()
    response = post(client, None, data=raw, content_type="application/json")
    check_answer(response)
    assert (response.status_code == 413) == (len(raw) > MAX_BODY)
    check_still_works(client, good)


def _chunked(client: Any, raw: bytes) -> Any:
    """POST ``raw`` as a chunked upload (no Content-Length), the way gunicorn hands it over."""
    return client.post(f"/cds-services/{SERVICE}", input_stream=io.BytesIO(raw),
                       headers={"Content-Type": "application/json",
                                "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def test_oversize_chunked_body_is_a_413(client: Any, good: dict[str, Any]) -> None:
    """Regression: without a Content-Length the body was cut at the limit and answered 400."""
    response = _chunked(client, b'{"hook": "patient-view", "x": "' + b"y" * 50_000 + b'"}')
    check_answer(response)
    assert response.status_code == 413
    check_still_works(client, good)


def test_chunked_body_under_the_limit_is_read_whole(client: Any, good: dict[str, Any]) -> None:
    response = _chunked(client, json.dumps(good["body"]).encode())
    assert response.status_code == 200
    assert _stable(response.get_json()["cards"]) == good["cards"]


def test_unknown_service_and_wrong_hook(client: Any, good: dict[str, Any]) -> None:
    for service, hook, status in (("no-such-service", "patient-view", 404),
                                  (SERVICE, "order-sign", 400), (SERVICE, "no-such-hook", 400)):
        body = {**good["body"], "hook": hook}
        response = post(client, body, service)
        check_answer(response)
        assert response.status_code == status
    check_still_works(client, good)


# --- FHIR resources inside the prefetch ----------------------------------------------------------

MUTANTS = (JSON | st.sampled_from([
    {"value": "85", "unit": "mm/h"}, {"value": "high"}, {"value": None}, {"value": True},
    {"value": 1e308, "code": "mm/h", "system": "http://unitsofmeasure.org"},
    {"value": -0.0, "code": "not-a-unit"}, "2026-13-45", "2026-11-31", "20261120",
    "2026-11-20T10:00:00+25:00", {"resourceType": "Frobnicator"}, {"resourceType": None},
    {"coding": [{"system": None, "code": 5}]}, {"coding": "E11.621"}, [None], [[[]]],
    {"reference": "Patient/"}, {"reference": 5}, {"reference": "#"}, "x" * 5_000,
]))
RECORD_NAMES = sorted(p.stem for p in RECORDS.glob("*.json"))


@settings(FUZZ, max_examples=1000)
@given(data=st.data(), name=st.sampled_from(RECORD_NAMES))
def test_prefetched_resources_mutated_field_by_field(
    client: Any, discovery: dict[str, Any], good: dict[str, Any], data: Any, name: str
) -> None:
    resources, patient = _record(name)
    body = build_request(discovery, SERVICE, "patient-view", resources, patient)
    # a resource somewhere in the prefetch, and a field somewhere in it (any depth)
    holders = [("prefetch", key) for key, value in body["prefetch"].items()
               if isinstance(value, dict)]
    key = data.draw(st.sampled_from(holders), label="key")[1]
    value = body["prefetch"][key]
    targets = ([("prefetch", key)] if value.get("resourceType") != "Bundle" else
               [("prefetch", key, "entry", i, "resource") for i in range(len(value["entry"]))]
               or [("prefetch", key)])
    target = data.draw(st.sampled_from(targets), label="resource")
    resource = body
    for part in target:
        resource = resource[part]
    inner = data.draw(st.sampled_from([(), *paths(resource)]), label="field")
    path = (*target, *inner)
    if path and data.draw(st.integers(0, 5), label="delete?") == 0 and inner:
        mutated = set_at(body, path, None, delete=True)
    else:
        mutated = set_at(body, path, data.draw(MUTANTS, label="value"))
    check_answer(post(client, mutated))
    check_still_works(client, good)


@settings(FUZZ, max_examples=300)
@given(data=st.data(), hook=st.sampled_from(["order-select", "order-sign"]))
def test_draft_orders_mutated_field_by_field(
    client: Any, good: dict[str, Any], bodies: dict[str, dict[str, Any]], data: Any, hook: str
) -> None:
    if hook not in bodies:
        pytest.skip(f"no {hook} service in discovery")
    body = bodies[hook]
    draft_paths = [p for p in paths(body) if p[:2] == ("context", "draftOrders")]
    path = data.draw(st.sampled_from(draft_paths), label="path")
    mutated = set_at(body, path, data.draw(MUTANTS, label="value"))
    check_answer(post(client, mutated, SERVICES[hook]))
    check_still_works(client, good)


# --- regressions: each was a 500 found by the properties above -----------------------------------

def _entry(body: dict[str, Any], key: str, kind: str) -> dict[str, Any]:
    return next(e["resource"] for e in body["prefetch"][key]["entry"]
                if e["resource"]["resourceType"] == kind)


REGRESSIONS = {
    # record.py: ``status in {...}`` with a list or object status (TypeError: unhashable)
    "observation status is a list": ("observations", "Observation", "status", ["final"]),
    "report status is an object": ("reports", "DiagnosticReport", "status", {"code": "final"}),
    # resources.py: codings() iterated a non-list ``coding``
    "condition coding is a number": ("conditions", "Condition", "code", {"coding": 5}),
    # record.py: reports' ``imagingStudy`` iterated as given
    "report imagingStudy is a number": ("reports", "DiagnosticReport", "imagingStudy", 2.5),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_regressions_in_resources(client: Any, good: dict[str, Any], case: str) -> None:
    key, kind, field, value = REGRESSIONS[case]
    body = copy.deepcopy(good["body"])
    _entry(body, key, kind)[field] = value
    response = post(client, body)
    check_answer(response)
    assert response.status_code == 200
    check_still_works(client, good)


@pytest.mark.parametrize("field,value", [("entry", 1.5), ("link", 5)])
def test_regressions_in_prefetched_bundles(client: Any, good: dict[str, Any], field: str,
                                           value: Any) -> None:
    """resources.py: ``bundle_resources``/``next_link`` iterated a non-list entry or link."""
    body = copy.deepcopy(good["body"])
    body["prefetch"]["conditions"][field] = value
    response = post(client, body)
    check_answer(response)
    assert response.status_code == 200
    check_still_works(client, good)


def test_regression_studies_with_odd_series_and_modality(client: Any, good: dict[str, Any],
                                                         discovery: dict[str, Any]) -> None:
    resources, patient = _record("charcot-bone-scan")
    body = build_request(discovery, SERVICE, "patient-view", resources, patient)
    study = _entry(body, "imaging", "ImagingStudy")
    for series, modality in ((3, "MR"), ("x", 4), ([None, 5], [None, "x"])):
        study["series"], study["modality"] = series, modality
        check_answer(post(client, body))
    check_still_works(client, good)


@pytest.mark.parametrize("patient_id,expected", [
    ("p1", "Condition?patient=p1&_count=200"),
    ("p1,p2", "Condition?patient=p1%5C%2Cp2&_count=200"),
    ("p1&patient=p2", "Condition?patient=p1%26patient%3Dp2&_count=200"),
    ("p1#", "Condition?patient=p1%23&_count=200"),
    ("a|b$c\\d", "Condition?patient=a%5C%7Cb%5C%24c%5C%5Cd&_count=200"),
])
def test_context_values_are_one_literal_id_in_fetch_urls(patient_id: str, expected: str) -> None:
    """Regression (prefetch.render): tokens went into URLs as given; "p1,p2" fetched two
    patients' records into one assessment (tests/integration shows it against a real server)."""
    from cds_service.fhir.prefetch import render

    assert render("Condition?patient={{context.patientId}}&_count=200",
                  {"patientId": patient_id}) == expected
    assert render("Patient/{{context.patientId}}", {"patientId": "p1,p2"}) == "Patient/p1%2Cp2"


@pytest.mark.parametrize("kind", [{"a": 1}, ["MedicationRequest"]])
@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_regression_draft_orders_resource_type_not_a_string(
    client: Any, good: dict[str, Any], bodies: dict[str, dict[str, Any]], hook: str, kind: Any
) -> None:
    """draft_orders.parse_bundle: ``resourceType in {...}`` with an object or list (unhashable)."""
    if hook not in bodies:
        pytest.skip(f"no {hook} service in discovery")
    body = copy.deepcopy(bodies[hook])
    body["context"]["draftOrders"]["resourceType"] = kind
    response = post(client, body, SERVICES[hook])
    check_answer(response)
    assert response.status_code == 200
    check_still_works(client, good)
