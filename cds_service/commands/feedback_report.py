"""``cds-service feedback-report``: what clinicians did with the cards, per service and card kind.

Reads the database named by ``CDS_DATABASE_URL`` (the same one the service writes)::

    cds-service feedback-report --since 2026-01-01
    cds-service feedback-report --format json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..cli import UsageError
from ..config import load_settings
from ..feedback.model import parse_timestamp
from ..feedback.store import FeedbackStore, ReportRow
from ..safetext import escape

COLUMNS = ("service", "kind", "issued", "accepted", "overridden", "rate", "comments",
           "top override reasons")
MAX_CELL = 80  # characters of one client string (a reason's display or code) in the text table


def register(subparsers: Any) -> None:
    """Add the ``feedback-report`` subcommand to the ``cds-service`` parser."""
    parser = subparsers.add_parser(
        "feedback-report",
        help="cards issued, accepted and overridden, per service and card kind",
        description="Reads the feedback database (CDS_DATABASE_URL). Counts are feedback events: "
                    "a card accepted twice at different times counts twice. Cards count by when "
                    "they were issued, feedback by its outcomeTimestamp.",
    )
    parser.add_argument("--since", metavar="DATE",
                        help="only cards issued and feedback given from DATE on "
                             "(YYYY-MM-DD, UTC midnight, or an RFC 3339 date-time)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text: a table for people (default); json: for programs")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; return the exit code (0 done, 2 usage or input error, 1 database error)."""
    since = parse_since(args.since)  # UsageError and StartupError: cli.main says so, exit 2
    settings = load_settings()
    try:
        store = FeedbackStore(settings.database_url, background=False)
    except SQLAlchemyError as exc:
        print(f"cds-service feedback-report: cannot open the feedback database: "  # noqa: T201
              f"{_first_line(exc)}", file=sys.stderr)
        return 1
    try:
        rows = store.report(since)
    except SQLAlchemyError as exc:
        print(f"cds-service feedback-report: cannot read the feedback database: "  # noqa: T201
              f"{_first_line(exc)}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.format == "json":
        body = {"since": since.isoformat().replace("+00:00", "Z") if since else None,
                "rows": [row.as_dict() for row in rows]}
        # ensure_ascii: control and non-ASCII characters are \u escapes, the output plain ASCII
        print(json.dumps(body, indent=2, ensure_ascii=True))  # noqa: T201
    else:
        print(render_text(rows, since))  # noqa: T201
    return 0


def parse_since(value: str | None) -> datetime | None:
    """Return ``--since`` as an aware UTC datetime. :raises UsageError: it is not a date."""
    if value is None:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        parsed = parse_timestamp(value)
        if parsed is None:
            raise UsageError(f"--since must be a date (YYYY-MM-DD) or an RFC 3339 date-time "
                             f"such as 2026-01-01T00:00:00Z, not {value!r}") from None
        return parsed
    return day.replace(tzinfo=UTC)


def render_text(rows: Sequence[ReportRow], since: datetime | None) -> str:
    """The report as an aligned table, with a title line saying what period it covers."""
    period = f"since {since:%Y-%m-%d %H:%M} UTC" if since else "all time"
    if not rows:
        return f"Feedback report ({period}): no cards issued and no feedback received."
    # Reasons come from clients, and a database may hold anything: every string is data, shown
    # escaped (no terminal sequences, no newline that would forge a row) and bounded.
    table = [COLUMNS] + [(
        escape(row.service_id, MAX_CELL), escape(row.kind, MAX_CELL), str(row.issued),
        str(row.accepted), str(row.overridden),
        "-" if row.acceptance_rate is None else f"{row.acceptance_rate:.0%}",
        str(row.comments),
        ", ".join(f"{escape(reason, MAX_CELL)} ({n})" for reason, n in row.top_override_reasons)
        or "-",
    ) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS) - 1)]
    numeric = range(2, 7)
    lines = [f"Feedback report ({period})"]
    for r in table:
        cells = [r[i].rjust(w) if i in numeric else r[i].ljust(w) for i, w in enumerate(widths)]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    lines.append("rate = accepted / (accepted + overridden); kind 'unknown' = feedback about a "
                 "card this service has no record of issuing.")
    return "\n".join(lines)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
