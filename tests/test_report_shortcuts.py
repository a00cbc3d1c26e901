"""The report reader's shortcuts (speed, issue 17) give what the full path gives.

``reportlayout`` skips scans that cannot match and cuts sentences with str methods on *plain*
text (printable ASCII, single spaces); ``reporttext`` rules out texts and statements without a
finding phrase with a set test on their runs of letters and digits, and takes those runs as the
tokens when no ``-``, ``'`` or ``?`` can join or add one. Each is held here to the full path on
generated text built from the reader's own vocabulary (cues, finding phrases, headers,
fillers), layout marks, odd whitespace and non-ASCII letters."""

from __future__ import annotations

import dataclasses
import random

from cds_service.clinical import reportlayout
from cds_service.clinical.reportlayout import FINDING_KINDS, statement_texts, statements
from cds_service.clinical.reporttext import _RUNS, _WORD, Reader
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings

READER = Reader.from_mappings(load_mappings(DEFAULT_MAPPINGS_DIR))
SECTIONS = ("findings", "impression", "addendum", "indication")


def _vocabulary() -> list[str]:
    words = {" ".join(phrase) for table in (*READER.cues.values(), *READER.targets.values())
             for phrase in table[1]}
    words |= set(READER.fillers) | set(READER.layout.headers)
    words |= {h.upper() + ":" for h in READER.layout.headers} | {"FINDINGS -", "Impression"}
    words |= {"foot", "the", "of", "stump", "x-ray", "'osteomyelitis'", "-", "*", "?", "vs.",
              "e.g.", "approx.", "Dr.", "1.", "2)", "(3)", "12.", "a)", "Marrow: normal"}
    return sorted(words)


VOCABULARY = _vocabulary()
SEPARATORS = (" ", " ", " ", "", "\n", "\r\n", "\n\n", ". ", ", ", "; ", "? ", "! ", ") ", ": ",
              " - ", "1. ", "  ", "\t")
ODD = ("\x0b", "\x1c", "\u00a0", "\u2009", "\u3000", "é", "K", "•")


OTHER = ("the", "of", "foot", "stump", "left", "at", "seen", "views", "ap", "lateral", "x")


def _texts(count: int, seed: int, odd: bool, sparse: float = 0.0) -> list[str]:
    """Generated texts; ``sparse``: the share of words that are neither cue nor phrase."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 40)):
            word = rng.choice(OTHER if rng.random() < sparse else VOCABULARY)
            parts.append(rng.choice((word, word, word.upper(), word.capitalize())))
            parts.append(rng.choice(SEPARATORS))
            if odd and rng.random() < 0.05:
                parts.append(rng.choice(ODD))
        out.append("".join(parts))
    return out


def test_plain_text_is_cut_as_the_patterns_cut_it():
    for text in _texts(1500, 1, odd=False):
        assert text.isascii()  # plain: the shortcuts are taken
        # A last line of U+3000 (an ideographic space: not ASCII, stripped away) sends the text
        # through the patterns without adding a statement.
        via_patterns = text + "\n\u3000"
        for section in SECTIONS:
            assert statement_texts(text, READER.layout, section) == statement_texts(
                via_patterns, READER.layout, section), text
        assert statement_texts(text, READER.layout, "findings", FINDING_KINDS) == [
            s for s in statement_texts(via_patterns, READER.layout) if s[0] in FINDING_KINDS]


def test_statements_are_the_statement_texts():
    for text in _texts(300, 2, odd=True):
        assert [(s.section, s.text) for s in statements(text, READER.layout)] == statement_texts(
            text, READER.layout)


def test_the_sentence_and_item_shortcuts_agree_with_their_patterns():
    rng = random.Random(3)  # noqa: S311 - reproducible test data, not secrets
    for text in _texts(1500, 3, odd=False):
        item = " ".join(text.split())  # ASCII, single spaces: what a plain chunk is
        if rng.random() < 0.3:
            item = item.replace(" ", ". ", 3)
        assert reportlayout._plain_sentences(item) == reportlayout._SENTENCE_END.split(item)
        if not reportlayout._may_number_items(item):
            assert reportlayout._INLINE_ITEM.split(item) == [item], item


def test_the_reader_skips_only_statements_that_name_no_finding():
    unfiltered = dataclasses.replace(READER, target_runs=None)
    skipped = tokenised = whole_texts = 0
    for text in _texts(1500, 4, odd=True, sparse=0.8):
        texts = [(SECTIONS[len(text) % 4], text)]
        assert READER.read(texts) == unfiltered.read(texts), text
        whole_texts += text.isascii() and READER.target_runs.isdisjoint(
            text.encode("ascii").translate(_RUNS).split())
        for _, said in statement_texts(text, READER.layout):
            tokens = READER.tokens(said)
            got = READER.statement_tokens(said)
            if got is None:
                assert READER.find_targets(tokens) == [], said
                skipped += 1
            else:
                assert got == tokens, said
                tokenised += 1
            assert unfiltered.statement_tokens(said) == tokens
    assert skipped > 3000 and tokenised > 1000 and whole_texts > 100


def test_without_hyphen_apostrophe_or_question_mark_the_tokens_are_the_runs():
    for text in _texts(1500, 5, odd=False):
        said = text.replace("-", " ").replace("'", " ").replace("?", " ")
        runs = [w.decode() for w in said.encode("ascii").translate(_RUNS).split()]
        assert runs == _WORD.findall(said.lower())
