"""A quick, exact "valid" verdict for the common shapes of FHIR resources.

Validating a lab Observation with the fhir.resources R4B model costs ~150 µs, most of it in the
Python validators fhir_core runs for every nested element (CodeableConcept, Coding, Quantity,
Reference, ...): each is a model of its own, built through ``__init__`` and a before- and an
after-validator that loop over all of the model's fields. Most resources an EHR sends are valid
and use a handful of elements, so :func:`valid` walks the resource's JSON once instead, with a
plan derived from the very same models at start-up:

- every key must be the alias of a field of the model (``extra="forbid"``); ``resourceType``
  only at the top, equal to the model's resource type;
- a primitive value is checked by the pydantic-core validator of that field's own annotation
  (``TypeAdapter(Annotated[str, Code()])`` and so on: the same regexes, date parsing and
  decimal rule the model runs, not a copy of them);
- a complex value must be a JSON object (a list of them for list fields) and is walked with the
  plan of its model;
- the checks of fhir_core's model validators are repeated: no ``null`` in lists of complex
  types, required fields and required primitives present, at most one ``value[x]`` (and one
  when required).

``valid`` answers True only when all of that holds, which is when the full model accepts the
resource too. Anything it does not handle (``null`` values, ``_field`` primitive extensions,
contained resources, field names instead of aliases, models with validators of their own,
values of another JSON type than the usual one, ...) makes it answer False, "not decided
here": the caller then validates with the full model, which gives the verdict and the error.
So the verdicts and the error texts are the models' own; only the time differs.
``tests/test_quickcheck.py`` checks ``valid(r) implies the model accepts r`` on every fixture
resource, the benchmark records and randomly broken variants of them.
"""

from __future__ import annotations

import threading
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core import types as fhir_types
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import TypeAdapter

# The model validators fhir_core gives every model; a model with any other is not handled here.
_KNOWN_MODEL_VALIDATORS = frozenset({"reject_null_complex_elements",
                                     "validate_after_model_construction"})
# Methods whose behaviour the plan repeats: a model overriding one of them is not handled.
_REPEATED = ("__init__", "reject_null_complex_elements", "validate_after_model_construction",
             "_validate_one_of_many", "_validate_required_primitive_elements",
             "model_post_init")

_UNSUPPORTED = None  # a plan entry for a field whose value sends the resource to the model


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the walk needs to know of one model."""

    # alias -> (is a list, is a complex element, primitive check or the element's _Plan (None:
    # not handled here)); built with model classes in place of plans, then linked (_link)
    fields: dict[str, tuple[bool, bool, Any]]
    required: tuple[str, ...]  # aliases that must be present
    choices: tuple[tuple[tuple[str, ...], bool], ...]  # (aliases of one [x] element, required)
    resource_type: str


_plans: dict[type, _Plan | None] = {}
_by_name: dict[str, _Plan | None] = {}  # resource type name -> its linked plan
_checks: dict[Any, Any] = {}  # primitive annotation -> pydantic-core validate_python


def _primitive_check(annotation: Any, metadata: list[Any]) -> Any:
    key = (annotation, tuple(metadata))
    try:
        found = _checks.get(key)
    except TypeError:  # an unhashable annotation: no caching, still exact
        found, key = None, None
    if found is None:
        target = typing.Annotated[annotation, *metadata] if metadata else annotation
        found = _shortcut(annotation, metadata, TypeAdapter(target).validator.validate_python)
        if key is not None:
            _checks[key] = found
    return found


def _shortcut(annotation: Any, metadata: list[Any], full: Any) -> Any:
    """The field's check, with the two commonest slow cases decided in Python.

    fhir_core checks decimals and dates in Python callbacks (~3 µs each, three of each in a lab
    Observation). For the commonest inputs their outcome is known without them:
    - ``decimal``: for a JSON number (int or float, not bool) the callback accepts exactly
      when ``str(value)`` matches ``fhir_core.types.Decimal.pattern`` (it never calls pydantic's
      own decimal validator);
    - ``dateTime`` and ``instant``: a ``YYYY-MM-DDThh:mm:ssZ`` string that
      ``datetime.fromisoformat`` reads has ASCII digits everywhere, a year of 0001-9999 and
      in-range fields, so it matches the type's pattern, is no leap second, parses and has a
      zone: the callback accepts it.
    Every other input goes to ``full``, the field's own validator.
    """
    if metadata or typing.get_origin(annotation) is not typing.Annotated:
        return full
    markers = typing.get_args(annotation)[1:]
    if len(markers) != 1:
        return full
    kind = type(markers[0])
    if kind is fhir_types.Decimal:
        pattern = fhir_types.Decimal.pattern

        def decimal_check(value: Any) -> None:
            if type(value) is float or type(value) is int:
                if pattern.fullmatch(str(value)) is None:
                    raise ValueError("decimal")
                return
            full(value)

        return decimal_check
    if kind is fhir_types.DateTime or kind is fhir_types.Instant:
        parse = datetime.fromisoformat

        def instant_check(value: Any) -> None:
            if type(value) is str and len(value) == 20 and value[19] == "Z" \
                    and value[10] == "T" and value[4] == value[7] == "-" \
                    and value[13] == value[16] == ":" and value.isascii():
                try:
                    parse(value)
                except ValueError:
                    pass  # the field's own validator decides
                else:
                    return
            full(value)

        return instant_check
    return full


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        return _UNSUPPORTED  # a real union (fhir_comments: str or list of str)
    return annotation


def _field_entry(annotation: Any, metadata: list[Any]) -> tuple[bool, bool, Any] | None:
    inner = _unwrap_optional(annotation)
    if inner is _UNSUPPORTED:
        return None
    many = typing.get_origin(inner) in (list, typing.List)  # noqa: UP006
    if many:
        args = typing.get_args(inner)
        if len(args) != 1:
            return None
        inner = _unwrap_optional(args[0])  # primitive lists may hold nulls (never passed here)
    if isinstance(inner, type) and issubclass(inner, FhirBase):
        if issubclass(inner, FhirElementOrResourceBase):  # contained resources, Resource, ...
            return None
        return many, True, inner.get_model_klass()
    if typing.get_origin(inner) is typing.Annotated or inner in (bool, str, int):
        if many and metadata:
            return None  # constraints on a list field itself: not repeated here
        return many, False, _primitive_check(inner, [] if many else metadata)
    return None


def _plan(model: type) -> _Plan | None:
    """The model's plan, built on first use (None: the model is not handled here)."""
    if model in _plans:
        return _plans[model]
    _plans[model] = None  # while it is being built (recursive models) and if it cannot be
    decorators = model.__pydantic_decorators__
    if (set(decorators.model_validators) - _KNOWN_MODEL_VALIDATORS or decorators.field_validators
            or decorators.validators or decorators.root_validators):
        return None
    for klass in model.__mro__:
        if klass is FHIRAbstractModel:
            break
        if any(name in klass.__dict__ for name in _REPEATED):
            return None
    fields: dict[str, tuple[bool, bool, Any]] = {}
    alias_of: dict[str, str] = {}
    required: list[str] = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        alias_of[name] = alias
        entry = _field_entry(info.annotation, list(info.metadata))
        if entry is not None:
            fields[alias] = entry
        if info.is_required():
            if entry is None:
                return None
            required.append(alias)
    if "resourceType" in model.model_fields:
        return None  # __init__ treats such a model's resourceType as a field: not repeated
    aliases = model.get_alias_mapping()
    for name, _ext in model.get_required_fields(None):
        field_name = aliases.get(name)
        if field_name not in alias_of or alias_of[field_name] not in fields:
            return None
        required.append(alias_of[field_name])
    choices = []
    for names in model.get_one_of_many_fields(None).values():
        if any(n not in alias_of for n in names):
            return None
        extra = model.model_fields[names[0]].json_schema_extra or {}
        choices.append((tuple(alias_of[n] for n in names),
                        extra.get("one_of_many_required") is True))
    plan = _Plan(fields, tuple(required), tuple(choices), str(model.__resource_type__))
    _plans[model] = plan
    for _many, nested, target in fields.values():  # nested models too, then linked
        if nested and isinstance(target, type):
            _plan(target)
    return plan


