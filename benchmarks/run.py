"""``make bench``: the service against the floor, side by side, on 127.0.0.1.

Starts ``cds-service serve --workers 2`` (auth off, SQLite feedback store in a temporary folder,
JSON logs to a file) and the floor app (:mod:`benchmarks.floor_app`) under the same gunicorn
configuration (asgi worker, 2 workers x 4 app threads), on free ports. Per case (TYPICAL, HEAVY;
see :mod:`benchmarks.data`) and per server it measures:

- latency: p50 / p95 over sequential keep-alive requests after a warm-up (at least 40);
- throughput: requests per second with 8 concurrent keep-alive clients for a fixed duration
  (``wrk`` when it is installed or installable from Debian, else Python threads);
- memory: peak RSS of the server's processes (master + workers, the sum of their ``VmHWM``) and
  its growth over the idle baseline (sum of ``VmRSS`` after start-up, before any request).

It prints a table with each figure and its ratio to the floor and writes
``benchmarks/results/latest.json``. Everything it starts is stopped at the end, also on error.

    .venv/bin/python -m benchmarks.run [--quick] [--case HEAVY-cold ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from . import data

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
WORKERS = 2
THREADS = 4
CLIENTS = 8
WRK_THREADS = 2
MAX_BODY = 16_000_000  # HEAVY is ~5.5 MB; the service's default limit is 5 MB (see README)

TARGETS = {  # cold (every chart new): issue 17; warm (one body repeated): issue 8
    "cold_typical_p50_ratio": 1.5,
    "cold_typical_throughput_ratio": 0.7,
    "cold_heavy_p50_ratio": 2.0,
    "cold_heavy_memory_growth_mb": 150.0,
    "typical_p50_ratio": 2.0,
    "heavy_p50_ratio": 3.0,
    "heavy_memory_growth_mb": 150.0,
    "typical_throughput_ratio": 0.5,
}
# Cold cases: distinct charts generated up front (values, times, report wording), each sent
# under as many new patient/resource ids as the throughput rounds need (data.derive).
COLD = {  # case: (charts, latency requests per server, bodies per throughput round, seconds)
    "TYPICAL": (64, 100, 1600, 2),
    "HEAVY": (6, 20, 64, 2),
}

COLD_WRK_SCRIPT = r"""
-- Each request a body file never sent before to this server: thread k of n sends files
-- OFFSET+k, OFFSET+k+n, ... of COUNT; running past COUNT wraps around and is counted.
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  dir = os.getenv("BENCH_DIR")
  first = tonumber(os.getenv("BENCH_OFFSET"))
  count = tonumber(os.getenv("BENCH_COUNT"))
  step = tonumber(os.getenv("BENCH_THREADS"))
  i = id
  sent = 0
  repeats = 0
  wrapped = false
end
function request()
  if i >= count then
    i = i % count
    wrapped = true
  end
  if wrapped then repeats = repeats + 1 end
  local f = assert(io.open(dir .. "/" .. (first + i) .. ".json", "rb"))
  local body = f:read("*a")
  f:close()
  i = i + step
  sent = sent + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local sent_all, wraps_all = 0, 0
  for _, t in ipairs(threads) do
    sent_all = sent_all + t:get("sent")
    wraps_all = wraps_all + t:get("repeats")
  end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p95_us":%d,"sent":%d,"wraps":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), sent_all, wraps_all))
