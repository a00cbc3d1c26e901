"""Report layout: sections and statements (clinical-rules.md §2 "Imaging findings", "Sections"
and "Layout").

Plain report text becomes a list of :class:`Statement` s, each a sentence or list item with the
kind of section it stands in. The header words per section kind come from
``mappings/report-text.toml`` ``[sections]``.

- **Sections.** A header is a known header word at the start of a line, or after a full stop,
  followed by ``:`` or `` - `` ("IMPRESSION: ...", "Reason for exam: ...", "FINDINGS - ..."), or
  a line that holds only the header ("IMPRESSION"). Text before the first header is read as the
  default section (``findings`` for a report's text, ``impression`` for its ``conclusion``).
- **Statements** end at ``.`` ``;`` ``!`` ``?`` followed by a space (not after "vs." or "e.g."),
  at a line break, at a bullet (``-`` ``*`` ``•``) and at a numbered item ("1." "2)" "(3)"),
  also when the numbered items run on one line. A line that does not end in punctuation and is
  followed by a line starting in lower case is a wrapped line: the two are one statement.
- **Templated lines** ("Marrow: normal", "Phase 2 (blood pool): increased activity",
  "Osteomyelitis: none") are one statement: a colon after a word that is not a header does not
  end anything.

Nothing here logs: report text is patient data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

# Section kinds that state findings of this study; the others (indication, history, comparison,
# technique, recommendation) do not.
FINDING_KINDS = frozenset({"findings", "impression", "addendum"})

_BULLET = re.compile(r"^\s*(?:[-*•·▪◦–—]|\(?\d{1,2}[.)]|\(\d{1,2}\)|[a-h]\))\s+")
_INLINE_ITEM = re.compile(r"(?<=\S)\s+(?=(?:\d{1,2}[.)]|\(\d{1,2}\))\s+[A-Za-z])")
_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+")
_ABBREVIATIONS = ("vs.", "e.g.", "i.e.", "approx.", "dr.", "cf.", "incl.", "fig.")
_HAS_WORD = re.compile(r"\w")
_SPACES = re.compile(r"[ \t\u00a0\u2009\u200b]+")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")

# Speed (issue 17): the regular expression engine costs 100-300 machine instructions per
# character it scans, str methods (find, replace, split, in) a few. Most report lines are
# *plain*: printable ASCII, whose only whitespace, once runs of spaces are collapsed, is single
# spaces. On plain lines and chunks the scans below that cannot match are skipped, and sentences
# are cut with str.replace. Every shortcut gives what the pattern would:
# tests/test_report_shortcuts.py holds them to that on generated text.


@dataclass(frozen=True)
class Statement:
    section: str  # a section kind: findings, impression, addendum, indication, ...
    text: str


@dataclass(frozen=True)
class Layout:
    """Compiled header look-up: normalised header words -> section kind."""

    headers: Mapping[str, str]
    line_header: re.Pattern[str]
    inline_header: re.Pattern[str]

    @classmethod
    def build(cls, sections: Mapping[str, Iterable[str]]) -> Layout:
        return _build(tuple((kind, tuple(words)) for kind, words in sorted(sections.items())))


@lru_cache(maxsize=8)
def _build(sections: tuple[tuple[str, tuple[str, ...]], ...]) -> Layout:
    headers: dict[str, str] = {}
    for kind, words in sections:
        for word in words:
            headers[_normal(word)] = kind
    alternatives = "|".join(re.escape(h).replace(r"\ ", r"\s+")
                            for h in sorted(headers, key=len, reverse=True))
    line_header = re.compile(rf"^\s*({alternatives})\s*(?::|\s[-–—](?=\s)|$)\s*(.*)$",
                             re.IGNORECASE | re.DOTALL)
    inline_header = re.compile(rf"(?<=[.;!?])\s+(?=(?:{alternatives})\s*:)", re.IGNORECASE)
    return Layout(headers, line_header, inline_header)


def _normal(header: str) -> str:
    return " ".join(header.lower().split())


def statements(text: str, layout: Layout, default: str = "findings") -> list[Statement]:
    """The statements of ``text`` with their section kinds, in order."""
    return [Statement(section, said) for section, said in statement_texts(text, layout, default)]


def statement_texts(text: str, layout: Layout, default: str = "findings",
                    kinds: frozenset[str] | None = None) -> list[tuple[str, str]]:
    """Like :func:`statements`, as ``(section kind, text)`` pairs; with ``kinds``, only the
    statements of those section kinds (the others are not even cut into sentences)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if ":" in text:  # an inline header is always followed by a colon
        text = layout.inline_header.sub("\n", text)
    # Runs of spaces never span a line break, so one pass over the text does every line; on ASCII
    # text without a tab or two spaces in a row it would change nothing.
    if not text.isascii() or "  " in text or "\t" in text:
        text = _SPACES.sub(" ", text)
    section = default
    chunks: list[tuple[str, list[str]]] = []  # (section kind, lines), in order
    lines: list[str] | None = None  # the lines of the open chunk (None: a line opens one)
    previous_open = False  # the previous line ended without punctuation (it may be wrapped)
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            lines = None
            previous_open = False
            continue
        # A plain line opens with a header only if it holds a colon or " - " after the header,
        # or is nothing but the header.
        plain = line.isascii() and line.isprintable()
        header = layout.line_header.match(line) if (
            not plain or ":" in line or " - " in line or line.lower() in layout.headers) else None
        if header and _normal(header.group(1)) in layout.headers:
            lines = None
            section = layout.headers[_normal(header.group(1))]
            line = header.group(2).strip()
            if not line:
                previous_open = False
                continue
        else:
            bullet = _BULLET.match(line)
            if bullet:
                lines = None
                line = line[bullet.end():]
            elif not (previous_open and line[:1].islower()):
                lines = None
        if lines is None:
            lines = []
            chunks.append((section, lines))
        lines.append(line)
        previous_open = line[-1:] not in ".;:!?"
    out: list[tuple[str, str]] = []
    for chunk_section, chunk in chunks:
        if kinds is None or chunk_section in kinds:
            joined = " ".join(chunk)
            _sentences(joined, chunk_section, out, joined.isascii() and joined.isprintable())
    return out


