"""Reading a JSON request body: one place for 413, 415 and 400 on bad bodies."""

from __future__ import annotations

import json
from typing import Any

from flask import Request

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
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"request body is larger than {max_bytes} bytes, the limit of this service",
            where="body",
        )
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
