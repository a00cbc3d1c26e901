"""Next-test suggestions (T-*) and management advice (clinical-rules.md §8–9), rule by rule."""

from __future__ import annotations

import pytest

from cds_service.cards import render
from cds_service.clinical import nexttests
from cds_service.clinical.patient_view import ho_management, next_test_cards, om_management
from cds_service.clinical.validation import problem
from fixtures.build import BONE_SCAN, CRP, EGFR, ESR, ICD10, MRI, RXNORM, ULCER, WEIGHT, XR
from tests.test_rules import assessed, base, with_wound


def codes(suggestions) -> set[str]:  # type: ignore[no-untyped-def]
    return {c.split("|")[1] for s in suggestions for c in s.codes}


@pytest.mark.parametrize(("xr_days_ago", "suggested"), ((28, False), (29, True)))
def test_t_xr_unless_a_radiograph_in_28_days(xr_days_ago, suggested):
    record = with_wound(60)
    record.report(XR, xr_days_ago, "Postsurgical changes.", side="left")
    assert bool(nexttests.t_xr(assessed(record), "p1")) is suggested


def test_t_xr_not_when_confirmed_or_early():
    early = with_wound(10)
    assert nexttests.t_xr(assessed(early), "p1") == []
    confirmed = with_wound(60)
    confirmed.culture(True, 2)
    assert nexttests.t_xr(assessed(confirmed), "p1") == []


def test_t_xr_ignores_a_radiograph_of_the_other_foot():
    record = with_wound(60)
    record.report(XR, 3, "Normal right foot.", side="right")
    suggestion = nexttests.t_xr(assessed(record), "p1")
    assert codes(suggestion) == {"73630"}
    resource = suggestion[0].actions[0].resource
    assert resource["bodySite"][0]["coding"][0]["code"] == "22335008"  # left foot structure


@pytest.mark.parametrize(("lab_days_ago", "expected"), ((14, {"1988-5", "86140"}),
                                                        (15, {"1988-5", "86140", "4537-7",
                                                              "85652"})))
def test_t_lab_for_each_marker_without_a_value_in_14_days(lab_days_ago, expected):
    record = with_wound(60)
    record.lab(*ESR, 40, "mm/h", lab_days_ago)
    assert codes(nexttests.t_lab(assessed(record), "p1")) == expected


def test_t_mri_with_alternatives_and_renal_variant():
    record = with_wound(60)
    record.lab(*CRP, 30, "mg/L", 2)  # OM-4 possible
    suggestions = nexttests.t_mri_alt(assessed(record), "p1")
    assert [s.rule for s in suggestions] == ["T-MRI", "T-ALT", "T-ALT", "T-ALT"]
    assert codes(suggestions[:1]) == {"73720"} and suggestions[0].recommended is True
    assert codes(suggestions[1:]) == {"78830", "78815", "78315"}
    record.lab(*EGFR, 22, "mL/min/{1.73_m2}", 3)
    assert codes(nexttests.t_mri_alt(assessed(record), "p1")[:1]) == {"73718"}


def test_t_mri_not_when_an_mri_was_done_in_28_days_and_alt_leaves_out_done_tests():
    done = with_wound(60)
    done.lab(*CRP, 30, "mg/L", 2)
    done.report(MRI, 20, "Postsurgical oedema.", side="left")
    assert nexttests.t_mri_alt(assessed(done), "p1") == []
    scanned = with_wound(60)
    scanned.lab(*CRP, 30, "mg/L", 2)
    scanned.report(BONE_SCAN, 10, "Increased delayed uptake.", side="left")
    assert "78315" not in codes(nexttests.t_mri_alt(assessed(scanned), "p1"))


def test_t_mri_for_indeterminate_only_with_a_wound_and_not_early():
    assert nexttests.t_mri_alt(assessed(with_wound(60)), "p1")  # indeterminate, wound
    assert nexttests.t_mri_alt(assessed(base(60)), "p1") == []  # indeterminate, no wound
    assert nexttests.t_mri_alt(assessed(with_wound(10)), "p1") == []  # early


def test_charcot_text_prefers_leukocyte_scan():
    record = with_wound(60)
    record.lab(*CRP, 30, "mg/L", 2)
    record.condition(ICD10, "E11.610", "Diabetic Charcot", days=300)
    card = next_test_cards(assessed(record), "p1")[0]
    assert "prefer leukocyte SPECT/CT" in card.detail and card.selection == "at-most-one"


def test_t_bx_unless_a_biopsy_or_culture_since_the_amputation():
    record = with_wound(60)
    record.lab(*CRP, 30, "mg/L", 2)
    assert codes(nexttests.t_bx(assessed(record), "p1")) == {"20220"}
    record.culture(False, 5)
    assert nexttests.t_bx(assessed(record), "p1") == []


def test_t_bx_says_not_to_delay_antibiotics_in_severe_infection():
    record = with_wound(60)
    record.lab(*CRP, 30, "mg/L", 2)
    record.lab("8310-5", "Body temperature", 39, "Cel", 0.3)
    record.lab("9279-1", "Respiratory rate", 26, "/min", 0.3)
    suggestion = nexttests.t_bx(assessed(record), "p1")[0]
    assert "do not delay antibiotics" in suggestion.actions[0].resource["note"][0]["text"]


