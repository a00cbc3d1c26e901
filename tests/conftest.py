"""Shared fixtures: an app with auth off and a fixed clock, and builders for synthetic records."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fixtures.build import NOW  # noqa: E402
from tests.support.browser import browser  # noqa: E402, F401  (the shared Chromium fixture)

RECORDS = ROOT / "fixtures" / "records"
CLOCK = NOW.replace(tzinfo=UTC)  # the moment every fixture record describes


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep CDS_* variables of the shell out of every test."""
    import os

    for name in list(os.environ):
        if name.startswith("CDS_"):
            monkeypatch.delenv(name)


# Signing keys for client JWTs (security tests); made once per session, they are slow to make.
@pytest.fixture(scope="session")
def ec_key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="session")
def other_ec_key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="session")
def rsa_key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_app(**settings: Any):  # type: ignore[no-untyped-def]
    from cds_service import create_app

    config = {"auth_required": False, "database_url": "sqlite://", "log_format": "json"}
    config.update(settings)
    return create_app(config, clock=lambda: CLOCK)


@pytest.fixture
def app():  # type: ignore[no-untyped-def]
    return make_app()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


def load_record(name: str) -> dict[str, Any]:
    return json.loads((RECORDS / f"{name}.json").read_text())


def hook_body(prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": "p1"},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


# ----- PostgreSQL: one throw-away cluster per session (tests/support/postgres.sh) ---------------

PG_SCRIPT = Path(__file__).resolve().parent / "support" / "postgres.sh"
PG_PORT = 54329
PG_PORT_ATTEMPTS = 3
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
    from tests.support.services import require_service

    how = "apt-get install postgresql (as root), or bash tests/support/postgres.sh install"
    port = PG_PORT if _port_free(PG_PORT) else _free_port()
    for _attempt in range(PG_PORT_ATTEMPTS):
        try:
            done = subprocess.run([BASH, str(PG_SCRIPT), "start", str(port)],
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
        subprocess.run([BASH, str(PG_SCRIPT), "stop", values["dir"]],
                       capture_output=True, timeout=60, check=False)


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> str:
    """A new, empty database on the session's PostgreSQL server (its URL)."""
    import uuid

    from sqlalchemy import text

    from cds_service.db import Database

    name = "t_" + uuid.uuid4().hex[:12]
    admin = Database(postgres_url)
    try:
        with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.close()
    return postgres_url.rsplit("/", 1)[0] + "/" + name
