"""``POST /cds-services/{id}/feedback``: validate, store durably, then answer 200 ``{}``."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.exc import DBAPIError

from .. import metrics
from ..errors import Unavailable
from ..feedback.model import parse_feedback
from ..logs import LOGGER_NAME, log_event
from .body import read_json_body
from .routes import runtime

bp = Blueprint("feedback", __name__)
log = logging.getLogger(LOGGER_NAME)


@bp.post("/cds-services/<service_id>/feedback")
def post_feedback(service_id: str) -> Response:
    """Store the feedback items, all or none; 200 only once they are committed.

    :raise 400: the body or an item is invalid (the OperationOutcome names the field).
    :raise 403: a card was issued to another client (another JWT ``iss``).
    :raise 404: no service with that id.
    :raise 429: the client sent more than ``CDS_FEEDBACK_RATE_LIMIT`` items this minute.
    :raise 503: the database could not be written; nothing was stored, the client may retry.
    """
    rt = runtime()
    started = time.perf_counter()
    rt.registry.require(service_id)
    items = parse_feedback(read_json_body(request, rt.settings.max_body_bytes))
    fields: dict[str, Any] = {"service": service_id, "items": len(items)}
    try:
        client = g.get("cds_client")
        result = rt.feedback.store_feedback(service_id, items,
                                            client=client.iss if client is not None else None)
    except DBAPIError as exc:
        log_event(log, logging.ERROR, "feedback.not_stored", **fields,
                  error=type(exc.orig or exc).__name__)
        raise Unavailable(
            "feedback could not be stored right now; nothing was kept, please retry") from None
    metrics.feedback_stored(service_id, result.stored, result.duplicates)
    log_event(log, logging.INFO, "feedback.stored", **fields, stored=result.stored,
              duplicates=result.duplicates, unknown=result.unknown,
              duration_ms=round((time.perf_counter() - started) * 1000, 1))
    return jsonify({})
