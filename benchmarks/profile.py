"""Profile one hook call in-process (cProfile), the way the benchmark sends it.

    .venv/bin/python -m benchmarks.profile HEAVY          # top functions by cumulative time
    .venv/bin/python -m benchmarks.profile TYPICAL --calls 50 --sort tottime

The app is built as ``cds-service serve`` builds it (auth off, SQLite feedback store in a temporary
folder) with the clock fixed at the moment the generated record describes.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import logging
import pstats
import tempfile
import time
from pathlib import Path

from . import data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("case", choices=("TYPICAL", "HEAVY"))
    parser.add_argument("--calls", type=int, default=0, help="profiled calls (default 30 / 5)")
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-profile", action="store_true", help="only time the calls")
    parser.add_argument("--cold", action="store_true",
                        help="forget remembered validation verdicts before each call")
    args = parser.parse_args(argv)
    calls = args.calls or (30 if args.case == "TYPICAL" else 5)

    from cds_service import create_app
    from cds_service.app import freeze_startup_heap
    from cds_service.clinical import validation

    now = data.bench_now()
    discovery = data.local_discovery()
    make = data.typical_request if args.case == "TYPICAL" else data.heavy_request
    body = data.encode(make(discovery, now))
    with tempfile.TemporaryDirectory(prefix="cds-profile-") as tmp:
        app = create_app({"auth_required": False, "log_format": "json",
                          "database_url": f"sqlite:///{Path(tmp) / 'profile.db'}",
                          "max_body_bytes": 16_000_000}, clock=lambda: now)
        freeze_startup_heap()  # as every gunicorn worker of cds-service serve does
        logging.getLogger("cds_service").setLevel(logging.WARNING)  # no log line per call
        client = app.test_client()

        def call() -> None:
            if args.cold:
                validation.clear_cache()
            response = client.post("/cds-services/" + data.SERVICE_ID, data=body,
                                   content_type="application/json")
            assert response.status_code == 200, response.get_data()[:300]

        for _ in range(3):
            call()
        gc.collect()
        times, cpu = [], []
        for _ in range(calls):
            started, started_cpu = time.perf_counter(), time.process_time()
            call()
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        times.sort()
        cpu.sort()
        median_ms = times[len(times) // 2] * 1000
        print(f"{args.case}: {len(body):,} bytes; median {median_ms:.2f} ms "  # noqa: T201
              f"wall (min {times[0] * 1000:.2f}), {cpu[len(cpu) // 2] * 1000:.2f} ms CPU over "
              f"{calls} "
              f"calls (in-process, no "
              f"HTTP{', cold validation' if args.cold else ''})")
        if args.no_profile:
            return 0
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            call()
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
