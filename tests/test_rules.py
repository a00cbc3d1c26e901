"""Each rule of the rulebook on its own: cases that fire and cases that must not (boundaries)."""

from __future__ import annotations

import pytest

from cds_service.clinical.facts import gather
from cds_service.clinical.record import Record as ClinicalRecord
from cds_service.clinical.rules import assess, is_relevant
from fixtures.build import (
    BONE_SCAN,
    CPT,
    CRP,
    EGFR,
    ESR,
    ICD10,
    MRI,
    PROJECT,
    SNOMED,
    ULCER,
    XR,
    Record,
)
from tests.conftest import CLOCK
from tests.support.rulebook import MAPPINGS, assessed, base, with_wound

ALP = ("6768-6", "Alkaline phosphatase")


# ------------------------------------------------------------------ S-1, S-2


def test_s2_fires_on_day_13_not_on_day_14():
    """Day 13 after amputation is too early to interpret; day 14 is not."""
    early = assessed(with_wound(13))
    assert "S-2" in early.rule_ids and early.osteomyelitis == "indeterminate"
    assert "early-postoperative" in early.flags
    later = assessed(with_wound(14))
    assert "S-2" not in later.rule_ids and "early-postoperative" not in later.flags


def test_s2_does_not_hide_a_positive_bone_culture():
    """OM-1 still confirms osteomyelitis before day 14."""
    record = with_wound(10)
    record.culture(True, 1)
    assert assessed(record).osteomyelitis == "confirmed"


@pytest.mark.parametrize(("signs", "fires"), ((1, False), (2, True)))
def test_s1_needs_two_sirs_signs(signs, fires):
    """One SIRS sign is not severe infection; two are (latest values within 48 h)."""
    record = with_wound()
    record.lab("8310-5", "Body temperature", 38.6, "Cel", 0.5)
    if signs == 2:
        record.lab("8867-4", "Heart rate", 104, "/min", 0.5)
    result = assessed(record)
    assert ("S-1" in result.rule_ids) is fires
    assert ("severe-infection" in result.flags) is fires


def test_s1_ignores_vital_signs_older_than_48_hours():
    record = with_wound()
    record.lab("8310-5", "Body temperature", 38.6, "Cel", 3)
    record.lab("8867-4", "Heart rate", 104, "/min", 3)
    assert "S-1" not in assessed(record).rule_ids


def test_s1_fires_on_an_active_abscess_and_converts_fahrenheit():
    record = with_wound()
    record.condition(SNOMED, "128477000", "Abscess", days=1)
    assert "S-1" in assessed(record).rule_ids
    febrile = with_wound()
    febrile.lab("8310-5", "Body temperature", 101.3, "[degF]", 0.5)  # 38.5 Cel
    febrile.lab("6690-2", "Leukocytes", 3.5, "10*3/uL", 0.5)  # < 4 x10^9/L
    assert "S-1" in assessed(febrile).rule_ids


# ------------------------------------------------------------------ OM-1


def test_om1_positive_culture_after_amputation_confirms():
    record = base()
    record.culture(True, 5)
    result = assessed(record)
    assert result.osteomyelitis == "confirmed" and "OM-1" in result.rule_ids


def test_om1_ignores_a_culture_from_before_the_amputation_and_negative_cultures():
    record = base(40)
    record.culture(True, 45)
    record.culture(False, 3)
    assert "OM-1" not in assessed(record).rule_ids


# ------------------------------------------------------------------ OM-2 and ESR 70/71


@pytest.mark.parametrize(("esr", "fires"), ((70, False), (71, True)))
def test_om2_needs_probe_to_bone_and_esr_above_70(esr, fires):
    record = with_wound()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.lab(*ESR, esr, "mm/h", 2)
    result = assessed(record)
    assert ("OM-2" in result.rule_ids) is fires
    assert result.osteomyelitis == ("probable" if fires else "possible")  # OM-4 via PTB


def test_om2_with_radiograph_pattern_and_exposed_bone():
    record = with_wound()
    record.finding("exposed-bone", "Exposed bone", True, 3)
    record.report(XR, 5, "Cortical destruction at the stump.", side="left")
    assert assessed(record).osteomyelitis == "probable"


def test_om2_ignores_probe_to_bone_older_than_30_days():
    record = with_wound(80)
    record.finding("probe-to-bone", "Probe-to-bone", True, 31)
    record.lab(*ESR, 95, "mm/h", 2)
    assert "OM-2" not in assessed(record).rule_ids


# ------------------------------------------------------------------ OM-3, OM-5


def test_om3_confluent_marrow_replacement_on_mri():
    record = with_wound()
    record.report(MRI, 4, "Confluent marrow replacement of the second metatarsal.", side="left")
    result = assessed(record)
    assert result.osteomyelitis == "probable" and "OM-3" in result.rule_ids


