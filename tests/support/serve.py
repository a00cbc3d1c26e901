"""``cds-service serve`` as a test runs it: the real command on 127.0.0.1, in a session of its
own (so SIGKILL can take the master and its workers at once, as when a machine dies), with a
log file, a bounded wait until it is ready, and its ``/metrics`` read back as numbers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

CLI = Path(sys.executable).parent / "cds-service"
START_SECONDS = 60.0  # start-up only: generous for a loaded 2-core CI machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    """One instance: ``cds-service serve --workers N`` with ``env``, in ``workdir``.

    Each instance keeps its metrics in ``workdir/metrics-NAME`` (``PROMETHEUS_MULTIPROC_DIR``),
    which ``serve`` empties when it starts; a restart reuses the port and the folder.
    """

    def __init__(self, workdir: Path, env: dict[str, str], name: str, *, workers: int = 2,
                 threads: int = 4, port: int | None = None) -> None:
        self.workdir, self.name = workdir, name
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.metrics_dir = workdir / f"metrics-{name}"
        self.env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        self.argv = [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--workers", str(workers), "--threads", str(threads)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.log"

    def start(self) -> Serve:
        self.starts += 1
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.workdir, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        """Return once ``/readyz`` answers 200 (database reachable)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.tail()}")
            try:
                if requests.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} was not ready within {timeout:g} s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL the master and its workers at once (a machine or container dying)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> bool:
        """SIGTERM (gunicorn's graceful stop); SIGKILL after 15 s. True when SIGTERM was enough
        (or the instance was not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
            return False
        return True

    def workers(self) -> list[int]:
        """The master's child processes now (its gunicorn workers)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``GET /metrics``: (name, sorted labels) -> value."""
        response = requests.get(f"{self.base}/metrics", timeout=10)
        response.raise_for_status()
        return parse_metrics(response.text)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grown(before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
          after: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """How much one sample grew between two scrapes."""
    return sample(after, name, **labels) - sample(before, name, **labels)
