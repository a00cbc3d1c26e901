"""Shared fixtures: an app with auth off and a fixed clock, and builders for synthetic records."""

from __future__ import annotations

import json
import sys
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
