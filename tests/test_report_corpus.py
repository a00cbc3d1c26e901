"""The reader held to the foot-report corpus (tests/data/foot_reports.toml): every excerpt, read
as a report's presentedForm in its format, gives the reading written down for it."""

from __future__ import annotations

import pytest

from cds_service.clinical.reportformats import report_texts
from cds_service.clinical.reporttext import Reader
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings
from tests.report_corpus import CONCEPTS, agrees, load

READER = Reader.from_mappings(load_mappings(DEFAULT_MAPPINGS_DIR))
EXCERPTS = load()
# Readings the reader is known to get wrong, with the reason (kept failing on purpose: strict).
KNOWN_GAPS = {
    "wbc-soft-tissue-only": "leukocyte activity 'in the soft tissues ..., without osseous "
                            "involvement' is read as a positive scan: the reader has no notion "
                            "of where the uptake lies",
}


def test_the_corpus_covers_every_modality_and_layout():
    assert len(EXCERPTS) >= 120
    assert {e.modality for e in EXCERPTS} == {"xr", "mri", "ct", "bone-scan", "wbc-scan", "pet"}
    assert {"sections", "bullets", "numbered", "template", "html", "rtf", "caps", "wrapped",
            "question", "narrative"} <= {e.layout for e in EXCERPTS}
    assert len({e.id for e in EXCERPTS}) == len(EXCERPTS)


@pytest.mark.parametrize("excerpt", [
    pytest.param(e, id=e.id, marks=pytest.mark.xfail(reason=KNOWN_GAPS[e.id], strict=True))
    if e.id in KNOWN_GAPS else pytest.param(e, id=e.id) for e in EXCERPTS])
def test_excerpt_reading(excerpt):
    extracted = report_texts({"presentedForm": [excerpt.attachment()]})
    assert extracted.unread == []
    reading = {cid: m.value for cid, m in READER.read_report(extracted.texts).items()}
    wrong = {cid: (excerpt.expect.get(cid), reading.get(cid)) for cid in CONCEPTS.values()
             if not agrees(excerpt.expect.get(cid), reading.get(cid))}
    assert wrong == {}
