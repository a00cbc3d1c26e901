"""CORS for browser clients such as the CDS Hooks sandbox (cds-hooks-2.0.md §6.9).

Preflight is answered here, before any authentication; actual responses (4xx included) carry
``Access-Control-Allow-Origin`` for an allowed origin. No credentials are ever allowed.

Private Network Access (a public page asking the browser to reach a service on a private
address or localhost: ``Access-Control-Request-Private-Network: true``) is granted only to an
origin named in the list, never through ``*``: with the default ``*`` any web page the user
visits could otherwise have their browser probe a service inside the hospital network.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask, Response, request

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Accept"


def _allowed_origin(origin: str | None, allowed: Sequence[str]) -> str | None:
    if not origin:
        return None
    if "*" in allowed:
        return "*"
    return origin if _named(origin, allowed) else None


def _named(origin: str | None, allowed: Sequence[str]) -> bool:
    """True when ``origin`` is listed by name (the wildcard does not count)."""
    return bool(origin) and origin.rstrip("/") in allowed


def init_app(app: Flask, allowed: Sequence[str]) -> None:
    """Answer preflight requests and decorate responses."""

    @app.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS":
            return None
        response = Response(status=204)
        origin = _allowed_origin(request.headers.get("Origin"), allowed)
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
            if request.headers.get("Access-Control-Request-Private-Network") == "true" \
                    and _named(request.headers.get("Origin"), allowed):
                response.headers["Access-Control-Allow-Private-Network"] = "true"
        response.headers["Vary"] = "Origin"
        return response

    @app.after_request
    def _decorate(response: Response) -> Response:
        origin = _allowed_origin(request.headers.get("Origin"), allowed)
        if origin and "Access-Control-Allow-Origin" not in response.headers:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response
