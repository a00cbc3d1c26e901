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
    ACR_2019,
    BUTALIA_2008,
    CRP_KINETICS,
    DINH_2008,
    EANM_2024,
    GADOLINIUM,
    GENTILI_REVIEW,
    HIP_HO_REVIEW,
    IWGDF_2023,
    IWGDF_SEVERITY,
    JFAS_2015,
    JFAS_2016,
    KAVANAGH,
    LAVERY_2007,
    LLEWELLYN_2020,
    OPENFDA_NSAID,
    ORZEL_1985,
    PRIOR_ANTIBIOTICS,
    RYBAK_2020,
    SHEHAB_2002,
    SVS_2016,
    Source,
    cited,
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


def om_state(tier: str) -> str:
    """"osteomyelitis is probable", "osteomyelitis is not supported" (in a sentence)."""
    return f"osteomyelitis is {OM_WORDS.get(tier, tier.replace('-', ' '))}"


def ho_state(status: str) -> str:
    """"heterotopic ossification is mature", "no heterotopic ossification is seen"."""
    if status == "not-detected":
        return "no heterotopic ossification is seen"
    return f"heterotopic ossification is {HO_WORDS.get(status, status.replace('-', ' '))}"


# --------------------------------------------------------------------------- flags
# Each flag as a plain sentence with its caveat, and the source it cites (clinical-rules.md §7).
# The words before the first colon name the flag; :func:`flag_sentence` puts what was seen there.
FLAG_SENTENCES: dict[str, tuple[str, Source]] = {
    "severe-infection": ("Severe infection: urgent surgical evaluation, blood cultures and "
                         "empiric IV antibiotics per local protocol; never delay antibiotics for "
                         "a biopsy.", IWGDF_SEVERITY),
    "early-postoperative": ("Early after surgery: before day 14, ESR, CRP, ALP and radiographs "
                            "reflect the surgery; follow the trajectory.", CRP_KINETICS),
    "charcot": ("Charcot foot: gives all-phase bone-scan uptake and marrow oedema on MRI; "
                "prefer leukocyte SPECT/CT with marrow imaging.", GENTILI_REVIEW),
    "pad": ("Peripheral arterial disease: bone scans can be falsely negative and healing is "
            "impaired; arrange a vascular assessment.", GENTILI_REVIEW),
    "recent-antibiotics": ("Antibiotics in the last 14 days: they lower the yield of bone "
                           "cultures; if stable, consider an antibiotic-free window before "
                           "biopsy.",
                           PRIOR_ANTIBIOTICS),
    "renal-impairment": ("Renal impairment: MRI without gadolinium, no NSAID, vancomycin dosed "
                         "with pharmacy.", GADOLINIUM),
    "ho-favored": ("HO favored: the findings favor heterotopic ossification over "
                   "osteomyelitis.", JFAS_2016),
    "ho-ulcer-coexistence": ("Ulcer over heterotopic bone: evaluate for osteomyelitis (about 1 in "
                             "5 HO prominences ulcerate).", JFAS_2016),
    "bone-scan-nondiscriminating": ("Bone scan not discriminating: it is positive in early HO, "
                                    "remodelling, Charcot and OM alike and cannot decide here.",
                                    ORZEL_1985),
}


FLAG_CITATIONS = {flag: cited(source) for flag, (_sentence, source) in FLAG_SENTENCES.items()}


def flag_sentence(flag: str, seen: str = "") -> str:
    """A flag as a card paragraph: its sentence with the flag's name in bold, what was seen in
    parentheses after the name ("**Renal impairment** (eGFR 24 mL/min/1.73 m², 15 Nov): ..."),
    and its citation."""
    sentence = FLAG_SENTENCES[flag][0]  # its source: FLAG_CITATIONS
    name, colon, rest = sentence.partition(":")
    if colon:
        sentence = f"**{name}**" + (f" ({seen})" if seen else "") + colon + rest
    elif seen:
        sentence = f"{sentence} ({seen})"
    return sentence.rstrip(".") + FLAG_CITATIONS[flag] + "."


