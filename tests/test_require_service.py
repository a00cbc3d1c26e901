"""A real service that is missing fails the run under CI and skips it locally (issue 18 item 5):
tests/support/services.py for fixtures, tests/support/require.sh for the install scripts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.services import in_ci, require_service

REQUIRE_SH = Path(__file__).resolve().parent / "support" / "require.sh"
BASH = shutil.which("bash") or "/bin/bash"


@pytest.mark.parametrize(("value", "ci"), [
    (None, False), ("", False), ("0", False), ("false", False), ("No", False),
    ("true", True), ("1", True), ("TRUE", True), ("yes", True),
])
def test_ci_is_any_value_but_empty_or_false(monkeypatch, value, ci):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_a_usable_service_passes(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_service("nginx", None, "apt-get install nginx-light") is None


def test_a_missing_service_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_service("nginx", "not on PATH", "apt-get install nginx-light")
    assert "nginx" in str(failed.value) and "not on PATH" in str(failed.value)
    assert "apt-get install nginx-light" in str(failed.value)


def test_a_missing_service_skips_locally_saying_how_to_install(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_service("nginx", "not on PATH", "apt-get install nginx-light")
    assert "not on PATH" in str(skipped.value)
    assert "apt-get install nginx-light" in str(skipped.value)


def _install_fails(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if ci is not None:
        env["CI"] = ci
    script = (f"set -euo pipefail; source {REQUIRE_SH}; "
              "false || service_missing Widget 'install failed' 'apt-get install widget'; "
              "echo carried-on")
    return subprocess.run([BASH, "-c", script], env=env, capture_output=True, text=True,
                          timeout=10, check=False)


def test_a_failed_install_stops_the_shell_script_under_ci():
    done = _install_fails("true")
    assert done.returncode == 1
    assert "carried-on" not in done.stdout
    assert "error: Widget" in done.stderr and "apt-get install widget" in done.stderr


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_failed_install_is_a_warning_locally(ci):
    done = _install_fails(ci)
    assert done.returncode == 0
    assert "carried-on" in done.stdout
    assert "warning: Widget" in done.stderr and "apt-get install widget" in done.stderr
