"""The application factory."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import web
from .auth import build_verifier
from .config import load_settings
from .db import Database
from .feedback.store import FeedbackStore
from .logs import LOGGER_NAME, configure_logging, log_event
from .runtime import Runtime
from .services import build_registry

log = logging.getLogger(LOGGER_NAME)


def create_app(test_config: Mapping[str, Any] | None = None, *, clock: Any = None) -> Flask:
    """Create and configure the CDS Hooks service.

    :param test_config: settings fields that override the ``CDS_*`` environment.
    :param clock: a callable returning "now" (tests and replays); default the real clock.
    :raises StartupError: the configuration or a mapping file is broken.
    """
    settings = load_settings(overrides=test_config, environ=os.environ)
    configure_logging(settings.log_format)
    registry = build_registry(settings)
    database = Database(settings.database_url)  # one per process, shared by every store
    rt = Runtime(settings=settings, registry=registry,
                 verifier=build_verifier(settings, database),
                 feedback=FeedbackStore(
                     database, retention_days=settings.feedback_retention_days,
                     rate_limit=settings.feedback_rate_limit), database=database, clock=clock)
    if not settings.auth_required:
        log_event(log, logging.WARNING, "auth.disabled",
                  note="CDS_AUTH_REQUIRED=false: any caller is trusted; local trial only")
    app = Flask(__name__)
    web.init_app(app, rt)
    return app


def freeze_startup_heap() -> None:
    """Put every object built at start-up (FHIR models, mappings, the app) out of the cyclic
    garbage collector's reach, in a server process after :func:`create_app`.

    A hook call on a large prefetch allocates hundreds of thousands of containers, which
    triggers full collections; without this each one walks the ~135,000 start-up objects too
    (a 5,000-Observation request: 174 ms -> 93 ms in-process). Objects stay alive as before.

    It also makes full (generation 2) collections rare: CPython 3.11 starts one whenever
    the survivors of younger collections exceed a quarter of the (unfrozen) old generation, so
    a request that keeps 20,000 resources alive while it is read set off one full collection
    after another, each walking everything the request had built so far: cost per 1,000
    Observations grew from ~14 ms (5,000 in a record) to ~33 ms (20,000; benchmarks.scaling,
    CPU time). With one full collection per :data:`FULL_COLLECTION_EVERY` collections of
    generation 1 the cost stays ~14 ms per 1,000 at every size. Request data is freed by
    reference counting as before; only garbage in reference cycles waits longer.

    The youngest generation is collected every :data:`YOUNG_COLLECTION_EVERY` container
    allocations instead of CPython's 700: parsing a 144 kB prefetch alone allocates ~20,000
    dicts and lists, all alive until the call ends, so a collection every 700 walked them
    again and again for nothing (3 % of a new TYPICAL chart's instructions, 19.43 -> 18.83 M).
    """
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, FULL_COLLECTION_EVERY)


FULL_COLLECTION_EVERY = 1000  # generation-1 collections per full one (CPython's default: 10)
YOUNG_COLLECTION_EVERY = 10_000  # container allocations per young collection (default: 700)


M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)


def share_one_malloc_arena() -> None:
    """Have every thread of a server process allocate from one glibc arena (call it first).

    glibc gives each thread its own arena, and memory freed in one is not reused by the others:
    with 8 clients sending 5 MB prefetches the 4 threads of each worker then keep ~4 bodies'
    worth of memory (workers' RSS +140 MB instead of ~100 MB). The interpreter lock already
    serialises the allocations, so one arena costs nothing measurable. (Mapping large buffers
    on their own, M_MMAP_THRESHOLD, saved as much memory but made every 5 MB request ~40 ms
    slower with fresh pages.) Nothing happens where the C library has no ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(M_ARENA_MAX, 1)
