"""Profile one hook call in-process (cProfile), the way the benchmark sends it.

    .venv/bin/python -m benchmarks.profile HEAVY          # top functions by cumulative time
    .venv/bin/python -m benchmarks.profile TYPICAL --calls 50 --sort tottime
    .venv/bin/python -m benchmarks.profile TYPICAL --new-charts --breakdown   # CPU ms per stage

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
from typing import Any

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
    parser.add_argument("--new-charts", action="store_true",
                        help="distinct generated bodies, each sent once (as in make bench cold)")
    parser.add_argument("--breakdown", action="store_true",
                        help="CPU ms per stage of the call instead of the cProfile listing")
    args = parser.parse_args(argv)
    calls = args.calls or (30 if args.case == "TYPICAL" else 5)

    from cds_service import create_app
    from cds_service.app import freeze_startup_heap
    from cds_service.clinical import validation

    now = data.bench_now()
    discovery = data.local_discovery()
    make = data.typical_request if args.case == "TYPICAL" else data.heavy_request
    bodies = iter(data.cold_requests(discovery, now, 3 + calls * 2, args.case)
                  if args.new_charts else ())
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
            response = client.post("/cds-services/" + data.SERVICE_ID,
                                   data=next(bodies) if args.new_charts else body,
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
              f"HTTP{', cold validation' if args.cold else ''}"
              f"{', new charts' if args.new_charts else ''})")
        if args.breakdown:
            with Stages() as stages:
                for _ in range(calls):
                    started_cpu = time.process_time()
                    call()
                    stages.total += time.process_time() - started_cpu
            stages.print(calls)
            return 0
        if args.no_profile:
            return 0
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            call()
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


class Stages:
    """CPU time per stage of a call, each stage without the stages inside it (exclusive).

    The stage functions are wrapped where their callers look them up, for the duration of the
    ``with`` block only."""

    def __init__(self) -> None:
        from cds_service import services
        from cds_service.clinical import orders, validation
        from cds_service.clinical.record import Record
        from cds_service.web import routes

        self.points = (  # (stage, owner, attribute)
            ("body parsing (orjson)", routes, "read_json_body"),
            ("inbound validation", validation.Validator, "ok"),
            ("outbound validation", orders, "_checked"),
            ("record classification", Record, "_classify"),
            ("report reading", Record, "_read_imaging"),
            ("facts and rules", services, "gather"),
            ("facts and rules", services, "assess"),
            ("card building", services, "patient_view_cards"),
            ("card rendering", services, "render_response"),
            ("JSON encoding", routes, "_cards_response"),
        )
        self.cpu: dict[str, float] = {}
        self._saved: list[tuple[Any, str, Any]] = []  # (owner, name, own attribute or None)
        self._inner = [0.0]  # CPU time of inner stages, per open stage
        self.total = 0.0  # CPU time of the whole calls

    def _wrap(self, stage: str, function: Any) -> Any:
        clock, inner, cpu = time.process_time, self._inner, self.cpu

        def timed(*args: Any, **kwargs: Any) -> Any:
            inner.append(0.0)
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                spent = clock() - started
                mine = spent - inner.pop()
                inner[-1] += spent
                cpu[stage] = cpu.get(stage, 0.0) + mine

        return timed

    def __enter__(self) -> Stages:
        for stage, owner, name in self.points:
            original = getattr(owner, name)
            self._saved.append((owner, name, owner.__dict__.get(name)))
            setattr(owner, name, self._wrap(stage, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._saved):
            if original is None:  # inherited (a mixin's method)
                delattr(owner, name)
            else:
                setattr(owner, name, original)

    def print(self, calls: int) -> None:
        total = self.total
        for stage, cpu in sorted(self.cpu.items(), key=lambda kv: -kv[1]):
            print(f"  {stage:<24} {cpu / calls * 1000:6.2f} ms CPU  "  # noqa: T201
                  f"{cpu / total:5.1%}")
        rest = total - sum(self.cpu.values())
        print(f"  {'everything else':<24} {rest / calls * 1000:6.2f} ms CPU  "  # noqa: T201
              f"{rest / total:5.1%}  (Flask, hook parsing, the test client)")


if __name__ == "__main__":
    raise SystemExit(main())
