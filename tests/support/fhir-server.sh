#!/usr/bin/env bash
# The real FHIR server for tests/integration: sekmet-fhir (PyPI), in its own venv .venv-fhir.
#   bash tests/support/fhir-server.sh install   # create .venv-fhir and install it (no-op when present)
# The tests start and stop the server themselves (tests/integration/conftest.py) on 127.0.0.1.
# Nothing here contacts anything but the package registry.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/.venv-fhir"
PYTHON="${PYTHON:-python3}"
VERSION="0.1.1"

installed() {
    [ -x "$VENV/bin/sekmet" ] && "$VENV/bin/python" - "$VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("sekmet-fhir") == sys.argv[1] else 1)
PY
}

case "${1:-install}" in
    install)
        if installed; then
            exit 0
        fi
        echo "Installing sekmet-fhir==$VERSION into .venv-fhir (the FHIR server for integration tests)"
        [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
        echo '*' > "$VENV/.gitignore"   # keep the venv out of git without touching .gitignore
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "sekmet-fhir==$VERSION"
        installed
        ;;
    *)
        echo "usage: $0 install" >&2
        exit 2
        ;;
esac