# Findings that never move the OM tier (OM-8), as the card names them.
NOT_DISCRIMINATING_WORDS = {
    "three-phase-bone-scan": "a three-phase bone scan (specificity about 0.28)",
    "body-temperature": "fever", "wbc": "white cell count",
    "crp": "CRP without a wound or imaging pattern",
    "alkaline-phosphatase": "alkaline phosphatase"}


def not_discriminating(findings: Iterable[Finding]) -> str:
    """"Not discriminating, so not used for the tier: fever, white cell count." (OM-8)"""
    names = sorted({NOT_DISCRIMINATING_WORDS.get(f.concept, f.label) for f in findings})
    return "Not discriminating, so not used for the tier: " + ", ".join(names) + "."


# Drug classes and conditions that fail an NSAID gate (clinical-rules.md §9), as a clinician
# names them (the conditions in a summary; the card's list uses the mapping label).
GATE_CLASS_WORDS = {"anticoagulant": "anticoagulant", "antiplatelet": "antiplatelet",
                    "systemic-corticosteroid": "corticosteroid", "ssri": "SSRI"}
GATE_CONDITION_WORDS = {"heart-failure": "heart failure", "myocardial-infarction": "past MI",
                        "gi-bleeding": "GI bleeding", "peptic-ulcer": "peptic ulcer"}


def drug_word(name: str) -> str:
    """The drug of a product name, for a summary: "apixaban 5 MG Oral Tablet" -> "apixaban"
    (record text: plain, escape where shown)."""
    words = name.split()
    return words[0].strip(",;:") if words else name

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
FHIR_REF = re.compile(r"\b(" + "|".join(RESOURCE_WORDS) + r")/[A-Za-z0-9\-.?]{1,64}")
# FHIR element paths a reading note may name, in words.
_FHIR_PATHS = ((re.compile(r"\bdraftOrders\.entry\[(\d+)\]"),
                lambda m: f"draft-order entry {int(m.group(1)) + 1}"),
               (re.compile(r"\bdraftOrders\.entry\b"), lambda m: "the draft-order list"),
               (re.compile(r"\bdraftOrders\b"), lambda m: "the draft orders"),
               (re.compile(r"\bentered-in-error\b"), lambda m: "entered in error"))


def note_text(note: str) -> str:
    """A note on what could not be read, for a clinician: resource ids and FHIR element names
    become words (the ids go to the extension, :func:`note_refs`), and the rest is shown as
    data."""
    text = FHIR_REF.sub(lambda m: RESOURCE_WORDS[m.group(1)], note)
    for pattern, words in _FHIR_PATHS:
        text = pattern.sub(words, text)
    return md(text, 200)


def note_refs(notes: Iterable[str]) -> list[str]:
    return [m.group(0) for note in notes for m in FHIR_REF.finditer(note)
            if not m.group(0).endswith("/?")]


# Month abbreviations as English dates show them (strftime's %b in the C locale, whatever the
# server's locale).
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def day_month(when: datetime | None, now: datetime | None = None) -> str:
    """"18 Nov" (this year's dates), "11 Sep 2024" otherwise, "date unknown"; never wraps."""
    if when is None:
        return "date unknown"
    text = f"{when.day}{NBSP}{MONTHS[when.month - 1]}"
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
        drug, status = _status_of(finding.text or name)
        return f"{md(drug)}{' ' + status if status else ''}, {when}"
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


def _status_of(text: str) -> tuple[str, str]:
    """"vancomycin (active)" -> ("vancomycin", "active"): a medication order and its status."""
    drug, bracket, status = text.rpartition(" (")
    if bracket and status.endswith(")") and status[:-1] in ("active", "completed"):
        return drug, status[:-1]
    return text, ""


def _verification(text: str | None) -> str:
    for status in ("provisional", "differential", "unconfirmed"):
        if text and text.endswith(f"({status})"):
            return f" ({status})"
    return ""


