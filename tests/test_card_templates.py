"""Suggested draft orders are templates (cds_service/clinical/orders.py ``OrderTemplate``): built
and validated whole once, then copied per patient with only the subject checked. The verdicts
must be those of validating each patient's resource whole, a broken template must be refused
however often it is used, and a response must leave the templates as they were built.

Also the cheaper card plumbing of issue #17: uuids formatted in batches, month names without
strftime, record text already printable, and the cards' JSON response without jsonify."""

from __future__ import annotations

import copy
import json
import locale
import os
import re
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from flask import jsonify

from cds_service import cards, create_app
from cds_service.cards import md, plain
from cds_service.clinical import nexttests, validation
from cds_service.clinical.facts import gather
from cds_service.clinical.orders import (
    FOOT_SITE,
    INDOMETHACIN,
    TEMPLATE_SUBJECT,
    DraftServiceRequest,
    InvalidOutboundResource,
    OrderTemplate,
    _checked,
    indomethacin_request,
    service_request,
)
from cds_service.clinical.record import Record as ClinicalRecord
from cds_service.clinical.rules import Assessment, assess
from cds_service.clinical.sources import cited
from cds_service.clinical.vocabulary import FLAG_SENTENCES, MONTHS, day_month, flag_sentence
from cds_service.fhir.resources import bundle_resources
from cds_service.replay import build_request, patient_id_of, record_time
from cds_service.web.routes import _cards_response
from fixtures.build import CRP, ESR
from fixtures.build import Record as FixtureRecord
from tests.conftest import load_record, make_app
from tests.support import rulebook

PATIENTS = ("p1", "bench-cold-17", "a b", "é-ü", "x" * 64)
DRAFTS = [value for name, value in vars(nexttests).items() if name.endswith("_ORDER")]
DRAFTS += [order for order, _kind in nexttests.ALTERNATIVE_ORDERS]
DRAFTS += list(nexttests.BIOPSY_ORDERS.values())


@pytest.fixture(autouse=True)
def _forget() -> None:
    validation.clear_cache()


def _parts(order: DraftServiceRequest) -> tuple[str, str | None]:
    """The reason and note of a draft order, read back from its template."""
    resource = order.for_patient("p1", None)
    notes = resource.get("note") or [{"text": None}]
    return resource["reasonCode"][0]["text"], notes[0]["text"]


def test_every_next_test_template_is_covered() -> None:
    assert len(DRAFTS) == 12  # XR, ESR, CRP, MRI, MRI plain, BC, SCAN-HO; 3 ALT; 2 biopsies
    assert len({id(d) for d in DRAFTS}) == len(DRAFTS)


@pytest.mark.parametrize("order", DRAFTS, ids=lambda d: d.orderable.key)
def test_each_copy_is_the_resource_built_and_validated_whole(order: DraftServiceRequest) -> None:
    reason, note = _parts(order)
    for patient in PATIENTS:
        for side in (None, "left", "right", "bilateral"):
            got = order.for_patient(patient, side)
            assert got == service_request(order.orderable.key, patient, side, reason, note)
            assert list(got) == list(service_request(order.orderable.key, patient, side, reason,
                                                     note))  # same key order: same bytes
            assert got["subject"] == {"reference": f"Patient/{patient}"}
            assert validation.problem(got) is None
            assert ("bodySite" in got) is (side in FOOT_SITE)


def test_indomethacin_copy_is_the_fixed_request_for_the_patient() -> None:
    got = indomethacin_request("p2")
    assert got["subject"] == {"reference": "Patient/p2"}
    assert got["medicationCodeableConcept"]["coding"][0]["code"] == "197817"
    assert list(got)[:5] == ["resourceType", "status", "intent", "medicationCodeableConcept",
                             "subject"]
    assert validation.problem(got) is None


def test_a_broken_template_is_refused_when_it_is_built() -> None:
    # An empty reason text is not a FHIR string (pattern [ \r\n\t\S]+): reasonCode[0].text.
    for _ in range(2):  # the second time the verdict is remembered: still refused
        with pytest.raises(InvalidOutboundResource, match=r"ServiceRequest suggestion invalid: "
                           r"reasonCode\.0\.text: String should match pattern"):
            DraftServiceRequest("xr", "")
    broken = {**INDOMETHACIN.resource, "status": "draft  "}  # a code has no trailing spaces
    with pytest.raises(InvalidOutboundResource, match=r"MedicationRequest suggestion invalid: "
                       r"status"):
        OrderTemplate(broken)
    assert INDOMETHACIN.resource["status"] == "draft"


