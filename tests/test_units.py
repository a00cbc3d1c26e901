"""cds_service/units.py: every conversion the rulebook names (§2 "Latest value"), worked by hand.

CRP mg/dL x 10 = mg/L; WBC 10*3/uL = 10*9/L; [degF] -> Cel = (F - 32) x 5/9; [lb_av] -> kg
x 0.45359237 (the international avoirdupois pound); creatinine umol/L / 88.4 = mg/dL. A unit
that cannot be converted raises UnitError (the record reader notes it and drops the value).
"""

from __future__ import annotations

import pytest

from cds_service.units import UnitError, convert, normalise


@pytest.mark.parametrize(("value", "unit", "target", "concept", "expected"), (
    (8.2, "mg/dL", "mg/L", "crp", 82.0),
    (8.2, "mg/dl", "mg/L", "crp", 82.0),
    (15.0, "mg/l", "mg/L", "crp", 15.0),
    (12.0, "10*3/uL", "10*9/L", "wbc", 12.0),
    (12.0, "K/uL", "10*9/L", "wbc", 12.0),
    (12.0, "x10^3/uL", "10*9/L", "wbc", 12.0),
    (12.0, "x10^9/L", "10*9/L", "wbc", 12.0),
    (16581, "/uL", "10*9/L", "wbc", 16.581),
    (212.0, "[degF]", "Cel", "body-temperature", 100.0),
    (32.0, "[degF]", "Cel", "body-temperature", 0.0),
    (98.6, "[degF]", "Cel", "body-temperature", 37.0),
    (98.6, "degF", "Cel", "body-temperature", 37.0),
    (98.6, "°F", "Cel", "body-temperature", 37.0),
    (98.6, "F", "Cel", "body-temperature", 37.0),
    (37.2, "°C", "Cel", "body-temperature", 37.2),
    (37.2, "C", "Cel", "body-temperature", 37.2),
    (37.2, "degC", "Cel", "body-temperature", 37.2),
    (1.0, "[lb_av]", "kg", "body-weight", 0.45359237),
    (200.0, "lb", "kg", "body-weight", 90.718474),
    (200.0, "lbs", "kg", "body-weight", 90.718474),
    (82000.0, "g", "kg", "body-weight", 82.0),
    (88.4, "umol/L", "mg/dL", "creatinine", 1.0),
    (0.0884, "mmol/L", "mg/dL", "creatinine", 1.0),
    (95.0, "mm/hr", "mm/h", "esr", 95.0),
    (110.0, "bpm", "/min", "heart-rate", 110.0),
    (24.0, "breaths/min", "/min", "respiratory-rate", 24.0),
    (45.0, "mL/min/1.73m2", "mL/min/{1.73_m2}", "egfr", 45.0),
    (130.0, "IU/L", "U/L", "alkaline-phosphatase", 130.0),
    (250.0, "mm2", "cm2", "ulcer-area", 2.5),
    (2.5, "cm²", "cm2", "ulcer-area", 2.5),
    (1.5, "G", "mg", "", 1500.0),   # grams on a draft order, never gauss
    (1.5, "GM", "mg", "", 1500.0),
    (500.0, "mcg", "mg", "", 0.5),
))
def test_conversions(value, unit, target, concept, expected):
    assert convert(value, unit, target, concept) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("unit", "target", "concept"), (
    ("mmol/L", "mg/L", "crp"),          # molar CRP: no molar mass is listed
    ("umol/L", "mg/dL", "egfr"),        # the creatinine factor is for creatinine only
    ("mg/dL", "10*9/L", "wbc"),         # another dimension
    ("furlongs", "kg", "body-weight"),  # not a unit
    ("", "mg/L", "crp"),
    (None, "mg/L", "crp"),
))
def test_units_that_cannot_be_converted_raise(unit, target, concept):
    with pytest.raises(UnitError):
        convert(1.0, unit, target, concept)


def test_normalise_keeps_ucum_and_maps_spellings():
    assert normalise(" mg/dL ") == "mg/dL"
    assert normalise("LBS") == "[lb_av]"
    assert normalise("°f") == "[degF]"
    assert normalise("10*9/L") == "10*9/L"
