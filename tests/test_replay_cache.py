"""The shared database (``cds_service.db``) and the ``jti`` replay cache kept in it.

Unit tests run on a SQLite file and on the throw-away PostgreSQL (conftest ``postgres_url``);
the server test starts ``cds-service serve --workers 2`` twice on one database and replays a
token over 20 fresh connections: accepted exactly once, and refused by the second instance too.
"""

from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from cds_service.auth import TokenVerifier, TrustStore
from cds_service.commands.dev_token import (
    DEV_ISSUER,
    init_issuer,
    load_private_key,
    mint_token,
    public_jwk,
)
from cds_service.db import SCHEMA_VERSION, Database, schema_version
from cds_service.errors import ClientNotTrusted, Unavailable
from cds_service.replay_cache import DatabaseReplayCache, jti_seen
from tests.support.serve import Serve

ISS = "https://ehr.example.org"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/shared.db"
        return
    yield request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = Database(url, purge_interval=3600)
    yield database
    database.close()


def rows(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(jti_seen)).scalar() or 0)


# ----- the replay cache -------------------------------------------------------------------------


def test_a_pair_is_accepted_once_until_it_expires(db: Database) -> None:
    clock = Clock()
    cache = DatabaseReplayCache(db, clock)
    assert cache.remember(ISS, "j1", T0 + 300) is True
    assert cache.remember(ISS, "j1", T0 + 900) is False     # a later expiry does not reopen it
    assert cache.remember("https://other.example", "j1", T0 + 300) is True  # per issuer
    clock.now = T0 + 299
    assert cache.remember(ISS, "j1", T0 + 600) is False
    clock.now = T0 + 301                                    # expired, not purged yet: reusable
    assert cache.remember(ISS, "j1", T0 + 600) is True
    assert cache.remember(ISS, "j1", T0 + 600) is False


def test_two_processes_worth_of_caches_on_one_database_agree(db: Database, url: str) -> None:
    other = Database(url)  # a second engine, as a second worker or instance has
    try:
        assert DatabaseReplayCache(db, Clock()).remember(ISS, "shared", T0 + 300) is True
        assert DatabaseReplayCache(other, Clock()).remember(ISS, "shared", T0 + 300) is False
    finally:
        other.close()


def test_expired_pairs_are_purged(db: Database) -> None:
    clock = Clock()
    cache = DatabaseReplayCache(db, clock)
    for i in range(5):
        cache.remember(ISS, f"short-{i}", T0 + 60)
    for i in range(3):
        cache.remember(ISS, f"long-{i}", T0 + 3600)
    assert rows(db) == 8 and len(cache) == 8
    clock.now = T0 + 61
    assert len(cache) == 3               # expired ones no longer count
    assert db.purge_expired() == {"jti-seen": 5}
    assert rows(db) == 3
    assert db.purge_expired() == {"jti-seen": 0}  # running it again (another instance) is harmless


