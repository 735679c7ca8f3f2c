#!/usr/bin/env bash
# What CI needs for the browser test (tests/test_demo_browser.py, marked `browser`):
#   * Debian's `chromium` package (the browser binary at /usr/bin/chromium), and
#   * the Python `playwright` package (installed with the package's `test` extra), which drives
#     that binary through `executable_path="/usr/bin/chromium"`; Playwright's own browser
#     download (`playwright install`) is NOT used, so no extra network access is needed.
# The test skips cleanly when either is missing. Idempotent; run as root or with sudo available.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
fi

PYTHON="${PYTHON:-python}"
if "$PYTHON" -c "import playwright" 2>/dev/null; then
    echo "python playwright available: $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("playwright"))')"
else
    "$PYTHON" -m pip install -q "playwright>=1.40"
fi
