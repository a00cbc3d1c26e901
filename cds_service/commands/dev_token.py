"""``cds-service dev-token``: a local issuer key, and short-lived client JWTs signed with it.

For trying a service that has authentication on, with curl::

    cds-service dev-token --init var/dev-issuer
    export CDS_TRUSTED_ISSUERS=var/dev-issuer/trusted-issuers.json
    TOKEN=$(cds-service dev-token --key var/dev-issuer/issuer-key.pem \\
            --aud http://127.0.0.1:8080/cds-services/tma-bone-assessment)

The key is for development only: whoever holds ``issuer-key.pem`` can call the service.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ..auth import jwk_thumbprint

DEV_ISSUER = "http://127.0.0.1/dev-issuer"
DEFAULT_FHIR_SERVER = "http://127.0.0.1:8090/fhir"
KEY_FILE = "issuer-key.pem"
ISSUERS_FILE = "trusted-issuers.json"
MAX_LIFETIME = 3600  # the service's default maximum (auth.TokenVerifier.max_lifetime)


class UsageError(Exception):
    """Bad input; ``main`` prints the message and exits 2."""


def public_jwk(private_key: Any) -> dict[str, Any]:
    """Return the public JWK of an EC P-384 or RSA private key, with ``kid`` its thumbprint."""
    public = private_key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        alg = "ES384"
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        alg = "RS384"
    jwk = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}
    return {**jwk, "kid": jwk_thumbprint(jwk), "use": "sig", "alg": alg}


def mint_token(
    private_key: Any,
    *,
    iss: str,
    aud: str | list[str],
    kid: str,
    alg: str = "ES384",
    lifetime: int = 300,
    jti: str | None = None,
    now: float | None = None,
    headers: Mapping[str, Any] | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """Return a CDS Hooks client JWT (cds-hooks-2.0.md §6.3-6.4) signed with ``private_key``.

    :param headers: extra or replacement header fields (e.g. ``{"jku": url}``).
    :param claims: extra or replacement claims; a value of ``None`` removes that claim (tests).
    """
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "exp": issued + lifetime,
        "iat": issued,
        "jti": jti or str(uuid.uuid4()),
    }
    for name, value in (claims or {}).items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    header = {"typ": "JWT", "kid": kid, **(headers or {})}
    return jwt.encode(payload, private_key, algorithm=alg, headers=header)


def load_private_key(path: Path) -> Any:
    """Read a PEM private key (EC P-384 or RSA). :raises UsageError: naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the key: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return key
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key
    raise UsageError(f"{path}: the key must be EC P-384 (ES384) or RSA of 2048+ bits (RS384)")


def init_issuer(directory: Path, fhir_servers: list[str], *, iss: str = DEV_ISSUER) -> Path:
    """Write a new P-384 key (mode 0600) and a trusted-issuers file for it; return the file.

    :raises UsageError: the key file already exists (it is never overwritten).
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / KEY_FILE
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{key_path}: already exists; remove it or pick another folder") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    issuers = {
        "comment": "Development issuer made by `cds-service dev-token --init`; never trust it "
                   "in production.",
        "issuers": [
            {
                "iss": iss,
                "jwks": {"keys": [public_jwk(key)]},
                "fhirServers": [s.rstrip("/") for s in fhir_servers],
            }
        ],
    }
    issuers_path = directory / ISSUERS_FILE
    issuers_path.write_text(json.dumps(issuers, indent=2) + "\n", encoding="utf-8")
    return issuers_path


def register(subparsers: Any) -> None:
    """Add the ``dev-token`` subcommand to the ``cds-service`` parser."""
    parser = subparsers.add_parser(
        "dev-token",
        help="make a local issuer key, or mint a short-lived client JWT with it",
        description="Development only. --init DIR writes DIR/issuer-key.pem and "
                    "DIR/trusted-issuers.json (point CDS_TRUSTED_ISSUERS at it); "
                    "--key DIR/issuer-key.pem --aud URL prints a fresh ES384 token for URL.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--init", metavar="DIR", type=Path,
                      help="create a new issuer key and trusted-issuers file in DIR")
    mode.add_argument("--key", metavar="PEM", type=Path,
                      help="private key to sign with (written by --init)")
    parser.add_argument("--aud", metavar="URL",
                        help="the exact URL that will be called, e.g. "
                             "http://127.0.0.1:8080/cds-services/tma-bone-assessment")
    parser.add_argument("--iss", default=DEV_ISSUER, help=f"issuer (default {DEV_ISSUER})")
    parser.add_argument("--lifetime", type=int, default=300,
                        help="seconds the token is valid (default 300, at most 3600)")
    parser.add_argument("--fhir-server", action="append", dest="fhir_servers", metavar="URL",
                        help="with --init: a FHIR base URL this issuer may send the service to "
                             f"(repeatable; default {DEFAULT_FHIR_SERVER})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Carry out ``dev-token``; return the exit code (0 done, 2 usage or input error)."""
    try:
        if args.init is not None:
            path = init_issuer(args.init, args.fhir_servers or [DEFAULT_FHIR_SERVER],
                               iss=args.iss)
            key_path = args.init / KEY_FILE
            print(f"wrote {key_path} (private, mode 0600) and {path}")  # noqa: T201
            print("run the service with:")  # noqa: T201
            print(f"  export CDS_TRUSTED_ISSUERS={path}")  # noqa: T201
            print("then mint a token for the URL you will call:")  # noqa: T201
            print(f"  cds-service dev-token --key {key_path} --aud "  # noqa: T201
                  "http://127.0.0.1:8080/cds-services/tma-bone-assessment")
            return 0
        if not args.aud:
            raise UsageError("--aud URL is required with --key")
        if not 0 < args.lifetime <= MAX_LIFETIME:
            raise UsageError(f"--lifetime must be 1..{MAX_LIFETIME} seconds")
        key = load_private_key(args.key)
        alg = "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384"
        token = mint_token(key, iss=args.iss, aud=args.aud, kid=public_jwk(key)["kid"], alg=alg,
                           lifetime=args.lifetime)
        print(token)  # noqa: T201
        return 0
    except UsageError as exc:
        print(f"cds-service dev-token: {exc}", file=sys.stderr)  # noqa: T201
        return 2
