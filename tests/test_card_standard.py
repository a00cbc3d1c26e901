"""Every fixture's cards meet the card standard (clinical-rules.md §11; issue 14).

Each fixture record is replayed at patient-view, and each order case of tests/test_order_hooks.py
at its order hook, the way an EHR calls the service. Every response is held to §11 and the
contract:

- summaries under 140 characters, never cut ("…"): lists name the first items and "and N more";
- no internal vocabulary in anything a clinician reads (summary, detail, suggestion labels and
  action descriptions, override reasons, links): no tier or flag ids ("not-supported",
  "ho-ulcer-coexistence"), no hyphenated concept ids, no rule id outside the trailing "Rules:"
  line, no FHIR ids ("Procedure/proc-1") or element names ("presentedForm"), no ISO dates;
- at most 1,000 visible characters on the assessment card and 600 on every other card;
- the decision-support statement exactly once per response;
- no empty array, object, string or null anywhere in a response (CDS Hooks 2.0: "JSON elements
  SHALL NOT be empty");
- dates kept on one line (no-break spaces), every advice and verdict line cited, one suggestion
  per clinician action.

Then each fixture's ``replay --format html`` preview is opened in Chromium at 1280×800 (Debian's
chromium through Python Playwright; tests/support/browser.py): no horizontal overflow, no date
wrapped over two lines, the assessment card within one screen. A few representative fixtures'
visible text is pinned in tests/golden/visible/ so that a wording change is a reviewed diff.
"""

from __future__ import annotations

import html as html_module
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from cds_service.cli import main
from cds_service.clinical.vocabulary import DISCLAIMER, FLAG_SENTENCES, OM_WORDS, RESOURCE_WORDS
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings
from cds_service.preview import markdown_text, visible_length, visible_text
from cds_service.replay import format_html
from tests.support.browser import open_page
from tests.support.golden import check_golden
from tests.test_card_text import ORDERS, RECORDS, load, respond
from tests.test_order_hooks import CASES as ORDER_CASES

GOLDEN = Path(__file__).resolve().parent / "golden" / "visible"
RECORD_NAMES = sorted(p.stem for p in RECORDS.glob("*.json"))
# (case id, record, draft orders or None, hook)
ALL = [(name, name, None, "patient-view") for name in RECORD_NAMES] + [
    (f"order-{case}", name, draft, hook) for case, name, draft, hook in ORDER_CASES]
IDS = [case[0] for case in ALL]

ASSESSMENT_MAX = 1000  # visible characters (clinical-rules.md §11)
OTHER_MAX = 600
SUMMARY_LIMIT = 140  # CDS Hooks 2.0: "<140 characters"
VIEWPORT = {"width": 1280, "height": 800}

MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
DATE_WITH_SPACE = re.compile(rf"\b\d{{1,2}} ({MONTHS})\b")
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
RULE_ID = re.compile(r"\b(?:S|OM|HO|T|O|M)-[A-Z0-9]+(?:-[A-Z]+)?\b")
FHIR_REF = re.compile(r"\b(?:" + "|".join(RESOURCE_WORDS) + r")/\S")
CAMEL_CASE = re.compile(r"\b[a-z]{2,}[A-Z][A-Za-z]*\b")  # presentedForm, draftOrders
ELEMENT_INDEX = re.compile(r"\w\[\d+\]")  # entry[4]
# Hyphenated words that are plain English as well as concept ids; names written in camel case.
ENGLISH = {"probe-to-bone"}
NAMES = {"openFDA", "mmHg"}


@cache
def response(case: str) -> dict[str, Any]:
    _, name, draft, hook = next(c for c in ALL if c[0] == case)
    return respond(load(RECORDS / f"{name}.json"), hook,
                   load(ORDERS / f"{draft}.json") if draft else None)


def cards(case: str) -> list[dict[str, Any]]:
    return response(case)["cards"]


