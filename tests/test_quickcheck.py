"""The quick validity check never accepts what the fhir.resources model refuses.

``quickcheck.valid(r, T)`` may only say True when ``T.model_validate(r)`` succeeds (otherwise the
service would use a resource it used to skip with a note). It is checked on every resource of the
fixture records and draft orders, on benchmark charts, and on thousands of broken variants of
them (hypothesis, derandomized): a value replaced by an awkward one (whitespace-only strings,
control characters, impossible dates, times without a zone, leap seconds, numbers in strings,
huge integers, nulls, empty containers, objects where strings belong), a key removed, an unknown
key, an alias's field name, a primitive extension or a second ``value[x]`` added. The oracle is
the model itself, never a copy of its rules. The variants must also be refused often enough by
the model for the property to have teeth (counted below).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import data
from cds_service.clinical import quickcheck, validation
from cds_service.fhir.resources import bundle_resources

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)


def model_accepts(resource: Any, name: str) -> bool:
    try:
        get_fhir_model_class(name).model_validate(copy.deepcopy(resource))
    except Exception:  # any refusal, whatever its kind
        return False
    return True


def _fixture_resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((ROOT / "fixtures").rglob("*.json")):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict) and loaded.get("resourceType") == "Bundle":
            out += bundle_resources(loaded)
        elif isinstance(loaded, dict) and isinstance(loaded.get("resourceType"), str):
            out.append(loaded)
        elif isinstance(loaded, list):
            out += [r for r in loaded if isinstance(r, dict) and "resourceType" in r]
    return out


def _bench_resources() -> list[dict[str, Any]]:
    resources = data.typical_resources(NOW, variant=7)
    return resources + data.unrelated_observations(NOW, 20, variant=7)


FIXTURES = _fixture_resources()
BENCH = _bench_resources()
POOL = [r for r in FIXTURES + BENCH if r.get("resourceType") in validation.HOT_TYPES]


def test_the_pool_is_broad() -> None:
    kinds = {r["resourceType"] for r in POOL}
    assert {"Observation", "Condition", "Procedure", "DiagnosticReport", "ImagingStudy",
            "MedicationRequest", "ServiceRequest"} <= kinds
    assert len(POOL) > 200


@pytest.mark.parametrize("resource", FIXTURES + BENCH,
                         ids=lambda r: f"{r.get('resourceType')}/{r.get('id')}")
def test_quick_valid_implies_the_model_accepts(resource: dict[str, Any]) -> None:
    name = str(resource.get("resourceType"))
    if quickcheck.valid(resource, name):
        assert model_accepts(resource, name)


def test_the_benchmark_chart_is_decided_quickly() -> None:
    # the common shapes (labs, conditions, reports, studies, orders) never need the model
    for resource in BENCH:
        name = resource["resourceType"]
        assert model_accepts(resource, name)
        assert quickcheck.valid(resource, name), f"{name}/{resource.get('id')}"


def test_a_model_with_validators_of_its_own_is_left_to_the_model() -> None:
    extension = get_fhir_model_class("FHIRPrimitiveExtension")
    assert quickcheck._plan(extension) is None
    observation = {"resourceType": "Observation", "status": "final",
                   "_status": {"extension": [{"url": "x", "valueString": "y"}]},
                   "code": {"text": "x"}}
    assert not quickcheck.valid(observation, "Observation")


def test_refusals_keep_the_models_error_text() -> None:
    broken = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "effectiveDateTime": "2026-02-30T10:00:00Z"}
    assert not quickcheck.valid(broken, "Observation")
    validation.clear_cache()
    why = validation.problem(broken)
    assert why is not None and why.startswith("effectiveDateTime")


# --- broken variants ------------------------------------------------------------------------------

AWKWARD: list[Any] = [
    "", " ", "  x", "x ", "a  b", "\t", "\n", "x\n", "\u2000", "\u00a0", "\x1c", "\x0b", "\x00",
    "é", "µg", "2026", "2026-02", "2026-02-30", "2026-13-01", "2026-00-10", "0000-01-01",
    "2026-01-01T10:00:00", "2026-01-01T10:00Z", "2026-01-01T24:00:00Z", "2016-12-31T23:59:60Z",
    "2026-01-01T10:00:00+15:00", "2026-01-01T10:00:00.123456789Z", "2026-01-01 10:00:00Z",
    "1e5", "1.0", "-0", "01", "abc", "a" * 65, "x" * 64, "Patient/", "#", "urn:uuid:1",
    0, -1, 1, 2**31, -(2**31) - 1, 2**63, 2**70, 1.5, -0.0, 1e308, 1e-7, 5.0, float("nan"),
    float("inf"), True, False, None, [], [None], [""], ["a"], [1], [[]], {}, {"x": 1},
    [{}], {"coding": []}, {"coding": [None]}, {"reference": "Patient/1"}, {"value": "5"},
    {"system": "x", "code": "y"}, {"extension": []}, {"url": "x"},
]
EXTRA_KEYS = ["valueString", "valueBoolean", "valueCodeableConcept", "valueQuantity",
              "effectivePeriod", "effectiveInstant", "effectiveDateTime", "onsetAge",
              "onsetString", "performedPeriod", "performedString", "medicationReference",
              "resourceType", "resource_type", "fhir_comments", "_status", "_code", "_value",
              "status", "code", "system", "reference", "extension", "id", "value", "unit",
              "display", "text", "coding", "class", "class_fhir", "contained", "unknownElement",
              "modifierExtension", "meta", "div", "div__ext", "end", "start"]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _mutate(resource: dict[str, Any], path: tuple[Any, ...], how: str, key: str,
            value: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    holder: Any = out
    for step in path[:-1]:
        holder = holder[step]
    if not path:  # the resource itself: add a key
        out[key] = copy.deepcopy(value)
        return out
    last = path[-1]
    target = holder[last]
    if how == "replace":
        holder[last] = copy.deepcopy(value)
    elif how == "delete":
        del holder[last]
    elif how == "add" and isinstance(target, dict):
        target[key] = copy.deepcopy(value)
    elif how == "wrap":
        holder[last] = [target]
    elif how == "unwrap" and isinstance(target, list) and target:
        holder[last] = target[0]
    else:
        holder[last] = copy.deepcopy(value)
    return out


@st.composite
def variants(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    base = draw(st.sampled_from(POOL))
    paths = list(_paths(base))
    mutated = base
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(mutated))
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["replace", "replace", "delete", "add", "wrap", "unwrap"]))
        mutated = _mutate(mutated, path, how, draw(st.sampled_from(EXTRA_KEYS)),
                          draw(st.sampled_from(AWKWARD)))
    return mutated, base["resourceType"]


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(variants())
def test_broken_variants_quick_valid_implies_the_model_accepts(case: tuple[Any, str]) -> None:
    resource, name = case
    if quickcheck.valid(resource, name):
        assert model_accepts(resource, name), resource


@pytest.mark.slow
def test_seeded_variants_have_teeth() -> None:
    # the same mutations drawn by a seeded generator, counted: the model refuses many of them
    # (the property above is not vacuous) and the quick check still decides many accepted ones
    rng = random.Random(20261202)  # noqa: S311 - reproducible test data, not secrets
    counts = {"refused": 0, "quick": 0, "accepted": 0}
    for _ in range(2000):
        mutated = base = rng.choice(POOL)
        for _ in range(rng.randint(1, 3)):
            mutated = _mutate(mutated, rng.choice(list(_paths(mutated))),
                              rng.choice(["replace", "replace", "delete", "add", "wrap", "unwrap"]),
                              rng.choice(EXTRA_KEYS), rng.choice(AWKWARD))
        accepted = model_accepts(mutated, base["resourceType"])
        quick = quickcheck.valid(mutated, base["resourceType"])
        assert accepted or not quick, mutated
        counts["refused"] += not accepted
        counts["accepted"] += accepted
        counts["quick"] += quick
    assert counts["refused"] > 500, counts
    assert counts["quick"] > counts["accepted"] // 2, counts


# --- the decimal and date shortcuts against the fields' own validators ----------------------------

def _accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
    except Exception:  # any refusal
        return False
    return True


def _field_checks(model: str, field: str) -> tuple[Any, Any]:
    """(the quick check of a field, pydantic's validator of the same annotation)."""
    from pydantic import TypeAdapter

    info = get_fhir_model_class(model).model_fields[field]
    inner = next(a for a in getattr(info.annotation, "__args__", (info.annotation,))
                 if a is not type(None))
    return (quickcheck._primitive_check(inner, list(info.metadata)),
            TypeAdapter(inner).validator.validate_python)


def test_decimal_shortcut_agrees_with_the_field_validator() -> None:
    quick, full = _field_checks("Quantity", "value")
    assert quick is not full  # the shortcut is in use
    rng = random.Random(7)  # noqa: S311 - reproducible test data, not secrets
    values: list[Any] = [0, -0.0, 1, -1, 5.0, 1e-7, 1e16, 1e308, 2**63, 2**70, -(2**64),
                         float("nan"), float("inf"), -float("inf"), True, False, "5", "5.0",
                         "abc", None, 0.1 + 0.2]
    values += [rng.uniform(-1e6, 1e6) for _ in range(2000)]
    values += [rng.randint(-(10**20), 10**20) for _ in range(500)]
    values += [10.0 ** rng.randint(-30, 30) * rng.choice((1, -1)) for _ in range(500)]
    for value in values:
        assert _accepts(quick, value) == _accepts(full, value), value


def test_date_shortcut_agrees_with_the_field_validators() -> None:
    rng = random.Random(8)  # noqa: S311 - reproducible test data, not secrets
    chars = "0123456789-:TZ+. x\u0663,"
    texts = ["2026-11-20T10:00:00Z", "2016-12-31T23:59:60Z", "0000-01-01T00:00:00Z",
             "2026-02-30T10:00:00Z", "2026-11-20T24:00:00Z", "2026-11-20T10:00.00Z"]
    for _ in range(20_000):
        text = list("2026-11-20T10:00:00Z")
        for _ in range(rng.randint(0, 3)):
            text[rng.randrange(20)] = rng.choice(chars)
        texts.append("".join(text))
        texts.append(f"{rng.randint(0, 9999):04d}-{rng.randint(0, 13):02d}-"
                     f"{rng.randint(0, 32):02d}T{rng.randint(0, 24):02d}:"
                     f"{rng.randint(0, 60):02d}:{rng.randint(0, 61):02d}Z")
    for model, field in (("Observation", "effectiveDateTime"), ("Observation", "issued")):
        quick, full = _field_checks(model, field)
        assert quick is not full
        for text in texts:
            assert _accepts(quick, text) == _accepts(full, text), (field, text)
