"""The report reader (clinical-rules.md §2 "Imaging findings"): cues and their scope, sections,
layout and text formats, with the project's mappings. Expected readings are worked out from the
rulebook's own examples and from what a radiologist means by the wording."""

from __future__ import annotations

import base64
import logging

import pytest

from cds_service.clinical.reportformats import (
    attachment_text,
    content_type,
    decode,
    html_to_text,
    report_texts,
)
from cds_service.clinical.reportlayout import Layout, statements
from cds_service.clinical.reporttext import Mention, Reader
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings

MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)
READER = Reader.from_mappings(MAPPINGS)
OM, HO = "om-imaging-pattern", "soft-tissue-ossification"
NORMAL, CONFLUENT = "normal-marrow", "confluent-marrow-replacement"
P, U, N = Mention.PRESENT, Mention.UNCERTAIN, Mention.NEGATED


def read(text: str, section: str = "findings") -> dict[str, Mention]:
    return READER.read_report([(section, text)])


@pytest.mark.parametrize(("text", "concept", "expected"), (
    ("Periosteal reaction at the second metatarsal stump.", OM, P),
    ("No periosteal reaction.", OM, N),
    ("Without evidence of osteomyelitis.", OM, N),
    ("Negative for osteomyelitis.", OM, N),
    ("Previously seen periosteal reaction has resolved.", OM, N),
    ("Osteomyelitis cannot be excluded.", OM, U),
    ("Cannot exclude osteomyelitis.", OM, U),
    ("Possible periosteal reaction.", OM, U),
    ("Equivocal cortical erosion at the stump.", OM, U),
    ("No fracture. Cortical destruction of the stump.", OM, P),
    # the nearest cue governs: "possible" does not reach back over "no" (old limit 2)
    ("No osteomyelitis, possible cellulitis.", OM, N),
    ("Possible cellulitis, no osteomyelitis.", OM, N),
    ("No fracture but heterotopic ossification plantar to the stump.", HO, P),
    ("No heterotopic ossification.", HO, N),
    ("No cortical destruction or\nperiosteal reaction.", OM, N),  # a wrapped line
    # the rulebook's examples (§2 "Negation and uncertainty")
    ("No fracture, soft tissue gas, periosteal reaction or cortical erosion.", OM, N),
    ("Periosteal reaction is not seen.", OM, N),
    ("Osteomyelitis is not ruled out.", OM, U),
    ("Low likelihood of osteomyelitis.", OM, N),
    ("Osteomyelitis is not favored.", OM, N),
    ("Cellulitis versus osteomyelitis.", OM, U),
    ("Osteomyelitis versus cellulitis.", OM, U),
    ("Osteomyelitis is suspected.", OM, U),
    ("No interval change in the heterotopic ossification.", HO, P),
    ("No osseous erosion, cortical destruction, or periosteal reaction is identified to suggest "
     "osteomyelitis.", OM, N),
    ("Osteomyelitis: none.", OM, N),
    ("Osteomyelitis?", OM, None),  # the question of the study
    ("? early osteomyelitis.", OM, U),
    ("If clinical concern for osteomyelitis persists, MRI is recommended.", OM, None),
    ("History of osteomyelitis of the fifth ray.", OM, None),
    ("Lytic focus, findings concerning for OM.", OM, P),
    ("Faint ossific fragments dorsal to the stump, compatible with HO.", HO, P),
    ("No new periosteal reaction.", OM, N),
    ("Not yet mature heterotopic bone.", "mature-ho-pattern", N),
))
def test_sentence_readings(text, concept, expected):
    assert read(text).get(concept) == expected


def test_terminators_end_the_scope_of_a_negation():
    assert read("No soft tissue gas; however, there is cortical destruction.")[OM] == P
    assert read("No abscess, although there is osteolysis of the stump.")[OM] == P
    assert read("No fracture, there is periosteal reaction.")[OM] == P


