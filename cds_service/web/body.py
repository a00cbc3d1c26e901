"""Reading a JSON request body: one place for 413, 415 and 400 on bad bodies."""

from __future__ import annotations

import json
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import PayloadTooLarge, RequestInvalid, UnsupportedMediaType


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
    raw = _read_at_most(request, max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestInvalid(
            f"request body is not UTF-8 (byte {exc.start} is invalid)", where="body"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestInvalid(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            where="body",
        ) from None
    except RecursionError:
        raise RequestInvalid("request body is nested too deeply", where="body") from None


def _read_at_most(request: Request, max_bytes: int) -> bytes:
    """Read the whole body, but no more than ``max_bytes`` of it.

    Without a Content-Length (chunked upload) one ``read`` may stop early, and werkzeug's own
    limit stops it exactly at ``MAX_CONTENT_LENGTH``: so read until the end, and take
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