end
"""

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p95_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95)))
end
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201


# --------------------------------------------------------------------------- processes
def port_is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def free_port() -> int:
    """A port nothing listens on (a leftover server answering a benchmark is a known trap)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if not port_is_listening(port):
            return int(port)
    raise RuntimeError("no free port on 127.0.0.1")


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workers: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        command = [*self.command, "--host", HOST, "--port", str(self.port),
                   "--workers", str(WORKERS), "--threads", str(THREADS)]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see "
                                   f"{self.log_path}")
            self.workers = children_of(self.proc.pid)
            if len(self.workers) >= WORKERS:
                try:
                    if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer on {self.url} within {timeout:.0f} s")

    def pids(self) -> list[int]:
        """Master and workers (the worker list is read once, when the server got ready)."""
        assert self.proc is not None
        return [self.proc.pid, *self.workers]

    def rss_mb(self) -> float:
        return sum(status_kb(p, "VmRSS") for p in self.pids()) / 1024

    def hwm_mb(self) -> float:
        return sum(status_kb(p, "VmHWM") for p in self.pids()) / 1024

    def stop(self) -> None:
        """Stop the process group this benchmark started (by its id), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- load
def post(session: requests.Session, url: str, body: bytes) -> requests.Response:
    return session.post(url, data=body, headers={"Content-Type": "application/json"},
                        timeout=60)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def check(response: requests.Response, url: str) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")


def ensure_wrk() -> str | None:
    """The path of wrk; installed from Debian's packages when missing (None if impossible)."""
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_WRK"):
        return found if not os.environ.get("BENCH_NO_WRK") else None
    apt = shutil.which("apt-get")
    if apt is None:
        return None
    log("wrk is missing: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    attempts = ([apt, "install", "-y", "-q", "wrk"], [apt, "update", "-q"],
                [apt, "install", "-y", "-q", "wrk"])
    for command in attempts:
        try:
            done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=90, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if command[1] == "install" and done.returncode == 0:
            break
    return shutil.which("wrk")


