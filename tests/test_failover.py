"""Two instances behind nginx on one PostgreSQL: one is SIGKILLed under load and restarted.

nginx runs ``deploy/nginx/cds-service.conf`` (rendered for 127.0.0.1, TLS with a throw-away
certificate) in front of two ``cds-service serve --workers 2`` instances with authentication
on, sharing the session's throw-away PostgreSQL. Client threads send hook calls and feedback
through nginx, each with a fresh JWT; the test kills instance A (master and workers, SIGKILL),
waits until instance B has answered a number of calls alone, restarts A and waits until A
serves calls through nginx again. Guarantees checked, not timings:

- no feedback acknowledged with 200 is missing from the database, and nothing is stored that
  was not sent; the feedback report, read from the database both instances share, counts it;
- a token used at A is refused by B, and one used at B by the restarted A (the ``jti`` cache
  is in the database, not in a process);
- B keeps answering while A is down, and A serves again after its restart;
- the only failures are nginx's 502/504 for calls A had taken when it died (a POST that was
  sent is never sent again: its JWT is single-use): at most two per client thread (the call
  in flight, and one sent on a connection to A that nginx had not yet seen close); none
  before the kill, none once A serves again.

The figures (requests, failures, time to recover) are printed and written to
``var/test-reports/failover.json``; the README quotes a run. Load is loopback only, bounded in
count and time, and stops by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, select

from cds_service.commands.dev_token import (
    DEV_ISSUER,
    init_issuer,
    load_private_key,
    mint_token,
    public_jwk,
)
from cds_service.replay import build_request, load_bundle, patient_id_of
from tests.conftest import RECORDS
from tests.support.nginx import Nginx, why_unusable
from tests.support.serve import Serve, free_port, sample
from tests.support.services import require_service

pytestmark = pytest.mark.slow

SERVICE = "tma-bone-assessment"
HOOK = f"/cds-services/{SERVICE}"
FEEDBACK = f"{HOOK}/feedback"
RECORD = RECORDS / "om-probable-ptb-esr.json"
THREADS = 4
MAX_REQUESTS = 3000        # per run, all threads together: the load always ends
WARM_UP = 60               # answered calls before the kill
ALONE = 60                 # calls B must answer alone before A is restarted
AFTER = 60                 # calls after A serves again
DEADLINE = 150.0           # seconds for the whole load: stops a stuck run, not a speed target
TIMEOUT = 15.0             # seconds per request
REPORT = Path(__file__).resolve().parent.parent / "var" / "test-reports" / "failover.json"


@dataclass
class Call:
    kind: str              # "hook" or "feedback"
    started: float
    ended: float
    status: int | None     # None: no HTTP answer at all
    card: str | None = None
    error: str | None = None  # the exception's type when there was no answer


class Tokens:
    """Fresh client JWTs of the development issuer, one per request (each ``jti`` used once)."""

    def __init__(self, folder: Path, public: str) -> None:
        self.issuers = init_issuer(folder, [])
        self.key = load_private_key(folder / "issuer-key.pem")
        self.kid = public_jwk(self.key)["kid"]
        self.public = public

    def __call__(self, path: str) -> dict[str, str]:
        token = mint_token(self.key, iss=DEV_ISSUER, aud=self.public + path, kid=self.kid)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def cluster(tmp_path: Path, fresh_postgres_url: str) -> Iterator[dict[str, Any]]:
    require_service("nginx", why_unusable(), "apt-get install nginx-light (as root), or "
                                             "bash tests/support/nginx.sh install")
    nginx_port = free_port()
    public = f"https://127.0.0.1:{nginx_port}"
    tokens = Tokens(tmp_path / "issuer", public)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"CDS_AUTH_REQUIRED": "true", "CDS_TRUSTED_ISSUERS": str(tokens.issuers),
                "CDS_PUBLIC_URL": public, "CDS_DATABASE_URL": fresh_postgres_url,
                "CDS_LOG_FORMAT": "json", "CDS_LOG_HASH_KEY": "failover-test",
                "CDS_FEEDBACK_RATE_LIMIT": "0"})  # one issuer sends the whole load
    a = Serve(tmp_path, env, "a", workers=2).start()
    b = Serve(tmp_path, env, "b", workers=2).start()
    nginx = Nginx(tmp_path / "nginx", nginx_port, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    try:
        a.wait_ready()
        b.wait_ready()
        nginx.start()
        yield {"a": a, "b": b, "nginx": nginx, "tokens": tokens, "db": fresh_postgres_url}
    finally:
        nginx.stop()
        a.stop()
        b.stop()


class Load:
    """THREADS threads calling through nginx until told to stop (or the bounds are reached)."""

    def __init__(self, nginx: Nginx, tokens: Tokens, body: dict[str, Any]) -> None:
        self.nginx, self.tokens, self.body = nginx, tokens, body
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(THREADS)]
        self.ends = time.monotonic() + DEADLINE

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=TIMEOUT + 5)

    def _take(self) -> bool:
        with self.lock:
            if self.stop.is_set() or self.sent >= MAX_REQUESTS or time.monotonic() > self.ends:
                return False
            self.sent += 1
            return True

    def _run(self, n: int) -> None:
        with requests.Session() as session:  # keep-alive; verify per request (a session's own
            # verify loses to REQUESTS_CA_BUNDLE in the environment)
            i = 0
            while self._take():
                i += 1
                card = None
                if i % 2:
                    kind, path, body = "hook", HOOK, {**self.body,
                                                      "hookInstance": str(uuid.uuid4())}
                else:
                    card = f"load-{n}-{i}-{uuid.uuid4().hex[:8]}"
                    kind, path, body = "feedback", FEEDBACK, {"feedback": [
                        {"card": card, "outcome": "overridden",
                         "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}
                started = time.monotonic()
                status: int | None = None
                error = None
                try:
                    status = session.post(self.nginx.base + path, json=body,
                                          headers=self.tokens(path), timeout=TIMEOUT,
                                          verify=str(self.nginx.cert)).status_code
                except requests.RequestException as exc:
                    error = type(exc).__name__
                with self.lock:
                    self.calls.append(Call(kind, started, time.monotonic(), status, card, error))

    def answered_since(self, moment: float) -> int:
        with self.lock:
            return sum(1 for c in self.calls if c.started >= moment and c.status == 200)

    def wait_for(self, count: int, since: float, what: str) -> None:
        while self.answered_since(since) < count:
            if time.monotonic() > self.ends:
                with self.lock:
                    seen = Counter(c.status or c.error for c in self.calls)
                raise AssertionError(f"load deadline passed waiting for {what}: {seen}")
            time.sleep(0.05)


def hooks_served(instance: Serve) -> float:
    try:
        got = instance.metrics()
    except requests.RequestException:
        return 0.0
    return sample(got, "cds_hook_requests_total", service=SERVICE, status="200")


def post_direct(instance: Serve, path: str, headers: dict[str, str], body: Any) -> int:
    return requests.post(instance.base + path, json=body, headers=headers,
                         timeout=TIMEOUT).status_code


def one_item(card: str, outcome: str = "overridden") -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": outcome,
                          "outcomeTimestamp": "2026-03-01T11:00:00Z"}]}


def test_one_instance_killed_under_load_and_restarted(cluster: dict[str, Any]) -> None:
    a, b, nginx, tokens = cluster["a"], cluster["b"], cluster["nginx"], cluster["tokens"]
    resources = [e["resource"] for e in load_bundle(RECORD).get("entry", [])]
    discovery = requests.get(a.base + "/cds-services", timeout=TIMEOUT).json()
    body = build_request(discovery, SERVICE, "patient-view", resources,
                         patient_id_of(resources, RECORD))

    # A token used at A is refused by B; feedback posted at B on a card A issued is reported
    # under that card's kind.
    headers = tokens(FEEDBACK)
    assert post_direct(a, FEEDBACK, headers, one_item(f"replay-{uuid.uuid4()}")) == 200
    assert post_direct(b, FEEDBACK, headers, one_item(f"replay-{uuid.uuid4()}")) == 401
    issued = requests.post(a.base + HOOK, json=body, headers=tokens(HOOK), timeout=TIMEOUT)
    assert issued.status_code == 200
    card = issued.json()["cards"][0]
    wait_until_issued(cluster["db"], card["uuid"])
    assert post_direct(b, FEEDBACK, tokens(FEEDBACK), one_item(card["uuid"])) == 200

    with Load(nginx, tokens, body) as load:
        begun = time.monotonic()
        load.wait_for(WARM_UP, begun, "the warm-up")
        killed = time.monotonic()
        a.kill()
        load.wait_for(ALONE, killed, "B to answer alone")
        assert hooks_served(b) > 0
        restarted = time.monotonic()
        a.start()
        a.wait_ready()
        ready = time.monotonic()
        while hooks_served(a) == 0:  # its counts started from 0 at the restart
            assert time.monotonic() < load.ends, "the restarted instance got no calls"
            time.sleep(0.1)
        serving = time.monotonic()
        load.wait_for(AFTER, serving, "calls after the restart")
    calls = sorted(load.calls, key=lambda c: c.started)

    # the restarted A refuses a token B accepted: the cache outlived A's processes
    headers = tokens(FEEDBACK)
    assert post_direct(b, FEEDBACK, headers, one_item(f"replay-{uuid.uuid4()}")) == 200
    assert post_direct(a, FEEDBACK, headers, one_item(f"replay-{uuid.uuid4()}")) == 401

    failed = [c for c in calls if c.status != 200]
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "requests": len(calls),
        "by_status": dict(Counter(str(c.status or c.error) for c in calls)),
        "failed": len(failed),
        "failed_window_s": [round(failed[0].started - killed, 2),
                            round(failed[-1].ended - killed, 2)] if failed else None,
        "answered_while_a_down": sum(1 for c in calls if killed <= c.started < ready
                                     and c.status == 200),
        "restart_to_ready_s": round(ready - restarted, 2),
        "kill_to_a_serving_again_s": round(serving - killed, 2),
        "load_s": round(calls[-1].ended - begun, 1),
        "requests_per_s": round(len(calls) / (calls[-1].ended - begun), 1),
        "load_avg_1min": round(os.getloadavg()[0], 1),
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(figures, indent=2) + "\n")
    print("failover figures:", json.dumps(figures))  # noqa: T201 (shown with -s or on failure)

    assert {c.status for c in failed} <= {502, 504}, Counter(c.status for c in failed)
    assert not [c for c in failed if c.ended < killed]  # nothing failed before the kill
    assert len(failed) <= 2 * THREADS
    assert not [c for c in calls if c.started >= serving and c.status != 200]

    # acknowledged feedback is all there, and nothing that was not sent
    sent = {c.card for c in calls if c.kind == "feedback"}
    acknowledged = {c.card for c in calls if c.kind == "feedback" and c.status == 200}
    stored = stored_cards(cluster["db"])
    assert acknowledged <= stored
    assert {s for s in stored if s.startswith("load-")} <= sent
    report = feedback_report(cluster["db"])
    overridden = {row["kind"]: row["overridden"] for row in report["rows"]}
    assert overridden.get(card["extension"]["tma-card"]["kind"]) == 1
    assert sum(overridden.values()) == len(stored)


def wait_until_issued(db_url: str, card: str, timeout: float = 15.0) -> None:
    """Issued cards are written in the background (0.25 s batches): wait for this one."""
    from cds_service.feedback.store import issued_cards

    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as conn:
                if conn.execute(select(issued_cards.c.uuid)
                                .where(issued_cards.c.uuid == card)).first():
                    return
            assert time.monotonic() < deadline, "the issued card was never written"
            time.sleep(0.1)
    finally:
        engine.dispose()


def stored_cards(db_url: str) -> set[str]:
    from cds_service.feedback.store import feedback

    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(feedback.c.card_uuid)).scalars())
    finally:
        engine.dispose()


def feedback_report(db_url: str) -> dict[str, Any]:
    """``cds-service feedback-report --format json`` on the shared database."""
    cli = Path(sys.executable).parent / "cds-service"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_DATABASE_URL"] = db_url
    done = subprocess.run([str(cli), "feedback-report", "--format", "json"], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]
