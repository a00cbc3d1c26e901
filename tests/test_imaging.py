"""Imaging findings charted as structured Observations, and the side of an ImagingStudy's series
(clinical-rules.md §2 "Imaging findings" item 2 and "Side").

A finding Observation (a concept of mappings/imaging-findings.toml) either joins the report
that lists it in ``result`` (and takes that report's modality), or stands alone: then its
modality is that of the ImagingStudy it is ``derivedFrom``, else the one its concept implies
(marrow findings: MRI; scan findings: their scan; the rest: radiograph). Expected tiers follow
the rulebook: OM-2 needs the pattern on a radiograph, OM-4 takes it on any of XR, CT, MRI.
"""

from __future__ import annotations

from typing import Any

import pytest

from fixtures.build import ESR, MRI, PROJECT, SNOMED, ULCER, XR, Record, ago, cc, site
from tests.support.rulebook import assessed

DCM = "http://dicom.nema.org/resources/ontology/DCM"


def base(days: float = 60, side: str = "left") -> Record:
    record = Record("p1")
    record.amputation(days, side)
    return record


def with_wound(days: float = 60) -> Record:
    record = base(days)
    record.condition(*ULCER, days=5)
    return record


def finding(record: Record, concept: str, days: float = 5, *, value: Any = True,
            side: str | None = None, **extra: Any) -> str:
    """A structured imaging finding: ``value`` True/False (valueBoolean) or a dict of value
    fields. Returns its id."""
    ident = f"finding-{len(record.resources)}"
    values = {"valueBoolean": value} if isinstance(value, bool) else value
    record.add({"resourceType": "Observation", "id": ident, "status": "final",
                "code": cc(PROJECT, concept, concept), "subject": record.subject,
                "effectiveDateTime": ago(days), "bodySite": site(side)[0] if side else None,
                **values, **extra})
    return ident


def study(record: Record, modality: str, days: float = 5, **series: Any) -> str:
    ident = f"study-{len(record.resources)}"
    record.add({"resourceType": "ImagingStudy", "id": ident, "status": "available",
                "subject": record.subject, "started": ago(days),
                "modality": [{"system": DCM, "code": modality}],
                "series": [{"uid": "1.2.3", "modality": {"system": DCM, "code": modality},
                            **series}]})
    return ident


def probe_positive_esr_normal(record: Record) -> Record:
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.lab(*ESR, 20, "mm/h", 2)
    return record


# --- standalone finding Observations -----------------------------------------------------------

def test_a_standalone_om_pattern_reads_as_a_radiograph():
    """Probe-to-bone with an OM pattern on a radiograph: OM-2, probable."""
    record = probe_positive_esr_normal(with_wound())
    finding(record, "om-imaging-pattern")
    result = assessed(record)
    assert result.fired("OM-2") and result.osteomyelitis == "probable"


def test_a_negative_standalone_om_pattern_is_no_pattern():
    """valueBoolean false: no pattern; with a normal ESR and no wound that is OM-6."""
    record = base()
    record.lab(*ESR, 20, "mm/h", 2)
    finding(record, "om-imaging-pattern", value=False)
    result = assessed(record)
    assert not result.fired("OM-2") and not result.fired("OM-4")
    assert result.osteomyelitis == "not-supported"


