"""Edges of the HO rules and the next-test suggestions that mutation testing (``make mutants``)
found untested; expected values from clinical-rules.md §2, §7 and §8.

The draft orders must carry what §8 says every suggestion carries: status draft, intent proposal,
subject the patient, a reasonCode naming the question, and the amputation side when known.
"""

from __future__ import annotations

import pytest

from cds_service.clinical.nexttests import t_bc, t_bx, t_lab, t_mri, t_mri_alt, t_scan_ho, t_xr
from cds_service.clinical.rules import Assessment
from fixtures.build import BONE_SCAN, EGFR, ICD10, SNOMED, ULCER, XR, Record, ago, cc
from tests.support.rulebook import assessed

HOUR = 1 / 24
DCM = "http://dicom.nema.org/resources/ontology/DCM"
LEUKOCYTE_SCAN = ("78830", "Radiopharmaceutical localization of tumor, inflammatory process or "
                  "distribution of radiopharmaceutical agent(s); SPECT with CT")
PHASES_2_AND_3 = "Increased blood pool activity and increased delayed uptake. No increased flow."


def base(days: float = 60, side: str | None = "left") -> Record:
    record = Record("p1")
    record.amputation(days, side)
    return record


def with_wound(days: float = 60, side: str | None = "left") -> Record:
    record = base(days, side)
    record.condition(*ULCER, days=5)
    return record


def rule(result: Assessment, rule_id: str):  # type: ignore[no-untyped-def]
    return next(r for r in result.results if r.id == rule_id)


# --- HO-4 bone-scan clause, HO-5, HO-6, not-detected -------------------------------------------

def test_ho4_needs_phase_2_itself_not_only_phase_3():
    record = base(100)
    record.report(BONE_SCAN, 5, "Increased delayed uptake at the stump. No increased flow. "
                  "No increased blood pool activity.", side="left")
    assert not assessed(record).fired("HO-4")


@pytest.mark.parametrize(("days", "suspected"), ((90, True), (90 + HOUR, False)))
def test_ho4_bone_scan_counts_for_90_days(days, suspected):
    record = base(400)
    record.report(BONE_SCAN, days, PHASES_2_AND_3, side="left")
    assert assessed(record).fired("HO-4") is suspected


@pytest.mark.parametrize(("days_after", "mature"), ((20.9, False), (21.0, True)))
def test_ho5_maturity_from_imaging_on_day_21(days_after, mature):
    """A mature pattern counts on imaging >= 21 days after amputation (HO-5 with HO-1)."""
    record = base(60)
    record.report(XR, 5, "Heterotopic ossification plantar to the stump.", side="left")
    record.report(XR, 60 - days_after, "Well-corticated heterotopic bone.", side="left")
    assert assessed(record).fired("HO-5") is mature


def test_ho6_with_an_amputation_of_unknown_date():
    """Unknown date: every "after amputation" window is satisfied (§2), so an all-phase scan is
    within 180 days."""
    record = Record("p1")
    record.condition(ICD10, "Z89.432", "Acquired absence of left foot")
    record.report(BONE_SCAN, 5, "Increased activity in all three phases.", side="left")
    assert "bone-scan-nondiscriminating" in assessed(record).flags


@pytest.mark.parametrize(("days_after", "status"), ((20.9, "indeterminate"),
                                                    (21.0, "not-detected")))
def test_not_detected_needs_imaging_from_day_21(days_after, status):
    record = base(60)
    record.report(XR, 60 - days_after, "Postsurgical change.", side="left")
    assert assessed(record).heterotopic_ossification == status


def test_an_unreported_study_is_no_evidence_of_absence():
    """A study without a report was done but contributes no finding (§2): not "not-detected"."""
    record = base(60)
    record.add({"resourceType": "ImagingStudy", "id": "lonely", "status": "available",
                "subject": record.subject, "started": ago(5),
                "modality": [{"system": DCM, "code": "DX"}]})
    assert assessed(record).heterotopic_ossification == "indeterminate"


def test_ho1_says_when_the_ossification_was_only_reported_as_possible():
    uncertain, certain = base(60), base(60)
    uncertain.report(XR, 5, "Possible heterotopic ossification plantar to the stump.",
                     side="left")
    certain.report(XR, 5, "Heterotopic ossification plantar to the stump.", side="left")
    assert "reported as possible" in rule(assessed(uncertain), "HO-1").explanation
    assert "reported as possible" not in rule(assessed(certain), "HO-1").explanation
    coded = base(60)
    coded.report(XR, 5, "Possible heterotopic ossification plantar to the stump.", side="left")
    coded.condition(SNOMED, "444748003", "Postoperative heterotopic ossification", days=20)
    assert "reported as possible" not in rule(assessed(coded), "HO-1").explanation


def test_every_fired_ho_rule_cites_its_source():
    record = Record("p1")
    record.condition(ICD10, "Z89.432", "Acquired absence of left foot")
    record.report(XR, 5, "Well-corticated heterotopic bone.", side="left")
    record.report(BONE_SCAN, 5, "Increased activity in all three phases.", side="left")
    mature = assessed(record)
    suspected = base(100)
    suspected.report(BONE_SCAN, 5, PHASES_2_AND_3, side="left")
    fired = [r for r in mature.results + assessed(suspected).results
             if r.id in ("HO-1", "HO-4", "HO-5", "HO-6")]
    assert {r.id for r in fired} == {"HO-1", "HO-4", "HO-5", "HO-6"}
    for result in fired:
        assert result.source is not None, result.id


# --- next-test suggestions ---------------------------------------------------------------------

