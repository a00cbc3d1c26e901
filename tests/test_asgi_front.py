"""The server front (``web.asgi.BufferedWsgi``) in-process: the app sees only whole requests.

Driven with hand-made ASGI messages, as gunicorn's asyncio worker sends them, so the bounds
(body size, body deadline) are checked without a server or a 30 s wait.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cds_service.web.asgi import BufferedWsgi


def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/echo", "raw_path": b"/echo", "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8080)}


class EchoApp:
    """A WSGI app that says what body and length it saw, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        length = environ.get("CONTENT_LENGTH")
        body = environ["wsgi.input"].read(int(length)) if length else b""
        answer = json.dumps({"length": length, "body": body.decode(),
                             "chunked": environ.get("HTTP_TRANSFER_ENCODING")}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [answer]


def run(front: BufferedWsgi, headers: list[tuple[bytes, bytes]],
        pieces: list[tuple[float, bytes, bool]]) -> tuple[int, dict[str, Any], list[Any]]:
    """Feed ``pieces`` (delay, bytes, more_body) to the front; return status, body, headers."""
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        queue = list(pieces)

        async def receive() -> dict[str, Any]:
            if not queue:
                await asyncio.sleep(3600)  # nothing more: a client that stopped sending
            delay, data, more = queue.pop(0)
            await asyncio.sleep(delay)
            return {"type": "http.request", "body": data, "more_body": more}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await asyncio.wait_for(front(scope(headers), receive, send), timeout=10)

    asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), start["headers"]


def test_a_body_in_pieces_reaches_the_app_whole_with_its_length() -> None:
    front = BufferedWsgi(EchoApp(), threads=2, max_body=100)
    status, body, _ = run(front, [(b"content-length", b"11")],
                          [(0, b"hello", True), (0.05, b" ", True), (0.05, b"world", False)])
    assert status == 200
    assert body == {"length": "11", "body": "hello world", "chunked": None}


def test_a_chunked_body_gets_a_length() -> None:
    front = BufferedWsgi(EchoApp(), threads=2, max_body=100)
    status, body, _ = run(front, [(b"transfer-encoding", b"chunked")],
                          [(0, b'{"a":', True), (0, b"1}", False)])
    assert (status, body) == (200, {"length": "7", "body": '{"a":1}', "chunked": None})


def test_a_chunked_body_over_the_limit_is_413_without_calling_the_app() -> None:
    app = EchoApp()
    front = BufferedWsgi(app, threads=2, max_body=10)
    status, body, headers = run(front, [(b"transfer-encoding", b"chunked")],
                                [(0, b"x" * 8, True), (0, b"x" * 8, True), (0, b"x", False)])
    assert status == 413
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == ("request body is larger than 10 bytes, "
                                               "the limit of this service")
    assert (b"connection", b"close") in headers
    assert app.calls == 0


def test_a_declared_length_over_the_limit_is_not_read_and_left_to_the_app() -> None:
    front = BufferedWsgi(EchoApp(), threads=2, max_body=10)
    # nothing is ever received: were the front to wait for the body, this would time out
    status, body, _ = run(front, [(b"content-length", b"5000")], [])
    assert (status, body["length"], body["body"]) == (200, "5000", "")


def test_a_body_that_trickles_past_the_deadline_is_408() -> None:
    app = EchoApp()
    front = BufferedWsgi(app, threads=2, max_body=100, body_seconds=0.5)
    status, body, headers = run(front, [(b"content-length", b"50")],
                                [(0.2, b"a", True)] * 10)
    assert status == 408
    assert body["issue"][0]["code"] == "timeout"
    assert body["issue"][0]["diagnostics"] == "the request body did not arrive within 0.5 s"
    assert (b"connection", b"close") in headers
    assert app.calls == 0