def _sentences(chunk: str, section: str, out: list[tuple[str, str]], plain: bool = False,
               ) -> None:
    """Cut a chunk (lines joined by single spaces) into statements; ``plain``: the chunk is
    printable ASCII (its only whitespace single spaces)."""
    items = _INLINE_ITEM.split(chunk) if not plain or _may_number_items(chunk) else (chunk,)
    for item in items:
        bullet = _BULLET.match(item)
        if bullet:
            item = item[bullet.end():]
        pending: list[str] = []  # parts of a sentence not ended yet
        has_word = False
        for part in _plain_sentences(item) if plain else _SENTENCE_END.split(item):
            # (a letter or digit first is a word: the search is for the rest)
            has_word = has_word or part[:1].isalnum() or _HAS_WORD.search(part) is not None
            if not has_word or (part[-1:] == "." and part.lower().endswith(_ABBREVIATIONS)):
                pending.append(part)  # "vs." and "e.g." do not end a sentence; nor a lone "?"
                continue
            if pending:
                pending.append(part)
                out.append((section, " ".join(pending)))
                pending = []
            else:
                out.append((section, part))
            has_word = False
        if pending:
            out.append((section, " ".join(pending)))


def _may_number_items(chunk: str) -> bool:
    """False when a plain chunk holds no numbered item for :data:`_INLINE_ITEM` to cut at (one
    needs a digit, then ``.`` or ``)``, then a space)."""
    digits = chunk.encode("ascii").translate(_DIGITS_AS_ZERO)
    return b"0. " in digits or b"0) " in digits


def _plain_sentences(item: str) -> list[str]:
    """``_SENTENCE_END.split(item)`` for plain text: there every sentence end is ``. `` ``; ``
    ``! `` or ``? `` with a single space, and no line break is left to mark the cuts with."""
    return item.replace(". ", ".\n").replace("; ", ";\n").replace("! ", "!\n").replace(
        "? ", "?\n").split("\n")
