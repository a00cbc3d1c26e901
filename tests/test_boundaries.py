"""Every threshold and window of the rulebook at its edge: just below, at, just above.

Expected values are worked out by hand from ../shared/docs/clinical-rules.md (§3 thresholds,
§4 relevance, §5-§9 rules), not read from the code: "> 70" means 70 does not count and 70.1
does; a window "in N days" includes a value exactly N days old and excludes one an hour older.
Each test names the rulebook line it checks. Records are synthetic (fixtures/build.py builders).
"""

from __future__ import annotations

import pytest

from cds_service.clinical import gates
from cds_service.clinical.nexttests import (
    probe_to_bone_advice,
    t_bc,
    t_lab,
    t_mri_alt,
    t_scan_ho,
    t_xr,
)
from cds_service.clinical.rules import assess, is_relevant
from fixtures.build import (
    ALP,
    BONE_SCAN,
    CRP,
    EGFR,
    ESR,
    ICD10,
    MRI,
    PROJECT,
    SNOMED,
    WEIGHT,
    XR,
    Record,
    ago,
)
from tests.support.rulebook import assessed, base, facts_of, with_wound

HOUR = 1 / 24
CT = ("73700", "CT lower extremity; without contrast")
TEMP = ("8310-5", "Body temperature")
HEART_RATE = ("8867-4", "Heart rate")
RESP_RATE = ("9279-1", "Respiratory rate")
WBC = ("6690-2", "Leukocytes [#/volume] in Blood by Automated count")
CREATININE = ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma")
BLOOD_CULTURE = ("600-7", "Bacteria identified in Blood by Culture")
AKI = (ICD10, "N17.9", "Acute kidney failure, unspecified")
ABSCESS = (SNOMED, "128477000", "Abscess")


def quantity(record: Record, code: str, display: str, value: float, unit: str | None,
             days: float, *, ucum_code: bool = True, system: str = "http://loinc.org") -> None:
    """An Observation whose unit is given as UCUM ``code`` (default) or only as ``unit`` text."""
    record.lab(code, display, value, unit or "", days, system=system)
    q = record.resources[-1]["valueQuantity"]
    if not ucum_code:
        del q["code"], q["system"]
    if unit is None:
        q.pop("unit", None)
        q.pop("code", None)


# ---------------------------------------------------------------- §3 ESR > 70 mm/h, 30 days

@pytest.mark.parametrize(("esr", "high"), ((69.9, False), (70.0, False), (70.1, True)))
def test_esr_high_is_strictly_above_70(esr, high):
    """OM-2: positive probe-to-bone and ESR high -> probable; otherwise OM-4 (PTB) -> possible."""
    record = with_wound()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.lab(*ESR, esr, "mm/h", 2)
    result = assessed(record)
    assert result.fired("OM-2") is high
    assert result.osteomyelitis == ("probable" if high else "possible")


@pytest.mark.parametrize(("days", "used"), ((29, True), (30, True), (30 + HOUR, False)))
def test_esr_counts_for_30_days(days, used):
    """Recent labs window: ESR 30 days (§3)."""
    record = with_wound()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.lab(*ESR, 95, "mm/h", days)
    assert assessed(record).fired("OM-2") is used


# ---------------------------------------------------------------- §3 CRP > 10 mg/L, >= POD 7

@pytest.mark.parametrize(("crp", "unit", "elevated"), (
    (9.9, "mg/L", False), (10.0, "mg/L", False), (10.1, "mg/L", True),
    (0.99, "mg/dL", False), (1.0, "mg/dL", False), (1.02, "mg/dL", True),  # x 10 = mg/L
))
def test_crp_elevated_is_strictly_above_10_mg_per_l(crp, unit, elevated):
    """OM-4: a wound and CRP elevated -> possible; the ulcer Condition alone is no sign."""
    record = with_wound()
    record.lab(*CRP, crp, unit, 2)
    result = assessed(record)
    assert result.fired("OM-4") is elevated
    assert result.osteomyelitis == ("possible" if elevated else "indeterminate")


@pytest.mark.parametrize(("days_after_amputation", "elevated"),
                         ((6.9, False), (7.0, True), (7.1, True)))
def test_crp_counts_only_from_day_7_after_amputation(days_after_amputation, elevated):
    """CRP elevated: > 10 mg/L on a sample taken >= 7 days after amputation (§3)."""
    record = with_wound(20)
    record.lab(*CRP, 60, "mg/L", 20 - days_after_amputation)
    assert assessed(record).fired("OM-4") is elevated


