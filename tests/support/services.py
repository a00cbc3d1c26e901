"""One rule for a real service a test needs (FHIR server, PostgreSQL, nginx, Chromium, ...).

``require_service(name, reason, how_to_install)`` is called by a fixture with the reason the
service is unusable (``None`` when it is fine, then it returns). Under ``CI`` (any value but
empty, ``0``, ``false`` or ``no``) the test fails loudly: a CI machine must install and start
everything ``make test`` needs, and a skip there would hide a broken install. In a local run
the test is skipped, with a message that says how to install the service.

    from tests.support.services import require_service

    @pytest.fixture(scope="session")
    def nginx() -> ...:
        require_service("nginx", why_unusable(), "apt-get install nginx-light (as root)")

The shell side (install scripts called by tests/support/start-services.sh) is
tests/support/require.sh, with the same CI rule.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["in_ci", "require_service"]


def in_ci() -> bool:
    """True when ``CI`` is set to anything but empty/0/false/no (GitHub, GitLab set ``true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_service(name: str, reason: str | None, how_to_install: str) -> None:
    """Return if ``reason`` is None; else fail the test under CI, skip it locally."""
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{name} is required under CI but unusable: {reason} "
                    f"(install: {how_to_install})", pytrace=False)
    pytest.skip(f"{name} unusable: {reason}; to run these tests install it: {how_to_install} "
                "(under CI=true this is a failure)")