@pytest.mark.parametrize(("amputation_days", "suggested"), ((89, False), (90, True)))
def test_t_scan_ho_from_day_90_with_a_prominence(amputation_days, suggested):
    record = base(amputation_days)
    record.report(XR, 10, "Heterotopic ossification at the stump.", side="left")
    record.finding("plantar-prominence", "Plantar prominence", True, 5)
    assert bool(nexttests.t_scan_ho(assessed(record), "p1")) is suggested


def test_t_scan_ho_not_for_mature_ho():
    record = base(200)
    record.report(XR, 10, "Mature heterotopic ossification.", side="left")
    record.finding("plantar-prominence", "Plantar prominence", True, 5)
    assert nexttests.t_scan_ho(assessed(record), "p1") == []


def test_probe_to_bone_advice_only_with_a_wound_and_none_in_14_days():
    assert nexttests.probe_to_bone_advice(assessed(with_wound(60)))
    record = with_wound(60)
    record.finding("probe-to-bone", "Probe-to-bone", False, 3)
    assert nexttests.probe_to_bone_advice(assessed(record)) is None


def test_every_suggested_order_is_a_valid_r4_draft_proposal():
    record = with_wound(120)
    record.lab(*CRP, 30, "mg/L", 2)
    record.report(XR, 40, "Heterotopic ossification at the stump.", side="left")
    for card in next_test_cards(assessed(record), "p1"):
        for suggestion in card.suggestions:
            resource = suggestion.actions[0].resource
            assert problem(resource) is None
            assert (resource["status"], resource["intent"]) == ("draft", "proposal")
            assert resource["subject"] == {"reference": "Patient/p1"}


# ------------------------------------------------------------------ management


def om_probable(weight: float | None = 82, egfr: float | None = 75):  # type: ignore[no-untyped-def]
    record = with_wound(60)
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.lab(*ESR, 90, "mm/h", 2)
    if weight is not None:
        record.lab(*WEIGHT, weight, "kg", 3)
    if egfr is not None:
        record.lab(*EGFR, egfr, "mL/min/{1.73_m2}", 2)
    return record


def test_vancomycin_dose_from_weight():
    card = om_management(assessed(om_probable()))
    assert card is not None and "82\u00a0kg → **1,230–1,640\u00a0mg per dose**" in card.detail
    assert "AUC" in card.detail and "fixed 12-hourly" not in card.detail


def test_vancomycin_without_weight_or_renal_function_names_what_is_missing():
    card = om_management(assessed(om_probable(weight=None, egfr=None)))
    assert card is not None
    assert "no weight in the last 30 days" in card.detail
    assert "no creatinine or eGFR in the last 7 days" in card.detail
    assert "mg per dose" not in card.detail


def test_reduced_renal_function_warns_against_fixed_dosing():
    card = om_management(assessed(om_probable(egfr=45)))
    assert card is not None and "no fixed 12-hourly vancomycin dosing" in card.detail


def test_no_om_management_below_probable_and_no_antibiotic_order():
    assert om_management(assessed(with_wound(60))) is None
    card = om_management(assessed(om_probable()))
    assert card is not None and card.suggestions == []


def ho_favored(egfr: float | None = 80):  # type: ignore[no-untyped-def]
    record = base(90)
    record.lab(*ESR, 10, "mm/h", 2)
    if egfr is not None:
        record.lab(*EGFR, egfr, "mL/min/{1.73_m2}", 5)
    record.report(XR, 5, "Heterotopic ossification at the stump.", side="left")
    return record


def test_indomethacin_only_when_every_gate_passes():
    card = ho_management(assessed(ho_favored()), "p1")
    assert card is not None and len(card.suggestions) == 1
    resource = card.suggestions[0].actions[0].resource
    assert resource["medicationCodeableConcept"]["coding"][0]["code"] == "197817"
    assert (resource["status"], resource["intent"]) == ("draft", "proposal")
    assert problem(resource) is None
    rendered = render(card)
    assert rendered["selectionBehavior"] == "at-most-one"


@pytest.mark.parametrize(("change", "named"), (
    (lambda r: None, "no eGFR in the last 30 days"),
    (lambda r: r.medication("1364430", "apixaban", "active", 30), "apixaban active"),
    (lambda r: r.condition(ICD10, "K92.2", "GI hemorrhage", days=900, clinical="resolved"),
     "bleeding"),
    (lambda r: r.condition(ICD10, "N17.9", "Acute kidney failure", days=30,
                           clinical="resolved"), "acute kidney injury"),
))
def test_each_failing_nsaid_gate_is_named(change, named):
    record = ho_favored(egfr=None) if "eGFR" in named else ho_favored()
    change(record)
    card = ho_management(assessed(record), "p1")
    assert card is not None and card.suggestions == []
    assert "NSAID not advised" in card.detail and named in card.detail


