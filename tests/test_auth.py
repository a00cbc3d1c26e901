"""Client JWT verification (``cds_service.auth``) without Flask: the issue's rejection matrix."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from werkzeug.wrappers import Response

from cds_service.auth import (
    Issuer,
    ReplayCache,
    TokenVerifier,
    TrustStore,
    audience_for,
    build_verifier,
    jwk_thumbprint,
)
from cds_service.commands.dev_token import mint_token, public_jwk
from cds_service.config import Settings
from cds_service.errors import ClientNotTrusted, ConfigError

ISS = "https://ehr.example.org"
AUD = "https://cds.example.org/cds-services/tma-bone-assessment"
FHIR = "https://fhir.example.org/r4"
NOW = 1_800_000_000
REPO = Path(__file__).resolve().parent.parent
SANDBOX_FILE = REPO / "deploy" / "trusted-issuers.sandbox.json"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"


class Clock:
    """A settable clock for the verifier."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NoNetwork:
    """A requests.Session stand-in that fails the test if anything is fetched."""

    def get(self, url: str, **kwargs: Any) -> Any:
        raise AssertionError(f"the verifier fetched {url}")


def kid_of(key: Any) -> str:
    return public_jwk(key)["kid"]


def ec_public_jwk(key: Any) -> dict[str, Any]:
    """The JWK of any EC key's public half (public_jwk accepts only what the service trusts)."""
    return ECAlgorithm.to_jwk(key.public_key(), as_dict=True)


def ec_private_jwk(key: Any) -> dict[str, Any]:
    return ECAlgorithm.to_jwk(key, as_dict=True)


def alg_of(key: Any) -> str:
    return "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384"


def entry(*keys: Any, iss: str = ISS, **extra: Any) -> dict[str, Any]:
    return {"iss": iss, "jwks": {"keys": [public_jwk(k) for k in keys]},
            "fhirServers": [FHIR + "/"], **extra}


def store(*entries: dict[str, Any]) -> TrustStore:
    return TrustStore.from_dict({"issuers": list(entries)})


def token(key: Any, **kwargs: Any) -> str:
    params: dict[str, Any] = {"iss": ISS, "aud": AUD, "kid": kid_of(key), "alg": alg_of(key),
                              "now": NOW}
    params.update(kwargs)
    return mint_token(key, **params)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def craft(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    """Build a JWT by hand (for what PyJWT refuses to make); ``sign(signing_input) -> bytes``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode("ascii")) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"iss": ISS, "aud": AUD, "iat": NOW, "exp": NOW + 300, "jti": str(uuid.uuid4())}
    base.update(overrides)
    return base


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(ec_key: Any, rsa_key: Any, clock: Clock) -> TokenVerifier:
    return TokenVerifier(store(entry(ec_key, rsa_key)), clock=clock, session=NoNetwork())


def rejected(verifier: TokenVerifier, authorization: str | None, reason: str,
             audience: str = AUD) -> ClientNotTrusted:
    """Assert the verifier refuses, with ``reason`` in the message and never the token."""
    with pytest.raises(ClientNotTrusted, match=reason) as caught:
        verifier.verify(authorization, audience)
    if authorization:
        secret = authorization.partition(" ")[2].strip()
        if secret:
            assert secret not in caught.value.message
            signature = secret.split(".")[-1]
            if len(signature) > 8:
                assert signature not in caught.value.message  # not even the signature
    return caught.value


# --- accepted ---------------------------------------------------------------------------------


def test_valid_es384_token_is_accepted(verifier: TokenVerifier, ec_key: Any) -> None:
    issuer = verifier.verify("Bearer " + token(ec_key), AUD)
    assert issuer.iss == ISS
    assert issuer.fhir_servers == (FHIR,)  # trailing slash stripped


def test_valid_rs384_token_is_accepted(verifier: TokenVerifier, rsa_key: Any) -> None:
    assert verifier.verify("Bearer " + token(rsa_key), AUD).iss == ISS


def test_bearer_scheme_is_case_insensitive(verifier: TokenVerifier, ec_key: Any) -> None:
    assert verifier.verify("bearer  " + token(ec_key), AUD).iss == ISS


@pytest.mark.parametrize("aud", [[AUD], ["https://other.example/x", AUD], AUD + "/"])
def test_aud_may_be_an_array_or_carry_a_trailing_slash(
    verifier: TokenVerifier, ec_key: Any, aud: Any
) -> None:
    assert verifier.verify("Bearer " + token(ec_key, aud=aud), AUD).iss == ISS


def test_audience_trailing_slash_is_ignored(verifier: TokenVerifier, ec_key: Any) -> None:
    assert verifier.verify("Bearer " + token(ec_key), AUD + "/").iss == ISS


@pytest.mark.parametrize("typ", ["jwt", "JWT", None])
def test_typ_jwt_in_any_case_or_absent_is_accepted(
    verifier: TokenVerifier, ec_key: Any, typ: str | None
) -> None:
    minted = token(ec_key, headers={"typ": typ})
    assert jwt.get_unverified_header(minted).get("typ") == typ
    assert verifier.verify("Bearer " + minted, AUD).iss == ISS


def test_times_within_the_leeway_are_accepted(
    verifier: TokenVerifier, ec_key: Any, clock: Clock
) -> None:
    # expired 30 s ago, but the leeway is 60 s
    assert verifier.verify("Bearer " + token(ec_key, now=NOW - 330), AUD)
    # issued 30 s in the future (the client's clock is ahead)
    assert verifier.verify("Bearer " + token(ec_key, now=NOW + 30), AUD)


def test_sub_and_tenant_are_not_required_but_allowed(verifier: TokenVerifier, ec_key: Any) -> None:
    assert verifier.verify("Bearer " + token(ec_key, claims={"tenant": "t1", "sub": "c"}), AUD)


# --- the rejection matrix ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "no Authorization header"),
        ("", "no Authorization header"),
        ("Basic dXNlcjpwYXNz", "scheme 'Basic' is not Bearer|scheme Basic is not Bearer"),
        ("Bearer", "not Bearer|carries no token"),
        ("Bearer   ", "carries no token|not Bearer"),
        ("Bearer not-a-jwt", "token header is not readable"),
        ("Bearer a.b.c", "token header is not readable"),
        ("Bearer " + "a" * 20_000, "longer than"),
    ],
)
def test_missing_or_malformed_authorization_is_rejected(
    verifier: TokenVerifier, authorization: str | None, reason: str
) -> None:
    rejected(verifier, authorization, reason)


def test_alg_none_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    unsigned = craft({"alg": "none", "typ": "JWT", "kid": kid_of(ec_key)}, claims())
    rejected(verifier, "Bearer " + unsigned, "alg none is not allowed")


@pytest.mark.parametrize("alg", ["None", "NONE", ""])
def test_alg_none_spellings_are_rejected(verifier: TokenVerifier, ec_key: Any, alg: str) -> None:
    unsigned = craft({"alg": alg, "typ": "JWT", "kid": kid_of(ec_key)}, claims())
    rejected(verifier, "Bearer " + unsigned, "is not allowed")


def test_alg_missing_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    unsigned = craft({"typ": "JWT", "kid": kid_of(ec_key)}, claims())
    rejected(verifier, "Bearer " + unsigned, "alg None is not allowed")


@pytest.mark.parametrize(("alg", "digest"), [("HS256", hashlib.sha256), ("HS384", hashlib.sha384),
                                             ("HS512", hashlib.sha512)])
def test_hmac_signed_with_the_public_key_is_rejected(
    ec_key: Any, clock: Clock, httpserver: Any, alg: str, digest: Any
) -> None:
    """The classic algorithm-confusion attack: HMAC keyed with the issuer's public key bytes."""
    public_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = craft({"alg": alg, "typ": "JWT", "kid": kid_of(ec_key)}, claims(),
                   lambda data: hmac.new(public_pem, data, digest).digest())
    # An issuer whose keys are fetched: refused before any key lookup, so nothing is fetched.
    remote = {"iss": ISS, "jwks_url": httpserver.url_for("/jwks.json")}
    httpserver.expect_request("/jwks.json").respond_with_json({"keys": [public_jwk(ec_key)]})
    verifier = TokenVerifier(store(remote), clock=clock)
    rejected(verifier, "Bearer " + forged, f"alg {alg} is not allowed")
    assert httpserver.log == []


@pytest.mark.parametrize("alg", ["ES256", "ES512", "RS256", "RS512", "PS384", "EdDSA"])
def test_other_asymmetric_algorithms_are_rejected(
    verifier: TokenVerifier, alg: str
) -> None:
    if alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1(), "ES512": ec.SECP521R1()}[alg]
        key: Any = ec.generate_private_key(curve)
    elif alg == "EdDSA":
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    minted = jwt.encode(claims(), key, algorithm=alg, headers={"kid": "k1"})
    rejected(verifier, "Bearer " + minted, f"alg {alg} is not allowed")


