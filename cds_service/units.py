"""Unit conversion to each concept's canonical UCUM unit: the one place that converts units.

UCUM arithmetic is done by ``ucumvert`` (pint with a UCUM grammar; stack-measurements.md §8).
Conversions that need a molar mass are not UCUM arithmetic and are listed here with their source.
Parsed units and factors are cached, so a conversion on the hot path is a dict look-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache

# Non-UCUM spellings seen in lab feeds → UCUM.
ALIASES = {
    "mm/hr": "mm/h", "mm/hour": "mm/h", "mg/dl": "mg/dL", "mg/l": "mg/L", "ng/ml": "ng/mL",
    "k/ul": "10*3/uL", "x10^3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "x10e3/ul": "10*3/uL",
    "10^9/l": "10*9/L", "x10^9/l": "10*9/L", "giga/l": "10*9/L",
    "°c": "Cel", "degc": "Cel", "c": "Cel", "°f": "[degF]", "degf": "[degF]", "f": "[degF]",
    "lb": "[lb_av]", "lbs": "[lb_av]", "bpm": "/min", "beats/min": "/min", "breaths/min": "/min",
    "{beats}/min": "/min", "{breaths}/min": "/min",
    "ml/min/1.73m2": "mL/min/{1.73_m2}", "ml/min/{1.73_m2}": "mL/min/{1.73_m2}",
    "iu/l": "U/L", "u/l": "U/L", "cm^2": "cm2", "cm²": "cm2",
    # doses on draft orders; "G" and "MG" must never reach the UCUM parser upper-case (gauss)
    "g": "g", "gm": "g", "gram": "g", "grams": "g", "mg": "mg", "milligram": "mg",
    "milligrams": "mg", "mcg": "ug", "ug": "ug", "µg": "ug", "microgram": "ug",
    "micrograms": "ug", "mg/kg": "mg/kg", "g/kg": "g/kg",
}

# Molar ↔ mass conversions (not UCUM arithmetic). Creatinine 113.12 g/mol: 1 mg/dL = 88.4 umol/L
# (clinical-rules.md §2; clinical-evidence.md B1).
MOLAR = {("umol/L", "mg/dL"): 1 / 88.4, ("mmol/L", "mg/dL"): 1000 / 88.4}
MOLAR_CONCEPTS = {"creatinine"}


class UnitError(ValueError):
    """A value's unit cannot be converted to the concept's canonical unit."""


_lock = threading.Lock()
_registry = None


def _ureg():  # type: ignore[no-untyped-def]
    global _registry
    with _lock:
        if _registry is None:
            from ucumvert import PintUcumRegistry

            _registry = PintUcumRegistry()
    return _registry


def warm_up() -> None:
    """Load the UCUM registry now (start-up), not on the first request."""
    _ureg()


def normalise(unit: str) -> str:
    text = unit.strip()
    return ALIASES.get(text.lower(), text)


@lru_cache(maxsize=512)
def _converter(source: str, target: str, concept: str) -> Callable[[float], float]:
    if source == target:
        return lambda v: v
    if concept in MOLAR_CONCEPTS and (source, target) in MOLAR:
        factor = MOLAR[(source, target)]
        return lambda v: v * factor
    ureg = _ureg()
    try:
        src = ureg.from_ucum(source)
        dst = ureg.from_ucum(target)
        probe = ureg.Quantity(1.0, src.units if hasattr(src, "units") else src).to(
            dst.units if hasattr(dst, "units") else dst)
        zero = ureg.Quantity(0.0, src.units if hasattr(src, "units") else src).to(
            dst.units if hasattr(dst, "units") else dst)
    except Exception as exc:  # ucumvert raises parse errors and pint errors of several kinds
        raise UnitError(f"{source} cannot be converted to {target}") from exc
    src_mag = float(src.magnitude) if hasattr(src, "magnitude") else 1.0
    dst_mag = float(dst.magnitude) if hasattr(dst, "magnitude") else 1.0
    slope = float(probe.magnitude) - float(zero.magnitude)
    offset = float(zero.magnitude)
    return lambda v: ((v * src_mag) * slope + offset) / dst_mag


def convert(value: float, unit: str | None, target: str, concept: str = "") -> float:
    """Convert ``value`` from ``unit`` to the UCUM unit ``target``.

    Examples: ``convert(8.2, "mg/dL", "mg/L")`` -> 82.0; ``convert(16581, "/uL", "10*9/L")`` ->
    16.581; ``convert(1.2, "mg/dL", "mg/dL")`` -> 1.2.

    :raises UnitError: the unit is missing or cannot be converted.
    """
    if not unit:
        raise UnitError(f"no unit given (expected {target})")
    return _converter(normalise(unit), target, concept)(value)
