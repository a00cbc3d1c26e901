"""The server front: whole requests are read on an event loop, then handled in worker threads.

``cds-service serve`` runs gunicorn's asyncio worker (``worker_class="asgi"``). gunicorn parses
each request's line and headers on the event loop; :class:`BufferedWsgi` then reads the whole
body there too, and only a complete request is handed to the Flask app, in a thread pool
(a2wsgi's ``WSGIMiddleware``). A client that sends its request a byte a second holds a socket
and a few bytes of buffer, never a thread: the threads only ever wait for our own work (rules,
FHIR fetches, the database). With gunicorn's threaded worker (gthread) every slow client held
one of the 4 threads of a worker while it sent its header or body, and 20 of them left
``/healthz`` unanswered (issue 13 item 7; ``tests/test_slow_clients.py``).

Bounds, per request: the body is read up to the service's ``CDS_MAX_BODY_BYTES`` within
:data:`BODY_SECONDS`; a longer chunked body gets 413, a late one 408 (OperationOutcome, and the
connection is closed). A declared ``Content-Length`` over the limit is not read at all: the app
answers 413 from the header. gunicorn bounds the request line and headers (``limit_request_line``,
``limit_request_field_size``) and the connections per worker (``worker_connections``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from a2wsgi import WSGIMiddleware

from .error_handlers import outcome_document

BODY_SECONDS = 30.0  # the whole body must arrive within this (a 5 MB body at ~170 kB/s)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BufferedWsgi:
    """An ASGI app that runs a WSGI app on complete requests only.

    :param app: the WSGI app (Flask).
    :param threads: threads that run ``app`` (per worker process).
    :param max_body: the most body bytes the app accepts; one more is read so it can refuse.
    """

    def __init__(self, app: Any, *, threads: int, max_body: int,
                 body_seconds: float = BODY_SECONDS) -> None:
        self._wsgi = WSGIMiddleware(app, workers=threads)
        self._max_body = max_body
        self._body_seconds = body_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._wsgi(scope, receive, send)  # lifespan (websockets: closed)
            return
        declared = _content_length(scope)
        too_large = declared is not None and declared > self._max_body
        if too_large:
            body = b""  # the app answers 413 from the header alone
        else:
            try:
                body = await asyncio.wait_for(self._read_body(receive), self._body_seconds)
            except TimeoutError:
                await _refuse(send, 408, f"the request body did not arrive within "
                                         f"{self._body_seconds:g} s")
                return
            if body is None:
                return  # the client went away
            if len(body) > self._max_body:  # a chunked upload without a declared length
                await _refuse(send, 413, f"request body is larger than {self._max_body} bytes, "
                                         "the limit of this service")
                return
        # The app sees a body of known length: the one read here (a chunked upload included;
        # without a length WSGI apps read an empty body).
        headers = [(n, v) for n, v in scope.get("headers", ())
                   if n not in (b"content-length", b"transfer-encoding")]
        headers.append((b"content-length", str(declared if too_large else len(body)).encode()))
        scope = {**scope, "headers": headers}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._wsgi(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                total += len(chunk)
            if not message.get("more_body", False) or total > self._max_body:
                return b"".join(chunks)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # gunicorn refuses a malformed Content-Length before we run
    return None


async def _refuse(send: Send, status: int, diagnostics: str) -> None:
    body = orjson.dumps(outcome_document(status, diagnostics, "body"))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
