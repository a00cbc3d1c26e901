"""Answer a FHIR read or search URL from a list of resources, as a FHIR server would.

Used by ``cds-service replay`` to satisfy the service's own prefetch templates from a record,
and by tests as the brain of a stub FHIR server. Supported: instance reads (``Type/id``) and
type searches with ``patient``/``subject``, ``code``, ``date`` (prefixes eq, lt, gt, ge, le),
``status``, ``_count`` and ``_sort`` (``date`` / ``-date``). Other parameters are ignored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .resources import coding_keys, parse_datetime, resource_date, subject_id

_CODE_FIELDS = {"MedicationRequest": "medicationCodeableConcept", "ImagingStudy": "procedureCode"}


def _code_matches(resource: dict[str, Any], wanted: list[str]) -> bool:
    concept = resource.get(_CODE_FIELDS.get(resource["resourceType"], "code"))
    keys = set(coding_keys(concept))
    codes = {k.split("|", 1)[1] for k in keys}
    return any((w in keys) if "|" in w else (w in codes) for w in wanted)


def _status_of(resource: dict[str, Any]) -> str | None:
    status = resource.get("status")
    if isinstance(status, str):
        return status
    clinical = resource.get("clinicalStatus")  # Condition
    for key in coding_keys(clinical):
        return key.split("|", 1)[1]
    return None


def _date_matches(resource: dict[str, Any], expression: str) -> bool:
    has_prefix = expression[:2].isalpha()
    prefix, text = (expression[:2], expression[2:]) if has_prefix else ("eq", expression)
    bound = parse_datetime(text)
    when = resource_date(resource)
    if bound is None or when is None:
        return False
    precision_end = bound + (timedelta(days=1) if len(text) == 10 else timedelta(seconds=1))
    return {
        "eq": bound <= when < precision_end,
        "lt": when < bound,
        "le": when < precision_end,
        "gt": when >= precision_end,
        "ge": when >= bound,
    }.get(prefix, False)


def search(resources: list[dict[str, Any]], url: str) -> dict[str, Any] | None:
    """Return what a FHIR server answers for ``url``: a resource for a read, a searchset Bundle
    for a search, or ``None`` when a read finds nothing.

    Examples:
    - ``search(rs, "Patient/p1")`` -> the Patient with id p1
    - ``search(rs, "Observation?patient=p1&code=http://loinc.org|4537-7&_count=5")`` -> Bundle
    """
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if "/" in path:
        kind, ident = path.split("/", 1)
        for resource in resources:
            if resource.get("resourceType") == kind and resource.get("id") == ident:
                return resource
        return None
    kind = path
    params = parse_qsl(parts.query, keep_blank_values=True)
    matches = [r for r in resources if r.get("resourceType") == kind]
    count: int | None = None
    sort: str | None = None
    for name, value in params:
        if name in ("patient", "subject"):
            wanted = value.split("/")[-1]
            matches = [r for r in matches if subject_id(r) == wanted]
        elif name == "code":
            codes = value.split(",")
            matches = [r for r in matches if _code_matches(r, codes)]
        elif name == "date":
            matches = [r for r in matches if _date_matches(r, value)]
        elif name in ("status", "clinical-status"):
            allowed = set(value.split(","))
            matches = [r for r in matches if _status_of(r) in allowed]
        elif name == "_count" and value.isdigit():
            count = int(value)
        elif name == "_sort":
            sort = value
    if sort in ("date", "-date"):
        oldest = datetime.min.replace(tzinfo=None)

        def key(r: dict[str, Any]) -> datetime:
            when = resource_date(r)
            return when.replace(tzinfo=None) if when else oldest

        matches.sort(key=key, reverse=sort == "-date")
    total = len(matches)
    if count is not None:
        matches = matches[:count]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "entry": [
            {"fullUrl": f"{r['resourceType']}/{r.get('id', '')}", "resource": r,
             "search": {"mode": "match"}}
            for r in matches
        ],
    }
