"""The service against a FHIR server nobody here wrote (sekmet-fhir, started by conftest.py).

Each fixture record is loaded into the server as a transaction (PUT Type/id, ids kept, made
unique per record because the records reuse ids like ``proc-1``). The patient-view hook is then
sent WITHOUT prefetch, with ``fhirServer`` and a bearer token, so the service must fetch every
template itself; its cards must equal the in-process prefetched replay of the same record.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from cds_service.app import create_app
from cds_service.fhir.client import FhirClient, make_session
from cds_service.fhir.resources import bundle_resources
from cds_service.preview import visible_text
from cds_service.replay import build_request, load_bundle, patient_id_of, record_time

pytestmark = pytest.mark.integration

RECORDS = Path(__file__).resolve().parents[2] / "fixtures" / "records"
SERVICE = "tma-bone-assessment"
ALL_RECORDS = sorted(p.stem for p in RECORDS.glob("*.json"))


# --- loading records into the server ---------------------------------------------------------

def namespaced(resources: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Copies with every non-Patient id made ``{prefix}.{id}`` and references rewritten to match.

    The fixture records share ids (``proc-1``, ``obs-3`` ...); one server holds them all.
    """
    renamed = {(r["resourceType"], r["id"]): f"{prefix}.{r['id']}"
               for r in resources if r["resourceType"] != "Patient"}

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: fix(v) for k, v in value.items()}
            ref = out.get("reference")
            if isinstance(ref, str) and ref.count("/") == 1:
                kind, ident = ref.split("/")
                if (kind, ident) in renamed:
                    out["reference"] = f"{kind}/{renamed[kind, ident]}"
            return out
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    out = []
    for resource in resources:
        copied = fix(resource)
        copied["id"] = renamed.get((resource["resourceType"], resource["id"]), resource["id"])
        out.append(copied)
    return out


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that PUTs each resource at ``Type/id`` (the server keeps the ids)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r,
                   "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                  for r in resources],
    }


class Record:
    def __init__(self, name: str) -> None:
        self.name = name
        bundle = load_bundle(RECORDS / f"{name}.json")
        self.resources = bundle_resources(bundle)
        self.patient_id = patient_id_of(self.resources, RECORDS / f"{name}.json")
        self.now = record_time(bundle)
        self.stored = namespaced(self.resources, self.patient_id)


@pytest.fixture(scope="module")
def loaded(fhir_server: Any) -> dict[str, Record]:
    records = {name: Record(name) for name in ALL_RECORDS}
    for record in records.values():
        answer = fhir_server.transaction(transaction(record.stored))
        statuses = {e["response"]["status"].split()[0] for e in answer["entry"]}
        assert statuses <= {"200", "201"}, (record.name, statuses)
    return records


# --- the service -----------------------------------------------------------------------------

class Clock:
    """The app's clock: the record's own "now" (Bundle.timestamp), set per test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 10)

    def __call__(self) -> datetime:
        return self.now


def make_app(base: str, clock: Clock, **extra: Any) -> Any:
    config = {"auth_required": False, "fhir_server_allowlist": (base,),
              "database_url": "sqlite://", **extra}
    return create_app(config, clock=clock)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def client(fhir_server: Any, clock: Clock) -> Any:
    return make_app(fhir_server.base, clock).test_client()


def hook_without_prefetch(base: str, patient_id: str, token: str) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": base,
        "fhirAuthorization": {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                              "scope": "patient/*.read", "subject": "cds-service"},
        "context": {"userId": "Practitioner/integration", "patientId": patient_id},
    }


def replay_cards(client: Any, record: Record) -> list[dict[str, Any]]:
    """The in-process prefetched replay of the original record (``cds-service replay``)."""
    discovery = client.get("/cds-services").get_json()
    body = build_request(discovery, SERVICE, "patient-view", record.resources, record.patient_id)
    response = client.post(f"/cds-services/{SERVICE}", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"]  # type: ignore[no-any-return]


def essentials(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What must not depend on where the data came from: per card its kind, indicator, summary,
    the assessment extension (states, rule ids, flags, side, days; not the evidence ids) and the
    suggestions' codes."""
    out = []
    for card in cards:
        codes = []
        for suggestion in card.get("suggestions") or ():
            for action in suggestion.get("actions") or ():
                resource = action.get("resource") or {}
                concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
                codes.append(sorted(f"{c.get('system')}|{c.get('code')}"
                                    for c in concept.get("coding") or ()))
        ext = card.get("extension") or {}
        # the evidence references name the resources as this server stores them
        assessment = {k: v for k, v in (ext.get("tma-bone-assessment") or {}).items()
                      if k != "evidence"} or None
        out.append({"kind": ext.get("tma-card", {}).get("kind"),
                    "rules": ext.get("tma-card", {}).get("rules"),
                    "assessment": assessment,
                    "indicator": card.get("indicator"), "summary": card.get("summary"),
                    "suggestion_codes": codes})
    return out


