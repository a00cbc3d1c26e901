"""Where FHIR requests (and the access token) may go: issue 13, items 1, 2 and 6.

The allowed FHIR server is a real HTTP server on 127.0.0.1 (pytest-httpserver, base ``/fhir``);
``other`` is a second one on another port, standing for any other host. Every test that could
send something there asserts that ``other`` received no request at all, so neither the patient
id in a URL nor the ``Authorization`` header ever reached it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from cds_service.fhir import urls
from cds_service.preview import visible_text
from tests.conftest import make_app
from tests.test_prefetch import assessment, full_request, with_server

TOKEN = "opaque-access-token-123"
ANY = re.compile(".*")


@pytest.fixture(scope="module")
def _other_server():  # type: ignore[no-untyped-def]
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(ANY).respond_with_json(
        {"resourceType": "Bundle", "type": "searchset", "entry": []})
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def other(_other_server):  # type: ignore[no-untyped-def]
    """Another server: it answers everything with a Bundle, as a thief would."""
    _other_server.clear_log()
    return _other_server


def fhir_app(httpserver, **settings: Any):  # type: ignore[no-untyped-def]
    """The app with the allow-list ``<httpserver>/fhir``; returns (test client, base URL)."""
    base = httpserver.url_for("/fhir")
    return make_app(fhir_server_allowlist=(base,), **settings).test_client(), base


def post(client, body: dict[str, Any]):  # type: ignore[no-untyped-def]
    return client.post("/cds-services/tma-bone-assessment", json=body)


def card_detail(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.get_data(as_text=True)
    return visible_text(response.get_json()["cards"][0])  # as a reader sees it


#####################################################################
# The URL decision itself (urls.py), worked out by hand from RFC 3986 §5.2.4 and §6.2.2

BASE = "https://ehr.example.org/fhir"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://ehr.example.org/fhir", True),
    ("https://ehr.example.org/fhir/", True),
    ("https://ehr.example.org/fhir/Observation?patient=p1&page=2", True),
    ("HTTPS://EHR.EXAMPLE.ORG:443/fhir/Observation", True),      # case, explicit default port
    ("https://ehr.example.org/fhir/./Observation", True),
    ("https://ehr.example.org/fhir/a/../Observation", True),      # stays under /fhir
    ("https://ehr.example.org/fhir/Observation#frag", True),
    ("https://ehr.example.org/fhir/../admin", False),             # is /admin
    ("https://ehr.example.org/fhir/%2e%2e/admin", False),         # encoded dots are dots
    ("https://ehr.example.org/fhir/%2E%2E/admin", False),
    ("https://ehr.example.org/fhir/..", False),                   # is /
    ("https://ehr.example.org/fhir/..;/admin", False),            # ".." to some servers
    ("https://ehr.example.org/fhir/..%2fadmin", False),           # encoded slash
    ("https://ehr.example.org/fhir/..\\admin", False),            # backslash
    ("https://ehr.example.org/fhir-admin/x", False),              # not a segment boundary
    ("https://ehr.example.org/fhirx", False),
    ("https://ehr.example.org/", False),
    ("http://ehr.example.org/fhir/x", False),                     # other scheme
    ("https://ehr.example.org:8443/fhir/x", False),               # other port
    ("https://ehr.example.org.evil.test/fhir/x", False),          # other host
    ("https://evil.test/fhir/x", False),
    ("https://ehr.example.org@evil.test/fhir/x", False),          # credentials / other host
    ("https://user:pw@ehr.example.org/fhir/x", False),
    ("https://ehr.example.org/fhir/x y", False),                  # space
    ("https://ehr.example.org/fhir/x\n", False),
    ("ftp://ehr.example.org/fhir/x", False),
    ("https://ehr.example.org:99999/fhir/x", False),              # port out of range
    ("/fhir/Observation", False),                                 # not absolute
])
def test_same_server(url: str, expected: bool) -> None:
    assert urls.same_server(BASE, url) is expected


@pytest.mark.parametrize(("link", "expected"), [
    ("Observation?patient=p1", "http://127.0.0.1:8090/fhir/Observation?patient=p1"),
    ("/fhir/Observation?page=2", "http://127.0.0.1:8090/fhir/Observation?page=2"),
    ("http://127.0.0.1:8090/fhir/Observation?page=2",
     "http://127.0.0.1:8090/fhir/Observation?page=2"),
    ("http://127.0.0.1:8090/fhir/x/../Observation", "http://127.0.0.1:8090/fhir/Observation"),
    ("//127.0.0.1:9999/steal", None),                 # scheme-relative: another port
    ("//evil.test/fhir/Observation", None),
    ("http://localhost:8090/fhir/Observation", None),  # another host name (no DNS lookups)
    ("http://127.0.0.2:8090/fhir/Observation", None),
    ("https://127.0.0.1:8090/fhir/Observation", None),
    ("../admin", None),
    ("/admin", None),
    ("Observation/../../admin", None),
    ("javascript:alert(1)", None),
    ("", "http://127.0.0.1:8090/fhir/"),              # the base itself
])
def test_join_resolves_links_and_refuses_what_leaves_the_base(link: str,
                                                              expected: str | None) -> None:
    assert urls.join("http://127.0.0.1:8090/fhir", link) == expected


@pytest.mark.parametrize(("server", "expected"), [
    ("https://ehr.example.org/fhir", "https://ehr.example.org/fhir"),
    ("https://ehr.example.org/fhir/", "https://ehr.example.org/fhir"),
    ("HTTPS://Ehr.Example.Org:443/fhir", "https://ehr.example.org/fhir"),
    ("https://ehr.example.org/fhir/r4", None),        # a sub-path is another server's base
    ("https://ehr.example.org/fhirx", None),
    ("https://ehr.example.org", None),
    ("https://ehr.example.org/fhir?x=1", None),
    ("http://ehr.example.org/fhir", None),
    ("https://ehr.example.org:8443/fhir", None),
    ("https://ehr.example.org.evil.test/fhir", None),
    ("https://u:p@ehr.example.org/fhir", None),
    ("http://127.0.0.1:8090/fhir", "http://127.0.0.1:8090/fhir"),
    ("http://localhost:8090/fhir", None),
])
def test_allowed_server_matches_a_whole_normalised_base(server: str,
                                                        expected: str | None) -> None:
    allowlist = ("https://ehr.example.org/fhir/", "http://127.0.0.1:8090/fhir")
    assert urls.allowed_server(server, allowlist) == expected
    assert urls.is_allowed(server, allowlist) is (expected is not None)


@pytest.mark.parametrize("url", [
    "https://ehr.example.org/fhir", "http://127.0.0.1:8090/fhir", "http://127.8.9.1/fhir",
    "http://localhost:8090/fhir", "http://[::1]:8090/fhir",
])
def test_check_url_accepts_https_and_loopback_http(url: str) -> None:
    assert urls.check_url(url, "entry") == url


@pytest.mark.parametrize(("url", "why"), [
    ("http://ehr.example.org/fhir", "must use https"),
    ("http://10.0.0.5:8080/fhir", "must use https"),
    ("http://localhost.evil.test/fhir", "must use https"),
    ("ftp://ehr.example.org/fhir", "absolute http"),
    ("ehr.example.org/fhir", "absolute http"),
    ("https://u:p@ehr.example.org/fhir", "credentials"),
    ("https://ehr.example.org/fhir#x", "fragment"),
    ("https://ehr.example.org/fhir?tenant=1", "query"),
    ("https://ehr.example.org:0x50/fhir", "not a usable URL"),
])
def test_check_url_refuses_with_one_line_naming_the_entry(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        urls.check_url(url, "the entry")
    message = str(caught.value)
    assert message.startswith("the entry ") and "\n" not in message
    assert repr(url) in message


#####################################################################
# Item 1: a prefetched Bundle's first next link


@pytest.mark.parametrize("form", ["http://127.0.0.1:{port}/steal", "//127.0.0.1:{port}/steal",
                                  "http://localhost:{port}/steal"])
def test_a_prefetched_bundles_next_link_to_another_host_gets_no_request(
        httpserver, other, form: str) -> None:
    client, base = fhir_app(httpserver)
    body = with_server(full_request(client), base, TOKEN)
    body["prefetch"]["conditions"]["link"] = [
        {"relation": "next", "url": form.format(port=other.port)}]
    response = post(client, body)
    assert other.log == []                       # no request: no token, no patient id there
    assert httpserver.log == []
    assert "only the first page was available" in card_detail(response)


def test_a_prefetched_next_link_on_the_server_is_paged_with_the_token(httpserver, other) -> None:
    client, base = fhir_app(httpserver)
    httpserver.expect_request("/fhir/Condition", query_string="page=2").respond_with_json(
        {"resourceType": "Bundle", "type": "searchset", "entry": []})
    body = with_server(full_request(client), base, TOKEN)
    body["prefetch"]["conditions"]["link"] = [
        {"relation": "next", "url": f"{base}/Condition?page=2"}]
    response = post(client, body)
    assert "only the first page" not in card_detail(response)
    assert [(r.path, r.headers["Authorization"]) for r, _ in httpserver.log] == [
        ("/fhir/Condition", f"Bearer {TOKEN}")]
    assert other.log == []


def test_a_later_next_link_to_another_host_gets_no_request(httpserver, other) -> None:
    client, base = fhir_app(httpserver)
    httpserver.expect_request("/fhir/Condition").respond_with_json(
        {"resourceType": "Bundle", "type": "searchset", "entry": [], "link": [
            {"relation": "next", "url": f"http://127.0.0.1:{other.port}/fhir/Condition"}]})
    body = with_server(full_request(client), base, TOKEN)
    body["prefetch"]["conditions"]["link"] = [
        {"relation": "next", "url": f"{base}/Condition?page=2"}]
    assert "only the first page was available" in card_detail(post(client, body))
    assert len(httpserver.log) == 1
    assert other.log == []


@pytest.mark.parametrize(("server", "why"), [
    (None, "the request names no fhirServer"),
    ("https://ehr.example.org/fhir", "fhirServer is not on this service's allow-list"),
])
def test_a_next_link_that_cannot_be_followed_is_said_on_the_card(
        httpserver, server: str | None, why: str) -> None:
    """Unread pages are not "no more data": the card says only the first page was read."""
    client, base = fhir_app(httpserver)
    body = full_request(client)
    body["prefetch"]["conditions"]["link"] = [
        {"relation": "next", "url": f"{base}/Condition?page=2"}]
    if server:
        body["fhirServer"] = server
    detail = card_detail(post(client, body))
    assert f"only the first page was available: {why}" in detail
    assert httpserver.log == []


#####################################################################
# Item 2: redirects are never followed


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_a_failed_request(httpserver, other, status: int) -> None:
    client, base = fhir_app(httpserver)
    httpserver.expect_request(ANY).respond_with_response(Response(
        "", status, headers={"Location": f"http://127.0.0.1:{other.port}/fhir/Observation"}))
    body = with_server(full_request(client), base, TOKEN)
    del body["prefetch"]["observations"]
    response = post(client, body)
    assert response.status_code == 412               # observations are required
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert f"answered HTTP {status}, a redirect" in diagnostics
    assert other.log == []
    assert len(httpserver.log) == 1


def test_a_redirect_on_the_same_host_is_not_followed_either(httpserver) -> None:
    client, base = fhir_app(httpserver)
    httpserver.expect_request("/fhir/Observation").respond_with_response(Response(
        "", 302, headers={"Location": "/elsewhere/Observation"}))
    httpserver.expect_request("/elsewhere/Observation").respond_with_json(
        {"resourceType": "Bundle", "type": "searchset", "entry": []})
    body = with_server(full_request(client), base, TOKEN)
    del body["prefetch"]["observations"]
    assert post(client, body).status_code == 412
    assert [r.path for r, _ in httpserver.log] == ["/fhir/Observation"]


def test_a_redirect_of_an_optional_key_becomes_a_note(httpserver, other) -> None:
    client, base = fhir_app(httpserver)
    httpserver.expect_request(ANY).respond_with_response(Response(
        "", 302, headers={"Location": f"http://127.0.0.1:{other.port}/fhir/MedicationRequest"}))
    body = with_server(full_request(client), base, TOKEN)
    del body["prefetch"]["medications"]
    assert "Medication requests: not available" in card_detail(post(client, body))
    assert other.log == []


#####################################################################
# Item 6: dot segments and prefixes in next links


@pytest.mark.parametrize("link", [
    "{base}/../admin/Observation", "{base}/%2e%2e/admin/Observation",
    "{base}/./../admin/Observation", "{base}-admin/Observation", "{base}/..;/admin/Observation",
    "{base}/..%2fadmin/Observation",
])
def test_a_next_link_that_climbs_out_of_the_base_gets_no_request(httpserver, link: str) -> None:
    client, base = fhir_app(httpserver)
    httpserver.expect_request("/fhir/Observation", query_string="page=2").respond_with_json({
        "resourceType": "Bundle", "type": "searchset", "entry": [],
        "link": [{"relation": "next", "url": link.format(base=base)}]})
    httpserver.expect_request(ANY).respond_with_json(
        {"resourceType": "Bundle", "type": "searchset", "entry": []})
    body = with_server(full_request(client), base, TOKEN)
    body["prefetch"]["observations"]["link"] = [
        {"relation": "next", "url": f"{base}/Observation?page=2"}]
    response = post(client, body)
    assert [r.path for r, _ in httpserver.log] == ["/fhir/Observation"]  # page 2 only
    assert assessment(response)["osteomyelitis"] == "probable"
    assert "only the first page was available" in card_detail(response)


#####################################################################
# Item 11: plain-http FHIR servers outside loopback are refused at start-up


@pytest.mark.parametrize("entry", ["http://ehr.example.org/fhir", "http://10.1.2.3:8080/fhir"])
def test_a_plain_http_allowlist_entry_outside_loopback_stops_serve(
        monkeypatch, capsys, entry: str) -> None:
    from cds_service.cli import main
    from cds_service.commands import serve

    def must_not_start(*args: Any) -> None:
        raise AssertionError("serve started with a plain-http FHIR server outside loopback")

    monkeypatch.setattr(serve, "serve_with_gunicorn", must_not_start)
    monkeypatch.setenv("CDS_AUTH_REQUIRED", "false")
    monkeypatch.setenv("CDS_FHIR_SERVER_ALLOWLIST", f"https://ok.example.org/fhir,{entry}")
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "CDS_FHIR_SERVER_ALLOWLIST entry must use https (http only on loopback)" in err
    assert repr(entry) in err and "ok.example.org" not in err


def test_loopback_http_allowlist_entries_stay_allowed() -> None:
    from cds_service.config import load_settings

    loopback = "http://127.0.0.1:8090/fhir,http://localhost:8091/fhir,http://[::1]:8092/fhir"
    settings = load_settings(environ={"CDS_FHIR_SERVER_ALLOWLIST": loopback})
    assert len(settings.fhir_server_allowlist) == 3


def test_a_plain_http_fhir_server_of_an_issuer_outside_loopback_is_refused(
        ec_key, tmp_path) -> None:
    import json

    from cds_service.auth import TrustStore
    from cds_service.errors import ConfigError
    from tests.test_auth import entry

    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"issuers": [entry(ec_key, fhirServers=[
        "http://127.0.0.1:8090/fhir", "http://ehr.example.org/fhir"])]}))
    with pytest.raises(ConfigError) as caught:
        TrustStore.load(str(path))
    message = str(caught.value)
    assert '"fhirServers"[1] must use https' in message and "http://ehr.example.org/fhir" in message
    assert "\n" not in message
    path.write_text(json.dumps({"issuers": [entry(ec_key, fhirServers=[
        "http://127.0.0.1:8090/fhir", "https://ehr.example.org/fhir"])]}))
    issuer = TrustStore.load(str(path)).get("https://ehr.example.org")
    assert issuer is not None
    assert issuer.fhir_servers == ("http://127.0.0.1:8090/fhir", "https://ehr.example.org/fhir")


#####################################################################
# Item 8: what one hook may fetch in total (CDS_FHIR_FETCH_MAX_BYTES)


def bundle_of(size: int, next_url: str | None = None) -> str:
    """A Bundle of about ``size`` bytes of JSON (its padding is a string field)."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                              "padding": "x" * size}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    import json

    return json.dumps(bundle)