def test_a_copy_with_a_subject_the_quick_check_refuses_is_validated_whole() -> None:
    copied = dict(nexttests.XR_ORDER.for_patient("p1", "left"))
    copied["subject"] = {"reference": 5}
    with pytest.raises(InvalidOutboundResource, match=r"ServiceRequest suggestion invalid: "
                       r"subject\.reference: Input should be a valid string"):
        _checked(copied, template_decided=True)
    copied["subject"] = {"reference": "Patient/p1", "display": ""}  # empty string: invalid
    with pytest.raises(InvalidOutboundResource, match=r"subject\.display"):
        _checked(copied, template_decided=True)


def test_copies_of_two_patients_do_not_share_their_subject() -> None:
    first = nexttests.XR_ORDER.for_patient("p1", "left")
    second = nexttests.XR_ORDER.for_patient("p2", "left")
    assert first["subject"] is not second["subject"]
    assert first is not second
    assert first["subject"] == {"reference": "Patient/p1"}


def test_responses_leave_the_templates_as_built() -> None:
    templates = [t for d in DRAFTS for t in d._templates.values()] + [INDOMETHACIN]
    before = [copy.deepcopy(t.resource) for t in templates]
    seen = 0
    for name in ("severe-infection", "ho-mature-nsaid-gates-pass", "om-probable-ptb-esr",
                 "charcot-bone-scan"):
        bundle = load_record(name)
        when = record_time(bundle)
        client = create_app({"auth_required": False, "database_url": "sqlite://"},
                            clock=lambda w=when: w).test_client()
        resources = bundle_resources(bundle)
        patient = patient_id_of(resources, Path(name))
        body = build_request(client.get("/cds-services").get_json(), "tma-bone-assessment",
                             "patient-view", resources, patient)
        response = client.post("/cds-services/tma-bone-assessment", json=body)
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        seen += text.count(f'"subject":{{"reference":"Patient/{patient}"}}')
        assert TEMPLATE_SUBJECT not in text
    assert seen >= 5  # the fixtures do suggest draft orders
    assert [t.resource for t in templates] == before
    assert all(t.resource["subject"] == {"reference": TEMPLATE_SUBJECT} for t in templates)


# ----- uuids -----------------------------------------------------------------------------------


def test_batch_formatting_is_uuid4_formatting() -> None:
    raw = os.urandom(16 * 4096) + bytes(16) + b"\xff" * 16
    expected = [str(uuid.UUID(bytes=raw[i:i + 16], version=4)) for i in range(0, len(raw), 16)]
    assert cards._format(raw) == expected