def test_om5_normal_mri_makes_om_unlikely():
    record = with_wound()
    record.report(MRI, 4, "Marrow signal is normal.", side="left")
    result = assessed(record)
    assert result.osteomyelitis == "unlikely" and result.deciding_om == "OM-5"


def test_om5_with_om2_gives_possible():
    record = with_wound()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.lab(*ESR, 90, "mm/h", 2)
    record.report(MRI, 4, "Marrow signal is normal.", side="left")
    assert assessed(record).osteomyelitis == "possible"


def test_om5_does_not_fire_when_a_later_radiograph_shows_an_om_pattern():
    record = with_wound()
    record.report(MRI, 20, "Marrow signal is normal.", side="left")
    record.report(XR, 3, "New periosteal reaction at the stump.", side="left")
    assert "OM-5" not in assessed(record).rule_ids


# ------------------------------------------------------------------ OM-4 and CRP 10.0/10.1


@pytest.mark.parametrize(("crp", "fires"), ((10.0, False), (10.1, True)))
def test_om4_crp_must_exceed_10_mg_per_l(crp, fires):
    record = with_wound()
    record.lab(*CRP, crp, "mg/L", 2)
    assert ("OM-4" in assessed(record).rule_ids) is fires


def test_om4_converts_crp_from_mg_per_dl():
    """1.01 mg/dL is 10.1 mg/L: elevated."""
    record = with_wound()
    record.lab(*CRP, 1.01, "mg/dL", 2)
    assert assessed(record).osteomyelitis == "possible"


def test_crp_taken_before_day_7_after_amputation_is_not_elevated():
    record = with_wound(40)
    record.lab(*CRP, 80, "mg/L", 34)  # day 6 after amputation, inside the 30-day window
    assert "OM-4" not in assessed(record).rule_ids


def test_crp_in_an_unconvertible_unit_is_not_used_and_noted():
    record = with_wound()
    record.lab(*CRP, 3, "mmol/L", 2)
    clinical = ClinicalRecord(record.resources, MAPPINGS, CLOCK)
    result = assess(gather(clinical))
    assert "OM-4" not in result.rule_ids
    assert any("cannot be converted" in note for note in clinical.notes)


def test_om4_without_wound_needs_pattern_and_marker():
    record = base()
    record.report(XR, 5, "Periosteal reaction at the stump.", side="left")
    assert "OM-4" not in assessed(record).rule_ids
    record.lab(*ESR, 80, "mm/h", 2)
    assert "OM-4" in assessed(record).rule_ids


def test_om4_ulcer_area_above_2_cm2():
    small, large = with_wound(), with_wound()
    small.lab("ulcer-area", "Ulcer area", 2.0, "cm2", 3, system=PROJECT)
    large.lab("ulcer-area", "Ulcer area", 2.1, "cm2", 3, system=PROJECT)
    assert "OM-4" not in assessed(small).rule_ids
    assert "OM-4" in assessed(large).rule_ids


# ------------------------------------------------------------------ OM-6, OM-7, OM-8


def test_om6_not_supported_without_wound_and_with_normal_markers():
    record = base()
    record.lab(*ESR, 20, "mm/h", 3)
    result = assessed(record)
    assert result.osteomyelitis == "not-supported" and "OM-6" in result.rule_ids


def test_om6_needs_negative_evidence():
    """No wound and no data at all is indeterminate, not "not supported"."""
    assert assessed(base()).osteomyelitis == "indeterminate"


def test_om6_radiograph_without_pattern_is_negative_evidence():
    record = base()
    record.report(XR, 5, "Postsurgical changes only.", side="left")
    assert assessed(record).osteomyelitis == "not-supported"


@pytest.mark.parametrize(("verification", "tier"),
                         ((None, "probable"), ("confirmed", "probable"),
                          ("provisional", "possible"), ("differential", "possible")))
def test_om7_coded_condition_by_verification_status(verification, tier):
    record = base()
    record.condition(ICD10, "M86.172", "Other acute osteomyelitis, left ankle and foot",
                     days=3, verification=verification)
    assert assessed(record).osteomyelitis == tier


def test_om7_ignores_refuted_and_opposite_side_conditions():
    record = base(side="left")
    record.condition(ICD10, "M86.172", "OM left foot", days=3, verification="refuted")
    record.condition(ICD10, "M86.171", "OM right foot", days=3)
    assert "OM-7" not in assessed(record).rule_ids


