"""Feedback abuse (issue 13 item 12): bound to the issuing client, capped per request, rate
limited per client across instances, purged after the retention period."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from cds_service.commands.dev_token import mint_token, public_jwk
from cds_service.errors import Forbidden, RequestInvalid, TooManyRequests
from cds_service.feedback.model import MAX_ITEMS, parse_feedback
from cds_service.feedback.store import FeedbackStore, feedback, issued_cards
from tests.conftest import make_app
from tests.test_feedback import SERVICE, assessment_card, item, parsed

A, B = "https://ehr-a.example", "https://ehr-b.example"
T0 = datetime(2026, 3, 1, 10, 0, 30, tzinfo=UTC)  # 30 s into a minute


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def rows(store: FeedbackStore, table: Any) -> int:
    with store.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# ----- cap ---------------------------------------------------------------------------------------


def test_at_most_max_items_per_request() -> None:
    assert MAX_ITEMS == 100
    assert len(parse_feedback({"feedback": [item(card=f"c{i}") for i in range(100)]})) == 100
    with pytest.raises(RequestInvalid, match="feedback holds 101 items; at most 100") as caught:
        parse_feedback({"feedback": [item(card=f"c{i}") for i in range(101)]})
    assert caught.value.where == "feedback"


def test_http_over_the_cap_is_400() -> None:
    client = make_app().test_client()
    response = client.post(f"/cds-services/{SERVICE}/feedback",
                           json={"feedback": [item(card=f"c{i}") for i in range(480)]})
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["feedback"]


# ----- bound to the issuing client ----------------------------------------------------------------


def test_feedback_on_another_clients_card_is_refused_and_nothing_is_stored(
        tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path}/f.db", background=False)
    store.record_cards(SERVICE, [assessment_card("card-a")], client=A)
    with pytest.raises(Forbidden, match="'card-a' was not issued to this client") as caught:
        store.store_feedback(SERVICE, parsed(item(card="unknown-1"), item(card="card-a")),
                             client=B)
    assert caught.value.where == "feedback[1].card"
    assert rows(store, feedback) == 0  # all or nothing
    with pytest.raises(Forbidden):  # nor without a client (auth off) once it went to one
        store.store_feedback(SERVICE, parsed(item(card="card-a")))
    result = store.store_feedback(SERVICE, parsed(item(card="card-a")), client=A)
    assert (result.stored, result.unknown) == (1, 0)
    # a card nobody was issued stays "stored and marked unknown" for anyone
    assert store.store_feedback(SERVICE, parsed(item(card="never")), client=B).unknown == 1
    store.close()


def test_the_hook_pipeline_records_the_callers_iss() -> None:
    app = make_app()
    rt = app.extensions["cds_service"]
    seen: list[Any] = []
    rt.feedback = type("Sink", (), {"record_cards": lambda self, s, c, client=None:
                                    seen.append(client)})()
    service = rt.registry.lookup(SERVICE, "patient-view")
    client = type("Client", (), {"fhir_servers": (), "iss": A})()
    assert rt.answer(service, _request(), client)  # this record gets cards
    assert seen == [A]


def _request() -> Any:
    from cds_service.fhir.resources import bundle_resources
    from cds_service.hooks import parse_request
    from cds_service.replay import build_request
    from tests.conftest import load_record

    record = load_record("om-probable-ptb-esr")
    resources = bundle_resources(record)
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    discovery = make_app().test_client().get("/cds-services").get_json()
    return parse_request(build_request(discovery, SERVICE, "patient-view", resources, patient))


# ----- rate limit, shared by instances -----------------------------------------------------------


def test_rate_limit_counts_across_instances_per_client_per_minute(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/f.db"
    clock = Clock()
    one = FeedbackStore(url, background=False, clock=clock, rate_limit=5)
    two = FeedbackStore(url, background=False, clock=clock, rate_limit=5)  # another instance
    one.store_feedback(SERVICE, parsed(item(card="a1"), item(card="a2"), item(card="a3")),
                       client=A)
    two.store_feedback(SERVICE, parsed(item(card="a4"), item(card="a5")), client=A)  # 5: at it
    with pytest.raises(TooManyRequests) as caught:
        two.store_feedback(SERVICE, parsed(item(card="a6")), client=A)
    assert caught.value.retry_after == 30  # the minute began 30 s ago
    assert rows(one, feedback) == 5
    one.store_feedback(SERVICE, parsed(item(card="b1")), client=B)  # another client: its own
    clock.now = T0 + timedelta(seconds=30)  # the next minute
    one.store_feedback(SERVICE, parsed(item(card="a6")), client=A)
    assert rows(one, feedback) == 7
    one.close()
    two.close()


def test_no_rate_limit_without_a_client_or_when_off(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path}/f.db", background=False, rate_limit=1)
    store.store_feedback(SERVICE, parsed(item(card="x1"), item(card="x2")))  # auth off
    off = FeedbackStore(f"sqlite:///{tmp_path}/g.db", background=False, rate_limit=0)
    off.store_feedback(SERVICE, parsed(*[item(card=f"y{i}") for i in range(50)]), client=A)
    store.close()
    off.close()


def test_http_429_with_retry_after_and_403(tmp_path: Path, ec_key: Any) -> None:
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": A,
                                                "jwks": {"keys": [public_jwk(ec_key)]}}]}))
    app = make_app(auth_required=True, trusted_issuers=str(issuers), feedback_rate_limit=2)
    client = app.test_client()
    url = f"http://localhost/cds-services/{SERVICE}/feedback"

    def post(*cards: str) -> Any:
        token = mint_token(ec_key, iss=A, aud=url, kid=public_jwk(ec_key)["kid"])
        return client.post(url, json={"feedback": [item(card=c) for c in cards]},
                           headers={"Authorization": f"Bearer {token}"})

    app.extensions["cds_service"].feedback.record_cards(SERVICE, [assessment_card("b-card")],
                                                       client=B)
    forbidden = post("b-card")
    assert forbidden.status_code == 403
    assert forbidden.get_json()["issue"][0]["expression"] == ["feedback[0].card"]
    assert post("c2").status_code == 200  # the refused post counted 1, this one 2
    limited = post("c3")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.get_json()["issue"][0]["code"] == "throttled"


# ----- retention --------------------------------------------------------------------------------


def test_records_older_than_the_retention_are_purged(tmp_path: Path) -> None:
    clock = Clock()
    store = FeedbackStore(f"sqlite:///{tmp_path}/f.db", background=False, clock=clock,
                          retention_days=30, rate_limit=10)
    store.record_cards(SERVICE, [assessment_card("old")], client=A)
    store.store_feedback(SERVICE, parsed(item(card="old")), client=A)
    clock.now = T0 + timedelta(days=20)
    store.record_cards(SERVICE, [assessment_card("new")], client=A)
    store.store_feedback(SERVICE, parsed(item(card="new")), client=A)
    clock.now = T0 + timedelta(days=30, seconds=1)  # "old" is past 30 days, "new" is 10 days
    deleted = store.db.purge_expired()
    assert deleted == {"issued-cards": 1, "feedback": 1, "feedback-rate": 2}
    with store.db.read() as conn:
        assert conn.execute(select(issued_cards.c.uuid)).scalars().all() == ["new"]
        assert conn.execute(select(feedback.c.card_uuid)).scalars().all() == ["new"]
    store.close()


def test_default_retention_is_a_year() -> None:
    from cds_service.config import load_settings

    assert load_settings(environ={}).feedback_retention_days == 365
    assert load_settings(environ={"CDS_FEEDBACK_RETENTION_DAYS": "90"}) \
        .feedback_retention_days == 90


# ----- migration --------------------------------------------------------------------------------


def test_a_version_1_database_gains_the_client_column(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                          "applied_at DATETIME NOT NULL)"))
        conn.execute(text("INSERT INTO schema_version VALUES (1, '2026-01-01 00:00:00')"))
        conn.execute(text("CREATE TABLE issued_cards (uuid VARCHAR PRIMARY KEY, service_id "
                          "VARCHAR NOT NULL, kind VARCHAR NOT NULL, rules TEXT NOT NULL, "
                          "indicator VARCHAR, suggestion_uuids TEXT NOT NULL, issued_at "
                          "DATETIME NOT NULL)"))
        conn.execute(text("INSERT INTO issued_cards VALUES ('legacy', 'tma-bone-assessment', "
                          "'assessment', 'OM-2', 'warning', '', '2026-01-01 00:00:00')"))
    engine.dispose()
    store = FeedbackStore(f"sqlite:///{path}", background=False)
    with store.db.read() as conn:
        assert conn.execute(text("SELECT max(version) FROM schema_version")).scalar() == 2
        assert conn.execute(text("SELECT client FROM issued_cards")).scalars().all() == [None]
    # a card from before binding counts as issued to no client (auth off)
    assert store.store_feedback(SERVICE, parsed(item(card="legacy"))).unknown == 0
    store.close()
