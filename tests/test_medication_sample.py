"""The classifier against a hand-decided sample of the CDS Hooks sandbox's drug list (issue 12,
item 4; clinical-rules.md §2 "Medications").

``tests/data/sandbox-medication-classes.tsv`` holds 539 sandbox entries with the classes and the
systemic use decided by hand from each name (its header says how, by whom and when, and the rules
applied). Each entry is classified the way the sandbox sends it (``medicationCodeableConcept``
with the RxNorm code, the name as ``coding.display`` and as ``text``) and compared:

- ``systemic`` yes: the classes are exactly the expected ones, none of them local;
- ``systemic`` no: no class counts, and the expected classes are recognised as local (the drug is
  not "unidentified");
- ``-``: no class at all.

Disagreements are either fixed in ``mappings/`` or listed in ``KNOWN`` with their reason (strict
xfail: an entry that starts agreeing fails, so the list stays true). The agreement figure is
recorded by ``test_agreement`` (the junit ``agreement`` property) and stated in
tests/data/README.md.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.clinical.medications import Classification, classifier_for
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = DATA / "sandbox-medication-classes.tsv"
SANDBOX: dict[str, str] = json.loads((DATA / "rxnorm-sandbox-medications.json").read_text())
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CLASSIFIER = classifier_for(load_mappings(DEFAULT_MAPPINGS_DIR))

# The selection rule of the sample (the TSV header): words whose entries were sampled.
SAMPLE_WORDS = {
    "antibacterial": "amoxicillin ampicillin penicillin dicloxacillin cephalexin cefadroxil "
                     "cefuroxime cefpodoxime cefdinir cefixime cefprozil cefaclor cefditoren "
                     "ciprofloxacin levofloxacin moxifloxacin ofloxacin doxycycline minocycline "
                     "tetracycline demeclocycline azithromycin clarithromycin erythromycin "
                     "clindamycin linezolid tedizolid sulfamethoxazole trimethoprim "
                     "nitrofurantoin metronidazole tinidazole rifampin fosfomycin methenamine",
    "not-absorbed": "vancomycin fidaxomicin rifaximin neomycin",
    "nsaid": "ibuprofen naproxen diclofenac meloxicam celecoxib indomethacin ketorolac etodolac "
             "nabumetone piroxicam sulindac oxaprozin diflunisal salsalate flurbiprofen "
             "ketoprofen fenoprofen tolmetin meclofenamate mefenamic",
    "anticoagulant": "warfarin apixaban rivaroxaban dabigatran edoxaban",
    "antiplatelet": "aspirin clopidogrel prasugrel ticagrelor ticlopidine dipyridamole "
                    "cilostazol vorapaxar",
    "corticosteroid": "prednisone prednisolone methylprednisolone dexamethasone hydrocortisone "
                      "cortisone betamethasone budesonide fludrocortisone deflazacort",
    "ssri": "sertraline fluoxetine citalopram escitalopram paroxetine fluvoxamine vilazodone",
    "near-miss": "duloxetine venlafaxine trazodone vortioxetine acetaminophen salicylamide "
                 "subsalicylate sulfasalazine dapsone isoniazid ethambutol nitazoxanide "
                 "atovaquone mesalamine glucosamine colchicine pentoxifylline anagrelide "
                 "griseofulvin terbinafine",
}
EVERY = 100

# Entries where the classifier and the hand decision differ, with the reason they are kept.
KNOWN: dict[str, str] = {}


def sample_codes() -> list[str]:
    """The sample's codes, chosen by the rule of the TSV header."""
    keys = list(SANDBOX)
    chosen = {k for i, k in enumerate(keys) if i % EVERY == 0}
    for group, words in SAMPLE_WORDS.items():
        for word in words.split():
            hits = [k for k in keys if word in SANDBOX[k].lower()]
            cap = 2 if group == "near-miss" else 3
            if group == "not-absorbed" or len(hits) <= cap:
                chosen.update(hits)
            else:
                chosen.update(hits[(j * len(hits)) // cap] for j in range(cap))
    return sorted(chosen, key=int)


def read_sample() -> list[dict[str, str]]:
    lines = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines()
             if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))


ROWS = read_sample()


def classify(row: dict[str, str]) -> Classification:
    """As the sandbox sends it (src/reducers/medication-reducers.js: text, coding display and
    code from its drug list)."""
    concept: dict[str, Any] = {"text": row["name"], "coding": [
        {"display": row["name"], "system": RXNORM, "code": row["rxcui"]}]}
    return CLASSIFIER.classify(concept)


def expected(row: dict[str, str]) -> tuple[frozenset[str], frozenset[str]]:
    """(classes that count, classes recognised but local) decided by hand."""
    classes = frozenset() if row["classes"] == "-" else frozenset(row["classes"].split(","))
    return (classes, frozenset()) if row["systemic"] == "yes" else (frozenset(), classes)


def agrees(row: dict[str, str]) -> bool:
    got = classify(row)
    return (got.concepts, got.local) == expected(row)


def test_the_sample_is_the_documented_selection() -> None:
    """The file holds exactly the entries the header's rule chooses, with the sandbox's names."""
    assert [r["rxcui"] for r in ROWS] == sample_codes()
    assert all(SANDBOX[r["rxcui"]] == r["name"] for r in ROWS)
    assert {r["systemic"] for r in ROWS} <= {"yes", "no", "-"}
    assert all((r["classes"] == "-") == (r["systemic"] == "-") for r in ROWS)
    assert set(KNOWN) <= {r["rxcui"] for r in ROWS}


@pytest.mark.parametrize("row", [
    pytest.param(r, id=r["rxcui"], marks=[pytest.mark.xfail(reason=KNOWN[r["rxcui"]],
                                                            strict=True)]
                 if r["rxcui"] in KNOWN else [])
    for r in ROWS])
def test_entry(row: dict[str, str]) -> None:
    got = classify(row)
    assert (sorted(got.concepts), sorted(got.local)) == tuple(sorted(s) for s in expected(row)), (
        f"{row['rxcui']} {row['name']!r}: expected {row['classes']} systemic {row['systemic']}")


def test_agreement(record_property: Any) -> None:
    """The agreement figure (recorded as the test's ``agreement`` property, and shown when an
    unlisted disagreement fails the test); every disagreement is a listed one."""
    disagree = [r["rxcui"] for r in ROWS if not agrees(r)]
    with_class = [r for r in ROWS if r["classes"] != "-"]
    figure = (f"{len(ROWS) - len(disagree)}/{len(ROWS)} entries agree "
              f"({100 * (len(ROWS) - len(disagree)) / len(ROWS):.1f}%); "
              f"{sum(agrees(r) for r in with_class)}/{len(with_class)} of the entries with a "
              "class")
    record_property("agreement", figure)
    assert sorted(disagree, key=int) == sorted(KNOWN, key=int), figure
