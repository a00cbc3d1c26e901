"""Reading radiology report text: which findings a report states as present, negated or
uncertain (clinical-rules.md §2 "Imaging findings", item 3).

A ConText reader (Harkema et al. 2009; the successor of NegEx, Chapman et al. 2001). Its data is
``mappings/report-text.toml`` (cues, sections, diagnosis words) and the ``phrases`` of
``mappings/imaging-findings.toml``; ``mappings/README.md`` "Report text" documents the rules:

1. The text is cut into statements by :mod:`reportlayout` (sections, lines, bullets, numbered
   items, sentences). Statements outside findings-type sections (indication, history,
   comparison, technique, recommendation) are not read.
2. Each statement is tokenised (lower case, whole words, "?" a word, ``fillers`` dropped). Cues
   are found longest first; a cue overlapping a finding phrase is dropped; ``pseudo`` cues do
   nothing.
3. A finding is governed by the nearest forward cue before it and the nearest backward cue after
   it, each only when no scope breaker lies between (bidirectional cues count both ways). When
   both govern it, hypothetical ranks first, then uncertain, negated, historical.
   Hypothetical and historical mentions are not findings of this study and are dropped.
4. Per section, a present mention of a concept beats an uncertain one, which beats a negated
   one. The decisive section is the addendum if it mentions the concept, else the impression,
   else the findings ("the impression decides"); and when the decisive section negates one of the
   concept's diagnosis words ("No radiographic evidence of osteomyelitis") the report is negative
   for it, whatever sign it describes.
5. A marrow abnormality stated in any findings-type section, and a normal-marrow statement with an
   exception in its sentence ("normal except for ..."), cancel ``normal-marrow``.

No report text, sentence or token is ever logged; the results carry concept ids and categories.
"""

from __future__ import annotations

import re
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from .reportlayout import FINDING_KINDS, Layout, statement_texts

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|\?")
_RUN = re.compile(r"[a-z0-9]+")
# ASCII bytes -> lower case letters and digits kept, anything else a space: the runs of letters
# and digits of a text, lower case, in one C pass (``bytes.translate``, then ``split``).
_RUNS = bytes(c + 32 if 65 <= c <= 90 else c if (97 <= c <= 122 or 48 <= c <= 57) else 32
              for c in range(256))
NORMAL_MARROW = "normal-marrow"
CONFLUENT = "confluent-marrow-replacement"
_ABNORMAL = "\x00abnormal-marrow"  # internal concept id (never a mapping key)


class Mention(Enum):
    PRESENT = "present"
    UNCERTAIN = "uncertain"
    NEGATED = "negated"


# cue categories
NEG, UNC, HYP, HIST, PSEUDO, STOP, EXC = "neg", "unc", "hyp", "hist", "pseudo", "stop", "exc"
# combined when a forward and a backward cue both govern a finding: the first in this order wins
_RANK = {HYP: 0, UNC: 1, NEG: 2, HIST: 3}
_CUE_KINDS = {  # report-text.toml key -> (category, forward, backward)
    "negation": (NEG, True, False), "post_negation": (NEG, False, True),
    "uncertainty": (UNC, True, False), "post_uncertainty": (UNC, False, True),
    "bidirectional_uncertainty": (UNC, True, True),
    "hypothetical": (HYP, True, False), "post_hypothetical": (HYP, False, True),
    "historical": (HIST, True, False), "pseudo": (PSEUDO, False, False),
    "scope_breakers": (STOP, False, False), "exceptions": (EXC, False, False),
}
# A bidirectional cue ("X versus Y") joins neighbours: at most this many words between.
NEAR = 3
# A cue's scope reaches over at most this many other cues (keeps hostile text linear).
MAX_CUES = 16
_STRENGTH = {Mention.PRESENT: 3, Mention.UNCERTAIN: 2, Mention.NEGATED: 1}


@dataclass(frozen=True)
class Cue:
    category: str
    forward: bool
    backward: bool

    @property
    def bidirectional(self) -> bool:
        return self.forward and self.backward


Phrases = dict[str, tuple[tuple[tuple[str, ...], ...], ...]]
_T = TypeVar("_T")
PhraseTable = tuple[tuple[int, ...], dict[tuple[str, ...], _T]]
PhraseSet = tuple[tuple[int, ...], frozenset[tuple[str, ...]]]


def _by_length(phrases: Iterable[tuple[str, ...]]) -> tuple[int, ...]:
    return tuple(sorted({len(p) for p in phrases}, reverse=True))


