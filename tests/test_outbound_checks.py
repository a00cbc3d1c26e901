"""Outbound suggestions are validated whole before they leave (cds_service/clinical/orders.py
``_checked``): every orderable is valid for any patient, and a broken one is refused with the
real resource's first error, also once a verdict is remembered."""

from __future__ import annotations

import pytest

from cds_service.clinical import validation
from cds_service.clinical.orders import (
    ORDERABLES,
    InvalidOutboundResource,
    indomethacin_request,
    service_request,
)


@pytest.fixture(autouse=True)
def _forget() -> None:
    validation.clear_cache()


@pytest.mark.parametrize("key", sorted(ORDERABLES))
def test_every_orderable_is_valid_and_keeps_its_own_patient(key: str) -> None:
    for patient in ("p1", "bench-cold-17"):
        resource = service_request(key, patient, "left", "reason", note="a note")
        assert resource["subject"] == {"reference": f"Patient/{patient}"}
        assert validation.problem(resource) is None  # the real resource, validated whole


def test_indomethacin_is_valid_for_two_patients() -> None:
    assert indomethacin_request("p1")["subject"] == {"reference": "Patient/p1"}
    assert indomethacin_request("p2")["subject"] == {"reference": "Patient/p2"}


def test_a_broken_suggestion_fails_with_its_first_error() -> None:
    # An empty reason text is not a FHIR string (pattern [ \r\n\t\S]+): reasonCode[0].text.
    for _ in range(2):  # the second time the verdict is remembered: still refused
        with pytest.raises(InvalidOutboundResource, match=r"ServiceRequest suggestion invalid: "
                           r"reasonCode\.0\.text: String should match pattern"):
            service_request("xr", "p1", "right", "")