def kind(card: dict[str, Any]) -> str:
    return str(card["extension"]["tma-card"]["kind"])


def shown_fields(card: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, text) for everything a clinician may read on a card."""
    yield "summary", card["summary"]
    yield "detail", markdown_text(card.get("detail", ""))
    for suggestion in card.get("suggestions", ()):
        yield "suggestion label", suggestion["label"]
        for action in suggestion["actions"]:
            yield "action description", action["description"]
    for reason in card.get("overrideReasons", ()):
        yield "override reason", reason["display"]
    for link in card.get("links", ()):
        yield "link label", link["label"]


def internal_ids() -> set[str]:
    """Machine vocabulary that must never be shown: tiers, HO statuses and flags with a hyphen,
    and every hyphenated concept id of the mappings (unless it is also an English word)."""
    mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
    ids = {t for t in OM_WORDS if "-" in t} | {"not-detected"} | set(FLAG_SENTENCES)
    ids |= {c for c in mappings.concepts if "-" in c}
    return ids - ENGLISH


INTERNAL = internal_ids()
INTERNAL_WORD = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, INTERNAL), key=len,
                                                             reverse=True)) + r")(?![\w-])")


def test_every_case_answers_and_the_set_is_not_trivial() -> None:
    answered = [case for case in IDS if cards(case)]
    assert len(answered) >= 25, answered  # the quiet fixtures stay quiet; the rest have cards
    assert {kind(c) for case in IDS for c in cards(case)} == {
        "assessment", "next-tests", "management", "order-check"}


@pytest.mark.parametrize("case", IDS)
def test_summaries_fit_without_being_cut(case: str) -> None:
    for card in cards(case):
        summary = card["summary"]
        assert 0 < len(summary) < SUMMARY_LIMIT, summary
        assert "…" not in summary and not summary.endswith(("...", ",", ";")), summary


@pytest.mark.parametrize("case", IDS)
def test_no_internal_vocabulary_or_fhir_ids_in_what_a_clinician_reads(case: str) -> None:
    for card in cards(case):
        for where, text in shown_fields(card):
            found = {
                "internal id": INTERNAL_WORD.findall(text),
                "FHIR reference": FHIR_REF.findall(text),
                "FHIR element name": [w for w in CAMEL_CASE.findall(text) if w not in NAMES],
                "element index": ELEMENT_INDEX.findall(text),
                "ISO date": ISO_DATE.findall(text),
            }
            found = {k: v for k, v in found.items() if v}
            assert not found, f"{card['summary']} / {where}: {found}\n{text}"
        # rule ids only as the short trailing reference
        lines = markdown_text(card.get("detail", "")).split("\n")
        for line in [card["summary"], *lines]:
            if not line.startswith("Rules: "):
                assert not RULE_ID.findall(line), f"rule id outside 'Rules:': {line}"


@pytest.mark.parametrize("case", IDS)
def test_visible_length_within_the_limits(case: str) -> None:
    for card in cards(case):
        limit = ASSESSMENT_MAX if kind(card) == "assessment" else OTHER_MAX
        length = visible_length(card)
        assert length <= limit, f"{card['summary']}: {length} > {limit}\n{visible_text(card)}"


@pytest.mark.parametrize("case", IDS)
def test_the_decision_support_statement_once_per_response(case: str) -> None:
    statement = markdown_text(DISCLAIMER)
    got = [visible_text(card).count(statement) for card in cards(case)]
    assert sum(got) == (1 if got else 0), got


def _empty(value: Any, path: str) -> Iterator[str]:
    if value is None or value in ("", [], {}):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _empty(item, f"{path}.{key}")
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from _empty(item, f"{path}[{number}]")


@pytest.mark.parametrize("case", IDS)
def test_no_empty_element_anywhere_in_the_response(case: str) -> None:
    body = response(case)
    if not body["cards"]:  # the one array the spec requires, empty when there is nothing to say
        assert body == {"cards": []}
        return
    assert list(_empty(body, "$")) == []


@pytest.mark.parametrize("case", IDS)
def test_dates_are_kept_on_one_line(case: str) -> None:
    """"15 Nov" is written with a no-break space everywhere (summary, detail, labels)."""
    for card in cards(case):
        for text in (card["summary"], card.get("detail", ""),
                     *(s["label"] for s in card.get("suggestions", ()))):
            assert not DATE_WITH_SPACE.findall(text), text


CITATION = re.compile(r"\*\([^()*]+\)\*")  # *(Xu 2020; IWGDF/IDSA 2023, secondary)*
NESTED = re.compile(r"\*\([^)*]*\(")  # a citation holding a parenthesis: "(X (B: secondary))"
FLAG_NAMES = tuple(sentence[:25] for sentence, _ in FLAG_SENTENCES.values())  # or bold "**"
ORDER_LINE = re.compile(r"\*\*[^*]+\*\*: [^*]+\.")  # "**ceftriaxone 2 g IV daily**: osteo..."


def _blocks(detail: str) -> list[str]:
    """Paragraphs and list items of a detail (markdown); a paragraph that leads into a list
    (the failing NSAID gates) stays one block with its list."""
    out = []
    for paragraph in detail.split("\n\n"):
        lines = paragraph.split("\n")
        out += lines if all(line.startswith("- ") for line in lines) else [paragraph]
    return out


def _needs_citation(block: str, card: dict[str, Any]) -> bool:
    """Verdicts, flags and advice cite; the rule reference, the decision-support statement,
    what was missing or not checked, the findings list and the order a card is about do not."""
    if block.startswith(("Rules: ", "*Decision support", "**Not checked:**",
                         "**Missing or not read:**")):
        return False
    if kind(card) == "assessment":
        return block.startswith(("**", "Not discriminating", *FLAG_NAMES))
    return not ORDER_LINE.fullmatch(block)


@pytest.mark.parametrize("case", IDS)
def test_every_verdict_flag_and_advice_line_cites_its_source_in_one_style(case: str) -> None:
    for card in cards(case):
        detail = card.get("detail", "")
        assert not NESTED.findall(detail), f"nested citation: {NESTED.findall(detail)}"
        for block in _blocks(detail):
            if block.startswith("**Osteomyelitis indeterminate**: no rule decides"):
                continue  # the data decide nothing: no claim to cite
            for line in block.split("  \n"):  # the two verdict lines share a paragraph
                if _needs_citation(line, card):
                    assert CITATION.search(line), f"{card['summary']}: uncited: {line}"


@pytest.mark.parametrize("case", IDS)
def test_one_suggestion_per_clinician_action(case: str) -> None:
    """A button does one thing: order a test or drug (one create), remove a draft (one delete),
    or replace a draft by another order (a delete and a create); no action is offered twice in a
    response."""
    offered = []
    for card in cards(case):
        for suggestion in card.get("suggestions", ()):
            types = [a["type"] for a in suggestion["actions"]]
            assert types in (["create"], ["delete"], ["delete", "create"]), types
            verb = {("create",): ("Order", "Draft"), ("delete",): ("Remove",),
                    ("delete", "create"): ("Replace",)}[tuple(types)]
            assert suggestion["label"].startswith(verb), suggestion["label"]
            for action in suggestion["actions"]:
                resource = action.get("resource") or {}
                concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
                offered.append((action["type"], action.get("resourceId"),
                                tuple(sorted(c["code"] for c in concept.get("coding", ())))))
    assert len(offered) == len(set(offered)), offered


@pytest.mark.parametrize("case", [c for c in IDS if not c.startswith("order-")])
def test_the_extension_names_the_evidence_the_text_describes_in_words(case: str) -> None:
    """The visible text names findings in words; their FHIR references are in the extension's
    ``evidence``, each a resource of the record."""
    bundle = load(RECORDS / f"{case}.json")
    refs = {f"{e['resource']['resourceType']}/{e['resource'].get('id')}" for e in bundle["entry"]}
    for card in cards(case):
        if kind(card) != "assessment":
            continue
        evidence = card["extension"]["tma-bone-assessment"]["evidence"]
        assert evidence and set(evidence) <= refs, set(evidence) - refs


#####################################################################
# The text of a few representative responses, pinned

PINNED = ("om-probable-ptb-esr", "severe-infection", "ho-present-nsaid-gates-fail",
          "report-by-url-unread", "order-nsaid-gates-fail-select", "order-mixed-shapes-sign")


@pytest.mark.parametrize("case", PINNED)
def test_visible_text_matches_golden(case: str) -> None:
    got = [{"indicator": c["indicator"], "text": visible_text(c).split("\n"),
            "buttons": [s["label"] for s in c.get("suggestions", ())]} for c in cards(case)]
    check_golden(GOLDEN / f"{case}.json", got)


#####################################################################
# The HTML preview in Chromium

FIT = """() => {
  const dates = /\\d{1,2}\\u00a0(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)(\\u00a0\\d{4})?/g;
  const out = {pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
               cards: []};
  for (const card of document.querySelectorAll('section.card')) {
    const box = card.getBoundingClientRect();
    const wider = [...card.querySelectorAll('*')].filter(
      e => e.getBoundingClientRect().right > box.right + 0.5).map(e => e.tagName);
    const wrapped = [];
    const walker = document.createTreeWalker(card, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.data.matchAll(dates)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (tops.size > 1) wrapped.push(m[0]);
      }
    }
    out.cards.push({kind: card.dataset.kind, height: box.height,
                    overflow: card.scrollWidth - card.clientWidth, wider, wrapped,
                    summary: card.querySelector('.summary').textContent});
  }
  return out;
}"""


def preview(case: str) -> str:
    return format_html(response(case), f"{case}.json")


@pytest.mark.parametrize("case", [c for c in IDS if cards(c)])
def test_preview_fits_in_chromium(browser: Any, case: str) -> None:
    page, outside = open_page(browser, **VIEWPORT)
    try:
        page.set_content(preview(case), wait_until="load")
        got = page.evaluate(FIT)
    finally:
        page.context.close()
    assert outside == []
    assert got["pageOverflow"] <= 0, f"the page scrolls sideways by {got['pageOverflow']} px"
    assert len(got["cards"]) == len(cards(case))
    for card in got["cards"]:
        where = card["summary"]
        assert card["overflow"] <= 0 and card["wider"] == [], f"{where}: wider than the card"
        assert card["wrapped"] == [], f"{where}: dates wrapped over two lines {card['wrapped']}"
        if card["kind"] == "assessment":
            assert card["height"] <= VIEWPORT["height"], \
                f"{where}: {card['height']:.0f} px, more than one 1280×800 screen"


def test_replay_format_html_prints_the_page_of_the_cards(capsys: Any) -> None:
    """``cds-service replay RECORD --format html`` (product contract): one self-contained page,
    the same cards as the JSON response, each summary and card text as the reader sees it."""
    record = RECORDS / "om-probable-ptb-esr.json"
    assert main(["replay", str(record), "--format", "html"]) == 0, capsys.readouterr().err
    html = capsys.readouterr().out
    assert html.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in html
    assert not re.search(r"<(script|link|img|iframe)\b", html)  # nothing loaded, nothing run
    assert html.count('<section class="card"') == len(cards("om-probable-ptb-esr"))
    for card in cards("om-probable-ptb-esr"):
        assert html_module.escape(card["summary"]) in html
    draft = ORDERS / "om-probable-ceftriaxone.json"
    assert main(["replay", str(record), "--hook", "order-sign", "--draft", str(draft),
                 "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert "om-probable-ptb-esr.json, order-sign with om-probable-ceftriaxone.json" in page
    assert 'data-kind="order-check"' in page
