"""Instructions per hook call, in-process, under callgrind: repeatable under load.

    .venv/bin/python -m benchmarks.instructions [--calls 20] [--log] [--floor]
    .venv/bin/python -m benchmarks.instructions --stages   # where a new chart's count goes

Wall-clock and CPU-time figures move by ±50 % when other programs share the 2 cores; instruction
counts move by ~0.3 %. This runs itself under ``valgrind --tool=callgrind`` (``apt-get install
valgrind``; a C compiler builds a three-line helper that switches callgrind's counting on and
off) and counts only while the requests run: ``--calls`` new TYPICAL charts (each sent once,
"cold"), then as many repeats of the warm TYPICAL body. The app is built as ``benchmarks.profile``
builds it; ``--log`` keeps the per-call log line on; ``--floor`` counts the floor app instead.
About 1 M instructions is 0.2 ms of CPU on the reference machine (README "Performance").

``--upto STAGE`` stops each call after one stage of the pipeline (the later stages are replaced
by no-ops where ``services`` looks them up), and ``--stages`` counts the floor and every cut in
turn and prints what each stage adds to a new chart: the hook's data (body, hook request,
prefetch), reading the record, the facts, the assessment, the card specs, rendering and the
rest (response JSON, the issued-cards store, metrics).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import data

HELPER = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_TOGGLE_COLLECT; }
void cg_stop(const char *name) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS_AT(name); }
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--log", action="store_true", help="keep the per-call log line on")
    parser.add_argument("--floor", action="store_true", help="count the floor app")
    parser.add_argument("--upto", choices=STAGES, help="stop each call after this stage")
    parser.add_argument("--stages", action="store_true",
                        help="count the floor and every --upto cut; print each stage's share")
    parser.add_argument("--inside", help=argparse.SUPPRESS)  # the run under valgrind
    args = parser.parse_args(argv)
    if args.inside:
        return _inside(args)
    if args.stages:
        return _stages(args.calls)
    counts = _count(args.calls, log=args.log, floor=args.floor, upto=args.upto)
    if counts is None:
        return 1
    what = "floor" if args.floor else "service" + (", log line on" if args.log else "") + (
        f", up to {args.upto}" if args.upto else "")
    for name, millions in counts.items():
        print(f"{what}: {name}: {millions:.2f} M instructions per call ({args.calls} calls)")  # noqa: T201
    return 0


STAGES = ("data", "record", "facts", "assessment", "cards")
STAGE_LABELS = {
    "data": "the hook's data beyond the floor (hook request, prefetch)",
    "record": "reading the record (classification, amputation, reports)",
    "facts": "the facts (gather, is_relevant)",
    "assessment": "the assessment (rules)",
    "cards": "the card specs (patient_view_cards)",
    None: "rendering, response JSON, issued-cards store, metrics",
}


def _stages(calls: int) -> int:
    floor = _count(calls, floor=True)
    if floor is None:
        return 1
    previous = floor["cold"]
    print(f"new TYPICAL chart, in-process, M instructions per call ({calls} calls)")  # noqa: T201
    print(f"  {'floor (Flask, orjson body, empty answer)':<66} {previous:6.2f}")  # noqa: T201
    for upto in (*STAGES, None):
        counts = _count(calls, upto=upto)
        if counts is None:
            return 1
        print(f"  + {STAGE_LABELS[upto]:<64} {counts['cold'] - previous:6.2f}")  # noqa: T201
        previous = counts["cold"]
    print(f"  {'= the whole call':<66} {previous:6.2f}  ({previous / floor['cold']:.2f}x the "  # noqa: T201
          "floor)")
    return 0


def _count(calls: int, *, log: bool = False, floor: bool = False,
           upto: str | None = None) -> dict[str, float] | None:
    """{"cold": M, "warm": M} instructions per call, counted under callgrind; None on failure."""
    with tempfile.TemporaryDirectory(prefix="cds-instructions-") as tmp:
        helper = Path(tmp) / "cg.so"
        (Path(tmp) / "cg.c").write_text(HELPER)
        compiler = shutil.which("cc") or "cc"
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(helper),
                        str(Path(tmp) / "cg.c")], check=True)
        out = Path(tmp) / "cg.out"
        command = [shutil.which("valgrind") or "valgrind", "--tool=callgrind",
                   "--collect-atstart=no", f"--callgrind-out-file={out}", sys.executable, "-m",
                   "benchmarks.instructions", "--inside", str(helper), "--calls", str(calls)]
        command += ["--log"] * log + ["--floor"] * floor + (["--upto", upto] if upto else [])
        done = subprocess.run(command, env={**os.environ, "PYTHONHASHSEED": "0"},
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)  # noqa: T201
            return None
        counts = {}
        for dump in sorted(Path(tmp).glob("cg.out.*")):
            text = dump.read_text(errors="replace")
            name = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.M)
            total = re.search(r"^summary: (\d+)", text, re.M)
            if name and total:
                counts[name.group(1)] = int(total.group(1)) / calls / 1e6
    return counts


def _cut_after(upto: str) -> None:
    """Make each call stop after ``upto``: the next stage becomes a no-op where ``services`` (or
    the runtime) looks it up, so the stages before it run exactly as in a real call."""
    from cds_service import runtime, services

    if upto == "data":
        def answer(self: Any, service: Any, request: Any, client: Any = None) -> list[Any]:
            self.data_for(service, request, self.allowed_servers(client))
            return []

        runtime.Runtime.answer = answer  # type: ignore[method-assign]
    elif upto == "record":
        services.gather = lambda record: None  # type: ignore[assignment]
        services.is_relevant = lambda facts: False  # type: ignore[assignment]
    elif upto == "facts":
        relevant = services.is_relevant
        services.is_relevant = lambda facts: relevant(facts) and False  # type: ignore[assignment]
    elif upto == "assessment":
        services.patient_view_cards = lambda *args: []  # type: ignore[assignment]
    elif upto == "cards":
        services.render_response = lambda specs, disclaimer: []  # type: ignore[assignment]


def _inside(args: argparse.Namespace) -> int:
    helper = ctypes.CDLL(args.inside)
    now = data.bench_now()
    discovery = data.local_discovery()
    cold = data.cold_requests(discovery, now, args.calls + 3)
    warm = data.encode(data.typical_request(discovery, now))
    with tempfile.TemporaryDirectory(prefix="cds-instructions-") as tmp:
        if args.floor:
            from .floor_app import create_floor_app

            app = create_floor_app()
        else:
            from cds_service import create_app
            from cds_service.app import freeze_startup_heap

            app = create_app({"auth_required": False, "log_format": "json",
                              "database_url": f"sqlite:///{Path(tmp) / 'i.db'}",
                              "max_body_bytes": 16_000_000}, clock=lambda: now)
            freeze_startup_heap()
            if args.upto:
                _cut_after(args.upto)
            if not args.log:
                logging.getLogger("cds_service").setLevel(logging.WARNING)
        client = app.test_client()
        url = "/cds-services/" + data.SERVICE_ID

        def post(body: bytes) -> None:
            response = client.post(url, data=body, content_type="application/json")
            assert response.status_code == 200, response.get_data()[:300]

        for body in [*cold[:3], warm, warm]:
            post(body)
        for name, bodies in (("cold", cold[3:]), ("warm", [warm] * args.calls)):
            gc.collect()
            helper.cg_start()
            for body in bodies:
                post(body)
            helper.cg_stop(name.encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
