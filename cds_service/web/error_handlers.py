"""The only place that maps errors to HTTP status codes; every error body is an OperationOutcome."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .. import errors
from ..logs import LOGGER_NAME, log_event
from ..smart.problem import UNEXPECTED, AppProblem

log = logging.getLogger(LOGGER_NAME)

STATUS = {
    errors.RequestInvalid: 400,
    errors.ClientNotTrusted: 401,
    errors.Forbidden: 403,
    errors.UnknownService: 404,
    errors.MissingData: 412,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.TooManyRequests: 429,
    errors.Unavailable: 503,
}
ISSUE_CODE = {400: "invalid", 401: "security", 403: "forbidden", 404: "not-found",
              405: "not-supported", 408: "timeout", 412: "incomplete", 413: "too-costly",
              414: "too-long",
              415: "structure", 429: "throttled", 431: "too-long", 500: "exception",
              503: "transient"}

# A 401 never tells the caller why (cds-hooks best practices): the reason goes to the log.
UNAUTHORIZED = "the request could not be authenticated"


def outcome_document(status: int, diagnostics: str, where: str | None = None) -> dict[str, Any]:
    """The OperationOutcome for a non-2xx status (also sent by the server front, ``web.asgi``)."""
    issue: dict[str, Any] = {"severity": "error", "code": ISSUE_CODE.get(status, "processing"),
                             "diagnostics": diagnostics}
    if where:
        issue["expression"] = [where]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def operation_outcome(status: int, diagnostics: str, where: str | None = None) -> Response:
    """Build the JSON response for a non-2xx status."""
    response = jsonify(outcome_document(status, diagnostics, where))
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def status_for(error: errors.CdsError) -> int:
    """Return the HTTP status of a service error."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def init_app(app: Flask) -> None:
    """Register the handlers."""

    @app.errorhandler(AppProblem)
    def _app_problem(problem: AppProblem) -> Response:
        # The SMART app's pages: a short HTML page with the problem's own status.
        return Response(problem.page(), status=problem.status, mimetype="text/html")

    @app.errorhandler(errors.CdsError)
    def _cds_error(error: errors.CdsError) -> Response:
        status = status_for(error)
        if status == 401:
            log_event(log, logging.WARNING, "auth.rejected", reason=error.message)
            return operation_outcome(401, UNAUTHORIZED)
        if status == 429:
            response = operation_outcome(429, error.message, error.where)
            response.headers["Retry-After"] = str(error.retry_after)  # type: ignore[attr-defined]
            return response
        if status == 503:
            response = operation_outcome(503, error.message)
            response.headers["Retry-After"] = "5"
            return response
        return operation_outcome(status, error.message, error.where)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 400
        if status == 413:
            return operation_outcome(413, "request body is larger than this service accepts",
                                     "body")
        response = operation_outcome(status, error.description or error.name)
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # The frames (file, line, source) but not the exception's message: a message may quote
        # data from the request, and patient data never goes to the log.
        frames = "".join(traceback.format_tb(error.__traceback__))
        log_event(log, logging.ERROR, "request.failed", error=type(error).__name__,
                  traceback=frames)
        if request.path.startswith("/app/"):  # the SMART app's browser pages
            return _app_problem(UNEXPECTED)
        return operation_outcome(500, "internal error; the service log has the details")
