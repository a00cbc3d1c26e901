"""The only package that imports Flask."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from ..runtime import Runtime
from . import body, cors, error_handlers, feedback, guards, observe, routes


class FastJSONProvider(DefaultJSONProvider):
    """Responses serialised with orjson (measured faster for card lists), keys in build order."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # a type orjson does not know: Flask's own encoder
            return super().dumps(obj, **kwargs)


def init_app(app: Flask, rt: Runtime) -> None:
    """Register CORS, authentication, routes and error handlers on ``app``."""
    app.extensions["cds_service"] = rt
    app.json = FastJSONProvider(app)
    # One byte over our limit: werkzeug refuses a chunked body as soon as it has read exactly
    # MAX_CONTENT_LENGTH bytes, so a body of exactly max_body_bytes would get 413 (body.py).
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_body_bytes + 1
    cors.init_app(app, rt.settings.cors_origins)
    observe.init_app(app)  # before the guard: a 401 is counted and timed too
    guards.init_app(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(feedback.bp)
    if rt.settings.smart_client_id:
        from ..smart.flow import SmartApp  # Authlib is imported only when the app is on
        from . import smart_app

        smart_app.init_app(app, SmartApp(rt))
    error_handlers.init_app(app)
    body.init_app(app)
