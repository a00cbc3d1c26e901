"""Report text in a patient's record (clinical-rules.md §2 "Imaging findings"; §6 OM-5, OM-6):
every place a report carries text, conclusion codes, unread reports on the card and never as
negative evidence, and the two rulebook changes of OM-5 and OM-6."""

from __future__ import annotations

import base64

import pytest

from cds_service.clinical.record import Record as ClinicalRecord
from cds_service.preview import markdown_text
from fixtures.build import BONE_SCAN, ESR, MRI, SNOMED, XR, cc
from tests.conftest import CLOCK
from tests.test_rules import MAPPINGS, assessed, base, with_wound

OM = "om-imaging-pattern"


def clinical(record, fetch=None) -> ClinicalRecord:  # type: ignore[no-untyped-def]
    return ClinicalRecord(record.resources, MAPPINGS, CLOCK, record.pid, fetch_attachment=fetch)


def last_report(record) -> dict:  # type: ignore[no-untyped-def]
    return next(r for r in reversed(record.resources) if r["resourceType"] == "DiagnosticReport")


def form(content_type: str, text: str, encoding: str = "utf-8") -> dict:
    return {"contentType": content_type,
            "data": base64.b64encode(text.encode(encoding)).decode("ascii")}


def xr_with(record, *, conclusion=None, forms=(), **extra):  # type: ignore[no-untyped-def]
    record.report(XR, 5, conclusion or "", side="left")
    report = last_report(record)
    if not conclusion:
        del report["conclusion"]
    if forms:
        report["presentedForm"] = list(forms)
    report.update(extra)
    return report


def om_polarity(record, fetch=None):  # type: ignore[no-untyped-def]
    reports = clinical(record, fetch).imaging_reports(["foot-radiograph"])
    return reports[0].findings.get(OM) if reports else None


def test_the_question_only_radiograph_does_not_make_om_probable():
    record = with_wound()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    xr_with(record, forms=[form("text/plain", "INDICATION: r/o osteomyelitis.\nOsteomyelitis?\n"
                                "FINDINGS: Postsurgical change. No fracture.")])
    result = assessed(record)
    assert "OM-2" not in result.rule_ids and result.osteomyelitis == "possible"  # OM-4: PTB


@pytest.mark.parametrize("attachment", (
    form("Text/Plain", "Cortical erosion of the stump."),
    form("text/html; charset=UTF-8", "<p>FINDINGS:</p><ul><li>Cortical erosion</li></ul>"),
    form("text/rtf", r"{\rtf1\ansi {\b IMPRESSION:} Osteomyelitis.\par }"),
    form("text/plain; charset=utf-16", "IMPRESSION: Osteomyelitis.", "utf-16"),
))
def test_every_text_format_of_presented_form_is_read(attachment):
    record = base()
    xr_with(record, forms=[attachment])
    assert om_polarity(record) == "positive"


def test_the_narrative_is_read_when_nothing_else_carries_text():
    record = base()
    xr_with(record, text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/'
                          'xhtml"><p>IMPRESSION: osteomyelitis of the stump.</p></div>'})
    assert om_polarity(record) == "positive"


@pytest.mark.parametrize(("code", "concept"), (("60168000", OM),
                                               ("128491006", "soft-tissue-ossification")))
def test_a_disorder_conclusion_code_counts_as_the_finding(code, concept):
    record = base()
    xr_with(record, conclusion="See report.", conclusionCode=[cc(SNOMED, code, "disorder")])
    report = clinical(record).imaging_reports(["foot-radiograph"])[0]
    assert report.findings[concept] == "positive"


def test_the_text_of_result_observations_is_read_in_its_section():
    record = base()
    report = xr_with(record, conclusion="See results.")
    record.add({"resourceType": "Observation", "id": "res-1", "status": "final",
                "code": cc("http://loinc.org", "19005-8", "Impression"),
                "subject": record.subject, "valueString": "Osteomyelitis of the stump."})
    report["result"] = [{"reference": "Observation/res-1"}]
    assert om_polarity(record) == "positive"


def test_a_result_observation_of_another_patient_is_not_read():
    record = base()
    report = xr_with(record, conclusion="See results.")
    record.add({"resourceType": "Observation", "id": "res-1", "status": "final",
                "code": cc("http://loinc.org", "19005-8", "Impression"),
                "subject": {"reference": "Patient/other"}, "valueString": "Osteomyelitis."})
    report["result"] = [{"reference": "Observation/res-1"}]
    assert om_polarity(record) is None


