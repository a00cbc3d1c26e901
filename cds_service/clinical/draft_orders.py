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
  R5's ``medication.concept`` / ``medication.reference``, classified by
  :mod:`~cds_service.clinical.medications` (any RxNorm level, names, brands, route and dose form);
- the dose per administration comes from ``dosageInstruction[].doseAndRate[].doseQuantity`` (R4) or
  ``dosageInstruction[].doseQuantity`` (STU3, DSTU2), converted to mg (or mg/kg) by ``units``;
  without one, from the order text ("Vancomycin 1 g IV every 12 hours": ``dosageInstruction.text``
  or a ``medicationCodeableConcept.text`` that is not a product name) when it states exactly one
  dose.

Only two shapes are the client's fault and give 400 (:class:`~cds_service.errors.RequestInvalid`):
``draftOrders`` that is not a JSON object, and ``selections`` that is not a list of strings. An
empty ``selections`` list is accepted (nothing is selected, so nothing is checked): the hook
library's 1..* is not enforced, so that a client between selections gets no error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import units
from ..errors import RequestInvalid
from ..fhir.resources import (
    as_list,
    code_text,
    codings,
    is_about_another_patient,
)
from ..mappings import MappingTable
from .medications import classifier_for, request_drug

MEDICATION_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})  # R4/STU3; DSTU2
SERVICE_TYPES = frozenset({"ServiceRequest", "ProcedureRequest"})  # R4; STU3/DSTU2
# Statuses of orders that are not about to be placed (re-sign after revision may send them).
NOT_PLACED = frozenset({"entered-in-error", "cancelled", "revoked", "stopped", "completed"})
UCUM = "http://unitsofmeasure.org"
# A dose in order text: "1 g", "1,250 mg", "15 mg/kg" (not a concentration such as "50 mg/mL").
_TEXT_DOSE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*"
                        r"(mg/kg|milligrams?|mg|grams?|gm|g)(?![\w/])", re.IGNORECASE)
# An RxNorm product name ("Vancomycin 1000 MG Injection", "... 250 MG Oral Capsule"): its strength
# is the product's, not a dose per administration.
_PRODUCT_NAME = re.compile(r"\d\s(?:MG|MG/ML|UNT|MEQ|MCG)\b")


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
    route: str | None = None  # route group (oral, intravenous, ophthalmic, ...) when known
    identified: bool = True  # False: a medication order whose drug could not be identified
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

    @property
    def unidentified(self) -> list[DraftOrder]:
        """Medication orders whose drug could not be identified (never assumed safe)."""
        return [o for o in self.orders if o.is_medication and not o.identified]


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
        notes.append("draftOrders came as a single resource, not a Bundle; read as one order")
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
            notes.append(f"{order.ref} (for another patient)")
            continue
        orders.append(order)
    return orders


def read_order(resource: Any, mappings: MappingTable,
               medications: Mapping[str, Mapping[str, Any]], notes: list[str],
               where: str) -> DraftOrder | None:
    """One draft order, or ``None`` (with a note) when it is not an order this service reads."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        notes.append(f"{where} (empty)")
        return None
    kind = resource["resourceType"]
    ident = resource.get("id") if isinstance(resource.get("id"), str) else None
    ref = f"{kind}/{ident or '?'}"
    if kind not in MEDICATION_TYPES | SERVICE_TYPES:
        notes.append(f"{ref} (not a medication or service order)")
        return None
    status = resource.get("status") if isinstance(resource.get("status"), str) else None
    if status in NOT_PLACED:
        notes.append(f"{ref} (status {status})")
        return None
    if kind in MEDICATION_TYPES:
        return _medication_order(resource, kind, ident, status, mappings, medications)
    concepts = mappings.concepts_of(resource.get("code"))
    label = code_text(resource.get("code")) or "service order"
    return DraftOrder(kind, ident, frozenset(concepts), label, status, resource=resource)


def _medication_order(resource: Mapping[str, Any], kind: str, ident: str | None,
                      status: str | None, mappings: MappingTable,
                      bundled: Mapping[str, Mapping[str, Any]]) -> DraftOrder:
    """A medication order: its drug classified (clinical-rules.md §2), a label and the dose."""
    drug = request_drug(resource, bundled)
    concept, medication = drug.concept, drug.medication
    dosages = [d for d in as_list(resource.get("dosageInstruction")) if isinstance(d, dict)]
    texts = [d["text"] for d in dosages if isinstance(d.get("text"), str)]
    found = classifier_for(mappings).classify_drug(drug)
    label = code_text(concept) or (code_text(medication.get("code")) if medication else None)
    label = label or drug.display or (" / ".join(found.ingredients) if found.ingredients else None)
    if label is None:
        label = mappings.label(sorted(found.concepts)[0]) if found.concepts else "medication"
    # the structured dose when there is one; else the order text (clinical-rules.md §10 O-VANC)
    dose = _dose(resource) if _quantities(resource) else _text_dose(texts + _order_text(concept))
    return DraftOrder(kind, ident, found.concepts, label, status, *dose, route=found.route,
                      identified=found.identified, resource=resource)


def _order_text(concept: Any) -> list[str]:
    """``medicationCodeableConcept.text`` when it is order text, not a coding's display."""
    if not isinstance(concept, dict) or not isinstance(concept.get("text"), str):
        return []
    text = concept["text"]
    return [] if text in {c.get("display") for c in codings(concept)} else [text]


def _text_dose(texts: list[str]) -> tuple[float | None, float | None, str | None, str | None]:
    """(mg, mg/kg, as written, problem) from order text that states exactly one dose; a product
    name's strength ("vancomycin 1000 MG Injection") is not a dose per administration."""
    found: dict[tuple[str, float], str] = {}
    for text in texts:
        if _PRODUCT_NAME.search(text):
            continue
        for number, unit in _TEXT_DOSE.findall(text):
            value = float(number.replace(",", ""))
            target = "mg/kg" if unit.lower() == "mg/kg" else "mg"
            try:
                converted = units.convert(value, unit.lower(), target)
            except units.UnitError:
                continue
            found.setdefault((target, round(converted, 6)), f"{number} {unit}")
    if len(found) > 1:
        return None, None, None, ("the order text states more than one dose ("
                                  + ", ".join(found.values()) + ")")
    if not found:
        return None, None, None, None
    (target, value), written = next(iter(found.items()))
    if target == "mg":
        return value, None, written, None
    return None, value, written, None


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
