"""Next-test suggestions (clinical-rules.md §8): T-XR, T-LAB, T-MRI, T-ALT, T-BX, T-SCAN-HO.

Each returns :class:`~cds_service.cards.Suggestion` objects that create a draft ServiceRequest.
The draft orders are fixed but for the patient and the foot: they are built and validated once
(:class:`~cds_service.clinical.orders.DraftServiceRequest`, below) and copied for each patient.
"""

from __future__ import annotations

from ..cards import Action, Suggestion
from . import facts as th
from .orders import ORDERABLES, DraftServiceRequest
from .rules import Assessment
from .sources import ACR_2019, EANM_2024, IWGDF_2023, LLEWELLYN_2020, SHEHAB_2002, SVS_2016
from .vocabulary import PROBE_TO_BONE_ADVICE, TEST_WORDS

RECENT_DAYS = 28  # a test done this recently is not suggested again (clinical-rules.md §8)
PTB_DAYS = 14  # probe-to-bone advice unless one in 14 days (within th.WOUND)
MRI_QUESTION = "Osteomyelitis versus heterotopic ossification or post-surgical change"
ALL_IMAGING = ("foot-radiograph", "foot-mri", "foot-ct", "three-phase-bone-scan",
               "leukocyte-scan", "fdg-pet")


# The draft order of each suggestion: orderable, reason and note (clinical-rules.md §8).
XR_ORDER = DraftServiceRequest(  # T-XR
    "xr", "Osteomyelitis or heterotopic ossification at the amputation stump; compare with the "
    "post-operative baseline")
LAB_REASON = "Inflammatory marker for suspected osteomyelitis at the stump"
LAB_DAYS = 14  # T-LAB: a marker of the last 14 days is not ordered again (within th.LABS)
ESR_ORDER = DraftServiceRequest("esr", LAB_REASON)  # T-LAB
CRP_ORDER = DraftServiceRequest("crp", LAB_REASON)
MRI_ORDER = DraftServiceRequest("mri", MRI_QUESTION)  # T-MRI
MRI_PLAIN_ORDER = DraftServiceRequest("mri-plain", MRI_QUESTION,  # T-MRI, renal impairment
                                      note="Without contrast: renal impairment")
ALTERNATIVE_REASON = MRI_QUESTION + " (when MRI is contraindicated or non-diagnostic)"
ALTERNATIVE_ORDERS = tuple(  # T-ALT, with the imaging kind that makes each one unnecessary
    (DraftServiceRequest(key, ALTERNATIVE_REASON), kind)
    for key, kind in (("wbc-spect", "leukocyte-scan"), ("pet", "fdg-pet"),
                      ("bone-scan", "three-phase-bone-scan")))
MRI_AND_ALTERNATIVES = ("foot-mri", *(kind for _order, kind in ALTERNATIVE_ORDERS))
BLOOD_CULTURE_ORDER = DraftServiceRequest(  # T-BC
    "blood-culture", "Severe infection after partial-foot amputation",
    note="Two sets before the first antibiotic dose; do not delay antibiotics.")
BIOPSY_REASON = "Confirm osteomyelitis and identify the pathogen"
BIOPSY_NOTE = "Through intact skin away from the ulcer; send culture and histopathology."
BIOPSY_ORDERS = {  # T-BX, by severe infection
    False: DraftServiceRequest("biopsy", BIOPSY_REASON, note=BIOPSY_NOTE),
    True: DraftServiceRequest("biopsy", BIOPSY_REASON, note=BIOPSY_NOTE + " Severe infection: "
                              "do not delay antibiotics for the biopsy."),
}
SCAN_HO_ORDER = DraftServiceRequest(  # T-SCAN-HO
    "bone-scan", "Maturity of heterotopic ossification before excision")


def _suggest(order: DraftServiceRequest, rule: str, patient_id: str, side: str | None,
             recommended: bool | None = None) -> Suggestion:
    label = order.orderable.label
    return Suggestion(f"Order {label} ({side} foot)" if side else f"Order {label}",
                      (Action("create", f"Draft order: {label}",
                              order.for_patient(patient_id, side)),),
                      recommended, rule, order.codes)


def _done(a: Assessment, kinds: tuple[str, ...], days: float) -> bool:
    return bool(a.facts.record.imaging_reports(kinds, days))


