"""Next-test suggestions (clinical-rules.md §8): T-XR, T-LAB, T-MRI, T-ALT, T-BX, T-SCAN-HO.

Each returns :class:`~cds_service.cards.Suggestion` objects that create a draft ServiceRequest.
"""

from __future__ import annotations

from ..cards import Action, Suggestion
from . import facts as th
from .orders import ORDERABLES, service_request
from .rules import Assessment
from .sources import ACR_2019, EANM_2024, IWGDF_2023, LLEWELLYN_2020, SHEHAB_2002, SVS_2016
from .vocabulary import PROBE_TO_BONE_ADVICE, TEST_WORDS

RECENT_DAYS = 28  # a test done this recently is not suggested again (clinical-rules.md §8)
MRI_QUESTION = "Osteomyelitis versus heterotopic ossification or post-surgical change"
ALL_IMAGING = ("foot-radiograph", "foot-mri", "foot-ct", "three-phase-bone-scan",
               "leukocyte-scan", "fdg-pet")


def _suggest(key: str, rule: str, patient_id: str, side: str | None, reason: str,
             recommended: bool | None = None, note: str | None = None) -> Suggestion:
    resource = service_request(key, patient_id, side, reason, note)
    label = f"Order {ORDERABLES[key].label}" + (f" ({side} foot)" if side else "")
    codes = tuple(f"{c['system']}|{c['code']}" for c in resource["code"]["coding"])
    return Suggestion(label, (Action("create", f"Draft order: {ORDERABLES[key].label}",
                                     resource),), recommended, rule, codes)


def _done(a: Assessment, kinds: tuple[str, ...], days: float) -> bool:
    return bool(a.facts.record.imaging_reports(kinds, days))


