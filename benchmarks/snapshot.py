"""Snapshot of the service's responses, to show an optimisation changes no byte of them.

    .venv/bin/python -m benchmarks.snapshot write     # before the change
    .venv/bin/python -m benchmarks.snapshot check     # after it: exit 1 and the first difference

Covers every fixture record (patient-view), every draft-order fixture with its record (the golden
order cases), the TYPICAL and HEAVY benchmark bodies and a few cold TYPICAL bodies. Response
bodies are compared whole, with uuids replaced by a placeholder. The file goes to
``benchmarks/results/snapshot.json`` (not committed: other engineers' card changes move it).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import data

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "fixtures" / "records"
ORDERS = ROOT / "fixtures" / "orders"
OUT = Path(__file__).resolve().parent / "results" / "snapshot.json"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
COLD_BODIES = 4


def _order_cases() -> list[tuple[str, str, str]]:
    """(record, draft, hook) of each golden order case (tests/test_order_hooks.py CASES)."""
    sys.path.insert(0, str(ROOT))
    from tests.test_order_hooks import CASES

    return [(name, draft, hook) for _case, name, draft, hook in CASES]


def responses() -> dict[str, str]:
    from cds_service import create_app
    from cds_service.fhir.resources import bundle_resources
    from cds_service.replay import build_request, record_time

    clock: dict[str, datetime] = {}
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cds-snapshot-") as tmp:
        app = create_app({"auth_required": False, "log_format": "json",
                          "database_url": f"sqlite:///{Path(tmp) / 'snap.db'}",
                          "max_body_bytes": 16_000_000}, clock=lambda: clock["now"])
        logging.getLogger("cds_service").setLevel(logging.ERROR)  # no log line per call
        client = app.test_client()
        discovery = client.get("/cds-services").get_json()

        def post(key: str, service: str, body: bytes) -> None:
            response = client.post(f"/cds-services/{service}", data=body,
                                   content_type="application/json")
            text = UUID.sub(b"<uuid>", response.get_data())
            out[key] = f"{response.status_code} " + text.decode("utf-8")

        def record(name: str) -> tuple[list[dict[str, Any]], str]:
            bundle = json.loads((RECORDS / f"{name}.json").read_text(encoding="utf-8"))
            now = record_time(bundle)
            clock["now"] = now.replace(tzinfo=UTC) if now.tzinfo is None else now
            resources = bundle_resources(bundle)
            patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
            return resources, patient

        for path in sorted(RECORDS.glob("*.json")):
            resources, patient = record(path.stem)
            body = build_request(discovery, data.SERVICE_ID, data.HOOK, resources, patient)
            post(f"record/{path.stem}", data.SERVICE_ID, data.encode(body))
        for name, draft, hook in _order_cases():
            resources, patient = record(name)
            orders = json.loads((ORDERS / f"{draft}.json").read_text(encoding="utf-8"))
            service = "tma-order-select" if hook == "order-select" else "tma-order-sign"
            body = build_request(discovery, service, hook, resources, patient, orders)
            post(f"order/{draft}/{hook}", service, data.encode(body))
        now = data.bench_now()
        clock["now"] = now
        bench = data.local_discovery()
        post("bench/TYPICAL", data.SERVICE_ID, data.encode(data.typical_request(bench, now)))
        post("bench/HEAVY", data.SERVICE_ID, data.encode(data.heavy_request(bench, now)))
        for i, body in enumerate(data.cold_requests(bench, now, COLD_BODIES)):
            post(f"bench/TYPICAL-cold-{i}", data.SERVICE_ID, body)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["write"], ["check"]):
        print("usage: python -m benchmarks.snapshot write|check", file=sys.stderr)  # noqa: T201
        return 2
    got = responses()
    if args == ["write"]:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(got, indent=0, ensure_ascii=False), encoding="utf-8")
        print(f"{len(got)} responses written to {OUT}")  # noqa: T201
        return 0
    want = json.loads(OUT.read_text(encoding="utf-8"))
    differ = [key for key in sorted(set(want) | set(got)) if want.get(key) != got.get(key)]
    for key in differ:
        print(f"differs: {key}")  # noqa: T201
    print(f"{len(got)} responses, {len(differ)} differ")  # noqa: T201
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