def without_uuids(value: Any, prefix: str) -> Any:
    """The cards with uuids dropped and the per-record id prefix taken off again."""
    if isinstance(value, dict):
        return {k: without_uuids(v, prefix) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v, prefix) for v in value]
    if isinstance(value, str):
        return value.replace(f"{prefix}.", "")
    return value


# --- the tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_RECORDS)
def test_hook_without_prefetch_gives_the_replay_cards(
    name: str, loaded: dict[str, Record], client: Any, clock: Clock, fhir_server: Any
) -> None:
    record = loaded[name]
    clock.now = record.now
    expected = replay_cards(client, record)

    response = client.post(f"/cds-services/{SERVICE}",
                           json=hook_without_prefetch(fhir_server.base, record.patient_id,
                                                     fhir_server.token))

    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert essentials(cards) == essentials(expected)
    assert without_uuids(cards, record.patient_id) == without_uuids(expected, record.patient_id)
    assert "not available" not in json.dumps(cards)


def test_the_server_answers_each_template_as_the_replay_does(
    loaded: dict[str, Record], client: Any, fhir_server: Any
) -> None:
    """sekmet-fhir takes every search the templates use as is: the 2.7 kB ``code`` list with
    ``system|code`` tokens, ``_sort=-date``, the ``status`` list and ``_count``."""
    from cds_service.fhir.prefetch import render
    from cds_service.fhir.search import search

    templates = client.get("/cds-services").get_json()["services"][0]["prefetch"]
    for name in ("ho-present-nsaid-gates-fail", "severe-infection", "om-confirmed-bone-culture"):
        record = loaded[name]
        for key, template in templates.items():
            url = render(template, {"patientId": record.patient_id})
            answer = requests.get(f"{fhir_server.base}/{url}", headers=fhir_server.headers,
                                  timeout=10)
            assert answer.status_code == 200, (name, key, answer.text[:500])
            want = search(record.stored, url)
            if key == "patient":
                assert answer.json()["id"] == want["id"]
                continue
            got = [e["resource"]["id"] for e in answer.json().get("entry", ())
                   if e.get("search", {}).get("mode", "match") == "match"]
            assert sorted(got) == sorted(e["resource"]["id"] for e in want["entry"]), (name, key)
            assert not next((1 for link in answer.json().get("link", ())
                             if link["relation"] == "next"), None)


def test_a_wrong_token_is_a_412_not_a_500(loaded: dict[str, Record], client: Any,
                                          fhir_server: Any) -> None:
    """The server refuses the token (401 OperationOutcome) for every search: required data is
    missing, so the hook answers 412, saying why."""
    record = loaded["om-probable-ptb-esr"]
    response = client.post(f"/cds-services/{SERVICE}", json=hook_without_prefetch(
        fhir_server.base, record.patient_id, "not-the-right-token"))
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "HTTP 401" in outcome["issue"][0]["diagnostics"]
    assert "not-the-right-token" not in json.dumps(outcome)


