"""A real FHIR server for the integration tests: sekmet-fhir 0.1.1 on 127.0.0.1.

``tests/support/fhir-server.sh install`` puts it in its own venv (``.venv-fhir``; ``make test``
runs that through ``tests/support/start-services.sh``). The session fixture ``fhir_server``
starts one server on a free port with an empty SQLite store in a temporary folder, waits until
``/metadata`` answers, and stops it at the end. ``start_fhir_server`` starts extra ones that a
test may stop on purpose. The server accepts only ``Authorization: Bearer <FHIR_TOKEN>``, so a
passing test also proves the service sends the hook's ``fhirAuthorization`` token.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.services import require_service

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-fhir"
SEKMET = VENV / "bin" / "sekmet"
INSTALL = ROOT / "tests" / "support" / "fhir-server.sh"
FHIR_TOKEN = "integration-dummy-token"
START_TIMEOUT = 30.0  # seconds; the server is usually up in about 1 s
INSTALL_TIMEOUT = 300.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_installed() -> str | None:
    """Install the server if ``make test`` did not; return why it is unusable, or None."""
    if SEKMET.exists():
        return None
    try:
        done = subprocess.run(
            [shutil.which("bash") or "/bin/bash", str(INSTALL), "install"],
            cwd=ROOT, capture_output=True, text=True,
            timeout=INSTALL_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        return f"installing sekmet-fhir took longer than {INSTALL_TIMEOUT:.0f} s"
    if done.returncode != 0 or not SEKMET.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return f"installing sekmet-fhir failed (exit {done.returncode}): " + " | ".join(tail)
    return None


@dataclass
class FhirServer:
    """One sekmet-fhir process; ``base`` is its FHIR base URL."""

    folder: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    token: str = FHIR_TOKEN

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/fhir+json",
                "Content-Type": "application/fhir+json"}

    def start(self) -> FhirServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        # base_url must be the real address: sekmet writes it into next links and locations.
        (self.folder / "settings.yaml").write_text(
            f"base_url: {self.base}\n"
            f"host: 127.0.0.1\nport: {self.port}\n"
            f"data_dir: {self.folder / 'data'}\n"
            "log_inbound: false\n"
            "simulator: {enabled: false}\n"   # no background workflows touching our resources
            "validation: {inbound: strict}\n"
            f"server_auth: {{types: [bearer], tokens: [{FHIR_TOKEN}]}}\n"
        )
        log = (self.folder / "server.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
        self.process = subprocess.Popen(
            [str(SEKMET), "serve", "--config", str(self.folder / "settings.yaml"),
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if requests.get(f"{self.base}/metadata", headers=self.headers,
                                timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        log_tail = (self.folder / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"sekmet-fhir did not answer /metadata within {START_TIMEOUT:.0f} s:"
                           f"\n{log_tail}")

    def stop(self) -> None:
        """Terminate, then kill if it does not go within 5 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(self.base, json=bundle, headers=self.headers, timeout=60)
        assert response.status_code == 200, response.text[:2000]
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def start_fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A factory: ``start_fhir_server()`` returns a started :class:`FhirServer`, stopped at the
    end of the session at the latest. If the install failed: fails under CI, skips locally."""
    require_service("FHIR server sekmet-fhir", _ensure_installed(),
                    "bash tests/support/fhir-server.sh install (needs PyPI)")
    servers: list[FhirServer] = []

    def start() -> FhirServer:
        # The free port may be taken by another process before sekmet binds it (engineers and
        # CI jobs share the machine): a server that does not come up gets a second port.
        for attempt in range(3):
            server = FhirServer(tmp_path_factory.mktemp("sekmet"))
            servers.append(server)
            try:
                return server.start()
            except RuntimeError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def fhir_server(start_fhir_server: Any) -> FhirServer:
    """The shared server of the session (tests load data under their own ids)."""
    return start_fhir_server()  # type: ignore[no-any-return]
