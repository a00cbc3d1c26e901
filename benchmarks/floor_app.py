"""The floor: a bare Flask app that parses the body with orjson and answers no cards.

It parses with ``orjson.loads``, the parser the service itself uses, so the ratio is not
flattered on large bodies by a slower floor parser.

It runs under exactly the gunicorn configuration of ``cds-service serve``
(:func:`cds_service.commands.serve.gunicorn_options`), so the service's figures divided by the
floor's say what the service itself costs above parsing the same body.

    python -m benchmarks.floor_app --port 8099 --workers 2 --threads 4
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import orjson
from flask import Flask, Response, jsonify, request


def create_floor_app() -> Flask:
    app = Flask("floor")

    @app.post("/cds-services/<service_id>")
    def invoke(service_id: str) -> Response:
        orjson.loads(request.get_data())
        return jsonify({"cards": []})

    @app.get("/healthz")
    def healthz() -> Response:  # the benchmark checks that its own master answers
        return jsonify({"status": "ok", "app": "floor", "master": os.getppid()})

    return app


app = create_floor_app()


def main(argv: Any = None) -> int:
    from cds_service.commands.serve import gunicorn_options, serve_with_gunicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    serve_with_gunicorn(create_floor_app, gunicorn_options(args.host, args.port, args.workers,
                                                           args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
