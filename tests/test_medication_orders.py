"""The order hooks with drugs coded the way the CDS Hooks sandbox and other EHRs code them
(issue 12; clinical-rules.md §2 "Medications", §10): clinical and branded drugs (SCD/SBD codes
and names from the sandbox's drug list), text-only orders, unidentified drugs. Expected cards
are worked out from the rulebook: O-ABX for a systemic antibacterial while osteomyelitis is
probable or possible without a biopsy; none for an eye drop or oral vancomycin; O-NSAID for a
systemic NSAID while a gate fails; O-VANC for IV vancomycin with the dose of the order."""

from __future__ import annotations

from typing import Any

import pytest
from test_order_hooks import add, bundle, check, med, rules_of

from cds_service.preview import markdown_text

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# (code, name) exactly as in tests/data/rxnorm-sandbox-medications.json
ANTIBIOTICS = (
    ("197512", "Ciprofloxacin 750 MG Oral Tablet"),
    ("205771", "Ciprofloxacin 750 MG Oral Tablet [Cipro]"),
    ("309078", "cefpodoxime 200 MG Oral Tablet"),
    ("214078", "cefpodoxime 200 MG Oral Tablet [Vantin]"),
    ("562508", "Amoxicillin 875 MG / Clavulanate 125 MG Oral Tablet"),
    ("197633", "Doxycycline 100 MG Oral Tablet"),
    ("205604", "Doxycycline 100 MG Oral Capsule [Vibramycin]"),
)
ORAL_VANCOMYCIN = ("313570", "Vancomycin 125 MG Oral Capsule")
IBUPROFEN_SBD = ("202098", "Ibuprofen 800 MG Oral Tablet [Motrin]")
NAPROXEN_SBD = ("105899", "Naproxen 500 MG Oral Tablet [Naprosyn]")
APIXABAN_SCD = ("1364445", "apixaban 5 MG Oral Tablet")
WARFARIN_SCD = ("855332", "Warfarin Sodium 5 MG Oral Tablet")
INDOMETHACIN = ("197817", "indomethacin 25 MG Oral Capsule")


def text_only(ident: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": ident, "status": "draft",
            "intent": "order", "medicationCodeableConcept": {"text": text}, **extra}


@pytest.mark.parametrize("record", ("om-probable-ptb-esr", "crp-mg-dl-wound"))
@pytest.mark.parametrize("hook", ("order-select", "order-sign"))
@pytest.mark.parametrize(("code", "name"), ANTIBIOTICS)
def test_sandbox_antibiotics_get_o_abx(record: str, hook: str, code: str, name: str) -> None:
    """OM probable (PTB + ESR) or possible (wound + CRP), no bone biopsy: O-ABX, info at select,
    warning at sign."""
    specs = check(record, bundle(med("abx", code, name)), hook)
    assert rules_of(specs) == ["O-ABX"]
    assert specs[0].indicator == ("info" if hook == "order-select" else "warning")


@pytest.mark.parametrize("hook", ("order-select", "order-sign"))
def test_eye_drops_and_oral_vancomycin_are_not_systemic_antibiotics(hook: str) -> None:
    drops = text_only("drops", "Ciprofloxacin 3 MG/ML Ophthalmic Solution")
    assert rules_of(check("om-probable-ptb-esr", bundle(drops), hook)) == []
    oral = med("vanc-po", *ORAL_VANCOMYCIN)
    assert rules_of(check("om-probable-ptb-esr", bundle(oral), hook)) == []  # no O-ABX, no O-VANC


@pytest.mark.parametrize(("code", "name"), (IBUPROFEN_SBD, NAPROXEN_SBD))
def test_branded_nsaid_with_a_failing_gate_gets_o_nsaid(code: str, name: str) -> None:
    """Record ho-present-nsaid-gates-fail: eGFR 24, a GI bleed, apixaban active."""
    specs = check("ho-present-nsaid-gates-fail", bundle(med("nsaid", code, name)))
    assert rules_of(specs) == ["O-NSAID"]
    assert specs[0].summary.startswith("NSAID not advised")


def test_topical_nsaid_is_not_checked() -> None:
    gel = text_only("gel", "Diclofenac Sodium 10 MG/ML Topical Gel [Voltaren]")
    assert rules_of(check("ho-present-nsaid-gates-fail", bundle(gel))) == []


def test_apixaban_draft_at_scd_level_fails_the_anticoagulant_gate() -> None:
    """Record ho-mature-nsaid-gates-pass: every gate passes, so indomethacin alone is quiet."""
    assert rules_of(check("ho-mature-nsaid-gates-pass", bundle(med("indo", *INDOMETHACIN)))) == []
    specs = check("ho-mature-nsaid-gates-pass",
                  bundle(med("indo", *INDOMETHACIN), med("apix", *APIXABAN_SCD)))
    assert rules_of(specs) == ["O-NSAID"]
    assert "apixaban (draft)" in specs[0].summary  # the summary names the drug; the detail
    assert "apixaban 5 MG Oral Tablet (draft order, anticoagulant)" in markdown_text(
        specs[0].detail)  # every gate, in full


def test_active_warfarin_at_scd_level_fails_the_anticoagulant_gate() -> None:
    warfarin = {"resourceType": "MedicationRequest", "id": "warf", "status": "active",
                "intent": "order", "subject": {"reference": "Patient/pt-ho-mature"},
                "authoredOn": "2026-11-01",
                "medicationCodeableConcept": {"coding": [
                    {"system": RXNORM, "code": WARFARIN_SCD[0], "display": WARFARIN_SCD[1]}]}}
    specs = check("ho-mature-nsaid-gates-pass", bundle(med("indo", *INDOMETHACIN)),
                  change=add(warfarin))
    assert rules_of(specs) == ["O-NSAID"]
    assert specs[0].summary == "Indomethacin not advised: Warfarin"
    assert "Warfarin Sodium 5 MG Oral Tablet active (anticoagulant)" in markdown_text(
        specs[0].detail)


