"""The services this CDS server offers, with their prefetch templates (product-contract.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from . import units
from .cards import CardSpec, render_response
from .clinical import validation
from .clinical.facts import Facts, gather
from .clinical.medications import classifier_for
from .clinical.patient_view import patient_view_cards
from .clinical.record import Record
from .clinical.reportformats import Fetch
from .clinical.rules import Assessment, assess, is_relevant
from .clinical.vocabulary import DISCLAIMER
from .config import Settings
from .fhir.prefetch import ResolvedData
from .hooks import HookRequest, HookService, Registry
from .mappings import MappingTable, load_mappings

OBSERVATION_CONCEPTS = (
    "esr", "crp", "procalcitonin", "wbc", "alkaline-phosphatase", "body-temperature",
    "heart-rate", "respiratory-rate", "body-weight", "creatinine", "egfr", "hba1c",
    "bone-culture", "bone-histopathology", "blood-culture", "probe-to-bone", "exposed-bone",
    "ulcer-area", "plantar-prominence", "decreased-range-of-motion",
    "om-imaging-pattern", "soft-tissue-ossification", "mature-ho-pattern",
    "confluent-marrow-replacement", "normal-marrow", "bone-scan-phase1-increased",
    "bone-scan-phase2-increased", "bone-scan-phase3-increased", "leukocyte-scan-positive",
    "pet-positive",
)
PATIENT = "{{context.patientId}}"
KEY_LABELS = {
    "patient": "Patient", "conditions": "Conditions", "procedures": "Procedures",
    "observations": "Observations", "reports": "Imaging reports", "imaging": "Imaging studies",
    "medications": "Medication requests",
}
REQUIRED = frozenset({"conditions", "procedures", "observations", "reports"})


def prefetch_templates(mappings: MappingTable) -> dict[str, str]:
    """Templates in the spec's recommended query subset: type searches by patient, token
    equality (``code``, ``status``), ``_sort=-date`` and ``_count``. CDS Hooks 2.0 tokens cannot
    express "now minus 90 days", so the record is bounded by code filters and counts instead of
    date ranges; the rules apply their own windows."""
    codes = ",".join(mappings.codes_for_search(OBSERVATION_CONCEPTS))
    return {
        "patient": f"Patient/{PATIENT}",
        "conditions": f"Condition?patient={PATIENT}&_count=200",
        "procedures": f"Procedure?patient={PATIENT}&_count=100",
        "observations": f"Observation?patient={PATIENT}&code={codes}&_sort=-date&_count=500",
        "reports": f"DiagnosticReport?patient={PATIENT}&_sort=-date&_count=100",
        "imaging": f"ImagingStudy?patient={PATIENT}&_count=50",
        "medications": f"MedicationRequest?patient={PATIENT}&status=active,completed&_count=100",
    }


def unavailable_data(data: ResolvedData) -> dict[str, str]:
    """Optional data that could not be had, and partial data, keyed by a readable name."""
    out = {KEY_LABELS.get(k, k): f"not available ({why})" for k, why in data.missing.items()}
    out.update({KEY_LABELS.get(k, k): why for k, why in data.notes.items()})
    if "patient" in data.resources and not data.resources["patient"]:  # answered, but empty
        out[KEY_LABELS["patient"]] = "no Patient resource in the record"
    return out


@dataclass
class Evaluation:
    """The patient-view assessment of one record: what the card says and the timeline shows."""

    record: Record
    facts: Facts
    assessment: Assessment | None  # None when the relevance gate keeps the service quiet
    cards: list[CardSpec]
    unavailable: dict[str, str]


def evaluate(resources: Iterable[dict[str, Any]], mappings: MappingTable, now: datetime,
             patient_id: str, unavailable: Mapping[str, str],
             fetch_attachment: Fetch | None = None) -> Evaluation:
    """Read the record, assess it and build the patient-view cards (one path for the hook and
    the evidence-timeline app, so the two never disagree). ``fetch_attachment`` reads report
    attachments given by url from the request's FHIR server (None: they are noted as unread)."""
    record = Record(resources, mappings, now, patient_id, fetch_attachment)
    facts = gather(record)
    if not is_relevant(facts):
        return Evaluation(record, facts, None, [], dict(unavailable))
    assessment = assess(facts)
    specs = patient_view_cards(assessment, patient_id, unavailable, record.notes)
    return Evaluation(record, facts, assessment, specs, dict(unavailable))


APP_LINK_LABEL = "Evidence timeline (labs, imaging, cultures, antibiotics since the amputation)"


def make_patient_view(mappings: MappingTable, app_launch_url: str | None = None):  # type: ignore[no-untyped-def]
    """The patient-view handler; with ``app_launch_url`` the assessment card links the SMART
    evidence-timeline app (CDS Hooks ``links[]``, type ``smart``; product-contract.md)."""
    link = ((APP_LINK_LABEL, app_launch_url, "smart"),) if app_launch_url else ()

    def handle(request: HookRequest, data: ResolvedData, now: datetime) -> list[dict[str, Any]]:
        result = evaluate(data.all(), mappings, now, request.patient_id, unavailable_data(data),
                          data.fetch_attachment)
        specs = [replace(s, links=link) if s.kind == "assessment" and link else s
                 for s in result.cards]
        return render_response(specs, DISCLAIMER)

    return handle


def app_launch_url(settings: Settings) -> str | None:
    """Where the EHR launches the evidence-timeline app, when it is registered."""
    if not settings.smart_client_id or not settings.public_url:
        return None
    return f"{settings.public_url}/app/launch"


def build_registry(settings: Settings) -> Registry:
    """Load the mappings and build every service (raises StartupError when broken)."""
    mappings = load_mappings(settings.mappings_dir, settings.extra_mappings)
    classifier_for(mappings)  # medication index: broken medication data stops start-up
    units.warm_up()
    validation.warm_up()
    templates = prefetch_templates(mappings)
    services = [
        HookService(
            id="tma-bone-assessment",
            hook="patient-view",
            title="Osteomyelitis vs heterotopic ossification after partial-foot amputation",
            description="For patients after a transmetatarsal, ray or other partial-foot "
            "amputation: assesses osteomyelitis and heterotopic ossification with a cited "
            "rulebook, suggests the next tests as draft orders, and gives guarded management "
            "advice. Stays silent for unrelated charts.",
            prefetch=templates,
            required_prefetch=REQUIRED,
            handler=make_patient_view(mappings, app_launch_url(settings)),
            usage_requirements="Needs the patient's Conditions, Procedures, Observations and "
            "DiagnosticReports (prefetched or readable through fhirServer).",
        ),
    ]
    from .order_services import order_services  # the order hooks (clinical-rules.md §10)

    services += order_services(mappings, templates, REQUIRED)
    return Registry(services, mappings)