@dataclass(frozen=True)
class Reader:
    """Compiled cue and phrase tables (built once per distinct mapping content)."""

    # Phrases by first word, as (their lengths, longest first; phrase -> what it is): a match at
    # a token is one dict look-up per length, not a comparison per phrase (speed, issue 17).
    cues: Mapping[str, PhraseTable[tuple[Cue, ...]]]  # phrase -> its cues (pseudo cues left out)
    targets: Mapping[str, PhraseTable[tuple[str, ...]]]  # phrase -> the concepts it names
    fillers: frozenset[str]
    diagnoses: Mapping[str, PhraseSet]  # concept -> (lengths, the phrases that name it)
    layout: Layout
    # A run of letters and digits of every finding phrase (ASCII), the longest (the longer, the
    # rarer in other text); None when a phrase has none, being "?" only (the pre-filter of
    # :meth:`statement_tokens` is then off).
    target_runs: frozenset[bytes] | None = None

    @classmethod
    def from_mappings(cls, mappings: Any) -> Reader:
        """The reader for a :class:`~cds_service.mappings.MappingTable` (cached per table)."""
        cached = _READERS.get(mappings)
        if cached is None:
            text = mappings.text
            phrases = {cid: c.phrases for cid, c in mappings.concepts.items() if c.phrases}
            cached = _READERS[mappings] = cls.build(text.cues, phrases, text.sections,
                                                    text.diagnoses)
        return cached

    @classmethod
    def build(cls, cues: Mapping[str, Iterable[str]], phrases: Mapping[str, Iterable[str]],
              sections: Mapping[str, Iterable[str]] | None = None,
              diagnoses: Mapping[str, Iterable[str]] | None = None) -> Reader:
        fillers = frozenset(w for f in cues.get("fillers", ()) for w in _WORD.findall(f.lower()))

        def words(text: str) -> tuple[str, ...]:
            return tuple(w for w in _WORD.findall(text.lower()) if w not in fillers)

        by_phrase: dict[tuple[str, ...], set[Cue]] = {}
        for key, (category, forward, backward) in _CUE_KINDS.items():
            for item in cues.get(key, ()):
                phrase = words(item)
                if phrase:
                    by_phrase.setdefault(phrase, set()).add(Cue(category, forward, backward))
        cue_index: dict[str, dict[tuple[str, ...], tuple[Cue, ...]]] = {}
        for phrase, kinds in by_phrase.items():
            ordered = tuple(sorted(kinds, key=lambda c: (c.category, c.forward, c.backward)))
            # a pseudo cue does nothing but keep its words from being read as another cue
            cue_index.setdefault(phrase[0], {})[phrase] = tuple(
                c for c in ordered if c.category != PSEUDO)
        targets: dict[str, dict[tuple[str, ...], list[str]]] = {}
        concept_phrases = dict(phrases)
        concept_phrases[_ABNORMAL] = list(cues.get("abnormal_marrow", ()))
        for cid, items in concept_phrases.items():
            for item in items:
                phrase = words(item)
                if phrase:
                    named = targets.setdefault(phrase[0], {}).setdefault(phrase, [])
                    if cid not in named:
                        named.append(cid)
        named_by = {cid: frozenset(words(w) for w in ws) for cid, ws in (diagnoses or {}).items()}
        runs = [max(_RUN.findall(" ".join(phrase)), key=len, default=None)
                for table in targets.values() for phrase in table]
        return cls({k: (_by_length(v), v) for k, v in cue_index.items()},
                   {k: (_by_length(v), {p: tuple(c) for p, c in v.items()})
                    for k, v in targets.items()},
                   fillers, {cid: (_by_length(ws), ws) for cid, ws in named_by.items()},
                   Layout.build(sections or {}),
                   None if None in runs else frozenset(r.encode() for r in runs if r))

    # ------------------------------------------------------------------ one sentence
    def tokens(self, sentence: str) -> list[str]:
        fillers = self.fillers
        return [w for w in _WORD.findall(sentence.lower()) if w not in fillers]

    def statement_tokens(self, statement: str) -> list[str] | None:
        """:meth:`tokens`, or None for a statement that cannot name a finding.

        Speed (issue 17): most statements name no finding, and tokenising costs more than the
        rest of their reading. The words of a finding phrase are tokens of the statement that
        names it, so every run of letters and digits in them is a whole run of the statement
        (tokens begin and end next to other characters, and inside them runs are parted by
        ``-`` or ``'``): a set test of an ASCII statement's runs (one C pass) against
        ``target_runs`` rules out the others. Without ``-``, ``'`` and ``?`` the tokens are
        those runs (see ``_WORD``).

        The same holds for a whole ASCII text (:meth:`read`): cutting it into statements
        drops or replaces only whitespace, punctuation, bullets and headers, so a statement's
        runs are runs of the text."""
        if not statement.isascii():
            return self.tokens(statement)
        runs = statement.encode("ascii").translate(_RUNS).split()
        if self.target_runs is not None and self.target_runs.isdisjoint(runs):
            return None
        if "-" in statement or "'" in statement or "?" in statement:
            return self.tokens(statement)
        fillers = self.fillers
        return [w for w in map(bytes.decode, runs) if w not in fillers]

    def read_tokens(self, tokens: Sequence[str],
                    targets: Sequence[tuple[int, int, str]]) -> list[tuple[str, str | None, int]]:
        """For each target span ``(start, end, concept)``: ``(concept, category, start)``, the
        category being None (affirmed), neg, unc, hyp or hist."""
        cues = self._cues_in(tokens, targets)
        if not cues:  # every finding affirmed
            return [(cid, None, start) for start, _end, cid in targets]
        starts = [c[0] for c in cues]
        out = []
        for start, end, cid in targets:
            before = after = hypothetical = None
            first = bisect_left(starts, start)  # cues[:first] lie before the target
            for k in range(first - 1, max(-1, first - 1 - MAX_CUES), -1):
                _pos, stop, cue = cues[k]
                if cue.category == STOP:
                    break
                if not cue.forward or (cue.bidirectional and start - stop > NEAR):
                    continue
                if before is None:
                    before = cue.category  # the nearest one governs ...
                if cue.category == HYP:
                    hypothetical = HYP  # ... but a question or condition covers its clause
                    break
            first = bisect_left(starts, end)  # the nearest backward cue after the target
            for k in range(first, min(len(cues), first + MAX_CUES)):
                pos, _stop, cue = cues[k]
                if cue.category == STOP:
                    break
                if cue.backward and not (cue.bidirectional and pos - end > NEAR):
                    after = cue.category
                    break
            found = [c for c in (before, after, hypothetical) if c in _RANK]
            out.append((cid, min(found, key=_RANK.__getitem__) if found else None, start))
        return out

    def _cues_in(self, tokens: Sequence[str], targets: Sequence[tuple[int, int, str]],
                 ) -> list[tuple[int, int, Cue]]:
        found: list[tuple[int, int, Cue]] = []  # in order of position (found left to right)
        index = self.cues
        if index.keys().isdisjoint(tokens):
            return found  # no word of the statement opens a cue (most often so)
        covered = set()
        for start, end, _ in targets:
            covered.update(range(start, end))
        n = len(tokens)
        free = 0  # the first token not inside a cue found
        for i, word in enumerate(tokens):
            if i < free:
                continue
            table = index.get(word)
            if table is None or i in covered:  # a cue overlapping a finding is dropped
                continue
            sizes, phrases = table
            for size in sizes:  # the longest cue here that overlaps no finding
                end = i + size
                if end > n:
                    continue  # (a slice cut short by the end could be a shorter cue)
                kinds = phrases.get(tuple(tokens[i:end]))
                if kinds is not None and covered.isdisjoint(range(i, end)):
                    for cue in kinds:
                        found.append((i, end, cue))
                    free = end
                    break
        return found

    def find_targets(self, tokens: Sequence[str]) -> list[tuple[int, int, str]]:
        """Finding phrases in ``tokens``: ``(start, end, concept)``, longest phrase per start."""
        out = []
        index = self.targets
        n = len(tokens)
        for i, word in enumerate(tokens):
            table = index.get(word)
            if table is None:
                continue
            sizes, phrases = table
            seen = set()
            for size in sizes:
                if i + size > n:
                    continue  # (a slice cut short by the end could be a shorter phrase)
                for cid in phrases.get(tuple(tokens[i:i + size]), ()):
                    if cid not in seen:
                        out.append((i, i + size, cid))
                        seen.add(cid)
        return out

    def read_sentence(self, sentence: str) -> dict[str, Mention]:
        """The mentions of one sentence (no sections), strongest per concept."""
        found: dict[str, Mention] = {}
        tokens = self.tokens(sentence)
        for cid, category, _ in self.read_tokens(tokens, self.find_targets(tokens)):
            mention = _MENTION.get(category)
            if mention is not None and _STRENGTH[mention] > _STRENGTH.get(found.get(cid), 0):
                found[cid] = mention
        found.pop(_ABNORMAL, None)
        return found

    # ------------------------------------------------------------------ a whole report
    def read_report(self, texts: Iterable[tuple[str, str]]) -> dict[str, Mention]:
        """Read a report's texts, each ``(default section, text)``; per concept its reading."""
        return self.read(texts).mentions

    def read(self, texts: Iterable[tuple[str, str]]) -> Reading:
        """Like :meth:`read_report`, with the statement that decided each concept."""
        by_section: dict[str, dict[str, tuple[Mention, str]]] = {}
        diagnosis: dict[str, dict[str, tuple[Mention, str]]] = {}  # section -> strongest named
        abnormal: str | None = None  # a statement that states a marrow abnormality
        target_runs = self.target_runs
        for default, text in texts:
            if target_runs is not None and text.isascii() and target_runs.isdisjoint(
                    text.encode("ascii").translate(_RUNS).split()):
                continue  # no statement of it can name a finding (see statement_tokens)
            for section, said in statement_texts(text, self.layout, default, FINDING_KINDS):
                tokens = self.statement_tokens(said)
                if tokens is None:
                    continue
                targets = self.find_targets(tokens)
                if not targets:
                    continue
                level = by_section.setdefault(section, {})
                exception = None
                for cid, category, start in self.read_tokens(tokens, targets):
                    mention = _MENTION.get(category)
                    if mention is None:
                        continue
                    reading = (mention, said)
                    if cid == _ABNORMAL:
                        if mention is not Mention.NEGATED:
                            abnormal = abnormal or said
                        continue
                    if cid == NORMAL_MARROW and mention is Mention.PRESENT:
                        if exception is None:
                            exception = self._has_exception(tokens)
                        if exception:
                            abnormal = abnormal or said
                    if cid == CONFLUENT and mention is not Mention.NEGATED:
                        abnormal = abnormal or said
                    if self._is_diagnosis(cid, tokens, start):
                        _keep_stronger(diagnosis.setdefault(section, {}), cid, reading)
                    _keep_stronger(level, cid, reading)
        if not by_section:
            return Reading({}, {})  # no finding named (then no diagnosis or abnormality)
        result: dict[str, tuple[Mention, str]] = {}
        for section in ("findings", "impression", "addendum"):  # later sections decide
            result.update(by_section.get(section, {}))
            if section == "findings":
                continue
            for cid, named in diagnosis.get(section, {}).items():
                if named[0] is Mention.NEGATED:  # the diagnosis itself is ruled out here
                    result[cid] = named
        if abnormal and result.get(NORMAL_MARROW, (None,))[0] is Mention.PRESENT:
            result[NORMAL_MARROW] = (Mention.NEGATED, abnormal)
        return Reading({cid: m for cid, (m, _) in result.items()},
                       {cid: " ".join(t.split()) for cid, (_, t) in result.items()})

    def _has_exception(self, tokens: Sequence[str]) -> bool:
        return any(cue.category == EXC for _, _, cue in self._cues_in(tokens, ()))

    def _is_diagnosis(self, cid: str, tokens: Sequence[str], start: int) -> bool:
        named = self.diagnoses.get(cid)
        if named is None:
            return False
        sizes, words = named
        for size in sizes:
            # (a slice cut short by the end is a shorter phrase: if named, it is a match too)
            if tuple(tokens[start:start + size]) in words:
                return True
        return False


@dataclass(frozen=True)
class Reading:
    """A report's reading: per concept the mention, and the statement that decided it (report
    text: for display where text is shown escaped, never for logs)."""

    mentions: dict[str, Mention]
    evidence: dict[str, str]


def _keep_stronger(table: dict[str, tuple[Mention, str]], cid: str,
                   said: tuple[Mention, str]) -> None:
    old = table.get(cid)
    if old is None or _STRENGTH[said[0]] > _STRENGTH[old[0]]:
        table[cid] = said


_READERS: weakref.WeakKeyDictionary[Any, Reader] = weakref.WeakKeyDictionary()
_MENTION = {None: Mention.PRESENT, UNC: Mention.UNCERTAIN, NEG: Mention.NEGATED}

