"""Slow clients cannot starve ``cds-service serve`` (issue 13 item 7), and its own refusals are
OperationOutcome JSON (item 13).

The server is the real command, ``cds-service serve --workers 2`` on 127.0.0.1. Twenty
connections send a request's header one byte a second, and another twenty a body one byte a
second, for 20 s; meanwhile `/healthz` and a hook call are asked once a second each, on fresh
connections, and every answer must come within 2 s. Everything is loopback, every socket has a
timeout, and the attackers stop by themselves at their deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import hook_body

pytestmark = pytest.mark.slow

SLOW_CONNECTIONS = 20
DURATION = 20.0   # seconds of slow clients
ANSWER_WITHIN = 2.0  # seconds, for every probe
HOOK = "/cds-services/tma-bone-assessment"


@dataclass(frozen=True)
class Served:
    base: str
    port: int
    home: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``cds-service serve --workers 2`` with auth off, in a HOME of its own."""
    workdir = tmp_path_factory.mktemp("serve")
    home = workdir / "home"
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CDS_") and k != "XDG_RUNTIME_DIR"}
    env.update({"CDS_AUTH_REQUIRED": "false", "CDS_LOG_FORMAT": "json", "HOME": str(home),
                "CDS_DATABASE_URL": f"sqlite:///{workdir}/feedback.db"})
    cli = Path(sys.executable).parent / "cds-service"
    log = open(workdir / "serve.log", "wb")
    proc = subprocess.Popen([str(cli), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2"], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}: "
                                     + (workdir / "serve.log").read_text()[-2000:])
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /healthz within 30 s")
            time.sleep(0.2)
        yield Served(base, port, home)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


def slow_sender(port: int, payload: bytes, stop_at: float, opened: list[int]) -> None:
    """Send ``payload`` one byte a second until ``stop_at``; reconnect if the server hangs up."""
    while time.monotonic() < stop_at:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                opened.append(1)
                for byte in payload:
                    if time.monotonic() >= stop_at:
                        return
                    sock.sendall(bytes([byte]))
                    time.sleep(1.0)
        except OSError:
            time.sleep(0.5)  # the server closed us: it may, that is one defence


def probe(method: str, url: str, **kwargs: Any) -> tuple[float, int | None]:
    started = time.monotonic()
    try:
        status = requests.request(method, url, timeout=ANSWER_WITHIN + 3, **kwargs).status_code
    except requests.RequestException:
        status = None
    return time.monotonic() - started, status


def test_slow_clients_do_not_starve_health_or_hook_calls(server: Served) -> None:
    port, base = server.port, server.base
    header = (b"POST " + HOOK.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\nX-Slow: " + b"a" * 200 + b"\r\n")
    body = json.dumps(hook_body({})).encode()
    with_body = (b"POST " + HOOK.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n")
    stop_at = time.monotonic() + DURATION
    opened: list[int] = []
    attackers = [threading.Thread(target=slow_sender, daemon=True,
                                  args=(port, header if i % 2 == 0 else with_body + body,
                                        stop_at, opened))
                 for i in range(SLOW_CONNECTIONS)]
    # The body senders send their header at once (one send per byte still), so they reach the
    # application's body read; the header senders never finish their header.
    for thread in attackers:
        thread.start()
    time.sleep(2.0)  # let every slow connection be accepted and start trickling
    results: list[tuple[str, float, int | None]] = []
    while time.monotonic() < stop_at - 1.0:
        elapsed, status = probe("GET", base + "/healthz")
        results.append(("healthz", elapsed, status))
        elapsed, status = probe("POST", base + HOOK, json=hook_body({}))
        results.append(("hook", elapsed, status))
        time.sleep(max(0.0, 1.0 - elapsed))
    for thread in attackers:
        thread.join(timeout=DURATION + 5)
    late = [(name, round(t, 2), status) for name, t, status in results
            if t > ANSWER_WITHIN or status not in (200, 412)]
    assert not late, f"{len(late)} of {len(results)} probes late or failed: {late}"
    assert len(opened) >= SLOW_CONNECTIONS
    assert len(results) >= 16  # about one probe of each kind a second
    # {} prefetch and no fhirServer: the hook call's answer is the 412 the contract gives
    assert {status for name, _, status in results if name == "hook"} == {412}


def test_no_control_socket_is_created(server: Served) -> None:
    # gunicorn 27 makes $HOME/.gunicorn/gunicorn.ctl unless told not to (XDG_RUNTIME_DIR unset)
    assert list(server.home.iterdir()) == []