# An active medication whose drug could not be identified (clinical-rules.md §2 "Medications":
# an unclassified drug is never assumed safe in a gate; §9: the NSAID co-medication gates).
UNIDENTIFIED_ACTIVE_GATE = ("{medication} (active) not identified: anticoagulant, antiplatelet, "
                            "corticosteroid and SSRI gates not decided")
UNIDENTIFIED_ACTIVE_SHORT = "an unidentified active drug"


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
    return f"{len(items)} items" if len(items) > 1 else "1 item"  # not even one fits


# --------------------------------------------------------------------------- sentences
# Fixed sentences of the cards, each with its citation (clinical-rules.md §8–11). Placeholders in
# braces are filled by the card builders with values already in words (and escaped).

# HO verdicts without a deciding rule: radiographic calcification follows soft-tissue uptake by
# about a week, from about day 24 (Orzel 1985); new HO appears within about 10 weeks (JFAS 2016).
HO_NOT_SEEN_SOURCES = (ORZEL_1985, JFAS_2016)
HO_NO_IMAGING = "no radiograph, CT or MRI from day 21 after the amputation"
HO_UNREAD_IMAGING = "no radiograph, CT or MRI from day 21 after the amputation read in full"

# Patient-view next tests (§8), by rule id.
TEST_WORDS = {  # short names of the orderables (orders.ORDERABLES keys) for summaries
    "xr": "foot radiograph", "esr": "ESR", "crp": "CRP", "mri": "MRI", "mri-plain": "MRI",
    "wbc-spect": "leukocyte SPECT/CT", "pet": "FDG-PET/CT", "bone-scan": "bone scan",
    "blood-culture": "blood cultures", "biopsy": "bone biopsy",
}
PROBE_TO_BONE_WORDS = "a bedside probe-to-bone test"
NEXT_IMAGING_SUMMARY = ("Next imaging: MRI of the residual foot to separate osteomyelitis from HO "
                        "or post-surgical change")
NEXT_IMAGING_MRI = ("MRI of the residual foot is the next test: a normal marrow signal argues "
                    "strongly against osteomyelitis (LR− 0.14)"
                    + cited(BUTALIA_2008, IWGDF_2023, ACR_2019) + ".")
NO_GADOLINIUM = "Renal impairment: MRI **without** gadolinium" + cited(GADOLINIUM) + "."
NEXT_IMAGING_ALTERNATIVES = ("If MRI is contraindicated or non-diagnostic: leukocyte SPECT/CT or "
                             "FDG-PET/CT; a three-phase bone scan is the least specific (0.28)"
                             + cited(EANM_2024, LLEWELLYN_2020, DINH_2008) + ".")
NEXT_IMAGING_CHARCOT = ("With Charcot, prefer leukocyte SPECT/CT over the bone scan"
                        + cited(EANM_2024, LLEWELLYN_2020, DINH_2008) + ".")
NEXT_TEST_REASONS = {
    "T-XR": "Foot radiograph, 3 views: first imaging; compare with the post-operative baseline"
            + cited(IWGDF_2023, ACR_2019) + ".",
    "T-LAB": "ESR and CRP: with probe-to-bone and radiographs, the first work-up"
             + cited(IWGDF_2023) + ".",
    "T-BX": "Bone biopsy through intact skin away from the ulcer, for culture **and** histology: "
            "the only test that settles it" + cited(IWGDF_2023, SVS_2016) + ".",
    "T-BC": "Blood cultures (two sets) for severe infection, before antibiotics but without "
            "delaying them" + cited(IWGDF_SEVERITY) + ".",
    "T-SCAN-HO": "Bone scan to judge HO maturity before excision, not to diagnose infection"
                 + cited(SHEHAB_2002) + ".",
}
BIOPSY_SEVERE = " Severe infection: do not delay antibiotics for the biopsy."
PROBE_TO_BONE_ADVICE = ("Probe-to-bone test at the bedside, and chart it: none in the last 14 "
                        "days" + cited(LAVERY_2007, SVS_2016) + ".")

