"""Reading a JSON body (``web.body``): orjson parses the bytes themselves, with the same answers
as when every body was decoded to text first; the front's buffer is taken, not copied."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.errors import RequestInvalid
from cds_service.web import body as body_module
from cds_service.web.body import WholeBody, parse_json, read_json_body
from tests.conftest import make_app


def parsed_as_text(raw: bytes) -> tuple[str, Any]:
    """The outcome of the former reading: decode, then parse the text (the reference)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "error", f"request body is not UTF-8 (byte {exc.start} is invalid)"
    try:
        return "value", orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        reason = "nested too deeply" if "depth" in exc.msg.lower() else \
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        return "error", f"request body is {reason}"


def parsed(raw: bytes | bytearray) -> tuple[str, Any]:
    try:
        return "value", parse_json(raw)
    except RequestInvalid as exc:
        return "error", str(exc)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)


@settings(max_examples=400)
@given(document=JSON, cut=st.integers(min_value=0, max_value=60),
       noise=st.binary(max_size=4), prefix=st.sampled_from([b"", b"\xef\xbb\xbf", b" \n"]))
def test_any_bytes_give_the_answer_the_text_reading_gave(document: Any, cut: int, noise: bytes,
                                                         prefix: bytes) -> None:
    valid = json.dumps(document, ensure_ascii=False).encode()
    for raw in (valid, prefix + valid, valid[:cut] + noise + valid[cut:], valid[:cut]):
        expected = parsed_as_text(raw)
        assert parsed(raw) == expected
        assert parsed(bytearray(raw)) == expected


@pytest.mark.parametrize("raw", [
    b'{"a": "\xed\xa0\x80"}',  # an encoded surrogate: not UTF-8 for Python, nor for orjson
    b'{"a": "\xc0\xaf"}',  # an overlong encoding
    b'[1, 2]\xff',
    b"\xef\xbb\xbf{}",  # a byte order mark
    b'"\\ud800"',  # a lone surrogate escape
    b"[" * 1100 + b"]" * 1100,
    b'{"a": NaN}',
    b"",
])
def test_refused_bodies_are_refused_for_the_same_reason(raw: bytes) -> None:
    assert parsed(raw) == parsed_as_text(raw)
    assert parsed(raw)[0] == "error"


def test_whole_body_hands_over_its_own_object_and_lets_go_of_it() -> None:
    data = bytearray(b'{"a": 1}')
    source = WholeBody(data)
    assert source.take(len(data) + 1) is None  # not the declared length: nothing changes
    assert source.take(len(data)) is data
    assert source.read() == b"" and source.take(0) == b""


def test_whole_body_reads_as_a_stream_and_gives_what_is_left() -> None:
    source = WholeBody(b"hello world")
    assert source.read(6) == b"hello "
    assert source.take(5) == b"world"
    assert source.read() == b""
    assert WholeBody(b"a\nb\n").readlines() == [b"a\n", b"b\n"]


def test_read_json_body_takes_the_fronts_buffer_instead_of_reading_the_stream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_stream(*_: Any) -> bytes:
        raise AssertionError("the body was read from the stream")

    monkeypatch.setattr(body_module, "_read_at_most", no_stream)
    raw = bytearray(b'{"hook": "patient-view"}')
    source = WholeBody(raw)
    app = make_app()
    with app.test_request_context("/x", method="POST", content_type="application/json",
                                  environ_overrides={"wsgi.input": source,
                                                     "CONTENT_LENGTH": str(len(raw))}):
        from flask import request
        assert read_json_body(request, 100) == {"hook": "patient-view"}
    assert source.read() == b""
