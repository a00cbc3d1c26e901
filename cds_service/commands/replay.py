"""``cds-service replay RECORD.json``: answer the service's prefetch from a record, post, print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..cli import UsageError
from ..clinical.draft_orders import MEDICATION_TYPES, SERVICE_TYPES
from ..fhir.resources import bundle_resources
from ..replay import (
    RecordError,
    build_request,
    format_html,
    format_text,
    load_bundle,
    patient_id_of,
    record_time,
    shift_dates,
)

SERVICE_FOR_HOOK = {"patient-view": "tma-bone-assessment", "order-select": "tma-order-select",
                    "order-sign": "tma-order-sign"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("replay", help="replay a FHIR record through a hook")
    parser.add_argument("record", type=Path, help="FHIR Bundle with one patient's record")
    parser.add_argument("--hook", choices=sorted(SERVICE_FOR_HOOK), default="patient-view")
    parser.add_argument("--draft", type=Path, help="Bundle of draft orders (order hooks)")
    parser.add_argument("--url", help="base URL of a running service (default: in-process)")
    parser.add_argument("--token", help="bearer JWT for a service with authentication on")
    parser.add_argument("--format", choices=("text", "json", "html"), default="text")
    parser.set_defaults(run=run)


def _in_process(now: datetime | None):  # type: ignore[no-untyped-def]
    from ..app import create_app

    logging.getLogger("cds_service").setLevel(logging.ERROR)
    app = create_app({"auth_required": False, "database_url": "sqlite://", "log_format": "text"},
                     clock=(lambda: now) if now else None)
    client = app.test_client()

    def get(path: str) -> tuple[int, Any]:
        response = client.get(path)
        return response.status_code, response.get_json()

    def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = client.post(path, json=body)
        return response.status_code, response.get_json()

    return get, post


def _remote(base: str, token: str | None):  # type: ignore[no-untyped-def]
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            response = requests.request(method, base.rstrip("/") + path, json=body,
                                        headers=headers, timeout=30)
        except requests.RequestException as exc:
            raise UsageError(f"{base}: cannot reach the service ({type(exc).__name__})") from None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"text": response.text[:200]}

    return (lambda path: call("GET", path)), (lambda path, body: call("POST", path, body))


ORDER_TYPES = MEDICATION_TYPES | SERVICE_TYPES


def _resource_types(bundle: dict[str, Any]) -> set[str]:
    return {str(r.get("resourceType")) for r in bundle_resources(bundle)}


def check_inputs(args: argparse.Namespace, bundle: dict[str, Any],
                 draft: dict[str, Any] | None) -> None:
    """Refuse swapped or misplaced files with one line each (exit 2), before any request."""
    if args.draft and args.hook == "patient-view":
        raise UsageError("--draft is for --hook order-select or order-sign, not patient-view")
    types = _resource_types(bundle)
    if types and types <= ORDER_TYPES | {"Medication"} and types & ORDER_TYPES:
        raise UsageError(f"{args.record}: holds only orders, not a patient record (a draft-orders"
                         " file goes after --draft; the record comes first)")
    if draft is not None:
        others = sorted(_resource_types(draft) - ORDER_TYPES - {"Medication"})
        if others:
            raise UsageError(f"{args.draft}: not a draft-orders Bundle: it holds "
                             f"{', '.join(others)} (a patient record? --draft takes only "
                             "the orders being placed)")


def run(args: argparse.Namespace) -> int:
    try:
        bundle = load_bundle(args.record)
        draft = load_bundle(args.draft) if args.draft else None
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    check_inputs(args, bundle, draft)
    when = record_time(bundle)
    if args.url and when is not None:
        # A running service uses the real clock: move the record so its timestamp is now.
        delta = datetime.now(UTC) - when
        bundle = shift_dates(bundle, delta)
        draft = shift_dates(draft, delta) if draft else None
        when = None
    resources = bundle_resources(bundle)
    try:
        patient_id = patient_id_of(resources, args.record)
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    get, post = _remote(args.url, args.token) if args.url else _in_process(when)
    status, discovery = get("/cds-services")
    if status != 200:
        raise UsageError(f"discovery answered HTTP {status}")
    service_id = SERVICE_FOR_HOOK[args.hook]
    try:
        body = build_request(discovery, service_id, args.hook, resources, patient_id, draft)
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    if draft is not None and not bundle_resources(draft):
        raise UsageError(f"{args.draft}: holds no draft orders")
    status, response = post(f"/cds-services/{service_id}", body)
    if status != 200:
        issue = ((response or {}).get("issue") or [{}])[0]
        print(f"service answered HTTP {status}: {issue.get('diagnostics', response)}",  # noqa: T201
              file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(response, indent=2))  # noqa: T201
    elif args.format == "html":
        heading = args.record.name if draft is None else \
            f"{args.record.name}, {args.hook} with {args.draft.name}"
        print(format_html(response, heading), end="")  # noqa: T201
    else:
        print(format_text(response))  # noqa: T201
    return 0
