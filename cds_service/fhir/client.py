"""The only network code: read-only FHIR searches against the EHR's FHIR server.

One ``requests.Session`` per application (keep-alive, a urllib3 ``Retry`` adapter for 502/503/504
and connection errors); explicit ``(connect, read)`` timeouts, never longer than what is left of
the hook's budget; ``next``-link paging with a page cap. The access token travels only in the
``Authorization`` header of requests to the request's own (allow-listed) server and is never
logged or stored.

Every URL requested, a prefetched Bundle's first ``next`` link included, goes through
:func:`urls.join`: it must stay at or under the base URL (normalised, so ``<base>/../admin`` or
``//other-host/`` never pass). Redirects are never followed: a 3xx answer is a failed request,
since following it would send the token and the patient's id to wherever ``Location`` points.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import metrics
from ..errors import FhirServerError
from . import urls
from .resources import bundle_resources, next_link

ACCEPT = "application/fhir+json, application/json;q=0.9"
# An attachment's formats the report reader reads, then a FHIR Binary resource.
ACCEPT_BINARY = ("text/plain, text/html, application/xhtml+xml, text/rtf, application/rtf, "
                 "application/fhir+json;q=0.5, */*;q=0.1")
# The most one hook call may fetch, all requests together, counted after decompression as the
# bytes arrive (CDS_FHIR_FETCH_MAX_BYTES): a hostile or broken server (a gzip bomb, endless
# pages) must not exhaust the worker's memory within the time budget.
DEFAULT_FETCH_MAX_BYTES = 8_000_000


class FetchBudget:
    """Bytes one hook call may still fetch; shared by its fetching threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        """Count ``size`` more bytes. :raises FhirServerError: the hook's limit is passed."""
        with self._lock:
            self._used += size
            over = self._used > self.max_bytes
        if over:
            raise self.exceeded()

    def left(self) -> int:
        with self._lock:
            return self.max_bytes - self._used

    def exceeded(self) -> FhirServerError:
        return FhirServerError(
            f"FHIR data for this hook is larger than the limit of {self.max_bytes} bytes "
            f"(CDS_FHIR_FETCH_MAX_BYTES)", outcome="too_large")


