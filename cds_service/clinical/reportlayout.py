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
    section = default
    out: list[Statement] = []
    chunk: list[str] = []
    chunk_section = section

    def flush() -> None:
        if chunk:
            _sentences(" ".join(chunk), chunk_section, out)
            chunk.clear()

    text = layout.inline_header.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    previous_open = False  # the previous line ended without punctuation (it may be wrapped)
    for raw in text.split("\n"):
        line = _SPACES.sub(" ", raw).strip()
        if not line:
            flush()
            previous_open = False
            continue
        header = layout.line_header.match(line)
        if header and _normal(header.group(1)) in layout.headers:
            flush()
            section = layout.headers[_normal(header.group(1))]
            line = header.group(2).strip()
            if not line:
                previous_open = False
                continue
        else:
            bullet = _BULLET.match(line)
            if bullet:
                flush()
                line = line[bullet.end():]
            elif not (previous_open and line[:1].islower()):
                flush()
        chunk_section = section
        chunk.append(line)
        previous_open = line[-1:] not in ".;:!?"
    flush()
    return out


def _sentences(chunk: str, section: str, out: list[Statement]) -> None:
    for item in _INLINE_ITEM.split(chunk):
        bullet = _BULLET.match(item)
        if bullet:
            item = item[bullet.end():]
        pending: list[str] = []
        has_word = False
        for part in _SENTENCE_END.split(item):
            pending.append(part)
            has_word = has_word or bool(_HAS_WORD.search(part))
            if part.lower().endswith(_ABBREVIATIONS) or not has_word:
                continue  # "vs." and "e.g." do not end a sentence; nor does a lone "?"
            out.append(Statement(section, " ".join(pending)))
            pending, has_word = [], False
        if pending:
            out.append(Statement(section, " ".join(pending)))
