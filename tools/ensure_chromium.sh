#!/bin/sh
# Make sure a Chromium is available for tests/test_browser_widgets.py (the widget check in a real
# JupyterLab). Nothing to do when `chromium` or `chromium-browser` is on PATH; otherwise installs
# Debian/Ubuntu's package with apt-get (as root, or through passwordless sudo), else explains.
# Set STLLR_SKIP_BROWSER=1 to skip the browser test instead.
set -eu

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if have_chromium; then
    exit 0
fi
if [ "${STLLR_SKIP_BROWSER:-0}" = "1" ]; then
    echo ">> chromium not found; STLLR_SKIP_BROWSER=1, so the browser widget test will be skipped"
    exit 0
fi

install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium"
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        echo ">> chromium not found: installing it ($install_cmd)"
        sh -c "$install_cmd"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        echo ">> chromium not found: installing it (sudo -n sh -c '$install_cmd')"
        sudo -n sh -c "$install_cmd"
    fi
fi

if have_chromium; then
    echo ">> chromium ready: $(command -v chromium || command -v chromium-browser)"
    exit 0
fi

cat >&2 <<MSG
!! chromium was not found on PATH and could not be installed automatically.
   The browser widget test (tests/test_browser_widgets.py) drives JupyterLab in headless Chromium.
   Install it, e.g. on Debian/Ubuntu:   sudo apt-get update && sudo apt-get install -y chromium
   (or any Chromium build, with a 'chromium' or 'chromium-browser' command on PATH),
   or skip that test:                   make test STLLR_SKIP_BROWSER=1
MSG
exit 1
