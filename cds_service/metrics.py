"""The instance's Prometheus metrics (``GET /metrics``), summed over its gunicorn workers.

The official ``prometheus-client``. Under ``cds-service serve`` every worker process writes its
counts to memory-mapped files in one folder per instance (``PROMETHEUS_MULTIPROC_DIR``, the
library's multiprocess mode): :func:`use_multiprocess_dir` empties it and switches the library
to it before the workers fork, gunicorn's ``child_exit`` hook calls :func:`worker_exited`, and
:func:`exposition` adds up the files of every worker, live or dead, so a counter never goes
back while the instance runs (it starts again from 0 when the instance restarts, which
Prometheus' ``rate()`` expects). Elsewhere (tests, ``--dev``) the counts are this process's.

No label carries request data beyond these fixed sets: ``service`` is a served id or
``unknown`` (the web layer decides), ``status`` an HTTP status code, ``outcome``, ``kind``,
``indicator`` and ``result`` come from the short lists below. No patient, token, URL or issuer.

Instruments are built on first use, after :func:`use_multiprocess_dir` has chosen where their
values live (the library picks its value class when asked for a new series).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus version reads (our names need no escaping).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Hook latency buckets, seconds: the floor is ~2 ms, a cold typical chart ~10 ms, a 5 MB
# prefetch ~100-150 ms, and the FHIR fetch budget (2 x CDS_FHIR_TIMEOUT) 10 s by default.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)

# FHIR request outcomes (cds_service.fhir.client): one count per HTTP request attempted.
FHIR_OUTCOMES = ("ok", "not_found", "http_4xx", "http_5xx", "redirect", "timeout",
                 "unreachable", "broken", "too_large", "budget_exhausted")
INDICATORS = ("info", "warning", "critical")  # CDS Hooks 2.0 card indicators
UNKNOWN = "unknown"

# No ``*_created`` series: multiprocess mode has none, so one process and many look alike.
disable_created_metrics()


class Instruments:
    """The service's metrics, on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hook_requests = Counter(
            "cds_hook_requests", "CDS Hooks service calls, by service id and HTTP status",
            ["service", "status"], registry=registry)
        self.hook_duration = Histogram(
            "cds_hook_duration_seconds", "Time to answer a CDS Hooks service call (in the app)",
            ["service"], buckets=DURATION_BUCKETS, registry=registry)
        self.fhir_requests = Counter(
            "cds_fhir_requests", "HTTP requests to FHIR servers, by outcome (ok or the failure)",
            ["outcome"], registry=registry)
        self.feedback_requests = Counter(
            "cds_feedback_requests", "Feedback posts, by service id and HTTP status",
            ["service", "status"], registry=registry)
        self.feedback_items = Counter(
            "cds_feedback_items", "Feedback items committed (stored) or already there "
            "(duplicate)", ["service", "result"], registry=registry)
        self.cards = Counter(
            "cds_cards", "Cards returned, by service id, card kind and indicator",
            ["service", "kind", "indicator"], registry=registry)


_REGISTRY = CollectorRegistry(auto_describe=True)
_instruments: Instruments | None = None
_build = threading.Lock()


def instruments() -> Instruments:
    """This process's instruments (built on first use)."""
    global _instruments
    if _instruments is None:
        with _build:
            if _instruments is None:
                _instruments = Instruments(_REGISTRY)
    return _instruments


# ----- recording (called by the web layer, the runtime and the FHIR client) ---------------------


def hook_call(service: str, status: int, seconds: float) -> None:
    m = instruments()
    m.hook_requests.labels(service, str(status)).inc()
    m.hook_duration.labels(service).observe(seconds)


def feedback_call(service: str, status: int) -> None:
    instruments().feedback_requests.labels(service, str(status)).inc()


def feedback_stored(service: str, stored: int, duplicates: int) -> None:
    m = instruments()
    if stored:
        m.feedback_items.labels(service, "stored").inc(stored)
    if duplicates:
        m.feedback_items.labels(service, "duplicate").inc(duplicates)


def fhir_request(outcome: str) -> None:
    instruments().fhir_requests.labels(outcome if outcome in FHIR_OUTCOMES else UNKNOWN).inc()


def cards_returned(service: str, cards: Iterable[Any]) -> None:
    """Count the cards of one answer by kind (as the feedback report groups them) and
    indicator."""
    from .feedback.store import card_kind

    counter = instruments().cards
    for card in cards:
        indicator = card.get("indicator") if isinstance(card, dict) else None
        counter.labels(service, card_kind(card),
                       indicator if indicator in INDICATORS else UNKNOWN).inc()


# ----- exposition and the multiprocess folder ---------------------------------------------------


def exposition() -> bytes:
    """The Prometheus text exposition: every worker's counts added up under ``serve``."""
    instruments()  # so a scrape before the first request still lists the metric families
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(_REGISTRY)


def use_multiprocess_dir(path: str | os.PathLike[str]) -> Path:
    """Keep this instance's counts in ``path`` from now on; call it in the gunicorn master
    before any worker starts. Files left by an earlier run of the instance are deleted (a
    restarted instance starts from 0; stale files would add a dead run's counts).

    :raises RuntimeError: instruments were already built in this process (their values would
        stay in the process instead of the folder).
    """
    if _instruments is not None:
        raise RuntimeError("metrics were used before the multiprocess folder was chosen")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    values.ValueClass = values.get_value_class()
    return folder


def worker_exited(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook: a dead worker's live gauges go; its counts stay."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        mark_process_dead(worker.pid, folder)
