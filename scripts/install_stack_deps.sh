#!/usr/bin/env bash
# Install the system services of `make stack` (scripts/stack.py) from Debian's packages with apt-get: the PostgreSQL
# server (the Airflow metadata database) and Redis (the Celery broker). No Docker engine is available on our
# machines and CI, and Debian's packages are the supported, security-updated way to get both. Valkey is not in
# Debian 12 (bookworm), so we use redis-server there (Valkey is used when it is already installed).
# Only installs what is missing; the services are NOT started system-wide (the stack runs its own instances under
# .stack/, on loopback). Needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
missing=()
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    missing+=(postgresql)
fi
if ! command -v redis-server >/dev/null && ! command -v valkey-server >/dev/null; then
    missing+=(redis-server)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
echo "Installing ${missing[*]} with apt-get ..."
$SUDO apt-get update
# policy-rc.d 101: do not start the packages' system-wide services (the stack starts its own, on loopback)
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}" || status=$?
if [ "$created_policy" = 1 ]; then
    $SUDO rm -f "$policy"
fi
exit "$status"
