"""Authentication of CDS clients: the trusted issuers, their keys, and verification of client JWTs.

No Flask here: the web layer (``web.guards``) hands in the ``Authorization`` header and the URL
that was called, and gets back the :class:`Issuer` that signed the token, or a
:class:`~cds_service.errors.ClientNotTrusted` whose message is the reason, for the log only.

What a token must be (cds-hooks-2.0.md §6; each rule is checked before the next)::

    Authorization: Bearer <jwt>
    header   alg ES384 | RS384 (none, HS* and everything else refused before any key lookup)
             kid present; typ, when present, "JWT"; jku, when present, on the issuer's allow-list
    payload  iss a trusted issuer; signature valid with that issuer's key ``kid``, whose type
             matches alg (EC P-384 for ES384, RSA for RS384)
             aud (string or array) names the URL that was called (trailing "/" ignored)
             exp not passed, iat not in the future (both with ``leeway``), exp - iat <= max_lifetime
             jti not seen before (:class:`ReplayCache`)

Keys come from the issuer's entry in the trusted-issuers file: pinned inline (``jwks``) or fetched
from its ``jwks_url``. A ``jku`` header is only checked against the allow-list, never followed, so
the service fetches nothing but the ``jwks_url`` values an operator wrote in that file.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from .errors import ClientNotTrusted, ConfigError
from .fhir import urls
from .logs import LOGGER_NAME, log_event
from .safetext import shown as _shown

if TYPE_CHECKING:
    from .config import Settings
    from .db import Database
    from .replay_cache import DatabaseReplayCache

log = logging.getLogger(LOGGER_NAME)

# alg -> the JWK key type it needs. Everything else (none, HS*, ES256, PS*...) is refused.
ALGORITHMS: dict[str, str] = {"ES384": "EC", "RS384": "RSA"}
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "jti")
MIN_RSA_BITS = 2048
MAX_TOKEN_CHARS = 16_384
MAX_JWKS_BYTES = 1_000_000
# JWK members that only a private key has: a file holding them leaks a secret and is refused.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")
_ENTRY_KEYS = {"iss", "jwks", "jwks_url", "jku", "fhirServers", "comment"}
# IANA HTTP authentication schemes other than Bearer, named in a rejection reason.
_OTHER_SCHEMES = frozenset({"basic", "digest", "dpop", "hoba", "mutual", "negotiate", "ntlm",
                            "vapid", "scram-sha-1", "scram-sha-256", "aws4-hmac-sha256"})


def _norm_url(url: str) -> str:
    return url.rstrip("/")


# ---------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class _Key:
    """One usable public key from a JWKS."""

    kid: str
    kty: str  # "EC" (always P-384) or "RSA"
    alg: str | None  # the JWK's own "alg", when it gives one
    public_key: Any = field(repr=False)


def parse_jwk(jwk: Any) -> _Key:
    """Return the public key a JWK describes if it may verify client JWTs.

    :raises ValueError: with a sentence saying why the key is not usable.
    """
    if not isinstance(jwk, Mapping):
        raise ValueError("a key must be a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError('a key needs a non-empty string "kid"')
    kty = jwk.get("kty")
    if kty not in ("EC", "RSA"):
        raise ValueError(f'key {kid!r} has "kty": {kty!r}; only EC (P-384) and RSA are allowed')
    private = [m for m in _PRIVATE_MEMBERS if m in jwk]
    if private:
        raise ValueError(
            f"key {kid!r} holds private material ({', '.join(private)}); "
            "give only the public key"
        )
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError(f'key {kid!r} has "use": {use!r}; it must be "sig" or absent')
    alg = jwk.get("alg")
    if alg is not None and alg not in ALGORITHMS:
        raise ValueError(f'key {kid!r} has "alg": {alg!r}; allowed: ES384, RS384')
    text = json.dumps(dict(jwk))
    if kty == "EC":
        if jwk.get("crv") != "P-384":
            raise ValueError(
                f"key {kid!r} is EC on curve {jwk.get('crv')!r}; only P-384 is allowed"
            )
        try:
            key = ECAlgorithm.from_jwk(text)
        except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise ValueError(f"key {kid!r} is not a valid EC P-384 key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
            raise ValueError(f"key {kid!r} is not an EC P-384 public key")
    else:
        try:
            key = RSAAlgorithm.from_jwk(text)
        except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise ValueError(f"key {kid!r} is not a valid RSA key: {exc}") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"key {kid!r} is not an RSA public key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"key {kid!r} is RSA-{key.key_size}; at least {MIN_RSA_BITS} bits")
    if alg is not None and ALGORITHMS[alg] != kty:
        raise ValueError(f'key {kid!r} is {kty} but says "alg": {alg!r}')
    return _Key(kid=kid, kty=kty, alg=alg, public_key=key)


def parse_jwks(jwks: Any, *, strict: bool) -> dict[str, _Key]:
    """Return the usable keys of a JWK Set by ``kid``.

    ``strict`` (a file an operator wrote): any unusable key is an error. Otherwise (a JWKS fetched
    from an issuer, which may publish other kinds of keys too): unusable keys are skipped.

    :raises ValueError: the set is malformed (``strict``: or holds an unusable key).
    """
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise ValueError('a JWKS must be an object with a "keys" array')
    keys: dict[str, _Key] = {}
    for index, jwk in enumerate(jwks["keys"]):
        try:
            key = parse_jwk(jwk)
        except ValueError as exc:
            if strict:
                raise ValueError(f"keys[{index}]: {exc}") from None
            continue
        if key.kid in keys:
            if strict:
                raise ValueError(f"keys[{index}]: kid {key.kid!r} appears twice")
            continue
        keys[key.kid] = key
    if strict and not keys:
        raise ValueError('the JWKS has no keys; "keys" must list at least one public key')
    return keys


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of a public EC or RSA JWK (base64url, no padding)."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return jwt.utils.base64url_encode(digest).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Trusted issuers


@dataclass(frozen=True)
class Issuer:
    """A CDS client we trust: where its keys are and which FHIR servers it may send us to."""

    iss: str
    jwks: dict[str, Any] | None = field(default=None, hash=False, compare=False, repr=False)
    jwks_url: str | None = None
    jku: tuple[str, ...] = ()  # JWKS URLs its tokens may name in a "jku" header
    fhir_servers: tuple[str, ...] = ()  # trailing "/" stripped

    @property
    def allowed_jku(self) -> frozenset[str]:
        """``jku`` header values accepted for this issuer (its ``jwks_url`` always is)."""
        return frozenset(self.jku + ((self.jwks_url,) if self.jwks_url else ()))


def _url_list(value: Any, what: str, *, allow_query: bool) -> tuple[str, ...]:
    """Each URL checked by :func:`urls.check_url` (https; http only on loopback)."""
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of URLs")
    return tuple(
        urls.check_url(item, f"{what}[{i}]", allow_query=allow_query)
        for i, item in enumerate(value)
    )


def _issuer_from_entry(entry: Any) -> Issuer:
    """Build one issuer from its file entry. :raises ValueError: naming the key that is wrong."""
    if not isinstance(entry, Mapping):
        raise ValueError("an issuer entry must be a JSON object")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r}; an entry has iss, jwks or jwks_url, jku, fhirServers"
        )
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        raise ValueError('"iss" is required and must be a non-empty string')
    has_jwks, has_url = "jwks" in entry, "jwks_url" in entry
    if has_jwks == has_url:
        raise ValueError(f'issuer {iss!r}: give exactly one of "jwks" (inline) or "jwks_url"')
    jwks = None
    jwks_url = None
    if has_jwks:
        try:
            parse_jwks(entry["jwks"], strict=True)
        except ValueError as exc:
            raise ValueError(f'issuer {iss!r}: "jwks": {exc}') from None
        jwks = dict(entry["jwks"])
    else:
        jwks_url = urls.check_url(entry["jwks_url"], f'issuer {iss!r}: "jwks_url"',
                                  allow_query=True)
    jku = _url_list(entry.get("jku", []), f'issuer {iss!r}: "jku"', allow_query=True)
    # A FHIR server gets the access token: plain http only on loopback (local trials).
    servers = _url_list(entry.get("fhirServers", []), f'issuer {iss!r}: "fhirServers"',
                        allow_query=False)
    return Issuer(
        iss=iss,
        jwks=jwks,
        jwks_url=jwks_url,
        jku=jku,
        fhir_servers=tuple(_norm_url(s) for s in servers),
    )


class TrustStore:
    """The trusted issuers, by ``iss`` (exact match)."""

    def __init__(self, issuers: Iterable[Issuer]) -> None:
        self._issuers: dict[str, Issuer] = {}
        for issuer in issuers:
            if issuer.iss in self._issuers:
                raise ValueError(f"issuer {issuer.iss!r} is listed twice")
            self._issuers[issuer.iss] = issuer

    @classmethod
    def from_dict(cls, data: Any, source: str = "trusted issuers") -> TrustStore:
        """Build from the parsed contract format ``{"issuers": [...]}``.

        :raises ConfigError: naming ``source`` and the entry or key that is wrong.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("issuers"), list):
            raise ConfigError(f'{source}: the top level must be {{"issuers": [...]}}')
        unknown = sorted(set(data) - {"issuers", "comment"})
        if unknown:
            raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r}")
        issuers: list[Issuer] = []
        seen: dict[str, int] = {}
        for index, entry in enumerate(data["issuers"]):
            try:
                issuer = _issuer_from_entry(entry)
            except ValueError as exc:
                raise ConfigError(f"{source}: issuers[{index}]: {exc}") from None
            if issuer.iss in seen:
                raise ConfigError(
                    f"{source}: issuers[{index}]: issuer {issuer.iss!r} is already listed "
                    f"at issuers[{seen[issuer.iss]}]"
                )
            seen[issuer.iss] = index
            issuers.append(issuer)
        return cls(issuers)

    @classmethod
    def load(cls, path: str | Path) -> TrustStore:
        """Read a trusted-issuers file. :raises ConfigError: naming the file and what is wrong."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read the trusted-issuers file: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: the trusted-issuers file is not UTF-8") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        return cls.from_dict(data, source=str(path))

    def get(self, iss: str) -> Issuer | None:
        return self._issuers.get(iss)

    def __iter__(self) -> Iterator[Issuer]:
        return iter(self._issuers.values())

    def __len__(self) -> int:
        return len(self._issuers)


# ---------------------------------------------------------------------------------------------
# Replay protection


class ReplayCache:
    """The ``jti`` values already accepted, each remembered until its token expires, in memory.

    Thread-safe, but **per process**: with several gunicorn workers or instances each would have
    its own, and a captured token could be replayed once per process. The service therefore uses
    :class:`~cds_service.replay_cache.DatabaseReplayCache` (same ``remember``), kept in the shared
    database; this one serves a verifier built without a database (tests, tools).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[tuple[str, str], float] = {}
        self._expiries: list[tuple[float, tuple[str, str]]] = []  # heap for purging

    def remember(self, iss: str, jti: str, until: float) -> bool:
        """Record ``(iss, jti)`` until ``until``; return False if it was already recorded.

        :raises ValueError: ``until`` is not a finite number (a NaN would break the heap order,
            and with it the purge, so the cache would grow without bound).
        """
        if not math.isfinite(until):
            raise ValueError(f"replay cache expiry must be a finite number, not {until!r}")
        key = (iss, jti)
        with self._lock:
            now = self._clock()
            self._purge(now)
            if key in self._until:
                return False
            self._until[key] = until
            heapq.heappush(self._expiries, (until, key))
            return True

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] < now:
            until, key = heapq.heappop(self._expiries)
            if self._until.get(key) == until:
                del self._until[key]

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._until)