def test_the_limit_is_read_from_the_environment() -> None:
    from cds_service.config import load_settings
    from cds_service.errors import ConfigError

    assert load_settings(environ={}).fhir_fetch_max_bytes == 8_000_000
    settings = load_settings(environ={"CDS_FHIR_FETCH_MAX_BYTES": "123456"})
    assert settings.fhir_fetch_max_bytes == 123456
    with pytest.raises(ConfigError, match="CDS_FHIR_FETCH_MAX_BYTES must be positive"):
        load_settings(environ={"CDS_FHIR_FETCH_MAX_BYTES": "0"})


@pytest.mark.parametrize(("limit", "status"), [(30_000, 412), (50_000, 200)])
def test_pages_each_under_the_limit_count_together(httpserver, limit: int, status: int) -> None:
    """Two pages of about 20 kB: over a 30 kB limit together, within a 50 kB one."""
    client, base = fhir_app(httpserver, fhir_fetch_max_bytes=limit)
    httpserver.expect_request("/fhir/Observation", query_string="page=2").respond_with_data(
        bundle_of(20_000), content_type="application/fhir+json")
    httpserver.expect_request("/fhir/Observation").respond_with_data(
        bundle_of(20_000, f"{base}/Observation?page=2"), content_type="application/fhir+json")
    body = with_server(full_request(client), base, TOKEN)
    del body["prefetch"]["observations"]
    response = post(client, body)
    assert response.status_code == status
    assert len(httpserver.log) == 2
    if status == 412:
        assert (f"FHIR data for this hook is larger than the limit of {limit} bytes "
                "(CDS_FHIR_FETCH_MAX_BYTES)") in response.get_json()["issue"][0]["diagnostics"]