@pytest.mark.parametrize(("days", "used"), ((30, True), (30 + HOUR, False)))
def test_crp_counts_for_30_days(days, used):
    record = with_wound(80)
    record.lab(*CRP, 60, "mg/L", days)
    assert assessed(record).fired("OM-4") is used


# ---------------------------------------------------------------- §3 ulcer large > 2 cm2

@pytest.mark.parametrize(("area", "unit", "large"), (
    (1.9, "cm2", False), (2.0, "cm2", False), (2.1, "cm2", True),
    (200, "mm2", False), (210, "mm2", True),  # 100 mm2 = 1 cm2
))
def test_ulcer_large_is_strictly_above_2_cm2(area, unit, large):
    """An ulcer area > 0 is a wound; > 2 cm2 is also an OM-4 sign (§2, §3, §6 OM-4)."""
    record = base()
    record.lab("ulcer-area", "Ulcer area", area, unit, 3, system=PROJECT)
    facts = facts_of(record)
    assert facts.has_wound
    assert assess(facts).fired("OM-4") is large


# ---------------------------------------------------------------- §3 SIRS signs, 48 h, S-1

# One abnormal sign that is not the one under test, so S-1 (>= 2 signs) fires exactly when the
# tested value is abnormal.
OTHER_SIGN = {"temperature": (*RESP_RATE, 26, "/min"), "heart rate": (*RESP_RATE, 26, "/min"),
              "respiratory rate": (*HEART_RATE, 110, "/min"), "wbc": (*HEART_RATE, 110, "/min")}


@pytest.mark.parametrize(("sign", "code", "value", "unit", "abnormal"), (
    ("temperature", TEMP, 38.0, "Cel", False),
    ("temperature", TEMP, 38.1, "Cel", True),
    ("temperature", TEMP, 37.9, "Cel", False),
    ("temperature", TEMP, 36.0, "Cel", False),
    ("temperature", TEMP, 35.9, "Cel", True),  # hypothermia is a SIRS sign
    ("temperature", TEMP, 36.1, "Cel", False),
    ("heart rate", HEART_RATE, 89, "/min", False),
    ("heart rate", HEART_RATE, 90, "/min", False),
    ("heart rate", HEART_RATE, 91, "/min", True),
    ("respiratory rate", RESP_RATE, 19, "/min", False),
    ("respiratory rate", RESP_RATE, 20, "/min", False),
    ("respiratory rate", RESP_RATE, 21, "/min", True),
    ("wbc", WBC, 11.9, "10*9/L", False),
    ("wbc", WBC, 12.0, "10*9/L", False),
    ("wbc", WBC, 12.1, "10*9/L", True),
    ("wbc", WBC, 4.1, "10*9/L", False),
    ("wbc", WBC, 4.0, "10*9/L", False),
    ("wbc", WBC, 3.9, "10*9/L", True),
    ("wbc", WBC, 12100, "/uL", True),  # 12,100 per uL = 12.1 x 10^9/L
    ("wbc", WBC, 12.0, "10*3/uL", False),  # 10^3/uL = 10^9/L
))
def test_each_sirs_sign_at_its_threshold(sign, code, value, unit, abnormal):
    """SIRS signs: T > 38.0 or < 36.0 Cel; HR > 90; RR > 20; WBC > 12 or < 4 (§3); S-1 at 2."""
    record = with_wound()
    record.lab(*code, value, unit, 0.5)
    record.lab(*OTHER_SIGN[sign], 0.5)
    result = assessed(record)
    assert result.fired("S-1") is abnormal
    assert ("severe-infection" in result.flags) is abnormal


@pytest.mark.parametrize(("value", "unit", "abnormal"), (
    (98.6, "[degF]", False),   # 37.0 Cel: read as Celsius it would be a fever
    (99.9, "[degF]", False),   # 37.7 Cel
    (100.6, "[degF]", True),   # 38.1 Cel
    (96.6, "[degF]", True),    # 35.9 Cel
    (97.0, "[degF]", False),   # 36.1 Cel
))
def test_fahrenheit_temperatures_are_converted_before_the_threshold(value, unit, abnormal):
    """[degF] -> Cel (§2): (F - 32) x 5/9."""
    record = with_wound()
    record.lab(*TEMP, value, unit, 0.5)
    record.lab(*RESP_RATE, 26, "/min", 0.5)
    assert assessed(record).fired("S-1") is abnormal


