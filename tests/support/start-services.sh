#!/usr/bin/env bash
# Install (once) what the integration tests need beside the service; the tests start and stop it.
# Nothing here contacts anything but the package registries.
# A failed install is fatal under CI (CI=true) and a warning locally: tests/support/require.sh
# (the fixtures apply the same rule through tests/support/services.py require_service).
set -euo pipefail
source "$(dirname "$0")/require.sh"
# PostgreSQL for tests/test_feedback_postgres.py (quick no-op once installed).
bash tests/support/postgres.sh install || service_missing PostgreSQL \
    "tests/support/postgres.sh install failed (see above)" \
    "apt-get install postgresql (as root; make test run as root does it)"
bash tests/support/fhir-server.sh install || service_missing "FHIR server sekmet-fhir" \
    "tests/support/fhir-server.sh install failed (see above)" \
    "bash tests/support/fhir-server.sh install (needs PyPI)"
bash tests/support/browser.sh install || service_missing Chromium \
    "tests/support/browser.sh install failed (see above)" \
    "bash tests/support/browser.sh install (root, apt-get)"
bash tests/support/nginx.sh install || service_missing nginx \
    "tests/support/nginx.sh install failed (see above)" \
    "apt-get install nginx-light (as root)"