def make_session(pool_size: int = 16) -> requests.Session:
    """Build the shared session: retries on 502/503/504 and refused connections, none on reads.

    A read timeout is not retried (``read=0``): retrying would blow the hook's time budget.
    """
    retry = Retry(
        total=2,
        connect=2,
        read=0,
        status=2,
        backoff_factor=0.1,
        status_forcelist=(502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _read_body(response: requests.Response, until: float, budget: FetchBudget) -> bytes:
    """Read a streamed body, but not past ``until`` (a ``time.monotonic()`` value) nor past what
    is left of ``budget`` (counted chunk by chunk, after decompression).

    The read timeout of ``requests`` bounds each socket read, not the whole answer: a server
    that drips its body a byte at a time would otherwise hold the hook far past its budget.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and "Content-Encoding" not in response.headers \
            and int(declared) > budget.left():
        raise budget.exceeded()  # refused before reading: it cannot fit
    chunks = []
    while True:
        if time.monotonic() > until:
            raise FhirServerError("FHIR server's answer came too slowly to finish in time",
                                  outcome="timeout")
        try:
            chunk = response.raw.read1(65536, decode_content=True)  # gzip is undone here
        except urllib3.exceptions.ReadTimeoutError:
            raise FhirServerError("FHIR server stopped sending its answer",
                                  outcome="timeout") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise FhirServerError(f"FHIR server broke off its answer ({type(exc).__name__})"
                                  ) from None
        if not chunk:
            return b"".join(chunks)
        budget.take(len(chunk))
        chunks.append(chunk)


def _parse_resource(content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        raise FhirServerError("FHIR server answered something that is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FhirServerError("FHIR server answered JSON that is not a FHIR resource")
    return body


class FhirClient:
    """Fetch from one FHIR base URL until ``deadline`` (a ``time.monotonic()`` value)."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        access_token: str | None,
        *,
        timeout: float,
        deadline: float,
        page_cap: int = 20,
        max_bytes: int = DEFAULT_FETCH_MAX_BYTES,
    ) -> None:
        self._session = session
        canonical = urls.normalise(base_url)
        if canonical is None:
            raise ValueError("FhirClient needs an absolute http(s) base URL")
        self._base = canonical.rstrip("/")
        self._token = access_token
        self._timeout = timeout
        self._deadline = deadline
        self._page_cap = page_cap
        self._budget = FetchBudget(max_bytes)

    @property
    def deadline(self) -> float:
        """When this client's time budget ends (a ``time.monotonic()`` value)."""
        return self._deadline

    def __repr__(self) -> str:  # never show the token
        return f"FhirClient({self._base!r})"

    def _get(self, url: str, accept: str, *, absent_ok: bool) -> tuple[bytes, str] | None:
        """GET ``url`` (already checked by :meth:`_url`): the body and its Content-Type, or
        ``None`` for a 404 when ``absent_ok``. Never follows a redirect. Each call counts once
        in the metrics, by outcome.

        :raises FhirServerError: saying what went wrong, in words fit for a card or a 412.
        """
        outcome = "ok"
        try:
            got = self._request(url, accept, absent_ok=absent_ok)
            if got is None:
                outcome = "not_found"
            return got
        except FhirServerError as exc:
            outcome = exc.outcome
            raise
        finally:
            metrics.fhir_request(outcome)

    def _request(self, url: str, accept: str, *, absent_ok: bool) -> tuple[bytes, str] | None:
        started = time.monotonic()
        remaining = self._deadline - started
        if remaining <= 0.05:
            raise FhirServerError("the hook's time budget for FHIR requests is used up",
                                  outcome="budget_exhausted")
        timeout = min(self._timeout, remaining)
        headers = {"Accept": accept}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._session.get(url, headers=headers, stream=True, allow_redirects=False,
                                         timeout=(min(3.05, timeout), timeout))
            with response:
                if 300 <= response.status_code < 400:
                    raise FhirServerError(
                        f"FHIR server answered HTTP {response.status_code}, a redirect, which "
                        f"this service does not follow", outcome="redirect")
                if response.status_code == 404 and absent_ok:
                    return None
                if response.status_code >= 400:
                    raise FhirServerError(
                        f"FHIR server answered HTTP {response.status_code}",
                        outcome="http_5xx" if response.status_code >= 500 else "http_4xx")
                content = _read_body(response, until=started + timeout, budget=self._budget)
                return content, response.headers.get("Content-Type", "")
        except requests.Timeout:
            raise FhirServerError(f"FHIR server did not answer within {timeout:.1f} s",
                                  outcome="timeout") from None
        except requests.RequestException as exc:
            # a read timeout with no retries left comes as ConnectionError(MaxRetryError)
            reason = getattr(exc.args[0] if exc.args else None, "reason", None)
            if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
                raise FhirServerError(f"FHIR server did not answer within {timeout:.1f} s",
                                      outcome="timeout") from None
            raise FhirServerError(f"FHIR server unreachable ({type(exc).__name__})",
                                  outcome="unreachable") from None

    def _get_json(self, url: str) -> dict[str, Any]:
        got = self._get(url, ACCEPT, absent_ok="?" not in url)  # a read may find nothing
        if got is None:
            return {}
        body = _parse_resource(got[0])
        if body["resourceType"] == "OperationOutcome":
            raise FhirServerError("FHIR server answered an OperationOutcome")
        return body

    def fetch_binary(self, url: str) -> tuple[bytes, str | None]:
        """The bytes and media type of an attachment given by ``url`` (relative to the base, or
        absolute on the same server), e.g. a DiagnosticReport ``presentedForm.url``.

        Same rules as every other request: the same-server check, no redirects, the hook's
        time budget and its byte limit. A FHIR ``Binary`` resource in answer is unwrapped
        (its base64 ``data`` and ``contentType``).

        :raises FhirServerError: the URL leaves the server, or the fetch failed.
        """
        got = self._get(self._url(url, "the attachment url"), ACCEPT_BINARY, absent_ok=False)
        assert got is not None  # noqa: S101 (absent_ok=False: a 404 raises)
        content, content_type = got
        media = content_type.split(";")[0].strip().lower()
        if media in ("application/fhir+json", "application/json"):
            body = _parse_resource(content)
            if body["resourceType"] != "Binary":
                raise FhirServerError(
                    f"the attachment url answered a {body['resourceType']}, not a Binary")
            try:
                data = base64.b64decode(str(body.get("data", "")), validate=True)
            except (binascii.Error, ValueError):
                raise FhirServerError("the attachment's Binary data is not valid base64"
                                      ) from None
            kind = body.get("contentType")
            return data, kind if isinstance(kind, str) and kind else None
        return content, content_type or None

    def _url(self, link: str, what: str) -> str:
        url = urls.join(self._base, link)
        if url is None:
            raise FhirServerError(f"{what} points to another server or outside the FHIR base URL")
        return url

    def fetch(self, relative_url: str, *, what: str = "the query") -> list[dict[str, Any]]:
        """Return the resources a read or a search yields, following ``next`` links.

        ``relative_url`` is relative to the base URL or absolute on the same server; anything
        else (and every ``next`` link that leaves the server) raises :class:`FhirServerError`
        before any request is sent.
        """
        first = self._get_json(self._url(relative_url, what))
        if not first:
            return []
        if first["resourceType"] != "Bundle":
            return [first]
        resources = bundle_resources(first)
        page, pages = first, 1
        while (link := next_link(page)) is not None and pages < self._page_cap:
            page = self._get_json(self._url(link, "the FHIR server's next link"))
            if page.get("resourceType") != "Bundle":
                raise FhirServerError("FHIR server's next page is not a Bundle")
            resources.extend(bundle_resources(page))
            pages += 1
        return resources

    def continue_paging(self, bundle: dict[str, Any]) -> list[dict[str, Any]]:
        """Return the resources of the pages after a prefetched Bundle that has a next link."""
        link = next_link(bundle)
        if link is None:
            return []
        return self.fetch(link, what="the prefetched Bundle's next link")
