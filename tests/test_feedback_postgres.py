"""The feedback store's tests (``StoreTests``) against a real PostgreSQL server on 127.0.0.1.

``make test`` installs Debian's postgresql (tests/support/postgres.sh install); the
``postgres_url`` fixture (conftest.py) starts a throw-away cluster for the session and removes it
afterwards. Where the server cannot be installed or started, these tests fail under CI and are
skipped locally, with the reason (tests/support/services.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine

from cds_service.feedback.store import FeedbackStore, metadata

try:
    from test_feedback import StoreTests
except ImportError:  # tests/ became a package
    from tests.test_feedback import StoreTests  # type: ignore[no-redef]

@pytest.fixture
def make_store(postgres_url: str) -> Iterator[Any]:
    """Stores on the test database (opening again = a restart); tables dropped afterwards."""
    opened: list[FeedbackStore] = []

    def make(**kwargs: Any) -> FeedbackStore:
        kwargs.setdefault("background", False)
        store = FeedbackStore(postgres_url, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        metadata.drop_all(engine)
    finally:
        engine.dispose()


class TestPostgresStore(StoreTests):
    def test_runs_on_postgresql(self, make_store: Any) -> None:
        assert make_store().dialect == "postgresql"