def test_missing_kid_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    minted = jwt.encode(claims(), ec_key, algorithm="ES384")
    rejected(verifier, "Bearer " + minted, "kid header is missing")


@pytest.mark.parametrize("typ", ["at+jwt", "JWE", "dpop+jwt"])
def test_other_typ_is_rejected(verifier: TokenVerifier, ec_key: Any, typ: str) -> None:
    rejected(verifier, "Bearer " + token(ec_key, headers={"typ": typ}),
             re.escape(f"typ {typ} is not JWT"))


@pytest.mark.parametrize("crit", [{"crit": ["exp"], "exp": 1}, {"crit": ["b64"], "b64": True}])
def test_crit_header_is_rejected(verifier: TokenVerifier, ec_key: Any, crit: Any) -> None:
    signer = ECAlgorithm(ECAlgorithm.SHA384)
    signed = craft({"alg": "ES384", "typ": "JWT", "kid": kid_of(ec_key), **crit}, claims(),
                   lambda data: signer.sign(data, ec_key))
    rejected(verifier, "Bearer " + signed, "crit header|critical extension")


def test_expired_token_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    rejected(verifier, "Bearer " + token(ec_key, now=NOW - 400), "token expired 100 s ago")


def test_iat_in_the_future_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    rejected(verifier, "Bearer " + token(ec_key, now=NOW + 120), "iat is 120 s in the future")


def test_nbf_in_the_future_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    minted = token(ec_key, claims={"nbf": NOW + 200})
    rejected(verifier, "Bearer " + minted, "not valid yet")


def test_lifetime_over_the_maximum_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    minted = token(ec_key, lifetime=7200)
    rejected(verifier, "Bearer " + minted, "lifetime 7200 s exceeds the maximum 3600 s")


def test_exp_not_after_iat_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    rejected(verifier, "Bearer " + token(ec_key, lifetime=0), "exp is not after iat")


@pytest.mark.parametrize("bad", ["soon", True, [NOW]])
def test_non_numeric_exp_is_rejected(verifier: TokenVerifier, ec_key: Any, bad: Any) -> None:
    rejected(verifier, "Bearer " + token(ec_key, claims={"exp": bad}), "exp")


@pytest.mark.parametrize(
    "times",
    [
        {"exp": float("nan")},                       # every comparison with NaN is false
        {"iat": float("nan")},
        {"exp": float("nan"), "iat": float("nan")},
        {"exp": float("inf")},
        {"iat": float("-inf")},
        {"exp": float("inf"), "iat": float("nan")},
        {"nbf": float("nan")},
        {"exp": 10**400},                            # an integer beyond any float
    ],
)
def test_non_finite_times_are_rejected(verifier: TokenVerifier, ec_key: Any,
                                       times: dict[str, Any]) -> None:
    """NaN exp passed both the expiry and the lifetime check (pen test item 3)."""
    minted = token(ec_key, claims=times)
    rejected(verifier, "Bearer " + minted, "must be a finite number of seconds")
    assert len(verifier.replay) == 0


@pytest.mark.parametrize(
    ("aud", "reason"),
    [
        ("https://cds.example.org/cds-services/other-service", "does not name"),
        (AUD + "/feedback", "does not name"),
        ("http://cds.example.org/cds-services/tma-bone-assessment", "does not name"),
        (["https://a.example/", "https://b.example/"], "does not name"),
        ([], "aud must be a URL or an array"),
        (42, "aud must be a URL or an array"),
    ],
)
def test_wrong_aud_is_rejected(verifier: TokenVerifier, ec_key: Any, aud: Any, reason: str) -> None:
    rejected(verifier, "Bearer " + token(ec_key, aud=aud), reason)


