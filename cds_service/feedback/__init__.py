"""Feedback (CDS Hooks 2.0 §Feedback): what clinicians did with the cards, stored durably.

``model`` validates the payload; ``store`` keeps issued cards and feedback in SQLite or PostgreSQL
and builds the report behind ``cds-service feedback-report``.
"""

from .model import FeedbackItem, OverrideReason, parse_feedback

__all__ = ["FeedbackItem", "OverrideReason", "parse_feedback"]
