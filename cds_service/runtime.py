"""What one running service holds (settings, registry, HTTP session, stores) and the hook pipeline.

Pipeline: request → data (prefetch or fetch) → service handler (findings → rules → cards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import requests

from . import metrics
from .config import Settings
from .fhir.client import make_session
from .fhir.prefetch import ResolvedData, resolve
from .hooks import HookRequest, HookService, Registry


class Client(Protocol):
    """An authenticated CDS client (see ``auth``): what it may ask us to call."""

    fhir_servers: tuple[str, ...]
    iss: str


class CardSink(Protocol):
    def record_cards(self, service_id: str, cards: list[dict[str, Any]],
                     client: str | None = None) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    session: requests.Session = field(default_factory=make_session)
    verifier: Any = None
    feedback: CardSink | None = None
    database: Any = None  # the process's cds_service.db.Database (readiness, metrics)
    clock: Any = None  # a callable returning an aware datetime; None means the real clock

    def now(self) -> datetime:
        return self.clock() if self.clock else datetime.now(UTC)

    def allowed_servers(self, client: Client | None) -> tuple[str, ...]:
        """FHIR servers this call may reach: the issuer's when authenticated, else the config's."""
        if client is not None:
            return tuple(client.fhir_servers)
        if self.settings.auth_required:
            return ()
        return self.settings.fhir_server_allowlist

    def app_servers(self) -> tuple[str, ...]:
        """FHIR servers the SMART app may be launched from (``iss``): with authentication on,
        every trusted issuer's ``fhirServers``; off, ``CDS_FHIR_SERVER_ALLOWLIST``."""
        if self.verifier is not None:
            return tuple(s for issuer in self.verifier.trust for s in issuer.fhir_servers)
        if self.settings.auth_required:
            return ()
        return self.settings.fhir_server_allowlist

    def data_for(self, service: HookService, request: HookRequest,
                 allowed_servers: tuple[str, ...]) -> ResolvedData:
        """The service's data: the prefetch, and what is missing fetched from an allowed server
        (timeouts, budget, paging). :raises MissingData: required data could not be had."""
        return resolve(
            service.prefetch,
            service.required_prefetch,
            request,
            session=self.session,
            allowed_servers=allowed_servers,
            timeout=self.settings.fhir_timeout,
            page_cap=self.settings.fhir_page_cap,
            fetch_max_bytes=self.settings.fhir_fetch_max_bytes,
        )

    def answer(
        self, service: HookService, request: HookRequest, client: Client | None = None
    ) -> list[dict[str, Any]]:
        """Run one hook call and return its cards."""
        data = self.data_for(service, request, self.allowed_servers(client))
        cards = service.handler(request, data, self.now())
        metrics.cards_returned(service.id, cards)
        if self.feedback is not None and cards:
            self.feedback.record_cards(service.id, cards,
                                       client=client.iss if client is not None else None)
        return cards