# Patient-view management (§9).
OM_SURGERY = ("Surgical evaluation", "**Urgent** surgical evaluation")  # (routine, urgent)
OM_MANAGEMENT_SUMMARY = ("Osteomyelitis: surgical evaluation; antibiotic duration depends on the "
                         "resection",
                         "Osteomyelitis: urgent surgical evaluation; antibiotic duration depends "
                         "on the resection")
OM_DURATION = ("{surgery}. Antibiotics: no bone resection **6 weeks**; positive residual-bone "
               "margin **about 3 weeks**; all infected bone removed, clean margins **a short "
               "course (days)**. Tailor to the bone culture; oral step-down is fine"
               + cited(IWGDF_2023) + ".")
OM_EMPIRIC_DOSE = ("Empiric, if needed: vancomycin 15–20 mg/kg IV every 12 h ({dose}), "
                   "AUC-guided (AUC 400–600 mg·h/L) with pharmacy, plus ceftriaxone 2 g IV daily"
                   + cited(RYBAK_2020) + ".")
OM_EMPIRIC_NO_DOSE = ("Empiric, if needed: vancomycin 15–20 mg/kg IV every 12 h plus ceftriaxone "
                      "2 g IV daily; no vancomycin dose shown: {missing}" + cited(RYBAK_2020) + ".")
FIXED_DOSING = ("Reduced renal function: no fixed 12-hourly vancomycin dosing"
                + cited(RYBAK_2020) + ".")
RECENT_ANTIBIOTICS_YIELD = "Recent antibiotics lower culture yield" + cited(PRIOR_ANTIBIOTICS) + "."
HO_MANAGEMENT_SUMMARY_NSAID = "HO favored over OM: offloading, therapy; indomethacin may be " \
                              "considered"
HO_MANAGEMENT_SUMMARY = "HO favored over OM: offloading, therapy; excision with radiation if needed"
HO_CARE = ("Offloading and footwear for prominences; physical therapy for range of motion; "
           "surveillance radiographs" + cited(JFAS_2016) + ".")
HO_EXCISION = ("Excision of mature, symptomatic or ulcerating HO, with single-fraction radiation "
               "(7–8 Gy) within about 48 h after excision to prevent recurrence"
               + cited(JFAS_2015, KAVANAGH) + ".")
NSAID_NOT_ADVISED = ("NSAID not advised: {gates}. Prefer radiation after excision"
                     + cited(OPENFDA_NSAID) + ".")
INDOMETHACIN_MAY_BE_CONSIDERED = ("Every NSAID gate passes: indomethacin 25 mg by mouth three "
                                  "times daily for 3–6 weeks may be considered; the evidence is "
                                  "prophylaxis-level" + cited(HIP_HO_REVIEW, OPENFDA_NSAID) + ".")
INDOMETHACIN_LABEL = "Draft indomethacin 25 mg PO TID for 3–6 weeks"
INDOMETHACIN_ACTION = "Draft medication request: indomethacin 25 mg three times daily"

# Order hooks (§10).
ORDERED_WHILE = "**{order}**: {state}."
ABX_SUMMARY = ("Obtain bone biopsy for culture and histology before starting antibiotics if "
               "clinically stable")
ABX_BEFORE_FIRST_DOSE = ("Biopsy through intact skin away from the ulcer before the first "
                         "dose: antibiotics lower the yield; the culture guides treatment"
                         + cited(IWGDF_2023, SVS_2016, PRIOR_ANTIBIOTICS) + ".")
ABX_UNSTABLE = "If unstable, do not delay antibiotics" + cited(IWGDF_SEVERITY) + "."
ABX_ALREADY_GIVEN = ("Antibiotics in the last 14 days already lower the yield; an antibiotic-free "
                     "window may help" + cited(PRIOR_ANTIBIOTICS) + ".")
