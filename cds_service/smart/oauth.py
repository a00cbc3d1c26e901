"""The SMART App Launch 2.0 client side (EHR launch) on Authlib's requests ``OAuth2Session``:
discovery, the authorisation URL (PKCE S256), and the one code exchange. No Flask here.

- ``<iss>/.well-known/smart-configuration`` is read with a timeout, without following redirects
  and with a size limit; its endpoints must be absolute https URLs (http only on loopback).
- The code is exchanged once, as a form POST: ``client_id`` in the body for a public client,
  HTTP Basic with ``CDS_SMART_CLIENT_SECRET`` for a confidential one (Authlib's
  ``none`` / ``client_secret_basic`` client authentication).
- Tokens are returned to the caller only; nothing here logs them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session

from ..fhir import urls

# Exactly what the app reads (the patient-view prefetch types), SMART v2 ".rs" (read, search).
READ_TYPES = ("Patient", "Condition", "Procedure", "Observation", "DiagnosticReport",
              "ImagingStudy", "MedicationRequest")
SCOPE = " ".join(("launch", "openid", "fhirUser", *(f"patient/{t}.rs" for t in READ_TYPES)))
MAX_DISCOVERY_BYTES = 256 * 1024


class LaunchError(Exception):
    """The launch cannot go on; ``message`` says why in words safe for the page and the log
    (never a token, never a patient id)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SmartConfig:
    authorization_endpoint: str
    token_endpoint: str


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    patient: str | None
    expires_in: float | None
    scope: str


def _endpoint(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise LaunchError(f"the EHR's SMART configuration has no {name}")
    try:
        urls.check_url(value, name, allow_query=True)  # https, http only on loopback
    except ValueError:
        pass
    else:
        return value
    raise LaunchError(f"the EHR's {name} is not an https URL")


def discover(session: requests.Session, iss: str, timeout: float) -> SmartConfig:
    """Read the SMART configuration of an (already allow-listed) FHIR server."""
    url = iss.rstrip("/") + "/.well-known/smart-configuration"
    try:
        with session.get(url, headers={"Accept": "application/json"}, timeout=timeout,
                         allow_redirects=False, stream=True) as response:
            if response.status_code != 200:
                raise LaunchError(f"the EHR's SMART configuration answered HTTP "
                                  f"{response.status_code}")
            body = response.raw.read(MAX_DISCOVERY_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise LaunchError(f"the EHR's SMART configuration could not be read "
                          f"({type(exc).__name__})") from None
    if len(body) > MAX_DISCOVERY_BYTES:
        raise LaunchError("the EHR's SMART configuration is too large")
    try:
        config = json.loads(body)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise LaunchError("the EHR's SMART configuration is not a JSON object")
    methods = config.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise LaunchError("the EHR's authorisation server does not support PKCE S256")
    return SmartConfig(_endpoint(config.get("authorization_endpoint"), "authorization_endpoint"),
                       _endpoint(config.get("token_endpoint"), "token_endpoint"))


def _client(client_id: str, secret: str | None, redirect_uri: str) -> OAuth2Session:
    return OAuth2Session(client_id, secret, scope=SCOPE, redirect_uri=redirect_uri,
                         code_challenge_method="S256",
                         token_endpoint_auth_method="client_secret_basic" if secret else "none")


def authorization_url(config: SmartConfig, *, client_id: str, secret: str | None,
                      redirect_uri: str, iss: str, launch: str) -> tuple[str, str, str]:
    """(url to redirect the browser to, state, PKCE code verifier)."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
    state = secrets.token_urlsafe(32)
    with _client(client_id, secret, redirect_uri) as client:
        url, _ = client.create_authorization_url(
            config.authorization_endpoint, state=state, code_verifier=verifier, aud=iss,
            launch=launch)
    return url, state, verifier


def exchange(token_endpoint: str, *, code: str, verifier: str, client_id: str,
             secret: str | None, redirect_uri: str, timeout: float) -> Token:
    """Trade the code for a token (one POST, no redirects followed).

    :raises LaunchError: the EHR refused (its OAuth error code is named) or did not answer.
    """
    try:
        with _client(client_id, secret, redirect_uri) as client:
            token = client.fetch_token(token_endpoint, grant_type="authorization_code",
                                       code=code, code_verifier=verifier, timeout=timeout,
                                       allow_redirects=False)
    except AuthlibBaseError as exc:  # OAuth2Error / OAuthError: the EHR's error response
        error = "".join(ch for ch in str(exc.error or "error") if ch.isalnum() or ch in "_-")
        raise LaunchError(f"the EHR refused the authorisation code ({error[:40]})") from None
    except (requests.RequestException, ValueError) as exc:
        raise LaunchError(f"the EHR's token endpoint could not be used "
                          f"({type(exc).__name__})") from None
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise LaunchError("the EHR's token response has no access token")
    if str(token.get("token_type", "")).lower() != "bearer":
        raise LaunchError("the EHR's token is not a bearer token")
    patient = token.get("patient")
    expires = token.get("expires_in")
    return Token(access, patient if isinstance(patient, str) and patient else None,
                 float(expires) if isinstance(expires, (int, float)) and not isinstance(
                     expires, bool) else None, str(token.get("scope", "")))
