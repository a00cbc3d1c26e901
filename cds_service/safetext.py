"""Client text made safe to show on one line: in a log line, an operator's terminal, a report row.

One decision, used by the log formatters, the JWT verifier's rejection reasons and
``cds-service feedback-report``: every character that is not printable (``str.isprintable``:
control characters such as ESC, newline and carriage return, the C1 controls, format characters
such as the bidirectional overrides, separators other than the space) is written as a Python-style
escape (``\\x1b``, ``\\n``, ``\\u202e``), and so is the backslash itself (``\\\\``), so an escape
the client typed cannot pass for one we wrote. The result is bounded: longer text is cut and says
how much was left out.
"""

from __future__ import annotations

import re
from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_char(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, limit: int | None = None) -> str:
    """Return ``text`` with every non-printable character (and ``\\``) escaped, at most about
    ``limit`` characters of it.

    Examples:
    - ``escape("ok")`` -> ``"ok"``
    - ``escape("a\\nb\\x1b[2J")`` -> ``"a\\\\nb\\\\x1b[2J"`` (shown: ``a\\nb\\x1b[2J``)
    - ``escape("x" * 10, limit=4)`` -> ``"xxxx…(+6 chars)"``
    """
    cut = 0
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        text = text[:limit]
    if text.isprintable() and "\\" not in text:
        safe = text
    else:
        safe = "".join(c if c.isprintable() and c != "\\" else _escape_char(c) for c in text)
    return f"{safe}…(+{cut} chars)" if cut else safe


def shown(value: Any, limit: int = 120) -> str:
    """Render any client-supplied value for a message: a string escaped, anything else by
    ``repr`` (then escaped), bounded by ``limit``."""
    text = value if isinstance(value, str) else repr(value)
    return escape(text, limit)


# scheme://userinfo@ : greedy up to the last "@" of the authority, as URL parsers split it.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s]*@")


def without_credentials(text: str) -> str:
    """Return ``text`` with the ``user:password@`` of every URL in it replaced by ``***@``.

    Examples:
    - ``without_credentials("https://u:pw@fhir.example/r4")`` -> ``"https://***@fhir.example/r4"``
    - ``without_credentials("see https://fhir.example/r4")`` -> unchanged
    """
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(r"\1***@", text)
