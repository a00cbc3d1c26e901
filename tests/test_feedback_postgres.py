"""The feedback store's tests (``StoreTests``) against a real PostgreSQL server on 127.0.0.1.

``make test`` installs Debian's postgresql (tests/support/postgres.sh install); the fixture below
starts a throw-away cluster for the session and removes it afterwards. Where the server cannot be
installed or started, these tests fail under CI and are skipped locally, with the reason
(tests/support/services.py).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from cds_service.feedback.store import FeedbackStore, metadata
from tests.support.services import require_service

try:
    from test_feedback import StoreTests
except ImportError:  # tests/ became a package
    from tests.test_feedback import StoreTests  # type: ignore[no-redef]

SCRIPT = Path(__file__).resolve().parent / "support" / "postgres.sh"
PORT = 54329
PORT_ATTEMPTS = 3
BASH = shutil.which("bash") or "/bin/bash"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Start PostgreSQL on 127.0.0.1 (port 54329 unless taken) with a database ``cds``.

    Engineers and CI jobs on one machine race for ports (checked free, taken before the server
    binds it): a start that fails for its listen socket is tried again on another free port."""
    how = "apt-get install postgresql (as root), or bash tests/support/postgres.sh install"
    port = PORT if _port_free(PORT) else _free_port()
    for _attempt in range(PORT_ATTEMPTS):
        try:
            done = subprocess.run([BASH, str(SCRIPT), "start", str(port)],
                                  capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            require_service("PostgreSQL", f"could not be started: {exc}", how)
            raise
        if done.returncode == 0 or "listen socket" not in done.stderr:
            break
        port = _free_port()
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}")
        require_service("PostgreSQL", f"could not be started: {reason.splitlines()[-1]}", how)
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    try:
        yield values["url"]
    finally:
        subprocess.run([BASH, str(SCRIPT), "stop", values["dir"]],
                       capture_output=True, timeout=60, check=False)


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
