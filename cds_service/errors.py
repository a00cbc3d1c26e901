"""Exception classes of the service.

The tree (the web layer's ``error_handlers`` is the only place that turns these into status codes)::

    * CdsError                  – something a client or a site sent is wrong
      x RequestInvalid          – body is not a valid CDS Hooks request           → 400
      x UnknownService          – no service with that id                         → 404
      x ClientNotTrusted        – JWT missing, invalid or from an untrusted issuer → 401
      x MissingData             – required data neither prefetched nor fetchable  → 412
      x PayloadTooLarge         – body over CDS_MAX_BODY_BYTES                    → 413
      x UnsupportedMediaType    – body is not JSON                                → 415
      x Unavailable             – the shared database cannot be used right now    → 503
    * FhirServerError           – the EHR's FHIR server could not give us data (internal;
                                  becomes MissingData for required data, a note otherwise)
    * StartupError              – configuration or a mapping file is broken; the process stops
      x MappingError            – a mapping file is invalid (names file and key)
      x ConfigError             – a CDS_* setting or the trusted-issuers file is invalid
"""

from __future__ import annotations


class CdsError(Exception):
    """A problem with what a client sent; ``message`` is one sentence for people."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where  # FHIRPath-like location in the request, e.g. "context.patientId"


class RequestInvalid(CdsError):
    """The body is not a CDS Hooks request this service can answer."""


class UnknownService(CdsError):
    """No service is registered under that id."""


class ClientNotTrusted(CdsError):
    """The caller's JWT is missing, invalid, or from an issuer we do not trust.

    ``message`` is the reason for the log; the client only ever sees a generic sentence.
    """


class Forbidden(CdsError):
    """The caller is authenticated but may not do this (feedback on another client's card)."""


class TooManyRequests(CdsError):
    """The caller went over its rate limit; ``retry_after`` is in whole seconds."""

    def __init__(self, message: str, *, retry_after: int, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.retry_after = retry_after


class MissingData(CdsError):
    """Required FHIR data was neither prefetched nor fetchable (spec: 412)."""


class PayloadTooLarge(CdsError):
    """The request body is larger than the configured limit."""


class UnsupportedMediaType(CdsError):
    """The request body is not declared as JSON."""


class Unavailable(CdsError):
    """The shared database could not be used; nothing was done, the client may retry."""


class FhirServerError(Exception):
    """The FHIR server timed out, refused, answered an error or something that is not FHIR JSON."""

    def __init__(self, message: str, outcome: str = "broken") -> None:
        super().__init__(message)
        self.message = message
        self.outcome = outcome  # the FHIR request's outcome in the metrics (metrics.FHIR_OUTCOMES)


class StartupError(Exception):
    """Configuration is broken; the service must not start."""


class MappingError(StartupError):
    """A mapping file is invalid; the message names the file and the key."""


class ConfigError(StartupError):
    """A setting or the trusted-issuers file is invalid."""
