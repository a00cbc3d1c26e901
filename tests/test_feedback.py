"""Tests for feedback: payload validation, the endpoint, the store and the report.

``StoreTests`` run against SQLite here and against a real PostgreSQL server in
``test_feedback_postgres.py`` (which overrides the ``make_store`` fixture).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from cds_service import web
from cds_service.config import load_settings
from cds_service.errors import ConfigError, RequestInvalid, StartupError
from cds_service.feedback.model import FeedbackItem, OverrideReason, parse_feedback
from cds_service.feedback.store import (
    SCHEMA_VERSION,
    FeedbackStore,
    card_row,
    feedback,
    issued_cards,
    schema_version,
)
from cds_service.hooks import HookService, Registry
from cds_service.runtime import Runtime

SERVICE = "tma-bone-assessment"
STAMP = "2026-03-01T10:00:00.52Z"


def item(card: str = "card-1", outcome: str = "accepted", **extra: Any) -> dict[str, Any]:
    """A valid feedback item; keyword arguments add or replace fields (None removes one)."""
    body: dict[str, Any] = {"card": card, "outcome": outcome, "outcomeTimestamp": STAMP}
    if outcome == "accepted":
        body["acceptedSuggestions"] = [{"id": "sugg-1"}]
    for key, value in extra.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def assessment_card(uuid: str, kind: str = "assessment") -> dict[str, Any]:
    return {
        "uuid": uuid,
        "summary": "Osteomyelitis probable (left foot) for Jane Doe",
        "indicator": "warning",
        "source": {"label": "TMA bone rules"},
        "suggestions": [{"uuid": f"{uuid}-s1", "label": "Order MRI"}],
        "extension": {
            "tma-bone-assessment": {"osteomyelitis": "probable", "rules": ["OM-2", "HO-1"],
                                    "flags": ["ho-ulcer-coexistence"], "side": "left"},
            "tma-card": {"kind": kind, "rules": [] if kind == "assessment" else ["T-MRI"]},
        },
    }


def parsed(*items: dict[str, Any]) -> list[FeedbackItem]:
    return parse_feedback({"feedback": list(items)})


# ===== The payload =============================================================================


def test_valid_accepted() -> None:
    (got,) = parsed(item())
    assert got == FeedbackItem(card="card-1", outcome="accepted",
                               outcome_timestamp=datetime(2026, 3, 1, 10, 0, 0, 520000, UTC),
                               accepted_suggestions=("sugg-1",))


def test_valid_overridden_with_and_without_reason() -> None:
    """The sandbox sends a reason with only ``code``; a dismissal may carry no reason at all."""
    with_reason, bare = parsed(
        item(outcome="overridden", overrideReason={"reason": {"code": "not-relevant"}}),
        item(card="card-2", outcome="overridden"),
    )
    assert with_reason.override_reason == OverrideReason(code="not-relevant")
    assert bare.override_reason is None and bare.accepted_suggestions == ()


def test_valid_user_comment_only() -> None:
    (got,) = parsed(item(outcome="overridden", overrideReason={"userComment": "seen already"}))
    assert got.override_reason == OverrideReason(comment="seen already")


def test_valid_several_items_keep_their_order() -> None:
    got = parsed(*(item(card=f"card-{i}") for i in range(5)))
    assert [g.card for g in got] == [f"card-{i}" for i in range(5)]


@pytest.mark.parametrize(("stamp", "expected"), (
    ("1985-04-12T23:20:50.52Z", datetime(1985, 4, 12, 23, 20, 50, 520000, UTC)),
    ("1996-12-19T16:39:57-08:00", datetime(1996, 12, 20, 0, 39, 57, tzinfo=UTC)),
    ("2026-03-01t10:00:00z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
    ("2026-03-01T10:00:00.123456789+00:00", datetime(2026, 3, 1, 10, 0, 0, 123456, UTC)),
    ("1990-12-31T23:59:60Z", datetime(1991, 1, 1, tzinfo=UTC)),  # leap second
))
def test_timestamps_are_normalised_to_utc(stamp: str, expected: datetime) -> None:
    (got,) = parsed(item(outcomeTimestamp=stamp))
    assert got.outcome_timestamp == expected


def test_null_optional_fields_are_absent_and_unknown_fields_ignored() -> None:
    (got,) = parsed(item(outcome="overridden", overrideReason={
        "reason": {"code": "x", "system": None, "display": None}, "userComment": None},
        acceptedSuggestions=None, extension={"x": 1}))
    assert got.override_reason == OverrideReason(code="x")


INVALID = (
    # (body, where)
    ([], "body"),
    ({}, "feedback"),
    ({"feedback": {}}, "feedback"),
    ({"feedback": []}, "feedback"),
    ({"feedback": ["card-1"]}, "feedback[0]"),
    ({"feedback": [item(card=None)]}, "feedback[0].card"),
    ({"feedback": [item(card="")]}, "feedback[0].card"),
    ({"feedback": [item(card=7)]}, "feedback[0].card"),
    ({"feedback": [item(card="x" * 257)]}, "feedback[0].card"),
    ({"feedback": [item(card="a\x00b")]}, "feedback[0].card"),
    ({"feedback": [item(card="\ud800")]}, "feedback[0].card"),
    ({"feedback": [item(outcome=None)]}, "feedback[0].outcome"),
    ({"feedback": [item(outcome="dismissed")]}, "feedback[0].outcome"),
    ({"feedback": [item(acceptedSuggestions=None)]}, "feedback[0].acceptedSuggestions"),
    ({"feedback": [item(acceptedSuggestions=[])]}, "feedback[0].acceptedSuggestions"),
    ({"feedback": [item(acceptedSuggestions={"id": "s"})]}, "feedback[0].acceptedSuggestions"),
    ({"feedback": [item(acceptedSuggestions=["s"])]}, "feedback[0].acceptedSuggestions[0]"),
    ({"feedback": [item(acceptedSuggestions=[{"id": "s"}, {}])]},
     "feedback[0].acceptedSuggestions[1].id"),
    ({"feedback": [item(outcome="overridden", overrideReason="no")]},
     "feedback[0].overrideReason"),
    ({"feedback": [item(outcome="overridden", overrideReason={})]},
     "feedback[0].overrideReason"),
    ({"feedback": [item(outcome="overridden", overrideReason={"reason": "not-relevant"})]},
     "feedback[0].overrideReason.reason"),
    ({"feedback": [item(outcome="overridden", overrideReason={"reason": {"system": "s"}})]},
     "feedback[0].overrideReason.reason.code"),
    ({"feedback": [item(outcome="overridden",
                        overrideReason={"reason": {"code": "c", "display": 3}})]},
     "feedback[0].overrideReason.reason.display"),
    ({"feedback": [item(outcome="overridden", overrideReason={"userComment": ["x"]})]},
     "feedback[0].overrideReason.userComment"),
    ({"feedback": [item(outcome="overridden", overrideReason={"userComment": "x" * 10_001})]},
     "feedback[0].overrideReason.userComment"),
    ({"feedback": [item(outcomeTimestamp=None)]}, "feedback[0].outcomeTimestamp"),
    ({"feedback": [item(outcomeTimestamp=1711900000)]}, "feedback[0].outcomeTimestamp"),
    ({"feedback": [item(outcomeTimestamp="2026-03-01")]}, "feedback[0].outcomeTimestamp"),
    ({"feedback": [item(outcomeTimestamp="2026-03-01T10:00:00")]},
     "feedback[0].outcomeTimestamp"),
    ({"feedback": [item(outcomeTimestamp="2026-02-30T10:00:00Z")]},
     "feedback[0].outcomeTimestamp"),
    ({"feedback": [item(outcomeTimestamp="2026-03-01 10:00:00Z")]},
     "feedback[0].outcomeTimestamp"),
    ({"feedback": [item(outcomeTimestamp="9999-12-31T23:59:59-01:00")]},
     "feedback[0].outcomeTimestamp"),
    ({"feedback": [item(), item(card="b"), item(card="c", outcomeTimestamp="yesterday")]},
     "feedback[2].outcomeTimestamp"),
)


@pytest.mark.parametrize(("body", "where"), INVALID)
def test_invalid_payloads_name_the_field(body: Any, where: str) -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_feedback(body)
    assert caught.value.where == where
    message = caught.value.message
    assert message.startswith(where.split("[")[0]) or message.startswith("request body")
    assert "\n" not in message and len(message) < 200


# ===== The store (SQLite here; PostgreSQL in test_feedback_postgres.py) =========================


@pytest.fixture
def make_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Open stores on one SQLite file (opening again = a restart); all closed afterwards."""
    opened: list[FeedbackStore] = []

    def make(**kwargs: Any) -> FeedbackStore:
        kwargs.setdefault("background", False)
        store = FeedbackStore(f"sqlite:///{tmp_path}/fb.db", **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def count(store: FeedbackStore, table: Any, *where: Any) -> int:
    from sqlalchemy import func

    with store._engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())