@pytest.mark.parametrize("unit", ("degF", "°F", "F", "f"))
def test_fahrenheit_spellings_without_a_ucum_code(unit):
    """An EHR that sends only ``unit`` text: 98.6 in any Fahrenheit spelling is 37.0 Cel, normal;
    100.6 is 38.1 Cel, a fever."""
    normal, febrile = with_wound(), with_wound()
    quantity(normal, *TEMP, 98.6, unit, 0.5, ucum_code=False)
    quantity(febrile, *TEMP, 100.6, unit, 0.5, ucum_code=False)
    for record in (normal, febrile):
        record.lab(*RESP_RATE, 26, "/min", 0.5)
    assert not assessed(normal).fired("S-1")
    assert assessed(febrile).fired("S-1")


@pytest.mark.parametrize(("days", "counted"), ((1.9, True), (2.0, True), (2 + HOUR, False)))
def test_sirs_signs_count_for_48_hours(days, counted):
    """Vital signs window: 48 hours (§3); both signs at the same age."""
    record = with_wound()
    record.lab(*TEMP, 38.9, "Cel", days)
    record.lab(*HEART_RATE, 110, "/min", days)
    assert assessed(record).fired("S-1") is counted


def test_each_sign_is_judged_on_its_latest_value():
    """A fever 40 h ago followed by a normal temperature 2 h ago is not a sign (§3)."""
    record = with_wound()
    record.lab(*TEMP, 39.0, "Cel", 40 / 24)
    record.lab(*TEMP, 37.0, "Cel", 2 / 24)
    record.lab(*HEART_RATE, 110, "/min", 0.5)
    assert not assessed(record).fired("S-1")


def test_an_active_abscess_alone_is_severe_infection():
    record = with_wound()
    record.condition(*ABSCESS, days=1)
    result = assessed(record)
    assert result.fired("S-1") and "severe-infection" in result.flags


# ---------------------------------------------------------------- §5 S-2 < 14 days

@pytest.mark.parametrize(("days", "early"), ((13.0, True), (13.9, True), (14.0, False)))
def test_s2_until_day_14(days, early):
    """days-since-amputation counts whole days (§2): 13.9 days is day 13, still too early."""
    result = assessed(with_wound(days))
    assert result.fired("S-2") is early
    assert ("early-postoperative" in result.flags) is early


# ---------------------------------------------------------------- §6 OM-2 radiograph only

@pytest.mark.parametrize(("kind", "probable"), ((XR, True), (MRI, False), (CT, False)))
def test_om2_needs_the_pattern_on_a_radiograph(kind, probable):
    """OM-2: probe-to-bone and an OM pattern *on a radiograph* (or ESR high). On MRI or CT the
    same pattern is an OM-4 sign: possible, not probable."""
    record = with_wound()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.lab(*ESR, 20, "mm/h", 2)
    record.report(kind, 5, "Cortical destruction of the first metatarsal stump.", side="left")
    result = assessed(record)
    assert result.fired("OM-2") is probable
    assert result.fired("OM-4")
    assert result.osteomyelitis == ("probable" if probable else "possible")


@pytest.mark.parametrize(("days", "counted"), ((89, True), (90, True), (90 + HOUR, False)))
def test_om2_radiograph_window_is_90_days(days, counted):
    record = with_wound(200)
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.report(XR, days, "Cortical destruction at the stump.", side="left")
    assert assessed(record).fired("OM-2") is counted


@pytest.mark.parametrize(("days", "counted"), ((30, True), (30 + HOUR, False)))
def test_probe_to_bone_counts_for_30_days(days, counted):
    record = with_wound(80)
    record.finding("probe-to-bone", "Probe-to-bone", True, days)
    record.lab(*ESR, 95, "mm/h", 2)
    assert assessed(record).fired("OM-2") is counted


# ---------------------------------------------------------------- §6 OM-3, OM-5

@pytest.mark.parametrize(("days", "counted"), ((90, True), (90 + HOUR, False)))
def test_om3_mri_window_is_90_days(days, counted):
    record = with_wound(200)
    record.report(MRI, days, "Confluent marrow replacement of the second metatarsal.",
                  side="left")
    assert assessed(record).fired("OM-3") is counted


def test_an_uncertain_confluent_marrow_cancels_a_normal_mri():
    """OM-5 needs normal marrow *and nothing contrary*; an uncertain finding counts as present
    (§2), so OM-3 fires and the tier is probable, not unlikely."""
    record = with_wound()
    record.report(MRI, 4, "Marrow signal is normal. Confluent marrow replacement is not excluded.",
                  side="left")
    result = assessed(record)
    assert not result.fired("OM-5")
    assert result.fired("OM-3") and result.osteomyelitis == "probable"