def test_a_bidirectional_cue_reaches_only_its_neighbours():
    text = "Soft tissue ossification at the stump with edema: heterotopic ossification versus " \
           "osteomyelitis."
    reading = read(text)
    assert reading[HO] == P  # the ossification is seen; what it is, is the question
    assert reading[OM] == U


# ---------------------------------------------------------------------------- sections
@pytest.mark.parametrize("text", (
    "INDICATION: r/o osteomyelitis.\nFINDINGS: Smooth bone ends.",
    "Clinical history: prior osteomyelitis of the second metatarsal.\nFindings: Unremarkable.",
    "COMPARISON: MRI 2025 demonstrated osteomyelitis.\nFINDINGS: Postsurgical change.",
    "TECHNIQUE: Three views to assess for osteomyelitis.\nFINDINGS: No fracture.",
    "FINDINGS: Smooth bone ends.\nRECOMMENDATION: MRI if osteomyelitis is suspected clinically.",
    "Reason for exam: osteomyelitis\nReport: smooth bone ends",
    "FINDINGS: No fracture. HISTORY: osteomyelitis 2024.",  # header after a full stop
))
def test_non_finding_sections_state_no_finding(text):
    assert OM not in read(text)


def test_the_impression_decides_over_a_sign_in_the_findings():
    text = ("FINDINGS: Mild periosteal reaction at the osteotomy site.\n"
            "IMPRESSION: Postsurgical periosteal reaction. No radiographic evidence of "
            "osteomyelitis.")
    assert read(text)[OM] == N


def test_an_impression_that_is_silent_leaves_the_findings():
    text = "FINDINGS: Cortical erosion of the stump.\nIMPRESSION: Postoperative changes."
    assert read(text)[OM] == P


def test_an_affirmed_diagnosis_in_the_impression_is_not_overruled_by_a_negated_one():
    text = "IMPRESSION: No osteomyelitis of the first ray. Osteomyelitis of the second " \
           "metatarsal stump."
    assert read(text)[OM] == P


def test_an_addendum_decides_over_the_impression():
    text = "IMPRESSION: No acute abnormality.\nADDENDUM: Subtle cortical erosion of the stump."
    assert read(text)[OM] == P


def test_conclusion_text_reads_as_the_impression():
    texts = report_texts({"conclusion": "No osteomyelitis.", "presentedForm": [
        _attachment("text/plain", "FINDINGS: periosteal reaction at the stump.")]}).texts
    assert READER.read_report(texts)[OM] == N


# ---------------------------------------------------------------------------- marrow
def test_normal_marrow_in_some_bones_and_abnormal_in_another_is_not_normal():
    text = ("Marrow signal is normal in the first and third metatarsal stumps. Marrow edema "
            "with low T1 signal in the second metatarsal stump.")
    assert read(text).get(NORMAL) is not P


@pytest.mark.parametrize("text", (
    "Marrow: normal.",
    "IMPRESSION: normal marrow signal; no osteomyelitis.",
    "Normal marrow signal throughout the residual metatarsals.",
    "Interval resolution of marrow edema. Marrow signal is now normal.",
))
def test_normal_marrow(text):
    assert read(text)[NORMAL] == P


@pytest.mark.parametrize("text", (
    "The marrow is normal except for edema in the second metatarsal stump.",
    "Loss of normal marrow signal in the cuboid.",
    "Normal marrow signal. Confluent T1 hypointensity in the second metatarsal stump.",
    "No marrow edema.",  # the absence of one abnormality is not a normal marrow
))
def test_not_normal_marrow(text):
    assert read(text).get(NORMAL) is not P


# ---------------------------------------------------------------------------- layout
def test_bullets_numbered_items_and_lines_end_statements():
    layout = READER.layout
    out = statements("IMPRESSION:\n- Cortical erosion at the stump\n- No fracture\n"
                     "1. Periosteal reaction 2. No gas", layout)
    assert [(s.section, s.text) for s in out] == [
        ("impression", "Cortical erosion at the stump"), ("impression", "No fracture"),
        ("impression", "Periosteal reaction"), ("impression", "No gas")]