def test_unknown_kid_is_rejected(verifier: TokenVerifier, other_ec_key: Any) -> None:
    rejected(verifier, "Bearer " + token(other_ec_key),
             f"kid {kid_of(other_ec_key)} is not in the pinned JWKS of issuer {ISS}")


def test_untrusted_iss_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    minted = token(ec_key, iss="https://evil.example.org")
    rejected(verifier, "Bearer " + minted, "issuer https://evil.example.org is not trusted")


@pytest.mark.parametrize("iss", [ISS + "/", ISS.upper(), "https://ehr.example.org.evil.com"])
def test_iss_must_match_exactly(verifier: TokenVerifier, ec_key: Any, iss: str) -> None:
    rejected(verifier, "Bearer " + token(ec_key, iss=iss), "is not trusted")


def test_missing_iss_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    rejected(verifier, "Bearer " + token(ec_key, claims={"iss": None}), "claim iss is missing")


@pytest.mark.parametrize("which", ["ec", "rsa"])
def test_tampered_signature_is_rejected(
    verifier: TokenVerifier, ec_key: Any, rsa_key: Any, which: str
) -> None:
    minted = token(ec_key if which == "ec" else rsa_key)
    head, payload, signature = minted.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    tampered = f"{head}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1:]}"
    rejected(verifier, "Bearer " + tampered, "signature does not verify")


def test_tampered_payload_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    head, _, signature = token(ec_key).split(".")
    forged_payload = b64(json.dumps(claims(aud=AUD, exp=NOW + 3000)).encode())
    rejected(verifier, f"Bearer {head}.{forged_payload}.{signature}", "signature does not verify")


def test_token_signed_by_another_key_under_a_known_kid_is_rejected(
    verifier: TokenVerifier, ec_key: Any, other_ec_key: Any
) -> None:
    minted = token(other_ec_key, kid=kid_of(ec_key))
    rejected(verifier, "Bearer " + minted, "signature does not verify")


def test_alg_must_fit_the_key_type(verifier: TokenVerifier, ec_key: Any, rsa_key: Any) -> None:
    # RS384 signed with the RSA key but naming the EC key's kid, and the other way round
    rejected(verifier, "Bearer " + token(rsa_key, kid=kid_of(ec_key)),
             "alg RS384 does not fit key")
    rejected(verifier, "Bearer " + token(ec_key, kid=kid_of(rsa_key)),
             "alg ES384 does not fit key")


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud"])
def test_missing_required_claim_is_rejected(
    verifier: TokenVerifier, ec_key: Any, claim: str
) -> None:
    rejected(verifier, "Bearer " + token(ec_key, claims={claim: None}), f"claim {claim} is missing")


def test_empty_jti_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    rejected(verifier, "Bearer " + token(ec_key, claims={"jti": ""}), "jti")


def test_replayed_jti_is_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    minted = token(ec_key, jti="jti-1")
    verifier.verify("Bearer " + minted, AUD)
    rejected(verifier, "Bearer " + minted, f"jti jti-1 of issuer {ISS} was already used")
    # a different token reusing the jti is a replay too
    rejected(verifier, "Bearer " + token(ec_key, jti="jti-1", now=NOW + 5), "already used")


def test_rejected_token_does_not_use_up_its_jti(verifier: TokenVerifier, ec_key: Any) -> None:
    rejected(verifier, "Bearer " + token(ec_key, jti="j2", aud="https://x.example/"), "aud")
    assert verifier.verify("Bearer " + token(ec_key, jti="j2"), AUD)


# --- jku and fetched keys ---------------------------------------------------------------------


def test_jku_not_on_the_allow_list_is_refused_without_contacting_it(
    ec_key: Any, clock: Clock, httpserver: Any
) -> None:
    evil = httpserver.url_for("/evil/jwks.json")
    httpserver.expect_request("/evil/jwks.json").respond_with_json(
        {"keys": [public_jwk(ec_key)]}
    )
    verifier = TokenVerifier(store(entry(ec_key)), clock=clock)
    minted = token(ec_key, headers={"jku": evil})
    rejected(verifier, "Bearer " + minted, f"jku {evil} is not allow-listed for issuer {ISS}")
    assert httpserver.log == []


def test_jku_not_allowed_for_a_fetching_issuer_fetches_nothing(
    ec_key: Any, clock: Clock, httpserver: Any
) -> None:
    httpserver.expect_request("/good/jwks.json").respond_with_json({"keys": [public_jwk(ec_key)]})
    httpserver.expect_request("/evil/jwks.json").respond_with_json({"keys": [public_jwk(ec_key)]})
    remote = {"iss": ISS, "jwks_url": httpserver.url_for("/good/jwks.json")}
    verifier = TokenVerifier(store(remote), clock=clock)
    minted = token(ec_key, headers={"jku": httpserver.url_for("/evil/jwks.json")})
    rejected(verifier, "Bearer " + minted, "is not allow-listed")
    assert httpserver.log == []


@pytest.mark.parametrize("jku", [["https://x.example/jwks.json"], 7, ""])
def test_malformed_jku_is_rejected(verifier: TokenVerifier, ec_key: Any, jku: Any) -> None:
    rejected(verifier, "Bearer " + token(ec_key, headers={"jku": jku}), "is not allow-listed")


def test_allow_listed_jku_is_accepted_but_never_fetched(ec_key: Any, clock: Clock) -> None:
    listed = "https://ehr.example.org/.well-known/jwks.json"
    verifier = TokenVerifier(store(entry(ec_key, jku=[listed])), clock=clock, session=NoNetwork())
    assert verifier.verify("Bearer " + token(ec_key, headers={"jku": listed}), AUD).iss == ISS


def test_jwks_url_is_fetched_once_and_cached(ec_key: Any, clock: Clock, httpserver: Any) -> None:
    httpserver.expect_request("/jwks.json").respond_with_json({"keys": [public_jwk(ec_key)]})
    url = httpserver.url_for("/jwks.json")
    verifier = TokenVerifier(store({"iss": ISS, "jwks_url": url}), clock=clock)
    for _ in range(3):
        assert verifier.verify("Bearer " + token(ec_key), AUD).iss == ISS
    # the issuer's own jwks_url is always an allowed jku
    assert verifier.verify("Bearer " + token(ec_key, headers={"jku": url}), AUD).iss == ISS
    assert len(httpserver.log) == 1


