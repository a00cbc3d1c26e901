"""Issue 13 item 13: a body of exactly CDS_MAX_BODY_BYTES is read (only bodies over it are 413),
and Private Network Access is granted only to origins named in CDS_CORS_ORIGINS."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.conftest import hook_body, make_app

LIMIT = 2_000


def body_of_exactly(size: int) -> bytes:
    """A valid patient-view body padded with spaces to exactly ``size`` bytes."""
    raw = json.dumps(hook_body({"observations": None, "conditions": None, "procedures": None,
                                "reports": None})).encode()
    assert len(raw) < size
    return raw + b" " * (size - len(raw))


def post(client: Any, raw: bytes, *, chunked: bool) -> Any:
    if chunked:  # no Content-Length, the way gunicorn hands over a chunked upload
        return client.post("/cds-services/tma-bone-assessment", input_stream=io.BytesIO(raw),
                           headers={"Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    return client.post("/cds-services/tma-bone-assessment", data=raw,
                       content_type="application/json")


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(("size", "status"), [(LIMIT - 1, 200), (LIMIT, 200), (LIMIT + 1, 413)])
def test_only_a_body_over_the_limit_is_413(chunked: bool, size: int, status: int) -> None:
    client = make_app(max_body_bytes=LIMIT).test_client()
    response = post(client, body_of_exactly(size), chunked=chunked)
    assert response.status_code == status, response.get_data(as_text=True)


def preflight(client: Any, origin: str) -> Any:
    return client.options("/cds-services", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Private-Network": "true"})


def test_the_default_cors_grants_no_private_network_access() -> None:
    response = preflight(make_app().test_client(), "https://attacker.example")
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # CORS itself stays open
    assert "Access-Control-Allow-Private-Network" not in response.headers


def test_an_origin_named_in_the_list_gets_private_network_access() -> None:
    client = make_app(cors_origins=("https://sandbox.cds-hooks.org",)).test_client()
    response = preflight(client, "https://sandbox.cds-hooks.org")
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"
    refused = preflight(client, "https://attacker.example")
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Private-Network" not in refused.headers


def test_a_named_origin_next_to_the_wildcard_gets_it_too() -> None:
    client = make_app(cors_origins=("*", "https://sandbox.cds-hooks.org")).test_client()
    assert preflight(client, "https://sandbox.cds-hooks.org").headers[
        "Access-Control-Allow-Private-Network"] == "true"
    assert "Access-Control-Allow-Private-Network" not in preflight(
        client, "https://attacker.example").headers