def test_a_templated_line_is_one_statement_and_a_header_alone_opens_a_section():
    out = statements("IMPRESSION\nPhase 2 (blood pool): increased activity.\nFINDINGS - x",
                     READER.layout)
    assert [(s.section, s.text) for s in out] == [
        ("impression", "Phase 2 (blood pool): increased activity."), ("findings", "x")]


def test_abbreviations_do_not_end_a_sentence():
    out = statements("Cellulitis vs. osteomyelitis. No gas.", READER.layout)
    assert [s.text for s in out] == ["Cellulitis vs. osteomyelitis.", "No gas."]


def test_upper_case_reads_like_lower_case():
    assert read("NO PERIOSTEAL REACTION. HETEROTOPIC OSSIFICATION.") == {OM: N, HO: P}


def test_layout_headers_come_from_the_mappings():
    layout = Layout.build({"indication": ["why"]})
    assert [s.section for s in statements("WHY: x.\nY.", layout)] == ["indication", "indication"]


# ---------------------------------------------------------------------------- formats
def _attachment(content: str, text: str, encoding: str = "utf-8") -> dict:
    return {"contentType": content, "data": base64.b64encode(text.encode(encoding)).decode()}


@pytest.mark.parametrize(("form", "expected"), (
    (_attachment("Text/Plain", "No osteomyelitis."), "No osteomyelitis."),
    (_attachment("text/plain; charset=UTF-16", "Osteomyelitis.", "utf-16"), "Osteomyelitis."),
    (_attachment("text/plain;charset=\"utf-16le\"", "Osteomyelitis.", "utf-16-le"),
     "Osteomyelitis."),
    (_attachment("text/plain; charset=iso-8859-1", "Ödem.", "latin-1"), "Ödem."),
    (_attachment("text/plain", "\ufeffOsteomyelitis.", "utf-16-le"), "Osteomyelitis."),  # BOM
    (_attachment("TEXT/HTML", "<p>A&amp;B</p><ul><li>one</li></ul><script>x</script>"),
     "\nA&B\n\n\n- one\n\n"),
    (_attachment("text/rtf", r"{\rtf1\ansi {\b IMPRESSION:} Osteomyelitis.\par }"),
     "IMPRESSION: Osteomyelitis.\n"),
    (_attachment("application/rtf", r"{\rtf1 No gas.}"), "No gas."),
))
def test_attachment_text(form, expected):
    assert attachment_text(form) == (expected, None)


@pytest.mark.parametrize(("form", "reason"), (
    ({"contentType": "application/pdf", "data": "JVBERi0="},
     "is in a format not read (application/pdf)"),
    ({"contentType": "text/plain", "url": "Binary/1"},
     "is given by url and could not be fetched"),
    ({"contentType": "text/plain; charset=x-unknown", "data": "YQ=="},
     "could not be decoded (x-unknown)"),
    ({"contentType": "text/plain; charset=utf-8", "data": base64.b64encode(b"\xff\xfe\xfa")
      .decode()}, "could not be decoded (utf-8)"),
    ({"data": "YQ=="}, "is in a format not read (unknown)"),
))
def test_unreadable_attachments_say_why(form, reason):
    assert attachment_text(form) == (None, reason)


def test_an_attachment_by_url_is_read_through_the_fetch_function_it_is_given():
    seen = []

    def fetch(url):
        seen.append(url)
        return "Osteomyelitis.".encode("utf-16"), "text/plain; charset=utf-16"

    assert attachment_text({"url": "Binary/1"}, fetch) == ("Osteomyelitis.", None)
    assert seen == ["Binary/1"]


def test_the_narrative_is_read_only_when_nothing_else_carries_text():
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Osteomyelitis.</p></div>'
    assert [(section, text.strip()) for section, text in report_texts(
        {"text": {"div": div}}).texts] == [("findings", "Osteomyelitis.")]
    assert report_texts({"conclusion": "No gas.", "text": {"div": div}}).texts == [
        ("impression", "No gas.")]