def test_jku_allow_listed_for_a_fetching_issuer_is_not_followed(
    ec_key: Any, clock: Clock, httpserver: Any
) -> None:
    httpserver.expect_request("/jwks.json").respond_with_json({"keys": [public_jwk(ec_key)]})
    httpserver.expect_request("/other.json").respond_with_json({"keys": [public_jwk(ec_key)]})
    other = httpserver.url_for("/other.json")
    remote = {"iss": ISS, "jwks_url": httpserver.url_for("/jwks.json"), "jku": [other]}
    verifier = TokenVerifier(store(remote), clock=clock)
    assert verifier.verify("Bearer " + token(ec_key, headers={"jku": other}), AUD).iss == ISS
    assert [req.path for req, _ in httpserver.log] == ["/jwks.json"]


def test_unknown_kid_refetches_at_most_once_a_minute(
    ec_key: Any, other_ec_key: Any, clock: Clock, httpserver: Any
) -> None:
    jwks = {"keys": [public_jwk(ec_key)]}
    httpserver.expect_request("/jwks.json").respond_with_handler(
        lambda request: Response(json.dumps(jwks), content_type="application/json")
    )
    verifier = TokenVerifier(store({"iss": ISS, "jwks_url": httpserver.url_for("/jwks.json")}),
                             clock=clock)
    assert verifier.verify("Bearer " + token(ec_key), AUD)
    clock.now += 61
    rejected(verifier, "Bearer " + token(other_ec_key, now=clock.now), "is not in the JWKS")
    assert len(httpserver.log) == 2  # refetched for the unknown kid
    clock.now += 10
    rejected(verifier, "Bearer " + token(other_ec_key, now=clock.now), "is not in the JWKS")
    assert len(httpserver.log) == 2  # not again within 60 s
    # the issuer rotates its key: picked up at the next allowed refetch
    jwks["keys"].append(public_jwk(other_ec_key))
    clock.now += 60
    assert verifier.verify("Bearer " + token(other_ec_key, now=clock.now), AUD)
    assert len(httpserver.log) == 3
    assert verifier.verify("Bearer " + token(ec_key, now=clock.now), AUD)
    assert len(httpserver.log) == 3


def test_stale_keys_keep_working_when_the_refresh_fails(
    ec_key: Any, clock: Clock, httpserver: Any
) -> None:
    httpserver.expect_ordered_request("/jwks.json").respond_with_json(
        {"keys": [public_jwk(ec_key)]}
    )
    httpserver.expect_ordered_request("/jwks.json").respond_with_data("down", status=503)
    verifier = TokenVerifier(store({"iss": ISS, "jwks_url": httpserver.url_for("/jwks.json")}),
                             clock=clock)
    assert verifier.verify("Bearer " + token(ec_key), AUD)
    clock.now += 3601  # past jwks_max_age: a refresh is tried, fails, the old key still works
    assert verifier.verify("Bearer " + token(ec_key, now=clock.now), AUD)
    assert len(httpserver.log) == 2


@pytest.mark.parametrize(
    ("respond", "reason"),
    [
        (lambda r: r.respond_with_data("oops", status=500), "answered HTTP 500"),
        (lambda r: r.respond_with_data("not json", content_type="application/json"),
         "not a usable JWK Set"),
        (lambda r: r.respond_with_json({"no": "keys"}), "not a usable JWK Set"),
    ],
)
def test_jwks_fetch_failures_are_rejections(
    ec_key: Any, clock: Clock, httpserver: Any, respond: Any, reason: str
) -> None:
    respond(httpserver.expect_request("/jwks.json"))
    verifier = TokenVerifier(store({"iss": ISS, "jwks_url": httpserver.url_for("/jwks.json")}),
                             clock=clock)
    rejected(verifier, "Bearer " + token(ec_key), reason)


def test_jwks_redirect_is_not_followed(ec_key: Any, clock: Clock, httpserver: Any) -> None:
    httpserver.expect_request("/jwks.json").respond_with_data(
        "", status=302, headers={"Location": httpserver.url_for("/elsewhere.json")}
    )
    httpserver.expect_request("/elsewhere.json").respond_with_json({"keys": [public_jwk(ec_key)]})
    verifier = TokenVerifier(store({"iss": ISS, "jwks_url": httpserver.url_for("/jwks.json")}),
                             clock=clock)
    rejected(verifier, "Bearer " + token(ec_key), "answered HTTP 302")
    assert [req.path for req, _ in httpserver.log] == ["/jwks.json"]


def test_unreachable_jwks_url_is_a_rejection(ec_key: Any, clock: Clock) -> None:
    verifier = TokenVerifier(store({"iss": ISS, "jwks_url": "http://127.0.0.1:9/jwks.json"}),
                             clock=clock, http_timeout=0.5)
    rejected(verifier, "Bearer " + token(ec_key), "could not be fetched")


def test_fetched_jwks_skips_keys_it_cannot_use(
    ec_key: Any, clock: Clock, httpserver: Any
) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    unusable = [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {**ec_public_jwk(p256), "kid": "p256"},
        {**public_jwk(ec_key), "use": "enc", "kid": "enc"},
    ]
    httpserver.expect_request("/jwks.json").respond_with_json(
        {"keys": [*unusable, public_jwk(ec_key)]}
    )
    verifier = TokenVerifier(store({"iss": ISS, "jwks_url": httpserver.url_for("/jwks.json")}),
                             clock=clock)
    assert verifier.verify("Bearer " + token(ec_key), AUD)
    hs = craft({"alg": "ES384", "typ": "JWT", "kid": "p256"}, claims(),
               lambda d: b"\x00" * 96)
    rejected(verifier, "Bearer " + hs, "is not in the JWKS")
    rejected(verifier, "Bearer " + token(ec_key, kid="enc"), "is not in the JWKS")  # use: enc


# --- the CDS Hooks sandbox entry --------------------------------------------------------------


