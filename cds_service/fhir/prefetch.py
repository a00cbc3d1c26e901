"""Resolve a service's data needs: use the prefetch, fetch what is missing, or say what is missing.

Decision per prefetch key (cds-hooks-2.0.md §2.4):

- present as a resource or a non-empty Bundle: use it (and page on if it has a ``next`` link and
  the FHIR server may be called);
- present as ``null`` or an empty Bundle: the client has no such data; use nothing, fetch nothing
  (spec: "If the CDS Client has no data to populate a template prefetch key, the prefetch
  template key MUST have a value of null");
- present as an OperationOutcome (or a Bundle holding one), or absent: fetch it from
  ``fhirServer`` when that server is allowed, else it is missing. Missing required data is a 412;
  missing optional data becomes a note on the cards.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from ..errors import FhirServerError, MissingData
from ..hooks import HookRequest
from ..logs import LOGGER_NAME, log_event
from . import urls
from .client import DEFAULT_FETCH_MAX_BYTES, FhirClient
from .resources import bundle_resources, next_link

log = logging.getLogger(LOGGER_NAME)

_GRACE = 0.1  # seconds past the deadline for answers already arriving

_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")
_SEARCH_SPECIAL = re.compile(r"[\\,|$]")  # escaped with a backslash in FHIR search values
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


def render(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill a prefetch template's tokens from the context; ``None`` if a token has no value.

    A context value is one id, never more query or path: it is percent-encoded, and in a
    search parameter also FHIR-escaped (``\\``, ``,``, ``|``, ``$``). Unescaped, an id like
    ``"p1,p2"`` searches two patients and ``"p1&code=x"`` changes the query.

    Examples:
    - ``render("Patient/{{context.patientId}}", {"patientId": "p1"})`` -> ``"Patient/p1"``
    - ``render("Practitioner/{{userPractitionerId}}", {"userId": "Practitioner/9"})`` ->
      ``"Practitioner/9"``
    - ``render("Condition?patient={{context.patientId}}", {"patientId": "p1,p2"})`` ->
      ``"Condition?patient=p1%5C%2Cp2"`` (the server reads ``p1\\,p2``: one literal id)
    """
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name.startswith("context."):
            found = context.get(name[len("context."):])
        else:
            kind, _, ident = str(context.get("userId", "")).partition("/")
            found = ident if _USER_TOKENS.get(name) == kind else None
        if not isinstance(found, str) or not found:
            missing = True
            return ""
        if query_at != -1 and match.start() > query_at:  # a search parameter value
            found = _SEARCH_SPECIAL.sub(r"\\\g<0>", found)
        return quote(found, safe="")

    query_at = template.find("?")
    rendered = _TOKEN.sub(value, template)
    return None if missing else rendered


@dataclass
class ResolvedData:
    """Resources per prefetch key, and why any key could not be had."""

    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # partial data (a later page failed)
    fetched: list[str] = field(default_factory=list)
    # Reads an attachment by url from the request's FHIR server within the hook's time and byte
    # budget: (bytes, media type), or None when it cannot be had (why is logged). None when the
    # request has no allow-listed fhirServer.
    fetch_attachment: Callable[[str], tuple[bytes, str | None] | None] | None = field(
        default=None, repr=False, compare=False)

    def all(self) -> list[dict[str, Any]]:
        return [r for rs in self.resources.values() for r in rs]


def _prefetched(value: Any) -> list[dict[str, Any]] | None:
    """The resources a prefetched value holds, or None when it is no usable answer (not a FHIR
    resource, or an OperationOutcome alone or inside a Bundle)."""
    if not isinstance(value, dict) or not value.get("resourceType"):
        return None
    resources = bundle_resources(value) if value["resourceType"] == "Bundle" else [value]
    if any(r.get("resourceType") == "OperationOutcome" for r in resources):
        return None
    return resources


