"""FHIR date parsing: the direct path for UTC instants gives what the general parser gives.

``parse_datetime`` reads ``YYYY-MM-DDThh:mm:ssZ`` with ``datetime.fromisoformat`` directly and
everything else through the ``_DATE`` regex. Worked examples first, then random strings of that
shape with characters swapped in (digits, separators, letters, spaces, non-ASCII digits),
compared with the general path alone.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from cds_service.fhir.resources import _parse_datetime_text, parse_datetime


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-20T10:00:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
    ("2024-02-29T23:59:59Z", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
    ("2026-02-29T10:00:00Z", None),    # not a leap year
    ("2026-11-20T24:00:00Z", None),    # FHIR has no 24:00
    ("2026-11-20T10:00.00Z", None),    # fromisoformat alone would take minutes with a fraction
    ("2026-11-20 10:00:00Z", None),
    (" 026-11-20T10:00:00Z", None),
    ("2026-11-20T10:00:00+01:00", datetime(2026, 11, 20, 9, tzinfo=UTC)),
    ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
])
def test_examples(text: str, expected: datetime | None) -> None:
    assert parse_datetime(text) == expected


def test_the_direct_path_agrees_with_the_general_one() -> None:
    rng = random.Random(20261202)  # noqa: S311 - reproducible test data, not secrets
    chars = "0123456789-:TZ+. x\u0663,_\t/e"
    base = "2026-11-20T10:00:00Z"
    for _ in range(50_000):
        text = list(base)
        for _ in range(rng.randint(0, 4)):
            text[rng.randrange(len(text))] = rng.choice(chars)
        candidate = "".join(text)
        if rng.random() < 0.3:
            candidate = (f"{rng.randint(0, 9999):04d}-{rng.randint(0, 14):02d}-"
                         f"{rng.randint(0, 33):02d}T{rng.randint(0, 25):02d}:"
                         f"{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d}Z")
        direct, general = parse_datetime(candidate), _parse_datetime_text.__wrapped__(candidate)
        assert direct == general, candidate
        if direct is not None:
            assert direct.utcoffset() == general.utcoffset()