@pytest.mark.parametrize(("egfr", "passes"), ((29, False), (30, True)))
def test_nsaid_egfr_gate_boundary(egfr, passes):
    card = ho_management(assessed(ho_favored(egfr=egfr)), "p1")
    assert card is not None and bool(card.suggestions) is passes


def test_no_ho_management_without_ho_favored():
    record = with_wound(90)
    record.report(XR, 5, "Heterotopic ossification at the stump.", side="left")
    assert ho_management(assessed(record), "p1") is None


_ = (RXNORM, ULCER)


@pytest.mark.parametrize(("code", "side", "expected"), (
    (("http://www.ama-assn.org/go/cpt", "28805", "Amputation, foot; transmetatarsal"), "left",
     "Left TMA day 60"),
    (("http://www.ama-assn.org/go/cpt", "28810", "Amputation, metatarsal, with toe, single"),
     "right", "Right ray amputation day 60"),
    (("http://www.ama-assn.org/go/cpt", "28800", "Amputation, foot; midtarsal"), None,
     "Side unknown Chopart amputation day 60"),
))
def test_summary_names_side_level_and_day(code, side, expected):
    from cds_service.clinical.patient_view import summary
    from fixtures.build import Record

    record = Record("p1")
    record.amputation(60, side, code)
    text = summary(assessed(record))
    assert text.startswith(expected + ": osteomyelitis") and len(text) < 140


def test_t_bc_blood_cultures_with_severe_infection_unless_taken_in_48_hours():
    record = with_wound(60)
    record.condition("http://snomed.info/sct", "128477000", "Abscess", days=1)
    assert codes(nexttests.t_bc(assessed(record), "p1")) == {"600-7"}
    assert nexttests.t_bc(assessed(with_wound(60)), "p1") == []
    record.add({"resourceType": "Observation", "id": "bc", "status": "preliminary",
                "code": {"coding": [{"system": "http://loinc.org", "code": "600-7"}]},
                "subject": record.subject, "effectiveDateTime": "2026-11-20T08:00:00Z",
                "valueString": "No growth to date"})
    assert nexttests.t_bc(assessed(record), "p1") == []


def unread_medication(record, **request):  # type: ignore[no-untyped-def]
    """An active MedicationRequest added as given (``medicationCodeableConcept`` and so on)."""
    record.add({"resourceType": "MedicationRequest", "id": record._id("med"), "status": "active",
                "intent": "order", "subject": record.subject, **request})


@pytest.mark.parametrize(("request_", "named"), (
    ({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "99999999"}]}},
     "medication coded 99999999 (active) not identified"),
    ({"medicationReference": {"reference": "Medication/not-prefetched"}},
     "medication naming no drug (active) not identified"),
    ({"medicationCodeableConcept": {"text": "1 tab PO daily"}},
     "1 tab PO daily (active) not identified"),
))
def test_an_unidentified_active_medication_leaves_the_drug_gates_undecided(request_, named):
    """clinical-rules.md §2 "Medications": an unclassified drug is never assumed safe in a gate;
    §9: indomethacin only when every gate passes. A drug whose code and name are not recognised
    (or whose Medication is not at hand) might be an anticoagulant, antiplatelet, corticosteroid
    or SSRI: no indomethacin, and the card names the medication."""
    record = ho_favored()
    unread_medication(record, **request_)
    card = ho_management(assessed(record), "p1")
    assert card is not None and card.suggestions == []
    assert "NSAID not advised" in card.detail
    assert named in card.detail.replace("\\", "")  # record text is escaped in the detail
    assert "gates not decided" in card.detail


@pytest.mark.parametrize(("status", "request_"), (
    ("active", {"medicationCodeableConcept": {"coding": [  # a sandbox SCD in no gate class
        {"system": RXNORM, "code": "311354", "display": "Lisinopril 5 MG Oral Tablet"}]}}),
    ("completed", {"medicationCodeableConcept": {"coding": [
        {"system": RXNORM, "code": "99999999"}]}}),  # not active: the gates ask for active
    ("active", {"medicationReference": {"reference": "#m1"}, "contained": [
        {"resourceType": "Medication", "id": "m1", "code": {"text": "Lisinopril 10 MG"}}]}),
))
def test_identified_or_inactive_medications_leave_the_gates_passing(status, request_):
    record = ho_favored()
    unread_medication(record, **request_)
    record.resources[-1]["status"] = status
    card = ho_management(assessed(record), "p1")
    assert card is not None and len(card.suggestions) == 1  # indomethacin suggested


def test_an_invalid_active_anticoagulant_still_fails_the_gate():
    """A warfarin order that fails validation (a date that is not FHIR) is skipped by the rules
    with a note, but a safety gate reads only its drug and status: it still fails the
    anticoagulant gate (never treat unread as negative, clinical-rules.md §2)."""
    record = ho_favored()
    unread_medication(record, authoredOn="last tuesday", medicationCodeableConcept={"coding": [
        {"system": RXNORM, "code": "11289", "display": "warfarin"}]})
    card = ho_management(assessed(record), "p1")
    assert card is not None and card.suggestions == []
    assert "warfarin active" in card.detail
