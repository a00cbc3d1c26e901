"""Outbound FHIR resources for suggestions: draft ServiceRequests and MedicationRequests.

The codes are part of the product contract (clinical-rules.md §8, §9). Every resource is
validated as R4 with ``fhir.resources`` R4B before it leaves the service: the fixed ones
(:class:`OrderTemplate`) whole once, and per patient the one part that changes, the subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import quickcheck
from .validation import problem

CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
FOOT_SITE = {"left": ("22335008", "Left foot structure"), "right": ("7769000",
                                                                    "Right foot structure")}


@dataclass(frozen=True)
class Orderable:
    key: str
    label: str
    codings: tuple[tuple[str, str, str], ...]  # (system, code, display)


ORDERABLES = {o.key: o for o in (
    Orderable("xr", "Foot radiograph, 3 or more views",
              ((CPT, "73630", "Radiologic examination, foot; complete, minimum of 3 views"),)),
    Orderable("esr", "ESR (erythrocyte sedimentation rate)",
              ((LOINC, "4537-7", "Erythrocyte sedimentation rate by Westergren method"),
               (CPT, "85652", "Sedimentation rate, erythrocyte; automated"))),
    Orderable("crp", "CRP (C-reactive protein)",
              ((LOINC, "1988-5", "C reactive protein [Mass/volume] in Serum or Plasma"),
               (CPT, "86140", "C-reactive protein"))),
    Orderable("mri", "MRI foot without and with contrast",
              ((CPT, "73720", "MRI lower extremity other than joint; without contrast, followed "
                "by contrast and further sequences"),)),
    Orderable("mri-plain", "MRI foot without contrast",
              ((CPT, "73718", "MRI lower extremity other than joint; without contrast"),)),
    Orderable("wbc-spect", "Leukocyte scintigraphy with SPECT/CT",
              ((CPT, "78830", "Radiopharmaceutical localization of inflammatory process; SPECT "
                "with concurrently acquired CT, single area, single day"),)),
    Orderable("pet", "FDG-PET/CT",
              ((CPT, "78815", "PET with concurrently acquired CT; skull base to mid-thigh"),)),
    Orderable("bone-scan", "Three-phase bone scan",
              ((CPT, "78315", "Bone and/or joint imaging; 3 phase study"),)),
    Orderable("blood-culture", "Blood cultures",
              ((LOINC, "600-7", "Bacteria identified in Blood by Culture"),)),  # C (B1)
    Orderable("biopsy", "Percutaneous bone biopsy for culture and histology",
              ((CPT, "20220", "Biopsy, bone, trocar, or needle; superficial"),)),
)}


class InvalidOutboundResource(RuntimeError):
    """A resource we built is not valid R4: a bug in this service, never the client's fault."""


def _checked(resource: dict[str, Any], template_decided: bool = False) -> dict[str, Any]:
    """Validate the resource before it leaves (``validation.problem``).

    ``template_decided``: the resource is a copy of an :class:`OrderTemplate` that the quick
    check accepted whole, with only ``subject`` replaced. The quick check walks a resource field
    by field (``quickcheck._walk``: each value with its field's own plan, then the required and
    choice fields, which the copy has exactly as the template), so the copy is accepted whole
    exactly when its subject is accepted as a Reference: that is all that is checked then.
    Anything the quick check does not decide validates the copy whole, for the model's verdict
    and first error."""
    if template_decided and quickcheck.valid(resource["subject"], "Reference"):
        return resource
    why = problem(resource)
    if why is not None:
        raise InvalidOutboundResource(f"{resource['resourceType']} suggestion invalid: {why}")
    return resource


TEMPLATE_SUBJECT = "Patient/template"  # the subject of a template, replaced for each patient


