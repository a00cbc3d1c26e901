"""``cds-service timeline RECORD.json --out FILE.html``: the evidence-timeline page of the SMART
app rendered offline from a record (one self-contained file that makes no network request)."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..cli import UsageError
from ..config import load_settings
from ..fhir.resources import bundle_resources
from ..mappings import load_mappings
from ..replay import RecordError, load_bundle, patient_id_of, record_time
from ..services import evaluate
from ..timeline import render_page


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("timeline", help="render a record's evidence timeline as HTML")
    parser.add_argument("record", type=Path, help="FHIR Bundle with one patient's record")
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        bundle = load_bundle(args.record)
        resources = bundle_resources(bundle)
        patient_id = patient_id_of(resources, args.record)
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    # The record's own moment is the clock (as replay does in-process).
    now = record_time(bundle) or datetime.now(UTC)
    settings = load_settings(environ=os.environ)
    mappings = load_mappings(settings.mappings_dir, settings.extra_mappings)
    evaluation = evaluate(resources, mappings, now, patient_id, {})
    if evaluation.record.amputation is None:
        raise UsageError(f"{args.record}: holds no index amputation (nothing to draw against)")
    html = render_page(evaluation, resources, title_note=f"rendered from {args.record.name}")
    try:
        args.out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot be written ({exc.strerror})") from None
    return 0