def test_om8_bone_scan_never_moves_the_tier():
    record = base()
    record.lab(*ESR, 20, "mm/h", 3)
    record.report(BONE_SCAN, 5, "Increased uptake in all three phases.", side="left")
    result = assessed(record)
    assert "OM-8" in result.rule_ids and result.osteomyelitis == "not-supported"


# ------------------------------------------------------------------ HO rules


@pytest.mark.parametrize(("day_of_xr", "present"), ((20, False), (21, True)))
def test_ho1_needs_a_radiograph_from_day_21(day_of_xr, present):
    record = base(60)
    record.report(XR, 60 - day_of_xr, "Heterotopic ossification plantar to the stump.",
                  side="left")
    result = assessed(record)
    assert ("HO-1" in result.rule_ids) is present
    assert result.heterotopic_ossification == ("present" if present else "indeterminate")


def test_ho1_coded_condition_and_ho5_maturity():
    record = base(200)
    record.report(XR, 10, "Well-corticated heterotopic bone at the stump.", side="left")
    result = assessed(record)
    assert result.heterotopic_ossification == "mature" and "HO-5" in result.rule_ids
    coded = base(200)
    coded.condition(SNOMED, "444748003", "Postoperative heterotopic ossification", days=20)
    assert assessed(coded).heterotopic_ossification == "present"


def test_ho_not_detected_needs_imaging_from_day_21_without_ossification():
    record = base(60)
    record.report(XR, 5, "No heterotopic ossification.", side="left")
    assert assessed(record).heterotopic_ossification == "not-detected"


@pytest.mark.parametrize(("days", "fires"), ((13, False), (14, True), (84, True), (85, False)))
def test_ho4_alp_clause_window(days, fires):
    record = base(days)
    record.lab(*ALP, 200, "U/L", 1)
    record.lab(*CRP, 5, "mg/L", 1)
    assert ("HO-4" in assessed(record).rule_ids) is fires


def test_ho4_alp_uses_reference_range_high_else_120():
    below, above = base(30), base(30)
    below.lab(*ALP, 125, "U/L", 1, high=130)
    above.lab(*ALP, 125, "U/L", 1)
    for record in (below, above):
        record.lab(*CRP, 5, "mg/L", 1)
    assert "HO-4" not in assessed(below).rule_ids
    assert "HO-4" in assessed(above).rule_ids


def test_ho4_alp_reference_high_is_compared_in_the_values_unit():
    # SI units (µkat/L, 1 µkat/L = 60 U/L): 1.5 µkat/L = 90 U/L is below a 1.8 µkat/L (108 U/L)
    # limit and 2.5 µkat/L = 150 U/L above it; the limit is converted as the value is, never
    # compared in another unit (clinical-rules.md §3 "ALP high")
    normal, high = base(30), base(30)
    normal.lab(*ALP, 1.5, "ukat/L", 1, high=1.8)
    high.lab(*ALP, 2.5, "ukat/L", 1, high=1.8)
    for record in (normal, high):
        record.lab(*CRP, 5, "mg/L", 1)
    assert "HO-4" not in assessed(normal).rule_ids
    assert "HO-4" in assessed(high).rule_ids


def test_alp_reference_high_in_a_unit_that_cannot_be_converted_is_noted_not_used():
    record = base(30)
    record.lab(*ALP, 125, "U/L", 1, high=130)
    record.resources[-1]["referenceRange"][0]["high"].update(unit="furlongs", code="furlongs")
    record.lab(*CRP, 5, "mg/L", 1)
    result = ClinicalRecord(record.resources, MAPPINGS, CLOCK, "p1")
    alp = result.latest("alkaline-phosphatase", 30)
    assert alp is not None and alp.value == 125 and alp.high is None  # the rule's default then
    assert any("reference range unit furlongs cannot be converted" in n for n in result.notes)


def test_ho4_bone_scan_phases_two_and_three_only_and_prominence():
    scan = base(100)
    scan.report(BONE_SCAN, 5, "Increased blood pool activity and increased delayed uptake. "
                "No increased flow.",
                side="left")
    assert assessed(scan).heterotopic_ossification == "suspected"
    bump = base(100)
    bump.finding("plantar-prominence", "Plantar prominence", True, 10)
    assert assessed(bump).heterotopic_ossification == "suspected"


def test_ho2_and_ho7_derived_flags():
    favored = base(90)
    favored.lab(*ESR, 10, "mm/h", 2)
    favored.report(XR, 5, "Heterotopic ossification at the stump.", side="left")
    result = assessed(favored)
    assert "ho-favored" in result.flags and "HO-2" in result.rule_ids
    ulcer = with_wound(90)
    ulcer.report(XR, 5, "Heterotopic ossification at the stump.", side="left")
    result = assessed(ulcer)
    assert "ho-ulcer-coexistence" in result.flags and "HO-7" in result.rule_ids
    assert "ho-favored" not in result.flags


