"""Feedback against a real server: `cds-service serve` with 2 worker processes on one SQLite file.

8 threads post 100 distinct items each, plus exact duplicates of their own posts and 20 items
that every thread posts (so the same item races in from both workers). Every post must be
answered 200, and after a stop (SIGTERM) the database must hold each item exactly once; after a
restart everything is still there and the report agrees with what was posted.
Only 127.0.0.1 is contacted; every request has a timeout and the whole test a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cds_service.commands import feedback_report
from tests.support.serve import Serve

pytestmark = pytest.mark.slow

SERVICE = "tma-bone-assessment"
THREADS = 8
PER_THREAD = 100
SHARED = 20
REASONS = ("not-relevant", "already-done", "patient-declined")
DEADLINE = 180.0  # seconds: a bound that stops a stuck run, not a speed target (make bench)
TIMEOUT = 10.0   # seconds per request


class Server(Serve):
    """``cds-service serve --workers 2 --threads 4`` (tests/support/serve.py) on one SQLite
    file, with authentication off."""

    def __init__(self, db: Path, workdir: Path) -> None:
        env = {**os.environ, "CDS_AUTH_REQUIRED": "false", "CDS_DATABASE_URL":
               f"sqlite:///{db}", "CDS_LOG_FORMAT": "json"}
        super().__init__(workdir, env, "feedback")
        self.db = db

    def start(self) -> Serve:
        super().start()
        self.wait_ready()
        return self

    def stop(self) -> bool:
        if not super().stop():
            raise AssertionError("gunicorn did not stop within 15 s of SIGTERM")
        return True

    def log_tail(self) -> str:
        return self.tail()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "fb.db", tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def feedback_item(card: str, n: int) -> dict[str, Any]:
    """Item ``n``: every third accepted; the others overridden, some with a reason or comment."""
    stamp = f"2026-03-01T10:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z"
    if n % 3 == 0:
        return {"card": card, "outcome": "accepted", "outcomeTimestamp": stamp,
                "acceptedSuggestions": [{"id": f"{card}-s"}]}
    body: dict[str, Any] = {"card": card, "outcome": "overridden", "outcomeTimestamp": stamp}
    if n % 3 == 1:
        body["overrideReason"] = {"reason": {"code": REASONS[n % len(REASONS)]}}
        if n % 5 == 0:
            body["overrideReason"]["userComment"] = "discussed with ID team"
    return body


def expected_counts(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "accepted": sum(1 for i in items if i["outcome"] == "accepted"),
        "overridden": sum(1 for i in items if i["outcome"] == "overridden"),
        "comments": sum(1 for i in items if i.get("overrideReason", {}).get("userComment")),
        "reasons": Counter(i["overrideReason"]["reason"]["code"] for i in items
                           if "reason" in i.get("overrideReason", {})),
    }


def db_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(
            "SELECT card_uuid, outcome, outcome_timestamp, known FROM feedback").fetchall()


def test_two_workers_store_every_post_exactly_once(server: Server, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    server.start()
    url = f"{server.base}/cds-services/{SERVICE}/feedback"
    shared = [feedback_item(f"shared-{i}", 10_000 + i) for i in range(SHARED)]
    own = {t: [feedback_item(f"card-{t}-{i}", t * PER_THREAD + i) for i in range(PER_THREAD)]
           for t in range(THREADS)}
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        bodies: list[dict[str, Any]] = []
        for i, it in enumerate(own[t]):
            bodies.append({"feedback": [it]})
            if i % 10 == 9:  # an exact duplicate of a post this thread made
                bodies.append({"feedback": [own[t][i - 5]]})
            if i % 5 == 0:  # the shared items, in a different order in each thread
                bodies.append({"feedback": [shared[(i // 5 + t) % SHARED]]})
        with requests.Session() as session:
            for body in bodies:
                if time.monotonic() - started > DEADLINE:
                    with lock:
                        failures.append(f"thread {t}: deadline reached")
                    return
                try:
                    status = session.post(url, json=body, timeout=TIMEOUT).status_code
                except requests.RequestException as exc:
                    with lock:
                        failures.append(f"thread {t}: {type(exc).__name__}")
                    continue
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(DEADLINE)
    assert failures == [], failures[:5]
    posts = THREADS * (PER_THREAD + PER_THREAD // 10 + PER_THREAD // 5)
    assert statuses == {200: posts}, (statuses, server.log_tail())
    server.stop()

    everything = [it for items in own.values() for it in items] + shared
    rows = db_rows(server.db)
    assert len(rows) == THREADS * PER_THREAD + SHARED
    assert len({(r[0], r[1], r[2]) for r in rows}) == len(rows)
    assert {r[0] for r in rows} == {it["card"] for it in everything}
    assert all(r[3] == 0 for r in rows)  # no hook call issued these uuids

    # A restart keeps everything, and takes new posts (and repeats) as before.
    server.start()
    extra = feedback_item("after-restart", 3)  # accepted
    for body in ({"feedback": [extra]}, {"feedback": [own[0][0]]}):
        assert requests.post(url, json=body, timeout=TIMEOUT).status_code == 200
    server.stop()
    everything.append(extra)
    assert len(db_rows(server.db)) == THREADS * PER_THREAD + SHARED + 1

    # The report (the command, reading CDS_DATABASE_URL) agrees with what was posted.
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{server.db}")
    parser = argparse.ArgumentParser(prog="cds-service")
    feedback_report.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["feedback-report", "--format", "json"])
    assert args.run(args) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    want = expected_counts(everything)
    assert (row["service"], row["kind"], row["issued"]) == (SERVICE, "unknown", 0)
    assert (row["accepted"], row["overridden"], row["comments"]) == (
        want["accepted"], want["overridden"], want["comments"])
    assert row["acceptanceRate"] == pytest.approx(
        want["accepted"] / (want["accepted"] + want["overridden"]))
    assert {r["reason"]: r["count"] for r in row["topOverrideReasons"]} == dict(want["reasons"])


def test_issued_cards_survive_a_normal_stop_and_join_feedback(server: Server) -> None:
    """Cards issued through both workers are written (the queue is flushed on SIGTERM), and
    feedback about them is reported under their kind, not "unknown"."""
    from cds_service import replay

    record = Path(__file__).resolve().parent.parent / "fixtures" / "records" / \
        "om-probable-ptb-esr.json"
    bundle = replay.load_bundle(record)
    resources = [e["resource"] for e in bundle.get("entry", [])]
    server.start()
    discovery = requests.get(f"{server.base}/cds-services", timeout=TIMEOUT).json()
    request = replay.build_request(discovery, SERVICE, "patient-view", resources,
                                   replay.patient_id_of(resources, record))
    issued: dict[str, str] = {}
    with requests.Session() as session:
        for _ in range(20):
            response = session.post(f"{server.base}/cds-services/{SERVICE}", json=request,
                                    timeout=TIMEOUT)
            assert response.status_code == 200
            for card in response.json()["cards"]:
                if card.get("uuid"):
                    issued[card["uuid"]] = card.get("extension", {}).get("tma-card", {}).get(
                        "kind", "unknown")
    if not issued:
        pytest.skip("the service returned no cards with a uuid for this record")
    server.stop()  # SIGTERM right after the last answer: queued rows must still be written
    with sqlite3.connect(server.db, timeout=10) as conn:
        rows = dict(conn.execute("SELECT uuid, kind FROM issued_cards").fetchall())
    assert rows == issued

    server.start()
    card, kind = next(iter(issued.items()))
    body = {"feedback": [{"card": card, "outcome": "overridden",
                          "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}
    url = f"{server.base}/cds-services/{SERVICE}/feedback"
    assert requests.post(url, json=body, timeout=TIMEOUT).status_code == 200
    server.stop()
    with sqlite3.connect(server.db, timeout=10) as conn:
        assert conn.execute("SELECT known FROM feedback").fetchall() == [(1,)]
    from cds_service.feedback.store import FeedbackStore

    store = FeedbackStore(f"sqlite:///{server.db}", background=False)
    try:
        report = {r.kind: r for r in store.report()}
    finally:
        store.close()
    assert report[kind].overridden == 1 and "unknown" not in report