def test_only_the_latest_mri_decides_om5():
    """OM-5 reads the most recent foot MRI: a normal one after an abnormal one fires."""
    record = with_wound()
    record.report(MRI, 60, "Low T1 signal of the second metatarsal.", side="left")
    record.report(MRI, 5, "Marrow signal is normal.", side="left")
    result = assessed(record)
    assert result.fired("OM-5") and result.osteomyelitis == "unlikely"


# ---------------------------------------------------------------- §6 OM-6

@pytest.mark.parametrize(("esr", "tier"), ((70, "not-supported"), (70.1, "indeterminate")))
def test_om6_normal_esr_is_at_most_70(esr, tier):
    """No wound: a normal ESR is negative evidence (OM-6); a high one alone leaves the tier
    indeterminate (OM-4 without a wound needs an imaging pattern too)."""
    record = base()
    record.lab(*ESR, esr, "mm/h", 3)
    assert assessed(record).osteomyelitis == tier


@pytest.mark.parametrize(("crp", "tier"), ((10.0, "not-supported"), (10.1, "indeterminate")))
def test_om6_normal_crp_is_at_most_10(crp, tier):
    record = base()
    record.lab(*CRP, crp, "mg/L", 3)
    assert assessed(record).osteomyelitis == tier


def test_om6_a_radiograph_with_an_om_pattern_is_not_negative_evidence():
    record = base()
    record.report(XR, 5, "Periosteal reaction at the stump.", side="left")
    assert assessed(record).osteomyelitis == "indeterminate"


# ---------------------------------------------------------------- §7 HO rules

@pytest.mark.parametrize(("days_after", "present"), ((20.9, False), (21.0, True), (21.1, True)))
def test_ho1_imaging_from_day_21_after_amputation(days_after, present):
    record = base(60)
    record.report(XR, 60 - days_after, "Heterotopic ossification plantar to the stump.",
                  side="left")
    assert assessed(record).fired("HO-1") is present


def test_ho1_has_no_look_back_limit():
    record = base(900)
    record.report(XR, 700, "Heterotopic ossification plantar to the stump.", side="left")
    assert assessed(record).heterotopic_ossification == "present"


@pytest.mark.parametrize(("alp", "high", "suspected"), (
    (119.9, None, False), (120.0, None, False), (120.1, None, True),
    (99.9, 100.0, False), (100.0, 100.0, False), (100.1, 100.0, True),
    (125.0, 130.0, False),  # the Observation's own high wins over 120
))
def test_alp_high_above_reference_high_else_120(alp, high, suspected):
    """HO-4 ALP clause on day 30 with a normal CRP (§3 ALP high, §7 HO-4)."""
    record = base(30)
    record.lab(*ALP, alp, "U/L", 1, high=high)
    record.lab(*CRP, 5, "mg/L", 1)
    assert assessed(record).fired("HO-4") is suspected


@pytest.mark.parametrize(("crp", "suspected"), ((9.9, True), (10.0, True), (10.1, False)))
def test_ho4_alp_clause_needs_crp_at_most_10(crp, suspected):
    record = base(30)
    record.lab(*ALP, 200, "U/L", 1)
    record.lab(*CRP, crp, "mg/L", 1)
    assert assessed(record).fired("HO-4") is suspected


@pytest.mark.parametrize(("days", "suspected"), ((13, False), (14, True), (84, True),
                                                 (84.9, True), (85, False)))
def test_ho4_alp_clause_from_day_14_to_day_84(days, suspected):
    record = base(days)
    record.lab(*ALP, 200, "U/L", 1)
    record.lab(*CRP, 5, "mg/L", 1)
    assert assessed(record).fired("HO-4") is suspected


@pytest.mark.parametrize(("days", "suspected"), ((90, True), (90 + HOUR, False)))
def test_ho4_exam_findings_count_for_90_days(days, suspected):
    record = base(300)
    record.finding("decreased-range-of-motion", "Decreased range of motion", True, days)
    assert assessed(record).fired("HO-4") is suspected


@pytest.mark.parametrize(("scan_after_amputation", "flagged"),
                         ((179, True), (180, True), (181, False)))