class OrderTemplate:
    """A suggested resource whose every part but the subject is fixed: built and validated
    whole once (at import: a broken one stops the service from starting), then copied for each
    patient with the patient's subject (:meth:`for_patient`, a few µs instead of a build and a
    validation of the whole resource). The copy shares the fixed parts with the template; a
    response only reads them (tests/test_outbound_checks.py checks they stay as built)."""

    __slots__ = ("_decided", "resource")

    def __init__(self, resource: dict[str, Any]) -> None:
        resource = {**resource, "subject": {"reference": TEMPLATE_SUBJECT}}  # same key order
        _checked(resource)  # raises InvalidOutboundResource
        self.resource = resource
        self._decided = quickcheck.valid(resource, resource["resourceType"])

    def for_patient(self, patient_id: str) -> dict[str, Any]:
        resource = self.resource.copy()
        resource["subject"] = {"reference": f"Patient/{patient_id}"}
        return _checked(resource, self._decided)


def _service_request(key: str, side: str | None, reason: str, note: str | None,
                     subject: dict[str, Any]) -> dict[str, Any]:
    orderable = ORDERABLES[key]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {"coding": [{"system": s, "code": c, "display": d}
                            for s, c, d in orderable.codings], "text": orderable.label},
        "subject": subject,
        "reasonCode": [{"text": reason}],
    }
    if side in FOOT_SITE:
        code, display = FOOT_SITE[side]
        resource["bodySite"] = [{"coding": [{"system": SNOMED, "code": code,
                                             "display": display}]}]
    if note:
        resource["note"] = [{"text": note}]
    return resource


def service_request(key: str, patient_id: str, side: str | None, reason: str,
                    note: str | None = None) -> dict[str, Any]:
    """A draft ServiceRequest (intent proposal) for one orderable, on the amputation side, built
    and validated whole (the next tests use :class:`DraftServiceRequest` templates instead)."""
    return _checked(_service_request(key, side, reason, note,
                                     {"reference": f"Patient/{patient_id}"}))


class DraftServiceRequest:
    """The draft ServiceRequest of one orderable with a fixed reason and note, as a template for
    each foot (:data:`FOOT_SITE`, and no body site), with what a suggestion shows of it."""

    __slots__ = ("_templates", "codes", "orderable")

    def __init__(self, key: str, reason: str, note: str | None = None) -> None:
        self.orderable = ORDERABLES[key]
        self.codes = tuple(f"{system}|{code}" for system, code, _ in self.orderable.codings)
        self._templates = {side: OrderTemplate(_service_request(key, side, reason, note, {}))
                           for side in (None, *FOOT_SITE)}

    def for_patient(self, patient_id: str, side: str | None) -> dict[str, Any]:
        """The patient's copy, with the body site of ``side`` (none for an unknown side)."""
        return self._templates[side if side in FOOT_SITE else None].for_patient(patient_id)


# Indomethacin 25 mg by mouth three times daily for 3-6 weeks (clinical-rules.md §9).
INDOMETHACIN = OrderTemplate({
    "resourceType": "MedicationRequest",
    "status": "draft",
    "intent": "proposal",
    "medicationCodeableConcept": {
        "coding": [{"system": RXNORM, "code": "197817",
                    "display": "indomethacin 25 MG Oral Capsule"}],
        "text": "indomethacin 25 mg oral capsule"},
    "subject": {},
    "reasonCode": [{"text": "Heterotopic ossification after partial-foot amputation "
                            "(prophylaxis-level evidence)"}],
    "dosageInstruction": [{
        "text": "25 mg by mouth three times daily for 3 to 6 weeks",
        "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d",
                              "boundsDuration": {"value": 6, "unit": "wk", "system": UCUM,
                                                 "code": "wk"}}},
        "doseAndRate": [{"doseQuantity": {"value": 25, "unit": "mg", "system": UCUM,
                                          "code": "mg"}}],
    }],
})


def indomethacin_request(patient_id: str) -> dict[str, Any]:
    """Indomethacin 25 mg by mouth three times daily for 3-6 weeks (clinical-rules.md §9)."""
    return INDOMETHACIN.for_patient(patient_id)
