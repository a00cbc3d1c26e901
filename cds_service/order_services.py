"""Order-select and order-sign services (clinical-rules.md §10). Not built yet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .hooks import HookService
from .mappings import MappingTable


def order_services(mappings: MappingTable, templates: Mapping[str, str],
                   required: frozenset[str]) -> list[HookService]:
    """Return the order-hook services."""
    _ = (mappings, templates, required, Any)
    return []