def _rejected(template: str) -> str:
    # sekmet reads the last _count and answers 400 OperationOutcome "_count must be an integer"
    return template + "&_count=not-a-number"


def test_a_rejected_search_for_optional_data_is_named_on_the_card(
    loaded: dict[str, Record], fhir_server: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds_service import services

    original = services.prefetch_templates
    monkeypatch.setattr(services, "prefetch_templates", lambda m: {
        **original(m), "medications": _rejected(original(m)["medications"])})
    client = make_app(fhir_server.base, clock).test_client()
    record = loaded["om-probable-ptb-esr"]
    clock.now = record.now
    probe = requests.get(f"{fhir_server.base}/MedicationRequest?patient={record.patient_id}"
                         "&_count=not-a-number", headers=fhir_server.headers, timeout=10)
    assert probe.status_code == 400 and probe.json()["resourceType"] == "OperationOutcome"

    response = client.post(f"/cds-services/{SERVICE}", json=hook_without_prefetch(
        fhir_server.base, record.patient_id, fhir_server.token))

    assert response.status_code == 200, response.get_json()
    assessment = response.get_json()["cards"][0]
    assert assessment["extension"]["tma-bone-assessment"]["osteomyelitis"] == "probable"
    assert "Medication requests: not available (FHIR server answered HTTP 400)" in \
        visible_text(assessment)


def test_a_rejected_search_for_required_data_is_a_412(
    loaded: dict[str, Record], fhir_server: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds_service import services

    original = services.prefetch_templates
    monkeypatch.setattr(services, "prefetch_templates", lambda m: {
        **original(m), "conditions": _rejected(original(m)["conditions"])})
    client = make_app(fhir_server.base, clock).test_client()
    record = loaded["om-probable-ptb-esr"]

    response = client.post(f"/cds-services/{SERVICE}", json=hook_without_prefetch(
        fhir_server.base, record.patient_id, fhir_server.token))

    assert response.status_code == 412
    issue = response.get_json()["issue"][0]
    assert issue["diagnostics"].startswith("required data was neither prefetched nor fetchable")
    assert "conditions: FHIR server answered HTTP 400" in issue["diagnostics"]
    assert issue["expression"] == ["prefetch.conditions"]


# --- paging ----------------------------------------------------------------------------------

NOISE = 1100  # > 2 x the observations template's _count=500: three pages


@pytest.fixture(scope="module")
def paged_record(fhir_server: Any) -> Record:
    """om-probable-ptb-esr under a new patient id, plus 1,100 ESR Observations marked
    entered-in-error (the rules ignore them) that are newer than the real ones. Sorted by
    ``-date``, the real Observations are on the third page: without paging the cards change."""
    record = Record("om-probable-ptb-esr")
    record.patient_id = "pt-paged"
    record.stored = namespaced(
        [{**r, "id": "pt-paged"} if r["resourceType"] == "Patient" else r
         for r in record.resources], "pt-paged")
    record.stored = json.loads(json.dumps(record.stored).replace(
        '"Patient/pt-om-probable"', '"Patient/pt-paged"'))
    newest_real = max(r["effectiveDateTime"] for r in record.stored
                      if r["resourceType"] == "Observation")
    start = datetime.fromisoformat(newest_real.replace("Z", "+00:00")) + timedelta(minutes=1)
    noise = [{
        "resourceType": "Observation", "id": f"pt-paged.noise-{i}", "status": "entered-in-error",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4537-7"}]},
        "subject": {"reference": "Patient/pt-paged"},
        "effectiveDateTime": (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        "valueQuantity": {"value": 10, "unit": "mm/h", "system": "http://unitsofmeasure.org",
                          "code": "mm/h"},
    } for i in range(NOISE)]
    assert start + timedelta(minutes=NOISE) < record.now
    fhir_server.transaction(transaction(record.stored + noise))
    return record


def test_the_client_follows_the_servers_next_links(paged_record: Record,
                                                   fhir_server: Any) -> None:
    pages: list[str] = []
    session = make_session()
    original_get = session.get

    def counting_get(url: str, **kwargs: Any) -> Any:
        pages.append(url)
        return original_get(url, **kwargs)

    session.get = counting_get  # type: ignore[method-assign]
    # Paging is what is tested here, not speed: generous limits, because a shared loaded
    # machine made sekmet take over 5 s for one page of 1,100 Observations.
    client = FhirClient(session, fhir_server.base, fhir_server.token, timeout=30.0,
                        deadline=time.monotonic() + 60)
    found = client.fetch("Observation?patient=pt-paged&_sort=-date&_count=500")

    assert len(found) == NOISE + 4
    assert len({r["id"] for r in found}) == len(found)
    assert len(pages) == 3 and "_offset=1000" in pages[2]
    assert {r["id"] for r in found[-4:]} == {
        r["id"] for r in paged_record.stored if r["resourceType"] == "Observation"}


def test_a_hook_whose_data_spans_three_pages_gives_the_replay_cards(
    paged_record: Record, client: Any, clock: Clock, fhir_server: Any
) -> None:
    clock.now = paged_record.now
    expected = replay_cards(client, Record("om-probable-ptb-esr"))

    response = client.post(f"/cds-services/{SERVICE}", json=hook_without_prefetch(
        fhir_server.base, "pt-paged", fhir_server.token))

    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert essentials(cards) == essentials(json.loads(json.dumps(expected).replace(
        "pt-om-probable", "pt-paged")))
    # the test can tell: reading only the first page loses the real Observations
    one_page = make_app(fhir_server.base, clock, fhir_page_cap=1).test_client()
    first_page_only = one_page.post(f"/cds-services/{SERVICE}", json=hook_without_prefetch(
        fhir_server.base, "pt-paged", fhir_server.token)).get_json()["cards"]
    assert first_page_only[0]["extension"] != cards[0]["extension"]


# --- the server goes away --------------------------------------------------------------------

def test_the_server_stopped_mid_run_gives_a_quick_412(start_fhir_server: Any,
                                                      clock: Clock) -> None:
    server = start_fhir_server()
    record = Record("om-probable-ptb-esr")
    server.transaction(transaction(record.resources))
    clock.now = record.now
    client = make_app(server.base, clock, fhir_timeout=2.0).test_client()
    body = hook_without_prefetch(server.base, record.patient_id, server.token)
    assert client.post(f"/cds-services/{SERVICE}", json=body).status_code == 200

    server.stop()
    started = time.monotonic()
    response = client.post(f"/cds-services/{SERVICE}", json=body)
    elapsed = time.monotonic() - started

    assert response.status_code == 412
    assert "unreachable" in response.get_json()["issue"][0]["diagnostics"]
    assert elapsed < 2.0, f"a refused connection took {elapsed:.2f} s to become a 412"
    # with the data prefetched instead, the same app still answers
    discovery = client.get("/cds-services").get_json()
    prefetched = build_request(discovery, SERVICE, "patient-view", record.resources,
                               record.patient_id)
    assert client.post(f"/cds-services/{SERVICE}", json=prefetched).status_code == 200


# --- hostile context values reach the server as one literal id -------------------------------

@pytest.mark.parametrize("patient_id", [
    "pt-om-probable,pt-ho-mature",                 # FHIR "or": two patients' data in one card
    "pt-om-probable&patient=pt-ho-mature",         # a second parameter
    "pt-om-probable#",                              # cuts off code, _sort and _count
])
def test_a_patient_id_cannot_widen_the_search(
    patient_id: str, loaded: dict[str, Record], client: Any, clock: Clock, fhir_server: Any
) -> None:
    """Regression: context.patientId went into the URLs unescaped, and sekmet (like any FHIR
    server) read "a,b" as either patient: the cards mixed two patients' records."""
    clock.now = loaded["om-probable-ptb-esr"].now
    response = client.post(f"/cds-services/{SERVICE}", json=hook_without_prefetch(
        fhir_server.base, patient_id, fhir_server.token))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}  # no patient has that id: no data, no cards