def _link() -> None:
    """Put each element's plan where its model class was (None: that model is not handled)."""
    for plan in list(_plans.values()):
        if plan is None:
            continue
        for alias, (many, nested, target) in plan.fields.items():
            if nested and isinstance(target, type):
                plan.fields[alias] = (many, True, _plans.get(target))


def _plan_named(name: str) -> _Plan | None:
    try:
        model = get_fhir_model_class(name)
    except (KeyError, LookupError, ValueError, TypeError):
        return None
    with _building:
        plan = _plan(model)
        _link()
    _by_name[name] = plan
    return plan


_building = threading.Lock()


def prepare(resource_types: typing.Iterable[str]) -> None:
    """Build the plans of these resource types and of every element type they use (start-up)."""
    for name in resource_types:
        _plan_named(name)


def valid(resource: Any, model_name: str) -> bool:
    """True when the ``model_name`` model (fhir.resources R4B) certainly accepts ``resource``;
    False when this quick walk cannot tell (then ask the model)."""
    plan = _by_name[model_name] if model_name in _by_name else _plan_named(model_name)
    if plan is None or not isinstance(resource, dict):
        return False
    kind = resource.get("resourceType")
    if kind is not None and kind != plan.resource_type:
        return False
    try:
        return _walk(resource, plan, top=True)
    except Exception:  # any doubt: the model decides
        return False


def _walk(data: dict[str, Any], plan: _Plan, top: bool = False) -> bool:
    fields = plan.fields
    for key, value in data.items():
        entry = fields.get(key)
        if entry is None:
            if top and key == "resourceType":
                continue  # checked by valid(): __init__ takes it out before validating
            return False
        if value is None:
            return False
        many, nested, target = entry
        if nested:  # a complex element, or a list of them
            if target is None:
                return False
            if many:
                if type(value) is not list:
                    return False
                for item in value:
                    if type(item) is not dict or not _walk(item, target):
                        return False
            elif type(value) is not dict or not _walk(value, target):
                return False
        elif many:
            if type(value) is not list:
                return False
            for item in value:
                if item is None:
                    return False
                target(item)  # raises when the model would refuse the value
        else:
            target(value)
    for alias in plan.required:
        if alias not in data:
            return False
    for aliases, required in plan.choices:
        present = 0
        for alias in aliases:
            if alias in data:
                present += 1
        if present > 1 or (required and present == 0):
            return False
    return True