def t_xr(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-XR: foot radiograph when OM is not confirmed, not early, none in 28 days. IWGDF 2023;
    ACR 2019 variant 1 (rating 9)."""
    if a.osteomyelitis == "confirmed" or "early-postoperative" in a.flags:
        return []
    if _done(a, ("foot-radiograph",), RECENT_DAYS):
        return []
    return [_suggest("xr", "T-XR", patient_id, a.facts.record.side,
                     "Osteomyelitis or heterotopic ossification at the amputation stump; compare "
                     "with the post-operative baseline")]


def t_lab(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-LAB: ESR and/or CRP when none in 14 days, not early. IWGDF 2023 (PTB, ESR/CRP, XR)."""
    if "early-postoperative" in a.flags:
        return []
    record = a.facts.record
    out = []
    for concept, key in (("esr", "esr"), ("crp", "crp")):
        if not record.quantities(concept, 14):
            out.append(_suggest(key, "T-LAB", patient_id, None,
                                "Inflammatory marker for suspected osteomyelitis at the stump"))
    return out


def t_mri_alt(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-MRI with T-ALT alternatives: MRI when OM is possible (or indeterminate with a wound, not
    early) and none in 28 days; without contrast with renal impairment. IWGDF 2023; ACR 2019;
    SVS 2016 (1B). Alternatives: leukocyte SPECT/CT, FDG-PET/CT, bone scan (EANM 2024;
    Llewellyn 2020); leukocyte SPECT/CT first with Charcot."""
    wound = a.facts.has_wound
    wanted = a.osteomyelitis == "possible" or (
        a.osteomyelitis == "indeterminate" and wound and "early-postoperative" not in a.flags)
    if not wanted or _done(a, ("foot-mri",), RECENT_DAYS):
        return []
    out = [t_mri(a, patient_id, recommended=True)]
    alternatives = [("wbc-spect", "leukocyte-scan"), ("pet", "fdg-pet"),
                    ("bone-scan", "three-phase-bone-scan")]
    for key, kind in alternatives:
        if not _done(a, (kind,), RECENT_DAYS):
            out.append(_suggest(key, "T-ALT", patient_id, a.facts.record.side,
                                MRI_QUESTION + " (when MRI is contraindicated or non-diagnostic)",
                                recommended=False))
    return out


def t_mri(a: Assessment, patient_id: str, recommended: bool | None = None) -> Suggestion:
    """The T-MRI order itself: MRI foot without and with contrast (CPT 73720), or without
    contrast (73718) with renal impairment (gadolinium practice, B)."""
    renal = "renal-impairment" in a.flags
    return _suggest("mri-plain" if renal else "mri", "T-MRI", patient_id, a.facts.record.side,
                    MRI_QUESTION, recommended=recommended,
                    note="Without contrast: renal impairment" if renal else None)


def t_bc(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-BC: blood cultures when severe infection is flagged (S-1), unless taken in the last 48 h.
    IWGDF/IDSA severity classification (B); clinical-evidence.md A7.2 S1 and A7.6 #8 (LOINC 600-7,
    C). Not in the rulebook's §8 table: added because S-1's own text asks for blood cultures."""
    if "severe-infection" not in a.flags:
        return []
    if a.facts.record.coded("blood-culture", 2):
        return []
    return [_suggest("blood-culture", "T-BC", patient_id, None,
                     "Severe infection after partial-foot amputation",
                     note="Two sets before the first antibiotic dose; do not delay antibiotics.")]


def t_bx(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-BX: bone biopsy for culture and histology when OM is probable or possible and no biopsy
    or bone culture since the amputation. IWGDF 2023; SVS 2016 rec 5 (1C)."""
    if a.osteomyelitis not in ("probable", "possible"):
        return []
    record = a.facts.record
    if any(record.after_amputation(p.when) for p in record.procedures("bone-biopsy")):
        return []
    if any(record.after_amputation(f.when) for c in ("bone-culture", "bone-histopathology")
           for f in record.coded(c)):
        return []
    note = "Through intact skin away from the ulcer; send culture and histopathology."
    if "severe-infection" in a.flags:
        note += " Severe infection: do not delay antibiotics for the biopsy."
    return [_suggest("biopsy", "T-BX", patient_id, record.side,
                     "Confirm osteomyelitis and identify the pathogen", note=note)]


def t_scan_ho(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-SCAN-HO: bone scan to judge HO maturity before excision: HO present (not mature), >= 90
    days, no bone scan in 90 days, and a prominence, stiffness or an ulcer over HO. Shehab 2002."""
    facts = a.facts
    if a.heterotopic_ossification != "present":
        return []
    if facts.days is not None and facts.days < 90:
        return []
    if _done(a, ("three-phase-bone-scan",), th.IMAGING):
        return []
    record = facts.record
    signs = any(f.polarity == "positive" for c in ("plantar-prominence",
                                                  "decreased-range-of-motion")
                for f in record.coded(c, th.IMAGING))
    if not signs and "ho-ulcer-coexistence" not in a.flags:
        return []
    return [_suggest("bone-scan", "T-SCAN-HO", patient_id, record.side,
                     "Maturity of heterotopic ossification before excision")]


def probe_to_bone_advice(a: Assessment) -> str | None:
    """A bedside probe-to-bone test when there is a wound and none in 14 days (text only).
    Lavery 2007 (NPV 0.98); SVS 2016 (2C)."""
    if not a.facts.has_wound or a.osteomyelitis == "confirmed":
        return None
    if a.facts.record.coded("probe-to-bone", 14):
        return None
    return PROBE_TO_BONE_ADVICE


def short_name(suggestion: Suggestion) -> str:
    """The short name of what a suggestion orders ("foot radiograph", "CRP"), for summaries."""
    for key, orderable in ORDERABLES.items():
        if suggestion.codes and suggestion.codes[0] == "|".join(orderable.codings[0][:2]):
            return TEST_WORDS[key]
    return suggestion.label.removeprefix("Order ")


SOURCES = (IWGDF_2023, ACR_2019, SVS_2016, EANM_2024, LLEWELLYN_2020, SHEHAB_2002)