def throughput_wrk(wrk: str, url: str, body_path: Path, script: Path,
                   seconds: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    command = [wrk, f"-t{WRK_THREADS}", f"-c{CLIENTS}", f"-d{seconds:.0f}s", "--timeout", "30s",
               "-s", str(script), url]
    done = subprocess.run(command, env={**os.environ, "BENCH_BODY": str(body_path),
                                        **(env or {})},
                          capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("{")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    result = json.loads(line)
    errors = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    if errors:
        raise RuntimeError(f"wrk saw {errors} errors against {url}: {result}")
    return {"tool": "wrk", "requests": result["requests"],
            "rps": result["requests"] / (result["duration_us"] / 1e6),
            "p50_ms": result["p50_us"] / 1000, "p95_ms": result["p95_us"] / 1000,
            "repeats": result.get("wraps", 0)}


def throughput_threads(url: str, body: bytes | list[bytes], seconds: float) -> dict[str, Any]:
    """8 Python clients; a list of bodies is shared out, each sent once (then repeated)."""
    deadline = time.monotonic() + seconds
    pool = [body] if isinstance(body, bytes) else body
    sent = iter(range(10**9))
    counts = [0] * CLIENTS
    errors: list[str] = []
    times: list[float] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = post(session, url, pool[next(sent) % len(pool)])
                except requests.RequestException as exc:
                    errors.append(str(exc))
                    return
                if response.status_code != 200:
                    errors.append(f"status {response.status_code}")
                    return
                with lock:
                    times.append(time.perf_counter() - started)
                counts[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise RuntimeError(f"load against {url} failed: {errors[0]}")
    repeats = max(0, sum(counts) - len(pool)) if len(pool) > 1 else 0
    return {"tool": "python threads", "requests": sum(counts), "rps": sum(counts) / elapsed,
            "repeats": repeats,
            "p50_ms": percentile(times, 50) * 1000, "p95_ms": percentile(times, 95) * 1000}


# --------------------------------------------------------------------------- the run
@dataclass
class Case:
    name: str
    body: bytes
    path: Path
    warmup: int  # requests per server before timing
    batch: int  # sequential requests per server per round (4 rounds: at least 40 in all)
    load_seconds: int  # per throughput round (3 rounds per server)


def summarise(server: Server, case_name: str, times: list[float],
              loads: list[dict[str, Any]], cards: int, idle: float, sequential_hwm: float,
              sampled_peak: float | None = None) -> dict[str, Any]:
    """One server's figures for a case: latency percentiles, the median throughput round,
    memory; refused when a worker was restarted during the case (the figures would mix)."""
    assert server.proc is not None
    if sorted(children_of(server.proc.pid)) != sorted(server.workers):
        raise RuntimeError(f"{server.name}: a worker was restarted during {case_name}; "
                           f"see {server.log_path}")
    hwm = server.hwm_mb()
    middle = sorted(loads, key=lambda r: r["rps"])[len(loads) // 2]
    memory = {"idle_mb": idle, "peak_mb": hwm, "growth_mb": hwm - idle,
              "sequential_growth_mb": sequential_hwm - idle}
    if sampled_peak is not None:
        memory.update(sampled_peak_mb=sampled_peak, sampled_growth_mb=sampled_peak - idle)
    return {
        "latency": {"requests": len(times), "p50_ms": percentile(times, 50) * 1000,
                    "p95_ms": percentile(times, 95) * 1000,
                    "mean_ms": sum(times) / len(times) * 1000, "cards": cards},
        "throughput": {"tool": middle["tool"], "rps": middle["rps"],
                       "p50_ms": middle["p50_ms"], "p95_ms": middle["p95_ms"],
                       "rounds_rps": [round(r["rps"], 1) for r in loads],
                       "requests": sum(r["requests"] for r in loads),
                       "repeats": sum(r.get("repeats", 0) for r in loads)},
        "memory": memory,
    }


def measure_case(servers: list[Server], case: Case, wrk: str | None, script: Path,
                 idle: dict[str, float], rounds: int = 4, load_rounds: int = 3,
                 ) -> dict[str, dict[str, Any]]:
    """Measure one case on every server, interleaving the servers round by round so that
    whatever else runs on the machine weighs on both alike."""
    urls = {s.name: s.url + "/cds-services/" + data.SERVICE_ID for s in servers}
    sessions = {s.name: requests.Session() for s in servers}
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    cards: dict[str, int] = {}
    try:
        for server in servers:
            for _ in range(case.warmup):
                response = post(sessions[server.name], urls[server.name], case.body)
                check(response, urls[server.name])
                cards[server.name] = len(response.json().get("cards", []))
        log(f"  {case.name}: latency, {rounds} x {case.batch} sequential requests per server")
        for round_ in range(rounds):
            for server in servers if round_ % 2 == 0 else servers[::-1]:
                for _ in range(case.batch):
                    started = time.perf_counter()
                    response = post(sessions[server.name], urls[server.name], case.body)
                    elapsed = time.perf_counter() - started
                    check(response, urls[server.name])
                    times[server.name].append(elapsed)
    finally:
        for session in sessions.values():
            session.close()
    sequential_hwm = {s.name: s.hwm_mb() for s in servers}

    log(f"  {case.name}: throughput, {CLIENTS} clients, {load_rounds} x {case.load_seconds} s "
        "per server")
    loads: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
    peaks = {s.name: 0.0 for s in servers}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for server in servers:
                peaks[server.name] = max(peaks[server.name], server.rss_mb())
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for round_ in range(load_rounds):
            for server in servers if round_ % 2 == 0 else servers[::-1]:
                if wrk:
                    result = throughput_wrk(wrk, urls[server.name], case.path, script,
                                            case.load_seconds)
                else:
                    result = throughput_threads(urls[server.name], case.body,
                                                case.load_seconds)
                loads[server.name].append(result)
    finally:
        stop.set()
        sampler.join()

    return {s.name: summarise(s, case.name, times[s.name], loads[s.name], cards[s.name],
                              idle[s.name], sequential_hwm[s.name], peaks[s.name])
            for s in servers}


@dataclass
class ColdCase:
    """A cold case: every request a chart the server has not seen (see :data:`COLD`)."""
    name: str
    latency: list[bytes]  # distinct bodies, each sent once to each server
    warmup: list[bytes]  # distinct too, and not among the others
    load_dir: Path  # <i>.json, i < rounds * per_round, all distinct
    per_round: int
    load_seconds: int


def measure_cold_case(servers: list[Server], case: ColdCase, wrk: str | None,
                      script: Path, idle: dict[str, float], rounds: int = 4,
                      load_rounds: int = 3) -> dict[str, dict[str, Any]]:
    """Like :func:`measure_case`, but no server ever receives the same body twice.

    Both servers get the same bodies in the same order (the floor remembers nothing); the
    servers are interleaved round by round. Throughput round r of a server sends the files
    r*per_round … (r+1)*per_round-1; a server that answers faster than the round has files
    for would get repeats, which are counted and shown next to the figure.
    """
    urls = {s.name: s.url + "/cds-services/" + data.SERVICE_ID for s in servers}
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    cards: dict[str, int] = {}
    sessions = {s.name: requests.Session() for s in servers}
    batch = len(case.latency) // rounds
    try:
        for server in servers:
            for body in case.warmup:
                check(post(sessions[server.name], urls[server.name], body), urls[server.name])
        log(f"  {case.name}: latency, {rounds} x {batch} new charts per server")
        for round_ in range(rounds):
            bodies = case.latency[round_ * batch:(round_ + 1) * batch]
            for server in servers if round_ % 2 == 0 else servers[::-1]:
                for body in bodies:
                    started = time.perf_counter()
                    response = post(sessions[server.name], urls[server.name], body)
                    elapsed = time.perf_counter() - started
                    check(response, urls[server.name])
                    times[server.name].append(elapsed)
                    cards[server.name] = len(response.json().get("cards", []))
    finally:
        for session in sessions.values():
            session.close()
    sequential_hwm = {s.name: s.hwm_mb() for s in servers}

    log(f"  {case.name}: throughput, {CLIENTS} clients, {load_rounds} x {case.load_seconds} s "
        f"per server, up to {case.per_round} new charts per round")
    loads: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
    for round_ in range(load_rounds):
        for server in servers if round_ % 2 == 0 else servers[::-1]:
            if wrk:
                env = {"BENCH_DIR": str(case.load_dir),
                       "BENCH_OFFSET": str(round_ * case.per_round),
                       "BENCH_COUNT": str(case.per_round), "BENCH_THREADS": str(WRK_THREADS)}
                result = throughput_wrk(wrk, urls[server.name], case.load_dir / "0.json",
                                        script, case.load_seconds, env)
            else:
                bodies = [(case.load_dir / f"{round_ * case.per_round + i}.json").read_bytes()
                          for i in range(case.per_round)]
                result = throughput_threads(urls[server.name], bodies, case.load_seconds)
            loads[server.name].append(result)

    return {s.name: summarise(s, case.name, times[s.name], loads[s.name], cards[s.name],
                              idle[s.name], sequential_hwm[s.name])
            for s in servers}


def cold_case(name: str, discovery: dict[str, Any], now: datetime, tmpdir: Path,
              quick: bool) -> ColdCase:
    """Generate a cold case's bodies up front (charts, then renamed copies on disk)."""
    charts, latency_count, per_round, seconds = COLD[name]
    if quick:
        latency_count, per_round = max(8, latency_count // 4), max(8, per_round // 4)
    started = time.monotonic()
    bases = data.cold_requests(discovery, now, charts + 1, name)
    warmup_base, bases = bases[0], bases[1:]
    warmup = [data.derive(warmup_base, 0, k) for k in range(3 if name == "HEAVY" else 10)]
    latency = [data.derive(bases[i % charts], 1 + i % charts, 1_000_000 + i)
               for i in range(latency_count)]
    load_dir = tmpdir / f"cold-{name.lower()}"
    load_dir.mkdir()
    total = 3 * per_round
    for i in range(total):
        (load_dir / f"{i}.json").write_bytes(data.derive(bases[i % charts], 1 + i % charts, i))
    checked = data.assert_no_repeats([*warmup, *latency[:charts], *bases[:2]])
    log(f"  {name}-cold: {charts} charts, {len(latency)} + {total} requests generated in "
        f"{time.monotonic() - started:.1f} s ({checked} resources checked: none repeats)")
    return ColdCase(f"{name}-cold", latency, warmup, load_dir, per_round, seconds)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_gb": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def ratios(service: dict[str, Any], floor: dict[str, Any]) -> dict[str, float]:
    if not floor["throughput"]["rps"]:
        raise RuntimeError("the floor completed no request in its median throughput round: "
                           "the machine is too loaded to measure; rerun when it is quieter")
    return {
        "p50": service["latency"]["p50_ms"] / floor["latency"]["p50_ms"],
        "p95": service["latency"]["p95_ms"] / floor["latency"]["p95_ms"],
        "throughput": service["throughput"]["rps"] / floor["throughput"]["rps"],
        "peak_memory": service["memory"]["peak_mb"] / floor["memory"]["peak_mb"],
    }


CASES = ("TYPICAL-cold", "HEAVY-cold", "TYPICAL", "HEAVY")  # in the order they are measured
CHECKS = {  # target: (case, figure, direction)
    "cold_typical_p50_ratio": ("TYPICAL-cold", ("ratio", "p50"), "<="),
    "cold_typical_throughput_ratio": ("TYPICAL-cold", ("ratio", "throughput"), ">="),
    "cold_heavy_p50_ratio": ("HEAVY-cold", ("ratio", "p50"), "<="),
    "cold_heavy_memory_growth_mb": ("HEAVY-cold", ("service", "memory", "growth_mb"), "<="),
    "typical_p50_ratio": ("TYPICAL", ("ratio", "p50"), "<="),
    "heavy_p50_ratio": ("HEAVY", ("ratio", "p50"), "<="),
    "heavy_memory_growth_mb": ("HEAVY", ("service", "memory", "growth_mb"), "<="),
    "typical_throughput_ratio": ("TYPICAL", ("ratio", "throughput"), ">="),
}


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target whose case was measured (``--case`` may leave some out)."""
    out = {}
    for key, (case_name, figure, op) in CHECKS.items():
        if case_name not in results["cases"]:
            continue
        value = results["cases"][case_name]
        for part in figure:
            value = value[part]
        target = TARGETS[key]
        ok = value <= target if op == "<=" else value >= target
        out[key] = {"value": round(value, 3), "target": f"{op} {target}", "met": ok}
    return out


def table(results: dict[str, Any]) -> str:
    lines = [f"{'case':12s} {'figure':22s} {'service':>10s} {'floor':>10s} {'ratio':>7s}",
             "-" * 65]
    for name, case in results["cases"].items():
        s, f, r = case["service"], case["floor"], case["ratio"]
        rows = [
            ("p50 latency (ms)", s["latency"]["p50_ms"], f["latency"]["p50_ms"], r["p50"]),
            ("p95 latency (ms)", s["latency"]["p95_ms"], f["latency"]["p95_ms"], r["p95"]),
            (f"throughput, {CLIENTS} clients", s["throughput"]["rps"], f["throughput"]["rps"],
             r["throughput"]),
            ("peak RSS (MB)", s["memory"]["peak_mb"], f["memory"]["peak_mb"],
             r["peak_memory"]),
            ("RSS growth, sequential", s["memory"]["sequential_growth_mb"],
             f["memory"]["sequential_growth_mb"], None),
            (f"RSS growth, {CLIENTS} clients", s["memory"]["growth_mb"],
             f["memory"]["growth_mb"], None),
        ]
        for label, sv, fv, ratio in rows:
            shown = f"{ratio:6.2f}x" if ratio is not None else ""
            lines.append(f"{name:12s} {label:22s} {sv:10.1f} {fv:10.1f} {shown:>7s}")
        note = (f"{'':12s} body {case['body_bytes']:,} bytes; {s['latency']['requests']} / "
                f"{f['latency']['requests']} sequential requests; service cards: "
                f"{s['latency']['cards']}")
        if name.endswith("-cold"):
            repeats = s["throughput"].get("repeats", 0)
            note += (f"; every request a new chart (service repeats: {repeats}"
                     f"{' - the throughput figure is NOT cold' if repeats else ''})")
        lines.append(note)
    lines.append("")
    for key, verdict in results["targets"].items():
        mark = "met" if verdict["met"] else "NOT MET"
        lines.append(f"target {key}: {verdict['value']} ({verdict['target']}) {mark}")
    return "\n".join(lines)


def run(quick: bool = False, only: tuple[str, ...] = CASES) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    wrk = ensure_wrk()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="cds-bench-") as tmp:
        tmpdir = Path(tmp)
        script = tmpdir / "post.lua"
        script.write_text(WRK_SCRIPT)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        service_env = {**base_env, "CDS_AUTH_REQUIRED": "false",
                       "CDS_DATABASE_URL": f"sqlite:///{tmpdir / 'bench.db'}",
                       "CDS_LOG_FORMAT": "json", "CDS_MAX_BODY_BYTES": str(MAX_BODY)}
        bindir = Path(sys.executable).parent
        cli = bindir / "cds-service"
        service_cmd = [str(cli), "serve"] if cli.exists() else [
            sys.executable, "-c", "import sys; from cds_service.cli import main; "
            "sys.exit(main())", "serve"]
        # The server front reads bodies up to CDS_MAX_BODY_BYTES: the floor's the same.
        floor = Server("floor", [sys.executable, "-m", "benchmarks.floor_app"],
                       {**base_env, "CDS_MAX_BODY_BYTES": str(MAX_BODY)}, RESULTS / "floor.log")
        service = Server("service", service_cmd, service_env, RESULTS / "service.log")
        servers = [floor, service]
        try:
            for server in servers:
                server.start()
            for server in servers:
                server.wait_ready()
            check = requests.get(floor.url + "/healthz", timeout=5).json()
            if check.get("app") != "floor" or check.get("master") != floor.proc.pid:  # type: ignore[union-attr]
                raise RuntimeError(f"something else answers on {floor.url}: {check}")
            discovery = requests.get(service.url + "/cds-services", timeout=5).json()
            now = data.bench_now()
            makers = {"TYPICAL": data.typical_request, "HEAVY": data.heavy_request}
            bodies = {name: data.encode(make(discovery, now)) for name, make in makers.items()
                      if name in only}
            cold = [cold_case(name, discovery, now, tmpdir, quick) for name in COLD
                    if f"{name}-cold" in only]
            cold_script = tmpdir / "cold.lua"
            cold_script.write_text(COLD_WRK_SCRIPT)
            cases = []
            for name, body in bodies.items():
                path = tmpdir / f"{name.lower()}.json"
                path.write_bytes(body)
                if name == "TYPICAL":
                    cases.append(Case(name, body, path, 10, 10 if quick else 25,
                                      1 if quick else 2))
                else:
                    cases.append(Case(name, body, path, 3, 10, 2 if quick else 3))
            time.sleep(1.0)
            idle = {s.name: s.rss_mb() for s in servers}
            log(f"idle RSS: floor {idle['floor']:.1f} MB, service {idle['service']:.1f} MB; "
                f"load generator: {'wrk' if wrk else 'python threads'}")
            results: dict[str, Any] = {"cases": {}}
            for cold_one in cold:  # the headline: every chart new (run first, fresh workers)
                per = measure_cold_case(servers, cold_one, wrk, cold_script, idle)
                body_bytes = len(cold_one.latency[0])
                results["cases"][cold_one.name] = {"body_bytes": body_bytes, **per,
                                                   "ratio": ratios(per["service"],
                                                                   per["floor"])}
            for case in cases:
                per = measure_case(servers, case, wrk, script, idle)
                results["cases"][case.name] = {"body_bytes": len(case.body), **per,
                                               "ratio": ratios(per["service"], per["floor"])}
        finally:
            for server in servers:
                server.stop()
    results.update({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "setup": {"gunicorn": f"asgi worker + a2wsgi threads, {WORKERS} workers x {THREADS} "
                             "threads",
                  "load_generator": "wrk" if wrk else "python threads (requests.Session)",
                  "latency_client": "python requests.Session, one keep-alive connection",
                  "clients": CLIENTS,
                  "method": "servers interleaved round by round; latency: 4 rounds of "
                            "sequential requests per server; throughput: median of 3 rounds; "
                            "peak RSS: sum of VmHWM of master and workers; cold cases first, "
                            "each request a chart the server has not seen",
                  "cold": {name: dict(zip(("charts", "latency_requests", "per_round",
                                           "round_seconds"), spec, strict=True))
                           for name, spec in COLD.items()},
                  "service_env": {"CDS_AUTH_REQUIRED": "false", "CDS_LOG_FORMAT": "json",
                                  "CDS_MAX_BODY_BYTES": str(MAX_BODY),
                                  "CDS_DATABASE_URL": "sqlite:///<tmp>/bench.db"},
                  "quick": quick, "cases": list(only)},
    })
    results["targets"] = verdicts(results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--quick", action="store_true", help="shorter phases (a smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--case", action="append", choices=CASES, dest="cases",
                        help="measure only this case (repeatable; default: all four)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    only = tuple(c for c in CASES if c in args.cases) if args.cases else CASES
    results = run(quick=args.quick, only=only)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    print(f"CDS service benchmark, {results['date']}; {m['nproc']} x {m['cpu_model']}, "  # noqa: T201
          f"Python {m['python']}; {results['setup']['gunicorn']}; load: "
          f"{results['setup']['load_generator']}")
    print(table(results))  # noqa: T201
    print(f"written to {args.output} ({results['wall_seconds']} s)")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
