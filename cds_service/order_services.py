"""Order-select and order-sign services (clinical-rules.md §10; product-contract.md).

Both answer from the patient's record (the same prefetch templates as patient-view; the spec
forbids ``draftOrders`` and ``selections`` as prefetch tokens, cds-hooks-2.0.md §3.5) plus the
draft orders in the context. They apply to patients with an index amputation only; the
patient-view relevance gate does not apply, and they return only O-* cards, never the assessment
card.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .cards import render_response
from .clinical.draft_orders import read_draft_orders
from .clinical.facts import gather
from .clinical.order_checks import order_cards
from .clinical.record import Record
from .clinical.rules import assess
from .clinical.vocabulary import DISCLAIMER
from .fhir.prefetch import ResolvedData
from .hooks import HookRequest, HookService
from .mappings import MappingTable

USAGE = ("Needs the patient's Conditions, Procedures, Observations and DiagnosticReports "
         "(prefetched or readable through fhirServer). Draft orders may be R4, STU3 or DSTU2.")


def make_order_hook(mappings: MappingTable, hook: str):  # type: ignore[no-untyped-def]
    """The handler of one order hook.

    :raises RequestInvalid: ``context.draftOrders`` is not an object, or ``context.selections``
        is not a list of strings (400).
    """

    def handle(request: HookRequest, data: ResolvedData, now: datetime) -> list[dict[str, Any]]:
        drafts = read_draft_orders(request.context, hook, mappings, request.patient_id)
        if not drafts.checked:
            return []
        record = Record(data.all(), mappings, now, request.patient_id, data.fetch_attachment)
        if record.amputation is None:
            return []
        assessment = assess(gather(record))
        specs = order_cards(assessment, drafts, hook, request.patient_id)
        return render_response(specs, DISCLAIMER)

    return handle


def order_services(mappings: MappingTable, templates: Mapping[str, str],
                   required: frozenset[str]) -> list[HookService]:
    """Return the order-hook services: ``tma-order-select`` and ``tma-order-sign``."""
    return [
        HookService(
            id="tma-order-select",
            hook="order-select",
            title="Bone-infection advice while ordering after partial-foot amputation",
            description="For patients after a partial-foot amputation: while antibiotics, "
            "NSAIDs, vancomycin or a bone scan are being selected, advises a bone biopsy before "
            "antibiotics, flags findings that favor heterotopic ossification, NSAID safety gates, "
            "vancomycin mg/kg dosing, and MRI instead of a bone scan.",
            prefetch=dict(templates),
            required_prefetch=required,
            handler=make_order_hook(mappings, "order-select"),
            usage_requirements=USAGE,
        ),
        HookService(
            id="tma-order-sign",
            hook="order-sign",
            title="Bone-infection checks at signing after partial-foot amputation",
            description="For patients after a partial-foot amputation: checks the draft orders "
            "at signing (antibiotics before a bone biopsy, antibiotics when heterotopic "
            "ossification is favored, NSAID safety gates, vancomycin mg/kg dose and dosing data, "
            "bone scan where MRI is preferred) and offers to replace or remove them.",
            prefetch=dict(templates),
            required_prefetch=required,
            handler=make_order_hook(mappings, "order-sign"),
            usage_requirements=USAGE,
        ),
    ]
