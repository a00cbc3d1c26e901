"""Reading a JSON request body: one place for 413, 415 and 400 on bad bodies."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import orjson
from flask import Flask, Request, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import PayloadTooLarge, RequestInvalid, UnsupportedMediaType

# Large bodies take turns within a worker process. A 5 MB prefetch becomes ~40 MB of Python
# objects while it is parsed and read; four at once in one gthread worker cost four times the
# memory and finish no sooner, because they share one interpreter lock. So bodies over
# LARGE_BODY bytes (or of unknown length) are read and handled while at most
# LARGE_IN_FLIGHT bytes of them are in the worker (one alone is always let in); a request that
# has waited LARGE_WAIT seconds goes ahead anyway. Smaller bodies never wait.
LARGE_BODY = 1_000_000
LARGE_IN_FLIGHT = 8_000_000
LARGE_WAIT = 10.0
# Set in the ASGI scope by the server front (``web.asgi``) when it has already taken the turn.
TURN_TAKEN = "cds.large_body_turn"


class WholeBody(io.RawIOBase):
    """``wsgi.input`` of a body the server front (``web.asgi``) has already read whole.

    Any WSGI code can read it as a stream. :func:`read_json_body` takes the bytes themselves
    instead (:meth:`take`: no copy), and the stream lets go of them: the parser's input is then
    the one copy of the body in the process, and it is freed as soon as it has been parsed.
    """

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__()
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        start = self._pos
        count = min(len(buffer), len(self._data) - start)
        with memoryview(self._data) as view:
            buffer[:count] = view[start:start + count]
        self._pos = start + count
        return count

    def take(self, length: int) -> bytes | bytearray | None:
        """The bytes not read yet when there are ``length`` of them (the front's own object
        when nothing was read), and the stream is at its end; else None, and nothing changes."""
        if len(self._data) - self._pos != length:
            return None
        data = self._data if self._pos == 0 else self._data[self._pos:]
        self._data, self._pos = b"", 0
        return data


class _LargeBodies:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._in_flight = 0

    def acquire(self, size: int) -> None:
        deadline = time.monotonic() + LARGE_WAIT
        with self._changed:
            while self._in_flight and self._in_flight + size > LARGE_IN_FLIGHT:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            self._in_flight += size

    def release(self, size: int) -> None:
        with self._changed:
            self._in_flight -= size
            self._changed.notify_all()


_large = _LargeBodies()


def init_app(app: Flask) -> None:
    """Give a large body's turn back when its request ends, however it ends."""
    app.extensions["cds_large_bodies"] = _large

    @app.teardown_request
    def _end_turn(exc: BaseException | None) -> None:
        size = g.pop("cds_large_body", None)
        if size:
            _large.release(size)


def _take_turn(length: int | None) -> None:
    if (length is not None and length <= LARGE_BODY) or g.get("cds_large_body") \
            or "cds_large_bodies" not in current_app.extensions:  # no turns without init_app
        return
    if request.environ.get("asgi.scope", {}).get(TURN_TAKEN):  # the front took it (a2wsgi)
        return
    size = min(length or LARGE_IN_FLIGHT, LARGE_IN_FLIGHT)
    _large.acquire(size)
    g.cds_large_body = size


def read_json_body(request: Request, max_bytes: int) -> Any:
    """Return the parsed JSON body, or raise the error that says what is wrong with it."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(
            f"request body is {length} bytes; this service accepts at most {max_bytes}",
            where="body",
        )
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        shown = mimetype or "none"
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {shown}", where="header Content-Type"
        )
    _take_turn(length)
    source = request.environ.get("wsgi.input")
    raw = source.take(length) if isinstance(source, WholeBody) and length is not None else None
    if raw is None:
        raw = _read_at_most(request, max_bytes)
    return parse_json(raw)


def parse_json(raw: bytes | bytearray) -> Any:
    """The parsed body, or :class:`RequestInvalid` saying why it is not UTF-8 JSON.

    orjson reads the bytes themselves (it checks UTF-8 as it goes): no text copy of the body.
    A body it refuses is looked at again as text, so the reason given is the same as it was
    when every body was decoded first (which byte is not UTF-8, or where the JSON is broken).
    """
    try:
        # orjson: strict JSON (no NaN, no lone surrogates), nesting capped at 1,024 levels, and
        # about half the time of json.loads on a prefetch (make bench).
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestInvalid(
            f"request body is not UTF-8 (byte {exc.start} is invalid)", where="body"
        ) from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        reason = "nested too deeply" if "depth" in exc.msg.lower() else \
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise RequestInvalid(f"request body is {reason}", where="body") from None


def _read_at_most(request: Request, max_bytes: int) -> bytes:
    """Read the whole body, but no more than ``max_bytes`` of it.

    Without a Content-Length (chunked upload) one ``read`` may stop early, and werkzeug's own
    limit (``MAX_CONTENT_LENGTH``, set one byte above ``max_bytes`` so that a body of exactly
    ``max_bytes`` ends cleanly) raises once it is reached: so read until the end, and take
    werkzeug's 413 for ours.
    """
    too_large = PayloadTooLarge(
        f"request body is larger than {max_bytes} bytes, the limit of this service", where="body")
    chunks, total = [], 0
    try:
        while chunk := request.stream.read(min(65536, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise too_large
    except RequestEntityTooLarge:
        raise too_large from None
    return b"".join(chunks)
