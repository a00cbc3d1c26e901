"""Reading radiology report text: which finding phrases are present, negated or uncertain.

A NegEx-style reader (Chapman et al. 2001) kept deliberately small. The phrase lists live in the
mappings (``mappings/imaging-findings.toml`` for findings, ``mappings/report-text.toml`` for cues):

- a finding phrase is **negated** when a negation cue precedes it, or a post-negation cue follows
  it, within the same sentence, at most ``WINDOW`` words away, with no scope breaker between
  ("no periosteal reaction", "without evidence of osteomyelitis", "negative for", "has resolved");
- it is **uncertain** when an uncertainty cue is that close ("cannot exclude", "possible",
  "equivocal"): the rulebook treats it as present, and cards say "reported as possible";
- uncertainty cues look backwards only ("possible osteomyelitis"), except passive ones that
  follow the finding ("osteomyelitis cannot be excluded", "... not ruled out");
- uncertainty wins over negation ("osteomyelitis cannot be excluded" is uncertain, not negated).

Per concept, one positive mention beats uncertain mentions, which beat negated ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

WINDOW = 6
# Sentences end at . ; : ! ? or a blank line; a single line break (wrapped text) does not.
_SENTENCES = re.compile(r"(?<=[.;:!?])\s+|\n\s*\n")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


class Mention(Enum):
    PRESENT = "present"
    UNCERTAIN = "uncertain"
    NEGATED = "negated"


@dataclass(frozen=True)
class CuePhrases:
    negation: tuple[tuple[str, ...], ...]
    post_negation: tuple[tuple[str, ...], ...]
    uncertainty: tuple[tuple[str, ...], ...]
    post_uncertainty: tuple[tuple[str, ...], ...]
    breakers: frozenset[str]

    @classmethod
    def build(cls, negation: Iterable[str], post_negation: Iterable[str],
              uncertainty: Iterable[str], breakers: Iterable[str]) -> CuePhrases:
        # Built once per distinct cue lists (every request passes the same mappings).
        return _build_cues(tuple(negation), tuple(post_negation), tuple(uncertainty),
                           tuple(breakers))


@lru_cache(maxsize=16)
def _build_cues(negation: tuple[str, ...], post_negation: tuple[str, ...],
                uncertainty: tuple[str, ...], breakers: tuple[str, ...]) -> CuePhrases:
    def words(items: Iterable[str]) -> tuple[tuple[str, ...], ...]:
        return tuple(sorted({tuple(_WORD.findall(i.lower())) for i in items if _WORD.findall(
            i.lower())}, key=len, reverse=True))

    uncertain = list(uncertainty)
    passive = [c for c in uncertain if "excluded" in c or "ruled out" in c]
    return CuePhrases(words(negation), words(post_negation),
                      words(c for c in uncertain if c not in passive), words(passive),
                      frozenset(b.strip().lower() for b in breakers))


def _find(tokens: list[str], phrase: tuple[str, ...]) -> list[int]:
    """Start positions of ``phrase`` in ``tokens``, in order (``list.index`` finds candidates)."""
    n = len(phrase)
    last = len(tokens) - n  # the last position a match may start at
    if n == 0:
        return list(range(last + 1))
    first = phrase[0]
    found = []
    i = -1
    while True:
        try:
            i = tokens.index(first, i + 1, last + 1)
        except ValueError:
            return found
        if n == 1 or tuple(tokens[i:i + n]) == phrase:
            found.append(i)


def _cue_before(tokens: list[str], start: int, cues: tuple[tuple[str, ...], ...],
                breakers: frozenset[str]) -> bool:
    lo = max(0, start - WINDOW - 3)
    window = tokens[lo:start]
    present = set(window)
    for cue in cues:
        if cue[0] not in present:  # cannot occur in the window
            continue
        for pos in _find(window, cue):
            cue_end = lo + pos + len(cue)
            between = tokens[cue_end:start]
            if len(between) <= WINDOW and not breakers.intersection(between):
                return True
    return False


def _cue_after(tokens: list[str], end: int, cues: tuple[tuple[str, ...], ...],
               breakers: frozenset[str]) -> bool:
    hi = min(len(tokens), end + WINDOW + 3)
    window = tokens[end:hi]
    present = set(window)
    for cue in cues:
        if cue[0] not in present:  # cannot occur in the window
            continue
        for pos in _find(window, cue):
            between = tokens[end:end + pos]
            if len(between) <= WINDOW and not breakers.intersection(between):
                return True
    return False


def _tokens(sentence: str) -> list[str]:
    # Keep "but", "however" etc. as tokens; punctuation inside a sentence (commas) is dropped.
    return _WORD.findall(sentence.lower())


def read_mentions(text: str, phrases: dict[str, list[str]], cues: CuePhrases) -> dict[str, Mention]:
    """Return, per concept id, how the text mentions it (concepts not mentioned are absent).

    Examples (with the project's cue lists):
    - "Periosteal reaction at the 2nd metatarsal stump." -> om-imaging-pattern PRESENT
    - "No periosteal reaction." -> om-imaging-pattern NEGATED
    - "Osteomyelitis cannot be excluded." -> om-imaging-pattern UNCERTAIN
    """
    found: dict[str, Mention] = {}
    rank = {Mention.PRESENT: 3, Mention.UNCERTAIN: 2, Mention.NEGATED: 1}
    compiled = _compile(tuple((cid, tuple(ps)) for cid, ps in phrases.items()))
    for sentence in _SENTENCES.split(text):
        tokens = _tokens(sentence)
        if not tokens:
            continue
        present = set(tokens)
        for concept_id, concept_phrases in compiled:
            for phrase in concept_phrases:
                if phrase[0] not in present:  # cannot occur in this sentence
                    continue
                for start in _find(tokens, phrase):
                    end = start + len(phrase)
                    if (_cue_before(tokens, start, cues.uncertainty, cues.breakers)
                            or _cue_after(tokens, end, cues.post_uncertainty, cues.breakers)):
                        mention = Mention.UNCERTAIN
                    elif (_cue_before(tokens, start, cues.negation, cues.breakers)
                          or _cue_after(tokens, end, cues.post_negation, cues.breakers)):
                        mention = Mention.NEGATED
                    else:
                        mention = Mention.PRESENT
                    if rank[mention] > rank.get(found.get(concept_id), 0):  # type: ignore[arg-type]
                        found[concept_id] = mention
    return found


@lru_cache(maxsize=16)
def _compile(phrases: tuple[tuple[str, tuple[str, ...]], ...],
             ) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    """Finding phrases as word tuples, per concept (once per distinct phrase lists)."""
    return tuple((cid, tuple(tuple(_WORD.findall(p)) for p in ps if _WORD.findall(p)))
                 for cid, ps in phrases)
