"""Report text extraction: plain text out of every place a DiagnosticReport carries it
(clinical-rules.md §2 "Imaging findings", item 3), and a reason for each part that could not be
read.

- ``conclusion`` (read as the impression);
- every ``presentedForm`` whose media type (compared without case) is ``text/plain``,
  ``text/html`` / ``application/xhtml+xml`` or ``text/rtf`` / ``application/rtf``: ``data`` is
  base64; the ``charset`` parameter is honoured (UTF-16 included); without one a byte-order mark
  decides, else UTF-8, else Windows-1252 (the usual RTF and legacy-EHR code page);
  HTML goes through the standard library's ``html.parser`` (block elements end lines, list items
  become bullets, entities decoded, script and style dropped); RTF through ``striprtf``;
- an attachment given only by ``url``: read through ``fetch`` when the caller has one (the FHIR
  client's same-server check and fetch budget decide), else noted as unread;
- ``text.div`` (XHTML narrative) only when nothing above carried text.

Problems are returned as short reasons that never quote the text (it is patient data).
"""

from __future__ import annotations

import base64
import binascii
import codecs
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from typing import Any

from ..fhir.resources import as_list

PLAIN = frozenset({"text/plain"})
HTML = frozenset({"text/html", "application/xhtml+xml"})
RTF = frozenset({"text/rtf", "application/rtf"})
# A fetch function: url -> (bytes, content type) or None when it may not or could not be had.
Fetch = Callable[[str], "tuple[bytes, str | None] | None"]


# Radiology reports are a few kilobytes; a longer text is read up to here and noted as cut.
MAX_TEXT = 100_000


@dataclass
class ReportTexts:
    texts: list[tuple[str, str]] = field(default_factory=list)  # (default section, text)
    unread: list[str] = field(default_factory=list)  # why a part could not be read

    def add(self, section: str, text: str, where: str) -> None:
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT]
            self.unread.append(f"{where} is longer than {MAX_TEXT:,} characters: only the first "
                               "part was read")
        self.texts.append((section, text))


def report_texts(report: dict[str, Any], fetch: Fetch | None = None) -> ReportTexts:
    out = ReportTexts()
    conclusion = report.get("conclusion")
    if isinstance(conclusion, str) and conclusion.strip():
        out.add("impression", conclusion, "the conclusion")
    for number, form in enumerate(as_list(report.get("presentedForm")), start=1):
        if not isinstance(form, dict):
            continue
        text, problem = attachment_text(form, fetch)
        if text is not None:
            if text.strip():
                out.add("findings", text, attachment_words(number))
        elif problem:
            out.unread.append(f"{attachment_words(number)} {problem}")
    if not out.texts and not out.unread:
        narrative = report.get("text")
        div = narrative.get("div") if isinstance(narrative, dict) else None
        if isinstance(div, str) and div.strip():
            out.add("findings", html_to_text(div), "the narrative")
    return out


def attachment_words(number: int) -> str:
    """A report's ``presentedForm`` as a clinician would name it: "attachment 1" (reading notes
    are shown on cards after the report's name, clinical-rules.md §11: no FHIR element names)."""
    return f"attachment {number}"


def attachment_text(form: dict[str, Any], fetch: Fetch | None = None,
                    ) -> tuple[str | None, str | None]:
    """``(text, None)`` or ``(None, reason)`` (``(None, None)``: not a text attachment)."""
    media, charset = content_type(form.get("contentType"))
    data = form.get("data")
    if isinstance(data, str):
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            return None, "is not valid base64 data"
    elif isinstance(form.get("url"), str):
        if media is not None and media not in PLAIN | HTML | RTF:
            return None, f"is in a format not read ({media})"
        got = fetch(form["url"]) if fetch is not None else None
        if got is None:
            return None, "is given by url and could not be fetched"
        raw, fetched_type = got
        if fetched_type:
            media, charset = content_type(fetched_type) if media is None else (
                media, charset or content_type(fetched_type)[1])
    else:
        return None, None
    if media not in PLAIN | HTML | RTF:
        return None, f"is in a format not read ({media or 'unknown'})"
    text = decode(raw, charset)
    if text is None:
        return None, f"could not be decoded ({charset or 'no charset'})"
    if media in HTML:
        return html_to_text(text), None
    if media in RTF:
        return rtf_to_text(text)
    return text, None


def content_type(value: Any) -> tuple[str | None, str | None]:
    """Media type (lower case) and charset of a MIME content type, parsed by the standard
    library's email header parser (quoting and parameters as RFC 2045 has them)."""
    if not isinstance(value, str) or not value.strip():
        return None, None
    message = Message()
    message["content-type"] = value
    charset = message.get_param("charset")
    return message.get_content_type(), charset if isinstance(charset, str) else None


def decode(raw: bytes, charset: str | None) -> str | None:
    """Bytes to text with the declared charset, else by byte-order mark, UTF-8 or Windows-1252.
    None when the declared charset is unknown or the bytes are not in it."""
    if charset:
        try:
            codec = codecs.lookup(charset.strip().strip('"'))
        except LookupError:
            return None
        try:
            text = raw.decode(codec.name)
        except UnicodeDecodeError:
            return None
        return text.lstrip("\ufeff")
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(name)
            except UnicodeDecodeError:
                return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


_BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul",
                    "ol", "table", "thead", "tbody", "section", "article", "header", "footer",
                    "blockquote", "pre", "dt", "dd", "hr", "caption"})
_SKIP = frozenset({"script", "style", "head", "title"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" : " if self.parts and not self.parts[-1].endswith("\n")
                              else "")
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Text of an HTML or XHTML fragment, one line per block element."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def rtf_to_text(markup: str) -> tuple[str | None, str | None]:
    from striprtf.striprtf import rtf_to_text as strip  # imported on first RTF only

    try:
        return strip(markup, errors="replace"), None
    except Exception:  # a malformed RTF is a note on the card, never a crash
        return None, "is RTF that could not be read"
