"""The server front (``web.asgi.BufferedWsgi``) in-process: the app sees only whole requests.

Driven with hand-made ASGI messages, as gunicorn's asyncio worker sends them, so the bounds
(body size, body deadline) are checked without a server or a 30 s wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from typing import Any

import pytest

from cds_service.fhir.resources import bundle_resources
from cds_service.replay import build_request
from cds_service.web import asgi
from cds_service.web.asgi import BufferedWsgi
from cds_service.web.body import LARGE_BODY, WholeBody
from tests.conftest import load_record, make_app


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


def test_a_body_shorter_than_declared_reaches_the_app_with_its_real_length() -> None:
    front = BufferedWsgi(EchoApp(), threads=2, max_body=100)
    status, body, _ = run(front, [(b"content-length", b"20")],
                          [(0, b"hello", True), (0, b" world", False)])
    assert (status, body["length"], body["body"]) == (200, "11", "hello world")


class TakingApp:
    """A WSGI app that takes the body from the front's input as ``read_json_body`` does, and
    says how many references to it exist then (2: its own and ``getrefcount``'s)."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        source = environ["wsgi.input"]
        assert isinstance(source, WholeBody)
        data = source.take(int(environ["CONTENT_LENGTH"]))
        holders = sys.getrefcount(data)
        answer = json.dumps({"holders": holders, "type": type(data).__name__,
                             "body": bytes(data).decode(), "left": source.read().decode()})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [answer.encode()]


def test_the_app_holds_the_only_reference_to_the_body_once_it_takes_it() -> None:
    # The front fills one buffer and hands it over without a copy or a reference of its own,
    # so the body is freed as soon as the app has parsed it.
    front = BufferedWsgi(TakingApp(), threads=2, max_body=100)
    status, answer, _ = run(front, [(b"content-length", b"11")],
                            [(0, b"hello", True), (0, b" world", False)])
    assert (status, answer) == (200, {"holders": 2, "type": "bytearray", "body": "hello world",
                                      "left": ""})


def _answer_of(front: BufferedWsgi, headers: list[tuple[bytes, bytes]],
               body: bytes) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)] or [b""]

        async def receive() -> dict[str, Any]:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        request = {**scope(headers), "path": HOOK, "raw_path": HOOK.encode()}
        await asyncio.wait_for(front(request, receive, send), timeout=30)

    asyncio.run(main())
    status = next(m for m in sent if m["type"] == "http.response.start")["status"]
    return status, b"".join(m.get("body", b"") for m in sent
                            if m["type"] == "http.response.body")


HOOK = "/cds-services/tma-bone-assessment"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.mark.parametrize("padding", [0, 1_200_000])  # a small body, and one that takes a turn
def test_a_hook_call_through_the_front_is_answered_as_by_the_app_itself(padding: int) -> None:
    app = make_app()
    client = app.test_client()
    record = load_record("charcot-bone-scan")
    resources = bundle_resources(record)
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    request = build_request(client.get("/cds-services").get_json(), "tma-bone-assessment",
                            "patient-view", resources, patient)
    raw = json.dumps(request).encode() + b" " * padding
    direct = client.post(HOOK, data=raw, content_type="application/json")
    front = BufferedWsgi(app, threads=2, max_body=5_000_000)
    status, answer = _answer_of(front, [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(raw)).encode())], raw)
    assert (status, UUID.sub(b"<uuid>", answer)) == \
        (direct.status_code, UUID.sub(b"<uuid>", direct.get_data()))
    assert json.loads(answer)["cards"]


def test_a_request_without_a_body_does_not_wait_for_a_large_bodys_turn() -> None:
    # A large body holds the worker's turn while it trickles in; a GET (no Content-Length, no
    # Transfer-Encoding: no body) is answered meanwhile, not after LARGE_WAIT seconds.
    front = BufferedWsgi(EchoApp(), threads=2, max_body=5_000_000)
    sent: list[dict[str, Any]] = []

    async def main() -> float:
        async def trickle() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def nothing() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        large = asyncio.create_task(front(scope([(b"content-length", b"2000000")]), trickle,
                                          send))
        await asyncio.sleep(0.1)  # it has its turn and waits for its body
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(front({**scope([]), "method": "GET"}, nothing, send), timeout=5)
        elapsed = asyncio.get_running_loop().time() - started
        large.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await large
        return elapsed

    elapsed = asyncio.run(main())
    assert elapsed < 1.0
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200]


def test_the_c_heap_is_trimmed_after_a_large_body_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(asgi, "_malloc_trim", calls.append)
    front = BufferedWsgi(EchoApp(), threads=2, max_body=5_000_000)
    run(front, [(b"content-length", b"5")], [(0, b"small", False)])
    front._pool.shutdown(wait=True)
    assert calls == []
    front = BufferedWsgi(EchoApp(), threads=2, max_body=5_000_000)
    large = b"x" * (LARGE_BODY + 1)
    run(front, [(b"content-length", str(len(large)).encode())], [(0, large, False)])
    front._pool.shutdown(wait=True)
    assert calls == [0]