def test_keys_fetched_in_parallel_share_one_limit(httpserver) -> None:
    """Seven keys of 10 kB each against a 25 kB limit: at most two can be had."""
    client, base = fhir_app(httpserver, fhir_fetch_max_bytes=25_000)
    httpserver.expect_request(ANY).respond_with_data(bundle_of(10_000),
                                                     content_type="application/fhir+json")
    body = with_server(full_request(client), base, TOKEN)
    del body["prefetch"]
    response = post(client, body)
    assert response.status_code == 412          # some required key went over the limit
    assert "CDS_FHIR_FETCH_MAX_BYTES" in response.get_json()["issue"][0]["diagnostics"]


def test_an_endless_chunked_answer_is_cut_off_as_it_streams(httpserver) -> None:
    """No Content-Length: the bytes are counted as they arrive, and reading stops at the limit."""
    sent = []

    def endless(request):  # type: ignore[no-untyped-def]
        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"resourceType": "Bundle", "type": "searchset", "padding": "'
            for _ in range(4096):               # 256 MiB if it were all read
                sent.append(1)
                yield b"x" * 65536
            yield b'"}'

        return Response(chunks(), 200, content_type="application/fhir+json")

    httpserver.expect_request(ANY).respond_with_handler(endless)
    client, base = fhir_app(httpserver, fhir_fetch_max_bytes=1_000_000)
    body = with_server(full_request(client), base, TOKEN)
    del body["prefetch"]["observations"]
    response = post(client, body)
    assert response.status_code == 412
    assert "larger than the limit of 1000000 bytes" in response.get_json()["issue"][0][
        "diagnostics"]
    assert len(sent) < 1000                     # socket buffers aside, the reading stopped


