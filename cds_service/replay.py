"""Build a hook request from a FHIR record the way an EHR would, and print the answer.

The service's own prefetch templates are answered from the record with :mod:`fhir.search`, as a
FHIR server would answer them. No Flask here: callers pass a ``post`` function.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .fhir.prefetch import render
from .fhir.resources import bundle_resources, parse_datetime, subject_id
from .fhir.search import search


class RecordError(ValueError):
    """The record or draft-orders file cannot be used (message names the file)."""


def load_bundle(path: Path) -> dict[str, Any]:
    """Read a FHIR Bundle from ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RecordError(f"{path}: cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise RecordError(f"{path}: must be a FHIR Bundle (resourceType Bundle)")
    return data


def patient_id_of(resources: list[dict[str, Any]], path: Path) -> str:
    for resource in resources:
        if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
            return resource["id"]
    for resource in resources:
        found = subject_id(resource)
        if found:
            return found
    raise RecordError(f"{path}: holds no Patient and no resource with a subject")


_DATE_KEYS = {"effectiveDateTime", "issued", "performedDateTime", "onsetDateTime",
              "recordedDate", "authoredOn", "started", "start", "end", "abatementDateTime",
              "occurrenceDateTime", "date", "birthDate"}


def shift_dates(value: Any, delta: timedelta) -> Any:
    """Return a copy with every date field moved by ``delta`` (keeps the record's shape in time).

    Date-only values stay date-only; dateTimes keep their zone.
    """
    if isinstance(value, dict):
        return {k: (_shift(v, delta) if k in _DATE_KEYS and isinstance(v, str)
                    else shift_dates(v, delta)) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, delta) for v in value]
    return value


def _shift(text: str, delta: timedelta) -> str:
    parsed = parse_datetime(text)
    if parsed is None:
        return text
    moved = parsed + delta
    if len(text) == 10:
        return moved.date().isoformat()
    return moved.isoformat().replace("+00:00", "Z")


def record_time(bundle: dict[str, Any]) -> datetime | None:
    """The moment the record describes (``Bundle.timestamp``), if given."""
    return parse_datetime(bundle.get("timestamp"))


def build_request(
    discovery: Mapping[str, Any],
    service_id: str,
    hook: str,
    resources: list[dict[str, Any]],
    patient_id: str,
    draft: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The hook request an EHR would send: context, and every prefetch template answered."""
    if hook in ("order-select", "order-sign") and draft is None:
        raise RecordError(f"hook {hook} needs --draft ORDERS.json")
    entry = next((s for s in discovery.get("services", ())
                  if s.get("id") == service_id and s.get("hook") == hook), None)
    if entry is None:
        raise RecordError(f"the service has no {service_id!r} for hook {hook}")
    context: dict[str, Any] = {"userId": "Practitioner/replay", "patientId": patient_id}
    if hook in ("order-select", "order-sign"):
        if draft is None:
            raise RecordError(f"hook {hook} needs --draft ORDERS.json")
        context["draftOrders"] = draft
        if hook == "order-select":
            context["selections"] = [f"{r['resourceType']}/{r.get('id')}"
                                     for r in bundle_resources(draft)]
    prefetch: dict[str, Any] = {}
    for key, template in (entry.get("prefetch") or {}).items():
        url = render(template, context)
        if url is not None:
            prefetch[key] = search(resources, url)
    return {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context,
            "prefetch": prefetch}


def format_text(response: Mapping[str, Any]) -> str:
    """Cards for a person: indicator and summary, the detail as a reader sees it (markdown
    rendered to text), suggestions with their codes."""
    from .preview import markdown_text

    cards = response.get("cards") or []
    if not cards:
        return "No cards: the service has nothing to say for this record.\n"
    out = []
    for number, card in enumerate(cards, 1):
        out.append(f"── Card {number} [{card.get('indicator', '?').upper()}] "
                   f"{card.get('summary', '')}")
        if card.get("detail"):
            out.append(markdown_text(card["detail"]))
        for suggestion in card.get("suggestions") or ():
            codes = []
            for action in suggestion.get("actions") or ():
                resource = action.get("resource") or {}
                concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
                codes += [c.get("code", "") for c in concept.get("coding") or ()]
            star = " (recommended)" if suggestion.get("isRecommended") else ""
            out.append(f"  → {suggestion.get('label')}{star}"
                       + (f"  [{', '.join(codes)}]" if codes else ""))
        out.append("")
    return "\n".join(out)


def format_html(response: Mapping[str, Any], record: str) -> str:
    """The cards as an EHR renders them, as one self-contained page (``--format html``)."""
    from .preview import page

    return page([(record, response)], f"Cards for {record}")