@pytest.mark.parametrize("attachment", (
    {"contentType": "text/plain", "url": "Binary/b1"},
    {"contentType": "application/pdf", "data": "JVBERi0xLjQ="},
    form("text/plain; charset=x-no-such", "No osteomyelitis."),
))
def test_an_unread_report_is_on_the_card_and_never_negative_evidence(attachment):
    record = base()
    record.lab(*ESR, 20, "mm/h", 3)
    xr_with(record, conclusion="Soft tissue swelling.", forms=[attachment])
    read = clinical(record)
    assert any(n.startswith("DiagnosticReport/") and "not counted as negative" in n
               for n in read.notes)
    assert read.imaging_reports(["foot-radiograph"], reported_only=True) == []
    result = assessed(record)
    # ESR 20 is still negative evidence for OM-6; the radiograph is not, and HO is not
    # "not detected" on a report that was not read in full
    assert result.osteomyelitis == "not-supported"
    assert result.heterotopic_ossification == "indeterminate"


def test_a_report_without_any_text_is_noted():
    record = base()
    xr_with(record)
    assert any("carries no text" in n for n in clinical(record).notes)
    assert assessed(record).osteomyelitis == "indeterminate"  # no negative evidence at all


def test_unread_notes_never_quote_the_report():
    record = base()
    xr_with(record, conclusion="SECRETWORD swelling.",
            forms=[{"contentType": "application/pdf", "data": "U0VDUkVUV09SRA=="}])
    assert not any("SECRETWORD" in n for n in clinical(record).notes)


def test_an_attachment_by_url_is_read_only_through_the_fetch_function():
    record = base()
    xr_with(record, forms=[{"contentType": "text/plain", "url": "Binary/b1"}])
    asked = []

    def fetch(url):  # type: ignore[no-untyped-def]
        asked.append(url)
        return b"IMPRESSION: osteomyelitis.", "text/plain"

    assert om_polarity(record, fetch) == "positive" and asked == ["Binary/b1"]
    assert om_polarity(record) is None  # no fetch function: not read


# ------------------------------------------------------------------ OM-5 (rulebook change)
def test_om5_needs_normal_marrow_at_the_stump_not_just_somewhere():
    record = with_wound()
    record.report(MRI, 4, "Marrow signal is normal in the first and third metatarsals. Marrow "
                  "edema and low T1 signal in the second metatarsal stump.", side="left")
    assert "OM-5" not in assessed(record).rule_ids


def test_om5_does_not_fire_on_an_mri_that_also_reports_an_om_pattern():
    record = with_wound()
    record.report(MRI, 4, "Normal marrow signal throughout. Osteomyelitis cannot be excluded "
                  "at the stump tip.", side="left")
    assert "OM-5" not in assessed(record).rule_ids


def test_om5_uses_the_latest_mri_even_when_it_could_not_be_read():
    record = with_wound()
    record.report(MRI, 30, "Marrow signal is normal.", side="left")
    record.report(MRI, 4, "", side="left")
    last_report(record)["presentedForm"] = [{"contentType": "application/pdf", "data": "AA=="}]
    del last_report(record)["conclusion"]
    assert "OM-5" not in assessed(record).rule_ids


def test_om5_still_fires_on_a_templated_normal_marrow():
    record = with_wound()
    record.report(MRI, 4, "Marrow: normal. No abscess.", side="left")
    assert assessed(record).deciding_om == "OM-5"


# ------------------------------------------------------------------ OM-6 (rulebook change)
@pytest.mark.parametrize(("kind", "text"), (
    (XR, "Osteomyelitis cannot be excluded."),
    (XR, "Periosteal reaction at the stump."),
    (MRI, "Possible osteomyelitis of the second metatarsal stump."),
))
def test_om6_does_not_fire_when_same_side_imaging_shows_an_om_pattern(kind, text):
    record = base()
    record.lab(*ESR, 20, "mm/h", 3)
    record.report(kind, 5, text, side="left")
    result = assessed(record)
    assert "OM-6" not in result.rule_ids and result.osteomyelitis == "indeterminate"


