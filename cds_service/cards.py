"""The one place that builds CDS Hooks cards and suggestions (cds-hooks-2.0.md §4).

Every card gets a uuid, a summary under 140 characters, a ``source``; ``selectionBehavior`` is
set whenever there are suggestions; optional fields are omitted rather than empty. Each card also
carries ``extension["tma-card"]`` (its kind and rule ids) so feedback can be joined to it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .clinical.sources import GUIDELINE_URL


class _UuidSource:
    """Random (version 4) UUIDs from the OS's random source, 256 per ``os.urandom`` call.

    ``uuid.uuid4()`` makes one system call per UUID; a response has about ten, and under load
    every call releases and re-takes the interpreter lock (make bench: a quarter of the worker
    threads' samples sat in ``uuid4``). Same randomness, fewer calls; the batch is formatted at
    once (:func:`_format`: ``str(uuid.UUID(bytes=..., version=4))`` for each 16 bytes, without
    building a UUID object each).
    """

    BATCH = 256

    def __init__(self) -> None:
        self._forget()
        if hasattr(os, "register_at_fork"):  # never share a batch with a forked child
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool: list[str] = []

    def __call__(self) -> str:
        try:
            return self._pool.pop()  # one atomic list operation (no lock needed to take one)
        except IndexError:
            with self._lock:
                if not self._pool:
                    self._pool = _format(os.urandom(16 * self.BATCH))
            return self()


# The variant nibble of a version 4 UUID (RFC 9562: bits 10xx) for each random hex digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _format(raw: bytes) -> list[str]:
    """Each 16 bytes of ``raw`` as ``str(uuid.UUID(bytes=chunk, version=4))`` does: the version
    nibble set to 4, the variant bits to 10, in 8-4-4-4-12 hex digits."""
    digits = raw.hex()
    return [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
            for h in (digits[i:i + 32] for i in range(0, len(digits), 32))]


new_uuid = _UuidSource()

SOURCE_LABEL = "TMA bone assessment: osteomyelitis vs heterotopic ossification"
OVERRIDE_SYSTEM = "http://tma-cds.invalid/fhir/CodeSystem/override-reason"
SUMMARY_MAX = 139
INDICATOR_RANK = {"info": 0, "warning": 1, "critical": 2}


# Action and Suggestion are plain dataclasses: a frozen one's __init__ sets each field through
# object.__setattr__, which made building the ten or so of a response cost ~8 K instructions each
# (3-4x a plain one). Nothing changes them once built.


@dataclass
class Action:
    type: str  # create | update | delete
    description: str
    resource: dict[str, Any] | None = None
    resource_id: str | None = None  # Type/id for delete

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.resource is not None:
            out["resource"] = self.resource
        if self.resource_id is not None:
            out["resourceId"] = self.resource_id
        return out


@dataclass
class Suggestion:
    label: str
    actions: tuple[Action, ...]
    recommended: bool | None = None
    rule: str | None = None  # rule id this suggestion comes from (T-MRI, ...)
    codes: tuple[str, ...] = ()  # system|code of what it orders (for tests and feedback)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label[:80], "uuid": new_uuid(),
                               "actions": [a.render() for a in self.actions]}
        if self.recommended is not None:
            out["isRecommended"] = self.recommended
        return out


@dataclass
class CardSpec:
    """What a card says, before it is rendered as CDS Hooks JSON."""

    summary: str
    indicator: str
    detail: str
    kind: str
    rules: list[str]
    suggestions: list[Suggestion] = field(default_factory=list)
    selection: str = "any"
    override_reasons: Sequence[tuple[str, str]] = ()  # (code, display)
    assessment: dict[str, Any] | None = None
    links: Sequence[tuple[str, str, str]] = ()  # (label, absolute url, type "absolute"|"smart")


# Runs of white space other than the no-break space that keeps "15 Nov" on one line.
_SPACES = re.compile(r"[^\S\u00a0]+")


def one_line(text: str) -> str:
    """White space runs as one space, ends trimmed; no-break spaces kept (dates never wrap)."""
    if text.isprintable() and "  " not in text:  # the only printable white space is " "
        return text.strip(" ")
    return _SPACES.sub(" ", text).strip(" ")


def shorten(text: str, limit: int = SUMMARY_MAX) -> str:
    """Cut ``text`` to fewer than 140 characters at a word boundary (spec: summary < 140)."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def render(spec: CardSpec) -> dict[str, Any]:
    """Render a card; fields without a value are omitted (spec: no null, "", [] or {})."""
    card: dict[str, Any] = {
        "uuid": new_uuid(),
        "summary": shorten(spec.summary),
        "indicator": spec.indicator,
        "source": {"label": SOURCE_LABEL, "url": GUIDELINE_URL},
    }
    detail = spec.detail.strip()
    if detail:
        card["detail"] = detail
    if spec.suggestions:
        card["suggestions"] = [s.render() for s in spec.suggestions]
        card["selectionBehavior"] = spec.selection
    if spec.links:
        card["links"] = [{"label": label, "url": url, "type": kind}
                         for label, url, kind in spec.links]
    if spec.override_reasons:
        card["overrideReasons"] = [{"code": c, "system": OVERRIDE_SYSTEM, "display": d}
                                   for c, d in spec.override_reasons]
    marker: dict[str, Any] = {"kind": spec.kind}
    if spec.rules:
        marker["rules"] = list(spec.rules)
    extension: dict[str, Any] = {"tma-card": marker}
    if spec.assessment is not None:
        extension["tma-bone-assessment"] = spec.assessment
    card["extension"] = extension
    return card


# Every ASCII punctuation character may be backslash-escaped in CommonMark (spec §2.4), and an
# escaped character is always literal text: never emphasis, a link, an image, an HTML tag, an
# entity, a table cell (GFM) or the start of a block.
_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_MD_ESCAPES = {code: "\\" + chr(code) for code in range(128) if _MD_PUNCTUATION.match(chr(code))}
RECORD_TEXT_MAX = 120  # characters of one piece of record text shown on a card


def plain(text: object, limit: int = RECORD_TEXT_MAX) -> str:
    """Record text for a plain-text field (summary, label): one line, printable (and no-break
    spaces), bounded."""
    raw = str(text)
    cleaned = one_line(raw if raw.isprintable() else
                       "".join(ch if ch.isprintable() or ch == "\u00a0" else " " for ch in raw))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


def md(text: object, limit: int = RECORD_TEXT_MAX) -> str:
    """Record text as markdown *data* (clinical-rules.md §11): the one escaping function used
    wherever text from a FHIR resource, a draft order or a site mapping enters a card's detail.

    Line breaks and control characters become spaces (no block can start), and every ASCII
    punctuation character is backslash-escaped, so ``<img src=x onerror=...>``,
    ``[x](javascript:...)``, ``|`` or ``**`` show as the characters they are.
    """
    return plain(text, limit).translate(_MD_ESCAPES)  # _MD_PUNCTUATION, each one escaped


def render_response(specs: Sequence[CardSpec], disclaimer: str) -> list[dict[str, Any]]:
    """Render a response's cards; the decision-support statement ends the first card's detail,
    once per response (clinical-rules.md §11)."""
    cards = [render(spec) for spec in specs]
    if cards:
        first = cards[0]
        first["detail"] = (first["detail"] + "\n\n" + disclaimer) if first.get("detail") \
            else disclaimer
    return cards