HO_ABX_SUMMARY = ("Findings favor heterotopic ossification over osteomyelitis: review the "
                  "antibiotic order")
HO_ABX_NOT_INFECTION = ("Heterotopic bone is not an infection and is not treated with "
                        "antibiotics; if the antibiotic is for another infection, go ahead"
                        + cited(JFAS_2016) + ".")
HO_ABX_CARE = ("For the stump: offloading, footwear, physical therapy, surveillance radiographs; "
               "excision of mature, symptomatic or ulcerating HO" + cited(JFAS_2016, JFAS_2015)
               + ".")
NSAID_SUMMARY = "{drug} not advised: {gates}"
NSAID_GATES = "**{order}** fails NSAID gates" + cited(OPENFDA_NSAID) + ":"
NSAID_HO_ALTERNATIVE = ("For HO the indomethacin evidence is prophylaxis-level"
                        + cited(HIP_HO_REVIEW) + "; prefer radiation (one 7–8 Gy fraction) "
                        "within 48 h of excision" + cited(JFAS_2015) + ".")
DRAFT_GATE = "{order} (draft order, {drug_class})"
UNIDENTIFIED_GATE = "{order} (draft order) could not be identified, so it is not assumed safe"
DRAFT_GATE_SHORT = "{drug} (draft)"
UNIDENTIFIED_GATE_SHORT = "an unidentified draft drug"
REMOVE_LABEL = "Remove the draft order: {order}"
REMOVE_ACTION = "Remove the draft order {order}"
NO_ID_NO_REMOVAL = "The draft order has no id, so no removal can be offered."
VANC_DOSE_TEXT = "**{order}**: {written} per dose is {per_kg}\u00a0mg/kg; 15–20 mg/kg: {range}" \
                 + cited(RYBAK_2020) + "."
VANC_NO_DOSE_TEXT = "**{order}**: {problem}; 15–20 mg/kg: {range}" + cited(RYBAK_2020) + "."
VANC_MISSING_TEXT = ("**{order}**: dosing needs a weight (30 days) and creatinine or eGFR (7 "
                     "days); dose with pharmacy" + cited(RYBAK_2020) + ".")
VANC_RANGE = "15–20 mg/kg: {range}."
VANC_LOADING = ("A loading dose of 20–35 mg/kg may be intended in serious illness"
                + cited(RYBAK_2020.believed()) + ".")
VANC_AUC = "Use AUC-guided dosing (target AUC 400–600 mg·h/L) with pharmacy" + cited(RYBAK_2020) \
           + "."
VANC_FIXED_DOSING = ("Reduced renal function: fixed 12-hourly dosing is inappropriate"
                     + cited(RYBAK_2020) + ".")
SCAN_SUMMARY = "MRI is preferred to separate OM from early HO or post-surgical change"
SCAN_CANNOT_SEPARATE = ("A bone scan is positive in OM, early HO, post-surgical remodelling and "
                        "Charcot alike (specificity 0.28)"
                        + cited(DINH_2008, ORZEL_1985) + ".")
SCAN_MRI_FIRST = ("MRI first: normal marrow argues strongly against osteomyelitis (LR− 0.14)"
                  + cited(IWGDF_2023, ACR_2019, BUTALIA_2008) + ".")
SCAN_CHARCOT = ("With Charcot, if MRI cannot be done: leukocyte SPECT/CT, not a bone scan"
                + cited(GENTILI_REVIEW) + ".")
SCAN_EARLY = ("Before day 14 every imaging test reflects the surgery; consider waiting"
              + cited(ORZEL_1985) + ".")
REPLACE_LABEL = "Replace the bone scan with {mri}"
NO_ID_NO_REPLACEMENT = "The draft order has no id, so no replacement can be offered."
NOT_CHECKED = "**Not checked:** {notes}."
RULES_LINE = "Rules: {rules}"

DISCLAIMER = ("*Decision support, not a diagnosis: weigh it against the examination and local "
              "protocols.*")
