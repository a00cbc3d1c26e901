"""Draft orders of an order hook: ``context.draftOrders`` and ``context.selections`` (§10).

Pure: no I/O. Clients send whatever FHIR version their EHR speaks (cds-hooks-2.0.md §3.4, §13
items 5 and 7), so every shape is read leniently:

- ``draftOrders`` is a Bundle, with or without ``type`` (the CDS Hooks sandbox omits it); a bare
  order resource is read as a Bundle of one;
- entries may be R4 ``MedicationRequest`` / ``ServiceRequest``, STU3 ``MedicationRequest`` /
  ``ProcedureRequest`` or DSTU2 ``MedicationOrder`` / ``ProcedureRequest``; anything else (other
  request types, garbage) is skipped with a note, never an exception;
- medication identity comes from ``medicationCodeableConcept``, or from the Medication a
  ``medicationReference`` points at (contained ``#id``, or an entry of the same Bundle), or from
  R5's ``medication.concept`` / ``medication.reference``;
- the dose per administration comes from ``dosageInstruction[].doseAndRate[].doseQuantity`` (R4) or
  ``dosageInstruction[].doseQuantity`` (STU3, DSTU2), converted to mg (or mg/kg) by ``units``.

Only two shapes are the client's fault and give 400 (:class:`~cds_service.errors.RequestInvalid`):
``draftOrders`` that is not a JSON object, and ``selections`` that is not a list of strings. An
empty ``selections`` list is accepted (nothing is selected, so nothing is checked): the hook
library's 1..* is not enforced, so that a client between selections gets no error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import units
from ..errors import RequestInvalid
from ..fhir.resources import code_text, codings, is_about_another_patient, resolve_reference
from ..mappings import MappingTable

MEDICATION_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})  # R4/STU3; DSTU2
SERVICE_TYPES = frozenset({"ServiceRequest", "ProcedureRequest"})  # R4; STU3/DSTU2
# Statuses of orders that are not about to be placed (re-sign after revision may send them).
NOT_PLACED = frozenset({"entered-in-error", "cancelled", "revoked", "stopped", "completed"})
UCUM = "http://unitsofmeasure.org"
ORAL_ROUTE = "26643006"  # SNOMED Oral route


@dataclass(frozen=True)
class DraftOrder:
    """One draft order, read from whichever FHIR version the client speaks."""

    type: str  # resourceType as sent: MedicationRequest, MedicationOrder, ServiceRequest, ...
    id: str | None
    concepts: frozenset[str]  # concept ids of the medication or the service (mappings)
    label: str  # what the order is, for people ("vancomycin 1 g IV")
    status: str | None  # the order's own status
    dose_mg: float | None = None  # dose per administration in mg
    dose_mg_per_kg: float | None = None  # when the order is written per kg
    dose_as_written: str | None = None  # e.g. "1.2 g"
    dose_problem: str | None = None  # why no dose could be read, when one was given
    route: str | None = None  # "oral" when the order says so
    resource: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ref(self) -> str:
        """Relative reference ``Type/id`` (what ``selections`` and delete actions use)."""
        return f"{self.type}/{self.id}" if self.id else f"{self.type}/?"

    @property
    def is_medication(self) -> bool:
        return self.type in MEDICATION_TYPES

    @property
    def is_service(self) -> bool:
        return self.type in SERVICE_TYPES

    def is_a(self, mappings: MappingTable, concept: str) -> bool:
        """True when the order is of ``concept`` or of one of its members (class concepts)."""
        return bool(self.concepts & mappings.members(concept))


@dataclass
class DraftOrders:
    """Every usable draft order, the ones the hook asks about (``checked``), and reading notes."""

    orders: list[DraftOrder]
    checked: list[DraftOrder]  # order-select: the selected orders; order-sign: all of them
    notes: list[str] = field(default_factory=list)


def read_draft_orders(context: Mapping[str, Any], hook: str, mappings: MappingTable,
                      patient_id: str | None = None) -> DraftOrders:
    """Read ``context.draftOrders`` (and ``context.selections`` for order-select).

    :raises RequestInvalid: ``draftOrders`` is not an object, or ``selections`` is not a list of
        strings (where ``context.draftOrders`` / ``context.selections``).
    """
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict):
        raise RequestInvalid("context.draftOrders must be a FHIR Bundle (a JSON object)",
                             where="context.draftOrders")
    selections = None
    if hook == "order-select":
        selections = context.get("selections")
        if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
            raise RequestInvalid("context.selections must be a list of \"Type/id\" strings",
                                 where="context.selections")
    notes: list[str] = []
    orders = parse_bundle(bundle, mappings, notes, patient_id)
    if selections is None:
        return DraftOrders(orders, list(orders), notes)
    return DraftOrders(orders, select(orders, selections, notes), notes)


def select(orders: list[DraftOrder], selections: list[str], notes: list[str]) -> list[DraftOrder]:
    """The orders named by ``selections``; a selection that names no draft order is noted."""
    by_ref = {o.ref: o for o in orders if o.id}
    chosen: list[DraftOrder] = []
    for selection in selections:
        key = _relative(selection)
        order = by_ref.get(key)
        if order is None:
            notes.append(f"selection {selection[:80]!r} names no draft order; ignored")
        elif order not in chosen:
            chosen.append(order)
    return chosen


def _relative(reference: str) -> str:
    """``http://x/fhir/MedicationRequest/1/_history/2`` -> ``MedicationRequest/1``."""
    parts = reference.strip().split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


