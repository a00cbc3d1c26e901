"""The mapping files: every contract concept is there, codes are clean, site files merge, and a
broken file stops start-up naming the file and the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.errors import MappingError
from cds_service.mappings import load_mappings

CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "docs" / "product-contract.md"
CONTRACT_IDS = {
    "esr", "crp", "procalcitonin", "wbc", "alkaline-phosphatase", "body-temperature",
    "heart-rate", "respiratory-rate", "body-weight", "creatinine", "egfr", "hba1c",
    "bone-culture", "bone-histopathology", "blood-culture", "probe-to-bone", "exposed-bone",
    "ulcer-area", "plantar-prominence", "decreased-range-of-motion", "osteomyelitis",
    "heterotopic-ossification", "diabetes", "foot-ulcer", "surgical-wound-complication",
    "abscess", "charcot-neuroarthropathy", "peripheral-arterial-disease",
    "chronic-kidney-disease-advanced", "acute-kidney-injury", "heart-failure",
    "myocardial-infarction", "gi-bleeding", "peptic-ulcer", "partial-foot-amputation-status",
    "partial-foot-amputation", "bone-biopsy", "cabg", "foot-radiograph", "foot-mri", "foot-ct",
    "three-phase-bone-scan", "leukocyte-scan", "fdg-pet", "om-imaging-pattern",
    "soft-tissue-ossification", "mature-ho-pattern", "confluent-marrow-replacement",
    "normal-marrow", "bone-scan-phase1-increased", "bone-scan-phase2-increased",
    "bone-scan-phase3-increased", "leukocyte-scan-positive", "pet-positive", "antibacterial",
    "vancomycin", "ceftriaxone", "indomethacin", "nsaid", "anticoagulant", "antiplatelet",
    "systemic-corticosteroid", "ssri",
}
SYSTEMS = {"http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm",
           "http://www.ama-assn.org/go/cpt", "http://www.nlm.nih.gov/research/umls/rxnorm",
           "http://www.cms.gov/Medicare/Coding/ICD10", "http://www.whocc.no/atc",
           "http://dicom.nema.org/resources/ontology/DCM",
           "http://tma-cds.invalid/fhir/CodeSystem/finding"}


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return load_mappings(DEFAULT_MAPPINGS_DIR)


def test_every_contract_concept_is_mapped(table):
    assert CONTRACT_IDS <= set(table.concepts)


@pytest.mark.skipif(not CONTRACT.exists(), reason="shared/docs not beside the checkout")
def test_the_id_list_here_is_the_contracts():
    text = CONTRACT.read_text()
    section = text.split("Concept ids")[1].split("A resource's own codings")[0]
    assert set(re.findall(r"`([a-z0-9-]+)`", section)) == CONTRACT_IDS


def test_codes_use_known_systems_and_quantities_have_units(table):
    for concept in table.concepts.values():
        for code in concept.codes | {p for p in concept.prefixes}:
            assert code.split("|")[0] in SYSTEMS, f"{concept.id}: {code}"
    for concept_id in ("esr", "crp", "wbc", "egfr", "creatinine", "body-weight", "ulcer-area"):
        assert table.concepts[concept_id].unit


def test_known_pitfalls_are_respected(table):
    """clinical-evidence.md B6: 15-minute ESR and hs-CRP are not ESR/CRP; 309090 is not
    ceftriaxone; toe amputations are not index amputations."""
    assert table.concept_of_key("http://loinc.org|43402-7") is None
    assert table.concept_of_key("http://loinc.org|30522-7") is None
    assert table.concept_of_key("http://www.nlm.nih.gov/research/umls/rxnorm|309090") is None
    assert table.concept_of_key("http://www.ama-assn.org/go/cpt|28820") is None
    assert table.concept_of_key("http://www.ama-assn.org/go/cpt|28805") == "partial-foot-amputation"


def test_classes_include_their_members(table):
    assert {"vancomycin", "ceftriaxone"} <= table.members("antibacterial")
    assert "indomethacin" in table.members("nsaid")


def test_prefix_codes_match(table):
    assert table.concept_of_key("http://hl7.org/fhir/sid/icd-10-cm|L97.421") == "foot-ulcer"


def test_concepts_of_is_concept_of_key_of_every_coding(table):
    """The look-up by system then code gives what the ``system|code.strip()`` keys give, on
    seeded random CodeableConcepts of mapped and unmapped codes, prefixes, padded codes, systems
    holding "|" and malformed codings."""
    import random

    from cds_service.fhir.resources import coding_keys

    keys = sorted(table._by_code)
    systems = [*sorted({k.partition("|")[0] for k in keys}), "", "a|b", "http://loinc.org ",
               None, 7]
    codes = [*(k.partition("|")[2] for k in keys), " 4537-7", "4537-7 ", "b|c", "", " ", 5]
    codes += [p.partition("|")[2] + tail for p, _ in table._prefixes for tail in ("", "1", " ")]
    rnd = random.Random(17)  # noqa: S311 (a seeded sample, not a secret)
    hits = 0
    for _ in range(20_000):
        item = {"coding": [
            {"system": rnd.choice(systems), "code": rnd.choice(codes)} if rnd.random() < .95
            else rnd.choice(["junk", {"code": rnd.choice(codes)}, {"system": "s"}])
            for _ in range(rnd.randint(0, 3))]}
        value = item if rnd.random() < .8 else [item, "junk", {"coding": "x"}]
        expected = {c for key in coding_keys(value) if (c := table.concept_of_key(key))}
        assert table.concepts_of(value) == expected, value
        hits += bool(expected)
    assert hits > 1_000  # the sample does reach mapped codes
    assert table.concepts_of({"coding": [{"system": "a|b", "code": "c"}]}) == set()


def test_remembered_prefix_look_ups_are_bounded(table, monkeypatch):
    import cds_service.mappings as mappings_module

    monkeypatch.setattr(mappings_module, "PREFIX_MEMO_MAX", 50)
    table._prefix_memo.clear()
    for number in range(500):  # codes of a prefix system, as a hostile body could send
        key = f"http://hl7.org/fhir/sid/icd-10-cm|Z{number:05d}"
        assert table.concept_of_key(key) is None
    assert len(table._prefix_memo) == 50
    assert table.concept_of_key("http://hl7.org/fhir/sid/icd-10-cm|L97.421") == "foot-ulcer"
    table._prefix_memo.clear()


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_site_file_adds_codes_and_phrases(tmp_path, table):
    site = tmp_path / "site"
    write(site, "flowsheet.toml", '[probe-to-bone]\ncodes = ["urn:site:flowsheet|PTB1"]\n'
          '[om-imaging-pattern]\nphrases = ["bone erosion seen"]\n')
    merged = load_mappings(DEFAULT_MAPPINGS_DIR, [site])
    assert merged.concept_of_key("urn:site:flowsheet|PTB1") == "probe-to-bone"
    assert table.concepts["probe-to-bone"].codes <= merged.concepts["probe-to-bone"].codes
    assert "bone erosion seen" in merged.concepts["om-imaging-pattern"].phrases


@pytest.mark.parametrize(("text", "message"), (
    ('[not-a-concept]\ncodes = ["a|b"]\n', "[not-a-concept] is not a known concept id"),
    ('[esr]\ncodes = ["http://loinc.org|1988-5"]\n', "code http://loinc.org|1988-5 is also mapped"),
    ('[nsaid]\nincludes = ["aspirin-ish"]\n', "includes unknown concept 'aspirin-ish'"),
    ('[esr\ncodes = []\n', "not valid TOML"),
    ('[esr]\ncodes = ["no-bar"]\n', "must be written system|code"),
    ('[esr]\ncolour = "red"\n', "unknown keys colour"),
))
def test_broken_site_files_stop_start_up_naming_file_and_key(tmp_path, text, message):
    site = tmp_path / "site"
    path = write(site, "bad.toml", text)
    with pytest.raises(MappingError) as error:
        load_mappings(DEFAULT_MAPPINGS_DIR, [site])
    assert str(path) in str(error.value) and message in str(error.value)


def test_broken_mapping_stops_create_app(tmp_path):
    from cds_service import create_app

    site = tmp_path / "site"
    write(site, "bad.toml", '[nope]\ncodes = ["a|b"]\n')
    with pytest.raises(MappingError):
        create_app({"auth_required": False, "extra_mappings": (site,),
                    "database_url": "sqlite://"})


def test_every_file_has_a_header_naming_its_source():
    for path in sorted(DEFAULT_MAPPINGS_DIR.glob("*.toml")):
        head = path.read_text().split("\n[")[0]
        assert "clinical-evidence.md" in head or path.name == "report-text.toml", path.name
        tomllib.loads(path.read_text())
