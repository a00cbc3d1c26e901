"""Settings: one frozen value read from the ``CDS_*`` variables (product-contract.md)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fhir import urls
from .fhir.client import DEFAULT_FETCH_MAX_BYTES

PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_MAPPINGS_DIR = PACKAGE_ROOT.parent / "mappings"


@dataclass(frozen=True)
class Settings:
    """Everything the service can be configured with. Defaults are the production-safe ones."""

    auth_required: bool = True
    trusted_issuers: str | None = None
    public_url: str | None = None
    fhir_server_allowlist: tuple[str, ...] = ()
    fhir_timeout: float = 5.0
    mappings_dir: Path = DEFAULT_MAPPINGS_DIR
    extra_mappings: tuple[Path, ...] = ()
    database_url: str = "sqlite:///var/cds-feedback.db"
    max_body_bytes: int = 5_000_000
    log_format: str = "json"
    cors_origins: tuple[str, ...] = ("*",)
    log_hash_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    fhir_page_cap: int = 20
    feedback_retention_days: int = 365
    feedback_rate_limit: int = 600  # feedback items per client per minute; 0 = no limit
    fhir_fetch_max_bytes: int = DEFAULT_FETCH_MAX_BYTES  # all of one hook's FHIR requests
    smart_client_id: str | None = None  # the evidence-timeline app's client id at the EHR
    smart_client_secret: str | None = field(default=None, repr=False)

    @property
    def hook_budget(self) -> float:
        """Seconds a whole hook call may spend fetching (contract: twice the request timeout)."""
        return 2 * self.fhir_timeout


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _positive_number(name: str, raw: str, kind: type) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, not {raw!r}")
    return value


def _urls(raw: str) -> tuple[str, ...]:
    return tuple(u.strip().rstrip("/") for u in raw.split(",") if u.strip())


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read ``CDS_*`` variables, then apply ``overrides`` (field names, as tests pass them)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {
        "log_format": "text" if sys.stderr.isatty() else "json",
        "database_url": "sqlite:///" + str(Path.cwd() / "var" / "cds-feedback.db"),
    }
    if "CDS_AUTH_REQUIRED" in env:
        values["auth_required"] = _bool("CDS_AUTH_REQUIRED", env["CDS_AUTH_REQUIRED"])
    if env.get("CDS_TRUSTED_ISSUERS"):
        values["trusted_issuers"] = env["CDS_TRUSTED_ISSUERS"]
    if env.get("CDS_PUBLIC_URL"):
        values["public_url"] = env["CDS_PUBLIC_URL"].rstrip("/")
    if env.get("CDS_FHIR_SERVER_ALLOWLIST"):
        values["fhir_server_allowlist"] = _urls(env["CDS_FHIR_SERVER_ALLOWLIST"])
    if env.get("CDS_FHIR_TIMEOUT"):
        values["fhir_timeout"] = _positive_number("CDS_FHIR_TIMEOUT", env["CDS_FHIR_TIMEOUT"],
                                                  float)
    if env.get("CDS_MAPPINGS_DIR"):
        values["mappings_dir"] = Path(env["CDS_MAPPINGS_DIR"])
    if env.get("CDS_EXTRA_MAPPINGS"):
        parts = env["CDS_EXTRA_MAPPINGS"].split(os.pathsep)
        values["extra_mappings"] = tuple(Path(p) for p in parts if p)
    if env.get("CDS_DATABASE_URL"):
        values["database_url"] = env["CDS_DATABASE_URL"]
    if env.get("CDS_MAX_BODY_BYTES"):
        values["max_body_bytes"] = _positive_number(
            "CDS_MAX_BODY_BYTES", env["CDS_MAX_BODY_BYTES"], int
        )
    if env.get("CDS_FHIR_FETCH_MAX_BYTES"):
        values["fhir_fetch_max_bytes"] = _positive_number(
            "CDS_FHIR_FETCH_MAX_BYTES", env["CDS_FHIR_FETCH_MAX_BYTES"], int
        )
    if env.get("CDS_LOG_FORMAT"):
        if env["CDS_LOG_FORMAT"] not in {"json", "text"}:
            raise ConfigError(f"CDS_LOG_FORMAT must be json or text, not {env['CDS_LOG_FORMAT']!r}")
        values["log_format"] = env["CDS_LOG_FORMAT"]
    if env.get("CDS_CORS_ORIGINS"):
        values["cors_origins"] = _urls(env["CDS_CORS_ORIGINS"])
    if env.get("CDS_LOG_HASH_KEY"):
        values["log_hash_key"] = env["CDS_LOG_HASH_KEY"].encode()
    if env.get("CDS_FEEDBACK_RETENTION_DAYS"):
        values["feedback_retention_days"] = _positive_number(
            "CDS_FEEDBACK_RETENTION_DAYS", env["CDS_FEEDBACK_RETENTION_DAYS"], int)
    if env.get("CDS_FEEDBACK_RATE_LIMIT"):
        raw = env["CDS_FEEDBACK_RATE_LIMIT"]
        values["feedback_rate_limit"] = 0 if raw.strip() == "0" else _positive_number(
            "CDS_FEEDBACK_RATE_LIMIT", raw, int)
    if env.get("CDS_SMART_CLIENT_ID"):
        values["smart_client_id"] = env["CDS_SMART_CLIENT_ID"].strip()
    if env.get("CDS_SMART_CLIENT_SECRET"):
        values["smart_client_secret"] = env["CDS_SMART_CLIENT_SECRET"]
    settings = Settings(**values)
    if overrides:
        known = {f.name for f in fields(Settings)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        settings = replace(settings, **dict(overrides))
    _check_fhir_servers(settings.fhir_server_allowlist)
    if settings.smart_client_id and not settings.public_url:
        raise ConfigError("CDS_SMART_CLIENT_ID needs CDS_PUBLIC_URL: the app's redirect URI and "
                          "the card's link to it are absolute URLs under it")
    return settings


def _check_fhir_servers(allowlist: tuple[str, ...]) -> None:
    """Each entry an https base URL (http only on loopback): the access token goes there."""
    for entry in allowlist:
        try:
            urls.check_url(entry, "CDS_FHIR_SERVER_ALLOWLIST entry")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