def test_sandbox_file_pins_the_published_key_and_fetches_nothing() -> None:
    trust = TrustStore.load(SANDBOX_FILE)
    issuer = trust.get(SANDBOX_ISS)
    assert issuer is not None and len(trust) == 1
    assert issuer.jwks_url is None  # pinned, never fetched
    assert issuer.jku == (SANDBOX_JKU,)
    assert issuer.fhir_servers == ("https://launch.smarthealthit.org/v/r2/fhir",)
    (key,) = issuer.jwks["keys"]  # type: ignore[index]
    assert key == {
        "kty": "EC", "use": "sig", "crv": "P-384", "kid": SANDBOX_KID, "alg": "ES384",
        "x": "dw_JGR8nB2I6XveNxUOl2qk699ZPLM2nYI5STSdiEl9avAkrm3CkfYMbrrjr8laB",
        "y": "Sm3mLE-n1zYNla_aiE3cb3nZsL51RbC7ysw3q8aJLxGm-hx79RPMYpITDjp7kgzy",
    }


def sandbox_token(key: Any, aud: str = AUD) -> str:
    """A token shaped exactly like the sandbox's (cds-hooks-2.0.md §9.1), signed by ``key``."""
    header = {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    payload = {"iss": SANDBOX_ISS, "aud": aud, "exp": NOW + 300, "iat": NOW,
               "jti": str(uuid.uuid4())}  # no sub, no tenant
    return jwt.encode(payload, key, algorithm="ES384", headers=header)


def test_sandbox_shaped_token_is_accepted_by_the_sandbox_entry(ec_key: Any, clock: Clock) -> None:
    """Our key stands in for the sandbox's (whose private half we never use)."""
    data = json.loads(SANDBOX_FILE.read_text())
    sandbox_entry = copy.deepcopy(data["issuers"][0])
    sandbox_entry["jwks"]["keys"][0].update(
        {k: v for k, v in public_jwk(ec_key).items() if k in ("x", "y")}
    )
    verifier = TokenVerifier(store(sandbox_entry), clock=clock, session=NoNetwork())
    issuer = verifier.verify("Bearer " + sandbox_token(ec_key), AUD)
    assert issuer.iss == SANDBOX_ISS
    assert issuer.fhir_servers == ("https://launch.smarthealthit.org/v/r2/fhir",)


def test_sandbox_entry_verifies_with_the_pinned_key(ec_key: Any, clock: Clock) -> None:
    verifier = TokenVerifier(TrustStore.load(SANDBOX_FILE), clock=clock, session=NoNetwork())
    rejected(verifier, "Bearer " + sandbox_token(ec_key), "signature does not verify")


# --- the trusted-issuers file -----------------------------------------------------------------


def test_trust_store_reads_inline_and_url_entries(ec_key: Any, tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [
        entry(ec_key),
        {"iss": "https://b.example", "jwks_url": "https://b.example/jwks.json",
         "jku": ["https://b.example/jwks2.json"], "fhirServers": ["http://127.0.0.1:8090/fhir/"]},
    ]}))
    trust = TrustStore.load(path)
    assert [i.iss for i in trust] == [ISS, "https://b.example"]
    b = trust.get("https://b.example")
    assert b == Issuer(iss="https://b.example", jwks_url="https://b.example/jwks.json",
                       jku=("https://b.example/jwks2.json",),
                       fhir_servers=("http://127.0.0.1:8090/fhir",))
    assert b is not None
    assert b.allowed_jku == {"https://b.example/jwks.json", "https://b.example/jwks2.json"}


def _bad_entries(ec_key: Any) -> list[tuple[Any, str]]:
    good = public_jwk(ec_key)
    p256 = ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))
    private = ec_private_jwk(ec_key)
    return [
        ({"issuers": [{"jwks": {"keys": [good]}}]}, r"issuers\[0\]: \"iss\" is required"),
        ({"issuers": [{"iss": ISS}]}, r"issuers\[0\]: issuer .*exactly one of"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [good]}, "jwks_url": "https://x.example/j"}]},
         r"issuers\[0\]: .*exactly one of"),
        ({"issuers": [entry(ec_key), entry(ec_key)]},
         r"issuers\[1\]: issuer 'https://ehr.example.org' is already listed at issuers\[0\]"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [{"kty": "oct", "kid": "h", "k": "c2Vj"}]}}]},
         r"issuers\[0\]: .*\"jwks\": keys\[0\]: key 'h' has \"kty\": 'oct'"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [{**p256, "kid": "p"}]}}]},
         r"issuers\[0\]: .*keys\[0\]: key 'p' is EC on curve 'P-256'"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [{**private, "kid": "d"}]}}]},
         r"key 'd' holds private material \(d\)"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [{**good, "alg": "RS384"}]}}]},
         r"is EC but says \"alg\": 'RS384'"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [{**good, "alg": "HS256"}]}}]},
         r"\"alg\": 'HS256'; allowed: ES384, RS384"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": []}}]}, "the JWKS has no keys"),
        ({"issuers": [{"iss": ISS, "jwks": [good]}]}, r"a JWKS must be an object with a \"keys\""),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [{**good, "kid": ""}]}}]}, "non-empty string"),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": [good, good]}}]}, "appears twice"),
        ({"issuers": [{"iss": ISS, "jwks_url": "http://ehr.example.org/jwks.json"}]},
         r"issuers\[0\]: .*\"jwks_url\" must use https"),
        ({"issuers": [{"iss": ISS, "jwks_url": "file:///etc/passwd"}]}, "absolute http"),
        ({"issuers": [entry(ec_key, fhirServers="https://fhir.example.org")]},
         r"\"fhirServers\" must be a list of URLs"),
        ({"issuers": [entry(ec_key, fhirServers=["https://ok.example", "ftp://x.example/fhir"])]},
         r"\"fhirServers\"\[1\] must be an absolute http\(s\) URL"),
        ({"issuers": [entry(ec_key, jku="https://x.example/jwks.json")]},
         r"\"jku\" must be a list"),
        ({"issuers": [entry(ec_key, fhir_servers=["https://fhir.example.org"])]},
         r"issuers\[0\]: unknown key 'fhir_servers'"),
        ({"issuers": {"iss": ISS}}, r"the top level must be"),
        ([], r"the top level must be"),
        ({"issuers": [], "extra": 1}, r"unknown top-level key 'extra'"),
        ({"issuers": ["https://ehr.example.org"]}, r"issuers\[0\]: an issuer entry must be"),
    ]


def test_malformed_trusted_issuers_files_name_the_file_and_entry(
    ec_key: Any, tmp_path: Path
) -> None:
    for index, (data, message) in enumerate(_bad_entries(ec_key)):
        path = tmp_path / f"issuers-{index}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=message) as caught:
            TrustStore.load(path)
        assert str(caught.value).startswith(f"{path}: "), caught.value