# ---------------------------------------------------------------------------------------------
# Fetched JWKS


class _RemoteJwks:
    """The keys behind one ``jwks_url``: fetched on first use, cached, refreshed on unknown kid.

    A refetch happens at most once per ``refetch_interval`` seconds (an unknown ``kid`` must not
    turn the service into a request amplifier), or when the keys are older than ``max_age``; if
    that refresh fails, the old keys keep working.
    """

    def __init__(self, url: str, *, session: requests.Session, timeout: float,
                 clock: Callable[[], float], refetch_interval: float, max_age: float) -> None:
        self.url = url
        self._session = session
        self._timeout = timeout
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    def key(self, kid: str, iss: str) -> _Key:
        with self._lock:  # one fetch at a time per URL; the others wait for its keys
            now = self._clock()
            fresh = self._fetched_at is not None and now - self._fetched_at <= self._max_age
            if kid in self._keys and fresh:
                return self._keys[kid]
            may_fetch = (self._attempted_at is None
                         or now - self._attempted_at >= self._refetch_interval)
            if may_fetch:
                self._attempted_at = now
                try:
                    self._keys = self._fetch()
                    self._fetched_at = now
                except ClientNotTrusted:
                    if kid not in self._keys:
                        raise
            if kid in self._keys:
                return self._keys[kid]
            raise ClientNotTrusted(
                f"kid {_shown(kid)} is not in the JWKS of issuer {_shown(iss)} at {self.url}"
            )

    def _fetch(self) -> dict[str, _Key]:
        try:
            response = self._session.get(
                self.url, timeout=self._timeout, allow_redirects=False, stream=True,
                headers={"Accept": "application/json, application/jwk-set+json"},
            )
            try:
                if response.status_code != 200:
                    raise ClientNotTrusted(
                        f"JWKS {self.url} answered HTTP {response.status_code}, not 200"
                    )
                raw = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
            finally:
                response.close()
        except requests.RequestException as exc:
            raise ClientNotTrusted(
                f"JWKS {self.url} could not be fetched: {type(exc).__name__}"
            ) from None
        if len(raw) > MAX_JWKS_BYTES:
            raise ClientNotTrusted(f"JWKS {self.url} is larger than {MAX_JWKS_BYTES} bytes")
        try:
            return parse_jwks(json.loads(raw), strict=False)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ClientNotTrusted(f"JWKS {self.url} is not a usable JWK Set: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Verification


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header or not authorization_header.strip():
        raise ClientNotTrusted("no Authorization header")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        # Named only when it is a registered scheme: a bare token here is a secret, and no part
        # of it goes to the log.
        named = scheme if scheme.lower() in _OTHER_SCHEMES else "(not a known scheme)"
        raise ClientNotTrusted(f"Authorization scheme {named} is not Bearer")
    token = token.strip()
    if not token:
        raise ClientNotTrusted("Authorization: Bearer carries no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise ClientNotTrusted(f"token is longer than {MAX_TOKEN_CHARS} characters")
    return token


def _number(claims: Mapping[str, Any], name: str) -> float:
    """Return a time claim as seconds. NaN and ±Infinity (JSON parsers accept them) are refused:
    every comparison with NaN is false, so it would pass both the expiry and lifetime checks."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClientNotTrusted(f"claim {name} must be a number of seconds, not {_shown(value)}")
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any float
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ClientNotTrusted(f"claim {name} must be a finite number of seconds, "
                               f"not {_shown(value)}")
    return seconds


def _audiences(aud: Any) -> list[str]:
    values = aud if isinstance(aud, list) else [aud]
    if not values or not all(isinstance(v, str) for v in values):
        raise ClientNotTrusted(f"aud must be a URL or an array of URLs, not {_shown(aud)}")
    return values


class TokenVerifier:
    """Verifies client JWTs against a :class:`TrustStore` (see the module docstring for the rules).

    Thread-safe; one instance serves the whole process.
    """

    def __init__(
        self,
        trust: TrustStore,
        *,
        leeway: float = 60,
        max_lifetime: float = 3600,
        http_timeout: float = 3.0,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
        replay: ReplayCache | DatabaseReplayCache | None = None,
        refetch_interval: float = 60.0,
        jwks_max_age: float = 3600.0,
    ) -> None:
        self.trust = trust
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self._clock = clock
        self.replay = replay if replay is not None else ReplayCache(clock)
        session = session if session is not None else requests.Session()
        self._inline: dict[str, dict[str, _Key]] = {}
        self._remote: dict[str, _RemoteJwks] = {}
        for issuer in trust:
            if issuer.jwks is not None:
                self._inline[issuer.iss] = parse_jwks(issuer.jwks, strict=True)
            elif issuer.jwks_url and issuer.jwks_url not in self._remote:
                self._remote[issuer.jwks_url] = _RemoteJwks(
                    issuer.jwks_url, session=session, timeout=http_timeout, clock=clock,
                    refetch_interval=refetch_interval, max_age=jwks_max_age,
                )

    def verify(self, authorization_header: str | None, audience: str) -> Issuer:
        """Return the issuer of a valid token for ``audience`` (the URL that was called).

        :raises ClientNotTrusted: with the reason (never the token) for anything wrong.
        """
        token = _bearer_token(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise ClientNotTrusted(f"token header is not readable: {exc}") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise ClientNotTrusted(f"alg {_shown(alg)} is not allowed (only ES384, RS384)")
        if "crit" in header:
            raise ClientNotTrusted(f"crit header {_shown(header['crit'])} is not supported")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() != "jwt"):
            raise ClientNotTrusted(f"typ {_shown(typ)} is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ClientNotTrusted("kid header is missing")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise ClientNotTrusted(f"token payload is not readable: {exc}") from None
        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise ClientNotTrusted("claim iss is missing")
        issuer = self.trust.get(iss)
        if issuer is None:
            raise ClientNotTrusted(f"issuer {_shown(iss)} is not trusted")
        jku = header.get("jku")
        if "jku" in header and (not isinstance(jku, str) or jku not in issuer.allowed_jku):
            # Refused without contacting it: a client-chosen URL is an SSRF vector.
            raise ClientNotTrusted(
                f"jku {_shown(jku)} is not allow-listed for issuer {_shown(iss)}"
            )
        key = self._key(issuer, kid)
        if key.kty != ALGORITHMS[alg] or (key.alg is not None and key.alg != alg):
            raise ClientNotTrusted(
                f"alg {alg} does not fit key {_shown(kid)} of issuer {_shown(iss)} "
                f"({key.kty}{', alg ' + key.alg if key.alg else ''})"
            )
        claims = self._decode(token, key, alg, issuer)
        self._check_times(claims)
        self._check_audience(claims["aud"], audience)
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise ClientNotTrusted("claim jti must be a non-empty string")
        if not self.replay.remember(iss, jti, _number(claims, "exp") + self.leeway):
            raise ClientNotTrusted(f"jti {_shown(jti)} of issuer {_shown(iss)} was already used")
        return issuer

    def _key(self, issuer: Issuer, kid: str) -> _Key:
        if issuer.jwks is not None:
            key = self._inline[issuer.iss].get(kid)
            if key is None:
                raise ClientNotTrusted(
                    f"kid {_shown(kid)} is not in the pinned JWKS of issuer {_shown(issuer.iss)}"
                )
            return key
        if issuer.jwks_url is None:  # TrustStore guarantees one of the two; never an assert
            raise ClientNotTrusted(f"issuer {_shown(issuer.iss)} has no keys")
        return self._remote[issuer.jwks_url].key(kid, issuer.iss)

    def _decode(self, token: str, key: _Key, alg: str, issuer: Issuer) -> dict[str, Any]:
        # Times are checked by _check_times with our clock and aud by _check_audience (string or
        # array, trailing "/" ignored); PyJWT checks the signature, iss and required claims.
        options: Any = {
            "require": list(REQUIRED_CLAIMS),
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
            "verify_aud": False,
            "enforce_minimum_key_length": True,
        }
        try:
            return jwt.decode(token, key.public_key, algorithms=[alg], issuer=issuer.iss,
                              options=options)
        except jwt.InvalidSignatureError:
            raise ClientNotTrusted(
                f"signature does not verify with key {_shown(key.kid)} of issuer "
                f"{_shown(issuer.iss)}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise ClientNotTrusted(f"claim {exc.claim} is missing") from None
        except jwt.PyJWTError as exc:
            raise ClientNotTrusted(f"token rejected: {type(exc).__name__}: {exc}") from None

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp, iat = _number(claims, "exp"), _number(claims, "iat")
        if exp + self.leeway < now:
            raise ClientNotTrusted(f"token expired {now - exp:.0f} s ago")
        if iat > now + self.leeway:
            raise ClientNotTrusted(f"iat is {iat - now:.0f} s in the future")
        if "nbf" in claims and _number(claims, "nbf") > now + self.leeway:
            raise ClientNotTrusted("token is not valid yet (nbf)")
        if exp <= iat:
            raise ClientNotTrusted("exp is not after iat")
        if exp - iat > self.max_lifetime:
            raise ClientNotTrusted(
                f"token lifetime {exp - iat:.0f} s exceeds the maximum {self.max_lifetime:.0f} s"
            )

    @staticmethod
    def _check_audience(aud: Any, audience: str) -> None:
        wanted = _norm_url(audience)
        values = _audiences(aud)
        if not any(_norm_url(v) == wanted for v in values):
            raise ClientNotTrusted(f"aud {_shown(aud, 300)} does not name {wanted}")


def audience_for(public_url: str | None, request_url_without_query: str, path: str) -> str:
    """Return the URL a client must put in ``aud`` for a call to ``path``.

    With ``CDS_PUBLIC_URL`` set (the service behind a proxy), that base plus the path; else the
    URL the request arrived at.

    Examples:
    - ``audience_for("https://cds.example.org/", "http://10.0.0.5:8080/cds-services/x",
      "/cds-services/x")`` -> ``"https://cds.example.org/cds-services/x"``
    - ``audience_for(None, "http://localhost:8080/cds-services/x", "/cds-services/x")`` ->
      ``"http://localhost:8080/cds-services/x"``
    """
    if public_url:
        return _norm_url(public_url) + "/" + path.lstrip("/")
    return request_url_without_query


def build_verifier(settings: Settings, database: Database | None = None) -> TokenVerifier | None:
    """Return the verifier the settings ask for: ``None`` when authentication is off.

    With ``database`` the ``jti`` replay cache lives there, shared by every worker and instance
    on it; without, in this process only.

    :raises ConfigError: auth is on without a trusted-issuers file, or the file is broken.
    """
    if not settings.auth_required:
        return None
    if not settings.trusted_issuers:
        raise ConfigError(
            "CDS_AUTH_REQUIRED is true but CDS_TRUSTED_ISSUERS is not set: point it at a "
            "trusted-issuers JSON file (for a local trial, `cds-service dev-token --init DIR` "
            "writes one), or set CDS_AUTH_REQUIRED=false for a local trial without tokens"
        )
    trust = TrustStore.load(settings.trusted_issuers)
    if not settings.public_url:
        log_event(log, logging.WARNING, "auth.public_url_unset",
                  note="CDS_PUBLIC_URL is not set: the aud check uses the scheme and Host header "
                       "of each request; set it to the service's external base URL in production")
    if database is None:
        return TokenVerifier(trust)
    from .replay_cache import DatabaseReplayCache

    return TokenVerifier(trust, replay=DatabaseReplayCache(database))
