"""The record's queries (record.py, time helpers and below) give what the plain definitions give.

A concept's Observations are dated in one pass when every ``effectiveDateTime`` has the lab-feed
form ``YYYY-MM-DDThh:mm:ssZ``, and one by one (``resource_date``) otherwise; either way the series
must come out as sorting by ``resource_date`` (newest first, undated last, ties in record order)
puts it. Random series mix that form with invalid dates of the same shape, other forms, other
date fields and no date at all. Query answers are shared within a record: a caller that changes
a returned list must not change what the next caller gets.
"""

from __future__ import annotations

import dataclasses
import inspect
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cds_service.clinical.finding import Finding
from cds_service.clinical.record import Record, _effective_instants
from cds_service.clinical.result import RuleResult
from cds_service.fhir.resources import resource_date
from tests.conftest import CLOCK
from tests.support.rulebook import MAPPINGS

ESR = {"coding": [{"system": "http://loinc.org", "code": "4537-7"}]}
ULCER = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "L97.422"}]}


def _esr(ident: int, **dates: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{ident}", "status": "final", "code": ESR,
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {"value": 40 + ident, "unit": "mm/h", "code": "mm/h"}, **dates}


def _instant(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _reference_order(observations: list[dict[str, Any]]) -> list[tuple[Any, str]]:
    """The definition: every Observation dated by resource_date, sorted newest first."""
    dated = [(resource_date(obs), obs) for obs in observations]
    oldest = datetime.min.replace(tzinfo=UTC)
    dated.sort(key=lambda item: item[0] or oldest, reverse=True)
    return [(when, obs["id"]) for when, obs in dated]


def _record(resources: list[dict[str, Any]]) -> Record:
    return Record(resources, MAPPINGS, CLOCK, "p1")


def test_a_lab_feed_series_is_dated_in_one_pass() -> None:
    values = [_instant(CLOCK - timedelta(days=d)) for d in (3, 1, 2)]
    observations = [_esr(i, effectiveDateTime=v) for i, v in enumerate(values)]
    assert _effective_instants(observations) == [resource_date(o) for o in observations]
    assert [obs["id"] for _, obs in _record(observations)._newest_first("esr")] == \
        ["o1", "o2", "o0"]


@pytest.mark.parametrize("odd", [
    {"effectiveDateTime": "2026-02-30T10:00:00Z", "issued": "2026-11-20T10:00:00Z"},  # no 30 Feb
    {"effectiveDateTime": "2026-11-20T24:00:00Z"},
    {"effectiveDateTime": "2026-11-20 10:00:00Z"},
    {"effectiveDateTime": "2026-11-20T10:00:00+01:00"},
    {"effectiveDateTime": "2026-11-20"},
    {"effectiveDateTime": "2026-11-20T10:00:00.5Z"},
    {"effectiveDateTime": "2026-11-2\u0663T10:00:00Z"},  # a non-ASCII digit
    {"effectiveDateTime": 20261120},
    {"effectivePeriod": {"start": "2026-11-19T10:00:00Z"}},
    {"issued": "2026-11-19T10:00:00Z"},
    {},
])
def test_one_odd_date_sends_the_series_the_long_way(odd: dict[str, Any]) -> None:
    observations = [_esr(0, effectiveDateTime="2026-11-18T10:00:00Z"), _esr(1, **odd),
                    _esr(2, effectiveDateTime="2026-11-21T10:00:00Z")]
    assert _effective_instants(observations) is None
    got = [(when, obs["id"]) for when, obs in _record(observations)._newest_first("esr")]
    assert got == _reference_order(observations)


def test_random_series_sort_as_resource_date_sorts_them() -> None:
    rng = random.Random(20261202)  # noqa: S311 - reproducible test data, not secrets
    base = CLOCK - timedelta(days=400)

    def date_fields(ident: int) -> dict[str, Any]:
        when = base + timedelta(minutes=rng.randint(0, 3) * 1440 * rng.randint(0, 150))
        text = _instant(when)
        shape = rng.random()
        if shape < 0.8:
            return {"effectiveDateTime": text}
        if shape < 0.85:
            return {"effectiveDateTime": text[:5] + "13" + text[7:], "issued": text}
        if shape < 0.9:
            return {"effectiveDateTime": text.replace("Z", "+00:00")}
        if shape < 0.95:
            return {"issued": text}
        return {}

    for size in range(0, 12):
        for _ in range(60):
            observations = [_esr(i, **date_fields(i)) for i in range(size)]
            got = [(when, obs["id"]) for when, obs in _record(observations)._newest_first("esr")]
            assert got == _reference_order(observations)
            assert all(o.get("resourceType") == "Observation" for o in observations)


def test_each_window_gets_the_latest_value_in_it() -> None:
    observations = [_esr(i, effectiveDateTime=_instant(CLOCK - timedelta(days=d)))
                    for i, d in enumerate((20, 5, 40))]
    record = _record(observations)
    assert record.latest("esr", 30) is not None and record.latest("esr", 30).ref == \
        "Observation/o1"
    assert record.latest("esr", 4) is None
    assert record.latest("esr", 60).ref == "Observation/o1"
    assert [f.ref for f in record.quantities("esr")] == \
        ["Observation/o1", "Observation/o0", "Observation/o2"]
    assert [f.ref for f in record.quantities("esr", 30)] == ["Observation/o1", "Observation/o0"]


def test_shared_answers_are_not_changed_by_their_callers() -> None:
    ulcer = {"resourceType": "Condition", "id": "c1", "code": ULCER,
             "subject": {"reference": "Patient/p1"}, "onsetDateTime": _instant(CLOCK)}
    record = _record([ulcer, _esr(0, effectiveDateTime=_instant(CLOCK))])
    first = record.conditions("foot-ulcer")
    assert [f.ref for f in first] == ["Condition/c1"]
    first.clear()
    assert [f.ref for f in record.conditions("foot-ulcer")] == ["Condition/c1"]
    quantities = record.quantities("esr")
    quantities.clear()
    assert len(record.quantities("esr")) == 1


@pytest.mark.parametrize("cls", [Finding, RuleResult])
def test_the_hand_written_constructors_match_the_fields(cls: type) -> None:
    """Finding and RuleResult set their fields in their own __init__ (faster than the generated
    one): same names, order and defaults as the dataclass fields, and still frozen."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == [
        (f.name, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(cls)]
    values = {p.name: f"v{i}" for i, p in enumerate(params)}
    made = cls(**values)
    assert dataclasses.asdict(made) == values
    assert made == cls(**values) and hash(made) == hash(cls(**values))
    assert made != cls(**{**values, params[-1].name: "other"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.ref = "x"  # type: ignore[misc]