def test_ho6_all_phase_scan_within_180_days_after_amputation(scan_after_amputation, flagged):
    record = base(200)
    record.report(BONE_SCAN, 200 - scan_after_amputation,
                  "Increased activity in all three phases.", side="left")
    assert ("bone-scan-nondiscriminating" in assessed(record).flags) is flagged


# ---------------------------------------------------------------- §3 renal impairment

@pytest.mark.parametrize(("egfr", "flagged"), ((29.9, True), (30.0, False), (30.1, False)))
def test_renal_impairment_is_egfr_below_30(egfr, flagged):
    record = base()
    record.lab(*EGFR, egfr, "mL/min/{1.73_m2}", 5)
    assert ("renal-impairment" in assessed(record).flags) is flagged


@pytest.mark.parametrize(("days", "flagged"), ((30, True), (30 + HOUR, False)))
def test_renal_impairment_egfr_window_is_30_days(days, flagged):
    record = base()
    record.lab(*EGFR, 20, "mL/min/{1.73_m2}", days)
    assert ("renal-impairment" in assessed(record).flags) is flagged


@pytest.mark.parametrize(("days", "flagged"), ((14, True), (14 + HOUR, False)))
def test_recent_antibiotics_authored_in_14_days(days, flagged):
    record = base()
    record.medication("2193", "ceftriaxone", "completed", days)
    assert ("recent-antibiotics" in assessed(record).flags) is flagged


# ---------------------------------------------------------------- §4 relevance gate

@pytest.mark.parametrize(("esr", "relevant"), ((30.0, False), (30.1, True)))
def test_relevance_esr_above_30(esr, relevant):
    record = base(2000)
    record.lab(*ESR, esr, "mm/h", 3)
    assert is_relevant(facts_of(record)) is relevant


@pytest.mark.parametrize(("crp", "relevant"), ((10.0, False), (10.1, True)))
def test_relevance_crp_above_10(crp, relevant):
    record = base(2000)
    record.lab(*CRP, crp, "mg/L", 3)
    assert is_relevant(facts_of(record)) is relevant


@pytest.mark.parametrize(("days", "relevant"), ((30, True), (30 + HOUR, False)))
def test_relevance_markers_in_30_days(days, relevant):
    record = base(2000)
    record.lab(*ESR, 50, "mm/h", days)
    assert is_relevant(facts_of(record)) is relevant


@pytest.mark.parametrize(("days", "relevant"), ((90, True), (90 + HOUR, False)))
def test_relevance_imaging_and_bone_culture_in_90_days(days, relevant):
    imaging, culture = base(2000), base(2000)
    imaging.report(XR, days, "Stable postsurgical appearance.", side="left")
    culture.culture(False, days)
    assert is_relevant(facts_of(imaging)) is relevant
    assert is_relevant(facts_of(culture)) is relevant


@pytest.mark.parametrize(("days", "relevant"), ((30, True), (30 + HOUR, False)))
def test_relevance_wound_finding_in_30_days(days, relevant):
    """Wound: a positive probe-to-bone in the last 30 days (§2)."""
    record = base(2000)
    record.finding("probe-to-bone", "Probe-to-bone", True, days)
    assert is_relevant(facts_of(record)) is relevant


# ---------------------------------------------------------------- §9 NSAID gates

def nsaid_record(egfr: float = 75, egfr_days: float = 5) -> Record:
    record = base(200)
    record.lab(*EGFR, egfr, "mL/min/{1.73_m2}", egfr_days)
    return record


def nsaid_failures(record: Record) -> list[str]:
    facts = facts_of(record)
    return [g.text for g in gates.nsaid_gate_failures(facts, "renal-impairment"
                                                      in assess(facts).flags)]


def test_every_nsaid_gate_passes_on_a_clean_record():
    assert nsaid_failures(nsaid_record()) == []


@pytest.mark.parametrize(("egfr", "passes"), ((29.9, False), (30.0, True), (30.1, True)))
def test_nsaid_gate_needs_egfr_at_least_30(egfr, passes):
    failures = nsaid_failures(nsaid_record(egfr))
    assert (failures == []) is passes
    if not passes:
        assert any("eGFR" in f for f in failures)


@pytest.mark.parametrize(("days", "passes"), ((30, True), (30 + HOUR, False)))
def test_nsaid_gate_needs_an_egfr_in_30_days(days, passes):
    assert (nsaid_failures(nsaid_record(egfr_days=days)) == []) is passes


