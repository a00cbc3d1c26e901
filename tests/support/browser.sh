#!/usr/bin/env bash
# Chromium for the browser tests (Debian's package; Python Playwright from PyPI drives it).
#
#   browser.sh install    install Debian's chromium if /usr/bin/chromium is missing
#
# Never `playwright install`: the tests use /usr/bin/chromium through Playwright's
# executable_path. Without root/apt the browser tests skip locally; with CI=true they fail.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
    echo "browser.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) found"
    exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "browser.sh: chromium is missing and cannot be installed here (needs root and apt-get)" >&2
    [[ "${CI:-}" == true ]] && exit 1
    exit 0
fi
echo "browser.sh: installing Debian's chromium package"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; then
    echo "browser.sh: apt-get install chromium failed" >&2
    [[ "${CI:-}" == true ]] && exit 1
fi
exit 0
