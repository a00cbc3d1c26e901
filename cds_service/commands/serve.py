"""``cds-service serve``: gunicorn, its asyncio worker in front of a thread pool per process
(``--dev``: Flask's reloader).

Each worker process reads whole requests on an event loop and runs the Flask app on them in
``--threads`` threads (``web.asgi``), so a slow client holds a socket, never a thread.

Metrics (``GET /metrics``) are summed over the workers through one folder of this instance:
``PROMETHEUS_MULTIPROC_DIR`` when set (emptied at start; give each instance its own), else a
new temporary folder removed when the server stops (``cds_service.metrics``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the CDS service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes (default 2: one per core on the reference machine)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--dev", action="store_true", help="Flask's reloader instead of gunicorn")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import metrics
    from ..app import create_app

    if args.dev:
        create_app().run(host=args.host, port=args.port, use_reloader=True)
        return 0
    timeout = max(30, int(4 * float(os.environ.get("CDS_FHIR_TIMEOUT", "5"))))
    # One pseudonym key for every worker of this server, so a patient hashes alike in all of
    # them (set CDS_LOG_HASH_KEY to keep it across restarts too).
    os.environ.setdefault("CDS_LOG_HASH_KEY", secrets.token_hex(32))
    create_app()  # fail fast, in the parent, on broken configuration or mappings
    given = os.environ.get(metrics.MULTIPROC_ENV)
    folder = metrics.use_multiprocess_dir(given or tempfile.mkdtemp(prefix="cds-metrics-"))
    master = os.getpid()
    try:
        serve_with_gunicorn(worker_app, gunicorn_options(args.host, args.port, args.workers,
                                                         args.threads, timeout))
    finally:
        # Workers leave gunicorn through here too (SystemExit): only the master tidies up.
        if not given and os.getpid() == master:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def worker_app() -> Any:
    """The app of one gunicorn worker: one malloc arena, start-up heap frozen (see ``app``)."""
    from ..app import create_app, freeze_startup_heap, share_one_malloc_arena

    share_one_malloc_arena()
    app = create_app()
    freeze_startup_heap()
    return app


def gunicorn_options(host: str, port: int, workers: int, threads: int,
                     timeout: int = 30) -> dict[str, Any]:
    """The gunicorn configuration of ``serve`` (the benchmark's floor app uses the same).

    ``threads`` is not a gunicorn setting here: it sizes each worker's pool that runs the app
    (:func:`serve_with_gunicorn`).
    """
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "asgi",
        "cds_threads": threads,
        "asgi_lifespan": "off",  # nothing to start or stop per worker beyond the app itself
        "timeout": timeout,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        # gunicorn 27 opens a control socket ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl) that
        # can reload or stop the server: nothing here uses it.
        "control_socket_disable": True,
        "child_exit": _worker_exited,
    }


def _worker_exited(server: Any, worker: Any) -> None:
    from .. import metrics

    metrics.worker_exited(server, worker)


def serve_with_gunicorn(factory: Callable[[], Any], options: dict[str, Any]) -> None:
    """Run gunicorn in this process (it becomes the master) with ``factory()`` in each worker,
    behind :class:`~cds_service.web.asgi.BufferedWsgi` (whole requests, then a thread)."""
    from gunicorn.app.base import BaseApplication

    settings = dict(options)
    threads = int(settings.pop("cds_threads", 4))

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from ..config import load_settings
            from ..web.asgi import BufferedWsgi

            app = factory()
            limit = getattr(app, "config", {}).get("MAX_CONTENT_LENGTH") \
                or load_settings().max_body_bytes
            return BufferedWsgi(app, threads=threads, max_body=int(limit))

    Server().run()
