"""Hook services, the registry that routes by (id, hook), and parsing of hook requests.

No Flask here: the web layer hands in the parsed JSON body and gets cards back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestInvalid, UnknownService

# Hook context fields (HL7 CDS Hooks library 1.0.1, cds-hooks-2.0.md §3.5).
REQUIRED_CONTEXT: dict[str, tuple[str, ...]] = {
    "patient-view": ("userId", "patientId"),
    "order-select": ("userId", "patientId", "selections", "draftOrders"),
    "order-sign": ("userId", "patientId", "draftOrders"),
}
# Context fields that may appear in prefetch tokens (never draftOrders or selections).
TOKEN_FIELDS = frozenset({"userId", "patientId", "encounterId"})
# hookInstance: CDS Hooks 2.0 says "a universally unique identifier (UUID) for this particular
# hook call" (cds-hooks-2.0.md §3.1), and its best practice is to accept more than strict UUIDs
# (§3.3). It is logged as the correlation id, so it must be a sane identifier: 1-128 characters,
# letters, digits and . _ : - (a UUID in any case, urn:uuid:..., a ULID all fit). Anything else
# (spaces, quotes, control characters, markup, megabytes) is refused with 400.
HOOK_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


@dataclass(frozen=True)
class HookRequest:
    """A validated CDS Hooks request. ``access_token`` never appears in ``repr``."""

    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any]
    fhir_server: str | None = None
    access_token: str | None = field(default=None, repr=False)

    @property
    def patient_id(self) -> str:
        return str(self.context["patientId"])


@dataclass(frozen=True)
class HookService:
    """One entry of the discovery document plus the function that answers it.

    ``handler(request, data, now)`` receives the request and the resolved data (prefetch key →
    list of resources, plus notes of what could not be had) and returns a list of cards.
    """

    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]
    required_prefetch: frozenset[str]
    handler: Callable[..., list[dict[str, Any]]]
    usage_requirements: str | None = None

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
        }
        if self.prefetch:
            entry["prefetch"] = dict(self.prefetch)
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        return entry


class Registry:
    """Services by (id, hook); the discovery document is this registry rendered as JSON."""

    def __init__(self, services: Sequence[HookService], mappings: Any = None) -> None:
        self._services = {(s.id, s.hook): s for s in services}
        self.mappings = mappings  # the MappingTable the services read records with
        if len(self._services) != len(services):
            raise ValueError("two services share an (id, hook) pair")

    def discovery(self) -> dict[str, Any]:
        return {"services": [s.discovery_entry() for s in self._services.values()]}

    def service(self, service_id: str, hook: str) -> HookService:
        """The service for (id, hook), which the caller knows exists (KeyError otherwise)."""
        return self._services[(service_id, hook)]

    def has_service(self, service_id: str) -> bool:
        return any(sid == service_id for sid, _ in self._services)

    def require(self, service_id: str) -> None:
        """:raises UnknownService: no service has this id (404, before the body is read)."""
        if not self.has_service(service_id):
            raise UnknownService(f"no CDS service with id {service_id!r}", where="url")

    def lookup(self, service_id: str, hook: str) -> HookService:
        """Return the service for (id, hook): 404 for an unknown id, 400 for a hook it lacks."""
        self.require(service_id)
        service = self._services.get((service_id, hook))
        if service is None:
            served = ", ".join(sorted(h for sid, h in self._services if sid == service_id))
            raise RequestInvalid(
                f"service {service_id!r} answers hook {served}, not {hook!r}", where="hook"
            )
        return service

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._services.values())


def _require_string(body: Mapping[str, Any], key: str, where: str) -> str:
    value = body.get(key)
    if value is None:
        raise RequestInvalid(f"{where} is required", where=where)
    if not isinstance(value, str) or not value.strip():
        raise RequestInvalid(f"{where} must be a non-empty string", where=where)
    return value


def peek_hook(body: Any) -> str:
    """Return the body's ``hook`` after checking the body is an object (for routing)."""
    if not isinstance(body, dict):
        raise RequestInvalid("request body must be a JSON object", where="body")
    return _require_string(body, "hook", "hook")


def parse_request(body: Any) -> HookRequest:
    """Validate a hook request body and return it parsed.

    :raises RequestInvalid: naming the field, e.g. "context.patientId is required for hook
        patient-view".
    """
    hook = peek_hook(body)
    hook_instance = _require_string(body, "hookInstance", "hookInstance")
    if not HOOK_INSTANCE.fullmatch(hook_instance):
        raise RequestInvalid(
            "hookInstance must be an identifier such as a UUID: 1 to 128 letters, digits "
            "and . _ : - (starting with a letter or digit)", where="hookInstance")
    context = body.get("context")
    if context is None:
        raise RequestInvalid("context is required", where="context")
    if not isinstance(context, dict):
        raise RequestInvalid("context must be a JSON object", where="context")
    for name in REQUIRED_CONTEXT.get(hook, ()):
        if context.get(name) is None:
            raise RequestInvalid(
                f"context.{name} is required for hook {hook}", where=f"context.{name}"
            )
    for name in ("userId", "patientId", "encounterId"):
        if name in context and (not isinstance(context[name], str) or not context[name].strip()):
            raise RequestInvalid(f"context.{name} must be a non-empty string",
                                 where=f"context.{name}")
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        raise RequestInvalid("prefetch must be a JSON object", where="prefetch")
    fhir_server = body.get("fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not fhir_server.strip()):
        raise RequestInvalid("fhirServer must be a URL string", where="fhirServer")
    token = None
    authorization = body.get("fhirAuthorization")
    if authorization is not None:
        if not isinstance(authorization, dict):
            raise RequestInvalid("fhirAuthorization must be a JSON object",
                                 where="fhirAuthorization")
        if fhir_server is None:
            raise RequestInvalid("fhirAuthorization was given without fhirServer",
                                 where="fhirServer")
        token = authorization.get("access_token")
        if not isinstance(token, str) or not token:
            raise RequestInvalid("fhirAuthorization.access_token must be a non-empty string",
                                 where="fhirAuthorization.access_token")
    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        context=context,
        prefetch=prefetch,
        fhir_server=fhir_server.rstrip("/") if fhir_server else None,
        access_token=token,
    )
