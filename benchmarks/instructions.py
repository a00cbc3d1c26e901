"""Instructions per hook call, in-process, under callgrind: repeatable under load.

    .venv/bin/python -m benchmarks.instructions [--calls 20] [--log] [--floor]

Wall-clock and CPU-time figures move by ±50 % when other programs share the 2 cores; instruction
counts move by ~0.3 %. This runs itself under ``valgrind --tool=callgrind`` (``apt-get install
valgrind``; a C compiler builds a three-line helper that switches callgrind's counting on and
off) and counts only while the requests run: ``--calls`` new TYPICAL charts (each sent once,
"cold"), then as many repeats of the warm TYPICAL body. The app is built as ``benchmarks.profile``
builds it; ``--log`` keeps the per-call log line on; ``--floor`` counts the floor app instead.
About 1 M instructions is 0.2 ms of CPU on the reference machine (README "Performance").
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
    parser.add_argument("--inside", help=argparse.SUPPRESS)  # the run under valgrind
    args = parser.parse_args(argv)
    if args.inside:
        return _inside(args)
    with tempfile.TemporaryDirectory(prefix="cds-instructions-") as tmp:
        helper = Path(tmp) / "cg.so"
        (Path(tmp) / "cg.c").write_text(HELPER)
        compiler = shutil.which("cc") or "cc"
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(helper),
                        str(Path(tmp) / "cg.c")], check=True)
        out = Path(tmp) / "cg.out"
        command = [shutil.which("valgrind") or "valgrind", "--tool=callgrind",
                   "--collect-atstart=no", f"--callgrind-out-file={out}", sys.executable, "-m",
                   "benchmarks.instructions", "--inside", str(helper), "--calls", str(args.calls)]
        command += ["--log"] * args.log + ["--floor"] * args.floor
        done = subprocess.run(command, env={**os.environ, "PYTHONHASHSEED": "0"},
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)  # noqa: T201
            return done.returncode
        what = "floor" if args.floor else "service" + (", log line on" if args.log else "")
        for dump in sorted(Path(tmp).glob("cg.out.*")):
            text = dump.read_text(errors="replace")
            name = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.M)
            total = re.search(r"^summary: (\d+)", text, re.M)
            if name and total:
                print(f"{what}: {name.group(1)}: {int(total.group(1)) / args.calls / 1e6:.2f} "  # noqa: T201
                      f"M instructions per call ({args.calls} calls)")
    return 0


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
