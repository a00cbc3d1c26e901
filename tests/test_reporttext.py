"""Report text: negation and uncertainty with the project's cue lists (clinical-rules.md §2)."""

from __future__ import annotations

import pytest

from cds_service.clinical.reporttext import CuePhrases, Mention, read_mentions
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings

MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)
CUES = CuePhrases.build(MAPPINGS.text.negation, MAPPINGS.text.post_negation,
                        MAPPINGS.text.uncertainty, MAPPINGS.text.scope_breakers)
PHRASES = {cid: c.phrases for cid, c in MAPPINGS.concepts.items() if c.phrases}
OM, HO = "om-imaging-pattern", "soft-tissue-ossification"


@pytest.mark.parametrize(("text", "concept", "expected"), (
    ("Periosteal reaction at the second metatarsal stump.", OM, Mention.PRESENT),
    ("No periosteal reaction.", OM, Mention.NEGATED),
    ("Without evidence of osteomyelitis.", OM, Mention.NEGATED),
    ("Negative for osteomyelitis.", OM, Mention.NEGATED),
    ("Previously seen periosteal reaction has resolved.", OM, Mention.NEGATED),
    ("Osteomyelitis cannot be excluded.", OM, Mention.UNCERTAIN),
    ("Cannot exclude osteomyelitis.", OM, Mention.UNCERTAIN),
    ("Possible periosteal reaction.", OM, Mention.UNCERTAIN),
    ("Equivocal cortical erosion at the stump.", OM, Mention.UNCERTAIN),
    ("No fracture. Cortical destruction of the stump.", OM, Mention.PRESENT),
    ("No osteomyelitis, possible cellulitis.", OM, Mention.NEGATED),
    ("No fracture but heterotopic ossification plantar to the stump.", HO, Mention.PRESENT),
    ("No heterotopic ossification.", HO, Mention.NEGATED),
    ("No cortical destruction or\nperiosteal reaction.", OM, Mention.NEGATED),
))
def test_mentions(text, concept, expected):
    assert read_mentions(text, PHRASES, CUES).get(concept) == expected


def test_a_positive_mention_beats_a_negated_one():
    text = "No periosteal reaction at the first ray. Cortical destruction at the second."
    assert read_mentions(text, PHRASES, CUES)[OM] == Mention.PRESENT


def test_unmentioned_concepts_are_absent():
    assert read_mentions("Stable postsurgical appearance.", PHRASES, CUES) == {}