@pytest.mark.parametrize(("clinical", "onset_days", "passes"), (
    ("resolved", 60, False),   # inside 90 days: fails (a 30-day window would pass it)
    ("resolved", 89, False),
    ("resolved", 90, False),
    ("resolved", 90 + HOUR, True),
    ("resolved", 400, True),
    ("active", 400, False),    # active at any age
))
def test_nsaid_gate_acute_kidney_injury_active_or_in_90_days(clinical, onset_days, passes):
    record = nsaid_record()
    record.condition(*AKI, days=onset_days, clinical=clinical)
    failures = nsaid_failures(record)
    assert (failures == []) is passes
    if not passes:
        assert len(failures) == 1 and "kidney" in failures[0].lower()


def test_nsaid_gate_cabg_on_record_fails():
    record = nsaid_record()
    record.add({"resourceType": "Procedure", "id": "cabg-1", "status": "completed",
                "code": {"coding": [{"system": PROJECT, "code": "cabg"}]},
                "subject": record.subject, "performedDateTime": "2019-03-01T00:00:00Z"})
    failures = nsaid_failures(record)
    assert len(failures) == 1 and "bypass" in failures[0].lower()


@pytest.mark.parametrize(("system", "code", "display"), (
    (ICD10, "I50.9", "Heart failure, unspecified"),
    (PROJECT, "myocardial-infarction", "Myocardial infarction"),
    (ICD10, "K92.2", "Gastrointestinal hemorrhage, unspecified"),
    (PROJECT, "peptic-ulcer", "Peptic ulcer disease"),
))
def test_nsaid_gate_conditions_count_when_resolved(system, code, display):
    """Heart failure, MI, GI bleeding, peptic ulcer: on record at all, even resolved (§2)."""
    record = nsaid_record()
    record.condition(system, code, display, days=3000, clinical="resolved")
    assert len(nsaid_failures(record)) == 1
    refuted = nsaid_record()
    refuted.condition(system, code, display, days=3000, clinical="resolved",
                      verification="refuted")
    assert nsaid_failures(refuted) == []


# ---------------------------------------------------------------- §9 vancomycin dose data

def dose_record(weight: float = 80, unit: str = "kg", weight_days: float = 3,
                creatinine_days: float = 3, egfr: float | None = None) -> Record:
    record = base(60)
    quantity(record, *WEIGHT, weight, unit, weight_days)
    record.lab(*CREATININE, 0.9, "mg/dL", creatinine_days)
    if egfr is not None:
        record.lab(*EGFR, egfr, "mL/min/{1.73_m2}", 2)
    return record


def test_vancomycin_dose_is_15_to_20_mg_per_kg():
    """82 kg -> 1,230-1,640 mg (the rulebook's own example, §9)."""
    text = gates.vancomycin_range_text(facts_of(dose_record(82)))
    assert text is not None and "1,230–1,640\u00a0mg per dose" in text


@pytest.mark.parametrize("unit", ("[lb_av]", "lb", "lbs"))
def test_a_weight_in_pounds_is_converted_to_kg(unit):
    """200 lb = 90.72 kg -> 15 x 90.72 = 1,361 and 20 x 90.72 = 1,814 mg (read as kg it would be
    3,000-4,000 mg)."""
    record = base(60)
    quantity(record, *WEIGHT, 200, unit, 3, ucum_code=unit == "[lb_av]")
    text = gates.vancomycin_range_text(facts_of(record))
    assert text is not None and "1,361–1,814\u00a0mg per dose" in text


@pytest.mark.parametrize(("days", "has_weight"), ((30, True), (30 + HOUR, False)))
def test_vancomycin_weight_within_30_days(days, has_weight):
    facts = facts_of(dose_record(weight_days=days))
    assert (gates.vancomycin_range_text(facts) is not None) is has_weight
    assert ("no weight in the last 30 days" in gates.vancomycin_missing(facts)) is not has_weight


@pytest.mark.parametrize(("days", "has_renal"), ((7, True), (7 + HOUR, False)))
def test_vancomycin_renal_function_within_7_days(days, has_renal):
    facts = facts_of(dose_record(creatinine_days=days))
    missing = gates.vancomycin_missing(facts)
    assert ("no creatinine or eGFR in the last 7 days" in missing) is not has_renal


@pytest.mark.parametrize(("egfr", "caution"), ((59.9, True), (60.0, False), (60.1, False)))
def test_fixed_12_hourly_dosing_inappropriate_below_egfr_60(egfr, caution):
    facts = facts_of(dose_record(egfr=egfr))
    assert gates.fixed_dosing_inappropriate(facts, renal_flag=False) is caution


