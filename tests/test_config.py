"""Settings come from CDS_* variables; bad values stop start-up with a message naming them."""

from __future__ import annotations

import pytest

from cds_service.config import load_settings
from cds_service.errors import ConfigError


def test_defaults_are_production_safe():
    settings = load_settings(environ={})
    assert settings.auth_required is True
    assert settings.fhir_server_allowlist == ()
    assert settings.fhir_timeout == 5.0 and settings.hook_budget == 10.0
    assert settings.max_body_bytes == 5_000_000
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith(
        "var/cds-feedback.db")


def test_variables_are_read():
    settings = load_settings(environ={
        "CDS_AUTH_REQUIRED": "false", "CDS_FHIR_SERVER_ALLOWLIST": "https://a/fhir/, https://b",
        "CDS_FHIR_TIMEOUT": "2.5", "CDS_MAX_BODY_BYTES": "1000", "CDS_PUBLIC_URL": "https://x/",
        "CDS_EXTRA_MAPPINGS": "/a:/b", "CDS_LOG_FORMAT": "text",
        "CDS_CORS_ORIGINS": "https://sandbox.cds-hooks.org"})
    assert settings.auth_required is False
    assert settings.fhir_server_allowlist == ("https://a/fhir", "https://b")
    assert settings.fhir_timeout == 2.5 and settings.max_body_bytes == 1000
    assert settings.public_url == "https://x"
    assert [str(p) for p in settings.extra_mappings] == ["/a", "/b"]
    assert settings.log_format == "text"
    assert settings.cors_origins == ("https://sandbox.cds-hooks.org",)


@pytest.mark.parametrize(("name", "value"), (
    ("CDS_AUTH_REQUIRED", "maybe"), ("CDS_FHIR_TIMEOUT", "soon"), ("CDS_FHIR_TIMEOUT", "-1"),
    ("CDS_MAX_BODY_BYTES", "1.5"), ("CDS_LOG_FORMAT", "xml"),
))
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings(environ={name: value})


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        load_settings(overrides={"colour": "red"}, environ={})
