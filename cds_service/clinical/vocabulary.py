"""The one vocabulary of display texts (clinical-rules.md §11): the plain words every card uses for
tiers, HO status, flags, findings, imaging kinds, tests and dates.

The rulebook's machine vocabulary (``not-supported``, ``ho-ulcer-coexistence``, concept ids) stays
in the extension; a clinician only ever reads the words below. Record text that reaches a card goes
through :func:`cds_service.cards.md` (markdown) or :func:`cds_service.cards.plain` (summary).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from ..cards import md
from .finding import Finding
from .sources import (
    CRP_KINETICS,
    GADOLINIUM,
    GENTILI_REVIEW,
    IWGDF_SEVERITY,
    JFAS_2016,
    ORZEL_1985,
    PRIOR_ANTIBIOTICS,
    Source,
)

NBSP = "\u00a0"  # keeps "18 Nov" and "85 mm/h" on one line in a narrow card

# --------------------------------------------------------------------------- verdicts
OM_WORDS = {
    "confirmed": "confirmed", "probable": "probable", "possible": "possible",
    "indeterminate": "indeterminate", "unlikely": "unlikely", "not-supported": "not supported",
}
HO_WORDS = {
    "mature": "mature", "present": "present", "suspected": "suspected",
    "indeterminate": "indeterminate", "not-detected": "not seen",
}


def om_phrase(tier: str) -> str:
    """"osteomyelitis probable", "osteomyelitis not supported"."""
    return f"osteomyelitis {OM_WORDS.get(tier, tier.replace('-', ' '))}"


def ho_phrase(status: str) -> str:
    """"heterotopic ossification present", "no heterotopic ossification seen"."""
    if status == "not-detected":
        return "no heterotopic ossification seen"
    return f"heterotopic ossification {HO_WORDS.get(status, status.replace('-', ' '))}"


# --------------------------------------------------------------------------- flags
# Each flag as a plain sentence with its caveat, and the source it cites (clinical-rules.md §7).
FLAG_SENTENCES: dict[str, tuple[str, Source]] = {
    "severe-infection": ("Severe infection: urgent surgical evaluation, blood cultures and "
                         "empiric IV antibiotics per local protocol; never delay antibiotics for "
                         "a biopsy.", IWGDF_SEVERITY),
    "early-postoperative": ("Before day 14, ESR, CRP, ALP and radiographs reflect the surgery: "
                            "follow the trajectory.", CRP_KINETICS),
    "charcot": ("Charcot foot: it gives all-phase bone-scan uptake and marrow oedema on MRI; "
                "prefer leukocyte SPECT/CT with marrow imaging.", GENTILI_REVIEW),
    "pad": ("Peripheral arterial disease: bone scans can be falsely negative and healing is "
            "impaired; arrange a vascular assessment.", GENTILI_REVIEW),
    "recent-antibiotics": ("Antibiotics in the last 14 days lower bone-culture yield; if stable, "
                           "consider an antibiotic-free window before biopsy.", PRIOR_ANTIBIOTICS),
    "renal-impairment": ("Renal impairment: MRI without gadolinium, no NSAID, vancomycin dosed "
                         "with pharmacy.", GADOLINIUM),
    "ho-favored": ("The findings favor heterotopic ossification over osteomyelitis.", JFAS_2016),
    "ho-ulcer-coexistence": ("Ulcer over heterotopic bone: evaluate for osteomyelitis (about 1 in "
                             "5 HO prominences ulcerate).", JFAS_2016),
    "bone-scan-nondiscriminating": ("The bone scan is positive in early HO, remodelling, Charcot "
                                    "and OM alike: it cannot decide here.", ORZEL_1985),
}

# --------------------------------------------------------------------------- findings
IMAGING_WORDS = {
    "foot-radiograph": "radiograph", "foot-mri": "MRI", "foot-ct": "CT",
    "three-phase-bone-scan": "bone scan", "leukocyte-scan": "leukocyte scan",
    "fdg-pet": "FDG-PET",
}
# What an imaging report was read to say, per finding concept.
IMAGING_FINDING_WORDS = {
    "om-imaging-pattern": "osteomyelitis pattern",
    "soft-tissue-ossification": "heterotopic ossification",
    "mature-ho-pattern": "mature heterotopic bone",
    "confluent-marrow-replacement": "confluent marrow replacement",
    "normal-marrow": "normal marrow",
    "leukocyte-scan-positive": "positive for bone infection",
    "pet-positive": "positive for bone infection",
}
# Findings whose explicit negation in a report decides a rule (OM-2/OM-6, OM-3, OM-5): shown
# when the report says so ("no confluent marrow replacement"), whatever the verdict.
DECISIVE_NEGATIONS = {"om-imaging-pattern": "no osteomyelitis pattern",
                      "confluent-marrow-replacement": "no confluent marrow replacement",
                      "normal-marrow": "marrow not normal"}
BONE_SCAN_PHASES = ("bone-scan-phase1-increased", "bone-scan-phase2-increased",
                    "bone-scan-phase3-increased")
# Short names of everything else a card may show.
FINDING_WORDS = {
    "esr": "ESR", "crp": "CRP", "alkaline-phosphatase": "ALP", "wbc": "WBC",
    "procalcitonin": "procalcitonin", "body-temperature": "temperature",
    "heart-rate": "heart rate", "respiratory-rate": "respiratory rate", "egfr": "eGFR",
    "creatinine": "creatinine", "body-weight": "weight", "hba1c": "HbA1c",
    "ulcer-area": "ulcer area", "probe-to-bone": "probe-to-bone", "exposed-bone": "exposed bone",
    "bone-culture": "bone culture", "bone-histopathology": "bone histology",
    "blood-culture": "blood culture", "plantar-prominence": "plantar prominence",
    "decreased-range-of-motion": "reduced range of motion",
    "foot-ulcer": "foot ulcer", "surgical-wound-complication": "wound complication",
    "abscess": "abscess", "osteomyelitis": "osteomyelitis coded",
    "heterotopic-ossification": "heterotopic ossification coded",
    "charcot-neuroarthropathy": "Charcot foot", "peripheral-arterial-disease":
    "peripheral arterial disease", "chronic-kidney-disease-advanced": "advanced CKD",
    "acute-kidney-injury": "acute kidney injury", "bone-biopsy": "bone biopsy",
    "antibacterial": "antibiotic", **IMAGING_WORDS,
}
CONDITIONS = {"foot-ulcer", "surgical-wound-complication", "abscess", "osteomyelitis",
              "heterotopic-ossification", "charcot-neuroarthropathy",
              "peripheral-arterial-disease", "chronic-kidney-disease-advanced",
              "acute-kidney-injury"}
CODED = {"probe-to-bone", "exposed-bone", "bone-culture", "bone-histopathology", "blood-culture",
         "plantar-prominence", "decreased-range-of-motion"}
POLARITY_WORDS = {"positive": "positive", "negative": "negative", "uncertain": "possible"}

# What the service could not use, named for a clinician (record notes name resources by type).
RESOURCE_WORDS = {
    "Observation": "an observation", "Condition": "a condition", "Procedure": "a procedure",
    "DiagnosticReport": "a report", "ImagingStudy": "an imaging study",
    "MedicationRequest": "a medication order", "ServiceRequest": "a service order",
    "Medication": "a medication", "Patient": "the patient resource",
    "NutritionOrder": "a nutrition order", "DeviceRequest": "a device order",
    "VisionPrescription": "a vision prescription", "SupplyRequest": "a supply order",
    "CommunicationRequest": "a communication request", "Encounter": "an encounter",
    "Bundle": "a bundle", "OperationOutcome": "an error report", "Specimen": "a specimen",
    "AllergyIntolerance": "an allergy", "CarePlan": "a care plan",
}
FHIR_REF = re.compile(r"\b(" + "|".join(RESOURCE_WORDS) + r")/[A-Za-z0-9\-.]{1,64}")


def note_text(note: str) -> str:
    """A note on what could not be read, for a clinician: resource ids become words (the ids go
    to the extension, :func:`note_refs`), and the rest is shown as data."""
    return md(FHIR_REF.sub(lambda m: RESOURCE_WORDS[m.group(1)], note), 200)


def note_refs(notes: Iterable[str]) -> list[str]:
    return [m.group(0) for note in notes for m in FHIR_REF.finditer(note)]


def day_month(when: datetime | None, now: datetime | None = None) -> str:
    """"18 Nov" (this year's dates), "11 Sep 2024" otherwise, "date unknown"; never wraps."""
    if when is None:
        return "date unknown"
    text = f"{when.day}{NBSP}{when.strftime('%b')}"
    if now is None or when.year != now.year:
        text += f"{NBSP}{when.year}"
    return text


def word(concept: str, label: str | None = None) -> str:
    """The short display name of a concept; a concept this vocabulary does not know (a site
    mapping's) is shown by its mapping label, as data."""
    if concept in FINDING_WORDS:
        return FINDING_WORDS[concept]
    return md(label or concept)


def value_text(finding: Finding) -> str:
    """A finding's value as shown: "85 mm/h", "positive", "possible"."""
    if finding.value is not None:
        return finding.shown_value().replace(" ", NBSP, 1)
    return POLARITY_WORDS.get(finding.polarity or "", "present")


def describe(finding: Finding, now: datetime | None) -> str:
    """One finding in words with its value and date: "ESR 85 mm/h, 18 Nov";
    "probe-to-bone positive, 17 Nov"; "foot ulcer, 8 Nov" (never a resource id)."""
    when = day_month(finding.when, now)
    name = word(finding.concept, finding.label)
    if finding.value is not None:
        return f"{name} {value_text(finding)}, {when}"
    if finding.ref.startswith("MedicationRequest/"):  # its own name, as the record gives it
        return f"{md(finding.text or name)}, {when}"
    if finding.concept in CONDITIONS:
        qualifier = _verification(finding.text)
        return f"{name}{qualifier}, {when}"
    if finding.concept in CODED:
        detail = finding.text if finding.concept in ("bone-culture", "blood-culture") else None
        shown = value_text(finding)
        if detail and detail.lower() not in ("positive", "negative"):
            shown += f" ({md(detail, 60)})"
        return f"{name} {shown}, {when}"
    return f"{name}, {when}"


def _verification(text: str | None) -> str:
    for status in ("provisional", "differential", "unconfirmed"):
        if text and text.endswith(f"({status})"):
            return f" ({status})"
    return ""


# An active medication whose drug could not be identified (clinical-rules.md §2 "Medications":
# an unclassified drug is never assumed safe in a gate; §9: the NSAID co-medication gates).
UNIDENTIFIED_ACTIVE_GATE = ("{medication} (active) not identified: anticoagulant, antiplatelet, "
                            "corticosteroid and SSRI gates not decided")


def unidentified_medication(text: str | None, codes: Sequence[str]) -> str:
    """What an unidentified medication order shows of itself (plain text; escape it where
    shown): its own text, else "medication coded 99999999", else "medication naming no drug"."""
    if text:
        return text
    return f"medication coded {codes[0]}" if codes else "medication naming no drug"


def phases_text(findings: dict[str, str]) -> str:
    """A bone scan's phases: "increased in all three phases", "increased in phases 2 and 3"."""
    up = [str(i) for i, concept in enumerate(BONE_SCAN_PHASES, 1)
          if findings.get(concept) in ("positive", "uncertain")]
    if len(up) == 3:
        return "increased in all three phases"
    if not up:
        return "no increased phase reported"
    return f"increased in phase {up[0]}" if len(up) == 1 else \
        f"increased in phases {' and '.join(up)}"


def imaging_text(kind: str, when: datetime | None, findings: dict[str, str],
                 now: datetime | None, negatives: Iterable[str] = (),
                 partly_unread: bool = False) -> str:
    """An imaging report as what was found: "radiograph 10 Nov: osteomyelitis pattern,
    heterotopic ossification"; negated findings only for the concepts in ``negatives`` (and only
    for a report read in full: the caller decides)."""
    name = f"{IMAGING_WORDS.get(kind, word(kind))} {day_month(when, now)}"
    if kind == "three-phase-bone-scan":
        return f"{name}: {phases_text(findings)}"
    seen = []
    for concept, polarity in findings.items():
        shown = IMAGING_FINDING_WORDS.get(concept)
        if shown is None:
            continue
        if polarity == "positive":
            seen.append(shown)
        elif polarity == "uncertain":
            seen.append(f"possible {shown}")
        elif polarity == "negative" and concept in DECISIVE_NEGATIONS:
            seen.append(DECISIVE_NEGATIONS[concept])
    for concept in negatives:
        said = DECISIVE_NEGATIONS.get(concept, f"no {IMAGING_FINDING_WORDS.get(concept, '')}")
        if findings.get(concept) not in ("positive", "uncertain") and said not in seen \
                and concept in IMAGING_FINDING_WORDS:
            seen.append(said)
    if partly_unread:
        seen.append("part of the report could not be read")
    return f"{name}: {', '.join(seen)}" if seen else f"{name}: no finding named"


def join_words(items: Sequence[str], budget: int) -> str:
    """Items joined with commas and "and", fitting ``budget`` characters: the first items and
    "and N more" rather than a list cut in the middle (clinical-rules.md §11)."""
    items = list(dict.fromkeys(items))
    for shown in range(len(items), 0, -1):
        rest = len(items) - shown
        head = items[:shown]
        if rest:
            text = ", ".join(head) + f" and {rest} more"
        elif len(head) > 1:
            text = ", ".join(head[:-1]) + " and " + head[-1]
        else:
            text = head[0]
        if len(text) <= budget:
            return text
    return f"{len(items)} items"


DISCLAIMER = ("*Decision support, not a diagnosis: weigh it against the examination and local "
              "protocols.*")