def test_rsa_keys_under_2048_bits_are_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    small = RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True)
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [{**small,
                                                                          "kid": "s"}]}}]}))
    with pytest.raises(ConfigError, match="RSA-1024; at least 2048 bits"):
        TrustStore.load(path)


def test_trusted_issuers_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text('{"issuers": [,]}')
    with pytest.raises(ConfigError, match=rf"{path}: not valid JSON: .* line 1 column"):
        TrustStore.load(path)


def test_missing_trusted_issuers_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=rf"{path}: cannot read the trusted-issuers file"):
        TrustStore.load(path)


# --- replay cache -----------------------------------------------------------------------------


def test_replay_cache_remembers_until_expiry_then_forgets() -> None:
    clock = Clock(100)
    cache = ReplayCache(clock)
    assert cache.remember("i", "a", until=110)
    assert not cache.remember("i", "a", until=110)
    assert cache.remember("other-issuer", "a", until=110)  # jti is per issuer
    assert len(cache) == 2
    clock.now = 111
    assert len(cache) == 0  # purged
    assert cache.remember("i", "a", until=200)


@pytest.mark.parametrize("until", [float("nan"), float("inf"), float("-inf")])
def test_replay_cache_refuses_non_finite_expiry_and_keeps_purging(until: float) -> None:
    clock = Clock(100)
    cache = ReplayCache(clock)
    with pytest.raises(ValueError, match="finite"):
        cache.remember("i", "poison", until=until)
    for n in range(50):
        assert cache.remember("i", f"jti-{n}", until=110 + n)
    clock.now = 1000
    assert len(cache) == 0  # everything expired is purged


def test_replay_cache_lets_exactly_one_of_many_threads_win() -> None:
    cache = ReplayCache()
    results: list[bool] = []
    barrier = threading.Barrier(32)

    def attempt() -> None:
        barrier.wait()
        results.append(cache.remember("i", "same-jti", until=10**10))

    threads = [threading.Thread(target=attempt) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


# --- configuration and audience ---------------------------------------------------------------


def test_no_verifier_when_auth_is_off() -> None:
    assert build_verifier(Settings(auth_required=False)) is None


def test_auth_on_without_trusted_issuers_is_a_startup_error() -> None:
    with pytest.raises(ConfigError, match="CDS_AUTH_REQUIRED is true but CDS_TRUSTED_ISSUERS is "
                                          "not set: point it at a trusted-issuers JSON file"):
        build_verifier(Settings(auth_required=True))


def test_build_verifier_loads_the_file() -> None:
    verifier = build_verifier(Settings(trusted_issuers=str(SANDBOX_FILE)))
    assert isinstance(verifier, TokenVerifier)
    assert verifier.trust.get(SANDBOX_ISS) is not None


def test_build_verifier_reports_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text("{}")
    with pytest.raises(ConfigError, match=str(path)):
        build_verifier(Settings(trusted_issuers=str(path)))


@pytest.mark.parametrize(
    ("public_url", "request_url", "path", "expected"),
    [
        (None, "http://localhost/cds-services/x", "/cds-services/x",
         "http://localhost/cds-services/x"),
        ("https://cds.example.org", "http://10.0.0.5:8080/cds-services/x", "/cds-services/x",
         "https://cds.example.org/cds-services/x"),
        ("https://cds.example.org/base/", "http://10.0.0.5/cds-services/x/feedback",
         "/cds-services/x/feedback", "https://cds.example.org/base/cds-services/x/feedback"),
    ],
)
def test_audience_for(public_url: str | None, request_url: str, path: str, expected: str) -> None:
    assert audience_for(public_url, request_url, path) == expected


# --- the dev-token helpers ---------------------------------------------------------------------


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 7638 §3.1 example key and thumbprint
    jwk = {
        "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
             "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-"
             "65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNL"
             "yrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJ"
             "zKnqDKgw",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_mint_token_shape(ec_key: Any) -> None:
    minted = mint_token(ec_key, iss=ISS, aud=AUD, kid="k", now=NOW, lifetime=120)
    assert jwt.get_unverified_header(minted) == {"alg": "ES384", "typ": "JWT", "kid": "k"}
    payload = jwt.decode(minted, options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == 120 and payload["iat"] == NOW
    assert uuid.UUID(payload["jti"]).version == 4
    assert "sub" not in payload


def _dev_token(*argv: str) -> int:
    import argparse

    from cds_service.commands import dev_token

    parser = argparse.ArgumentParser(prog="cds-service")
    dev_token.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dev-token", *argv])
    return int(args.run(args))


def test_dev_token_init_then_mint_gives_a_token_the_service_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "dev-issuer"
    assert _dev_token("--init", str(folder), "--fhir-server", "http://127.0.0.1:8105/fhir/") == 0
    key_file = folder / "issuer-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    trust = TrustStore.load(folder / "trusted-issuers.json")
    (issuer,) = list(trust)
    assert issuer.iss == "http://127.0.0.1/dev-issuer"
    assert issuer.fhir_servers == ("http://127.0.0.1:8105/fhir",)
    (jwk,) = issuer.jwks["keys"]  # type: ignore[index]
    assert jwk["kid"] == jwk_thumbprint(jwk) and "d" not in jwk
    capsys.readouterr()

    aud = "http://127.0.0.1:8080/cds-services/tma-bone-assessment"
    assert _dev_token("--key", str(key_file), "--aud", aud, "--lifetime", "120") == 0
    minted = capsys.readouterr().out.strip()
    assert TokenVerifier(trust, session=NoNetwork()).verify("Bearer " + minted, aud) == issuer
    # never overwrites a key
    assert _dev_token("--init", str(folder)) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--key", "{dir}/missing.pem", "--aud", AUD], "cannot read the key"),
        (["--key", "{dir}/k.pem"], "--aud URL is required"),
        (["--key", "{dir}/k.pem", "--aud", AUD, "--lifetime", "7200"], "--lifetime must be"),
    ],
)
def test_dev_token_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "k.pem").write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert _dev_token(*(a.format(dir=tmp_path) for a in argv)) == 2
    assert message in capsys.readouterr().err


