"""Validate the FHIR resources a rule relies on with ``fhir.resources`` R4B models (R4 data).

Only resources that end up used are validated (stack-measurements.md §1: full validation costs
about 100 µs per resource, so validating a whole record would dominate the hook). A resource that
fails is skipped and a note says which one and why — never a crash. R4B is chosen on purpose:
fhir.resources has no R4 package, and R4B models accept R4 JSON for the resources used here.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class

_MODEL_CACHE: dict[str, Any] = {}


def _model(resource_type: str) -> Any:
    model = _MODEL_CACHE.get(resource_type)
    if model is None:
        model = get_fhir_model_class(resource_type)
        _MODEL_CACHE[resource_type] = model
    return model


def warm_up() -> None:
    """Build the models used on the hot path now, at start-up."""
    for name in ("Observation", "Condition", "Procedure", "DiagnosticReport", "ImagingStudy",
                 "MedicationRequest", "Medication", "ServiceRequest"):
        _model(name)


def problem(resource: dict[str, Any]) -> str | None:
    """Return why a resource is not valid R4 (first error, with its location), or None."""
    try:
        _model(str(resource.get("resourceType"))).model_validate(resource)
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
