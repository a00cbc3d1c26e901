"""The evidence-timeline page: one self-contained HTML document (inline SVG and CSS, no script),
the same for the SMART app and for ``cds-service timeline``.

Rendering is server-side with Jinja2 (already installed with Flask; autoescaping on, so every
piece of record text is escaped as data). No JavaScript at all: hover and keyboard focus show a
marker's details with CSS, so the page's Content-Security-Policy is ``script-src 'none'`` and the
stylesheet is allowed by its hash.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from ..clinical.patient_view import amputation_kind, missing_data, summary
from ..clinical.vocabulary import DISCLAIMER, FLAG_SENTENCES
from ..services import Evaluation
from .chart import layout
from .model import Timeline, build

HERE = Path(__file__).resolve().parent
CSS = (HERE / "timeline.css").read_text(encoding="utf-8")
CSS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
# The whole policy: nothing may load or run but the page's own stylesheet and inline SVG.
CSP = (f"default-src 'none'; style-src '{CSS_HASH}'; img-src data:; script-src 'none'; "
       "base-uri 'none'; form-action 'none'")


@dataclass(frozen=True)
class Reason:
    rule: str
    text: str
    cite: str


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def assessment_view(evaluation: Evaluation) -> dict[str, Any]:
    """The assessment in plain words: tiers with their deciding rule, every reason with its
    citation, the flags, missing data and the suggested next tests (same texts as the card)."""
    a = evaluation.assessment
    record = evaluation.record
    if a is None:
        return {"relevant": False, "notes": list(record.notes),
                "missing": [f"{k}: {v}" for k, v in evaluation.unavailable.items()]}
    by_id = {r.id: r for r in a.results}

    def tier(name: str, value: str, rule: str | None) -> dict[str, str]:
        decided = by_id.get(rule) if rule else None
        return {"name": name, "value": value.replace("-", " "), "rule": rule or "",
                "why": decided.explanation if decided else ""}

    reasons = [Reason(r.id, r.explanation, r.source.cite() if r.source else "rulebook")
               for r in a.results]
    flags = [Reason(f, FLAG_SENTENCES[f][0], FLAG_SENTENCES[f][1].cite()) for f in a.flags]
    tests = []
    for card in evaluation.cards:
        if card.kind == "next-tests":
            tests += [(s.label.removeprefix("Order "), s.rule or "") for s in card.suggestions]
    management = [c.summary for c in evaluation.cards if c.kind == "management"]
    return {
        "relevant": True, "summary": summary(a),
        "tiers": [tier("Osteomyelitis", a.osteomyelitis, a.deciding_om),
                  tier("Heterotopic ossification", a.heterotopic_ossification, a.deciding_ho)],
        "reasons": reasons, "flags": flags,
        "missing": missing_data(a, evaluation.unavailable, record.notes),
        "tests": tests, "management": management, "disclaimer": DISCLAIMER.strip("*"),
    }


def render_timeline(timeline: Timeline, *, title_note: str = "") -> str:
    chart = layout(timeline)
    record = timeline.evaluation.record
    amp = record.amputation
    heading = "Evidence timeline"
    a = timeline.evaluation.assessment
    if amp is not None:
        side = (amp.side or "side unknown").capitalize()
        kind = amputation_kind(a) if a is not None else "amputation"
        heading += f": {side} {kind}" + (f", day {timeline.days_now}"
                                         if timeline.days_now is not None else "")
    return _environment().get_template("timeline.html").render(
        css=CSS, csp=CSP, heading=heading, timeline=timeline, chart=chart,
        view=assessment_view(timeline.evaluation), as_of=timeline.now.strftime(
            "%Y-%m-%d %H:%M UTC"), title_note=title_note)


def render_page(evaluation: Evaluation, resources: list[dict[str, Any]], **kwargs: Any) -> str:
    """The page for one evaluated record (``resources``: the record as read, for the items the
    assessment ignores because they are about the other foot)."""
    return render_timeline(build(evaluation, resources), **kwargs)


def render_message(title: str, text: str, action: str = "") -> str:
    """A short page saying what happened and what to do (bad launches, failed reads)."""
    return _environment().get_template("message.html").render(css=CSS, csp=CSP, title=title,
                                                              text=text, action=action)
