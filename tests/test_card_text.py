"""Record text on cards is data, never markup (clinical-rules.md §11; issue 13 item 4).

Text from FHIR resources and draft orders is escaped by one function, ``cards.md``; the cards are
rendered the way the CDS Hooks sandbox renders them (markdown-it, raw HTML allowed) and must show
hostile text as the characters it is: no image, link, HTML element or table cell.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service import create_app
from cds_service.cards import md, plain
from cds_service.fhir.resources import bundle_resources
from cds_service.preview import detail_html, markdown_text, visible_text
from cds_service.replay import build_request, patient_id_of, record_time
from tests.conftest import RECORDS

ORDERS = RECORDS.parent / "orders"
SERVICE = {"patient-view": "tma-bone-assessment", "order-select": "tma-order-select",
           "order-sign": "tma-order-sign"}
HOSTILE = "<img src=x onerror=alert(1)> [x](javascript:alert(1)) **b** | c |\n|---|---|\n# h"
MARKUP = ("<img", "<a ", "<a>", "<script", "<table", "<td", "<strong>b</strong>", "<h1",
          "javascript:alert(1)\"")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def respond(bundle: dict[str, Any], hook: str = "patient-view",
            draft: dict[str, Any] | None = None) -> dict[str, Any]:
    """The response to a hook call an EHR makes for this record (clock at its timestamp)."""
    when = record_time(bundle)
    app = create_app({"auth_required": False, "database_url": "sqlite://"}, clock=lambda: when)
    client = app.test_client()
    resources = bundle_resources(bundle)
    body = build_request(client.get("/cds-services").get_json(), SERVICE[hook], hook, resources,
                         patient_id_of(resources, Path("record")), draft)
    response = client.post(f"/cds-services/{SERVICE[hook]}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def resource(bundle: dict[str, Any], ident: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == ident)


def assert_no_markup(cards: list[dict[str, Any]]) -> None:
    for card in cards:
        html = detail_html(card.get("detail", ""))
        found = [m for m in MARKUP if m in html]
        assert found == [], f"{card['summary']}: record text became markup {found}:\n{html}"
        for field in [card["summary"], *(s["label"] for s in card.get("suggestions", ()))]:
            assert field.replace("\u00a0", " ").isprintable(), field  # no-break: dates


def test_record_text_is_shown_as_text_on_the_patient_view_cards() -> None:
    bundle = load(RECORDS / "om-confirmed-bone-culture.json")
    resource(bundle, "proc-1")["code"]["text"] = "Amputation, metatarsal " + HOSTILE
    resource(bundle, "med-7")["medicationCodeableConcept"]["text"] = "vancomycin " + HOSTILE
    resource(bundle, "obs-3")["valueCodeableConcept"]["text"] = "<img src=x onerror=alert(1)>"
    esr = copy.deepcopy(resource(bundle, "obs-4"))  # a newer ESR in a unit nobody can convert
    esr["id"] = "obs-99"
    esr["valueQuantity"] = {"value": 99, "unit": HOSTILE, "code": HOSTILE}
    esr["effectiveDateTime"] = "2026-11-19T08:00:00Z"
    bundle["entry"].append({"resource": esr})

    cards = respond(bundle)["cards"]

    assert_no_markup(cards)
    text = visible_text(cards[0])
    assert "vancomycin <img src=x onerror=alert(1)> [x](javascript:alert(1)) **b**" in text
    assert "bone culture positive (<img src=x onerror=alert(1)>)" in text
    assert "unit <img src=x onerror=alert(1)>" in text  # the unit note, as data


def test_draft_order_text_is_shown_as_text_on_the_order_cards() -> None:
    bundle = load(RECORDS / "om-probable-ptb-esr.json")
    draft = load(ORDERS / "om-probable-ceftriaxone.json")
    draft["entry"][0]["resource"]["medicationCodeableConcept"]["text"] = "ceftriaxone " + HOSTILE

    for hook in ("order-select", "order-sign"):
        cards = respond(bundle, hook, draft)["cards"]
        assert [c["extension"]["tma-card"]["rules"] for c in cards] == [["O-ABX"]]
        assert_no_markup(cards)
        assert "ceftriaxone <img src=x onerror=alert(1)> [x](javascript:alert(1))" in \
            visible_text(cards[0])


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_escaped_text_renders_as_exactly_its_characters(text: str) -> None:
    """Whatever the record says, the reader sees those characters (as one line), nothing else."""
    shown = markdown_text(f"Seen: {md(text)}")
    assert shown == " ".join(f"Seen: {plain(text)}".split())
