#!/usr/bin/env bash
# System packages for the real-browser test (tests/browser): Debian's Chromium, fonts, and
# libatomic1 (needed by Playwright's bundled node on minimal images). Idempotent: does nothing
# when they are installed. Playwright's own browser download is not used (no downloads here);
# the test launches /usr/bin/chromium.
#
# Python packages come from the project's test extra: pip install -e '.[test]'.
# With an argument (a Python interpreter), also installs those extras into it:
#     bash .ci/install-browser.sh .venv/bin/python
set -euo pipefail

PACKAGES=(chromium fonts-liberation libatomic1)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "install-browser: need root (or sudo) to install: ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "install-browser: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "install-browser: ${PACKAGES[*]} already installed"
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "install-browser: /usr/bin/chromium is missing after the install" >&2
    exit 1
fi
/usr/bin/chromium --version 2>/dev/null || true

if [ $# -ge 1 ]; then
    cd "$(dirname "$0")/.."
    "$1" -m pip install -q 'jupyterlab>=4,<5' 'playwright>=1.40'
fi