def test_an_unidentified_draft_is_never_a_passed_gate() -> None:
    unknown = {"resourceType": "MedicationRequest", "id": "mystery", "status": "draft",
               "intent": "order", "medicationCodeableConcept": {"coding": [
                   {"system": RXNORM, "code": "99999999"}]}}
    specs = check("ho-mature-nsaid-gates-pass", bundle(med("indo", *INDOMETHACIN), unknown))
    assert rules_of(specs) == ["O-NSAID"]
    assert "an unidentified draft drug" in specs[0].summary
    # named by its code, not by its resource id (clinical-rules.md §11)
    detail = markdown_text(specs[0].detail)
    assert "medication coded 99999999 (draft order) could not be identified" in detail
    assert "not assumed safe" in detail and "mystery" not in detail


def test_text_only_vancomycin_reaches_o_vanc_with_the_text_dose() -> None:
    """Record om-probable-ptb-esr: 82 kg, renal function in 7 days; 1 g = 12.2 mg/kg, below
    15-20 mg/kg (1,230-1,640 mg) → O-VANC info."""
    order = text_only("vanc", "Vancomycin 1 g IV every 12 hours")
    specs = [s for s in check("om-probable-ptb-esr", bundle(order)) if s.rules == ["O-VANC"]]
    assert len(specs) == 1 and specs[0].indicator == "info"
    assert "12.2\u00a0mg/kg" in specs[0].summary  # kept on one line


def test_structured_dose_beats_the_text_and_two_doses_are_not_a_dose() -> None:
    structured = text_only("vanc", "Vancomycin 1 g IV every 12 hours", dosageInstruction=[
        {"doseAndRate": [{"doseQuantity": {"value": 1500, "unit": "mg",
                                           "system": "http://unitsofmeasure.org",
                                           "code": "mg"}}]}])
    specs = [s for s in check("om-probable-ptb-esr", bundle(structured)) if s.rules == ["O-VANC"]]
    assert specs == []  # 1,500 mg is 18.3 mg/kg: within range
    two = text_only("vanc", "Vancomycin 1 g IV now then 1.5 g IV every 12 hours")
    specs = [s for s in check("om-probable-ptb-esr", bundle(two)) if s.rules == ["O-VANC"]]
    assert specs and specs[0].summary.startswith("Vancomycin dose not stated")


def active(ident: str, **drug: Any) -> dict[str, Any]:
    """An active MedicationRequest of the patient of record ho-mature-nsaid-gates-pass."""
    return {"resourceType": "MedicationRequest", "id": ident, "status": "active",
            "intent": "order", "subject": {"reference": "Patient/pt-ho-mature"},
            "authoredOn": "2026-11-01", **drug}


def test_an_unidentified_active_medication_is_never_a_passed_gate() -> None:
    """clinical-rules.md §2 "Medications" (never assumed safe) and §10 O-NSAID: with every other
    gate passing, an active drug coded 99999999 without a name, or named only through a
    Medication the record does not hold, leaves the co-medication gates undecided: O-NSAID,
    naming it."""
    coded = active("mystery", medicationCodeableConcept={"coding": [
        {"system": RXNORM, "code": "99999999"}]})
    specs = check("ho-mature-nsaid-gates-pass", bundle(med("indo", *INDOMETHACIN)),
                  change=add(coded))
    assert rules_of(specs) == ["O-NSAID"]
    phrase = ("medication coded 99999999 (active) not identified: anticoagulant, antiplatelet, "
              "corticosteroid and SSRI gates not decided")
    assert specs[0].summary == "Indomethacin not advised: an unidentified active drug"
    assert phrase in markdown_text(specs[0].detail)  # in full in the card's list of gates
    missing = active("by-ref", medicationReference={"reference": "Medication/absent"})
    specs = check("ho-mature-nsaid-gates-pass", bundle(med("indo", *INDOMETHACIN)),
                  change=add(missing))
    assert rules_of(specs) == ["O-NSAID"]
    assert "medication naming no drug (active) not identified" in markdown_text(specs[0].detail)


def test_a_prefetched_medication_identifies_the_active_order() -> None:
    """The same reference with the Medication in the record: apixaban fails the anticoagulant
    gate by name; a lisinopril Medication passes it (quiet)."""
    def with_medication(name: str) -> Any:
        def change(resources: list[dict[str, Any]]) -> None:
            resources.append({"resourceType": "Medication", "id": "m1", "code": {
                "coding": [{"system": RXNORM, "code": "0", "display": name}]}})
            resources.append(active("by-ref", medicationReference={"reference": "Medication/m1"}))
        return change
    specs = check("ho-mature-nsaid-gates-pass", bundle(med("indo", *INDOMETHACIN)),
                  change=with_medication(APIXABAN_SCD[1]))
    assert rules_of(specs) == ["O-NSAID"]
    assert specs[0].summary == "Indomethacin not advised: apixaban"
    assert "apixaban 5 MG Oral Tablet active (anticoagulant)" in markdown_text(specs[0].detail)
    specs = check("ho-mature-nsaid-gates-pass", bundle(med("indo", *INDOMETHACIN)),
                  change=with_medication("Lisinopril 5 MG Oral Tablet"))
    assert rules_of(specs) == []
