"""FHIR support: pure helpers over plain dicts, prefetch resolution, and the one network client."""

from .resources import (
    coding_keys,
    codings,
    parse_datetime,
    reference_id,
    resource_date,
)

__all__ = ["coding_keys", "codings", "parse_datetime", "reference_id", "resource_date"]