def test_fixed_dosing_inappropriate_with_renal_impairment():
    assert gates.fixed_dosing_inappropriate(facts_of(dose_record(egfr=90)), renal_flag=True)


# ---------------------------------------------------------------- §8 next-test windows

def codes_of(suggestions) -> list[str]:  # type: ignore[no-untyped-def]
    return [code for s in suggestions for code in s.codes]


@pytest.mark.parametrize(("days", "suggested"), ((28, False), (28 + HOUR, True)))
def test_t_xr_unless_a_radiograph_in_28_days(days, suggested):
    record = with_wound(200)
    record.report(XR, days, "Stable postsurgical appearance.", side="left")
    assert bool(t_xr(assessed(record), "p1")) is suggested


@pytest.mark.parametrize(("days", "suggested"), ((14, False), (14 + HOUR, True)))
def test_t_lab_esr_and_crp_unless_measured_in_14_days(days, suggested):
    record = with_wound(200)
    record.lab(*ESR, 20, "mm/h", days)
    record.lab(*CRP, 5, "mg/L", days)
    codes = codes_of(t_lab(assessed(record), "p1"))
    assert ("http://loinc.org|4537-7" in codes) is suggested
    assert ("http://loinc.org|1988-5" in codes) is suggested


def test_t_lab_not_before_day_14():
    assert t_lab(assessed(with_wound(13)), "p1") == []


@pytest.mark.parametrize(("days", "suggested"), ((28, False), (28 + HOUR, True)))
def test_t_mri_unless_an_mri_in_28_days(days, suggested):
    """OM indeterminate with a wound, not early: MRI; an MRI 28 days ago is recent enough."""
    record = with_wound(200)
    record.report(MRI, days, "Postsurgical change. No marrow oedema pattern to report.",
                  side="left")
    result = assessed(record)
    suggestions = t_mri_alt(result, "p1")
    assert any("73720" in code for code in codes_of(suggestions)) is suggested


@pytest.mark.parametrize(("days", "suggested"), ((1.9, False), (2.0, False), (2 + HOUR, True),
                                                 (3, True)))
