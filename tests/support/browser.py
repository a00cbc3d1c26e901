"""A real browser for tests: Debian's Chromium (/usr/bin/chromium) driven by Python Playwright.

``tests/support/browser.sh install`` (run by ``make test``) installs the Debian package; the
Playwright wheel from PyPI supplies only the driver (never ``playwright install``). Locally a
missing Chromium skips the browser tests with a message saying how to install it; with
``CI=true`` it fails the test run instead.

Use the ``browser`` fixture (one Chromium per test module) and :func:`open_page`, which blocks
and records every request to a host other than 127.0.0.1/localhost, so a test can assert that a
page makes no outside request::

    def test_preview(browser):
        page, outside = open_page(browser, width=1280, height=800)
        page.goto(url)
        assert outside == []
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.services import require_service

CHROMIUM = Path(os.environ.get("CDS_TEST_CHROMIUM", "/usr/bin/chromium"))
# Flags for a root, headless Chromium on a closed network (no background connections).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _missing(reason: str) -> None:
    require_service("Chromium", reason, "bash tests/support/browser.sh install (root, apt-get)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module.

    Module scope, not session: Playwright's sync API runs an asyncio event loop in the main
    thread for as long as it is started, and a later test's ``asyncio.run()`` refuses to start
    inside a running loop. Stopping Playwright at the end of the module that used it leaves no
    loop behind (one browser start per browser module, about a second)."""
    if not (CHROMIUM.exists() or shutil.which(str(CHROMIUM))):
        _missing(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Any, *, width: int = 1280, height: int = 800) -> tuple[Any, list[str]]:
    """A new page in a fresh context; requests to non-loopback hosts are aborted and listed."""
    context = browser.new_context(viewport={"width": width, "height": height})
    outside: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        scheme = urlsplit(url).scheme
        host = urlsplit(url).hostname or ""
        if scheme in ("http", "https", "ws", "wss") and host not in LOOPBACK:
            outside.append(url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    return context.new_page(), outside