class StoreTests:
    """Behaviour every backend must show."""

    def test_duplicates_are_stored_once(self, make_store: Any) -> None:
        store = make_store()
        items = parsed(item(), item(card="card-2", outcome="overridden"))
        first = store.store_feedback(SERVICE, items)
        again = store.store_feedback(SERVICE, items + parsed(item(card="card-3")))
        assert (first.stored, first.duplicates) == (2, 0)
        assert (again.stored, again.duplicates) == (1, 2)
        assert count(store, feedback) == 3

    def test_same_instant_with_another_offset_is_a_duplicate(self, make_store: Any) -> None:
        store = make_store()
        store.store_feedback(SERVICE, parsed(item(outcomeTimestamp="2026-03-01T10:00:00Z")))
        result = store.store_feedback(
            SERVICE, parsed(item(outcomeTimestamp="2026-03-01T11:00:00.000+01:00")))
        assert result.duplicates == 1 and count(store, feedback) == 1

    def test_another_outcome_or_time_for_the_same_card_is_kept(self, make_store: Any) -> None:
        store = make_store()
        store.store_feedback(SERVICE, parsed(
            item(), item(outcome="overridden"), item(outcomeTimestamp="2026-03-01T10:00:01Z")))
        assert count(store, feedback) == 3

    def test_unknown_card_is_stored_and_marked_unknown(self, make_store: Any) -> None:
        store = make_store()
        store.record_cards(SERVICE, [assessment_card("issued-1")])
        result = store.store_feedback(SERVICE, parsed(item(card="issued-1"),
                                                      item(card="never-issued")))
        assert (result.stored, result.unknown) == (2, 1)
        with store._engine.connect() as conn:
            known = dict(conn.execute(select(feedback.c.card_uuid, feedback.c.known)).all())
        assert known == {"issued-1": True, "never-issued": False}

    def test_feedback_row_keeps_what_was_said(self, make_store: Any) -> None:
        store = make_store()
        store.store_feedback(SERVICE, parsed(item(outcome="overridden", overrideReason={
            "reason": {"code": "nr", "system": "http://example.org/r", "display": "Not relevant"},
            "userComment": "Seen by ID already"})))
        with store._engine.connect() as conn:
            row = conn.execute(select(feedback)).one()._mapping
        assert row["service_id"] == SERVICE
        assert row["outcome_timestamp"] == datetime(2026, 3, 1, 10, 0, 0, 520000, UTC)
        assert (row["override_code"], row["override_system"], row["override_display"]) == (
            "nr", "http://example.org/r", "Not relevant")
        assert row["has_comment"] is True and row["user_comment"] == "Seen by ID already"

    def test_issued_cards_hold_kind_rules_and_no_patient_data(self, make_store: Any) -> None:
        store = make_store()
        store.record_cards(SERVICE, [
            assessment_card("a-1"),
            assessment_card("n-1", kind="next-tests"),
            {"summary": "no uuid: nobody can give feedback on it"},
            {"uuid": "bare", "summary": "no extension", "indicator": "info"},
        ])
        with store._engine.connect() as conn:
            rows = {r.uuid: r._mapping for r in conn.execute(select(issued_cards))}
        assert set(rows) == {"a-1", "n-1", "bare"}
        assert (rows["a-1"]["kind"], rows["a-1"]["rules"]) == ("assessment", "OM-2,HO-1")
        assert (rows["n-1"]["kind"], rows["n-1"]["rules"]) == ("next-tests", "T-MRI")
        assert rows["a-1"]["suggestion_uuids"] == "a-1-s1"
        assert rows["a-1"]["indicator"] == "warning"
        assert (rows["bare"]["kind"], rows["bare"]["rules"]) == ("unknown", "")
        stored = json.dumps([dict(r) for r in rows.values()], default=str)
        assert "Jane" not in stored and "left" not in stored

    def test_record_cards_never_raises(self, make_store: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        store = make_store()

        def broken(rows: Any) -> None:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))

        monkeypatch.setattr(store, "_write_cards", broken)
        store.record_cards(SERVICE, [assessment_card("y"), "not a card"])  # type: ignore[list-item]
        assert count(store, issued_cards) == 0

    def test_background_writer_is_flushed_on_close(self, make_store: Any) -> None:
        store = make_store(background=True)
        for i in range(50):
            store.record_cards(SERVICE, [assessment_card(f"bg-{i}")])
        store.close()
        assert count(make_store(), issued_cards) == 50

    def test_background_writer_flush(self, make_store: Any) -> None:
        store = make_store(background=True)
        store.record_cards(SERVICE, [assessment_card("f-1"), assessment_card("f-2")])
        assert store.flush(timeout=10)
        assert count(store, issued_cards) == 2

    def test_reopening_keeps_everything(self, make_store: Any) -> None:
        store = make_store()
        store.record_cards(SERVICE, [assessment_card("c")])
        store.store_feedback(SERVICE, parsed(item(card="c")))
        store.close()
        again = make_store()
        assert count(again, feedback) == 1 and count(again, issued_cards) == 1
        assert count(again, schema_version) == 1

    def test_newer_schema_is_refused(self, make_store: Any) -> None:
        store = make_store()
        with store._engine.begin() as conn:
            conn.execute(update(schema_version).values(version=SCHEMA_VERSION + 1))
        with pytest.raises(StartupError, match="newer"):
            make_store()
        with store._engine.begin() as conn:  # leave the database usable for the next test
            conn.execute(update(schema_version).values(version=SCHEMA_VERSION))

    def test_concurrent_writers_store_each_item_once(self, make_store: Any) -> None:
        stores = [make_store(), make_store()]
        shared = parsed(*(item(card=f"shared-{i}") for i in range(20)))
        errors: list[BaseException] = []

        def post(n: int) -> None:
            try:
                store = stores[n % 2]
                for i in range(10):
                    store.store_feedback(SERVICE, parsed(item(card=f"own-{n}-{i}")) + shared)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert count(stores[0], feedback) == 6 * 10 + 20

    def test_report_numbers(self, make_store: Any) -> None:
        store = make_store()
        store.record_cards(SERVICE, [assessment_card(f"a-{i}") for i in range(4)])
        store.record_cards(SERVICE, [assessment_card(f"n-{i}", kind="next-tests")
                                     for i in range(3)])
        store.record_cards("tma-order-sign", [assessment_card("o-1", kind="order-check")])

        def override(card: str, code: str | None = None, display: str | None = None,
                     comment: str | None = None, **extra: Any) -> dict[str, Any]:
            reason: dict[str, Any] = {}
            if code:
                reason["reason"] = {"code": code, **({"display": display} if display else {})}
            if comment:
                reason["userComment"] = comment
            return item(card=card, outcome="overridden", overrideReason=reason or None, **extra)

        store.store_feedback(SERVICE, parsed(
            item(card="a-0"), item(card="a-1"),
            override("a-2", "nr", "Not relevant"), override("a-3", "nr"),  # same code: one reason
            override("a-1", "dup", outcomeTimestamp="2026-03-02T00:00:00Z"),
            override("n-0", comment="later"), override("n-1", "done", "Already done", "x"),
            override("n-2", "cost"), item(card="ghost"), override("ghost-2", "zz"),
        ))
        store.store_feedback("tma-order-sign", parsed(override("o-1", "a"), override(
            "o-1", "b", outcomeTimestamp="2026-03-03T00:00:00Z"), override(
            "o-1", "c", outcomeTimestamp="2026-03-04T00:00:00Z"), override(
            "o-1", "b", outcomeTimestamp="2026-03-05T00:00:00Z"), override(
            "o-1", "d", outcomeTimestamp="2026-03-06T00:00:00Z")))
        rows = {(r.service_id, r.kind): r for r in store.report()}
        assert set(rows) == {(SERVICE, "assessment"), (SERVICE, "next-tests"),
                             (SERVICE, "unknown"), ("tma-order-sign", "order-check")}
        a = rows[SERVICE, "assessment"]
        assert (a.issued, a.accepted, a.overridden, a.comments) == (4, 2, 3, 0)
        assert a.acceptance_rate == pytest.approx(0.4)
        assert a.top_override_reasons == (("Not relevant", 2), ("dup", 1))
        n = rows[SERVICE, "next-tests"]
        assert (n.issued, n.accepted, n.overridden, n.comments) == (3, 0, 3, 2)
        assert n.acceptance_rate == 0.0
        assert n.top_override_reasons == (("Already done", 1), ("cost", 1))
        u = rows[SERVICE, "unknown"]
        assert (u.issued, u.accepted, u.overridden) == (0, 1, 1)
        o = rows["tma-order-sign", "order-check"]
        assert o.top_override_reasons == (("b", 2), ("a", 1), ("c", 1))  # top 3, ties by name
        store.record_cards(SERVICE, [assessment_card("quiet", kind="management")])
        quiet = {(r.service_id, r.kind): r for r in store.report()}[SERVICE, "management"]
        assert (quiet.issued, quiet.acceptance_rate, quiet.top_override_reasons) == (1, None, ())

    def test_report_since(self, make_store: Any) -> None:
        now = datetime(2026, 3, 10, tzinfo=UTC)
        clock = [now - timedelta(days=5)]
        store = make_store(clock=lambda: clock[0])
        store.record_cards(SERVICE, [assessment_card("old")])
        clock[0] = now
        store.record_cards(SERVICE, [assessment_card("new")])
        store.store_feedback(SERVICE, parsed(
            item(card="old", outcomeTimestamp="2026-03-05T00:00:00Z"),
            item(card="new", outcomeTimestamp="2026-03-10T00:00:00Z")))
        (row,) = store.report(since=datetime(2026, 3, 8))  # naive: taken as UTC
        assert (row.issued, row.accepted) == (1, 1)
        (row,) = store.report()
        assert (row.issued, row.accepted) == (2, 2)


