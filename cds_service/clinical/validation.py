"""Validate the FHIR resources a rule relies on with ``fhir.resources`` R4B models (R4 data).

Only resources that end up used are validated (stack-measurements.md §1: full validation costs
about 100 µs per resource, so validating a whole record would dominate the hook). A resource that
fails is skipped and a note says which one and why — never a crash. R4B is chosen on purpose:
fhir.resources has no R4 package, and R4B models accept R4 JSON for the resources used here.

Most resources are decided by ``quickcheck`` (~10 µs: a walk with the models' own field rules that
only ever says "valid" when the model would). The full model's verdicts are remembered per worker
process, keyed by a keyed BLAKE2b digest of the resource's JSON text (no clinical content is kept,
only 16-byte digests and the reason strings): an EHR sends the same resources again each time a
chart is opened, and the full model costs ~100-200 µs while a digest costs ~2-4 µs. Validation
is a pure function of the resource, so a remembered verdict is the verdict.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections import OrderedDict
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class

from . import quickcheck

CACHE_SIZE = 20_000  # verdicts per process (about 3 MB)
_DIGEST_KEY = secrets.token_bytes(16)
_verdicts: OrderedDict[bytes, str | None] = OrderedDict()
_verdicts_lock = threading.Lock()

_MODEL_CACHE: dict[str, Any] = {}


def _model(resource_type: str) -> Any:
    model = _MODEL_CACHE.get(resource_type)
    if model is None:
        model = get_fhir_model_class(resource_type)
        _MODEL_CACHE[resource_type] = model
    return model


HOT_TYPES = ("Observation", "Condition", "Procedure", "DiagnosticReport", "ImagingStudy",
             "MedicationRequest", "Medication", "ServiceRequest")


def warm_up() -> None:
    """Build the models used on the hot path now, at start-up, and their quick-check plans."""
    for name in HOT_TYPES:
        _model(name)
    quickcheck.prepare(HOT_TYPES)


def _model_problem(resource: dict[str, Any], name: str) -> str | None:
    """The full model's verdict: why it refuses the resource, or None."""
    try:
        _model(name).model_validate(resource)
    except (KeyError, LookupError):
        return f"unknown resource type {resource.get('resourceType')!r}"
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        errors = getattr(exc, "errors", None)
        if callable(errors):
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where or 'resource'}: {first.get('msg', 'invalid')}"
        return str(exc).splitlines()[0]
    except (TypeError, RecursionError) as exc:
        return f"unreadable ({type(exc).__name__})"
    return None


def _digest(resource: dict[str, Any]) -> bytes | None:
    """A digest of the resource as JSON (None when it is not JSON data: then no caching).

    ``orjson.dumps`` takes ~0.6 µs for a lab Observation, ``json.dumps`` ~10 µs. orjson writes
    NaN and Infinity as ``null``, so any text with ``null`` in it is made by ``json.dumps``
    instead; the two kinds of text are tagged apart before hashing.
    """
    try:
        text = b"o" + orjson.dumps(resource)
    except TypeError:  # orjson.JSONEncodeError: non-string keys, integers beyond 64 bits, ...
        return None
    if b"null" in text:
        try:
            text = b"j" + json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode(
                "utf-8", "surrogatepass")
        except (TypeError, ValueError, RecursionError):
            return None
    return hashlib.blake2b(text, digest_size=16, key=_DIGEST_KEY).digest()


def problem(resource: dict[str, Any]) -> str | None:
    """Return why a resource is not valid R4 (first error, with its location), or None.

    A resource the quick check accepts (``quickcheck``, ~10 µs) is valid at once; the verdicts
    of the full model (~100-200 µs) are remembered per distinct resource content (see the
    module's docstring).
    """
    name = str(resource.get("resourceType"))
    if quickcheck.valid(resource, name):
        return None
    key = _digest(resource)
    if key is None:
        return _model_problem(resource, name)
    with _verdicts_lock:
        if key in _verdicts:
            _verdicts.move_to_end(key)
            return _verdicts[key]
    why = _model_problem(resource, name)
    with _verdicts_lock:
        _verdicts[key] = why
        if len(_verdicts) > CACHE_SIZE:
            _verdicts.popitem(last=False)
    return why


def clear_cache() -> None:
    """Forget every remembered verdict (tests, and the benchmark's cold-path figures)."""
    with _verdicts_lock:
        _verdicts.clear()


class Validator:
    """Validates each resource at most once and keeps notes about the ones skipped."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self._seen: dict[int, bool] = {}

    def ok(self, resource: dict[str, Any]) -> bool:
        key = id(resource)
        if key not in self._seen:
            why = problem(resource)
            self._seen[key] = why is None
            if why is not None:
                ref = f"{resource.get('resourceType')}/{resource.get('id', '?')}"
                self.notes.append(f"{ref} skipped: not valid FHIR R4 ({why})")
        return self._seen[key]
