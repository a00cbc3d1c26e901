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
from ..fhir.resources import codings
from . import facts as th
from . import vocabulary as v
from .draft_orders import DraftOrder, DraftOrders
from .gates import (
    NSAID_MEDICATION_GATES,
    GateFailure,
    fixed_dosing_inappropriate,
    mg,
    nsaid_gate_failures,
    vancomycin_dose,
    vancomycin_missing,
    vancomycin_range_text,
)
from .nexttests import RECENT_DAYS, t_bx, t_mri, t_scan_ho
from .rules import Assessment
from .vocabulary import (
    NBSP,
    drug_word,
    ho_state,
    join_words,
    note_text,
    om_state,
    unidentified_medication,
    value_text,
)

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
SUMMARY_BUDGET = 139  # a summary is under 140 characters (CDS Hooks 2.0)


def _card(rule: str, summary: str, indicator: str, lines: Sequence[str], a: Assessment,
          suggestions: Sequence[Suggestion] = ()) -> CardSpec:
    """An O-* card. Like the other companion cards it shows no rule ids: its own is in
    ``extension["tma-card"]``, the assessment's in the assessment object it carries (the
    "Rules:" reference is the assessment card's, clinical-rules.md §11)."""
    detail = list(lines)
    reasons = [(code, OVERRIDE[code]) for code in REASONS[rule]] if indicator != "info" else []
    return CardSpec(summary, indicator, "\n\n".join(detail), KIND, [rule], list(suggestions),
                    "any", reasons, a.extension())


def _default_indicator(hook: str) -> str:
    return "info" if hook == "order-select" else "warning"


def _names(orders: Sequence[DraftOrder]) -> str:
    return ", ".join(dict.fromkeys(md(order_name(o)) for o in orders))


def order_name(order: DraftOrder) -> str:
    """What a draft order is, for people: its label, or "medication coded 99999999" when the
    order names its drug by a code only (plain text; escape it where shown)."""
    if order.label not in ("medication", "service order"):
        return order.label
    concept = order.resource.get("medicationCodeableConcept") or order.resource.get("code")
    codes = [c["code"] for c in codings(concept) if isinstance(c.get("code"), str)]
    if order.label == "medication":
        return unidentified_medication(None, codes)
    return f"{order.label} coded {codes[0]}" if codes else order.label


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
    state = f"{om_state(a.osteomyelitis)}, no bone biopsy since surgery"
    lines = [v.ORDERED_WHILE.format(order=_names(antibiotics), state=state),
             v.ABX_BEFORE_FIRST_DOSE, v.ABX_UNSTABLE]
    if "recent-antibiotics" in a.flags:
        lines.append(v.ABX_ALREADY_GIVEN)
    return [_card("O-ABX", v.ABX_SUMMARY, _default_indicator(hook), lines, a, biopsy)]


def o_ho(a: Assessment, drafts: DraftOrders, hook: str, patient_id: str) -> list[CardSpec]:
    """O-HO: an antibacterial draft while ``ho-favored`` is flagged (HO present or mature, OM
    not-supported or unlikely) → the findings favor HO over OM; warning at both hooks.
    JFAS 2016."""
    mappings = a.facts.record.mappings
    antibiotics = [o for o in drafts.checked if o.is_medication and o.is_a(mappings,
                                                                           "antibacterial")]
    if not antibiotics or "ho-favored" not in a.flags:
        return []
    state = f"{om_state(a.osteomyelitis)} and {ho_state(a.heterotopic_ossification)}"
    lines = [v.ORDERED_WHILE.format(order=_names(antibiotics), state=state),
             v.HO_ABX_NOT_INFECTION, v.HO_ABX_CARE]
    return [_card("O-HO", v.HO_ABX_SUMMARY, "warning", lines, a)]


