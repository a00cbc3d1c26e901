"""The evidence timeline (issue 15): the patient's trajectory against days since the index
amputation, with the patient-view assessment beside it. Domain only: no Flask.

Pipeline: :mod:`model` (what to show, from the same Evaluation as the card) → :mod:`chart`
(geometry) → :mod:`page` (HTML with inline SVG, escaped by Jinja2).
"""

from .page import CSP, render_message, render_page

__all__ = ["CSP", "render_message", "render_page"]