def test_purge_runs_after_a_write_once_the_interval_passed(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The purge interval is measured on the monotonic clock; a stand-in clock makes "not yet"
    # and "passed" exact however slowly a loaded machine runs the test.
    import cds_service.db as db_module

    monotonic = [1000.0]

    class Time:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def monotonic() -> float:
            return monotonic[0]

    monkeypatch.setattr(db_module, "time", Time())
    database = Database(url, purge_interval=60)
    try:
        clock = Clock()
        cache = DatabaseReplayCache(database, clock)
        cache.remember(ISS, "old", T0 + 10)
        clock.now = T0 + 11
        monotonic[0] += 59.9
        cache.remember(ISS, "a", T0 + 300)     # interval not passed: nothing purged
        assert rows(database) == 2
        monotonic[0] += 0.2
        cache.remember(ISS, "b", T0 + 300)     # this write triggers the purge
        assert rows(database) == 2             # "old" gone, "a" and "b" kept
        assert cache.remember(ISS, "old", T0 + 300) is True
    finally:
        database.close()


def test_a_huge_jti_is_stored_as_a_fixed_size_key(db: Database) -> None:
    cache = DatabaseReplayCache(db, Clock())
    jti = "x" * 20_000  # a PostgreSQL index entry cannot hold this; the hash can
    assert cache.remember(ISS, jti, T0 + 300) is True
    assert cache.remember(ISS, jti, T0 + 300) is False
    assert cache.remember(ISS, jti + "y", T0 + 300) is True
    with db.read() as conn:
        keys = conn.execute(select(jti_seen.c.key)).scalars().all()
    assert {len(k) for k in keys} == {64}


def test_one_of_many_threads_wins(db: Database) -> None:
    cache = DatabaseReplayCache(db, Clock())
    barrier = threading.Barrier(8)

    def attempt(_: int) -> bool:
        barrier.wait(timeout=10)
        return cache.remember(ISS, "raced", T0 + 300)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count(True) == 1


def test_database_failure_is_unavailable_not_accepted(db: Database,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = DatabaseReplayCache(db, Clock())

    def broken() -> Any:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(db, "begin", broken)
    with pytest.raises(Unavailable):
        cache.remember(ISS, "j", T0 + 300)


def test_verifier_on_the_database_rejects_a_replay(db: Database, ec_key: Any) -> None:
    jwk = public_jwk(ec_key)
    trust = TrustStore.from_dict({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]})
    aud = "https://cds.example.org/cds-services/x"
    first = TokenVerifier(trust, replay=DatabaseReplayCache(db))
    second = TokenVerifier(trust, replay=DatabaseReplayCache(db))
    minted = mint_token(ec_key, iss=ISS, aud=aud, kid=jwk["kid"])
    assert first.verify(f"Bearer {minted}", aud).iss == ISS
    with pytest.raises(ClientNotTrusted, match="already used"):
        second.verify(f"Bearer {minted}", aud)


# ----- schema set-up ------------------------------------------------------------------------------


def _open_database(url: str, start_at: float) -> str:
    time.sleep(max(0.0, start_at - time.time()))  # every process imported: now all at once
    Database(url).close()
    return "ok"


def test_instances_starting_together_create_the_schema_once(url: str) -> None:
    """Four processes open a fresh database at the same moment: all start, one version row."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        start_at = time.time() + 4
        results = list(pool.map(_open_database, [url] * 4, [start_at] * 4, timeout=60))
    assert results == ["ok"] * 4
    database = Database(url)
    try:
        with database.read() as conn:
            versions = conn.execute(select(schema_version.c.version)).scalars().all()
            tables = set(database.engine.dialect.get_table_names(conn))
    finally:
        database.close()
    assert versions == [SCHEMA_VERSION]
    assert {"schema_version", "issued_cards", "feedback", "jti_seen"} <= tables


# ----- two real servers on one database -----------------------------------------------------------


PUBLIC = "https://cds.example.org"
PATH = "/cds-services/tma-bone-assessment/feedback"


def _post_fresh_connection(base: str, token: str) -> int:
    body = {"feedback": [{"card": f"c-{uuid.uuid4()}", "outcome": "overridden",
                          "outcomeTimestamp": "2026-03-01T10:00:00Z",
                          "overrideReason": {"userComment": "replay test"}}]}
    with requests.Session() as session:  # a new TCP connection every time
        response = session.post(base + PATH, json=body, timeout=10,
                                headers={"Authorization": f"Bearer {token}",
                                         "Connection": "close"})
    return response.status_code


@pytest.mark.slow
def test_a_token_replayed_over_20_connections_is_accepted_once_across_instances(
        tmp_path: Path) -> None:
    issuers = init_issuer(tmp_path / "issuer", [])
    key = load_private_key(tmp_path / "issuer" / "issuer-key.pem")
    kid = public_jwk(key)["kid"]
    env = {**os.environ, "CDS_AUTH_REQUIRED": "true", "CDS_TRUSTED_ISSUERS": str(issuers),
           "CDS_PUBLIC_URL": PUBLIC, "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/shared.db",
           "CDS_LOG_FORMAT": "json"}
    first = Serve(tmp_path, env, "first").start()
    second = Serve(tmp_path, env, "second").start()
    try:
        first.wait_ready()
        second.wait_ready()
        token = mint_token(key, iss=DEV_ISSUER, aud=PUBLIC + PATH, kid=kid)
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(lambda _: _post_fresh_connection(first.base, token),
                                     range(20)))
        assert sorted(statuses) == [200] + [401] * 19
        assert _post_fresh_connection(second.base, token) == 401  # the other instance too
        fresh = mint_token(key, iss=DEV_ISSUER, aud=PUBLIC + PATH, kid=kid)
        assert _post_fresh_connection(second.base, fresh) == 200
        assert _post_fresh_connection(first.base, fresh) == 401
    finally:
        first.stop()
        second.stop()
