"""The evidence-timeline SMART app end to end (issue 15): the service on 127.0.0.1, a loopback
SMART EHR (Authlib authorisation server, tests/support/smart_server.py) in front of the real
FHIR server (sekmet), and Debian's Chromium through the shared browser fixture.

Expected values come from the fixture records (fixtures/README.md) and the contract
(issue 15 "Contract details the checks rely on"), not from the app's output.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from benchmarks.data import PATIENT_ID as TYPICAL_PATIENT
from benchmarks.data import typical_resources
from cds_service.app import create_app
from tests.integration.test_real_fhir_server import Record, namespaced, transaction
from tests.support.browser import open_page
from tests.support.smart_server import SmartServer, free_port

pytestmark = pytest.mark.integration
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # access lines carry launch URLs

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "var" / "test-screenshots"
RECORD_TIME = datetime(2026, 11, 20, 10, tzinfo=UTC)
READ_TYPES = ("Patient", "Condition", "Procedure", "Observation", "DiagnosticReport",
              "ImagingStudy", "MedicationRequest")


class Clock:
    def __init__(self) -> None:
        self.now = RECORD_TIME

    def __call__(self) -> datetime:
        return self.now


class Service:
    """The CDS service with the app on, served by werkzeug on a free loopback port."""

    def __init__(self, smart: SmartServer, port: int, db: Path, clock: Clock, **extra: Any):
        self.base = f"http://127.0.0.1:{port}"
        config = {"auth_required": False, "fhir_server_allowlist": (smart.iss,),
                  "database_url": f"sqlite:///{db}", "public_url": self.base,
                  "smart_client_id": "tma-timeline", "fhir_timeout": 5.0, **extra}
        self.app = create_app(config, clock=clock)
        self._server = make_server("127.0.0.1", port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def records(fhir_server: Any) -> dict[str, str]:
    """Patient ids on the FHIR server: three fixture records, TYPICAL, one without amputation."""
    out = {}
    for name in ("om-probable-ptb-esr", "ho-mature-nsaid-gates-pass", "too-early-day-9"):
        record = Record(name)
        fhir_server.transaction(transaction(record.stored))
        out[name] = record.patient_id
    typical = namespaced(typical_resources(RECORD_TIME), "smart-typical")
    fhir_server.transaction(transaction(typical))
    out["typical"] = TYPICAL_PATIENT
    fhir_server.transaction(transaction([{"resourceType": "Patient", "id": "smart-no-amp"}]))
    out["no-amputation"] = "smart-no-amp"
    return out


@pytest.fixture(scope="module")
def env(fhir_server: Any, records: dict[str, str], tmp_path_factory: Any) -> Any:
    port = free_port()
    smart = SmartServer(fhir_server.base, fhir_server.token,
                        f"http://127.0.0.1:{port}/app/callback").start()
    clock = Clock()
    service = Service(smart, port, tmp_path_factory.mktemp("smart") / "app.db", clock)
    yield service, smart, clock
    service.stop()
    smart.stop()


def _launch(service: Service, smart: SmartServer, patient: str, iss: str | None = None
            ) -> tuple[requests.Session, requests.Response]:
    browser_like = requests.Session()
    launch = smart.new_launch(patient)
    answer = browser_like.get(f"{service.base}/app/launch",
                              params={"iss": iss or smart.iss, "launch": launch},
                              allow_redirects=False, timeout=10)
    return browser_like, answer


def _authorise(browser_like: requests.Session, location: str) -> requests.Response:
    """The EHR's authorisation step; returns its redirect back to the app's callback."""
    answer = browser_like.get(location, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:300]
    return answer


def _short_page(answer: requests.Response, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["Content-Type"].startswith("text/html")
    assert words in answer.text
    assert "Traceback" not in answer.text and "File \"" not in answer.text
    assert len(answer.text) < 8000


def test_launch_contract_exchange_once_and_bearer_reads(env: Any, records: dict[str, str]):
    service, smart, _ = env
    patient = records["om-probable-ptb-esr"]
    browser_like, answer = _launch(service, smart, patient, iss=smart.iss + "/")  # "/" ignored
    assert answer.status_code in (302, 303, 307)
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{smart.base}/auth/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["response_type"] == "code" and query["client_id"] == "tma-timeline"
    assert query["redirect_uri"] == f"{service.base}/app/callback"
    assert query["aud"] == smart.iss
    assert query["code_challenge_method"] == "S256" and query["state"]
    scopes = set(query["scope"].split())
    assert {"launch", "openid", "fhirUser"} <= scopes
    assert {s for s in scopes if s.startswith("patient/")} == {f"patient/{t}.rs"
                                                               for t in READ_TYPES}
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/app/" in cookie
    assert "Secure" not in cookie  # http public URL; https sets it (unit test)

    back = _authorise(browser_like, answer.headers["Location"])
    token_calls = len(smart.token_calls)
    callback = browser_like.get(back.headers["Location"], allow_redirects=False, timeout=10)
    assert callback.status_code == 303 and callback.headers["Location"] == "/app/timeline"
    call = smart.token_calls[-1]
    assert len(smart.token_calls) == token_calls + 1
    assert call["content_type"] == "application/x-www-form-urlencoded"
    assert call["form"]["client_id"] == "tma-timeline" and call["authorization"] is None
    verifier = call["form"]["code_verifier"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge.decode() == query["code_challenge"]
    token = next(t for t, p in smart.tokens.items() if p == patient)
    assert token not in callback.headers.get("Set-Cookie", "")

    reads_before = len(smart.fhir_calls)
    page = browser_like.get(f"{service.base}/app/timeline", timeout=20)
    assert page.status_code == 200 and "Left TMA, day 42" in page.text
    reads = smart.fhir_calls[reads_before:]
    assert {p.split("?")[0].split("/")[0] for p, _ in reads} == set(READ_TYPES)
    assert all(auth == f"Bearer {token}" for _, auth in reads)
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'none'" in policy and "unsafe-inline" not in policy
    assert page.headers["Cache-Control"] == "no-store"
    assert token not in page.text

    # The same callback again (a replayed code): refused, and no second exchange.
    again = browser_like.get(back.headers["Location"], allow_redirects=False, timeout=10)
    assert again.status_code in (400, 401)
    assert len(smart.token_calls) == token_calls + 1


def test_other_iss_gets_400_and_no_request(env: Any, records: dict[str, str]):
    service, smart, _ = env
    before = (len(smart.authorize_calls), len(smart.fhir_calls))
    for iss in (smart.iss + "x", smart.base, "http://127.0.0.2:1/fhir"):
        _, answer = _launch(service, smart, records["om-probable-ptb-esr"], iss=iss)
        _short_page(answer, 400, "not one this service may contact")
        assert "Set-Cookie" not in answer.headers
    assert (len(smart.authorize_calls), len(smart.fhir_calls)) == before


def test_confidential_client_uses_basic_auth(env: Any, records: dict[str, str],
                                              tmp_path: Path):
    _, smart, clock = env
    port = free_port()
    smart.redirect_uri = f"http://127.0.0.1:{port}/app/callback"
    smart.clients["tma-timeline-conf"].redirect_uri = smart.redirect_uri
    service = Service(smart, port, tmp_path / "conf.db", clock,
                      smart_client_id="tma-timeline-conf",
                      smart_client_secret="conf-secret")  # noqa: S106 (test client)
    try:
        browser_like, answer = _launch(service, smart, records["ho-mature-nsaid-gates-pass"])
        back = _authorise(browser_like, answer.headers["Location"])
        callback = browser_like.get(back.headers["Location"], allow_redirects=False, timeout=10)
        assert callback.status_code == 303
        call = smart.token_calls[-1]
        expected = base64.b64encode(b"tma-timeline-conf:conf-secret").decode()
        assert call["authorization"] == f"Basic {expected}"
        assert "client_secret" not in call["form"]
    finally:
        service.stop()


def _authorised(service: Service, smart: SmartServer, patient: str) -> requests.Session:
    browser_like, answer = _launch(service, smart, patient)
    back = _authorise(browser_like, answer.headers["Location"])
    assert browser_like.get(back.headers["Location"], allow_redirects=False,
                            timeout=10).status_code == 303
    return browser_like


def test_bad_input_pages(env: Any, records: dict[str, str], caplog: pytest.LogCaptureFixture,
                         tmp_path: Path):
    service, smart, clock = env
    caplog.set_level(logging.INFO, logger="cds_service")
    patient = records["om-probable-ptb-esr"]
    # Wrong state.
    browser_like, answer = _launch(service, smart, patient)
    back = _authorise(browser_like, answer.headers["Location"])
    forged = re.sub(r"state=[^&]+", "state=forged", back.headers["Location"])
    _short_page(browser_like.get(forged, allow_redirects=False, timeout=10), 400,
                "does not belong to this browser")
    # A token error from the EHR (the code is not one it issued).
    browser_like, answer = _launch(service, smart, patient)
    back = _authorise(browser_like, answer.headers["Location"])
    bad_code = re.sub(r"code=[^&]+", "code=not-a-code", back.headers["Location"])
    _short_page(browser_like.get(bad_code, allow_redirects=False, timeout=10), 502,
                "refused the authorisation code (invalid_grant)")
    # The EHR refuses the authorisation.
    smart.deny = True
    try:
        browser_like, answer = _launch(service, smart, patient)
        back = _authorise(browser_like, answer.headers["Location"])
        _short_page(browser_like.get(back.headers["Location"], timeout=10), 403,
                    "did not authorise the app (access_denied)")
    finally:
        smart.deny = False
    # No session cookie at all, and a session whose token has expired.
    _short_page(requests.get(f"{service.base}/app/timeline", timeout=10), 401, "expired")
    browser_like = _authorised(service, smart, patient)
    clock.now = RECORD_TIME + timedelta(seconds=smart.expires_in + 1)
    try:
        _short_page(browser_like.get(f"{service.base}/app/timeline", timeout=10), 401,
                    "Session expired")
    finally:
        clock.now = RECORD_TIME
    # A failing and a slow FHIR server: a short page, nothing of the record.
    browser_like = _authorised(service, smart, patient)
    smart.fail_fhir = "Observation"
    try:
        page = browser_like.get(f"{service.base}/app/timeline", timeout=10)
        _short_page(page, 502, "observations: FHIR server answered HTTP 500")
    finally:
        smart.fail_fhir = None
    # A slow one, with a service whose request timeout is 0.5 s (the budget: twice that).
    port = free_port()
    smart.redirect_uri = f"http://127.0.0.1:{port}/app/callback"
    smart.clients["tma-timeline"].redirect_uri = smart.redirect_uri
    hurried = Service(smart, port, tmp_path / "slow.db", clock, fhir_timeout=0.5)
    try:
        browser_like = _authorised(hurried, smart, patient)
        smart.stall_fhir = 0.8
        started = time.monotonic()
        page = browser_like.get(f"{hurried.base}/app/timeline", timeout=10)
        _short_page(page, 502, "could not be read")
        assert time.monotonic() - started < 1.0 + 1.0
    finally:
        smart.stall_fhir = 0.0
        hurried.stop()
        smart.redirect_uri = f"{service.base}/app/callback"
        smart.clients["tma-timeline"].redirect_uri = smart.redirect_uri
    assert "Periosteal" not in page.text and patient not in page.text
    # No index amputation.
    browser_like = _authorised(service, smart, records["no-amputation"])
    _short_page(browser_like.get(f"{service.base}/app/timeline", timeout=10), 200,
                "No partial-foot amputation on record")
    # No token and no patient id reached the log.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for token, who in smart.tokens.items():
        assert token not in logged and who not in logged


def _drawn(page: Any) -> dict[str, Any]:
    return page.evaluate("""() => ({
        points: Object.fromEntries([...document.querySelectorAll('g.panel')].map(
            g => [g.dataset.concept, g.querySelectorAll('.dot').length])),
        thresholds: document.querySelectorAll('line.th-line').length,
        markers: document.querySelectorAll('a.ev').length,
        shaded: document.querySelectorAll('g.early').length,
        tiers: [...document.querySelectorAll('p.tier')].map(p => p.textContent.trim()),
        local: JSON.stringify(Object.assign({}, localStorage)),
        session: JSON.stringify(Object.assign({}, sessionStorage)),
        scripts: document.scripts.length,
    })""")


CASES = {  # record -> (points per series, event markers, tier lines), from fixtures/README.md
    "om-probable-ptb-esr": ({"esr": 1, "crp": 0, "wbc": 0, "alkaline-phosphatase": 0}, 2,
                            ["Osteomyelitis: probable (OM-2)",
                             "Heterotopic ossification: present (HO-1)"]),
    "ho-mature-nsaid-gates-pass": (None, None, ["Osteomyelitis: not supported (OM-6)",
                                                "Heterotopic ossification: mature (HO-5)"]),
    "too-early-day-9": (None, None, ["Osteomyelitis: indeterminate (S-2)"]),
}


def test_whole_launch_in_chromium(env: Any, records: dict[str, str], browser: Any):
    service, smart, _ = env
    SHOTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    for name in (*CASES, "typical"):
        width = 900 if name == "too-early-day-9" else 1280
        page, outside = open_page(browser, width=width, height=800)
        urls: list[str] = []
        page.on("request", lambda r, urls=urls: urls.append(r.url))
        stamps: dict[str, float] = {}
        page.on("request", lambda r, s=stamps: s.setdefault("callback", time.monotonic())
                if "/app/callback" in r.url else None)
        launch = smart.new_launch(records[name])
        page.goto(f"{service.base}/app/launch?iss={smart.iss}&launch={launch}")
        page.wait_for_load_state("load")
        timings[name] = time.monotonic() - stamps["callback"]
        assert page.url == f"{service.base}/app/timeline"
        assert "Evidence timeline" in page.title(), page.content()[:600]
        drawn = _drawn(page)
        token = next(t for t, p in smart.tokens.items() if p == records[name])
        cookies = page.context.cookies()
        assert [c["name"] for c in cookies] == ["tma_app_session"]
        assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Lax"
        assert token not in cookies[0]["value"] and len(cookies[0]["value"]) >= 40
        for place in (page.content(), " ".join(urls), drawn["local"], drawn["session"]):
            assert token not in place
        assert drawn["scripts"] == 0 and outside == []
        assert drawn["thresholds"] == 4 and drawn["shaded"] == 1
        points, markers, tiers = CASES.get(name, (None, None, []))
        if points is not None:
            assert drawn["points"] == points
        if markers is not None:
            assert drawn["markers"] == markers
        for tier in tiers:
            assert tier in drawn["tiers"]
        if name == "typical":  # ~120 labs over 2 years: ESR, CRP, WBC, ALP since day -30 drawn
            assert all(n > 0 for n in drawn["points"].values())
        page.screenshot(path=str(SHOTS / f"timeline-{name}-{width}.png"))
        page.keyboard.press("Tab")  # the first marker takes keyboard focus and shows its tip
        assert page.evaluate("document.activeElement.classList.contains('ev')")
        page.screenshot(path=str(SHOTS / f"timeline-{name}-{width}-focus.png"))
        page.context.close()
    (SHOTS / "timings.txt").write_text("".join(
        f"{name}: {seconds * 1000:.0f} ms from the callback request to the page's load event\n"
        for name, seconds in timings.items()))
    print(f"\nscreenshots and timings in {SHOTS}: " + ", ".join(  # noqa: T201
        f"{n} {s * 1000:.0f} ms" for n, s in timings.items()))
