"""Authentication of CDS clients at the HTTP edge (cds-hooks-2.0.md §6.7).

Every request needs a valid client JWT when authentication is on, except those that carry no
patient data: discovery (``GET /cds-services``), the probes (``GET /healthz``, ``GET /readyz``)
and the Prometheus scrape (``GET /metrics``; a scraper sends no JWT, so keep the path off the
public network: README, Deploying). CORS preflight
(``OPTIONS``) is answered by ``cors`` before this guard runs, and is skipped here too. Deny by
default: a route added later is protected without anyone remembering to protect it.

The verified issuer goes to ``flask.g.cds_client``; the pipeline calls only its FHIR servers.
A failure raises :class:`~cds_service.errors.ClientNotTrusted`, answered 401 by
``error_handlers`` (the reason goes to the log, the caller learns nothing).
"""

from __future__ import annotations

from flask import Flask, current_app, g, request

from ..auth import audience_for

OPEN_PATHS = frozenset({"/cds-services", "/healthz", "/readyz", "/metrics"})  # GET and HEAD only


def needs_token(method: str, path: str) -> bool:
    """Tell whether a request must carry a client JWT.

    Examples:
    - ``needs_token("POST", "/cds-services/tma-bone-assessment")`` -> ``True``
    - ``needs_token("POST", "/cds-services/tma-bone-assessment/feedback")`` -> ``True``
    - ``needs_token("GET", "/cds-services")`` -> ``False``
    - ``needs_token("GET", "/metrics")`` -> ``False``
    - ``needs_token("OPTIONS", "/cds-services/tma-bone-assessment")`` -> ``False``
    - ``needs_token("GET", "/app/launch")`` -> ``False`` (SMART app: the EHR authorises it)
    """
    if method == "OPTIONS" or path == "/app" or path.startswith("/app/"):
        return False  # preflight; the SMART app's browser routes (they authorise via the EHR)
    return not (method in ("GET", "HEAD") and (path.rstrip("/") or "/") in OPEN_PATHS)


def init_app(app: Flask) -> None:
    """Register the JWT guard."""

    @app.before_request
    def _authenticate() -> None:
        verifier = current_app.extensions["cds_service"].verifier
        if verifier is None or not needs_token(request.method, request.path):
            return
        settings = current_app.extensions["cds_service"].settings
        audience = audience_for(settings.public_url, request.base_url, request.path)
        g.cds_client = verifier.verify(request.headers.get("Authorization"), audience)