def test_a_gzip_bomb_is_counted_after_decompression(httpserver) -> None:
    import gzip

    bomb = gzip.compress(bundle_of(5_000_000).encode())   # about 5 kB on the wire
    assert len(bomb) < 100_000
    httpserver.expect_request(ANY).respond_with_data(
        bomb, content_type="application/fhir+json", headers={"Content-Encoding": "gzip"})
    client, base = fhir_app(httpserver, fhir_fetch_max_bytes=1_000_000)
    body = with_server(full_request(client), base, TOKEN)
    del body["prefetch"]["observations"]
    response = post(client, body)
    assert response.status_code == 412
    assert "larger than the limit" in response.get_json()["issue"][0]["diagnostics"]


#####################################################################
# Attachments by url (for the report reader): the same rules as every other request


def attachment_reader(httpserver, **settings: Any):  # type: ignore[no-untyped-def]
    """``ResolvedData.fetch_attachment`` of a call whose prefetch is complete."""
    import requests

    from cds_service.fhir.prefetch import resolve
    from cds_service.hooks import parse_request

    base = httpserver.url_for("/fhir")
    request = parse_request(with_server(full_request(make_app().test_client()), base, TOKEN))
    data = resolve({}, (), request, session=requests.Session(), allowed_servers=(base,),
                   timeout=settings.pop("timeout", 2.0), **settings)
    assert data.fetch_attachment is not None
    return data.fetch_attachment, base


