"""The one place that decides whether a URL may be contacted: allow-lists and "same server".

Every URL the service would send a request (and an access token) to is compared here, in its
normalised form (RFC 3986 §6.2.2): scheme and host lower-cased, the scheme's default port made
explicit, percent-encoded dots decoded and dot segments removed (§5.2.4), the fragment dropped.
Whatever the checks accept is the URL that is then requested, so a check and the request can
never disagree about where it goes (a prefix test on the raw text can: ``<base>/../admin``).

Public functions (pure, no I/O):

- :func:`normalise` -- the canonical form of an absolute http(s) URL, or ``None`` for anything
  the service would never contact (another scheme, credentials in it, a bad port, an encoded
  ``/`` or ``\\`` in the path, control characters);
- :func:`same_server` -- is ``url`` at or under the FHIR base ``base`` (same scheme, host and
  port; the base's path a prefix of the URL's path on segment boundaries);
- :func:`join` -- resolve a (relative or absolute) link against a base and return the URL to
  request, only when it stays on that server;
- :func:`allowed_server` / :func:`is_allowed` -- the allow-list entry a client-named server is
  (normalised forms equal), e.g. a hook's ``fhirServer`` or a SMART launch's ``iss``;
- :func:`check_url` -- the start-up check of a configured URL (an allow-list entry, a JWKS URL):
  absolute http(s), no credentials, query or fragment, and https unless the host is loopback.

No DNS lookups: hosts are compared as written (``localhost`` and ``127.0.0.1`` are two servers).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

# Spaces and control characters: never in a URL we send (some servers trim or split on them).
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f]")
# In the path: a backslash or an encoded "/" or "\" (servers that decode them can climb out of
# the base), and a dot segment with ";" parameters ("..;" is ".." to some servlet containers).
_UNSAFE_PATH = re.compile(r"\\|%2f|%5c|(?:^|/)\.\.?;", re.IGNORECASE)
_ENCODED_DOT = re.compile("%2e", re.IGNORECASE)


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``).

    Examples: ``"localhost"`` -> True; ``"127.0.0.2"`` -> True; ``"10.0.0.1"`` -> False.
    """
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path: ``/a/./b/../c`` -> ``/a/c``; never above ``/``."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def normalise(url: str) -> str | None:
    """The canonical form of an absolute http(s) URL, or ``None`` if it is not one to contact.

    Examples:
    - ``"HTTPS://EHR.example.org:443/fhir/./r4/"`` -> ``"https://ehr.example.org/fhir/r4/"``
    - ``"http://127.0.0.1:8090/fhir/../admin?x=1#f"`` -> ``"http://127.0.0.1:8090/admin?x=1"``
    - ``"http://127.0.0.1/fhir/%2e%2e/admin"`` -> ``"http://127.0.0.1/admin"``
    - ``"http://user:pw@ehr/fhir"``, ``"ftp://ehr/fhir"``, ``"http://ehr/a%2Fb"`` -> ``None``
    """
    if not isinstance(url, str) or _UNSAFE_CHARS.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number in range, a broken IPv6 literal
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if _UNSAFE_PATH.search(parts.path):
        return None
    path = _remove_dot_segments(_ENCODED_DOT.sub(".", parts.path or "/"))
    if _UNSAFE_PATH.search(path):
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def _origin_and_path(url: str) -> tuple[str, str] | None:
    canonical = normalise(url)
    if canonical is None:
        return None
    parts = urlsplit(canonical)
    return f"{parts.scheme}://{parts.netloc}", parts.path


