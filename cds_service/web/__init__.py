"""The only package that imports Flask."""

from __future__ import annotations

from flask import Flask

from ..runtime import Runtime
from . import body, cors, error_handlers, feedback, guards, routes


def init_app(app: Flask, rt: Runtime) -> None:
    """Register CORS, authentication, routes and error handlers on ``app``."""
    app.extensions["cds_service"] = rt
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_body_bytes
    cors.init_app(app, rt.settings.cors_origins)
    guards.init_app(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(feedback.bp)
    error_handlers.init_app(app)
    body.init_app(app)
