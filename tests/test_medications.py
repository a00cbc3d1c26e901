"""Medication recognition (clinical-rules.md §2 "Medications") against the real vocabulary of the
CDS Hooks sandbox (tests/data/README.md) and against hand-made orders of other shapes.

Three kinds of expectation, none produced by running the classifier:

- ``sandbox-medication-classes.tsv``: 539 sandbox entries sampled across ingredients, salts,
  dose forms, brands and term types, each with its classes and systemic use decided by hand from
  its name (compared in tests/test_medication_sample.py);
- a whole-list check with an independent oracle written here: drug-name stems per class (``cef``,
  ``-oxacin``, ``-profen``, ``-xaban`` ...) with their exceptions, which is a different method from
  the mapping files' ingredient lists; a brand-only dose-form group ("Keflex Pill") is judged by
  the stems of the sandbox's own branded drugs of that brand ("... [Keflex]");
- orders of forms the sandbox list does not hold (injections, eye drops, creams, inhalers,
  routes, Medication resources, ingredient codes, free text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cds_service.clinical.medications import classifier_for, tokens
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings

DATA = Path(__file__).resolve().parent / "data"
SANDBOX = json.loads((DATA / "rxnorm-sandbox-medications.json").read_text())
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
CLASSIFIER = classifier_for(load_mappings(DEFAULT_MAPPINGS_DIR))


def classes(name: str | None = None, code: str | None = None, **kwargs: Any) -> set[str]:
    concept: dict[str, Any] = {}
    if name is not None:
        concept["text"] = name
    if code is not None:
        concept["coding"] = [{"system": RXNORM, "code": code}]
    return set(CLASSIFIER.classify(concept, **kwargs).concepts)


def top(found: set[str]) -> set[str]:
    """The classes, with member concepts reported as their class: the classifier says
    `vancomycin` (a member of `antibacterial`) and `indomethacin` (of `nsaid`)."""
    members = {"vancomycin": "antibacterial", "ceftriaxone": "antibacterial",
               "indomethacin": "nsaid"}
    return {members.get(c, c) for c in found}


#####################################################################
# The independent oracle: stems per class, on the generic part of a sandbox name

STEMS = {
    "antibacterial": r"\b(cef\w+|ceph\w+|\w+cillin|\w+oxacin|\w+cycline|\w+penem|azithromycin|"
                     r"clarithromycin|erythromycin|dirithromycin|troleandomycin|clindamycin|"
                     r"lincomycin|\w+zolid|sulfa(?:methoxazole|diazine|methizole|pyridine|"
                     r"soxazole)|trimethoprim|nitrofurantoin|methenamine|metronidazole|"
                     r"tinidazole|ornidazole|rif(?:ampin|abutin|apentine)|chloramphenicol|"
                     r"cycloserine|loracarbef|telithromycin|novobiocin|nalidixic|kanamycin|"
                     r"vancomycin|roxithromycin)\b",
    "nsaid": r"\b(\w+profen|\w*coxib|\w+oxicam|\w+fenac|indomethacin|naproxen|sulindac|"
             r"etodolac|ketorolac|nabumetone|oxaprozin|diflunisal|salsalate|tolmetin|"
             r"meclofenamate|mefenamic|(?:magnesium|choline|sodium) salicylate|fenbufen|"
             r"floctafenine|zomepirac|tiaprofen\w*)\b",
    "anticoagulant": r"\b(warfarin|\w+xaban|dabigatran|\w+parin|acenocoumarol|dicumarol|"
                     r"\w+indione|phenprocoumon)\b",
    "antiplatelet": r"\b(aspirin|clopidogrel|prasugrel|ticagrelor|cangrelor|ticlopidine|"
                    r"dipyridamole|cilostazol|vorapaxar)\b",
    "systemic-corticosteroid": r"\b(prednisone|\w*prednisolone|\w+methasone|hydrocortisone|"
                               r"cortisone|triamcinolone|meprednisone|deflazacort|"
                               r"fludrocortisone)\b",
    "ssri": r"\b(\w*citalopram|fluoxetine|paroxetine|sertraline|fluvoxamine|vilazodone)\b",
}
# Non-absorbed oral agents: never systemic by mouth (clinical-rules.md §2); the sandbox is all
# oral solid forms, so these are never systemic there, except a component without a dose form
# (SCDC "Vancomycin 125 MG"), which is taken as systemic (no route, no form).
NON_ABSORBED = r"\b(vancomycin|kanamycin)\b"
NEVER = r"\b(fidaxomicin|rifaximin|neomycin|paromomycin)\b"
# A component (SCDC/SBDC: "Vancomycin 125 MG [Vancocin]") names no dose form.
FORM_WORD = re.compile(r"\b(?:Tablet|Capsule|Pill|Oral|Chewable|Sublingual|Buccal)\b",
                       re.IGNORECASE)


def no_form(name: str) -> bool:
    return not FORM_WORD.search(name)


BRAND = re.compile(r"\[([^\]]+)\]\s*$")


def oracle(name: str) -> set[str]:
    generic = BRAND.sub("", name).lower()
    found = {cls for cls, stem in STEMS.items() if re.search(stem, generic)}
    if re.search(NON_ABSORBED, generic) and not no_form(name):
        # oral capsule of vancomycin or kanamycin: not systemic; other ingredients still count
        rest = re.sub(NON_ABSORBED, "", generic)
        found = {cls for cls, stem in STEMS.items() if re.search(stem, rest)}
    if re.search(NEVER, generic):
        found = {cls for cls, stem in STEMS.items() if re.search(stem, re.sub(NEVER, "", generic))}
    return found


BRANDED: dict[str, list[str]] = {}
for _name in SANDBOX.values():
    _match = BRAND.search(_name)
    if _match:
        BRANDED.setdefault(_match.group(1), []).append(_name)


def oracle_for_entry(name: str) -> set[str]:
    brand = name.removesuffix(" Pill")
    if name.endswith(" Pill") and brand in BRANDED:
        # a brand's dose-form group (oral solid forms): what its branded oral drugs are
        return set().union(*(oracle(n) for n in BRANDED[brand] if not no_form(n)))
    return oracle(name)


def test_oracle_sanity():
    """The oracle itself, on names whose answer is known by hand."""
    assert oracle("Ciprofloxacin 750 MG Oral Tablet [Cipro]") == {"antibacterial"}
    assert oracle("Vancomycin 125 MG Oral Capsule [Vancocin]") == set()
    assert oracle("Vancomycin 125 MG") == {"antibacterial"}
    assert oracle("fidaxomicin 200 MG Oral Tablet") == set()
    assert oracle("Oxycodone Hydrochloride 5 MG / Ibuprofen 400 MG Oral Tablet") == {"nsaid"}
    assert oracle("Aspirin 25 MG / Dipyridamole 200 MG Extended Release Oral Capsule") == {
        "antiplatelet"}
    assert oracle("Fludrocortisone 0.1 MG Oral Tablet") == {"systemic-corticosteroid"}  # H02AA
    assert oracle("Budesonide 3 MG Delayed Release Oral Capsule") == set()
    assert oracle_for_entry("Keflex Pill") == {"antibacterial"}
    assert oracle("Duloxetine 30 MG Delayed Release Oral Capsule") == set()


def test_every_sandbox_entry_against_the_oracle():
    """All 23,342 entries: every systemic antibacterial, NSAID and gate-class drug is recognised,
    non-systemic ones (oral vancomycin, fidaxomicin, rifaximin, neomycin) are not, and nothing
    else is put in a class."""
    wrong = []
    for rxcui, name in SANDBOX.items():
        expected = oracle_for_entry(name)
        got = top(classes(name))
        if got != expected:
            wrong.append(f"{rxcui} {name!r}: expected {sorted(expected)}, got {sorted(got)}")
    assert wrong == [], f"{len(wrong)} entries differ:\n" + "\n".join(wrong[:60])


#####################################################################
# Forms and shapes the sandbox list does not hold (expected classes decided by hand)

@pytest.mark.parametrize(("name", "expected"), (
    ("vancomycin 1000 MG Injection", {"vancomycin"}),
    ("Vancomycin 1 g IV every 12 hours", {"vancomycin"}),
    ("ceftriaxone 2000 MG Injection [Rocephin]", {"ceftriaxone"}),
    ("Ciprofloxacin 3 MG/ML Ophthalmic Solution", set()),
    ("Ciprofloxacin 3 MG/ML / Dexamethasone 1 MG/ML Otic Suspension", set()),
    ("Tobramycin 300 MG/ML Inhalation Solution", set()),
    ("Metronidazole 7.5 MG/ML Vaginal Gel", set()),
    ("Clindamycin 10 MG/ML Topical Gel", set()),
    ("mupirocin 20 MG/ML Topical Ointment [Bactroban]", set()),
    ("Metronidazole 5 MG/ML Injectable Solution", {"antibacterial"}),
    ("Diclofenac Sodium 10 MG/ML Topical Gel [Voltaren]", set()),
    ("Voltaren Gel 1% apply to knee", set()),
    ("Ketorolac Tromethamine 30 MG/ML Injectable Solution", {"nsaid"}),
    ("ketorolac tromethamine 15.75 MG/ACTUAT Nasal Spray [Sprix]", {"nsaid"}),
    ("ketorolac tromethamine 5 MG/ML Ophthalmic Solution", set()),
    ("Indomethacin 50 MG Rectal Suppository", {"indomethacin"}),
    ("Enoxaparin sodium 40 MG/0.4 ML Prefilled Syringe [Lovenox]", {"anticoagulant"}),
    ("Heparin Sodium, Porcine 5000 UNT/ML Injectable Solution", {"anticoagulant"}),
    ("Eliquis 5 mg twice daily", {"anticoagulant"}),
    ("Methylprednisolone sodium succinate 125 MG Injection [Solu-Medrol]",
     {"systemic-corticosteroid"}),
    ("Hydrocortisone 10 MG/ML Topical Cream", set()),
    ("Hydrocortisone 100 MG Rectal Foam", set()),
    ("prednisoLONE acetate 10 MG/ML Ophthalmic Suspension", set()),
    ("Triamcinolone Acetonide 40 MG/ML Injectable Suspension [Kenalog]",
     {"systemic-corticosteroid"}),
    ("Fluticasone propionate 0.05 MG/ACTUAT Nasal Spray", set()),
    ("Lisinopril 10 MG Oral Tablet", set()),
))
def test_forms_outside_the_sandbox_list(name, expected):
    assert classes(name) == expected


def test_route_of_the_order_beats_the_product_form():
    """An IV vancomycin vial given by mouth (C. difficile) is oral: not systemic; the ingredient
    code alone is taken as IV; a route given as text reads too."""
    oral = {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]}
    assert classes("vancomycin 1000 MG Injection", route=[oral]) == set()
    assert classes(code="11124") == {"vancomycin"}
    assert classes(code="11124", route=[{"text": "by mouth"}]) == set()
    assert classes(code="2551", route=[{"text": "ophthalmic"}]) == set()
    assert classes(code="2551") == {"antibacterial"}


def test_medication_resource_code_ingredients_and_form():
    combo = {"resourceType": "Medication", "code": {"text": "Combination product"},
             "ingredient": [{"itemCodeableConcept": {"text": "ibuprofen"}},
                            {"itemCodeableConcept": {"coding": [
                                {"system": RXNORM, "code": "36437"}]}}]}
    assert classes(medication=combo) == {"nsaid", "ssri"}
    drops = {"resourceType": "Medication", "code": {"text": "moxifloxacin 0.5%"},
             "form": {"text": "Ophthalmic solution"}}
    assert classes(medication=drops) == set()


def test_identified_or_not():
    assert CLASSIFIER.classify({"coding": [{"system": RXNORM, "code": "999999999"}]}
                               ).identified is False
    assert CLASSIFIER.classify({"text": "1 g IV q12h"}).identified is False
    assert CLASSIFIER.classify({"text": "Lisinopril 10 MG Oral Tablet"}).identified is True
    assert CLASSIFIER.classify({"text": "Vancomycin 125 MG Oral Capsule"}).identified is True


def test_tokens():
    assert tokens("Ery-Tab 250 MG p.o.") == ("ery", "tab", "250", "mg", "po")
    assert tokens("Goody's Extra Strength") == ("goodys", "extra", "strength")
