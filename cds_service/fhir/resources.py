"""Small, pure helpers over FHIR resources as plain dicts. No I/O.

Everything here is graceful: wrong shapes give ``None`` or empty results, never exceptions,
because resources come from outside and a bad one must be skipped, not crash a hook.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


#####################################################################
# Dates


def parse_datetime(value: Any) -> datetime | None:
    """Parse a FHIR date, dateTime or instant into an aware UTC datetime.

    Partial dates take their first instant; a dateTime without zone is read as UTC.
    Returns ``None`` for anything that is not a valid FHIR date.

    Examples:
    - ``"2026-10-01"`` -> 2026-10-01T00:00:00Z
    - ``"2026-10-01T08:30:00+02:00"`` -> 2026-10-01T06:30:00Z
    - ``"2024-13-45"`` -> None
    """
    if not isinstance(value, str):
        return None
    if len(value) == 20 and value[19] == "Z" and value[10] == "T" and value[4] == value[7] == "-" \
            and value[13] == value[16] == ":" and value.isascii():
        # The commonest form (an instant in UTC; every lab result has two): parsed directly,
        # ~15x faster. Same result as below, where the text is checked by _DATE and handed to
        # fromisoformat with "+00:00" for "Z": a string of this shape that fromisoformat takes
        # has ASCII digits in every other place, so _DATE matches it, and nothing to strip
        # (tests/test_resource_helpers.py compares the two on random strings).
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return _parse_datetime_text(value)


@lru_cache(maxsize=8192)  # a record's dates are read by several rules; datetimes are immutable
def _parse_datetime_text(value: str) -> datetime | None:
    match = _DATE.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        text = (f"{year}-{month or '01'}-{day or '01'}"
                f"T{hour or '00'}:{minute or '00'}:{second or '00'}")
        if fraction:
            text += fraction[:7]
        parsed = datetime.fromisoformat(text + (zone or "+00:00").replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC)


_DATE_FIELDS = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Procedure": ("performedDateTime", "performedPeriod.start", "performedPeriod.end"),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "ImagingStudy": ("started",),
    "MedicationRequest": ("authoredOn",),
    "ServiceRequest": ("occurrenceDateTime", "authoredOn"),
}


def _get_path(resource: dict[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def resource_date(resource: dict[str, Any]) -> datetime | None:
    """Return the clinically relevant date of a resource (first present of its date fields).

    Examples: an Observation's ``effectiveDateTime`` else ``issued``; a Procedure's
    ``performedDateTime`` else ``performedPeriod.start``.
    """
    for path in _DATE_FIELDS.get(str(resource.get("resourceType")), ()):
        parsed = parse_datetime(_get_path(resource, path))
        if parsed is not None:
            return parsed
    return None


#####################################################################
# Codes and references


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a JSON array, else an empty list (for iterating fields of any shape)."""
    return value if isinstance(value, list) else []


def codings(concept: Any) -> Iterator[dict[str, Any]]:
    """Yield the well-formed codings of a CodeableConcept (or of a list of them)."""
    concepts = concept if isinstance(concept, list) else [concept]
    for item in concepts:
        if not isinstance(item, dict):
            continue
        for coding in as_list(item.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                yield coding


def coding_keys(concept: Any) -> Iterator[str]:
    """Yield ``system|code`` keys of a CodeableConcept, the form the mappings use.

    Examples: ``{"coding": [{"system": "http://loinc.org", "code": "4537-7"}]}`` ->
    ``"http://loinc.org|4537-7"``.
    """
    # codings() inlined: this runs for every coding of every resource classified.
    for item in concept if isinstance(concept, list) else (concept,):
        if not isinstance(item, dict):
            continue
        for coding in as_list(item.get("coding")):
            if isinstance(coding, dict):
                code = coding.get("code")
                if isinstance(code, str):
                    system = coding.get("system")
                    yield f"{system if isinstance(system, str) else ''}|{code.strip()}"


def reference_id(reference: Any) -> tuple[str | None, str | None]:
    """Split a Reference into (type, id).

    Examples:
    - ``{"reference": "Patient/123"}`` -> ("Patient", "123")
    - ``{"reference": "http://x/fhir/Patient/123/_history/2"}`` -> ("Patient", "123")
    - ``{"reference": "urn:uuid:abc"}`` -> (None, "urn:uuid:abc")
    """
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None, None
    return _split_reference(reference["reference"])


@lru_cache(maxsize=4096)  # every resource names the same patient: split that reference once
def _split_reference(text: str) -> tuple[str | None, str | None]:
    if text.startswith(("urn:", "#")):
        return None, text
    parts = text.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[-1]


def subject_id(resource: dict[str, Any]) -> str | None:
    """Return the id of the patient a resource is about (``subject`` or ``patient``)."""
    for key in ("subject", "patient"):
        kind, ident = reference_id(resource.get(key))
        if ident is not None and kind in (None, "Patient"):
            return ident
    return None


def is_about_another_patient(resource: Mapping[str, Any], patient_id: str) -> bool:
    """True when ``subject``/``patient`` names a Patient other than ``patient_id``.

    References that do not name a Patient by id (``urn:uuid:``, contained, missing) never
    count: a prefetch, a server or a draft-orders Bundle may use them for the same patient.
    """
    for key in ("subject", "patient"):
        value = resource.get(key)
        if isinstance(value, dict) and value.get("reference") == f"Patient/{patient_id}":
            return False  # the common case, without parsing the reference
        kind, ident = reference_id(value)
        if kind == "Patient" and ident is not None and ident != patient_id:
            return True
    return False


def code_text(concept: Any) -> str | None:
    """How a CodeableConcept (or a list of them) reads to people: its text, else a display.

    Examples: ``{"text": "Right TMA"}`` -> "Right TMA"; ``{"coding": [{"code": "x",
    "display": "X"}]}`` -> "X"; ``{}`` -> None.
    """
    if isinstance(concept, dict) and isinstance(concept.get("text"), str) and concept["text"]:
        return str(concept["text"])
    for coding in codings(concept):
        if isinstance(coding.get("display"), str) and coding["display"]:
            return str(coding["display"])
    return None


def resolve_reference(holder: Mapping[str, Any], reference: Any,
                      known: Mapping[str, Mapping[str, Any]],
                      default_type: str) -> Mapping[str, Any] | None:
    """The resource a Reference points at: contained in ``holder`` (``#id``), else in ``known``
    (keyed ``Type/id`` and by full URL or ``urn:uuid``). None when it cannot be found.

    Examples: ``{"reference": "#med1"}`` -> ``holder.contained`` entry ``med1``;
    ``{"reference": "Medication/7"}`` -> ``known["Medication/7"]``.
    """
    kind, ident = reference_id(reference)
    if ident is None:
        return None
    if ident.startswith("#"):
        return next((c for c in as_list(holder.get("contained"))
                     if isinstance(c, dict) and f"#{c.get('id')}" == ident), None)
    return known.get(f"{kind or default_type}/{ident}") or known.get(str(reference["reference"]))


def bundle_resources(bundle: Any) -> list[dict[str, Any]]:
    """Return the resources of a Bundle's entries (skipping malformed entries)."""
    if not isinstance(bundle, dict):
        return []
    return [resource for entry in as_list(bundle.get("entry"))
            if isinstance(entry, dict) and isinstance(resource := entry.get("resource"), dict)
            and isinstance(resource.get("resourceType"), str)]


def next_link(bundle: dict[str, Any]) -> str | None:
    """Return the URL of a Bundle's ``next`` page, if any."""
    for link in as_list(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None
