"""Cold latency against record size: is the work per resource linear?

    .venv/bin/python -m benchmarks.scaling [--charts 5] [--sizes 100,1000,5000,20000]

For each size N, ``--charts`` new TYPICAL charts (benchmarks.data, each never seen before) are
given N extra unrelated lab Observations in the ``observations`` prefetch (as an EHR that does
not filter by code sends them), and each is posted once, in-process (no HTTP), with the clock at
the moment the charts describe. It prints the median wall and CPU time per call for each size
and the cost per 1,000 Observations between consecutive sizes: constant means linear.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from . import data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    parser.add_argument("--charts", type=int, default=5)
    parser.add_argument("--sizes", default="100,1000,5000,20000")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]

    from cds_service import create_app
    from cds_service.app import freeze_startup_heap

    now = data.bench_now()
    discovery = data.local_discovery()
    with tempfile.TemporaryDirectory(prefix="cds-scaling-") as tmp:
        app = create_app({"auth_required": False, "log_format": "json",
                          "database_url": f"sqlite:///{Path(tmp) / 'scaling.db'}",
                          "max_body_bytes": 128_000_000}, clock=lambda: now)
        freeze_startup_heap()
        logging.getLogger("cds_service").setLevel(logging.WARNING)
        client = app.test_client()
        url = "/cds-services/" + data.SERVICE_ID
        warm = data.encode(data.heavy_request(discovery, now, 9_999, 100))
        assert client.post(url, data=warm, content_type="application/json").status_code == 200
        rows = []
        for n, size in enumerate(sizes):
            walls, cpus = [], []
            for i in range(args.charts):
                body = data.encode(data.heavy_request(discovery, now, 10_000 + n * 100 + i, size))
                started, started_cpu = time.perf_counter(), time.process_time()
                response = client.post(url, data=body, content_type="application/json")
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - started_cpu)
                assert response.status_code == 200, response.get_data()[:300]
            walls.sort()
            cpus.sort()
            rows.append((size, len(body), walls[len(walls) // 2] * 1000,
                         cpus[len(cpus) // 2] * 1000))
    print(f"cold latency by record size, in-process, median of {args.charts} new charts "  # noqa: T201
          f"each ({now:%Y-%m-%d %H:%M} UTC)")
    print(f"{'extra Observations':>18s} {'body MB':>8s} {'wall ms':>8s} {'CPU ms':>8s} "  # noqa: T201
          f"{'CPU ms per 1,000 more':>22s}")
    previous = None
    for size, length, wall, cpu in rows:
        slope = ""
        if previous is not None:
            slope = f"{(cpu - previous[1]) / (size - previous[0]) * 1000:.1f}"
        print(f"{size:18,d} {length / 1e6:8.1f} {wall:8.1f} {cpu:8.1f} {slope:>22s}")  # noqa: T201
        previous = (size, cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