class TestSqliteStore(StoreTests):
    pass


def test_sqlite_runs_in_wal_mode_with_full_sync(make_store: Any, tmp_path: Path) -> None:
    store = make_store()
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_queued_cards_are_written_at_interpreter_exit(tmp_path: Path) -> None:
    """A process that exits without calling close() still writes its queued issued cards."""
    import subprocess
    import sys

    script = (
        "from cds_service.feedback.store import FeedbackStore\n"
        f"store = FeedbackStore('sqlite:///{tmp_path}/exit.db', background=True)\n"
        "for i in range(300):\n"
        "    store.record_cards('svc', [{'uuid': f'u-{i}'}])\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with sqlite3.connect(tmp_path / "exit.db") as conn:
        assert conn.execute("SELECT count(*) FROM issued_cards").fetchone() == (300,)


def test_sqlite_file_folder_is_created(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path}/deep/er/fb.db")
    store.close()
    assert (tmp_path / "deep" / "er" / "fb.db").is_file()


def test_in_memory_sqlite_works() -> None:
    store = FeedbackStore("sqlite://")
    store.record_cards(SERVICE, [assessment_card("m")])
    store.store_feedback(SERVICE, parsed(item(card="m")))
    (row,) = store.report()
    assert (row.issued, row.accepted) == (1, 1)
    store.close()


@pytest.mark.parametrize(("url", "message"), (
    ("mysql://u@h/db", "sqlite or postgresql"),
    ("not a url", "not a database URL"),
))
def test_unusable_database_urls_stop_start_up(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FeedbackStore(url)


def test_postgres_urls_use_psycopg() -> None:
    from cds_service.db import normalise_url as _normalise_url

    for raw in ("postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        url, memory = _normalise_url(raw)
        assert url.drivername == "postgresql+psycopg" and not memory


def test_card_row_tolerates_odd_cards() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert card_row(SERVICE, "x", now) is None
    assert card_row(SERVICE, {"uuid": ""}, now) is None
    row = card_row(SERVICE, {"uuid": "u", "extension": {"tma-card": "x"}, "suggestions": [1]},
                   now)
    assert row is not None and row["kind"] == "unknown" and row["suggestion_uuids"] == ""


# ===== The endpoint ============================================================================


@pytest.fixture
def store() -> Any:
    store = FeedbackStore("sqlite://")
    yield store
    store.close()


@pytest.fixture
def client(store: FeedbackStore) -> Any:
    settings = load_settings(overrides={"auth_required": False, "log_format": "text"}, environ={})
    registry = Registry([HookService(
        id=SERVICE, hook="patient-view", title="TMA bone", description="test double",
        prefetch={}, required_prefetch=frozenset(), handler=lambda request, data, now: [],
    )])
    app = Flask(__name__)
    web.init_app(app, Runtime(settings=settings, registry=registry, feedback=store))
    return app.test_client()


def post(client: Any, body: Any, service: str = SERVICE, **kwargs: Any) -> Any:
    return client.post(f"/cds-services/{service}/feedback", json=body, **kwargs)


def test_http_valid_feedback_answers_empty_object(client: Any, store: FeedbackStore) -> None:
    response = post(client, {"feedback": [
        item(), item(card="c2", outcome="overridden"),
        item(card="c3", outcome="overridden", overrideReason={"userComment": "no"}),
    ]})
    assert response.status_code == 200
    assert response.get_json() == {}
    assert count(store, feedback) == 3


@pytest.mark.parametrize(("body", "where"), INVALID[:6] + INVALID[-4:])
def test_http_invalid_feedback_is_400_naming_the_field(client: Any, store: FeedbackStore,
                                                        body: Any, where: str) -> None:
    response = post(client, body)
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [where]
    assert count(store, feedback) == 0  # all or nothing


def test_http_one_bad_item_stores_nothing(client: Any, store: FeedbackStore) -> None:
    response = post(client, {"feedback": [item(), item(card="b", outcome="maybe")]})
    assert response.status_code == 400
    assert count(store, feedback) == 0


def test_http_unknown_service_is_404(client: Any) -> None:
    response = post(client, {"feedback": [item()]}, service="no-such-service")
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_http_not_json_is_415(client: Any) -> None:
    response = client.post(f"/cds-services/{SERVICE}/feedback", data="feedback=1",
                           content_type="text/plain")
    assert response.status_code == 415


def test_http_malformed_json_is_400(client: Any) -> None:
    response = client.post(f"/cds-services/{SERVICE}/feedback", data="{\"feedback\": [",
                           content_type="application/json")
    assert response.status_code == 400


def test_http_duplicates_answer_200_and_are_stored_once(client: Any,
                                                         store: FeedbackStore) -> None:
    body = {"feedback": [item(), item(card="c2", outcome="overridden")]}
    assert post(client, body).status_code == 200
    assert post(client, body).status_code == 200
    assert count(store, feedback) == 2


def test_http_unknown_card_is_stored_as_unknown(client: Any, store: FeedbackStore) -> None:
    store.record_cards(SERVICE, [assessment_card("issued")])
    assert post(client, {"feedback": [item(card="issued"), item(card="ghost")]}).status_code == 200
    assert count(store, feedback, feedback.c.known.is_(False)) == 1
    assert count(store, feedback, feedback.c.card_uuid == "ghost") == 1


def test_http_database_down_is_503_and_retryable(client: Any, store: FeedbackStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(store, "store_feedback", broken)
    response = post(client, {"feedback": [item()]})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "retry" in response.get_json()["issue"][0]["diagnostics"]


def test_http_report_matches_posts(client: Any, store: FeedbackStore) -> None:
    store.record_cards(SERVICE, [assessment_card(f"a-{i}") for i in range(3)])
    post(client, {"feedback": [item(card="a-0")]})
    post(client, {"feedback": [item(card="a-1", outcome="overridden",
                                    overrideReason={"reason": {"code": "nr"}})]})
    post(client, {"feedback": [item(card="a-1", outcome="overridden",  # duplicate
                                    overrideReason={"reason": {"code": "nr"}})]})
    post(client, {"feedback": [item(card="zz", outcome="overridden")]})
    rows = {r.kind: r for r in store.report()}
    assert (rows["assessment"].issued, rows["assessment"].accepted,
            rows["assessment"].overridden) == (3, 1, 1)
    assert rows["assessment"].top_override_reasons == (("nr", 1),)
    assert rows["unknown"].overridden == 1


def test_create_app_wires_the_store(tmp_path: Path) -> None:
    """The real factory opens CDS_DATABASE_URL and serves the endpoint."""
    if not (Path(web.__file__).parent.parent / "services").exists() and not (
            Path(web.__file__).parent.parent / "services.py").exists():
        pytest.skip("cds_service.services (the service registry) is not written yet")
    from cds_service.app import create_app

    app = create_app({"auth_required": False, "database_url": f"sqlite:///{tmp_path}/a.db"})
    rt = app.extensions["cds_service"]
    try:
        response = app.test_client().post(f"/cds-services/{SERVICE}/feedback",
                                          json={"feedback": [item()]})
        assert response.status_code == 200 and response.get_json() == {}
        assert count(rt.feedback, feedback) == 1
    finally:
        rt.feedback.close()


# ===== The command =============================================================================


def run_report(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> int:
    """Run ``cds-service feedback-report`` through the real command line."""
    from cds_service.cli import main

    monkeypatch.setenv("CDS_DATABASE_URL", url)
    return main(["feedback-report", *argv])


@pytest.fixture
def filled_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/report.db"
    store = FeedbackStore(url, background=False)
    store.record_cards(SERVICE, [assessment_card(f"a-{i}") for i in range(4)])
    store.store_feedback(SERVICE, parsed(
        item(card="a-0"),
        item(card="a-1", outcome="overridden",
             overrideReason={"reason": {"code": "nr", "display": "Not relevant"}}),
        item(card="a-2", outcome="overridden", overrideReason={"userComment": "no"}),
    ))
    store.close()
    return url


def test_command_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                      filled_db: str) -> None:
    assert run_report(monkeypatch, filled_db) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Feedback report (all time)"
    assert out[1].split()[:7] == ["service", "kind", "issued", "accepted", "overridden", "rate",
                                  "comments"]
    assert out[2].split() == [SERVICE, "assessment", "4", "1", "2", "33%", "1", "Not",
                              "relevant", "(1)"]


def test_command_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                      filled_db: str) -> None:
    assert run_report(monkeypatch, filled_db, "--format", "json", "--since", "2000-01-01") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["since"] == "2000-01-01T00:00:00Z"
    assert body["rows"] == [{
        "service": SERVICE, "kind": "assessment", "issued": 4, "accepted": 1, "overridden": 2,
        "acceptanceRate": pytest.approx(1 / 3), "comments": 1,
        "topOverrideReasons": [{"reason": "Not relevant", "count": 1}],
    }]


def test_command_empty_database(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_report(monkeypatch, f"sqlite:///{tmp_path}/empty.db") == 0
    assert "no cards issued and no feedback" in capsys.readouterr().out


@pytest.mark.parametrize("since", ("yesterday", "2026-13-01", "2026-01-01T00:00:00"))
def test_command_bad_since_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                filled_db: str, since: str) -> None:
    assert run_report(monkeypatch, filled_db, "--since", since) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--since" in err and since in err


def test_command_bad_database_url_exits_2(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run_report(monkeypatch, "mysql://x@y/z") == 2
    assert "CDS_DATABASE_URL" in capsys.readouterr().err


def test_command_unreachable_database_exits_1(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 on 127.0.0.1 (discard) has no PostgreSQL: the connection is refused at once.
    assert run_report(monkeypatch, "postgresql://cds@127.0.0.1:9/cds") == 1
    assert "cannot open the feedback database" in capsys.readouterr().err


def test_issued_cards_without_feedback_are_reported() -> None:
    store = FeedbackStore("sqlite://")
    store.record_cards(SERVICE, [assessment_card("lonely")])
    with store._engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM feedback")).scalar() == 0
    assert [r.issued for r in store.report()] == [1]
    store.close()


# Issue 13 item 5: reasons are client text; the report shows them as data.
HOSTILE_DISPLAY = "Not relevant\ntma-bone-assessment  forged  999  999  0  100%  0  -\x1b[2J\u202e"


@pytest.fixture
def hostile_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/hostile.db"
    store = FeedbackStore(url, background=False)
    store.record_cards(SERVICE, [assessment_card("h-0")])
    store.store_feedback(SERVICE, parsed(item(
        card="h-0", outcome="overridden",
        overrideReason={"reason": {"code": "nr\r\x07", "display": HOSTILE_DISPLAY}})))
    store.close()
    return url


def test_command_text_escapes_client_strings(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             hostile_db: str) -> None:
    assert run_report(monkeypatch, hostile_db) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 4  # title, header, one row, legend: no forged row
    assert not any("forged" in line for line in lines[:2] + lines[3:])
    assert all(c.isprintable() for c in out.replace("\n", ""))
    assert ("Not relevant\\ntma-bone-assessment  forged  999  999  0  100%  0  -\\x1b[2J\\u202e"
            " (1)") in lines[2]


def test_command_text_bounds_a_long_reason(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/long.db"
    store = FeedbackStore(url, background=False)
    store.store_feedback(SERVICE, parsed(item(
        card="z", outcome="overridden", overrideReason={"reason": {"code": "c",
                                                                   "display": "r" * 5000}})))
    store.close()
    assert run_report(monkeypatch, url) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert row.endswith("r" * 80 + "…(+4920 chars) (1)")


def test_command_json_stays_valid_ascii_with_client_strings(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        hostile_db: str) -> None:
    assert run_report(monkeypatch, hostile_db, "--format", "json") == 0
    out = capsys.readouterr().out
    assert out.isascii() and "\x1b" not in out and "\r" not in out
    body = json.loads(out)
    assert body["rows"][0]["topOverrideReasons"] == [{"reason": HOSTILE_DISPLAY, "count": 1}]
