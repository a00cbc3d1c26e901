"""Time to read and classify one draft order (README, Order hooks, "Medications")::

    PYTHONPATH=. .venv/bin/python benchmarks/medications.py

cold: names seen for the first time; warm: names memoised (a service sees the same drugs again).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from cds_service.clinical.draft_orders import read_order
from cds_service.clinical.medications import classifier_for
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings

LIST = Path(__file__).resolve().parent.parent / "tests" / "data" / "rxnorm-sandbox-medications.json"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"


def order(code: str, name: str) -> dict[str, Any]:
    dose = {"value": 500, "unit": "mg", "system": UCUM, "code": "mg"}
    return {"resourceType": "MedicationRequest", "id": "x", "status": "draft", "intent": "order",
            "medicationCodeableConcept": {
                "coding": [{"system": RXNORM, "code": code, "display": name}], "text": name},
            "dosageInstruction": [{"text": name, "route": {"text": "oral"},
                                   "doseAndRate": [{"doseQuantity": dose}]}]}


def main() -> None:
    mappings = load_mappings(DEFAULT_MAPPINGS_DIR)
    classifier_for(mappings)
    orders = [order(c, n) for c, n in list(json.loads(LIST.read_text()).items())[:5000]]
    for label in ("cold", "warm"):
        start = time.perf_counter()
        for draft in orders:
            read_order(draft, mappings, {}, [], "bench")
        each = (time.perf_counter() - start) / len(orders) * 1e6
        sys.stdout.write(f"{label}: {each:.1f} µs per draft order ({len(orders)} orders)\n")


if __name__ == "__main__":
    main()
