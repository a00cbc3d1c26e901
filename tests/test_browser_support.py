"""The shared browser fixture: a real Chromium that never reaches a host other than loopback."""

from __future__ import annotations

import http.server
import threading

import pytest

from tests.support.browser import open_page


@pytest.fixture()
def local_page_url():
    body = (b"<!doctype html><title>t</title><p id=p>loopback page</p>"
            b"<img src='http://example.invalid/x.png'>")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_page_renders_and_outside_requests_are_blocked_and_listed(browser, local_page_url):
    page, outside = open_page(browser, width=800, height=600)
    page.goto(local_page_url)
    page.wait_for_load_state("load")
    assert page.inner_text("#p") == "loopback page"
    assert outside == ["http://example.invalid/x.png"]
    assert page.viewport_size == {"width": 800, "height": 600}
    page.context.close()
