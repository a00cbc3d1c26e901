"""A full hook call that fetches from a FHIR server logs neither its access token nor patient id.

Everything is captured at DEBUG: the service's own logger (it does not propagate, so the capture
handler is attached to it directly), every other logger through the root (requests, urllib3,
SQLAlchemy...), and whatever reaches stderr or stdout. The one thing left out is the FHIR stub's
own access log: pytest-httpserver runs a werkzeug server in this process, and what the EHR's
server logs about requests it receives is not the service's log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from cds_service import create_app
from cds_service.logs import LOGGER_NAME

TOKEN = "SECRET-TOKEN-abc123"
PATIENT = "PATIENT-RAW-ID-98765"
EMPTY_BUNDLE = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}
# werkzeug's access-log line for a request to the stub, as its fallback stderr handler writes it
STUB_ACCESS_LINE = re.compile(r'^127\.0\.0\.1 - - \[[^\]]+\] "[A-Z]+ /fhir[/? ]')


class CaptureAll(logging.Handler):
    """Keeps every record as text: logger, level, message, structured fields, traceback."""

    def __init__(self, ignore_thread: int | None) -> None:
        super().__init__(level=logging.DEBUG)
        self.ignore_thread = ignore_thread
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.ignore_thread:  # the FHIR stub's server thread
            return
        text = f"{record.name} {record.levelname} {record.getMessage()}"
        text += f" {getattr(record, 'fields', '')}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.extend(text.splitlines())


@pytest.fixture
def fhir(httpserver: Any) -> str:
    """A FHIR stub: the Patient for a read, an empty searchset for every search."""
    httpserver.expect_request(re.compile(r"^/fhir/Patient/[^/?]+$")).respond_with_json(
        {"resourceType": "Patient", "id": PATIENT, "gender": "female", "birthDate": "1950-02-03"}
    )
    httpserver.expect_request(re.compile(r"^/fhir/.*")).respond_with_json(EMPTY_BUNDLE)
    return httpserver.url_for("/fhir")


@pytest.fixture
def records(httpserver: Any) -> Iterator[CaptureAll]:
    """Every log record of the process at DEBUG while the test runs (after create_app)."""
    stub_thread = httpserver.server_thread.ident if httpserver.server_thread else None
    handler = CaptureAll(ignore_thread=stub_thread)
    loggers = [logging.getLogger(), logging.getLogger(LOGGER_NAME)]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def hook_body(fhir: str) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": fhir,
        "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                              "scope": "patient/*.read", "subject": "cds"},
        "context": {"userId": "Practitioner/1", "patientId": PATIENT},
    }


def test_full_hook_call_logs_neither_token_nor_patient_id(
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    records: CaptureAll,
    httpserver: Any,
    fhir: str,
) -> None:
    # capfd is active before the app exists, so the app's stderr handler writes into it
    app = create_app({"auth_required": False, "fhir_server_allowlist": (fhir,),
                      "log_format": "json", "database_url": "sqlite://"})
    service_logger = logging.getLogger(LOGGER_NAME)
    service_logger.addHandler(caplog.handler)  # caplog only hears what reaches the root
    caplog.set_level(logging.DEBUG)  # root
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)  # create_app set it to INFO
    try:
        response = app.test_client().post("/cds-services/tma-bone-assessment",
                                          json=hook_body(fhir))
    finally:
        service_logger.removeHandler(caplog.handler)

    # the call really fetched from the stub, with the token
    assert httpserver.log, "the service did not fetch from the FHIR server"
    for request, _ in httpserver.log:
        assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
    assert any(PATIENT in request.full_path for request, _ in httpserver.log)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert TOKEN not in response.get_data(as_text=True)
    assert TOKEN not in str(dict(response.headers))

    out, err = capfd.readouterr()
    streams = [line for line in (*out.splitlines(), *err.splitlines())
               if not STUB_ACCESS_LINE.match(line)]
    caplog_lines = [
        f"{r.name} {r.getMessage()} {getattr(r, 'fields', '')}"
        for r in caplog.records if r.thread != records.ignore_thread
    ]
    assert any("hook.call" in line for line in records.lines), "no service log was captured"
    assert any("hook.call" in line for line in caplog_lines), "caplog saw no service log"
    assert any('"event": "hook.call"' in line for line in streams), "nothing reached stderr"
    # Third-party loggers count too: urllib3, for one, logs every request URL (query string and
    # all, so the patient id) at DEBUG, and retried URLs at WARNING; once any root handler is
    # configured those lines are the service's log.
    for line in [*records.lines, *caplog_lines, *streams]:
        assert TOKEN not in line, f"access token in a log line: {line}"
        assert PATIENT not in line, f"raw patient id in a log line: {line}"
