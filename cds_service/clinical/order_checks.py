"""Order-hook checks (clinical-rules.md §10): O-ABX, O-HO, O-NSAID, O-VANC, O-SCAN.

Each check reads the patient's assessment (the same engine as patient-view, without the relevance
gate) and the draft orders, and returns card specs of kind ``order-check`` whose rule is the O-* id.
Every card carries the ``tma-bone-assessment`` extension object. At order-select only the selected
orders trigger a check; at order-sign every draft order does. Indicators: ``info`` at order-select
and ``warning`` at order-sign, except O-HO and O-NSAID (``warning`` at both) and O-VANC (``info``
when the dose is outside 15–20 mg/kg, ``warning`` when weight or renal data is missing, at both).
Every warning card carries override reasons.

Choices where the rulebook is silent (also in the README section on order hooks):

- O-ABX fires only when the bone-biopsy suggestion T-BX applies (osteomyelitis ``probable`` or
  ``possible``, no biopsy or bone culture since the amputation). With osteomyelitis
  ``not-supported``, ``unlikely`` or ``indeterminate`` the antibiotic is most likely for something
  else and §8 does not advise a biopsy, so asking for one before antibiotics would be noise.
- Co-medication NSAID gates (anticoagulant, antiplatelet, corticosteroid, SSRI) also count the other
  draft orders of the session (all of them, also at order-select): ordering apixaban and
  indomethacin together fails the gate. Draft orders never change the assessment itself (a draft
  antibiotic is not yet "recent antibiotics").
- O-VANC: an order for oral vancomycin is not checked (C. difficile dosing, not mg/kg); a dose
  written in mg/kg is compared with 15–20 mg/kg directly; an IV order whose dose cannot be read
  gives an ``info`` card with the computed range when weight and renal data are present.
- O-SCAN is quiet when a foot MRI was done in the last 28 days (the MRI it would suggest exists;
  T-MRI's own rule) and when T-SCAN-HO applies (the scan then judges HO maturity, §8).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..cards import Action, CardSpec, Suggestion, md, plain
from . import facts as th
from .draft_orders import DraftOrder, DraftOrders
from .gates import (
    NSAID_MEDICATION_GATES,
    fixed_dosing_inappropriate,
    mg,
    nsaid_gate_failures,
    vancomycin_dose,
    vancomycin_missing,
    vancomycin_range_text,
)
from .nexttests import RECENT_DAYS, t_bx, t_mri, t_scan_ho
from .rules import Assessment
from .sources import (
    ACR_2019,
    BUTALIA_2008,
    DINH_2008,
    GADOLINIUM,
    HIP_HO_REVIEW,
    IWGDF_2023,
    IWGDF_SEVERITY,
    JFAS_2015,
    JFAS_2016,
    OPENFDA_NSAID,
    ORZEL_1985,
    PRIOR_ANTIBIOTICS,
    RYBAK_2020,
    SVS_2016,
)
from .vocabulary import note_text

KIND = "order-check"
# Override reasons (CDS Hooks 2.0 Coding; display is required). Codes are the project's own.
OVERRIDE = {
    "clinically-unstable": "Clinically unstable",
    "culture-obtained": "Culture already obtained",
    "benefit-outweighs-risk": "Benefit outweighs risk",
    "patient-declined": "Patient declined",
    "other-indication": "Antibiotic is for another infection",
    "record-out-of-date": "Record out of date (gate no longer applies)",
    "pharmacy-dosing": "Dosed with pharmacy",
    "mri-contraindicated": "MRI contraindicated or unavailable",
}
REASONS = {
    "O-ABX": ("clinically-unstable", "culture-obtained", "patient-declined"),
    "O-HO": ("other-indication", "clinically-unstable", "benefit-outweighs-risk"),
    "O-NSAID": ("benefit-outweighs-risk", "record-out-of-date"),
    "O-VANC": ("pharmacy-dosing", "clinically-unstable"),
    "O-SCAN": ("mri-contraindicated", "benefit-outweighs-risk", "patient-declined"),
}


def _card(rule: str, summary: str, indicator: str, lines: Sequence[str], a: Assessment,
          notes: Sequence[str], suggestions: Sequence[Suggestion] = ()) -> CardSpec:
    detail = list(lines)
    if notes:
        detail.append("**Draft orders not read:** " + "; ".join(note_text(n) for n in notes)
                      + ".")
    reasons = [(code, OVERRIDE[code]) for code in REASONS[rule]] if indicator != "info" else []
    return CardSpec(summary, indicator, "\n\n".join(detail), KIND, [rule], list(suggestions),
                    "any", reasons, a.extension())


def _default_indicator(hook: str) -> str:
    return "info" if hook == "order-select" else "warning"


def _names(orders: Sequence[DraftOrder]) -> str:
    return ", ".join(dict.fromkeys(md(o.label) for o in orders))


def _state(a: Assessment) -> str:
    return (f"Osteomyelitis **{a.osteomyelitis}**, heterotopic ossification "
            f"**{a.heterotopic_ossification}**"
            + (f" (rules {', '.join(a.rule_ids)})" if a.rule_ids else "") + ".")


#####################################################################
# The checks


def o_abx(a: Assessment, drafts: DraftOrders, hook: str, patient_id: str) -> list[CardSpec]:
    """O-ABX: an antibacterial draft while osteomyelitis is probable or possible (not confirmed),
    no bone biopsy or culture since the amputation and no severe infection → obtain a bone biopsy
    for culture and histology first if clinically stable, with the T-BX order. IWGDF/IDSA 2023;
    SVS 2016 (1C); prior antibiotics lower culture yield (IWGDF rationale, B); Rybak 2020 (c)."""
    mappings = a.facts.record.mappings
    antibiotics = [o for o in drafts.checked if o.is_medication and o.is_a(mappings,
                                                                           "antibacterial")]
    if not antibiotics or a.osteomyelitis == "confirmed" or "severe-infection" in a.flags:
        return []
    biopsy = t_bx(a, patient_id)  # empty unless OM probable/possible and no biopsy/culture yet
    if not biopsy:
        return []
    lines = [
        f"Draft order: **{_names(antibiotics)}**. {_state(a)}",
        "In a clinically stable patient, take bone for culture **and** histology before the "
        "first antibiotic dose: antibiotics lower the culture yield, and the culture decides the "
        f"agent and the duration. *({IWGDF_2023.cite()}; {SVS_2016.cite()}; "
        f"{PRIOR_ANTIBIOTICS.cite()})*",
        "Percutaneous biopsy through intact skin away from the ulcer. If the patient is unstable, "
        f"do not delay antibiotics. *({IWGDF_SEVERITY.cite()})*",
    ]
    if "recent-antibiotics" in a.flags:
        lines.append("Antibiotics were already given in the last 14 days: culture yield is "
                     "already lower; an antibiotic-free window may help. "
                     f"*({PRIOR_ANTIBIOTICS.cite()})*")
    return [_card("O-ABX", "Obtain bone biopsy for culture and histology before starting "
                  "antibiotics if clinically stable", _default_indicator(hook), lines, a,
                  drafts.notes, biopsy)]


def o_ho(a: Assessment, drafts: DraftOrders, hook: str, patient_id: str) -> list[CardSpec]:
    """O-HO: an antibacterial draft while ``ho-favored`` is flagged (HO present or mature, OM
    not-supported or unlikely) → the findings favor HO over OM; warning at both hooks.
    JFAS 2016."""
    mappings = a.facts.record.mappings
    antibiotics = [o for o in drafts.checked if o.is_medication and o.is_a(mappings,
                                                                           "antibacterial")]
    if not antibiotics or "ho-favored" not in a.flags:
        return []
    evidence = next((r for r in a.results if r.id == "HO-2"), None)
    lines = [
        f"Draft order: **{_names(antibiotics)}**. {_state(a)}",
        (evidence.explanation if evidence else "The findings favor heterotopic ossification over "
         "osteomyelitis.") + " Heterotopic bone is not an infection and is not treated with "
        f"antibiotics. *({JFAS_2016.cite()})*",
        "If the antibiotic is for another infection, go ahead. For the stump: offloading and "
        "footwear for prominences, physical therapy, surveillance radiographs; excision of "
        f"mature, symptomatic or ulcerating HO. *({JFAS_2016.cite()}; {JFAS_2015.cite()})*",
    ]
    return [_card("O-HO", "Findings favor heterotopic ossification over osteomyelitis: review "
                  "the antibiotic order", "warning", lines, a, drafts.notes)]


def _draft_gate_failures(a: Assessment, drafts: DraftOrders, nsaid: DraftOrder) -> list[str]:
    """Co-medication gates failed by other draft orders of the session (their labels)."""
    mappings = a.facts.record.mappings
    out = []
    for other in drafts.orders:
        if other is nsaid or not other.is_medication:
            continue
        if any(other.is_a(mappings, concept) for concept in NSAID_MEDICATION_GATES):
            out.append(other.label)
        elif not other.identified:  # never assumed safe (clinical-rules.md §2 "Medications")
            out.append(f"{other.ref} ({other.label}) could not be identified")
    return out


def o_nsaid(a: Assessment, drafts: DraftOrders, hook: str, patient_id: str) -> list[CardSpec]:
    """O-NSAID: an indomethacin or other NSAID draft while any NSAID gate fails → warning at both
    hooks naming each failing gate, with a suggestion that deletes the draft. Gates as §9:
    indomethacin label (openFDA: boxed warning, CABG), renal and bleeding risk (B); the
    indomethacin evidence for HO is prophylaxis-level (PMC6500709); radiation after excision
    instead (JFAS 2015)."""
    mappings = a.facts.record.mappings
    base = nsaid_gate_failures(a.facts, "renal-impairment" in a.flags)
    cards = []
    for order in drafts.checked:
        if not (order.is_medication and order.is_a(mappings, "nsaid")):
            continue
        others = _draft_gate_failures(a, drafts, order)
        failures = base + [f"{plain(label)} (draft order)" for label in others]
        if not failures:
            continue
        shown = [md(f, 200) for f in failures]  # gate phrases carry record text (drug names)
        lines = [
            f"Draft order: **{md(order.label)}**.",
            "NSAID not advised: " + "; ".join(shown) + ". NSAIDs carry a "
            "boxed warning for cardiovascular thrombotic events and gastrointestinal bleeding, "
            "harm the kidney, and "
            f"are contraindicated in the CABG setting. *({OPENFDA_NSAID.cite()})*",
            "For heterotopic ossification the indomethacin evidence is prophylaxis-level "
            f"*({HIP_HO_REVIEW.cite()})*; prefer single-fraction radiation (7–8 Gy) within about "
            f"48 h after excision. *({JFAS_2015.cite()})*",
            _state(a),
        ]
        suggestions = []
        if order.id:
            suggestions.append(Suggestion(
                f"Remove the draft order: {plain(order.label)}",
                (Action("delete", f"Remove draft order {order.ref} ({plain(order.label)})",
                        resource_id=order.ref),), None, "O-NSAID"))
        else:
            lines.append("The draft order has no id, so no removal can be offered.")
        name = mappings.label("indomethacin") if order.is_a(mappings, "indomethacin") else "NSAID"
        unread = [f"{o.ref} ({o.label}): the drug could not be identified, so it is not assumed "
                  "safe" for o in drafts.unidentified if o is not order]
        cards.append(_card("O-NSAID", plain(f"{name} not advised: " + "; ".join(failures), 200),
                           "warning",
                           lines, a, [*drafts.notes, *unread], suggestions))
    return cards


def o_vanc(a: Assessment, drafts: DraftOrders, hook: str, patient_id: str) -> list[CardSpec]:
    """O-VANC: a vancomycin draft whose dose per administration is outside 15–20 mg/kg of the
    latest weight (30 days) → info with the computed range; no weight (30 days) or no creatinine
    or eGFR (7 days) → warning naming what is missing. Rybak 2020 (AUC 400–600 mg·h/L; loading
    20–35 mg/kg in serious illness, B)."""
    mappings = a.facts.record.mappings
    facts = a.facts
    cards = []
    for order in drafts.checked:
        if not (order.is_medication and order.is_a(mappings, "vancomycin")):
            continue
        if order.route == "oral":
            continue
        missing = vancomycin_missing(facts)
        dose_range = vancomycin_dose(facts)
        weight = facts.weight.shown_value() if facts.weight else None
        range_text = vancomycin_range_text(facts)
        written = _dose_text(order)
        per_kg = _per_kg(order, facts)
        lines = [f"Draft order: **{md(order.label)}**, dose per administration {md(written)}."]
        if missing:
            summary = "Vancomycin dose cannot be checked: " + "; ".join(missing)
            lines.append("Vancomycin needs a current weight (30 days) and renal function "
                         "(creatinine or eGFR, 7 days) for dosing: " + "; ".join(missing) + ". "
                         f"Dose with pharmacy. *({RYBAK_2020.cite()})*")
            if range_text:
                lines.append(f"15–20 mg/kg: {range_text}.")
            indicator = "warning"
        else:
            if per_kg is not None and 15 <= round(per_kg, 6) <= 20:
                continue
            indicator = "info"
            if per_kg is None:
                summary = (f"Vancomycin dose not stated; 15–20 mg/kg for {weight} is "
                           f"{mg(dose_range[0])}–{mg(dose_range[1])} mg per dose"
                           if dose_range else "Vancomycin dose not stated")
                lines.append((order.dose_problem.capitalize() + "." if order.dose_problem else
                              "The order gives no dose per administration.")
                             + f" 15–20 mg/kg: {range_text}. *({RYBAK_2020.cite()})*")
            else:
                low, high = dose_range or (0.0, 0.0)  # weight is present: nothing is missing
                summary = (f"Vancomycin {plain(written)} is {per_kg:.1f} mg/kg, outside 15–20 "
                           f"mg/kg for {weight} ({mg(low)}–{mg(high)} mg)")
                lines.append(f"{md(written)} is {per_kg:.1f} mg/kg; 15–20 mg/kg: {range_text}. "
                             f"*({RYBAK_2020.cite()})*")
                if per_kg > 20:
                    lines.append("A loading dose of 20–35 mg/kg may be intended in serious "
                                 f"illness. *({RYBAK_2020.cite()}, B)*")
        lines.append("Use AUC-guided dosing (target AUC 400–600 mg·h/L) with pharmacy. "
                     f"*({RYBAK_2020.cite()})*")
        if fixed_dosing_inappropriate(facts, "renal-impairment" in a.flags):
            lines.append("Renal function is reduced: fixed 12-hourly dosing is inappropriate. "
                         f"*({RYBAK_2020.cite()})*")
        lines.append(_state(a))
        cards.append(_card("O-VANC", summary, indicator, lines, a, drafts.notes))
    return cards


def _dose_text(order: DraftOrder) -> str:
    if order.dose_mg is not None:
        shown = f"{mg(order.dose_mg)} mg"
        if order.dose_as_written and order.dose_as_written.replace(" ", "") != shown.replace(
                ",", "").replace(" ", ""):
            shown += f" ({order.dose_as_written} as ordered)"
        return shown
    if order.dose_mg_per_kg is not None:
        return f"{order.dose_mg_per_kg:g} mg/kg"
    return "not stated"


def _per_kg(order: DraftOrder, facts: th.Facts) -> float | None:
    if order.dose_mg_per_kg is not None:
        return order.dose_mg_per_kg
    if order.dose_mg is None or facts.weight is None or not facts.weight.value:
        return None
    return order.dose_mg / facts.weight.value


def _mri_suggestion(a: Assessment, patient_id: str, scan: DraftOrder) -> Suggestion:
    """Delete the draft scan and create the T-MRI order: the very order patient-view suggests."""
    mri = t_mri(a, patient_id)
    side = a.facts.record.side
    label = mri.label.removeprefix("Order ").removesuffix(f" ({side} foot)")
    return Suggestion(
        f"Replace the bone scan with {label}" + (f" ({side} foot)" if side else ""),
        (Action("delete", f"Remove draft order {scan.ref} ({plain(scan.label)})",
                resource_id=scan.ref),
         *mri.actions),
        None, "T-MRI", mri.codes)


def o_scan(a: Assessment, drafts: DraftOrders, hook: str, patient_id: str) -> list[CardSpec]:
    """O-SCAN: a three-phase bone scan draft while osteomyelitis is possible or indeterminate and
    T-SCAN-HO does not apply → MRI is preferred, with one suggestion that deletes the draft scan
    and creates the T-MRI order. Bone scan specificity about 0.28 (Dinh 2008); positive in early HO,
    remodelling and Charcot (Orzel 1985); MRI first (IWGDF/IDSA 2023; ACR 2019; Butalia 2008)."""
    mappings = a.facts.record.mappings
    scans = [o for o in drafts.checked if o.is_service
             and o.is_a(mappings, "three-phase-bone-scan")]
    if not scans or a.osteomyelitis not in ("possible", "indeterminate"):
        return []
    if t_scan_ho(a, patient_id):
        return []
    if a.facts.record.imaging_reports(("foot-mri",), RECENT_DAYS):
        return []
    cards = []
    for scan in scans:
        lines = [
            f"Draft order: **{md(scan.label)}**. {_state(a)}",
            "A three-phase bone scan is positive in osteomyelitis, early heterotopic ossification, "
            "post-surgical remodelling and Charcot alike (specificity about 0.28): it cannot "
            f"separate them here. *({DINH_2008.cite()}; {ORZEL_1985.cite()})*",
            "MRI of the residual foot is preferred: normal marrow argues strongly against "
            f"osteomyelitis (LR- 0.14). *({IWGDF_2023.cite()}; {ACR_2019.cite()}; "
            f"{BUTALIA_2008.cite()})*",
        ]
        if "renal-impairment" in a.flags:
            lines.append(f"Renal impairment: MRI **without** gadolinium. *({GADOLINIUM.cite()})*")
        if "charcot" in a.flags:
            lines.append("With Charcot, if MRI is not possible prefer leukocyte SPECT/CT over the "
                         "bone scan.")
        if "early-postoperative" in a.flags:
            lines.append("Before day 14 after amputation every imaging test reflects the surgery; "
                         "consider waiting.")
        suggestions = [_mri_suggestion(a, patient_id, scan)] if scan.id else []
        if not scan.id:
            lines.append("The draft order has no id, so no replacement can be offered.")
        cards.append(_card("O-SCAN", "MRI is preferred to separate OM from early HO or "
                           "post-surgical change", _default_indicator(hook), lines, a,
                           drafts.notes, suggestions))
    return cards


CHECKS = (o_abx, o_ho, o_nsaid, o_vanc, o_scan)


def order_cards(a: Assessment, drafts: DraftOrders, hook: str,
                patient_id: str) -> list[CardSpec]:
    """Every O-* card for these draft orders, in rulebook order (never the assessment card)."""
    return [card for check in CHECKS for card in check(a, drafts, hook, patient_id)]
