"""Logging configured once, at the edge: one structured line per hook call, no secrets.

Log records carry fields in ``record.fields`` (a dict). The JSON formatter writes them as keys;
the text formatter as ``key=value``. Patient ids only ever appear as a keyed hash
(:func:`pseudonym`), tokens and request bodies never.

Every string field passes through :func:`log_event`, which bounds it (:data:`MAX_FIELD_CHARS`)
and removes the ``user:password@`` of any URL in it, whoever logs it; the text formatter then
escapes control characters, newlines included, so one event is always one line
(:mod:`cds_service.safetext`). JSON lines are one line by construction (``json.dumps``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import time
from typing import Any

from .safetext import escape, without_credentials

LOGGER_NAME = "cds_service"
MAX_FIELD_CHARS = 256  # a client value longer than this is cut (hookInstance once made 4 MB lines)
_LONG_FIELDS = {"traceback": 8000}  # our own stack frames, never client text


def pseudonym(value: str | None, key: bytes) -> str | None:
    """Return a keyed hash of an identifier, short enough to read and stable within a deployment.

    Examples:
    - ``pseudonym("123", b"k")`` -> ``"p-9f86d0..."`` (16 hex digits)
    - ``pseudonym(None, b"k")`` -> ``None``
    """
    if value is None:
        return None
    digest = hmac.new(key, value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return "p-" + digest[:16]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        extra = " ".join(f"{k}={escape(str(v))}" for k, v in fields.items())
        line = f"{record.levelname.lower():7s} {escape(record.getMessage())} {extra}".rstrip()
        if record.exc_info:
            line += " exception=" + escape(self.formatException(record.exc_info))
        return line


def configure_logging(log_format: str) -> None:
    """Install one stderr handler on the service's logger (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    if logger.level == logging.NOTSET:  # a caller (e.g. replay) may have chosen a quieter level
        logger.setLevel(logging.INFO)
    logger.propagate = True  # lets pytest's caplog see records
    for handler in list(logger.handlers):
        if getattr(handler, "_cds_service", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._cds_service = True  # type: ignore[attr-defined]
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    # urllib3 logs request URLs (they hold patient ids) at DEBUG and on retries at WARNING.
    # A filter on each of its loggers withholds the message whatever handlers a site attaches.
    names = {"urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager",
             "urllib3.util.retry", "urllib3.response"}
    names.update(n for n in logging.root.manager.loggerDict if n.startswith("urllib3."))
    for name in names:
        third_party = logging.getLogger(name)
        if not any(isinstance(f, _WithholdUrls) for f in third_party.filters):
            third_party.addFilter(_WithholdUrls())


class _WithholdUrls(logging.Filter):
    """Replace a third-party HTTP library's message (it names URLs) by a neutral sentence."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"{record.name}: message withheld (request URLs carry patient ids)"
        record.args = ()
        return True


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with structured ``fields``.

    Callers pass no secrets and no raw patient ids; client strings are fine: each string is
    bounded and stripped of URL credentials here.
    """
    safe = {name: _bounded(name, value) if isinstance(value, str) else value
            for name, value in fields.items()}
    logger.log(level, event, extra={"fields": safe})


def _bounded(name: str, value: str) -> str:
    limit = _LONG_FIELDS.get(name, MAX_FIELD_CHARS)
    value = without_credentials(value)
    return value if len(value) <= limit else f"{value[:limit]}…(+{len(value) - limit} chars)"
