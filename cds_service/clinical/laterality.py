"""Laterality of a resource: from bodySite, from the code itself, or from report words
(clinical-rules.md §2 "Side"). Unknown side never excludes; the caller decides."""

from __future__ import annotations

from typing import Any

from ..fhir.resources import codings

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
LEFT_CODES = {"22335008", "7771000"}  # left foot structure; left (qualifier)
RIGHT_CODES = {"7769000", "24028007"}  # right foot structure; right (qualifier)
def side_from_codes(concept: Any) -> str | None:
    for coding in codings(concept):
        code = str(coding["code"]).strip().upper()
        system = coding.get("system")
        if system == SNOMED:
            if code in LEFT_CODES:
                return "left"
            if code in RIGHT_CODES:
                return "right"
        elif system == ICD10CM:
            # Z89.4x1 right / Z89.4x2 left; M86.x7x and M61.x7x: 6th character 1 right, 2 left.
            if code.startswith("Z89.4") and len(code) == 7:
                return {"1": "right", "2": "left"}.get(code[-1])
            if code[:3] in ("M86", "M61") and len(code) >= 7 and code[5] == "7":
                return {"1": "right", "2": "left"}.get(code[6])
            if code[:5] in ("L97.4", "L97.5") and len(code) >= 6:  # L97.41x right, L97.42x left
                return {"1": "right", "2": "left"}.get(code[5])
        elif system == ICD10PCS and len(code) >= 4 and code.startswith("0Y6"):
            return {"M": "right", "N": "left"}.get(code[3])
    return None


def side_from_text(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    words = set(text.lower().replace(",", " ").replace("/", " ").split())
    if "left" in words and "right" not in words:
        return "left"
    if "right" in words and "left" not in words:
        return "right"
    return None


def side_of(resource: dict[str, Any]) -> str | None:
    """Return the laterality a resource states in its ``bodySite`` or ``code`` (None if unknown)."""
    return side_from_codes(resource.get("bodySite")) or side_from_codes(resource.get("code"))