def same_server(base: str, url: str) -> bool:
    """True when the absolute ``url`` is at or under the FHIR base URL ``base``.

    Same scheme, host and port, and the base's path a prefix of the URL's path on segment
    boundaries, both normalised (see :func:`normalise`).

    Examples (base ``"https://ehr.example.org/fhir"``):
    - ``"https://ehr.example.org/fhir/Observation?page=2"`` -> True
    - ``"https://EHR.example.org:443/fhir/./Observation"`` -> True
    - ``"https://ehr.example.org/fhir/../admin"`` -> False (it is ``/admin``)
    - ``"https://ehr.example.org/fhir-admin/x"`` -> False (not on a segment boundary)
    - ``"http://ehr.example.org/fhir/x"``, ``"https://ehr.example.org:8443/fhir/x"`` -> False
    """
    want, have = _origin_and_path(base), _origin_and_path(url)
    if want is None or have is None or want[0] != have[0]:
        return False
    prefix = want[1].rstrip("/")
    return have[1] == prefix or have[1].startswith(prefix + "/")


def join(base: str, link: str) -> str | None:
    """The URL to request for ``link`` (relative to ``base``, or absolute), or ``None`` when it
    would leave the server at ``base`` (see :func:`same_server`).

    Examples (base ``"http://127.0.0.1:8090/fhir"``):
    - ``"Observation?patient=p1"`` -> ``"http://127.0.0.1:8090/fhir/Observation?patient=p1"``
    - ``"http://127.0.0.1:8090/fhir/Observation?page=2"`` -> that URL
    - ``"//127.0.0.1:9999/steal"``, ``"http://localhost:8090/fhir/x"``, ``"../admin"`` -> None
    """
    if not isinstance(link, str) or _UNSAFE_CHARS.search(link):
        return None
    canonical_base = normalise(base)
    if canonical_base is None:
        return None
    url = normalise(urljoin(canonical_base.rstrip("/") + "/", link))
    if url is None or not same_server(canonical_base, url):
        return None
    return url


def allowed_server(server: str, allowlist: Iterable[str]) -> str | None:
    """The allow-list entry ``server`` names, in normalised form without a trailing ``/``, or
    ``None`` when it names none. Only a whole base matches: no prefixes, no sub-paths.

    Examples (allow-list ``["https://ehr.example.org/fhir"]``):
    - ``"https://ehr.example.org/fhir/"``, ``"HTTPS://ehr.example.org:443/fhir"`` ->
      ``"https://ehr.example.org/fhir"``
    - ``"https://ehr.example.org/fhir/r4"``, ``"https://ehr.example.org/fhirx"``,
      ``"https://ehr.example.org.evil/fhir"``, ``"https://ehr.example.org/fhir?x"`` -> None
    """
    wanted = normalise(server)
    if wanted is None or "?" in wanted:
        return None
    wanted = wanted.rstrip("/")
    for entry in allowlist:
        canonical = normalise(entry)
        if canonical is not None and "?" not in canonical and canonical.rstrip("/") == wanted:
            return wanted
    return None


def is_allowed(server: str, allowlist: Iterable[str]) -> bool:
    """True when ``server`` is one of ``allowlist`` (see :func:`allowed_server`)."""
    return allowed_server(server, allowlist) is not None


def check_url(value: object, what: str, *, https_only: bool = True,
              allow_query: bool = False) -> str:
    """Return ``value`` if it is a URL the service may be configured to contact.

    It must be an absolute http(s) URL without credentials or fragment (and without a query
    unless ``allow_query``: a FHIR base has none); with ``https_only`` (the default) plain http
    is allowed only on a loopback host, so tokens never travel in clear text beyond this machine.

    :raises ValueError: one sentence naming ``what`` and the value, e.g.
        ``CDS_FHIR_SERVER_ALLOWLIST entry must use https (http only on loopback):
        'http://ehr.example.org/fhir'``.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string URL")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http(s) URL, not {value!r}")
    if parts.username or parts.password or parts.fragment:
        raise ValueError(f"{what} must not hold credentials or a #fragment: {value!r}")
    if parts.query and not allow_query:
        raise ValueError(f"{what} must not hold a ?query (a base URL has none): {value!r}")
    if normalise(value) is None:
        raise ValueError(f"{what} is not a usable URL (port, characters or path): {value!r}")
    if https_only and parts.scheme != "https" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{what} must use https (http only on loopback): {value!r}")
    return value