def test_t_bc_unless_blood_cultures_in_48_hours(days, suggested):
    """Severe infection (an abscess): blood cultures, unless taken in the last 48 h."""
    record = with_wound()
    record.condition(*ABSCESS, days=1)
    record.add({"resourceType": "Observation", "id": "bc-1", "status": "preliminary",
                "code": {"coding": [{"system": "http://loinc.org", "code": BLOOD_CULTURE[0]}]},
                "subject": record.subject, "effectiveDateTime": ago(days),
                "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "260385009"}]}})
    assert bool(t_bc(assessed(record), "p1")) is suggested


@pytest.mark.parametrize(("amputation_days", "suggested"), ((89, False), (90, True)))
def test_t_scan_ho_from_day_90(amputation_days, suggested):
    record = with_wound(amputation_days)
    record.report(XR, 10, "Heterotopic ossification plantar to the stump.", side="left")
    result = assessed(record)
    assert "ho-ulcer-coexistence" in result.flags
    assert bool(t_scan_ho(result, "p1")) is suggested


@pytest.mark.parametrize(("scan_days", "suggested"), ((90, False), (90 + HOUR, True)))
def test_t_scan_ho_unless_a_bone_scan_in_90_days(scan_days, suggested):
    record = with_wound(400)
    record.report(XR, 10, "Heterotopic ossification plantar to the stump.", side="left")
    record.report(BONE_SCAN, scan_days, "Increased delayed uptake at the stump.", side="left")
    assert bool(t_scan_ho(assessed(record), "p1")) is suggested


@pytest.mark.parametrize(("days", "advised"), ((14, False), (14 + HOUR, True)))
def test_probe_to_bone_advice_unless_one_in_14_days(days, advised):
    record = with_wound(200)
    record.finding("probe-to-bone", "Probe-to-bone", False, days)
    assert (probe_to_bone_advice(assessed(record)) is not None) is advised


# ---------------------------------------------------------------- §2 wound, §3 windows (more)

@pytest.mark.parametrize(("area", "wound"), ((0.0, False), (0.5, True), (1.5, True)))
def test_an_ulcer_area_above_zero_is_a_wound(area, wound):
    """A charted ulcer area is a wound (§2); an area of 0 is a healed ulcer, not one."""
    record = base()
    record.lab("ulcer-area", "Ulcer area", area, "cm2", 3, system=PROJECT)
    facts = facts_of(record)
    assert facts.has_wound is wound
    if wound:
        assert [f.ref for f in facts.wound] == [f"Observation/{record.resources[-1]['id']}"]


@pytest.mark.parametrize("concept", ("probe-to-bone", "exposed-bone"))
def test_a_negative_probe_or_exposed_bone_is_no_wound(concept):
    """Wound: a *positive* probe-to-bone or exposed-bone finding (§2)."""
    negative, positive = base(), base()
    negative.finding(concept, concept, False, 3)
    positive.finding(concept, concept, True, 3)
    assert not facts_of(negative).has_wound
    facts = facts_of(positive)
    assert [f.ref for f in facts.wound] == [f"Observation/{positive.resources[-1]['id']}"]


@pytest.mark.parametrize(("days", "counted"), ((30, True), (30 + HOUR, False)))
def test_exposed_bone_counts_for_30_days(days, counted):
    record = with_wound(80)
    record.finding("exposed-bone", "Exposed bone", True, days)
    record.lab(*ESR, 95, "mm/h", 2)
    assert assessed(record).fired("OM-2") is counted


@pytest.mark.parametrize(("days", "counted"), ((30, True), (30 + HOUR, False)))
def test_ulcer_area_counts_for_30_days(days, counted):
    record = base(200)
    record.lab("ulcer-area", "Ulcer area", 3.0, "cm2", days, system=PROJECT)
    facts = facts_of(record)
    assert facts.has_wound is counted and facts.ulcer_large is counted


@pytest.mark.parametrize(("days", "suspected"), ((30, True), (30 + HOUR, False)))
def test_alp_counts_for_30_days(days, suspected):
    record = base(60)
    record.lab(*ALP, 200, "U/L", days)
    record.lab(*CRP, 5, "mg/L", 1)
    assert assessed(record).fired("HO-4") is suspected


@pytest.mark.parametrize(("days", "has_renal"), ((7, True), (7 + HOUR, False)))
def test_vancomycin_renal_function_by_egfr_alone_within_7_days(days, has_renal):
    record = base(60)
    quantity(record, *WEIGHT, 80, "kg", 3)
    record.lab(*EGFR, 75, "mL/min/{1.73_m2}", days)
    missing = gates.vancomycin_missing(facts_of(record))
    assert ("no creatinine or eGFR in the last 7 days" in missing) is not has_renal


# ---------------------------------------------------------------- §9 gate phrases on the card

CKD = (ICD10, "N18.4", "Chronic kidney disease, stage 4 (severe)")


@pytest.mark.parametrize("egfr", (30.0, 45.0))
def test_advanced_ckd_on_record_fails_the_gate_even_with_an_egfr_of_30_or_more(egfr):
    """renal-impairment: an active CKD 4/5 condition counts whatever the eGFR (§3, §9)."""
    record = nsaid_record(egfr)
    record.condition(*CKD, days=900)
    assert nsaid_failures(record) == ["advanced chronic kidney disease on record"]


def test_advanced_ckd_with_a_low_egfr_names_the_egfr_once():
    record = nsaid_record(24)
    record.condition(*CKD, days=900)
    [failure] = nsaid_failures(record)  # the eGFR, 5 days before 2026-11-20; no CKD line
    # a readable date that never wraps (clinical-rules.md §11), and the threshold it is below
    assert failure.startswith("eGFR 24 ") and failure.endswith(" on 15\u00a0Nov (below 30)")


def test_gate_phrases_name_what_failed():
    """The card names each failing gate (§9: "NSAID not advised: eGFR 24 on 20 Nov; ...")."""
    no_egfr = base(200)
    assert nsaid_failures(no_egfr) == ["no eGFR in the last 30 days"]
    aki = nsaid_record()
    aki.condition(*AKI, days=20, clinical="resolved")
    assert nsaid_failures(aki) == ["acute kidney injury (active or in the last 90 days)"]
    cabg = nsaid_record()
    cabg.add({"resourceType": "Procedure", "id": "cabg-1", "status": "completed",
              "code": {"coding": [{"system": PROJECT, "code": "cabg"}]},
              "subject": cabg.subject, "performedDateTime": "2019-03-01T00:00:00Z"})
    assert nsaid_failures(cabg) == ["coronary artery bypass graft on record"]
    apixaban = nsaid_record()
    apixaban.medication("1364430", "apixaban 5 MG Oral Tablet")
    assert nsaid_failures(apixaban) == ["apixaban 5 MG Oral Tablet active (anticoagulant)"]