def test_report_texts_lists_unread_forms_by_number_without_their_text():
    got = report_texts({"presentedForm": [_attachment("text/plain", "ok"),
                                          {"contentType": "image/png", "data": "AAAA"}]})
    assert got.texts == [("findings", "ok")]
    assert got.unread == ["attachment 2 is in a format not read (image/png)"]


def test_content_type_and_decode_helpers():
    assert content_type('Text/HTML; Charset="UTF-8"') == ("text/html", "UTF-8")
    assert content_type(None) == (None, None)
    assert decode("é".encode("cp1252"), None) == "é"  # not UTF-8: Windows-1252
    assert html_to_text("<table><tr><td>Bones</td><td>erosion</td></tr></table>") == \
        "\n\nBones : erosion\n\n"


def test_reading_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG)
    READER.read_report([("findings", "SECRETWORD osteomyelitis. INDICATION: SECRETWORD.")])
    report_texts({"presentedForm": [_attachment("text/rtf", r"{\rtf1 SECRETWORD}")]})
    assert "SECRETWORD" not in caplog.text


def test_a_site_file_adds_cues_and_headers(tmp_path):
    (tmp_path / "report-text.toml").write_text(
        'negation = ["nil"]\n[sections]\nindication = ["why asked"]\n')
    reader = Reader.from_mappings(load_mappings(DEFAULT_MAPPINGS_DIR, [tmp_path]))
    assert reader.read_report([("findings", "Nil osteomyelitis.")])[OM] == N
    assert OM not in reader.read_report([("findings", "WHY ASKED: osteomyelitis.")])


@pytest.mark.parametrize(("content", "message"), (
    ('[diagnoses]\nno-such-concept = ["x"]\n', "unknown concept 'no-such-concept'"),
    ('[conclusion_codes]\nosteomyelitis = "no-such"\n', "unknown concept 'no-such'"),
    ('[result_sections]\n"http://loinc.org|1-8" = "nowhere"\n', "unknown section 'nowhere'"),
    ('sections = ["x"]\n', "must be a table of lists"),
    ('no_such_key = ["x"]\n', "unknown key 'no_such_key'"),
))
def test_broken_report_text_files_stop_start_up(tmp_path, content, message):
    from cds_service.errors import MappingError

    (tmp_path / "report-text.toml").write_text(content)
    with pytest.raises(MappingError, match=message):
        load_mappings(DEFAULT_MAPPINGS_DIR, [tmp_path])


def test_the_reading_names_the_statement_that_decided_each_concept():
    reading = READER.read([("findings", "FINDINGS: Periosteal reaction at the osteotomy.\n"
                                        "IMPRESSION: Postsurgical change. No   osteomyelitis.\n"
                                        "Normal marrow signal. Marrow edema in the cuboid.")])
    assert reading.mentions[OM] == N and reading.evidence[OM] == "No osteomyelitis."
    assert reading.mentions[NORMAL] == N
    assert reading.evidence[NORMAL] == "Marrow edema in the cuboid."


def test_an_overlong_text_is_read_in_part_and_noted():
    from cds_service.clinical.reportformats import MAX_TEXT

    got = report_texts({"conclusion": "Osteomyelitis. " + "x " * MAX_TEXT})
    assert len(got.texts[0][1]) == MAX_TEXT
    assert READER.read_report(got.texts)[OM] == P
    assert got.unread == ["the conclusion is longer than 100,000 characters: only the first part "
                          "was read"]


@pytest.mark.parametrize("text", ("Increased 18F-FDG uptake in the cuboid.",
                                  "18F-FDG avid focus at the stump.",
                                  "Hypermetabolic focus in the first metatarsal stump."))
def test_pet_wordings(text):
    assert read(text)["pet-positive"] == P
