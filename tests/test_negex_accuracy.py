"""The report reader on the NegEx annotated test set (Chapman et al. 2001; ../shared/data/negex):
the goals of issue 11 (README "Reading report text"), held by the suite so that work on the
reader (speed-ups included) cannot quietly lower them. Timing stays in ``benchmarks.reporttext``."""

from __future__ import annotations

import os

import pytest

from benchmarks.reporttext import GOAL, NEGEX, negex_figures
from cds_service.clinical.reporttext import Reader
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings


def test_negex_goals_hold() -> None:
    if not NEGEX.is_file():  # the shared data: must be there under CI (as the real services)
        if os.environ.get("CI"):
            pytest.fail(f"{NEGEX} is missing")
        pytest.skip(f"{NEGEX} is not on this machine")
    figures = negex_figures(Reader.from_mappings(load_mappings(DEFAULT_MAPPINGS_DIR)), NEGEX,
                            show=False)
    assert figures["read"] >= 2_300  # nearly every row's concept is found in its sentence
    assert figures["accuracy"] >= GOAL["accuracy"], figures
    assert figures["negated_f1"] >= GOAL["negated_f1"], figures