@pytest.mark.parametrize(("amputation_days", "scan_days", "fires"),
                         ((200, 5, False), (150, 5, True)))
def test_ho6_all_phase_scan_within_180_days_of_amputation(amputation_days, scan_days, fires):
    record = base(amputation_days)
    record.report(BONE_SCAN, scan_days, "Increased activity in all three phases.", side="left")
    result = assessed(record)
    assert ("bone-scan-nondiscriminating" in result.flags) is fires


def test_ho6_any_bone_scan_with_charcot():
    record = base(400)
    record.condition(ICD10, "E11.610", "Diabetic neuropathic arthropathy", days=500)
    record.report(BONE_SCAN, 5, "Increased delayed uptake only at the midfoot.", side="left")
    result = assessed(record)
    assert {"charcot", "bone-scan-nondiscriminating"} <= set(result.flags)


# ------------------------------------------------------------------ confounder flags


@pytest.mark.parametrize(("egfr", "flagged"), ((29, True), (30, False)))
def test_renal_impairment_below_egfr_30(egfr, flagged):
    record = base()
    record.lab(*EGFR, egfr, "mL/min/{1.73_m2}", 5)
    assert ("renal-impairment" in assessed(record).flags) is flagged


@pytest.mark.parametrize(("days", "status", "flagged"),
                         ((14, "completed", True), (15, "completed", False), (60, "active", True)))
def test_recent_antibiotics_window(days, status, flagged):
    record = base()
    record.medication("2193", "ceftriaxone", status, days)
    assert ("recent-antibiotics" in assessed(record).flags) is flagged


def test_pad_flag():
    record = base()
    record.condition(SNOMED, "840580004", "Peripheral arterial disease", days=400)
    assert "pad" in assessed(record).flags


# ------------------------------------------------------------------ reading the record


def test_entered_in_error_and_cancelled_resources_are_ignored():
    record = base()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.resources[-1]["status"] = "entered-in-error"
    record.add({"resourceType": "Procedure", "id": "cancelled", "status": "not-done",
                "code": {"coding": [{"system": CPT, "code": "28805"}]},
                "subject": record.subject, "performedDateTime": "2026-11-18"})
    result = assessed(record)
    assert "OM-4" not in result.rule_ids and result.facts.days == 40


def test_amputation_status_condition_gives_side_and_unknown_date():
    record = Record("p1")
    record.condition(ICD10, "Z89.431", "Acquired absence of right foot")
    result = assessed(record)
    assert result.extension()["side"] == "right"
    assert "daysSinceAmputation" not in result.extension()


def test_most_recent_amputation_is_the_index():
    record = base(900, "right")
    record.amputation(40, "left")
    extension = assessed(record).extension()
    assert (extension["side"], extension["daysSinceAmputation"]) == ("left", 40)


# ------------------------------------------------------------------ relevance gate


def test_relevance_gate_needs_an_amputation_and_a_sign():
    quiet = base(2000)
    quiet.lab(*CRP, 3, "mg/L", 10)
    clinical = ClinicalRecord(quiet.resources, MAPPINGS, CLOCK)
    assert not is_relevant(gather(clinical))
    no_amputation = Record("p1")
    no_amputation.condition(*ULCER, days=3)
    assert not is_relevant(gather(ClinicalRecord(no_amputation.resources, MAPPINGS, CLOCK)))
    for extra in (lambda r: r.lab(*ESR, 31, "mm/h", 3), lambda r: r.condition(*ULCER, days=3),
                  lambda r: r.report(XR, 89, "Stable.", side="left"),
                  lambda r: r.lab(*CRP, 10.1, "mg/L", 3)):
        record = base(2000)
        extra(record)
        assert is_relevant(gather(ClinicalRecord(record.resources, MAPPINGS, CLOCK)))


def test_resources_about_another_patient_are_ignored_and_noted():
    """A prefetch or a lenient server that mixes patients must not mix their findings."""
    record = with_wound()
    record.lab(*ESR, 95, "mm/h", 2)
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.resources[-1]["subject"] = {"reference": "Patient/someone-else"}
    clinical = ClinicalRecord(record.resources, MAPPINGS, CLOCK, "p1")
    result = assess(gather(clinical))
    assert "OM-2" not in result.rule_ids
    assert "1 resource(s) about another patient were ignored." in clinical.notes
    urn = with_wound()
    urn.finding("probe-to-bone", "Probe-to-bone", True, 2)
    urn.resources[-1]["subject"] = {"reference": "urn:uuid:1234"}
    assert "OM-4" in assess(gather(ClinicalRecord(urn.resources, MAPPINGS, CLOCK, "p1"))).rule_ids