# --- edges found by `make mutants` on auth.py (README "Mutation testing") ---------------------
# Each expected value follows from the verifier's rules (cds-hooks-2.0.md §6.4, RFC 7519 §4.1):
# a 60 s leeway on exp, iat and nbf, lifetime at most 3,600 s, jti unique per issuer until
# exp + leeway, JWKS fetched with a timeout, no redirects, at most 1,000,000 bytes, refreshed
# hourly or on an unknown kid at most once a minute.


def test_replay_cache_remembers_through_the_second_of_expiry() -> None:
    clock = Clock(100)
    cache = ReplayCache(clock)
    assert cache.remember("i", "a", until=110)
    clock.now = 110  # "until" itself is still inside the window
    assert not cache.remember("i", "a", until=120)
    clock.now = 110.5
    assert cache.remember("i", "a", until=120)


@pytest.mark.parametrize(
    ("minted_at", "accepted"),
    [(NOW - 360, True), (NOW - 361, False)],  # exp = minted + 300; exp + 60 s leeway vs NOW
)
def test_expiry_at_the_leeway_edge(verifier: TokenVerifier, ec_key: Any, minted_at: int,
                                   accepted: bool) -> None:
    minted = "Bearer " + token(ec_key, now=minted_at)
    if accepted:
        assert verifier.verify(minted, AUD).iss == ISS
    else:
        rejected(verifier, minted, "token expired 61 s ago")


@pytest.mark.parametrize(("iat", "accepted"), [(NOW + 60, True), (NOW + 61, False)])
def test_iat_at_the_leeway_edge(verifier: TokenVerifier, ec_key: Any, iat: int,
                                accepted: bool) -> None:
    minted = "Bearer " + token(ec_key, now=iat)
    if accepted:
        assert verifier.verify(minted, AUD).iss == ISS
    else:
        rejected(verifier, minted, "iat is 61 s in the future")


@pytest.mark.parametrize(("nbf", "accepted"),
                         [(NOW - 100, True), (NOW, True), (NOW + 60, True), (NOW + 61, False)])
def test_nbf_at_the_leeway_edge(verifier: TokenVerifier, ec_key: Any, nbf: int,
                                accepted: bool) -> None:
    minted = "Bearer " + token(ec_key, claims={"nbf": nbf})
    if accepted:
        assert verifier.verify(minted, AUD).iss == ISS
    else:
        rejected(verifier, minted, "not valid yet")


@pytest.mark.parametrize(("lifetime", "accepted"), [(3600, True), (3601, False)])
def test_lifetime_at_the_maximum(verifier: TokenVerifier, ec_key: Any, lifetime: int,
                                 accepted: bool) -> None:
    minted = "Bearer " + token(ec_key, lifetime=lifetime)
    if accepted:
        assert verifier.verify(minted, AUD).iss == ISS
    else:
        rejected(verifier, minted, "lifetime 3601 s exceeds the maximum 3600 s")


def test_token_of_exactly_the_maximum_length_is_read_not_refused_for_length(
    verifier: TokenVerifier,
) -> None:
    from cds_service.auth import MAX_TOKEN_CHARS

    rejected(verifier, "Bearer " + "a" * MAX_TOKEN_CHARS, "token header is not readable")
    rejected(verifier, "Bearer " + "a" * (MAX_TOKEN_CHARS + 1), "longer than")


@pytest.mark.parametrize(("header", "payload", "reason"), [
    ({"alg": "ES384", "typ": "JWT", "kid": ""}, claims(), "kid header is missing"),
    ({"alg": "ES384", "typ": "JWT", "kid": "k"}, claims(iss=123), "claim iss is missing"),
])
def test_kid_and_iss_must_be_non_empty_strings(verifier: TokenVerifier, header: dict[str, Any],
                                     payload: dict[str, Any], reason: str) -> None:
    rejected(verifier, "Bearer " + craft(header, payload, lambda d: b"\x00" * 96), reason)


def test_alg_of_another_key_type_is_refused_before_decoding(
    ec_key: Any, rsa_key: Any, clock: Clock
) -> None:
    # signed ES384 but naming the issuer's RSA key, which gives no "alg" of its own: refused by
    # the key-type check, not left to PyJWT
    rsa_jwk = {k: v for k, v in public_jwk(rsa_key).items() if k != "alg"}
    trust = store({"iss": ISS, "jwks": {"keys": [public_jwk(ec_key), rsa_jwk]},
                   "fhirServers": [FHIR]})
    verifier = TokenVerifier(trust, clock=clock, session=NoNetwork())
    minted = token(ec_key, kid=kid_of(rsa_key), alg="ES384")
    rejected(verifier, "Bearer " + minted, f"alg ES384 does not fit key {kid_of(rsa_key)} "
                                           f"of issuer {ISS} \\(RSA\\)")


def test_jti_is_unique_per_issuer_not_across_issuers(
    ec_key: Any, other_ec_key: Any, clock: Clock
) -> None:
    other = "https://other-ehr.example.org"
    verifier = TokenVerifier(store(entry(ec_key), entry(other_ec_key, iss=other)), clock=clock,
                             session=NoNetwork())
    assert verifier.verify("Bearer " + token(ec_key, jti="shared"), AUD).iss == ISS
    assert verifier.verify("Bearer " + token(other_ec_key, iss=other, jti="shared"),
                           AUD).iss == other


def test_jti_stays_used_while_the_token_is_valid_by_the_leeway(
    verifier: TokenVerifier, ec_key: Any, clock: Clock
) -> None:
    minted = "Bearer " + token(ec_key, jti="late")  # exp NOW + 300, valid until NOW + 360
    assert verifier.verify(minted, AUD)
    clock.now = NOW + 330
    rejected(verifier, minted, "already used")


def test_a_shared_replay_cache_is_the_one_used(ec_key: Any, clock: Clock) -> None:
    # two verifiers (two workers or instances) sharing one cache: the second refuses a replay
    shared = ReplayCache(clock)
    first, second = (TokenVerifier(store(entry(ec_key)), clock=clock, session=NoNetwork(),
                                   replay=shared) for _ in range(2))
    minted = "Bearer " + token(ec_key)
    assert first.verify(minted, AUD)
    rejected(second, minted, "already used")


class _Raw:
    def __init__(self, body: bytes, calls: list[Any]) -> None:
        self.body, self.calls = body, calls

    def read(self, amount: int | None = None, decode_content: bool = False) -> bytes:
        self.calls.append(("read", amount, decode_content))
        return self.body if amount is None else self.body[:amount]


