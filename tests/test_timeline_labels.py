"""Threshold labels of the evidence timeline never cover a data mark or another label.

Measured in Debian's Chromium (the shared browser fixture) on the page as drawn, at 1280x800 and
at a narrow 800 px: each threshold label's box (its text plus the white halo) against the boxes
of the lab dots, event markers, antibiotic bars and every other text of the chart, and against
the segments of the lab series' lines and the amputation line. Records: every fixture record with
an index amputation, the TYPICAL benchmark record (``benchmarks.data.typical_request``), the
rich record of test_timeline.py and two records whose ESRs crowd the threshold line every day.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from benchmarks.data import local_discovery, typical_request
from cds_service.cli import main
from tests.support.browser import open_page
from tests.test_timeline import RECORDS, _lab, _rich_record

RECORD_TIME = datetime(2026, 11, 20, 10, tzinfo=UTC)
WIDTHS = (1280, 800)

# In the page's own coordinates (CSS px at this width). A label's box is its text's box grown
# by the halo (stroke-width 3px in user units: 1.5 each side, scaled like the rest of the SVG).
MEASURE = """() => {
  const svg = document.querySelector('figure svg');
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  const box = (e, pad) => { const b = e.getBoundingClientRect();
    return [b.left - pad, b.top - pad, b.right + pad, b.bottom + pad]; };
  const name = e => (e.querySelector('title') || e.closest('a') || e).textContent.trim()
    || e.getAttribute('aria-label') || e.outerHTML.slice(0, 80);
  const point = (x, y, m) => { const p = svg.createSVGPoint(); p.x = x; p.y = y;
    const q = p.matrixTransform(m); return [q.x, q.y]; };
  const labels = [...svg.querySelectorAll('text.th-label')];
  const marks = [...svg.querySelectorAll('.dot, a.ev .m, rect.bar')].map(
    e => [name(e), box(e, 0)]);
  const texts = [...svg.querySelectorAll('text')].filter(t => !t.closest('.tip'))
    .map(t => [t, t.textContent, box(t, t.classList.contains('th-label') ? 1.5 * scale : 0)]);
  const segments = [];
  for (const p of svg.querySelectorAll('path.series')) {
    const nums = p.getAttribute('d').match(/-?[\\d.]+/g).map(Number);
    const m = p.getScreenCTM();
    for (let i = 2; i + 1 < nums.length; i += 2)
      segments.push(['series line of ' + p.closest('g.panel').dataset.concept,
                     [...point(nums[i - 2], nums[i - 1], m), ...point(nums[i], nums[i + 1], m)]]);
  }
  for (const l of svg.querySelectorAll('line.amp-line')) {
    const a = ['x1', 'y1', 'x2', 'y2'].map(k => l[k].baseVal.value);
    segments.push(['amputation line', [...point(a[0], a[1], l.getScreenCTM()),
                                       ...point(a[2], a[3], l.getScreenCTM())]]);
  }
  return {labels: labels.length, texts: texts.map(([t, s, b]) => [s, b, labels.includes(t)]),
          marks, segments};
}"""


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _crosses(box: list[float], seg: list[float]) -> bool:
    """Whether the segment meets the box: points every 0.25 px along it, tested one by one (a
    method of its own, not the chart's clipping, so the two cannot share a mistake)."""
    x1, y1, x2, y2 = seg
    steps = max(1, int(math.hypot(x2 - x1, y2 - y1) * 4))
    return any(box[0] <= x1 + (x2 - x1) * i / steps <= box[2]
               and box[1] <= y1 + (y2 - y1) * i / steps <= box[3] for i in range(steps + 1))


def collisions(drawn: dict[str, Any]) -> list[str]:
    found = []
    for text, box, is_label in drawn["texts"]:
        if not is_label:
            continue
        found += [f"{text!r} covers {mark!r}" for mark, other in drawn["marks"]
                  if _overlap(box, other)]
        found += [f"{text!r} covers the text {other_text!r}"
                  for other_text, other, _ in drawn["texts"]
                  if other is not box and _overlap(box, other)]
        found += [f"{text!r} crosses the {what}" for what, seg in drawn["segments"]
                  if _crosses(box, seg)]
    return found


def test_collision_helpers_see_what_they_should() -> None:
    assert _overlap([0, 0, 10, 10], [9, 9, 20, 20]) and not _overlap([0, 0, 10, 10],
                                                                     [10, 0, 20, 10])
    assert _crosses([0, 0, 10, 10], [-5, 5, 15, 5])  # straight through
    assert _crosses([0, 0, 10, 10], [-5, -4, 6, 12])  # through a corner region
    assert not _crosses([0, 0, 10, 10], [-5, -1, 15, -1])  # above
    assert not _crosses([0, 0, 10, 10], [12, -5, 30, 20])  # to the right


def _crowded_record() -> dict:
    """om-probable-ptb-esr with an ESR every day from day 1 to day 41 alternating 60 and 80 mm/h
    around the 70 mm/h threshold: no place on the line is free of the series."""
    bundle = copy.deepcopy(json.loads((RECORDS / "om-probable-ptb-esr.json").read_text()))
    start = datetime(2026, 10, 10, 8, tzinfo=UTC)
    bundle["entry"] += [{"resource": _lab(f"esr-d{i}", "4537-7", 80 if i % 2 else 60, "mm/h",
                                          (start + timedelta(days=i)).isoformat())}
                        for i in range(41)]
    return bundle


def _crowded_early_record() -> dict:
    """too-early-day-9 (amputation 2026-11-11, record time day 9) with an ESR every day from day
    -30 to day 8 alternating 60 and 80 mm/h: the amputation line stands three quarters of the
    way along the axis, where a label written above the panel right aligned would cross it."""
    bundle = copy.deepcopy(json.loads((RECORDS / "too-early-day-9.json").read_text()))
    start = datetime(2026, 10, 12, 8, tzinfo=UTC)
    patient = next(e["resource"]["id"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    bundle["entry"] += [{"resource": dict(_lab(f"esr-d{i}", "4537-7", 80 if i % 2 else 60, "mm/h",
                                               (start + timedelta(days=i)).isoformat()),
                                          subject={"reference": f"Patient/{patient}"})}
                        for i in range(39)]
    return bundle


def _typical_bundle() -> dict:
    """The TYPICAL benchmark record as the hook request carries it, as one Bundle."""
    request = typical_request(local_discovery(), RECORD_TIME)
    resources = []
    for answer in request["prefetch"].values():
        resources += ([e["resource"] for e in answer.get("entry", [])]
                      if answer.get("resourceType") == "Bundle" else [answer])
    return {"resourceType": "Bundle", "type": "collection",
            "timestamp": RECORD_TIME.isoformat(), "entry": [{"resource": r} for r in resources]}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: Any) -> dict[str, str]:
    """Rendered pages by record name (``cds-service timeline``, as the other timeline tests)."""
    folder = tmp_path_factory.mktemp("labels")
    records = {p.stem: p for p in sorted(RECORDS.glob("*.json"))}
    for name, bundle in (("typical", _typical_bundle()), ("rich", _rich_record()),
                         ("crowded", _crowded_record()),
                         ("crowded-early", _crowded_early_record())):
        records[name] = folder / f"{name}.json"
        records[name].write_text(json.dumps(bundle), encoding="utf-8")
    out = {}
    for name, path in records.items():
        page = folder / f"{name}.html"
        if main(["timeline", str(path), "--out", str(page)]) == 0:  # 2: no index amputation
            out[name] = page.read_text(encoding="utf-8")
    assert {"typical", "rich", "crowded", "crowded-early", "om-probable-ptb-esr",
            "too-early-day-9"} <= set(out)
    return out


def test_crowded_line_sends_its_label_above_the_panel(pages: dict[str, str]) -> None:
    """The ESRs of the crowded record leave no room on the ESR line (the collision test below
    then covers the label written above the panel, beside its dashed key)."""
    esr = pages["crowded"].split('data-concept="esr"')[1].split("</g>")[0]
    assert esr.count('class="th-key"') == 1 and esr.count('class="th-label"') == 1
    assert pages["crowded"].count('class="th-key"') == 1
    early = pages["crowded-early"].split('data-concept="esr"')[1].split("</g>")[0]
    assert early.count('class="th-key"') == 1 and 'text-anchor="start"' in early  # left


@pytest.mark.parametrize("width", WIDTHS)
def test_threshold_labels_cover_no_mark_and_no_label(browser: Any, pages: dict[str, str],
                                                      width: int) -> None:
    page, outside = open_page(browser, width=width, height=800)
    found = []
    try:
        for name, html in pages.items():
            page.set_content(html)
            drawn = page.evaluate(MEASURE)
            assert drawn["labels"] == 4, name  # one per lab series, all still drawn
            assert len(drawn["marks"]) > 0 and any(s for s in drawn["texts"]), name
            found += [f"{name}: {c}" for c in collisions(drawn)]
    finally:
        page.context.close()
    assert outside == []
    assert found == [], "\n".join(found)
