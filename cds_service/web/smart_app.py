"""Routes of the evidence-timeline SMART app under ``/app/`` (browser routes: no client JWT;
``guards`` leaves them alone). Thin: :mod:`cds_service.smart.flow` does the work.

Every response carries the page's Content-Security-Policy (no script at all), ``no-store``,
``no-referrer`` and ``nosniff``. The one cookie holds an opaque session id: HttpOnly,
SameSite=Lax (the callback arrives as a top-level navigation from the EHR), Secure when
``CDS_PUBLIC_URL`` is https, path ``/app/``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, redirect, request

from ..smart.flow import SmartApp
from ..timeline import CSP

COOKIE = "tma_app_session"
bp = Blueprint("smart_app", __name__, url_prefix="/app")


def _app() -> SmartApp:
    return current_app.extensions["cds_smart_app"]


def _set_cookie(response: Response, value: str) -> None:
    response.set_cookie(COOKIE, value, httponly=True, samesite="Lax", path="/app/",
                        secure=_app().secure_cookie)


@bp.get("/launch")
def launch() -> Response:
    step = _app().launch(request.args.get("iss"), request.args.get("launch"))
    response = redirect(step.location, code=302)
    if step.cookie:
        _set_cookie(response, step.cookie)
    return response


@bp.get("/callback")
def callback() -> Response:
    params = {k: v for k, v in request.args.items()}
    step = _app().callback(request.cookies.get(COOKIE), params)
    response = redirect(step.location, code=303)
    if step.cookie:
        _set_cookie(response, step.cookie)
    return response


@bp.get("/timeline")
def timeline() -> Response:
    return Response(_app().page(request.cookies.get(COOKIE)), mimetype="text/html")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def init_app(app: Flask, smart: SmartApp) -> None:
    app.extensions["cds_smart_app"] = smart
    app.register_blueprint(bp)