def t_xr(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-XR: foot radiograph when OM is not confirmed, not early, none in 28 days. IWGDF 2023;
    ACR 2019 variant 1 (rating 9)."""
    if a.osteomyelitis == "confirmed" or "early-postoperative" in a.flags:
        return []
    if _done(a, ("foot-radiograph",), RECENT_DAYS):
        return []
    return [_suggest(XR_ORDER, "T-XR", patient_id, a.facts.record.side)]


def t_lab(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-LAB: ESR and/or CRP when none in 14 days, not early. IWGDF 2023 (PTB, ESR/CRP, XR).

    The facts hold each marker's newest usable value of the last ``th.LABS`` (30) days: there is
    one in 14 days exactly when that one is (nothing newer is usable), so the record is not read
    again."""
    if "early-postoperative" in a.flags:
        return []
    facts = a.facts
    out = []
    for latest, order in ((facts.esr, ESR_ORDER), (facts.crp, CRP_ORDER)):
        if latest is None or not facts.record.within(latest.when, LAB_DAYS):
            out.append(_suggest(order, "T-LAB", patient_id, None))
    return out


def t_mri_alt(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-MRI with T-ALT alternatives: MRI when OM is possible (or indeterminate with a wound, not
    early) and none in 28 days; without contrast with renal impairment. IWGDF 2023; ACR 2019;
    SVS 2016 (1B). Alternatives: leukocyte SPECT/CT, FDG-PET/CT, bone scan (EANM 2024;
    Llewellyn 2020); leukocyte SPECT/CT first with Charcot."""
    wound = a.facts.has_wound
    wanted = a.osteomyelitis == "possible" or (
        a.osteomyelitis == "indeterminate" and wound and "early-postoperative" not in a.flags)
    if not wanted:
        return []
    done = {r.kind for r in a.facts.record.imaging_reports(MRI_AND_ALTERNATIVES, RECENT_DAYS)}
    if "foot-mri" in done:
        return []
    out = [t_mri(a, patient_id, recommended=True)]
    for order, kind in ALTERNATIVE_ORDERS:
        if kind not in done:
            out.append(_suggest(order, "T-ALT", patient_id, a.facts.record.side,
                                recommended=False))
    return out


def t_mri(a: Assessment, patient_id: str, recommended: bool | None = None) -> Suggestion:
    """The T-MRI order itself: MRI foot without and with contrast (CPT 73720), or without
    contrast (73718) with renal impairment (gadolinium practice, B)."""
    renal = "renal-impairment" in a.flags
    return _suggest(MRI_PLAIN_ORDER if renal else MRI_ORDER, "T-MRI", patient_id,
                    a.facts.record.side, recommended=recommended)


def t_bc(a: Assessment, patient_id: str) -> list[Suggestion]:
    """T-BC: blood cultures when severe infection is flagged (S-1), unless taken in the last 48 h.
    IWGDF/IDSA severity classification (B); clinical-evidence.md A7.2 S1 and A7.6 #8 (LOINC 600-7,
    C). Not in the rulebook's §8 table: added because S-1's own text asks for blood cultures."""
    if "severe-infection" not in a.flags:
        return []
    if a.facts.record.coded("blood-culture", 2):
        return []
    return [_suggest(BLOOD_CULTURE_ORDER, "T-BC", patient_id, None)]


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
    return [_suggest(BIOPSY_ORDERS["severe-infection" in a.flags], "T-BX", patient_id,
                     record.side)]


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
    return [_suggest(SCAN_HO_ORDER, "T-SCAN-HO", patient_id, record.side)]


def probe_to_bone_advice(a: Assessment) -> str | None:
    """A bedside probe-to-bone test when there is a wound and none in 14 days (text only).
    Lavery 2007 (NPV 0.98); SVS 2016 (2C)."""
    if not a.facts.has_wound or a.osteomyelitis == "confirmed":
        return None
    ptb = a.facts.ptb  # the newest probe-to-bone result of th.WOUND (30) days, as for T-LAB
    if ptb is not None and a.facts.record.within(ptb.when, PTB_DAYS):
        return None
    return PROBE_TO_BONE_ADVICE


def short_name(suggestion: Suggestion) -> str:
    """The short name of what a suggestion orders ("foot radiograph", "CRP"), for summaries."""
    if suggestion.codes and suggestion.codes[0] in SHORT_NAMES:
        return SHORT_NAMES[suggestion.codes[0]]
    return suggestion.label.removeprefix("Order ")


# system|code of each orderable's first coding -> its short name (the first orderable that has it)
SHORT_NAMES: dict[str, str] = {}
for _key, _orderable in ORDERABLES.items():
    SHORT_NAMES.setdefault("|".join(_orderable.codings[0][:2]), TEST_WORDS[_key])


SOURCES = (IWGDF_2023, ACR_2019, SVS_2016, EANM_2024, LLEWELLYN_2020, SHEHAB_2002)
