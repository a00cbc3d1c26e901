"""A finding: one fact read from one resource, with the reference to that resource."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

UNIT_DISPLAY = {"mL/min/{1.73_m2}": "mL/min/1.73 m²", "10*9/L": "×10⁹/L", "Cel": "°C",
                "cm2": "cm²"}


@dataclass(frozen=True, init=False)
class Finding:
    """One fact read from one resource; ``ref`` is that resource (``Observation/123``)."""

    concept: str
    label: str
    ref: str
    when: datetime | None
    value: float | None = None
    unit: str | None = None
    polarity: str | None = None  # positive | negative | uncertain (coded results, imaging)
    modality: str | None = None  # imaging kind concept for imaging findings
    text: str | None = None  # how to show the value when it is not a number
    high: float | None = None  # referenceRange.high in the finding's unit (ALP rule)

    def __init__(self, concept: str, label: str, ref: str, when: datetime | None,
                 value: float | None = None, unit: str | None = None,
                 polarity: str | None = None, modality: str | None = None,
                 text: str | None = None, high: float | None = None) -> None:
        # The fields above, set once into the instance's dict: the generated __init__ of a
        # frozen dataclass calls object.__setattr__ per field, twice the cost, and every chart
        # builds a dozen findings (issue 17). tests/test_record_queries.py keeps the two equal.
        self.__dict__.update(concept=concept, label=label, ref=ref, when=when, value=value,
                             unit=unit, polarity=polarity, modality=modality, text=text,
                             high=high)

    def shown_value(self) -> str:
        if self.value is not None:
            number = f"{self.value:.1f}".rstrip("0").rstrip(".")
            unit = UNIT_DISPLAY.get(self.unit or "", self.unit or "")
            return f"{number} {unit}".strip()
        if self.text:
            return self.text
        if self.polarity == "uncertain":
            return "reported as possible"
        return self.polarity or "present"


def ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"