def resolve(
    templates: Mapping[str, str],
    required: Collection[str],
    request: HookRequest,
    *,
    session: requests.Session,
    allowed_servers: Collection[str],
    timeout: float,
    page_cap: int = 20,
    fetch_max_bytes: int = DEFAULT_FETCH_MAX_BYTES,
) -> ResolvedData:
    """Return the data for every template key, fetching what the prefetch did not give.

    All fetching of one call (missing keys, later pages, attachments read afterwards through
    ``fetch_attachment``) shares one time budget (twice ``timeout``) and one byte limit.

    :raises MissingData: a required key could not be had (spec: 412).
    """
    data = ResolvedData()
    server = (urls.allowed_server(request.fhir_server, allowed_servers)
              if request.fhir_server is not None else None)
    client = None
    if server is not None:
        client = FhirClient(session, server, request.access_token, timeout=timeout,
                            deadline=time.monotonic() + 2 * timeout, page_cap=page_cap,
                            max_bytes=fetch_max_bytes)
        data.fetch_attachment = _attachment_reader(client)
    to_fetch: dict[str, str] = {}
    to_page: dict[str, dict[str, Any]] = {}
    for key, template in templates.items():
        value = request.prefetch.get(key, ...)
        resources = None if value is None else _prefetched(value)
        if value is None:
            data.resources[key] = []
        elif resources is not None:
            data.resources[key] = resources
            if value["resourceType"] == "Bundle" and next_link(value):
                to_page[key] = value
        else:
            url = render(template, request.context)
            if url is None:
                data.missing[key] = "the hook context lacks a field its query needs"
            else:
                to_fetch[key] = url
    if to_fetch or to_page:
        _fetch_all(data, to_fetch, to_page, request, client)
    lacking = [k for k in required if k in data.missing]
    if lacking:
        reasons = "; ".join(f"{k}: {data.missing[k]}" for k in lacking)
        raise MissingData(
            f"required data was neither prefetched nor fetchable ({reasons})",
            where=f"prefetch.{lacking[0]}",
        )
    return data


def _cannot_fetch(data: ResolvedData, to_fetch: dict[str, str],
                  to_page: dict[str, dict[str, Any]], reason: str) -> None:
    for key in to_fetch:
        data.missing[key] = f"not prefetched and {reason}"
    for key in to_page:
        data.notes[key] = f"only the first page was available: {reason}"


def _attachment_reader(client: FhirClient) -> Callable[[str], tuple[bytes, str | None] | None]:
    def read(url: str) -> tuple[bytes, str | None] | None:
        try:
            return client.fetch_binary(url)
        except FhirServerError as exc:
            log_event(log, logging.WARNING, "fhir.fetch_failed", key="attachment",
                      reason=exc.message)
            return None

    return read


def _fetch_all(
    data: ResolvedData,
    to_fetch: dict[str, str],
    to_page: dict[str, dict[str, Any]],
    request: HookRequest,
    client: FhirClient | None,
) -> None:
    if request.fhir_server is None:
        _cannot_fetch(data, to_fetch, to_page, "the request names no fhirServer")
        return
    if client is None:
        log_event(log, logging.WARNING, "fhir.server_not_allowed", server=request.fhir_server)
        _cannot_fetch(data, to_fetch, to_page, "fhirServer is not on this service's allow-list")
        return
    deadline = client.deadline
    jobs = {key: (client.fetch, url) for key, url in to_fetch.items()}
    jobs.update({key: (client.continue_paging, bundle) for key, bundle in to_page.items()})
    pool = ThreadPoolExecutor(max_workers=min(4, len(jobs)))
    try:
        futures = {key: pool.submit(fn, arg) for key, (fn, arg) in jobs.items()}
        # The hook answers by the deadline even if a socket read is still blocked in a worker
        # (that worker ends by itself: every read has a timeout, the body a time limit).
        wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()) + _GRACE)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for key, future in futures.items():
        try:
            if not future.done() or future.cancelled():
                raise FhirServerError("FHIR server did not answer within the hook's time budget")
            found = future.result()
        except FhirServerError as exc:
            if key in to_page:
                data.notes[key] = f"only the first page was available: {exc.message}"
            else:
                data.missing[key] = exc.message
            log_event(log, logging.WARNING, "fhir.fetch_failed", key=key, reason=exc.message)
            continue
        if key in to_page:
            data.resources[key].extend(found)
        else:
            data.resources[key] = found
            data.fetched.append(key)