def test_om6_ignores_an_om_pattern_on_the_other_foot():
    record = base()
    record.lab(*ESR, 20, "mm/h", 3)
    record.report(XR, 5, "Osteomyelitis of the first metatarsal.", side="right")
    assert assessed(record).osteomyelitis == "not-supported"


def test_om6_is_not_blocked_by_a_bone_scan_report():
    """OM-8: no bone-scan report moves the tier, whatever it says."""
    record = base()
    record.lab(*ESR, 20, "mm/h", 3)
    record.report(BONE_SCAN, 5, "Increased uptake in all three phases; osteomyelitis cannot be "
                  "excluded.", side="left")
    assert assessed(record).osteomyelitis == "not-supported"


# ------------------------------------------------------------------ no report text in the logs
def test_a_hook_call_logs_no_report_text_sentence_or_token(capfd, caplog):  # type: ignore[no-untyped-def]
    import logging

    from cds_service.logs import LOGGER_NAME
    from cds_service.replay import build_request
    from tests.conftest import make_app

    word = "Zqxsentinelword"
    record = with_wound()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    xr_with(record, conclusion=f"{word} osteomyelitis. INDICATION: {word}?", forms=[
        form("text/plain", f"FINDINGS: {word} periosteal reaction.\nIMPRESSION: {word}."),
        form("text/html", f"<p>{word} &amp; heterotopic ossification</p>"),
        form("text/rtf", r"{\rtf1 " + word + r" cortical erosion\par }"),
        form("text/plain; charset=utf-16", f"{word} lytic", "utf-16"),
        form("text/plain; charset=no-such", word),
        {"contentType": "application/pdf", "data": "JVBERi0="},
        {"contentType": "text/plain", "url": f"Binary/{word}"}])
    app = make_app()
    service_logger = logging.getLogger(LOGGER_NAME)
    service_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    try:
        client = app.test_client()
        body = build_request(client.get("/cds-services").get_json(), "tma-bone-assessment",
                             "patient-view", record.resources, record.pid)
        response = client.post("/cds-services/tma-bone-assessment", json=body)
    finally:
        service_logger.removeHandler(caplog.handler)
    assert response.status_code == 200
    assert response.get_json()["cards"][0]["extension"]["tma-bone-assessment"][
        "osteomyelitis"] == "probable"  # the text was read (OM-2: PTB and a radiograph pattern)
    out, err = capfd.readouterr()
    logged = "\n".join([*(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records),
                        out, err]).lower()
    assert "hook.call" in logged  # the capture worked
    for token in (word.lower(), "periosteal", "osteomyelitis", "cortical", "lytic"):
        assert token not in logged


# ------------------------------------------------------------------ attachments by url (e2e)
def test_a_report_attachment_by_url_is_read_from_the_same_server_only(httpserver):  # type: ignore[no-untyped-def]
    from cds_service.replay import build_request
    from tests.conftest import make_app

    httpserver.expect_request("/fhir/Binary/xr1").respond_with_data(
        "IMPRESSION: Osteomyelitis of the second metatarsal stump.",
        content_type="text/plain; charset=utf-8")
    base = httpserver.url_for("/fhir")
    record = with_wound()
    record.finding("probe-to-bone", "Probe-to-bone", True, 2)
    record.report_forms(XR, 5, [{"contentType": "text/plain", "url": "Binary/xr1"}], side="left")
    record.report_forms(XR, 6, [{"contentType": "text/plain",
                                 "url": "http://127.0.0.9:1/fhir/Binary/elsewhere"}],
                        side="left")
    client = make_app(fhir_server_allowlist=(base,)).test_client()
    body = build_request(client.get("/cds-services").get_json(), "tma-bone-assessment",
                         "patient-view", record.resources, record.pid)
    body["fhirServer"] = base
    body["fhirAuthorization"] = {"access_token": "t0ken", "token_type": "Bearer",
                                 "expires_in": 300, "scope": "patient/*.read", "subject": "cds"}
    response = client.post("/cds-services/tma-bone-assessment", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    assert card["extension"]["tma-bone-assessment"]["osteomyelitis"] == "probable"  # OM-2
    assert [r.path for r, _ in httpserver.log] == ["/fhir/Binary/xr1"]  # never the other host
    assert "Foot radiograph): attachment 1 is given by url and could not be fetched" in \
        markdown_text(card["detail"])