@pytest.mark.parametrize("value", [
    {"valueCodeableConcept": cc(SNOMED, "52101004", "Present")},
    {"valueCodeableConcept": cc(SNOMED, "10828004", "Positive")},
    {"valueString": "positive"},
    {"interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                              "v3-ObservationInterpretation", "code": "POS"}]}]},
])
def test_coded_positive_values_of_a_finding(value):
    record = probe_positive_esr_normal(with_wound())
    finding(record, "om-imaging-pattern", value=value)
    assert assessed(record).fired("OM-2")


def test_a_standalone_finding_of_the_other_side_is_ignored():
    record = probe_positive_esr_normal(with_wound())
    finding(record, "om-imaging-pattern", side="right")
    result = assessed(record)
    assert not result.fired("OM-2")
    assert result.osteomyelitis == "possible"  # OM-4: the wound with positive probe-to-bone


def test_a_standalone_normal_marrow_reads_as_an_mri():
    """OM-5: the latest MRI shows normal marrow -> unlikely."""
    record = with_wound()
    finding(record, "normal-marrow")
    result = assessed(record)
    assert result.fired("OM-5") and result.osteomyelitis == "unlikely"


def test_a_standalone_confluent_marrow_replacement_is_om3():
    record = with_wound()
    finding(record, "confluent-marrow-replacement")
    result = assessed(record)
    assert result.fired("OM-3") and result.osteomyelitis == "probable"


def test_a_standalone_leukocyte_scan_positive_is_an_om4_sign():
    record = with_wound()
    finding(record, "leukocyte-scan-positive")
    result = assessed(record)
    assert result.fired("OM-4") and result.osteomyelitis == "possible"


@pytest.mark.parametrize(("days_after", "present"), ((20, False), (21, True)))
def test_a_standalone_ossification_finding_from_day_21(days_after, present):
    record = base(60)
    finding(record, "soft-tissue-ossification", days=60 - days_after)
    assert assessed(record).fired("HO-1") is present


def test_a_finding_derived_from_a_ct_study_is_ct():
    """derivedFrom an ImagingStudy with modality CT: the pattern is on CT, so OM-4, not OM-2."""
    record = probe_positive_esr_normal(with_wound())
    ident = study(record, "CT")
    finding(record, "om-imaging-pattern", derivedFrom=[{"reference": f"ImagingStudy/{ident}"}])
    result = assessed(record)
    assert not result.fired("OM-2") and result.fired("OM-4")
    assert result.osteomyelitis == "possible"


# --- finding Observations listed in a report's result ------------------------------------------

@pytest.mark.parametrize(("kind", "om2"), ((XR, True), (MRI, False)))
def test_a_result_finding_takes_its_reports_modality(kind, om2):
    record = probe_positive_esr_normal(with_wound())
    ident = finding(record, "om-imaging-pattern")
    record.report(kind, 5, "See the structured findings.", side="left")
    record.resources[-1]["result"] = [{"reference": f"Observation/{ident}"}]
    result = assessed(record)
    assert result.fired("OM-2") is om2
    assert result.osteomyelitis == ("probable" if om2 else "possible")


def test_a_positive_result_finding_beats_the_reports_negative_text():
    """The stronger statement wins within one report: a charted finding over "no ... seen"."""
    record = probe_positive_esr_normal(with_wound())
    ident = finding(record, "om-imaging-pattern")
    record.report(XR, 5, "No cortical erosion is seen.", side="left")
    record.resources[-1]["result"] = [{"reference": f"Observation/{ident}"}]
    assert assessed(record).fired("OM-2")


# --- ImagingStudy.series laterality ------------------------------------------------------------

@pytest.mark.parametrize(("laterality", "used"), (
    ({"system": DCM, "code": "L"}, True),
    ({"system": DCM, "code": "R"}, False),
    ({"system": SNOMED, "code": "7771000"}, True),    # left (qualifier value)
    ({"system": SNOMED, "code": "24028007"}, False),  # right (qualifier value)
    ({"code": "l"}, True),                            # lower case, no system
))
def test_series_laterality_decides_the_side_of_a_study_and_its_report(laterality, used):
    """Left amputation; the report's words say no side; the study's series says which."""
    record = base(60)
    ident = study(record, "DX", days=10, laterality=laterality)
    record.add({"resourceType": "DiagnosticReport", "id": "rep-lat", "status": "final",
                "code": cc("http://www.ama-assn.org/go/cpt", *XR), "subject": record.subject,
                "effectiveDateTime": ago(10), "imagingStudy": [{"reference":
                                                                f"ImagingStudy/{ident}"}],
                "conclusion": "Heterotopic ossification plantar to the stump."})
    result = assessed(record)
    assert result.fired("HO-1") is used
    assert result.heterotopic_ossification == ("present" if used else "indeterminate")


def test_a_study_without_a_report_of_the_other_side_is_not_a_study_done():
    """An unreported radiograph of the right foot does not stop T-XR for the left stump."""
    from cds_service.clinical.nexttests import t_xr

    left, right = with_wound(60), with_wound(60)
    study(left, "DX", days=3, laterality={"system": DCM, "code": "L"})
    study(right, "DX", days=3, laterality={"system": DCM, "code": "R"})
    assert t_xr(assessed(left), "p1") == []
    assert len(t_xr(assessed(right), "p1")) == 1


# --- edges found by `make mutants` on imaging.py (README "Mutation testing") -------------------
# A report whose own code is not an imaging code takes its kind from its ImagingStudy: the
# study's procedureCode, else a DICOM modality on the study or on any series (§2 "Imaging
# findings"); the pattern counts for OM-2 only on a radiograph (§4 OM-2).

def _uncoded_report(record: Record, study_ident: str, text: str) -> dict[str, Any]:
    report = {"resourceType": "DiagnosticReport", "id": f"rep-{len(record.resources)}",
              "status": "final", "code": {"text": "Imaging report"}, "subject": record.subject,
              "effectiveDateTime": ago(5), "conclusion": text,
              "imagingStudy": [{"reference": f"ImagingStudy/{study_ident}"}]}
    record.add(report)
    return report


PATTERN_TEXT = "Cortical erosion and periosteal reaction at the second metatarsal base."


@pytest.mark.parametrize(("where", "modality", "om2"), (
    ("study", "DX", True), ("series", "DX", True), ("study", "MR", False),
    ("series", "MR", False),
))
def test_a_reports_kind_comes_from_the_modality_of_its_study_or_series(where, modality, om2):
    record = probe_positive_esr_normal(with_wound())
    ident = study(record, modality)
    if where == "study":
        del record.resources[-1]["series"][0]["modality"]
    else:
        del record.resources[-1]["modality"]
    _uncoded_report(record, ident, PATTERN_TEXT)
    result = assessed(record)
    assert result.fired("OM-2") is om2
    assert result.fired("OM-4")  # OM-4 takes the pattern on any of XR, CT, MRI


def test_the_studys_procedure_code_decides_before_its_modality():
    record = probe_positive_esr_normal(with_wound())
    ident = study(record, "MR")  # modality says MRI, the procedure code says foot radiograph
    record.resources[-1]["procedureCode"] = [cc("http://www.ama-assn.org/go/cpt", *XR)]
    _uncoded_report(record, ident, PATTERN_TEXT)
    assert assessed(record).fired("OM-2")


def test_report_text_held_in_a_result_observation_is_read():
    """The report has no text of its own; its result Observation's valueString carries it."""
    record = probe_positive_esr_normal(with_wound())
    record.report(XR, 5, "", side="left")
    report = record.resources[-1]
    del report["conclusion"]
    record.add({"resourceType": "Observation", "id": "rep-text", "status": "final",
                "code": {"text": "Findings"}, "subject": record.subject,
                "effectiveDateTime": ago(5), "valueString": PATTERN_TEXT})
    report["result"] = [{"reference": "Observation/rep-text"}]
    result = assessed(record)
    assert result.fired("OM-2")
    assert not any("carries no text" in note for note in result.facts.record.notes)


def test_a_positive_result_finding_beats_the_reports_uncertain_text():
    record = probe_positive_esr_normal(with_wound())
    ident = finding(record, "om-imaging-pattern")
    record.report(XR, 5, "Possible cortical erosion at the second metatarsal base.",
                  side="left")
    record.resources[-1]["result"] = [{"reference": f"Observation/{ident}"}]
    result = assessed(record)
    assert result.fired("OM-2")  # uncertain counts as present (§2); the card says which
    (report,) = result.facts.record.imaging
    assert report.findings["om-imaging-pattern"] == "positive"


def test_a_negative_result_finding_does_not_cancel_the_reports_positive_text():
    record = probe_positive_esr_normal(with_wound())
    ident = finding(record, "om-imaging-pattern", value=False)
    record.report(XR, 5, PATTERN_TEXT, side="left")
    record.resources[-1]["result"] = [{"reference": f"Observation/{ident}"}]
    assert assessed(record).fired("OM-2")
