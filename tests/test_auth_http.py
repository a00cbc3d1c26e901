"""Client authentication through the Flask app: 401s, open endpoints, per-issuer FHIR servers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service import create_app
from cds_service.commands.dev_token import mint_token, public_jwk
from tests.test_auth import craft  # hand-made JWTs, one copy

ISS = "https://ehr.example.org"
OTHER_ISS = "https://other-ehr.example.org"
SERVICE = "tma-bone-assessment"
PATH = f"/cds-services/{SERVICE}"
AUD = f"http://localhost{PATH}"  # the Flask test client's base URL
EMPTY_BUNDLE = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


@pytest.fixture
def fhir(httpserver: Any) -> str:
    """A FHIR stub: a Patient for every read, an empty searchset for every search."""
    httpserver.expect_request(re.compile(r"^/fhir/Patient/[^/?]+$")).respond_with_json(
        {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"}
    )
    httpserver.expect_request(re.compile(r"^/fhir/.*")).respond_with_json(EMPTY_BUNDLE)
    return httpserver.url_for("/fhir")


@pytest.fixture
def issuers_file(tmp_path: Path, ec_key: Any, rsa_key: Any, other_ec_key: Any, fhir: str) -> Path:
    path = tmp_path / "trusted-issuers.json"
    path.write_text(json.dumps({"issuers": [
        {"iss": ISS, "jwks": {"keys": [public_jwk(ec_key), public_jwk(rsa_key)]},
         "fhirServers": [fhir]},
        # a trusted issuer that may not send us to the stub
        {"iss": OTHER_ISS, "jwks": {"keys": [public_jwk(other_ec_key)]},
         "fhirServers": ["https://fhir.other-ehr.example.org/r4"]},
    ]}))
    return path


@pytest.fixture
def app(issuers_file: Path) -> Any:
    return create_app({"auth_required": True, "trusted_issuers": str(issuers_file),
                       "database_url": "sqlite://"})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def token(key: Any, *, iss: str = ISS, aud: Any = AUD, **kwargs: Any) -> str:
    alg = "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384"
    return mint_token(key, iss=iss, aud=aud, kid=public_jwk(key)["kid"], alg=alg, **kwargs)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def hook_body(fhir_server: str) -> dict[str, Any]:
    """A patient-view call with no prefetch: everything would be fetched from ``fhir_server``."""
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server,
        "fhirAuthorization": {"access_token": "fhir-access-token", "token_type": "Bearer",
                              "expires_in": 300, "scope": "patient/*.read", "subject": "cds"},
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
    }


def now_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()),
            **overrides}


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "security"
    assert body["issue"][0]["diagnostics"] == "the request could not be authenticated"
    assert response.headers["WWW-Authenticate"] == "Bearer"


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["ES384", "RS384"])
def test_valid_token_is_accepted_and_reaches_the_issuers_fhir_server(
    client: Any, httpserver: Any, fhir: str, ec_key: Any, rsa_key: Any, which: str
) -> None:
    key = ec_key if which == "ES384" else rsa_key
    response = client.post(PATH, json=hook_body(fhir), headers=bearer(token(key)))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "cards" in response.get_json()
    assert httpserver.log, "the issuer's own FHIR server was not called"
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == "Bearer fhir-access-token"


def test_aud_array_containing_the_url_is_accepted(client: Any, fhir: str, ec_key: Any) -> None:
    aud = ["https://elsewhere.example/cds-services", AUD]
    response = client.post(PATH, json=hook_body(fhir), headers=bearer(token(ec_key, aud=aud)))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_fhir_server_of_another_issuer_is_never_contacted(
    client: Any, httpserver: Any, fhir: str, other_ec_key: Any
) -> None:
    """A trusted issuer may only send the service to its own fhirServers (SSRF)."""
    response = client.post(PATH, json=hook_body(fhir),
                           headers=bearer(token(other_ec_key, iss=OTHER_ISS)))
    assert response.status_code != 401
    assert response.status_code == 412, response.get_data(as_text=True)
    assert httpserver.log == []


def test_feedback_needs_a_token_and_accepts_a_valid_one(client: Any, ec_key: Any) -> None:
    feedback = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted",
                              "acceptedSuggestions": [{"id": str(uuid.uuid4())}],
                              "outcomeTimestamp": "2026-11-24T10:00:00Z"}]}
    assert_unauthorized(client.post(PATH + "/feedback", json=feedback))
    aud = AUD + "/feedback"
    response = client.post(PATH + "/feedback", json=feedback, headers=bearer(token(ec_key,
                                                                                   aud=aud)))
    assert response.status_code != 401
    assert response.status_code == 200, response.get_data(as_text=True)
    # a token for the service URL is not a token for its feedback URL
    wrong = client.post(PATH + "/feedback", json=feedback, headers=bearer(token(ec_key)))
    assert_unauthorized(wrong)


def test_public_url_sets_the_audience(issuers_file: Path, fhir: str, ec_key: Any) -> None:
    app = create_app({"auth_required": True, "trusted_issuers": str(issuers_file),
                      "database_url": "sqlite://", "public_url": "https://cds.example.org/tma"})
    client = app.test_client()
    public = "https://cds.example.org/tma" + PATH
    ok = client.post(PATH, json=hook_body(fhir), headers=bearer(token(ec_key, aud=public)))
    assert ok.status_code == 200, ok.get_data(as_text=True)
    # behind a proxy, the internal URL is not what the client was told to call
    assert_unauthorized(client.post(PATH, json=hook_body(fhir), headers=bearer(token(ec_key))))


# --- no token needed --------------------------------------------------------------------------


def test_discovery_and_health_need_no_token(client: Any) -> None:
    discovery = client.get("/cds-services")
    assert discovery.status_code == 200
    assert any(s["id"] == SERVICE for s in discovery.get_json()["services"])
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/cds-services", PATH, PATH + "/feedback"])
def test_cors_preflight_needs_no_token(client: Any, path: str) -> None:
    response = client.options(path, headers={
        "Origin": "https://sandbox.cds-hooks.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert response.status_code in (200, 204)
    assert "Authorization" in response.headers.get("Access-Control-Allow-Headers", "")


def test_401_carries_cors_headers_for_browser_clients(client: Any) -> None:
    response = client.post(PATH, json={}, headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert_unauthorized(response)
    assert response.headers.get("Access-Control-Allow-Origin")


# --- rejected: 401, OperationOutcome, no FHIR request -----------------------------------------


def _hs256(ec_key: Any) -> str:
    pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return craft({"alg": "HS256", "typ": "JWT", "kid": public_jwk(ec_key)["kid"]}, now_claims(),
                 lambda data: hmac.new(pem, data, hashlib.sha256).digest())


def _tampered(ec_key: Any) -> str:
    head, payload, signature = token(ec_key).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1:]}"


REJECTIONS: dict[str, Any] = {
    "no header": lambda k: None,
    "not bearer": lambda k: "Basic dXNlcjpwYXNz",
    "alg none": lambda k: "Bearer " + craft(
        {"alg": "none", "typ": "JWT", "kid": public_jwk(k["ec"])["kid"]}, now_claims()),
    "HS256 with the public key": lambda k: "Bearer " + _hs256(k["ec"]),
    "expired": lambda k: "Bearer " + token(k["ec"], now=time.time() - 400),
    "iat in the future": lambda k: "Bearer " + token(k["ec"], now=time.time() + 600),
    "wrong aud": lambda k: "Bearer " + token(k["ec"], aud="http://localhost/cds-services/x"),
    "unknown kid": lambda k: "Bearer " + token(k["unknown"]),
    "untrusted iss": lambda k: "Bearer " + token(k["ec"], iss="https://evil.example.org"),
    "tampered signature": lambda k: "Bearer " + _tampered(k["ec"]),
    "missing jti": lambda k: "Bearer " + token(k["ec"], claims={"jti": None}),
}


@pytest.fixture
def keys(ec_key: Any) -> dict[str, Any]:
    return {"ec": ec_key, "unknown": ec.generate_private_key(ec.SECP384R1())}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejected_with_401_and_no_fhir_request(
    client: Any, httpserver: Any, fhir: str, keys: dict[str, Any], case: str
) -> None:
    authorization = REJECTIONS[case](keys)
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.post(PATH, json=hook_body(fhir), headers=headers)
    assert_unauthorized(response)
    assert httpserver.log == []


def test_replayed_jti_is_rejected(client: Any, httpserver: Any, fhir: str, ec_key: Any) -> None:
    minted = token(ec_key)
    first = client.post(PATH, json=hook_body(fhir), headers=bearer(minted))
    assert first.status_code == 200, first.get_data(as_text=True)
    calls = len(httpserver.log)
    second = client.post(PATH, json=hook_body(fhir), headers=bearer(minted))
    assert_unauthorized(second)
    assert len(httpserver.log) == calls  # nothing fetched for the replay


def test_jku_not_allow_listed_is_rejected_and_never_contacted(
    client: Any, httpserver: Any, fhir: str, ec_key: Any
) -> None:
    httpserver.expect_request("/evil/jwks.json").respond_with_json(
        {"keys": [public_jwk(ec_key)]}
    )
    minted = token(ec_key, headers={"jku": httpserver.url_for("/evil/jwks.json")})
    assert_unauthorized(client.post(PATH, json=hook_body(fhir), headers=bearer(minted)))
    assert httpserver.log == []


def test_unknown_service_and_other_methods_need_a_token_too(client: Any) -> None:
    assert_unauthorized(client.post("/cds-services/no-such-service", json={}))
    assert_unauthorized(client.put(PATH, json={}))


def test_rejection_reason_is_logged_without_the_token(
    capfd: Any, client: Any, ec_key: Any
) -> None:
    # capfd comes first so that the app's log handler writes to the captured stderr
    minted = token(ec_key, aud="http://localhost/cds-services/somewhere-else")
    assert_unauthorized(client.post(PATH, json={}, headers=bearer(minted)))
    err = capfd.readouterr().err
    assert "auth.rejected" in err
    assert "does not name" in err
    assert minted not in err
    assert minted.split(".")[2] not in err


def test_auth_on_without_issuers_file_does_not_start() -> None:
    from cds_service.errors import ConfigError

    with pytest.raises(ConfigError, match="CDS_TRUSTED_ISSUERS is not set"):
        create_app({"auth_required": True, "trusted_issuers": None, "database_url": "sqlite://"})


def test_sandbox_file_starts_the_service(fhir: str) -> None:
    sandbox = Path(__file__).resolve().parent.parent / "deploy" / "trusted-issuers.sandbox.json"
    app = create_app({"auth_required": True, "trusted_issuers": str(sandbox),
                      "database_url": "sqlite://"})
    # a token from a key that is not the sandbox's, in the sandbox's name
    forged = jwt.encode(
        now_claims(iss="https://sandbox.cds-hooks.org"), ec.generate_private_key(ec.SECP384R1()),
        algorithm="ES384",
        headers={"kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
                 "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"},
    )
    assert_unauthorized(app.test_client().post(PATH, json=hook_body(fhir),
                                               headers=bearer(forged)))