def test_new_uuids_are_distinct_version_4_uuids() -> None:
    source = cards._UuidSource()
    made = [source() for _ in range(3 * source.BATCH + 7)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_its_own_uuids() -> None:
    source = cards._UuidSource()
    source()  # a batch is pooled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next uuid and leave at once
        os.write(write, source().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_next = [source() for _ in range(source.BATCH)]
    assert re.fullmatch(r"[0-9a-f-]{36}", child)
    assert child not in parent_next


# ----- dates and record text -------------------------------------------------------------------


def test_month_names_are_the_c_locale_abbreviations() -> None:
    saved = locale.setlocale(locale.LC_TIME)
    try:
        locale.setlocale(locale.LC_TIME, "C")
        for month in range(1, 13):
            when = datetime(2026, month, 3, tzinfo=UTC)
            assert MONTHS[month - 1] == when.strftime("%b")
            assert day_month(when, when) == f"3\u00a0{when.strftime('%b')}"
        assert day_month(datetime(2024, 9, 11, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)) \
            == "11\u00a0Sep\u00a02024"
    finally:
        locale.setlocale(locale.LC_TIME, saved)


def _plain_by_character(text: object, limit: int = 120) -> str:
    """plain() as it was: every character looked at."""
    cleaned = cards.one_line("".join(ch if ch.isprintable() or ch == "\u00a0" else " "
                                     for ch in str(text)))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


@pytest.mark.parametrize("text", [
    "vancomycin 1 g IV", "  two  spaces  ", "tab\there", "line\nbreak", "ctrl\x07bell",
    "no-break\u00a015 Nov", "mixed\u00a0and\ttab", "zero\u200bwidth", "é ü ß …", "", 42,
    "x" * 300, "<img src=x onerror=alert(1)>", "\u2028separator", " \x0b\x0c ",
])
def test_plain_is_unchanged_for_printable_and_other_text(text: object) -> None:
    for limit in (120, 20):
        assert plain(text, limit) == _plain_by_character(text, limit)
    assert md(text) == cards._MD_PUNCTUATION.sub(r"\\\1", _plain_by_character(text))


# ----- the cards' JSON response ----------------------------------------------------------------


def test_the_cards_response_is_what_jsonify_gave() -> None:
    app = make_app()
    sample = [{"summary": "Left TMA day 42: osteomyelitis probable – LR− 0.14 …",
               "detail": "15\u00a0Nov", "n": 1, "x": 1.5, "ok": True, "list": [1, "é"]}]
    with app.test_request_context("/"):
        for cards_list in (sample, []):
            ours, theirs = _cards_response(cards_list), jsonify({"cards": cards_list})
            assert ours.get_data() == theirs.get_data()
            assert dict(ours.headers) == dict(theirs.headers)
            assert ours.status_code == theirs.status_code
            assert json.loads(ours.get_data()) == {"cards": cards_list}
        odd = [{"dose": Decimal("1.5")}]  # orjson cannot: Flask's own encoder, as before
        assert _cards_response(odd).get_data() == jsonify({"cards": odd}).get_data()


# ----- T-LAB and the probe-to-bone advice read the facts, not the record again -----------------


def _old_lab_wanted(a: Assessment, concept: str) -> bool:
    """T-LAB as it read the record itself: no usable value of ``concept`` in 14 days."""
    return not a.facts.record.quantities(concept, 14)


def _old_ptb_recent(a: Assessment) -> bool:
    return bool(a.facts.record.coded("probe-to-bone", 14))


def _edge_records() -> list[FixtureRecord]:
    records = []
    for days in (-2, -1, -0.5, 0, 13.9, 14, 14.01, 15, 29, 31):  # window edges, clock skew
        for concept in (ESR, CRP):
            record = rulebook.with_wound(60)
            record.lab(*concept, 40, "mm/h" if concept is ESR else "mg/L", days)
            records.append(record)
        record = rulebook.with_wound(60)
        record.finding("probe-to-bone", "Probe-to-bone test", True, days)
        records.append(record)
    record = rulebook.with_wound(60)  # the newest ESR cannot be converted; an older one can
    record.lab(*ESR, 40, "kg", 5)
    record.lab(*ESR, 40, "mm/h", 10)
    records.append(record)
    record = rulebook.with_wound(60)  # only an unconvertible ESR in 14 days, a usable one older
    record.lab(*ESR, 40, "kg", 5)
    record.lab(*ESR, 40, "mm/h", 20)
    records.append(record)
    record = rulebook.with_wound(60)  # a probe-to-bone result of the other foot, and one older
    record.finding("probe-to-bone", "Probe-to-bone test", True, 3, side="right")
    record.finding("probe-to-bone", "Probe-to-bone test", False, 20, side="left")
    records.append(record)
    return records


def test_t_lab_and_probe_to_bone_decide_as_reading_the_record_did() -> None:
    assessments = [rulebook.assessed(r) for r in _edge_records()]
    mappings = rulebook.MAPPINGS
    for path in sorted((Path(__file__).resolve().parent.parent / "fixtures" / "records")
                       .glob("*.json")):
        bundle = load_record(path.stem)
        resources = bundle_resources(bundle)
        record = ClinicalRecord(resources, mappings, record_time(bundle),
                                patient_id_of(resources, path))
        assessments.append(assess(gather(record)))
    decided = {"lab": 0, "no lab": 0, "ptb": 0, "no ptb": 0}
    for a in assessments:
        wanted = nexttests.t_lab(a, "p1")
        if "early-postoperative" not in a.flags:
            expected = [order for concept, order in (("esr", nexttests.ESR_ORDER),
                                                     ("crp", nexttests.CRP_ORDER))
                        if _old_lab_wanted(a, concept)]
            assert [s.codes for s in wanted] == [o.codes for o in expected]
            decided["lab" if wanted else "no lab"] += 1
        if a.facts.has_wound and a.osteomyelitis != "confirmed":
            advice = nexttests.probe_to_bone_advice(a)
            assert (advice is None) is _old_ptb_recent(a)
            decided["no ptb" if advice is None else "ptb"] += 1
    assert min(decided.values()) >= 3, decided  # both answers of both checks were seen


def test_printable_text_has_no_white_space_but_the_space() -> None:
    # one_line's shortcut: printable text without "  " has no run of white space to collapse
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert [c for c in spaces if c.isprintable()] == [" "]
    for text in ("a  b", "a\u00a0 b", " a b ", "a\tb", "a\u2003b", "x"):
        assert cards.one_line(text) == cards._SPACES.sub(" ", text).strip(" ")


def test_threads_drawing_uuids_at_once_never_get_the_same_one() -> None:
    source = cards._UuidSource()
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(into: list[str]) -> None:
        for _ in range(3 * source.BATCH):
            into.append(source())

    workers = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    every = [u for into in drawn for u in into]
    assert len(every) == 8 * 3 * source.BATCH
    assert len(set(every)) == len(every)


def test_each_flag_sentence_ends_with_its_sources_citation() -> None:
    for flag, (_sentence, source) in FLAG_SENTENCES.items():
        for seen in ("", "eGFR 24, 15\u00a0Nov"):
            assert flag_sentence(flag, seen).endswith(cited(source) + ".")
            assert (f"({seen})" in flag_sentence(flag, seen)) is bool(seen)
