"""CDS Hooks service: osteomyelitis or heterotopic ossification after partial-foot amputation?"""

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Create the Flask application (see :func:`cds_service.app.create_app`)."""
    from .app import create_app as factory

    return factory(*args, **kwargs)
