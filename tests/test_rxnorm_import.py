"""`cds-service rxnorm-import` on a hand-made RRF sample (tests/data/rrf, RRF columns of the RxNorm
Technical Documentation), and the site file it writes, loaded with the site mappings."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from cds_service.cli import main
from cds_service.clinical.medications import classifier_for
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.mappings import load_mappings

RRF = Path(__file__).resolve().parent / "data" / "rrf"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def run_import(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "rxnorm-products.toml"
    assert main(["rxnorm-import", str(RRF / "RXNCONSO.RRF"), str(RRF / "RXNREL.RRF"),
                 "--out", str(out), *extra]) == 0
    return tomllib.loads(out.read_text())


def test_products_map_to_their_ingredients_and_dose_form(tmp_path):
    products = run_import(tmp_path)["products"]
    # SCD, SBD (through tradename_of), SCDF and a generic pack, whichever way RXNREL writes a pair
    assert products["197512"]["in"] == ["2551"] and products["197512"]["form"] == "Oral Tablet"
    assert products["205771"]["in"] == ["2551"] and products["205771"]["tty"] == "SBD"
    assert products["370588"]["in"] == ["2551"]
    assert products["900001"]["in"] == ["2551"]
    assert products["313570"] == {"in": ["11124"], "tty": "SCD", "form": "Oral Capsule",
                                  "name": "vancomycin 125 MG Oral Capsule"}
    assert products["900003"]["form"] == "Injection"
    assert products["562508"]["in"] == ["723", "48203"]  # a combination: both ingredients
    assert "313782" not in products  # acetaminophen is in no class: left out by default


def test_all_products_and_no_leak_through_a_shared_component(tmp_path):
    products = run_import(tmp_path, "--all")["products"]
    # the acetaminophen 325 MG component is also part of the oxycodone combination
    assert products["313782"]["in"] == ["161"]
    assert products["1049621"]["in"] == ["161", "7804"]  # the MTHSPL row to 2551 is ignored


def test_the_site_file_is_loaded_at_start_up_and_recognises_bare_codes(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    run_import(site)
    classify = classifier_for(load_mappings(DEFAULT_MAPPINGS_DIR, [site])).classify
    plain = classifier_for(load_mappings(DEFAULT_MAPPINGS_DIR)).classify

    def code(rxcui: str) -> dict:
        return {"coding": [{"system": RXNORM, "code": rxcui}]}  # no display: the code alone

    assert plain(code("197512")).identified is False
    assert set(classify(code("197512")).concepts) == {"antibacterial"}
    assert set(classify(code("205771")).concepts) == {"antibacterial"}
    assert set(classify(code("900003")).concepts) == {"vancomycin"}
    assert set(classify(code("313570")).concepts) == set()  # oral vancomycin capsule
    assert classify(code("313570")).identified is True


@pytest.mark.parametrize(("line", "message"), (
    ("2551|ENG|RXNORM|IN|2551|ciprofloxacin|\n", "not an RRF row of 18 fields"),
))
def test_a_broken_release_is_a_one_line_usage_error(tmp_path, capsys, line, message):
    broken = tmp_path / "RXNCONSO.RRF"
    broken.write_text(line)
    code = main(["rxnorm-import", str(broken), str(RRF / "RXNREL.RRF"),
                 "--out", str(tmp_path / "rxnorm-products.toml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err and str(broken) in err


def test_the_output_must_be_named_for_the_loader(tmp_path, capsys):
    shutil.copy(RRF / "RXNREL.RRF", tmp_path / "RXNREL.RRF")
    code = main(["rxnorm-import", str(RRF / "RXNCONSO.RRF"), str(tmp_path / "RXNREL.RRF"),
                 "--out", str(tmp_path / "products.toml")])
    assert code == 2 and "must be named rxnorm-products.toml" in capsys.readouterr().err