def test_an_attachment_on_the_server_is_read_with_the_token(httpserver) -> None:
    httpserver.expect_request("/fhir/Binary/r1").respond_with_data(
        "Impression: no osteomyelitis.", content_type="text/plain; charset=utf-8")
    read, base = attachment_reader(httpserver)
    assert read("Binary/r1") == (b"Impression: no osteomyelitis.", "text/plain; charset=utf-8")
    assert read(f"{base}/Binary/r1") == (b"Impression: no osteomyelitis.",
                                         "text/plain; charset=utf-8")
    assert [r.headers["Authorization"] for r, _ in httpserver.log] == [f"Bearer {TOKEN}"] * 2


def test_an_attachment_as_a_binary_resource_is_unwrapped(httpserver) -> None:
    import base64

    httpserver.expect_request("/fhir/Binary/r2").respond_with_json({
        "resourceType": "Binary", "contentType": "text/html",
        "data": base64.b64encode(b"<p>Marrow oedema</p>").decode()},
        content_type="application/fhir+json")
    read, _ = attachment_reader(httpserver)
    assert read("Binary/r2") == (b"<p>Marrow oedema</p>", "text/html")


def test_an_attachment_elsewhere_redirected_or_too_large_is_not_had(httpserver, other) -> None:
    httpserver.expect_request("/fhir/Binary/moved").respond_with_response(Response(
        "", 302, headers={"Location": f"http://127.0.0.1:{other.port}/fhir/Binary/x"}))
    httpserver.expect_request("/fhir/Binary/big").respond_with_data(
        "x" * 5_000, content_type="text/plain")
    httpserver.expect_request("/fhir/Binary/gone").respond_with_data("", status=404)
    read, _ = attachment_reader(httpserver, fetch_max_bytes=4_000)
    assert read(f"http://127.0.0.1:{other.port}/fhir/Binary/x") is None
    assert read("../admin/Binary/x") is None
    assert read("Binary/moved") is None
    assert read("Binary/big") is None
    assert read("Binary/gone") is None
    assert [r.path for r, _ in httpserver.log] == [
        "/fhir/Binary/moved", "/fhir/Binary/big", "/fhir/Binary/gone"]
    assert other.log == []
