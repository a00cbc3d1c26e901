"""Cards as an EHR shows them: markdown to HTML (CommonMark with GFM tables, markdown-it-py), the
visible text of a card, and the self-contained preview page of ``replay --format html``.

The renderer is set up like the CDS Hooks sandbox's: raw HTML in markdown is passed through, so
the preview shows what a permissive EHR would, and any record text that escaped
:func:`cds_service.cards.md` would show up here as markup (the tests look for it). The page
itself forbids scripts and outside loads with a Content-Security-Policy.

markdown-it-py is imported on first use only: the service never needs it to answer a hook.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

CARD_WIDTH_PX = 560  # an EHR sidebar
INDICATOR_COLOURS = {"info": "#1f6feb", "warning": "#d29922", "critical": "#cf222e"}


@lru_cache(maxsize=1)
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table")


def detail_html(markdown: str) -> str:
    """A card's detail as HTML, rendered the way the sandbox renders it."""
    return str(_markdown().render(markdown))


def markdown_text(markdown: str) -> str:
    """The text a reader sees of a markdown string (syntax and raw HTML stripped), one line per
    paragraph, list item or table row."""
    out: list[str] = []
    for token in _markdown().parse(markdown):
        if token.type == "inline":
            for child in token.children or ():
                if child.type in ("text", "code_inline"):
                    out.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    out.append("\n")
                elif child.type == "image":
                    out.append(child.content)
        elif token.type == "list_item_open":
            out.append("- ")
        elif token.type in ("th_open", "td_open") and out and not out[-1].endswith("\n"):
            out.append(" | ")
        elif token.type in ("paragraph_close", "tr_close", "heading_close", "code_block",
                            "fence"):
            out.append(token.content if token.type in ("code_block", "fence") else "")
            out.append("\n")
    lines = ("".join(out)).split("\n")
    return "\n".join(" ".join(line.split()) for line in lines if line.strip())


def visible_text(card: Mapping[str, Any]) -> str:
    """Summary and detail as a reader sees them (clinical-rules.md §11 counts these)."""
    detail = markdown_text(str(card.get("detail") or ""))
    return f"{card.get('summary', '')}\n{detail}".strip()


def visible_length(card: Mapping[str, Any]) -> int:
    """Visible characters of a card, whitespace runs counted as one."""
    return len(" ".join(visible_text(card).split()))


_STYLE = f"""
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 16px;
       background: #f6f8fa; color: #1f2328; }}
h1 {{ font-size: 16px; margin: 0 0 4px; }}
.meta {{ color: #59636e; font-size: 12px; margin: 0 0 12px; }}
.cards {{ width: {CARD_WIDTH_PX}px; }}
.card {{ background: #fff; border: 1px solid #d1d9e0; border-left: 6px solid; border-radius: 6px;
        padding: 10px 14px; margin: 0 0 12px; box-sizing: border-box; width: 100%;
        overflow-wrap: break-word; }}
.summary {{ font-weight: 600; margin: 0 0 6px; }}
.indicator {{ font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: #59636e; }}
.detail p, .detail ul {{ margin: 6px 0; }}
.detail ul {{ padding-left: 20px; }}
.detail table {{ border-collapse: collapse; font-size: 13px; }}
.detail td, .detail th {{ border: 1px solid #d1d9e0; padding: 2px 6px; text-align: left; }}
.source {{ font-size: 12px; color: #59636e; margin: 8px 0 0; }}
.suggestions {{ margin: 8px 0 0; display: flex; flex-wrap: wrap; gap: 6px; }}
.suggestion {{ border: 1px solid #1f6feb; color: #1f6feb; background: #fff; border-radius: 4px;
              padding: 3px 8px; font: inherit; font-size: 13px; text-align: left; }}
.suggestion.recommended {{ background: #1f6feb; color: #fff; }}
.links a {{ font-size: 13px; }}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def card_html(card: Mapping[str, Any]) -> str:
    """One card: indicator, summary, detail, source, suggestion buttons, links."""
    indicator = str(card.get("indicator", "info"))
    colour = INDICATOR_COLOURS.get(indicator, "#59636e")
    parts = [f'<section class="card" data-indicator="{html.escape(indicator)}" '
             f'data-kind="{html.escape(_kind(card))}" style="border-left-color:{colour}">',
             f'<div class="indicator">{html.escape(indicator)}</div>',
             f'<p class="summary">{html.escape(str(card.get("summary", "")))}</p>']
    if card.get("detail"):
        parts.append(f'<div class="detail">{detail_html(str(card["detail"]))}</div>')
    suggestions = card.get("suggestions") or ()
    if suggestions:
        parts.append('<div class="suggestions">' + "".join(
            f'<button class="suggestion{" recommended" if s.get("isRecommended") else ""}" '
            f'type="button">{html.escape(str(s.get("label", "")))}</button>'
            for s in suggestions) + "</div>")
    links = card.get("links") or ()
    if links:
        parts.append('<div class="links">' + " · ".join(
            f'<a href="#">{html.escape(str(link.get("label", "")))}</a>' for link in links)
            + "</div>")
    source = card.get("source") or {}
    if source.get("label"):
        parts.append(f'<p class="source">Source: {html.escape(str(source["label"]))}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _kind(card: Mapping[str, Any]) -> str:
    return str(((card.get("extension") or {}).get("tma-card") or {}).get("kind", ""))


def page(responses: Sequence[tuple[str, Mapping[str, Any]]], title: str) -> str:
    """One self-contained HTML page (no script, no outside request) with each response's cards
    under its heading."""
    body = []
    for heading, response in responses:
        cards = response.get("cards") or []
        body.append(f"<h1>{html.escape(heading)}</h1>")
        body.append(f'<p class="meta">{len(cards)} card(s)</p>')
        body.append('<div class="cards">' + "\n".join(card_html(c) for c in cards) + "</div>"
                    if cards else '<p class="meta">No cards: the service has nothing to say.</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
