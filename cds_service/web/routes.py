"""HTTP routes. Thin: parse, delegate to the domain, answer."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from ..errors import CdsError, Unavailable
from ..hooks import parse_request, peek_hook
from ..logs import LOGGER_NAME, log_event, pseudonym
from ..runtime import Runtime
from .body import read_json_body
from .error_handlers import status_for

bp = Blueprint("cds", __name__)
log = logging.getLogger(LOGGER_NAME)


def runtime() -> Runtime:
    return current_app.extensions["cds_service"]  # type: ignore[no-any-return]


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. Nothing else is checked (a database outage must not get
    every instance restarted)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: this instance can use its database (``SELECT 1``); 503 OperationOutcome when
    not, so the load balancer sends it no calls until it can."""
    try:
        runtime().database.ping()
    except SQLAlchemyError as exc:
        log_event(log, logging.WARNING, "ready.database_unreachable",
                  error=type(getattr(exc, "orig", None) or exc).__name__)
        raise Unavailable("this instance cannot reach its database; it is not ready") from None
    return jsonify({"status": "ready"})


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify(runtime().registry.discovery())


@bp.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    rt = runtime()
    started = time.perf_counter()
    fields: dict[str, Any] = {"service": service_id}
    status = 500
    try:
        rt.registry.require(service_id)
        body = read_json_body(request, rt.settings.max_body_bytes)
        hook = peek_hook(body)
        fields["hook"] = hook
        service = rt.registry.lookup(service_id, hook)
        hook_request = parse_request(body)
        fields["hookInstance"] = hook_request.hook_instance
        fields["patient"] = pseudonym(hook_request.patient_id, rt.settings.log_hash_key)
        client = g.get("cds_client")
        cards = rt.answer(service, hook_request, client)
        fields["cards"] = len(cards)
        status = 200
        return _cards_response(cards)
    except Exception as exc:
        status = _status_of(exc)
        raise
    finally:
        fields["status"] = status
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        log_event(log, logging.INFO, "hook.call", **fields)


def _cards_response(cards: list[dict[str, Any]]) -> Response:
    """``jsonify({"cards": cards})`` without its detour through ``str`` (FastJSONProvider: orjson
    text decoded, a newline added, encoded again): the same bytes and headers, ~30 K fewer
    instructions (~7 µs).
    Anything orjson cannot encode goes to ``jsonify`` (its fallback encoder) as before."""
    try:
        body = orjson.dumps({"cards": cards}) + b"\n"
    except TypeError:
        return jsonify({"cards": cards})
    return Response(body, content_type="application/json")  # what mimetype= would give


def _status_of(exc: Exception) -> int:
    return status_for(exc) if isinstance(exc, CdsError) else 500