def parse_bundle(bundle: Mapping[str, Any], mappings: MappingTable, notes: list[str],
                 patient_id: str | None = None) -> list[DraftOrder]:
    """Every readable draft order of a Bundle (or of a bare order resource)."""
    kind = bundle.get("resourceType")
    if isinstance(kind, str) and kind in MEDICATION_TYPES | SERVICE_TYPES:
        notes.append("draftOrders is a single resource, not a Bundle; read as one order")
        bundle = {"resourceType": "Bundle", "entry": [{"resource": bundle}]}
    elif bundle.get("resourceType") != "Bundle":
        notes.append(f"draftOrders is not a Bundle (resourceType "
                     f"{str(bundle.get('resourceType'))[:40]!r}); no orders read")
        return []
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        notes.append("draftOrders.entry is not a list; no orders read")
        return []
    resources: list[tuple[int, Any]] = []
    medications: dict[str, Mapping[str, Any]] = {}
    for number, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Medication":
            if isinstance(resource.get("id"), str):
                medications[f"Medication/{resource['id']}"] = resource
            if isinstance(full_url, str):
                medications[full_url] = resource
            continue
        resources.append((number, resource))
    orders = []
    for number, resource in resources:
        order = read_order(resource, mappings, medications, notes, f"draftOrders.entry[{number}]")
        if order is None:
            continue
        if patient_id is not None and is_about_another_patient(order.resource, patient_id):
            notes.append(f"{order.ref} is for another patient; not checked")
            continue
        orders.append(order)
    return orders


def read_order(resource: Any, mappings: MappingTable,
               medications: Mapping[str, Mapping[str, Any]], notes: list[str],
               where: str) -> DraftOrder | None:
    """One draft order, or ``None`` (with a note) when it is not an order this service reads."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        notes.append(f"{where} holds no FHIR resource; skipped")
        return None
    kind = resource["resourceType"]
    ident = resource.get("id") if isinstance(resource.get("id"), str) else None
    ref = f"{kind}/{ident or '?'}"
    if kind not in MEDICATION_TYPES | SERVICE_TYPES:
        notes.append(f"{ref} is not a medication or service order; not checked")
        return None
    status = resource.get("status") if isinstance(resource.get("status"), str) else None
    if status in NOT_PLACED:
        notes.append(f"{ref} has status {status}; not checked")
        return None
    if kind in MEDICATION_TYPES:
        concepts, label = _medication(resource, mappings, medications)
        dose = _dose(resource)
        return DraftOrder(kind, ident, frozenset(concepts), label, status, *dose,
                          route=_route(resource), resource=resource)
    concepts = mappings.concepts_of(resource.get("code"))
    label = code_text(resource.get("code")) or "service order"
    return DraftOrder(kind, ident, frozenset(concepts), label, status, resource=resource)


def _medication(resource: Mapping[str, Any], mappings: MappingTable,
                bundled: Mapping[str, Mapping[str, Any]]) -> tuple[set[str], str]:
    """Concept ids and a label of the ordered medication."""
    concept = resource.get("medicationCodeableConcept")
    reference = resource.get("medicationReference")
    r5 = resource.get("medication")
    if isinstance(r5, dict):  # R5 CodeableReference
        concept = concept or r5.get("concept")
        reference = reference or r5.get("reference")
    found = set(mappings.concepts_of(concept))
    label = code_text(concept)
    medication = resolve_reference(resource, reference, bundled, "Medication")
    if medication is not None:
        found |= mappings.concepts_of(medication.get("code"))
        label = label or code_text(medication.get("code"))
    if label is None and isinstance(reference, dict) and isinstance(reference.get("display"),
                                                                     str):
        label = reference["display"]
    if label is None:
        label = mappings.label(sorted(found)[0]) if found else "medication"
    return found, label


def _quantities(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    dosages = resource.get("dosageInstruction")
    if isinstance(dosages, dict):
        dosages = [dosages]
    out = []
    for dosage in dosages if isinstance(dosages, list) else ():
        if not isinstance(dosage, dict):
            continue
        rates = dosage.get("doseAndRate")  # R4
        for rate in rates if isinstance(rates, list) else ():
            if isinstance(rate, dict) and isinstance(rate.get("doseQuantity"), dict):
                out.append(rate["doseQuantity"])
        if isinstance(dosage.get("doseQuantity"), dict):  # STU3, DSTU2
            out.append(dosage["doseQuantity"])
    return out


def _dose(resource: Mapping[str, Any]) -> tuple[float | None, float | None, str | None,
                                                str | None]:
    """(mg, mg/kg, as written, problem) of the first dose quantity that can be read."""
    problem = None
    for quantity in _quantities(resource):
        value = quantity.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = "the dose has no numeric value"
            continue
        raw = quantity.get("code") if quantity.get("system") in (UCUM, None) and isinstance(
            quantity.get("code"), str) else None
        raw = raw or (quantity.get("unit") if isinstance(quantity.get("unit"), str) else None)
        written = f"{value:g} {raw}" if raw else f"{value:g}"
        for target in ("mg", "mg/kg"):
            try:  # units.ALIASES reads non-UCUM spellings ("G", "mcg", "grams")
                converted = units.convert(float(value), raw, target)
            except units.UnitError:
                continue
            if target == "mg":
                return converted, None, written, None
            return None, converted, written, None
        problem = f"dose unit {raw or 'missing'} cannot be converted to mg"
    return None, None, None, problem


def _route(resource: Mapping[str, Any]) -> str | None:
    dosages = resource.get("dosageInstruction")
    for dosage in dosages if isinstance(dosages, list) else ():
        if not isinstance(dosage, dict):
            continue
        route = dosage.get("route")
        if any(c.get("code") == ORAL_ROUTE for c in codings(route)):
            return "oral"
        words = (code_text(route) or "").lower().replace(".", " ").split()
        if "oral" in words or "po" in words or "mouth" in words:
            return "oral"
    return None