def suggestions(record: Record) -> list:  # type: ignore[type-arg]
    a = assessed(record)
    return (t_xr(a, "p1") + t_lab(a, "p1") + t_mri_alt(a, "p1") + t_bx(a, "p1")
            + t_bc(a, "p1") + t_scan_ho(a, "p1"))


def resource_of(suggestion):  # type: ignore[no-untyped-def]
    return suggestion.actions[0].resource


def severe_possible(side: str | None = "left") -> Record:
    """OM possible (a wound with positive probe-to-bone), an abscess (S-1), no imaging, no labs."""
    record = with_wound(200, side)
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.condition(SNOMED, "128477000", "Abscess", days=1)
    return record


def test_every_suggested_order_is_a_draft_proposal_for_the_patient_with_a_reason():
    found = suggestions(severe_possible())
    rules = {s.rule for s in found}
    assert {"T-XR", "T-LAB", "T-MRI", "T-ALT", "T-BX", "T-BC"} <= rules
    for suggestion in found:
        resource = resource_of(suggestion)
        assert resource["status"] == "draft" and resource["intent"] == "proposal"
        assert resource["subject"] == {"reference": "Patient/p1"}, suggestion.rule
        assert resource["reasonCode"][0]["text"], suggestion.rule


def test_imaging_and_biopsy_orders_carry_the_amputation_side():
    for suggestion in suggestions(severe_possible()):
        if suggestion.rule in ("T-XR", "T-MRI", "T-ALT", "T-BX"):
            assert suggestion.label.endswith("(left foot)"), suggestion.label
            assert resource_of(suggestion)["bodySite"][0]["coding"][0]["code"] == "22335008"


def test_without_a_known_side_no_side_is_named():
    record = severe_possible(side=None)
    for suggestion in suggestions(record):
        assert "foot)" not in suggestion.label, suggestion.label
        assert "bodySite" not in resource_of(suggestion)


def test_t_alt_leaves_out_only_an_alternative_done_in_28_days():
    recent, older = severe_possible(), severe_possible()
    recent.report(LEUKOCYTE_SCAN, 20, "No abnormal leukocyte accumulation.", side="left")
    older.report(LEUKOCYTE_SCAN, 60, "No abnormal leukocyte accumulation.", side="left")

    def alternatives(record: Record) -> list[str]:
        return [c for s in t_mri_alt(assessed(record), "p1") if s.rule == "T-ALT"
                for c in s.codes]

    assert not any(c.endswith("|78830") for c in alternatives(recent))
    assert any(c.endswith("|78830") for c in alternatives(older))


def test_t_mri_without_contrast_says_why_only_with_renal_impairment():
    renal, normal = severe_possible(), severe_possible()
    renal.lab(*EGFR, 20, "mL/min/{1.73_m2}", 3)
    normal.lab(*EGFR, 80, "mL/min/{1.73_m2}", 3)
    plain = resource_of(t_mri(assessed(renal), "p1"))
    contrast = resource_of(t_mri(assessed(normal), "p1"))
    assert "73718" in str(plain["code"]) and "contrast" in plain["note"][0]["text"].lower()
    assert "73720" in str(contrast["code"]) and "note" not in contrast


def test_t_bx_in_severe_infection_keeps_the_technique_and_adds_the_warning():
    [biopsy] = t_bx(assessed(severe_possible()), "p1")
    note = resource_of(biopsy)["note"][0]["text"].lower()
    assert "intact skin" in note and "do not delay antibiotics" in note


@pytest.mark.parametrize(("days", "suggested"), ((90, True), (90 + HOUR, False)))
def test_t_scan_ho_prominence_in_90_days(days, suggested):
    """HO present, >= 90 days, no ulcer: a plantar prominence in 90 days asks for the scan."""
    record = base(400)
    record.report(XR, 10, "Heterotopic ossification plantar to the stump.", side="left")
    record.add({"resourceType": "Observation", "id": "bump", "status": "final",
                "code": cc("http://tma-cds.invalid/fhir/CodeSystem/finding",
                           "plantar-prominence", "Plantar prominence"),
                "subject": record.subject, "effectiveDateTime": ago(days),
                "valueBoolean": True})
    result = assessed(record)
    assert "ho-ulcer-coexistence" not in result.flags
    assert bool(t_scan_ho(result, "p1")) is suggested


# --- OM-5 and OM-2 edges (om_rules.py survivors of make mutants) -------------------------------

@pytest.mark.parametrize(("days", "fires"), ((90, True), (90 + HOUR, False)))
def test_om5_reads_only_an_mri_of_the_last_90_days(days, fires):
    """OM-5: "the most recent foot MRI" within the imaging window (§3: 90 days)."""
    from fixtures.build import MRI

    record = with_wound(200)
    record.report(MRI, days, "Marrow signal is normal.", side="left")
    assert assessed(record).fired("OM-5") is fires


def test_om5_is_cancelled_by_a_later_om_pattern_on_ct():
    """"No later contrary finding": a CT with an OM pattern after the normal MRI."""
    from fixtures.build import MRI

    record = with_wound(200)
    record.report(MRI, 20, "Marrow signal is normal.", side="left")
    record.report(("73700", "CT lower extremity; without contrast"), 5,
                  "Cortical erosion of the second metatarsal stump.", side="left")
    assert not assessed(record).fired("OM-5")


def test_om2_with_esr_shows_the_esr_as_evidence():
    record = with_wound(200)
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.lab("4537-7", "ESR", 95, "mm/h", 2)
    om2 = rule(assessed(record), "OM-2")
    assert {f.concept for f in om2.evidence} == {"probe-to-bone", "esr"}
    assert "ESR > 70 mm/h" in om2.explanation