class _Response:
    def __init__(self, body: bytes, calls: list[Any]) -> None:
        self.status_code, self.raw = 200, _Raw(body, calls)

    def close(self) -> None:
        pass


class RecordingSession:
    """A requests.Session stand-in that serves one JWKS body and records how it was asked."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls: list[Any] = []

    def get(self, url: str, **kwargs: Any) -> _Response:
        self.calls.append(("get", url, kwargs))
        return _Response(self.body, self.calls)

    @property
    def gets(self) -> int:
        return sum(1 for call in self.calls if call[0] == "get")


def _remote_verifier(session: RecordingSession, clock: Clock, **options: Any) -> TokenVerifier:
    return TokenVerifier(store({"iss": ISS, "jwks_url": "https://ehr.example.org/jwks.json"}),
                         clock=clock, session=session, **options)  # type: ignore[arg-type]


def test_jwks_is_fetched_with_a_timeout_no_redirects_and_a_byte_cap(
    ec_key: Any, clock: Clock
) -> None:
    from cds_service.auth import MAX_JWKS_BYTES

    session = RecordingSession(json.dumps({"keys": [public_jwk(ec_key)]}).encode())
    assert _remote_verifier(session, clock, http_timeout=2.5).verify(
        "Bearer " + token(ec_key), AUD)
    (_, url, kwargs), read = session.calls
    assert url == "https://ehr.example.org/jwks.json"
    assert kwargs["timeout"] == 2.5 and kwargs["allow_redirects"] is False
    assert kwargs["stream"] is True
    assert "application/jwk-set+json" in kwargs["headers"]["Accept"]
    assert read == ("read", MAX_JWKS_BYTES + 1, True)  # gzip decoded, one byte over the cap


@pytest.mark.parametrize(("extra", "accepted"), [(0, True), (1, False)])
def test_jwks_of_exactly_the_cap_is_read(ec_key: Any, clock: Clock, extra: int,
                                         accepted: bool) -> None:
    from cds_service.auth import MAX_JWKS_BYTES

    body = json.dumps({"keys": [public_jwk(ec_key)]}).encode()
    body += b" " * (MAX_JWKS_BYTES - len(body) + extra)  # JSON allows trailing white space
    verifier = _remote_verifier(RecordingSession(body), clock)
    if accepted:
        assert verifier.verify("Bearer " + token(ec_key), AUD).iss == ISS
    else:
        rejected(verifier, "Bearer " + token(ec_key), f"larger than {MAX_JWKS_BYTES} bytes")


def test_jwks_is_kept_for_an_hour_and_refetched_after(ec_key: Any, clock: Clock) -> None:
    session = RecordingSession(json.dumps({"keys": [public_jwk(ec_key)]}).encode())
    verifier = _remote_verifier(session, clock)
    for offset, fetches in ((0, 1), (120, 1), (3600, 1), (3601, 2)):
        clock.now = NOW + offset
        assert verifier.verify("Bearer " + token(ec_key, now=clock.now), AUD)
        assert session.gets == fetches, offset


def test_unknown_kid_refetches_exactly_a_minute_after_the_last_attempt(
    ec_key: Any, other_ec_key: Any, clock: Clock
) -> None:
    session = RecordingSession(json.dumps({"keys": [public_jwk(ec_key)]}).encode())
    verifier = _remote_verifier(session, clock)
    assert verifier.verify("Bearer " + token(ec_key), AUD)
    clock.now = NOW + 59.5
    rejected(verifier, "Bearer " + token(other_ec_key, now=clock.now), "is not in the JWKS")
    assert session.gets == 1
    clock.now = NOW + 60
    rejected(verifier, "Bearer " + token(other_ec_key, now=clock.now), "is not in the JWKS")
    assert session.gets == 2


def test_build_verifier_with_a_database_shares_the_replay_cache_across_verifiers(
    ec_key: Any, tmp_path: Path
) -> None:
    # two workers or instances on one database: a token used at one is refused by the other
    from cds_service.db import Database

    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [entry(ec_key)]}))
    settings = Settings(trusted_issuers=str(path), public_url="https://cds.example.org")
    database = Database(f"sqlite:///{tmp_path / 'shared.db'}")
    first, second = build_verifier(settings, database), build_verifier(settings, database)
    assert first is not None and second is not None
    minted = "Bearer " + token(ec_key, now=time.time())
    assert first.verify(minted, AUD).iss == ISS
    rejected(second, minted, "already used")


@pytest.mark.parametrize(("public_url", "warned"),
                         [(None, True), ("https://cds.example.org", False)])
def test_build_verifier_warns_when_the_public_url_is_unset(
    caplog: pytest.LogCaptureFixture, public_url: str | None, warned: bool
) -> None:
    with caplog.at_level(logging.WARNING):
        build_verifier(Settings(trusted_issuers=str(SANDBOX_FILE), public_url=public_url))
    notes = [r.fields["note"] for r in caplog.records if r.getMessage() == "auth.public_url_unset"]
    assert bool(notes) is warned
    if warned:
        assert notes[0].startswith("CDS_PUBLIC_URL is not set: the aud check uses the scheme")


def test_jwks_and_jku_urls_may_carry_a_query_fhir_servers_may_not(ec_key: Any) -> None:
    jwks_url = "https://ehr.example.org/keys?tenant=7"
    trusted = store({"iss": ISS, "jwks_url": jwks_url, "jku": [jwks_url + "&v=2"],
                     "fhirServers": [FHIR]})
    assert trusted.get(ISS).jwks_url == jwks_url
    with pytest.raises(ConfigError, match=r'"fhirServers"\[0\]'):
        store(entry(ec_key, fhirServers=[FHIR + "?tenant=7"]))


def test_fetched_jwks_keeps_the_first_of_a_repeated_kid_and_the_keys_after_it(
    ec_key: Any, other_ec_key: Any, clock: Clock
) -> None:
    first = public_jwk(ec_key)
    repeated = {**public_jwk(other_ec_key), "kid": first["kid"]}
    body = json.dumps({"keys": [first, repeated, public_jwk(other_ec_key)]}).encode()
    verifier = _remote_verifier(RecordingSession(body), clock)
    assert verifier.verify("Bearer " + token(ec_key), AUD).iss == ISS
    assert verifier.verify("Bearer " + token(other_ec_key), AUD).iss == ISS
