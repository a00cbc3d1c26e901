"""The evidence-timeline page and ``cds-service timeline`` (issue 15), offline.

Expected values are read off the fixture records by hand (fixtures/README.md, fixtures/build.py)
and the rulebook's thresholds (clinical-rules.md §3), not from the renderer's output.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html as html_lib
import json
import re
from pathlib import Path

import pytest

from cds_service.cli import main

RECORDS = Path(__file__).resolve().parent.parent / "fixtures" / "records"
PATIENT = {"reference": "Patient/pt-om-probable"}


def _write(tmp_path: Path, bundle: dict, name: str = "record.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle), encoding="utf-8")
    return path


def _render(tmp_path: Path, record: Path) -> str:
    out = tmp_path / "page.html"
    assert main(["timeline", str(record), "--out", str(out)]) == 0
    return out.read_text(encoding="utf-8")


def _points(html: str) -> dict[str, int]:
    return {c: int(n) for c, n in re.findall(r'data-concept="([a-z-]+)" data-points="(\d+)"',
                                             html)}


def _lab(ident: str, loinc: str, value: float, unit: str, when: str) -> dict:
    return {"resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": PATIENT, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                              "code": unit}}


def _rich_record() -> dict:
    """om-probable-ptb-esr (left TMA 2026-10-09, record time 2026-11-20) plus three CRPs, an
    ALP with its own reference high, a cefazolin course, a positive bone culture, a right-foot
    radiograph, and report text that tries to inject markup."""
    bundle = json.loads((RECORDS / "om-probable-ptb-esr.json").read_text())
    bundle = copy.deepcopy(bundle)
    extra = [
        _lab("crp-a", "1988-5", 120, "mg/L", "2026-10-12T08:00:00Z"),  # day 3
        _lab("crp-b", "1988-5", 35, "mg/L", "2026-10-30T08:00:00Z"),  # day 21
        _lab("crp-c", "1988-5", 48, "mg/L", "2026-11-18T08:00:00Z"),  # day 40
        dict(_lab("alp-a", "6768-6", 150, "U/L", "2026-11-18T08:00:00Z"),
             referenceRange=[{"high": {"value": 129, "unit": "U/L"}}]),
        {"resourceType": "MedicationRequest", "id": "abx-1", "status": "completed",
         "intent": "order", "subject": PATIENT, "authoredOn": "2026-10-09T12:00:00Z",
         "medicationCodeableConcept": {"coding": [{
             "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "2180"}],
             "text": "cefazolin"},
         "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {
             "start": "2026-10-09T12:00:00Z", "end": "2026-10-16T12:00:00Z"}}}}]},
        {"resourceType": "Observation", "id": "cult-1", "status": "final", "subject": PATIENT,
         "code": {"coding": [{"system": "http://loinc.org", "code": "602-3"}]},
         "effectiveDateTime": "2026-11-19T10:00:00Z",
         "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct",
                                              "code": "3092008"}],
                                  "text": "Staphylococcus aureus <b>MRSA</b>"}},
        {"resourceType": "DiagnosticReport", "id": "rep-right", "status": "final",
         "subject": PATIENT, "effectiveDateTime": "2026-11-12T10:00:00Z",
         "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "73630"}],
                  "text": "Radiograph right foot"},
         "conclusion": "Cortical destruction of the right fifth metatarsal head."},
    ]
    bundle["entry"] += [{"resource": r} for r in extra]
    for entry in bundle["entry"]:
        if entry["resource"].get("id") == "rep-8":
            entry["resource"]["conclusion"] = (
                "Periosteal reaction and cortical erosion at the second metatarsal stump "
                "<script>alert(1)</script>. No soft-tissue gas. Heterotopic ossification "
                "plantar to the stump.")
    return bundle


def test_fixture_page_draws_what_the_record_holds(tmp_path: Path) -> None:
    html = _render(tmp_path, RECORDS / "om-probable-ptb-esr.json")
    # Clock = Bundle.timestamp 2026-11-20T10:00Z; amputation 2026-10-09 -> day 42.
    assert "Evidence timeline: Left TMA, day 42" in html
    assert _points(html) == {"esr": 1, "crp": 0, "wbc": 0, "alkaline-phosphatase": 0}
    for line in ("ESR &gt; 70 mm/h", "CRP &gt; 10 mg/L", "WBC &gt; 12",
                 "ALP above 120 U/L (default reference high)"):
        assert line in html
    assert html.count('class="th-line"') == 4
    assert 'data-from-day="0" data-to-day="14"' in html  # early post-op shading
    # Events: amputation (surgery lane) and the radiograph with both findings present.
    assert html.count('<a class="ev') == 2
    assert "Imaging pattern of osteomyelitis: <strong>present</strong>" in html
    assert "“Periosteal reaction and cortical erosion at the second metatarsal stump.”" in html
    assert ">Osteomyelitis: <strong>probable</strong> <span class=\"rule\">(OM-2)</span>" in html
    assert "Heterotopic ossification: <strong>present</strong>" in html
    assert "Xu 2020" in html  # OM-2's citation


def test_rich_record_series_events_courses_and_ignored(tmp_path: Path) -> None:
    html = _render(tmp_path, _write(tmp_path, _rich_record()))
    assert _points(html) == {"esr": 1, "crp": 3, "wbc": 0, "alkaline-phosphatase": 1}
    assert "ALP above reference high (129 U/L)" in html  # the Observation's own high
    # The CRP of day 3 (120) and of day 40 (48) are above 10 mg/L: two filled squares.
    crp = html.split('data-concept="crp"')[1].split("</g>")[0]
    assert crp.count('class="dot above"') == 3 and crp.count('class="dot"') == 0
    assert "cefazolin: 9 Oct 26 to 16 Oct 26 (MedicationRequest/abx-1)" in html
    assert "Bacteria identified in Bone" in html or "Bone culture" in html
    assert "positive: Staphylococcus aureus &lt;b&gt;MRSA&lt;/b&gt;" in html
    # The right-foot radiograph is drawn greyed in its own lane and listed as ignored.
    assert html.count('<a class="ev ignored"') == 1
    assert re.search(r'<tr id="ev-\d+" class="ignored">.*?Ignored \(right side', html, re.S)
    assert "Cortical destruction of the right fifth" in html
    # "No soft-tissue gas." never becomes a finding; the rest of the text is escaped data.
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_page_is_self_contained_and_script_free(tmp_path: Path) -> None:
    html = _render(tmp_path, _write(tmp_path, _rich_record()))
    assert not re.search(r'\s(src|href)="(?!#)', html)  # only in-page anchors
    assert "@import" not in html and "url(http" not in html
    policy = html_lib.unescape(re.search(
        r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert "script-src 'none'" in policy and "default-src 'none'" in policy
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy


def test_markers_are_keyboard_reachable_with_their_sentence(tmp_path: Path) -> None:
    html = _render(tmp_path, RECORDS / "om-probable-ptb-esr.json")
    marker = re.search(r'<a class="ev" href="#(ev-\d+)" aria-label="Foot radiograph[^"]*"', html)
    assert marker, "the radiograph marker is a link (focusable) with an accessible name"
    assert f'<tr id="{marker.group(1)}"' in html  # it leads to its row in the event list
    tip = html[marker.end():].split("</a>")[0]
    assert "Periosteal reaction and cortical erosion" in tip  # shown on hover and focus


def test_early_post_operative_record(tmp_path: Path) -> None:
    html = _render(tmp_path, RECORDS / "too-early-day-9.json")
    assert "day 9" in html
    assert ">Osteomyelitis: <strong>indeterminate</strong> <span class=\"rule\">(S-2)" in html
    assert "early-postoperative" in html
    assert 'data-from-day="0" data-to-day="14"' in html


def test_other_foot_fixture_is_ignored_not_used(tmp_path: Path) -> None:
    html = _render(tmp_path, RECORDS / "laterality-mismatch.json")
    # A right-foot osteomyelitis Condition (M86.171) and a right-foot radiograph (README).
    assert html.count('<a class="ev ignored"') == 2
    assert "not supported" in html


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nope.json"
    assert main(["timeline", str(missing), "--out", str(tmp_path / "x.html")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p"}}]}
    assert main(["timeline", str(_write(tmp_path, bundle)), "--out",
                 str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert "no index amputation" in err and err.count("\n") == 1
    assert not (tmp_path / "x.html").exists()
