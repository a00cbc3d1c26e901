"""Laterality of a resource: from bodySite, from the code itself, or from report words
(clinical-rules.md §2 "Side"). Unknown side never excludes; the caller decides."""

from __future__ import annotations

from typing import Any

from ..fhir.resources import as_list

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
LEFT_CODES = {"22335008", "7771000"}  # left foot structure; left (qualifier)
RIGHT_CODES = {"7769000", "24028007"}  # right foot structure; right (qualifier)


def side_from_codes(concept: Any) -> str | None:
    # The loop of fhir.resources.codings inlined (no generator to start and resume): this runs
    # for the reports, study series, conditions and procedures of every record.
    for item in concept if isinstance(concept, list) else (concept,):
        if not isinstance(item, dict):
            continue
        for coding in as_list(item.get("coding")):
            if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                continue
            code = coding["code"].strip().upper()
            system = coding.get("system")
            if system == SNOMED:
                if code in LEFT_CODES:
                    return "left"
                if code in RIGHT_CODES:
                    return "right"
            elif system == ICD10CM:
                # Z89.4x1 right / Z89.4x2 left; M86.x7x and M61.x7x: 6th character 1 right,
                # 2 left.
                if code.startswith("Z89.4") and len(code) == 7:
                    return _DIGIT_SIDE.get(code[-1])
                if code[:3] in ("M86", "M61") and len(code) >= 7 and code[5] == "7":
                    return _DIGIT_SIDE.get(code[6])
                if code[:5] in ("L97.4", "L97.5") and len(code) >= 6:
                    return _DIGIT_SIDE.get(code[5])  # L97.41x right, L97.42x left
            elif system == ICD10PCS and len(code) >= 4 and code.startswith("0Y6"):
                return {"M": "right", "N": "left"}.get(code[3])
    return None


_DIGIT_SIDE = {"1": "right", "2": "left"}


def side_from_text(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    text = text.lower()
    if "left" not in text and "right" not in text:
        return None  # (most code texts: no need to cut into words)
    words = set(text.replace(",", " ").replace("/", " ").split())
    if "left" in words and "right" not in words:
        return "left"
    if "right" in words and "left" not in words:
        return "right"
    return None


def side_of(resource: dict[str, Any]) -> str | None:
    """Return the laterality a resource states in its ``bodySite`` or ``code`` (None if unknown)."""
    return side_from_codes(resource.get("bodySite")) or side_from_codes(resource.get("code"))
