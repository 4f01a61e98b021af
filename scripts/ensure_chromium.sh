#!/usr/bin/env bash
# Make sure the system's Chromium is installed (the browser suite drives it through Playwright; Playwright's own
# browser download is never used). Installs Debian's `chromium` package with apt-get when /usr/bin/chromium is
# missing; needs root (or sudo).
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
echo "Installing Chromium with apt-get (no $CHROMIUM yet) ..."
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
test -x "$CHROMIUM"
