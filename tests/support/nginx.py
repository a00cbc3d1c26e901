"""nginx in front of test instances: the deploy config rendered for loopback, run by
``tests/support/nginx.sh run`` (one worker, everything under one temporary folder).

``render_site`` fills in ``deploy/nginx/cds-service.conf``, the file a site deploys, so the test
runs the same configuration; only the values of its ``${CDS_...}`` placeholders differ.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
SITE_TEMPLATE = ROOT / "deploy" / "nginx" / "cds-service.conf"
SCRIPT = Path(__file__).resolve().parent / "nginx.sh"
NGINX = Path("/usr/sbin/nginx")
BASH = shutil.which("bash") or "/bin/bash"
PLACEHOLDER = re.compile(r"\$\{(CDS_[A-Z_]+)\}")


def why_unusable() -> str | None:
    """None when nginx can run here, else the reason (for ``require_service``)."""
    if not NGINX.exists():
        return f"{NGINX} is missing"
    return None


def render_site(values: dict[str, str], template: Path = SITE_TEMPLATE) -> str:
    """The template with every ``${CDS_...}`` replaced. :raises KeyError: a value is missing."""
    text = template.read_text()
    missing = set(PLACEHOLDER.findall(text)) - set(values)
    if missing:
        raise KeyError(f"no value for {', '.join(sorted(missing))} in {template.name}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files in ``folder``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class Nginx:
    """The rendered deploy config on ``https://127.0.0.1:PORT`` in front of ``upstreams``."""

    def __init__(self, folder: Path, port: int, upstreams: list[str]) -> None:
        self.folder, self.port = folder, port
        self.base = f"https://127.0.0.1:{port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.cert, key = self_signed(folder)
        servers = "\n    ".join(f"server {u} max_fails=1 fail_timeout=5s;" for u in upstreams)
        (folder / "site.conf").write_text(render_site({
            "CDS_UPSTREAMS": servers, "CDS_LISTEN": f"127.0.0.1:{port}",
            "CDS_SERVER_NAME": "127.0.0.1", "CDS_TLS_CERT": str(self.cert),
            "CDS_TLS_KEY": str(key), "CDS_MAX_BODY": "5m"}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Nginx:
        with open(self.folder / "run.log", "wb") as out:
            self.proc = subprocess.Popen([BASH, str(SCRIPT), "run", str(self.folder)],
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited {self.proc.returncode}: {self.tail()}")
            try:
                requests.get(self.base + "/healthz", timeout=2, verify=str(self.cert))
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"nginx did not answer within {timeout:g} s: {self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def tail(self) -> str:
        parts = []
        for name in ("run.log", "error.log"):
            path = self.folder / name
            if path.exists():
                parts.append(f"{name}: " + " | ".join(path.read_text().splitlines()[-8:]))
        return "\n".join(parts)
