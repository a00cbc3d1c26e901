"""Client values in the log are bounded, escaped and free of credentials (issue 13 item 10).

Each test drives the service through HTTP (Flask's test client) and reads what the service's own
stderr handler wrote, in the format an operator would see, so the formatters are tested as well
as ``log_event``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cds_service.logs import LOGGER_NAME
from cds_service.safetext import escape, without_credentials
from tests.conftest import hook_body, make_app


@pytest.fixture(autouse=True)
def _service_logger_at_its_default() -> Iterator[None]:
    """``cds-service replay`` (run by other tests in this process) quiets the service's logger
    to ERROR; here the app must log as ``serve`` does, from INFO."""
    logger = logging.getLogger(LOGGER_NAME)
    saved = logger.level
    logger.setLevel(logging.NOTSET)
    yield
    logger.setLevel(saved)


def service_lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return capfd.readouterr().err.splitlines()


def json_events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


# ----- hookInstance ----------------------------------------------------------------------------


@pytest.mark.parametrize("instance", [
    "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "D1577C69-DFBE-44AD-BA6D-3E05E953B2EA",
    "urn:uuid:d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "01J9ZQ3M5R8W8Y6T2V4B7N0K1X",  # a ULID
    "x",
    "a" * 128,
])
def test_sane_hook_instances_are_accepted(instance: str) -> None:
    client = make_app().test_client()
    response = client.post("/cds-services/tma-bone-assessment",
                           json=hook_body({}, hookInstance=instance))
    # {} prefetch and no fhirServer: required data is missing, which is a 412, not a 400
    assert response.status_code == 412, response.get_json()


@pytest.mark.parametrize("instance", [
    "a" * 129,
    "x" * 4_000_000,
    "two words",
    "line\nevent=forged",
    "<img src=x onerror=alert(1)>",
    "-starts-with-dash",
    "ümlaut",
    "id\x1b[2J",
    "a/b",
])
def test_insane_hook_instances_get_400_naming_the_field(instance: str) -> None:
    client = make_app().test_client()
    response = client.post("/cds-services/tma-bone-assessment",
                           json=hook_body({}, hookInstance=instance))
    assert response.status_code == 400
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["expression"] == ["hookInstance"]
    assert "hookInstance must be an identifier" in body["issue"][0]["diagnostics"]


# ----- bounds ----------------------------------------------------------------------------------


def test_a_megabyte_client_value_makes_a_short_log_line(capfd: pytest.CaptureFixture[str]) -> None:
    client = make_app().test_client()
    capfd.readouterr()
    response = client.post("/cds-services/tma-bone-assessment",
                           json=hook_body({}, hook="h" * 1_000_000))
    assert response.status_code == 400
    (call,) = [e for e in json_events(service_lines(capfd)) if e["event"] == "hook.call"]
    assert call["hook"].startswith("h" * 256)
    assert call["hook"].endswith("…(+999744 chars)")
    assert len(json.dumps(call)) < 1000


# ----- credentials and token fragments ---------------------------------------------------------


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_fhir_server_credentials_are_not_logged(capfd: pytest.CaptureFixture[str],
                                                log_format: str) -> None:
    client = make_app(log_format=log_format).test_client()
    capfd.readouterr()
    server = "https://alice:s3cr3t-pw@evil.example:8443/fhir"
    response = client.post("/cds-services/tma-bone-assessment",
                           json=hook_body({}, fhirServer=server))
    assert response.status_code == 412
    text = "\n".join(service_lines(capfd))
    assert "fhir.server_not_allowed" in text
    assert "s3cr3t-pw" not in text and "alice" not in text
    assert "https://***@evil.example:8443/fhir" in text


def test_malformed_authorization_header_leaves_no_token_fragment(
        capfd: pytest.CaptureFixture[str], tmp_path: Any, ec_key: Any) -> None:
    from cds_service.commands.dev_token import mint_token, public_jwk

    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": "https://ehr.example",
                                                "jwks": {"keys": [public_jwk(ec_key)]}}]}))
    client = make_app(auth_required=True, trusted_issuers=str(issuers)).test_client()
    capfd.readouterr()
    url = "http://localhost/cds-services/tma-bone-assessment"
    jwt = mint_token(ec_key, iss="https://ehr.example", aud=url, kid=public_jwk(ec_key)["kid"])
    for header in (jwt, "Token" + jwt, jwt + " trailing"):  # a token without "Bearer "
        response = client.post(url, json=hook_body({}), headers={"Authorization": header})
        assert response.status_code == 401
    lines = service_lines(capfd)
    rejections = [e for e in json_events(lines) if e["event"] == "auth.rejected"]
    assert len(rejections) == 3
    for event in rejections:
        assert event["reason"] == "Authorization scheme (not a known scheme) is not Bearer"
    text = "\n".join(lines)
    for piece in (jwt[:8], jwt[8:20], jwt.split(".")[1][:12], jwt.split(".")[2][:12]):
        assert piece not in text


def test_a_registered_scheme_is_still_named(capfd: pytest.CaptureFixture[str],
                                            tmp_path: Any, ec_key: Any) -> None:
    from cds_service.commands.dev_token import public_jwk

    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"issuers": [{"iss": "https://ehr.example",
                                                "jwks": {"keys": [public_jwk(ec_key)]}}]}))
    client = make_app(auth_required=True, trusted_issuers=str(issuers)).test_client()
    capfd.readouterr()
    client.post("/cds-services/tma-bone-assessment", json=hook_body({}),
                headers={"Authorization": "Basic YWxpY2U6czNjcjN0"})
    (event,) = [e for e in json_events(service_lines(capfd)) if e["event"] == "auth.rejected"]
    assert event["reason"] == "Authorization scheme Basic is not Bearer"
    assert "YWxpY2U6czNjcjN0" not in json.dumps(event)


# ----- one event, one line ---------------------------------------------------------------------


def test_text_logs_escape_newlines_and_terminal_sequences(
        capfd: pytest.CaptureFixture[str]) -> None:
    client = make_app(log_format="text").test_client()
    capfd.readouterr()
    forged = "https://evil.example/fhir\nwarning auth.rejected reason=forged\x1b[2J\u202e"
    client.post("/cds-services/tma-bone-assessment", json=hook_body({}, fhirServer=forged))
    lines = service_lines(capfd)
    assert not any(line.startswith("warning auth.rejected") for line in lines)
    (line,) = [line for line in lines if "fhir.server_not_allowed" in line]
    assert ("server=https://evil.example/fhir\\nwarning auth.rejected reason=forged"
            "\\x1b[2J\\u202e") in line
    assert "\x1b" not in "\n".join(lines) and "\u202e" not in "\n".join(lines)


# ----- the helpers, on values worked out by hand -----------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("plain text", "plain text"),
    ("a\nb", "a\\nb"),
    ("tab\there", "tab\\there"),
    ("cr\rlf", "cr\\rlf"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("c1\x9bcontrol", "c1\\x9bcontrol"),
    ("bidi\u202eoverride", "bidi\\u202eoverride"),
    ("back\\slash", "back\\\\slash"),
    ("emoji \U0001f600 is printable", "emoji \U0001f600 is printable"),
])
def test_escape(raw: str, expected: str) -> None:
    assert escape(raw) == expected


def test_escape_bounds_and_says_how_much_was_cut() -> None:
    assert escape("abcdef", limit=4) == "abcd…(+2 chars)"
    assert escape("abcd", limit=4) == "abcd"


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://u:pw@fhir.example/r4", "https://***@fhir.example/r4"),
    ("https://token@fhir.example", "https://***@fhir.example"),
    ("http://a@b@fhir.example/x?y=@", "http://***@fhir.example/x?y=@"),
    ("see HTTPS://u:p@h.example and ftp://x:y@z.example/", "see HTTPS://***@h.example and "
                                                           "ftp://***@z.example/"),
    ("https://fhir.example/r4?email=a@b.example", "https://fhir.example/r4?email=a@b.example"),
    ("mailto:a@b.example", "mailto:a@b.example"),
])
def test_without_credentials(raw: str, expected: str) -> None:
    assert without_credentials(raw) == expected
