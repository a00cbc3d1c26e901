"""The command line: replay prints readable cards for every fixture; bad input exits 2."""

from __future__ import annotations

import json

import pytest

from cds_service.cli import main
from tests.conftest import RECORDS

NAMES = sorted(p.stem for p in RECORDS.glob("*.json"))


@pytest.mark.parametrize("name", NAMES)
def test_replay_text_runs_on_every_fixture(name, capsys):
    assert main(["replay", str(RECORDS / f"{name}.json")]) == 0
    out = capsys.readouterr().out
    golden = json.loads((RECORDS.parent.parent / "tests" / "golden" / "records" /
                         f"{name}.json").read_text())
    if not golden:
        assert out.startswith("No cards")
    else:
        assert out.startswith("── Card 1 [")
        assert "Decision support, not a diagnosis" in out


def test_replay_json_prints_the_response(capsys):
    assert main(["replay", str(RECORDS / "om-probable-ptb-esr.json"), "--format", "json"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert response["cards"][0]["extension"]["tma-bone-assessment"]["osteomyelitis"] == "probable"


def test_replay_text_shows_suggestions_with_codes(capsys):
    main(["replay", str(RECORDS / "crp-mg-dl-wound.json")])
    out = capsys.readouterr().out
    assert "→ Order MRI foot without and with contrast (left foot) (recommended)  [73720]" in out


@pytest.mark.parametrize(("content", "message"), (
    (None, "cannot be read"),
    ("{not json", "not valid JSON"),
    ('{"resourceType": "Patient"}', "must be a FHIR Bundle"),
    ('{"resourceType": "Bundle", "entry": []}', "holds no Patient"),
))
def test_replay_bad_input_exits_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "record.json"
    if content is not None:
        path.write_text(content)
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err


def test_replay_order_hook_without_draft_exits_2(capsys):
    assert main(["replay", str(RECORDS / "om-probable-ptb-esr.json"), "--hook",
                 "order-sign"]) == 2
    assert "--draft" in capsys.readouterr().err


def test_serve_refuses_broken_mappings(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    site.mkdir()
    (site / "x.toml").write_text("[nope]\ncodes = []\n")
    monkeypatch.setenv("CDS_EXTRA_MAPPINGS", str(site))
    monkeypatch.setenv("CDS_AUTH_REQUIRED", "false")
    assert main(["serve", "--port", "1"]) == 2
    assert "[nope] is not a known concept id" in capsys.readouterr().err
