"""Helpers for rule tests: the project's mappings, and a synthetic record assessed as the
service assesses it (clock fixed at the fixtures' moment).

    record = with_wound(days=40)          # left amputation 40 days ago, an active foot ulcer
    a = assessed(record)                  # the Assessment of clinical-rules.md §4-§7
"""

from __future__ import annotations

from cds_service.clinical.facts import Facts, gather
from cds_service.clinical.record import Record as ClinicalRecord
from cds_service.clinical.rules import Assessment, assess
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings
from fixtures.build import ULCER, Record
from tests.conftest import CLOCK

MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)


def facts_of(record: Record) -> Facts:
    return gather(ClinicalRecord(record.resources, MAPPINGS, CLOCK))


def assessed(record: Record) -> Assessment:
    return assess(facts_of(record))


def base(days: float = 40, side: str | None = "left") -> Record:
    """A partial-foot amputation ``days`` ago on ``side``, nothing else."""
    record = Record("p1")
    record.amputation(days, side)
    return record


def with_wound(days: float = 40, side: str | None = "left") -> Record:
    """An amputation and an active foot-ulcer Condition: a wound, but no OM-4 sign by itself."""
    record = base(days, side)
    record.condition(*ULCER, days=5)
    return record
