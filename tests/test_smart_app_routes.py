"""The SMART app's configuration, card link and routes without a real EHR (issue 15); the whole
launch against a loopback EHR and a real browser is tests/integration/test_smart_app.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cds_service import create_app
from cds_service.commands.dev_token import public_jwk
from cds_service.errors import ConfigError
from cds_service.fhir.resources import bundle_resources
from cds_service.replay import build_request, load_bundle, patient_id_of

RECORD = Path(__file__).resolve().parent.parent / "fixtures" / "records" / \
    "om-probable-ptb-esr.json"
PUBLIC = "https://cds.example.org"


def _cards(app: Any) -> list[dict[str, Any]]:
    client = app.test_client()
    bundle = load_bundle(RECORD)
    resources = bundle_resources(bundle)
    body = build_request(client.get("/cds-services").get_json(), "tma-bone-assessment",
                         "patient-view", resources, patient_id_of(resources, RECORD))
    return client.post("/cds-services/tma-bone-assessment", json=body).get_json()["cards"]


def test_assessment_card_links_the_app_when_registered() -> None:
    app = create_app({"auth_required": False, "database_url": "sqlite://",
                      "public_url": PUBLIC, "smart_client_id": "tma-timeline"})
    cards = _cards(app)
    assessment = [c for c in cards if c["extension"]["tma-card"]["kind"] == "assessment"]
    assert len(assessment) == 1
    links = assessment[0]["links"]
    assert [(link["type"], link["url"]) for link in links] == [("smart",
                                                                f"{PUBLIC}/app/launch")]
    assert all("links" not in c for c in cards if c is not assessment[0])


def test_no_link_and_no_app_routes_without_a_client_id() -> None:
    app = create_app({"auth_required": False, "database_url": "sqlite://",
                      "public_url": PUBLIC})
    assert all("links" not in c for c in _cards(app))
    assert app.test_client().get("/app/launch?iss=x&launch=y").status_code == 404


def test_client_id_needs_a_public_url() -> None:
    with pytest.raises(ConfigError, match="CDS_PUBLIC_URL"):
        create_app({"auth_required": False, "database_url": "sqlite://",
                    "smart_client_id": "tma-timeline"})


@pytest.fixture
def smart_config(httpserver: Any) -> str:
    base = httpserver.url_for("/fhir")
    httpserver.expect_request("/fhir/.well-known/smart-configuration").respond_with_json({
        "authorization_endpoint": "https://ehr.example.org/authorize",
        "token_endpoint": "https://ehr.example.org/token",
        "code_challenge_methods_supported": ["S256"]})
    return base


def test_app_routes_skip_the_jwt_guard_and_allow_the_issuers_fhir_servers(
        tmp_path: Path, ec_key: Any, smart_config: str, httpserver: Any) -> None:
    issuers = tmp_path / "trusted-issuers.json"
    issuers.write_text(json.dumps({"issuers": [
        {"iss": "https://ehr.example.org", "jwks": {"keys": [public_jwk(ec_key)]},
         "fhirServers": [smart_config]}]}))
    app = create_app({"auth_required": True, "trusted_issuers": str(issuers),
                      "database_url": "sqlite://", "public_url": PUBLIC,
                      "smart_client_id": "tma-timeline"})
    client = app.test_client()
    # No JWT, yet not 401: the EHR authorises the app. The trusted issuer's fhirServer works,
    answer = client.get("/app/launch", query_string={"iss": smart_config, "launch": "L1"})
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert location.netloc == "ehr.example.org" and location.path == "/authorize"
    assert parse_qs(location.query)["redirect_uri"] == [f"{PUBLIC}/app/callback"]
    cookie = answer.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie  # https
    # ... another server gets 400 and no request at all.
    requests_before = len(httpserver.log)
    refused = client.get("/app/launch", query_string={"iss": smart_config + "x", "launch": "L"})
    assert refused.status_code == 400 and "Set-Cookie" not in refused.headers
    assert len(httpserver.log) == requests_before
    # The CDS services themselves still need a JWT.
    assert client.post("/cds-services/tma-bone-assessment", json={}).status_code == 401


def test_launch_without_parameters_is_a_short_page() -> None:
    app = create_app({"auth_required": False, "database_url": "sqlite://",
                      "public_url": PUBLIC, "smart_client_id": "tma-timeline"})
    answer = app.test_client().get("/app/launch")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert "launch parameters" in answer.get_data(as_text=True)
    assert "script-src 'none'" in answer.headers["Content-Security-Policy"]
