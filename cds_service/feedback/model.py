"""The feedback payload (CDS Hooks 2.0 §Feedback) parsed into values, or a 400 naming the field.

A body is ``{"feedback": [item, ...]}``; each item says what the clinician did with one card::

    {"card": "<card.uuid>", "outcome": "accepted" | "overridden",
     "acceptedSuggestions": [{"id": "<suggestion.uuid>"}],        # required when accepted
     "overrideReason": {"reason": {"code": "...", "system": "..."}, "userComment": "..."},
     "outcomeTimestamp": "1985-04-12T23:20:50.52Z"}

Tolerated on purpose: ``reason`` without ``system`` or ``display`` (the public sandbox sends only
``code``), an offset instead of ``Z``, ``null`` for an optional field, fields we do not know.
Strings that no database can hold (NUL characters, lone surrogates) and identifiers longer than
:data:`MAX_ID` are refused with a 400 rather than failing later as a 500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import RequestInvalid

OUTCOMES = ("accepted", "overridden")
MAX_ID = 256  # card and suggestion uuids, reason codes: they are indexed or grouped on
MAX_TEXT = 10_000  # userComment, system, display
MAX_ITEMS = 100  # items per request: an EHR reports card outcomes as they happen, a few at a time

# RFC 3339 §5.6 date-time; "T"/"Z" may be lower case (§5.6 NOTE), seconds may be 60 (leap second).
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<hms>\d{2}:\d{2}):(?P<sec>\d{2})(?P<frac>\.\d+)?"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})\Z"
)


@dataclass(frozen=True)
class OverrideReason:
    """Why a card was overridden: a coded reason, a comment, or both."""

    code: str | None = None
    system: str | None = None
    display: str | None = None
    comment: str | None = None

    @property
    def label(self) -> str | None:
        """What a person reads in the report: the display, else the code."""
        return self.display or self.code


@dataclass(frozen=True)
class FeedbackItem:
    """One validated feedback item; ``outcome_timestamp`` is an aware UTC datetime."""

    card: str
    outcome: str
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...] = ()
    override_reason: OverrideReason | None = None


def parse_feedback(payload: Any) -> list[FeedbackItem]:
    """Validate a feedback request body and return its items, in order.

    :raises RequestInvalid: with a one-sentence message and ``where`` naming the field, e.g.
        "feedback[2].outcomeTimestamp".
    """
    if not isinstance(payload, dict):
        raise RequestInvalid("request body must be a JSON object", where="body")
    items = payload.get("feedback")
    if items is None:
        raise RequestInvalid("feedback is required (an array of feedback items)",
                             where="feedback")
    if not isinstance(items, list):
        raise RequestInvalid("feedback must be an array of feedback items", where="feedback")
    if not items:
        raise RequestInvalid("feedback must hold at least one item", where="feedback")
    if len(items) > MAX_ITEMS:
        raise RequestInvalid(f"feedback holds {len(items)} items; at most {MAX_ITEMS} per "
                             "request", where="feedback")
    return [_parse_item(item, f"feedback[{i}]") for i, item in enumerate(items)]


def parse_timestamp(value: str) -> datetime | None:
    """Return an RFC 3339 date-time as an aware UTC datetime, or None when it is not one.

    Examples:
    - ``"1985-04-12T23:20:50.52Z"`` -> 1985-04-12 23:20:50.520000+00:00
    - ``"1996-12-19T16:39:57-08:00"`` -> 1996-12-20 00:39:57+00:00
    - ``"2024-01-01"``, ``"2024-01-01T10:00:00"`` (no zone) -> None
    """
    match = _RFC3339.match(value)
    if match is None:
        return None
    seconds = match["sec"]
    leap = seconds == "60"
    frac = (match["frac"] or "")[:7]  # microseconds; finer digits cannot be stored anyway
    zone = "+00:00" if match["zone"] in "Zz" else match["zone"]
    text = f"{match['date']}T{match['hms']}:{'59' if leap else seconds}{frac}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
        return (parsed + timedelta(seconds=1 if leap else 0)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _parse_item(item: Any, where: str) -> FeedbackItem:
    if not isinstance(item, dict):
        raise RequestInvalid(f"{where} must be a JSON object", where=where)
    card = _identifier(item.get("card"), f"{where}.card", required=True)
    outcome = item.get("outcome")
    if outcome is None:
        raise RequestInvalid(f"{where}.outcome is required (accepted or overridden)",
                             where=f"{where}.outcome")
    if outcome not in OUTCOMES:
        raise RequestInvalid(
            f"{where}.outcome must be accepted or overridden, not {_shown(outcome)}",
            where=f"{where}.outcome",
        )
    suggestions = _accepted_suggestions(item.get("acceptedSuggestions"),
                                        f"{where}.acceptedSuggestions",
                                        required=outcome == "accepted")
    reason = _override_reason(item.get("overrideReason"), f"{where}.overrideReason")
    stamp_where = f"{where}.outcomeTimestamp"
    stamp = item.get("outcomeTimestamp")
    if stamp is None:
        raise RequestInvalid(f"{stamp_where} is required", where=stamp_where)
    parsed = parse_timestamp(stamp) if isinstance(stamp, str) else None
    if parsed is None:
        raise RequestInvalid(
            f"{stamp_where} must be an RFC 3339 date-time with a time zone, such as "
            f"1985-04-12T23:20:50.52Z, not {_shown(stamp)}",
            where=stamp_where,
        )
    return FeedbackItem(card=card, outcome=outcome, outcome_timestamp=parsed,
                        accepted_suggestions=suggestions, override_reason=reason)


def _accepted_suggestions(value: Any, where: str, *, required: bool) -> tuple[str, ...]:
    if value is None:
        if required:
            raise RequestInvalid(f"{where} is required when the outcome is accepted",
                                 where=where)
        return ()
    if not isinstance(value, list):
        raise RequestInvalid(f"{where} must be an array of {{\"id\": ...}} objects", where=where)
    if not value and required:
        raise RequestInvalid(f"{where} must name at least one suggestion when the outcome is "
                             "accepted", where=where)
    ids = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise RequestInvalid(f"{where}[{i}] must be a JSON object with an id",
                                 where=f"{where}[{i}]")
        ids.append(_identifier(entry.get("id"), f"{where}[{i}].id", required=True))
    return tuple(ids)


def _override_reason(value: Any, where: str) -> OverrideReason | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestInvalid(f"{where} must be a JSON object", where=where)
    reason = value.get("reason")
    comment = _text(value.get("userComment"), f"{where}.userComment")
    if reason is None and comment is None:
        raise RequestInvalid(f"{where} must have a reason, a userComment or both", where=where)
    code = system = display = None
    if reason is not None:
        if not isinstance(reason, dict):
            raise RequestInvalid(f"{where}.reason must be a Coding object", where=f"{where}.reason")
        code = _identifier(reason.get("code"), f"{where}.reason.code", required=True)
        system = _text(reason.get("system"), f"{where}.reason.system") or None
        display = _text(reason.get("display"), f"{where}.reason.display") or None
    return OverrideReason(code=code, system=system, display=display, comment=comment)


def _identifier(value: Any, where: str, *, required: bool) -> str:
    if value is None and required:
        raise RequestInvalid(f"{where} is required", where=where)
    if not isinstance(value, str) or not value.strip():
        raise RequestInvalid(f"{where} must be a non-empty string", where=where)
    if len(value) > MAX_ID:
        raise RequestInvalid(f"{where} is longer than {MAX_ID} characters", where=where)
    return _storable(value, where)


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestInvalid(f"{where} must be a string", where=where)
    if len(value) > MAX_TEXT:
        raise RequestInvalid(f"{where} is longer than {MAX_TEXT} characters", where=where)
    return _storable(value, where)


def _storable(value: str, where: str) -> str:
    if "\x00" in value:
        raise RequestInvalid(f"{where} must not contain NUL characters", where=where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestInvalid(f"{where} contains an unpaired surrogate (\\ud800-\\udfff)",
                             where=where) from None
    return value


def _shown(value: Any) -> str:
    """A client value quoted for a message, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
