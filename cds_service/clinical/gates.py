"""Safety gates shared by patient-view management and the order hooks (clinical-rules.md §9–10)."""

from __future__ import annotations

from dataclasses import dataclass

from . import facts as th
from .facts import Facts
from .vocabulary import (
    GATE_CLASS_WORDS,
    GATE_CONDITION_WORDS,
    NBSP,
    UNIDENTIFIED_ACTIVE_GATE,
    UNIDENTIFIED_ACTIVE_SHORT,
    day_month,
    drug_word,
    unidentified_medication,
    value_text,
)

# Conditions that forbid an NSAID when on record at all (openFDA indomethacin labels: boxed
# warning for CV thrombotic events and GI bleeding; contraindicated in the CABG setting).
NSAID_CONDITION_GATES = ("heart-failure", "myocardial-infarction", "gi-bleeding", "peptic-ulcer")
NSAID_MEDICATION_GATES = ("anticoagulant", "antiplatelet", "systemic-corticosteroid", "ssri")


@dataclass(frozen=True)
class GateFailure:
    """A failing NSAID gate in plain words (plain text: it may carry record text such as a drug
    name, so escape it where shown): ``text`` for the card's list, ``short`` for its summary."""

    text: str
    short: str


def nsaid_gate_failures(facts: Facts, renal_flag: bool) -> list[GateFailure]:
    """One failure per NSAID gate that fails or cannot be decided, with readable dates ("eGFR 24
    mL/min/1.73 m² on 15 Nov (below 30)", "apixaban active (anticoagulant)"); an active
    medication whose drug could not be identified may be an anticoagulant, antiplatelet,
    corticosteroid or SSRI (clinical-rules.md §2 "Medications": never assumed safe). Empty when
    every gate passes."""
    record = facts.record
    failures: list[GateFailure] = []
    low = th.EGFR_RENAL_IMPAIRMENT
    if facts.egfr is None:
        failures.append(GateFailure("no eGFR in the last 30 days", "no recent eGFR"))
    elif (facts.egfr.value or 0) < low:
        when = day_month(facts.egfr.when, record.now)
        value = facts.egfr.shown_value()
        failures.append(GateFailure(f"eGFR {value} on {when} (below {low:g})",
                                    f"eGFR {value.split()[0]} on {when}"))
    if renal_flag and not (facts.egfr and (facts.egfr.value or 0) < low):
        failures.append(GateFailure("advanced chronic kidney disease on record", "advanced CKD"))
    if record.condition_is_recent_or_active("acute-kidney-injury", th.AKI_ONSET):
        failures.append(GateFailure("acute kidney injury (active or in the last 90 days)",
                                    "recent acute kidney injury"))
    for concept in NSAID_CONDITION_GATES:
        if record.conditions(concept, scope="on-record"):
            failures.append(GateFailure(f"{record.mappings.label(concept).lower()} on record",
                                        GATE_CONDITION_WORDS[concept]))
    if record.procedures("cabg"):
        failures.append(GateFailure("coronary artery bypass graft on record", "CABG"))
    for concept in NSAID_MEDICATION_GATES:
        for med in record.medications(concept, keep_invalid=True):
            name = (med.text or med.label).replace(" (active)", "")
            failures.append(GateFailure(f"{name} active ({GATE_CLASS_WORDS[concept]})",
                                        drug_word(name)))
    for unknown in record.unidentified_medications():  # never assumed safe (§2 "Medications")
        failures.append(GateFailure(UNIDENTIFIED_ACTIVE_GATE.format(
            medication=unidentified_medication(unknown.text, unknown.codes)),
            UNIDENTIFIED_ACTIVE_SHORT))
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
    """"82 kg → **1,230–1,640 mg per dose**" (15–20 mg/kg of the latest weight; no-break spaces
    between number and unit), or None."""
    dose = vancomycin_dose(facts)
    if dose is None or facts.weight is None:
        return None
    return f"{value_text(facts.weight)} → **{mg(dose[0])}–{mg(dose[1])}{NBSP}mg per dose**"


def fixed_dosing_inappropriate(facts: Facts, renal_flag: bool) -> bool:
    """Renal impairment or eGFR < 60: fixed 12-hourly vancomycin dosing is wrong. Rybak 2020."""
    egfr_low = facts.egfr is not None and (facts.egfr.value or 0) < th.EGFR_FIXED_DOSING_CAUTION
    return renal_flag or egfr_low


def mg(value: float) -> str:
    """Format milligrams with a thousands separator: 1230.0 -> '1,230'."""
    return f"{round(value):,}"
