"""Safety gates shared by patient-view management and the order hooks (clinical-rules.md §9–10)."""

from __future__ import annotations

from . import facts as th
from .facts import Facts
from .vocabulary import UNIDENTIFIED_ACTIVE_GATE, unidentified_medication

# Conditions that forbid an NSAID when on record at all (openFDA indomethacin labels: boxed
# warning for CV thrombotic events and GI bleeding; contraindicated in the CABG setting).
NSAID_CONDITION_GATES = ("heart-failure", "myocardial-infarction", "gi-bleeding", "peptic-ulcer")
NSAID_MEDICATION_GATES = ("anticoagulant", "antiplatelet", "systemic-corticosteroid", "ssri")


def _date(facts: Facts, when) -> str:  # type: ignore[no-untyped-def]
    return when.date().isoformat() if when else "date unknown"


def nsaid_gate_failures(facts: Facts, renal_flag: bool) -> list[str]:
    """Return one phrase per NSAID gate that fails or cannot be decided (an active medication
    whose drug could not be identified may be an anticoagulant, antiplatelet, corticosteroid or
    SSRI: clinical-rules.md §2 "Medications", never assumed safe); empty when every gate
    passes."""
    record = facts.record
    failures: list[str] = []
    if facts.egfr is None:
        failures.append("no eGFR in the last 30 days")
    elif (facts.egfr.value or 0) < th.EGFR_RENAL_IMPAIRMENT:
        failures.append(f"eGFR {facts.egfr.shown_value()} on {_date(facts, facts.egfr.when)}")
    if renal_flag and not (facts.egfr and (facts.egfr.value or 0) < th.EGFR_RENAL_IMPAIRMENT):
        failures.append("advanced chronic kidney disease on record")
    if record.condition_is_recent_or_active("acute-kidney-injury", th.AKI_ONSET):
        failures.append("acute kidney injury (active or in the last 90 days)")
    for concept in NSAID_CONDITION_GATES:
        if record.conditions(concept, scope="on-record"):
            failures.append(f"{record.mappings.label(concept).lower()} on record")
    if record.procedures("cabg"):
        failures.append("coronary artery bypass graft on record")
    for concept in NSAID_MEDICATION_GATES:
        for med in record.medications(concept, keep_invalid=True):
            name = (med.text or med.label).replace(" (active)", "")
            failures.append(f"{name} active")
    for unknown in record.unidentified_medications():  # never assumed safe (§2 "Medications")
        failures.append(UNIDENTIFIED_ACTIVE_GATE.format(
            medication=unidentified_medication(unknown.text, unknown.codes)))
    return failures


def vancomycin_dose(facts: Facts) -> tuple[float, float] | None:
    """15-20 mg/kg of the latest weight (30 days), in mg; None without a weight. Rybak 2020."""
    if facts.weight is None or facts.weight.value is None:
        return None
    return facts.weight.value * 15, facts.weight.value * 20


def vancomycin_missing(facts: Facts) -> list[str]:
    """What is missing for a vancomycin dose: weight (30 days) and renal function (7 days)."""
    missing = []
    if facts.weight is None:
        missing.append("no weight in the last 30 days")
    if facts.renal_recent is None:
        missing.append("no creatinine or eGFR in the last 7 days")
    return missing


def vancomycin_range_text(facts: Facts) -> str | None:
    """"82 kg → **1,230–1,640 mg per dose**" (15–20 mg/kg of the latest weight), or None."""
    dose = vancomycin_dose(facts)
    if dose is None or facts.weight is None:
        return None
    return f"{facts.weight.shown_value()} → **{mg(dose[0])}–{mg(dose[1])} mg per dose**"


def fixed_dosing_inappropriate(facts: Facts, renal_flag: bool) -> bool:
    """Renal impairment or eGFR < 60: fixed 12-hourly vancomycin dosing is wrong. Rybak 2020."""
    egfr_low = facts.egfr is not None and (facts.egfr.value or 0) < th.EGFR_FIXED_DOSING_CAUTION
    return renal_flag or egfr_low


def mg(value: float) -> str:
    """Format milligrams with a thousands separator: 1230.0 -> '1,230'."""
    return f"{round(value):,}"
