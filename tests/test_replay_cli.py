"""``cds-service replay``: the README's headline command against a running service (``--url``,
dates shifted to now, ``--token``), files given in the wrong place (one line, exit 2), and a
record without a Patient (a note on the card, never silent).

The service runs in this process on 127.0.0.1 (werkzeug's threaded server), with the real clock:
that is what makes ``--url`` shift the record's dates."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from cds_service import create_app
from cds_service.cli import main
from cds_service.commands.dev_token import mint_token, public_jwk
from tests.conftest import RECORDS

ORDERS = RECORDS.parent / "orders"
RECORD = RECORDS / "om-probable-ptb-esr.json"
DRAFT = ORDERS / "om-probable-ceftriaxone.json"
SERVICE = "tma-bone-assessment"
ISS = "https://ehr.example.org"


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(app)`` -> base URL of ``app`` on 127.0.0.1; every server stops after the test."""
    running: list[tuple[Any, threading.Thread]] = []

    def start(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(timeout=5)


def replay_json(capsys: Any, *args: str) -> dict[str, Any]:
    assert main(["replay", *args, "--format", "json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def assessment(response: dict[str, Any]) -> dict[str, Any]:
    return response["cards"][0]["extension"]["tma-bone-assessment"]  # type: ignore[no-any-return]


def test_replay_url_shifts_the_record_to_now(serve: Any, capsys: Any) -> None:
    """The record describes 2026-11-20 (Bundle.timestamp) with the amputation 42 days before.
    The running service uses the real clock; shifted, the record still reads as day 42, with the
    same tiers and summaries as the in-process replay (whose clock is the timestamp)."""
    base = serve(create_app({"auth_required": False, "database_url": "sqlite://"}))
    remote = replay_json(capsys, str(RECORD), "--url", base)
    local = replay_json(capsys, str(RECORD))
    assert assessment(remote)["daysSinceAmputation"] == 42
    assert assessment(remote)["osteomyelitis"] == "probable"
    assert assessment(remote) == assessment(local)
    assert [c["summary"] for c in remote["cards"]] == [c["summary"] for c in local["cards"]]


def test_replay_url_order_hook_shifts_the_draft_too(serve: Any, capsys: Any) -> None:
    base = serve(create_app({"auth_required": False, "database_url": "sqlite://"}))
    remote = replay_json(capsys, str(RECORD), "--hook", "order-sign", "--draft", str(DRAFT),
                         "--url", base)
    local = replay_json(capsys, str(RECORD), "--hook", "order-sign", "--draft", str(DRAFT))
    assert [c["summary"] for c in remote["cards"]] == [c["summary"] for c in local["cards"]]
    assert remote["cards"], "ceftriaxone while OM is probable and no biopsy: O-ABX warns"


@pytest.fixture
def auth_app(tmp_path: Path, ec_key: Any) -> Any:
    issuers = tmp_path / "trusted-issuers.json"
    issuers.write_text(json.dumps({"issuers": [
        {"iss": ISS, "jwks": {"keys": [public_jwk(ec_key)]}, "fhirServers": []}]}))
    return create_app({"auth_required": True, "trusted_issuers": str(issuers),
                       "database_url": "sqlite://"})


def test_replay_url_sends_the_token(serve: Any, auth_app: Any, ec_key: Any, capsys: Any) -> None:
    base = serve(auth_app)
    token = mint_token(ec_key, iss=ISS, aud=f"{base}/cds-services/{SERVICE}",
                       kid=public_jwk(ec_key)["kid"], alg="ES384")
    response = replay_json(capsys, str(RECORD), "--url", base, "--token", token)
    assert assessment(response)["osteomyelitis"] == "probable"


def test_replay_url_without_the_token_reports_the_401(serve: Any, auth_app: Any,
                                                      capsys: Any) -> None:
    base = serve(auth_app)
    assert main(["replay", str(RECORD), "--url", base]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HTTP 401" in err


def test_replay_url_nobody_listening_is_one_line_exit_2(capsys: Any) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["replay", str(RECORD), "--url", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach the service" in err


# --- files in the wrong place -----------------------------------------------------------------

def one_line_error(capsys: Any, *args: str) -> str:
    assert main(["replay", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_draft_orders_file_given_as_the_record(capsys: Any) -> None:
    err = one_line_error(capsys, str(DRAFT))
    assert str(DRAFT) in err and "--draft" in err


def test_a_draft_orders_file_given_as_the_record_of_an_order_hook(capsys: Any) -> None:
    """Swapped: the orders first, the record after --draft."""
    err = one_line_error(capsys, str(DRAFT), "--hook", "order-sign", "--draft", str(RECORD))
    assert str(DRAFT) in err


def test_a_record_given_as_the_draft(capsys: Any) -> None:
    err = one_line_error(capsys, str(RECORD), "--hook", "order-sign", "--draft",
                         str(RECORDS / "ho-mature-nsaid-gates-pass.json"))
    assert "ho-mature-nsaid-gates-pass.json" in err and "Patient" in err


def test_draft_with_patient_view(capsys: Any) -> None:
    err = one_line_error(capsys, str(RECORD), "--draft", str(DRAFT))
    assert "--draft" in err and "patient-view" in err


def test_the_right_files_in_the_right_places_still_work(capsys: Any) -> None:
    response = replay_json(capsys, str(RECORD), "--hook", "order-select", "--draft", str(DRAFT))
    assert isinstance(response["cards"], list)


# --- a record without a Patient ---------------------------------------------------------------

def test_a_record_without_a_patient_says_so_on_the_card(tmp_path: Path, capsys: Any) -> None:
    bundle = json.loads(RECORD.read_text())
    without = copy.deepcopy(bundle)
    without["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Patient"]
    assert len(without["entry"]) == len(bundle["entry"]) - 1
    path = tmp_path / "no-patient.json"
    path.write_text(json.dumps(without))
    detail = replay_json(capsys, str(path))["cards"][0]["detail"]
    assert "no Patient resource in the record" in detail
    # the full record has no such note
    assert "no Patient resource" not in replay_json(capsys, str(RECORD))["cards"][0]["detail"]


def test_a_null_patient_prefetch_is_noted(capsys: Any) -> None:
    """Over HTTP: the EHR says it has no Patient (prefetch ``null``); the card names it."""
    from cds_service.fhir.resources import bundle_resources
    from cds_service.replay import build_request, load_bundle, patient_id_of, record_time

    bundle = load_bundle(RECORD)
    now = record_time(bundle)
    app = create_app({"auth_required": False, "database_url": "sqlite://"}, clock=lambda: now)
    client = app.test_client()
    resources = bundle_resources(bundle)
    body = build_request(client.get("/cds-services").get_json(), SERVICE, "patient-view",
                         resources, patient_id_of(resources, RECORD))
    body["prefetch"]["patient"] = None
    response = client.post(f"/cds-services/{SERVICE}", json=body)
    assert response.status_code == 200
    from cds_service.preview import visible_text

    assert "Patient: no Patient resource in the record" in \
        visible_text(response.get_json()["cards"][0])