def _draft_gate_failures(a: Assessment, drafts: DraftOrders,
                         nsaid: DraftOrder) -> list[GateFailure]:
    """Co-medication gates failed by other draft orders of the session, in words (plain text):
    "aspirin 81 mg oral tablet (draft order, antiplatelet)"; an order whose drug could not be
    identified is never assumed safe (clinical-rules.md §2 "Medications")."""
    mappings = a.facts.record.mappings
    out = []
    for other in drafts.orders:
        if other is nsaid or not other.is_medication:
            continue
        gate = next((c for c in NSAID_MEDICATION_GATES if other.is_a(mappings, c)), None)
        name = plain(order_name(other))
        if gate is not None:
            out.append(GateFailure(v.DRAFT_GATE.format(order=name,
                                                       drug_class=v.GATE_CLASS_WORDS[gate]),
                                   v.DRAFT_GATE_SHORT.format(drug=drug_word(name))))
        elif not other.identified:
            out.append(GateFailure(v.UNIDENTIFIED_GATE.format(order=name),
                                   v.UNIDENTIFIED_GATE_SHORT))
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
        failures = base + _draft_gate_failures(a, drafts, order)
        if not failures:
            continue
        name = order_name(order)
        lines = [v.NSAID_GATES.format(order=md(name)) + "\n"
                 + "\n".join(f"- {md(f.text, 200)}" for f in failures),  # record text
                 v.NSAID_HO_ALTERNATIVE]
        suggestions = []
        if order.id:
            suggestions.append(Suggestion(
                v.REMOVE_LABEL.format(order=plain(name)),
                (Action("delete", v.REMOVE_ACTION.format(order=plain(name)),
                        resource_id=order.ref),), None, "O-NSAID"))
        else:
            lines.append(v.NO_ID_NO_REMOVAL)
        drug = mappings.label("indomethacin") if order.is_a(mappings, "indomethacin") else "NSAID"
        head = v.NSAID_SUMMARY.format(drug=drug, gates="")
        summary = head + join_words([plain(f.short) for f in failures],
                                    SUMMARY_BUDGET - len(head))
        cards.append(_card("O-NSAID", summary, "warning", lines, a, suggestions))
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
        weight = value_text(facts.weight) if facts.weight else None
        range_text = vancomycin_range_text(facts)
        written = _dose_text(order)
        per_kg = _per_kg(order, facts)
        name = md(order_name(order))
        lines = []
        if missing:
            summary = "Vancomycin dose cannot be checked: " + "; ".join(missing)
            lines.append(v.VANC_MISSING_TEXT.format(order=name)
                         + (" " + v.VANC_RANGE.format(range=range_text) if range_text else ""))
            indicator = "warning"
        else:
            if per_kg is not None and 15 <= round(per_kg, 6) <= 20:
                continue
            indicator = "info"
            if per_kg is None:
                summary = (f"Vancomycin dose not stated; 15–20 mg/kg for {weight} is "
                           f"{mg(dose_range[0])}–{mg(dose_range[1])} mg per dose"
                           if dose_range else "Vancomycin dose not stated")
                problem = order.dose_problem or "the order gives no dose per administration"
                lines.append(v.VANC_NO_DOSE_TEXT.format(order=name, problem=md(problem, 200),
                                                        range=range_text))
            else:
                low, high = dose_range or (0.0, 0.0)  # weight is present: nothing is missing
                summary = (f"Vancomycin {plain(written)} is {per_kg:.1f}{NBSP}mg/kg, outside "
                           f"15–20{NBSP}mg/kg for {weight} ({mg(low)}–{mg(high)}{NBSP}mg)")
                lines.append(v.VANC_DOSE_TEXT.format(order=name, written=md(written),
                                                     per_kg=f"{per_kg:.1f}", range=range_text))
                if per_kg > 20:
                    lines.append(v.VANC_LOADING)
        lines.append(v.VANC_AUC)
        if fixed_dosing_inappropriate(facts, "renal-impairment" in a.flags):
            lines.append(v.VANC_FIXED_DOSING)
        cards.append(_card("O-VANC", summary, indicator, lines, a))
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
    """One suggestion, one decision: replace the draft scan by the T-MRI order (delete the scan,
    create the very MRI order patient-view suggests)."""
    mri = t_mri(a, patient_id)
    side = a.facts.record.side
    label = mri.label.removeprefix("Order ").removesuffix(f" ({side} foot)")
    return Suggestion(
        v.REPLACE_LABEL.format(mri=label) + (f" ({side} foot)" if side else ""),
        (Action("delete", v.REMOVE_ACTION.format(order=plain(order_name(scan))),
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
        lines = [v.ORDERED_WHILE.format(order=md(order_name(scan)),
                                        state=om_state(a.osteomyelitis)),
                 v.SCAN_CANNOT_SEPARATE, v.SCAN_MRI_FIRST]
        if "renal-impairment" in a.flags:
            lines.append(v.NO_GADOLINIUM)
        if "charcot" in a.flags:
            lines.append(v.SCAN_CHARCOT)
        if "early-postoperative" in a.flags:
            lines.append(v.SCAN_EARLY)
        suggestions = [_mri_suggestion(a, patient_id, scan)] if scan.id else []
        if not scan.id:
            lines.append(v.NO_ID_NO_REPLACEMENT)
        cards.append(_card("O-SCAN", v.SCAN_SUMMARY, _default_indicator(hook), lines, a,
                           suggestions))
    return cards


CHECKS = (o_abx, o_ho, o_nsaid, o_vanc, o_scan)


def order_cards(a: Assessment, drafts: DraftOrders, hook: str,
                patient_id: str) -> list[CardSpec]:
    """Every O-* card for these draft orders, in rulebook order (never the assessment card).

    What could not be read of the draft orders is said once per response, at the end of the card
    with the most room left (every card stays within its length)."""
    cards = [card for check in CHECKS for card in check(a, drafts, hook, patient_id)]
    if cards and drafts.notes:
        roomiest = min(cards, key=lambda c: len(c.summary) + len(c.detail))
        notes = v.NOT_CHECKED.format(notes="; ".join(note_text(n) for n in drafts.notes))
        roomiest.detail = f"{roomiest.detail}\n\n{notes}"
    return cards
