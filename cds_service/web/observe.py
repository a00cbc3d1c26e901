"""``GET /metrics`` and the per-request counts behind it (``cds_service.metrics``).

Every service call and feedback post is counted once, whatever answers it: the route, an error
handler, or the JWT guard's 401 (the timer starts before the guard). The ``service`` label is
the URL's id only when the registry serves it, else ``unknown``, so no client can add series.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request

from .. import metrics

bp = Blueprint("observe", __name__)

# Endpoints counted, and how: the hook call (count and latency) or the feedback post (count).
HOOK_ENDPOINT = "cds.invoke"
FEEDBACK_ENDPOINT = "feedback.post_feedback"


@bp.get("/metrics")
def exposition() -> Response:
    return Response(metrics.exposition(), mimetype=None,
                    headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"})


def _service_label() -> str:
    service_id = (request.view_args or {}).get("service_id", "")
    registry = current_app.extensions["cds_service"].registry
    return service_id if registry.has_service(service_id) else metrics.UNKNOWN


def init_app(app: Flask) -> None:
    """Register ``/metrics`` and the counting hooks; call before the JWT guard's."""
    app.register_blueprint(bp)

    @app.before_request
    def _start_timer() -> None:
        if request.endpoint in (HOOK_ENDPOINT, FEEDBACK_ENDPOINT):
            g.cds_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.pop("cds_started", None)
        if started is None:
            return response
        if request.endpoint == HOOK_ENDPOINT:
            metrics.hook_call(_service_label(), response.status_code,
                              time.perf_counter() - started)
        else:
            metrics.feedback_call(_service_label(), response.status_code)
        return response
