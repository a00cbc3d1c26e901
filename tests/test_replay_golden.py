"""Golden replays: every fixture record, replayed in-process as an EHR would send it, gives the
assessment, rule ids, flags, indicators, suggestion codes and the card text (summary and detail,
one list item per line) in tests/golden/records/.

To review a deliberate change: ``UPDATE_GOLDEN=1 pytest tests/test_replay_golden.py`` fails each
changed case with its diff (refused when CI is set); read the diffs against the rulebook before
committing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.fhir.resources import bundle_resources
from cds_service.replay import build_request, patient_id_of, record_time
from tests.conftest import RECORDS
from tests.support.golden import check_golden

GOLDEN = Path(__file__).resolve().parent / "golden" / "records"
NAMES = sorted(p.stem for p in RECORDS.glob("*.json"))


def summarise(response: dict[str, Any]) -> list[dict[str, Any]]:
    """What a card decides, without uuids and prose: the part a clinician's action depends on."""
    out = []
    for card in response["cards"]:
        marker = card["extension"]["tma-card"]
        item: dict[str, Any] = {"kind": marker["kind"], "indicator": card["indicator"],
                                "rules": marker.get("rules", []), "summary": card["summary"],
                                "detail": card.get("detail", "").split("\n")}
        if "tma-bone-assessment" in card["extension"]:
            item["assessment"] = card["extension"]["tma-bone-assessment"]
        if card.get("suggestions"):
            item["selectionBehavior"] = card["selectionBehavior"]
            item["suggestions"] = [
                {"actions": [(a["type"], a.get("resourceId") or a["resource"]["resourceType"],
                              sorted(c["code"] for c in (a.get("resource", {}).get("code") or a.get(
                                  "resource", {}).get("medicationCodeableConcept") or {}).get(
                                  "coding", [])))
                             for a in s["actions"]],
                 "isRecommended": s.get("isRecommended")}
                for s in card["suggestions"]]
        out.append(item)
    return json.loads(json.dumps(out))


def replay(name: str) -> dict[str, Any]:
    bundle = json.loads((RECORDS / f"{name}.json").read_text())
    when = record_time(bundle)
    assert when is not None, f"{name}: fixture records carry Bundle.timestamp"
    from cds_service import create_app

    app = create_app({"auth_required": False, "database_url": "sqlite://"}, clock=lambda: when)
    client = app.test_client()
    resources = bundle_resources(bundle)
    body = build_request(client.get("/cds-services").get_json(), "tma-bone-assessment",
                         "patient-view", resources, patient_id_of(resources, Path(name)))
    response = client.post("/cds-services/tma-bone-assessment", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("name", NAMES)
def test_replay_matches_golden(name):
    check_golden(GOLDEN / f"{name}.json", summarise(replay(name)))


def test_every_record_has_a_golden_file_and_a_readme_line():
    readme = (RECORDS.parent / "README.md").read_text()
    for name in NAMES:
        assert (GOLDEN / f"{name}.json").exists()
        assert f"`{name}`" in readme, f"fixtures/README.md does not describe {name}"


def test_fixtures_cover_every_rule_and_flag():
    """The fixture set exercises every rule id and flag of the rulebook at least once."""
    seen_rules: set[str] = set()
    seen_flags: set[str] = set()
    for name in NAMES:
        for card in json.loads((GOLDEN / f"{name}.json").read_text()):
            seen_rules.update(card["rules"])
            seen_flags.update(card.get("assessment", {}).get("flags", []))
    rules = {"S-1", "S-2", *(f"OM-{i}" for i in range(1, 9)), "HO-1", "HO-2", "HO-4", "HO-5",
             "HO-6", "HO-7", "T-XR", "T-LAB", "T-MRI", "T-ALT", "T-BX", "T-SCAN-HO"}
    flags = {"severe-infection", "early-postoperative", "charcot", "pad", "recent-antibiotics",
             "renal-impairment", "ho-favored", "ho-ulcer-coexistence",
             "bone-scan-nondiscriminating"}
    assert rules - seen_rules == set()
    assert flags - seen_flags == set()
