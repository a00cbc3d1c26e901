"""``GET /metrics`` (Prometheus) and the probes ``/healthz`` and ``/readyz``.

In-process tests check each metric against the calls made (deltas, since the counts are the
process's), that no request data reaches a label, and that the probes and the scrape need no
JWT. The server test sends a known mix of calls to ``cds-service serve --workers 2`` from 8
threads, replaces both workers (SIGHUP) and sends the mix again: the instance's one
``/metrics`` must add up every worker's counts, the replaced ones included, exactly.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer
from sqlalchemy.exc import OperationalError

from cds_service.commands.dev_token import init_issuer
from cds_service.replay import build_request, load_bundle, patient_id_of
from tests.conftest import RECORDS, make_app
from tests.support.serve import Serve, grown, parse_metrics, sample

SERVICE = "tma-bone-assessment"
HOOK = f"/cds-services/{SERVICE}"
RECORD = RECORDS / "om-probable-ptb-esr.json"
TEMPLATES = 7  # prefetch keys of the patient-view service (discovery), one GET each
TIMEOUT = 20.0  # seconds per request: a bound for a stuck run, not a speed target


def record() -> tuple[list[dict[str, Any]], str]:
    resources = [e["resource"] for e in load_bundle(RECORD).get("entry", [])]
    return resources, patient_id_of(resources, RECORD)


def prefetched_body(discovery: dict[str, Any]) -> dict[str, Any]:
    resources, patient = record()
    return build_request(discovery, SERVICE, "patient-view", resources, patient)


def fetching_body(fhir_base: str, patient: str = "p-fetch") -> dict[str, Any]:
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "fhirServer": fhir_base,
            "fhirAuthorization": {"access_token": "t0ken", "token_type": "Bearer",
                                  "expires_in": 300, "scope": "patient/*.read",
                                  "subject": "cds-service"},
            "context": {"userId": "Practitioner/1", "patientId": patient}}


def card_series(cards: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((c["extension"]["tma-card"]["kind"], c["indicator"]) for c in cards)


@pytest.fixture
def fhir() -> Iterator[HTTPServer]:
    """A FHIR stub: ``Patient/<id>`` is 404, every search an empty Bundle; ``/bad/`` is 500."""
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.expect_request(re.compile(r"^/fhir/Patient/.*")).respond_with_data("", status=404)
    server.expect_request(re.compile(r"^/fhir/.*")).respond_with_json(
        {"resourceType": "Bundle", "type": "searchset", "total": 0})
    server.expect_request(re.compile(r"^/bad/.*")).respond_with_data("no", status=500)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


# ----- in-process -------------------------------------------------------------------------------


def scrape(client: Any) -> dict[Any, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(response.get_data(as_text=True))


def test_each_call_is_counted_once_with_its_status_latency_and_cards() -> None:
    client = make_app().test_client()
    discovery = client.get("/cds-services").get_json()
    before = scrape(client)
    ok = client.post(HOOK, json=prefetched_body(discovery))
    assert ok.status_code == 200
    cards = ok.get_json()["cards"]
    assert client.post(HOOK, json={"hook": "patient-view"}).status_code == 400
    assert client.post("/cds-services/no-such-service", json={}).status_code == 404
    assert client.post(HOOK, data="x", content_type="text/plain").status_code == 415
    after = scrape(client)

    delta = functools.partial(grown, before, after)

    assert delta("cds_hook_requests_total", service=SERVICE, status="200") == 1
    assert delta("cds_hook_requests_total", service=SERVICE, status="400") == 1
    assert delta("cds_hook_requests_total", service=SERVICE, status="415") == 1
    # a client-chosen id never becomes a label of its own
    assert delta("cds_hook_requests_total", service="unknown", status="404") == 1
    assert not any(dict(labels).get("service") == "no-such-service" for _, labels in after)
    assert delta("cds_hook_duration_seconds_count", service=SERVICE) == 3
    assert delta("cds_hook_duration_seconds_bucket", service=SERVICE, le="+Inf") == 3
    assert delta("cds_hook_duration_seconds_sum", service=SERVICE) > 0
    assert cards, "the record should yield cards"
    for (kind, indicator), count in card_series(cards).items():
        assert delta("cds_cards_total", service=SERVICE, kind=kind, indicator=indicator) == count


def test_no_patient_data_reaches_the_exposition() -> None:
    client = make_app().test_client()
    body = prefetched_body(client.get("/cds-services").get_json())
    patient = body["context"]["patientId"]
    assert client.post(HOOK, json=body).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert patient not in text and body["hookInstance"] not in text
    labels = {key for _, series in parse_metrics(text) for key, _ in series}
    assert labels <= {"service", "status", "kind", "indicator", "outcome", "result", "le"}


def test_fhir_requests_are_counted_by_outcome(fhir: HTTPServer) -> None:
    client = make_app(fhir_server_allowlist=(fhir.url_for("/fhir"), fhir.url_for("/bad")),
                      fhir_timeout=10.0).test_client()
    before = scrape(client)
    assert client.post(HOOK, json=fetching_body(fhir.url_for("/fhir"))).status_code == 200
    assert client.post(HOOK, json=fetching_body(fhir.url_for("/bad"))).status_code == 412
    after = scrape(client)
    paths = Counter("bad" if r.path.startswith("/bad/") else
                    "patient" if r.path.startswith("/fhir/Patient/") else "search"
                    for r, _ in fhir.log)
    assert paths == {"search": TEMPLATES - 1, "patient": 1, "bad": TEMPLATES}  # 500: no retry

    delta = functools.partial(grown, before, after, "cds_fhir_requests_total")
    assert delta(outcome="ok") == paths["search"]
    assert delta(outcome="not_found") == paths["patient"]
    assert delta(outcome="http_5xx") == paths["bad"]


def test_feedback_writes_are_counted() -> None:
    client = make_app().test_client()
    before = scrape(client)
    item = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00Z"}
    other = {**item, "card": "c-2"}
    assert client.post(f"{HOOK}/feedback", json={"feedback": [item, other]}).status_code == 200
    assert client.post(f"{HOOK}/feedback", json={"feedback": [item]}).status_code == 200
    assert client.post(f"{HOOK}/feedback", json={"feedback": "no"}).status_code == 400
    after = scrape(client)

    delta = functools.partial(grown, before, after)

    assert delta("cds_feedback_items_total", service=SERVICE, result="stored") == 2
    assert delta("cds_feedback_items_total", service=SERVICE, result="duplicate") == 1
    assert delta("cds_feedback_requests_total", service=SERVICE, status="200") == 2
    assert delta("cds_feedback_requests_total", service=SERVICE, status="400") == 1


def test_probes_and_scrape_need_no_token_but_calls_do(tmp_path: Path) -> None:
    issuers = init_issuer(tmp_path / "issuer", [])
    client = make_app(auth_required=True, trusted_issuers=str(issuers),
                      public_url="https://cds.example.org").test_client()
    before = scrape(client)
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}
    assert client.post(HOOK, json={}).status_code == 401
    after = scrape(client)  # scrape() asserts the 200 without a token
    assert grown(before, after, "cds_hook_requests_total", service=SERVICE, status="401") == 1


def test_readiness_fails_while_the_database_cannot_be_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    client = app.test_client()

    def down() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(app.extensions["cds_service"].database, "ping", down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/healthz").status_code == 200  # liveness does not depend on it


# ----- a real server: two workers, replaced halfway ---------------------------------------------


def _item(round_: int, i: int) -> dict[str, Any]:
    return {"card": f"r{round_}-c{i}", "outcome": "overridden",
            "outcomeTimestamp": "2026-03-01T10:00:00Z"}


def _mix(discovery: dict[str, Any], fhir_base: str, round_: int) -> list[tuple[str, Any]]:
    """One round of calls: (kind, request arguments). Feedback items are unique per round;
    each ``dup`` repeats one of them (stored once, counted as a duplicate)."""
    calls: list[tuple[str, Any]] = []
    for i in range(24):
        calls.append(("ok", {"url": HOOK, "json": prefetched_body(discovery)}))
        if i % 3 == 0:
            calls.append(("fetch", {"url": HOOK, "json": fetching_body(fhir_base)}))
        if i % 4 == 0:
            calls.append(("bad", {"url": HOOK, "json": {"hook": "patient-view"}}))
            calls.append(("unknown", {"url": "/cds-services/nope", "json": {}}))
        calls.append(("feedback", {"url": f"{HOOK}/feedback",
                                   "json": {"feedback": [_item(round_, i)]}}))
    calls.extend(("dup", {"url": f"{HOOK}/feedback", "json": {"feedback": [_item(round_, i)]}})
                 for i in range(0, 24, 2))
    return calls


def _send(base: str, calls: list[tuple[str, Any]]) -> list[tuple[str, int, Any]]:
    local = threading.local()  # one keep-alive session per sending thread

    def one(call: tuple[str, Any]) -> tuple[str, int, Any]:
        kind, args = call
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.post(base + args["url"], json=args["json"], timeout=TIMEOUT)
        return kind, response.status_code, response.json()

    # originals first, then the duplicates (a duplicate must not race its original)
    firsts = [c for c in calls if c[0] != "dup"]
    dups = [c for c in calls if c[0] == "dup"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, firsts))
        results += list(pool.map(one, dups))
    return results


@pytest.mark.slow
def test_counts_are_exact_across_workers_and_worker_restarts(tmp_path: Path,
                                                            fhir: HTTPServer) -> None:
    fhir_base = fhir.url_for("/fhir")
    env = {**os.environ, "CDS_AUTH_REQUIRED": "false", "CDS_LOG_FORMAT": "json",
           "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/metrics.db",
           "CDS_FHIR_SERVER_ALLOWLIST": fhir_base, "CDS_FHIR_TIMEOUT": "10"}
    server = Serve(tmp_path, env, "metrics", workers=2).start()
    try:
        server.wait_ready()
        discovery = requests.get(server.base + "/cds-services", timeout=TIMEOUT).json()
        results = _send(server.base, _mix(discovery, fhir_base, 1))
        old = set(server.workers())
        os.kill(server.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]  # new workers
        deadline = time.monotonic() + 60
        while not (len(now := set(server.workers())) == 2 and not now & old):
            assert time.monotonic() < deadline, "gunicorn did not replace its workers"
            time.sleep(0.2)
        server.wait_ready()
        results += _send(server.base, _mix(discovery, fhir_base, 2))
        got = server.metrics()
        pids = {int(m.group(1)) for f in server.metrics_dir.iterdir()
                if (m := re.match(r"counter_(\d+)\.db$", f.name))}
    finally:
        server.stop()

    expected_status = {"ok": 200, "fetch": 200, "bad": 400, "unknown": 404, "feedback": 200,
                       "dup": 200}
    assert [(k, s) for k, s, _ in results if s != expected_status[k]] == []
    sent = Counter(kind for kind, _, _ in results)
    assert sample(got, "cds_hook_requests_total", service=SERVICE, status="200") == \
        sent["ok"] + sent["fetch"]
    assert sample(got, "cds_hook_requests_total", service=SERVICE, status="400") == sent["bad"]
    assert sample(got, "cds_hook_requests_total", service="unknown", status="404") == \
        sent["unknown"]
    assert sample(got, "cds_hook_duration_seconds_count", service=SERVICE) == \
        sent["ok"] + sent["fetch"] + sent["bad"]
    cards = Counter(itertools.chain.from_iterable(
        card_series(body["cards"]).elements() for kind, _, body in results
        if kind in ("ok", "fetch")))
    for (kind, indicator), count in cards.items():
        assert sample(got, "cds_cards_total", service=SERVICE, kind=kind,
                      indicator=indicator) == count
    assert sample(got, "cds_fhir_requests_total", outcome="ok") == sent["fetch"] * (TEMPLATES - 1)
    assert sample(got, "cds_fhir_requests_total", outcome="not_found") == sent["fetch"]
    assert len(fhir.log) == sent["fetch"] * TEMPLATES
    assert sample(got, "cds_feedback_items_total", service=SERVICE, result="stored") == \
        sent["feedback"]
    assert sample(got, "cds_feedback_items_total", service=SERVICE, result="duplicate") == \
        sent["dup"]
    assert sample(got, "cds_feedback_requests_total", service=SERVICE, status="200") == \
        sent["feedback"] + sent["dup"]
    # the sums span more than one worker process: the first pair and their replacements
    assert len(pids) >= 2 and pids & old and pids - old
