"""The server front: whole requests are read on an event loop, then handled in worker threads.

``cds-service serve`` runs gunicorn's asyncio worker (``worker_class="asgi"``). gunicorn parses
each request's line and headers on the event loop; :class:`BufferedWsgi` then reads the whole
body there too, and only a complete request is handed to the Flask app, in a thread pool of
``--threads`` per worker (the WSGI environ is built by a2wsgi's ``build_environ``). A client
that sends its request a byte a second holds a socket and a few bytes of buffer, never a thread:
the threads only ever wait for our own work (rules, FHIR fetches, the database). With gunicorn's
threaded worker (gthread) every slow client held one of the 4 threads of a worker while it sent
its header or body, and 20 of them left ``/healthz`` unanswered (issue 13 item 7;
``tests/test_slow_clients.py``).

Large bodies take turns here, before they are read (the rule of ``web.body``: bodies over
``LARGE_BODY`` or of unknown length while at most ``LARGE_IN_FLIGHT`` bytes of them are in the
worker), so eight clients sending 5 MB at once do not all sit in memory; a waiting body stays in
the client's socket. The app then skips its own turn (``TURN_TAKEN`` in the scope). A request
with neither ``Content-Length`` nor ``Transfer-Encoding`` has no body and takes no turn (a
``/healthz`` does not wait behind a 5 MB prefetch).

Memory: the body is read into one buffer of its declared length (each piece is copied in and
freed), handed to the app as :class:`~cds_service.web.body.WholeBody` without a reference kept
here, and taken by ``read_json_body`` for orjson without a copy, so a large body is in memory
once and only until it is parsed. After a large body the C heap's free pages are given back
(``malloc_trim``). Together these took the benchmark's HEAVY-cold RSS growth (8 clients,
master + 2 workers) from ~149 to ~110 MB.

Bounds, per request: the body is read up to the service's ``CDS_MAX_BODY_BYTES`` within
:data:`BODY_SECONDS`; a longer chunked body gets 413, a late one 408 (OperationOutcome, and the
connection is closed). A declared ``Content-Length`` over the limit is not read at all: the app
answers 413 from the header. gunicorn bounds the request line and headers (``limit_request_line``,
``limit_request_field_size``) and the connections per worker (``worker_connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from a2wsgi.wsgi import build_environ

from .body import LARGE_BODY, LARGE_IN_FLIGHT, LARGE_WAIT, TURN_TAKEN, WholeBody
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
        self._app = app
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cds-app")
        self._max_body = max_body
        self._body_seconds = body_seconds
        self._turns = _Turns()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})
        if scope["type"] != "http":
            return
        declared = _content_length(scope)
        too_large = declared is not None and declared > self._max_body
        if too_large or (declared is not None and declared <= LARGE_BODY):
            await self._serve(scope, receive, send, declared, too_large)
            return
        size = min(declared or LARGE_IN_FLIGHT, LARGE_IN_FLIGHT)
        await self._turns.acquire(size)
        try:
            await self._serve({**scope, TURN_TAKEN: True}, receive, send, declared, too_large)
        finally:
            await self._turns.release(size)
            if _malloc_trim is not None:
                # Its memory is free now: give the C heap's free pages back (about 1 ms, in a
                # thread, not on the loop), so they do not add to the next large body's peak.
                with contextlib.suppress(RuntimeError):  # no new threads at interpreter exit
                    self._pool.submit(_malloc_trim, 0)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, declared: int | None,
                     too_large: bool) -> None:
        body: bytes | bytearray
        if too_large:
            body = b""  # the app answers 413 from the header alone
        else:
            try:
                async with asyncio.timeout(self._body_seconds):  # no task per request (wait_for)
                    body = await self._read_body(receive, declared)
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
        environ = build_environ({**scope, "headers": headers}, WholeBody(body))  # type: ignore
        # The environ's input is now the one holder of the body: the app takes the bytes from
        # it to parse them (``read_json_body``), and they are freed once parsed, not kept here
        # until the answer has gone out.
        del body
        # One hand-over to a thread and one back: the app's whole answer comes back at once
        # (its responses are JSON documents built in memory), then goes out from here.
        loop = asyncio.get_running_loop()
        status, response_headers, chunks = await loop.run_in_executor(
            self._pool, _run_wsgi, self._app, environ)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                for name, value in response_headers]})
        await send({"type": "http.response.body", "body": b"".join(chunks),
                    "more_body": False})

    async def _read_body(self, receive: Receive, declared: int | None) -> bytearray | None:
        """The whole body, in one buffer of the declared length filled as the pieces arrive
        (each piece is freed at once: no list of pieces and joined copy side by side)."""
        body = bytearray(declared or 0)
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                end = total + len(chunk)
                if end <= len(body):
                    body[total:end] = chunk  # same length: copied in place, never resized
                else:  # no length was declared (chunked), or more came than it said
                    del body[total:]
                    body += chunk
                total = end
            if not message.get("more_body", False) or total > self._max_body:
                del body[total:]  # less came than was declared: the app sees what came
                return body


def _run_wsgi(app: Any, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]],
                                                          list[bytes]]:
    """Call a WSGI app (PEP 3333) in a worker thread; return status, headers and body chunks."""
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [int(status.split(" ", 1)[0]), headers]
        return chunks.append

    iterable = app(environ, start_response)
    try:
        chunks.extend(chunk for chunk in iterable if chunk)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return started[0], started[1], chunks


class _Turns:
    """Bytes of large bodies in this worker, on its event loop (``web.body``'s rule)."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._changed: asyncio.Condition | None = None

    async def acquire(self, size: int) -> None:
        if self._changed is None:
            self._changed = asyncio.Condition()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LARGE_WAIT
        async with self._changed:
            while self._in_flight and self._in_flight + size > LARGE_IN_FLIGHT:
                left = deadline - loop.time()
                if left <= 0:
                    break  # waited long enough: go ahead anyway
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    break
            self._in_flight += size

    async def release(self, size: int) -> None:
        if self._changed is None:  # acquire always runs first
            return
        async with self._changed:
            self._in_flight -= size
            self._changed.notify_all()


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None where the C library has none)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_malloc_trim = _find_malloc_trim()


def _content_length(scope: Scope) -> int | None:
    """The body's declared length; None when it is not known (a chunked upload); 0 when the
    request has neither header: it has no body then (RFC 9112 §6.3), and takes no turn."""
    length: int | None = 0
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # gunicorn refuses a malformed Content-Length before we run
        if name == b"transfer-encoding":
            length = None
    return length


async def _refuse(send: Send, status: int, diagnostics: str) -> None:
    body = orjson.dumps(outcome_document(status, diagnostics, "body"))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
