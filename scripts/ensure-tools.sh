#!/usr/bin/env bash
# Install the command-line tools `make test` checks deploy/ with, if they are missing (idempotent, as root in CI):
# promtool (Debian's prometheus package) for the alert rules; systemd-analyze ships with systemd.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
    echo "promtool: found $(promtool --version 2>&1 | head -n 1)"
else
    if [[ $(id -u) -ne 0 ]]; then
        echo "promtool: missing, and installing it needs root (apt-get install prometheus)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The package's service must not start here: policy-rc.d 101 tells invoke-rc.d to leave it alone.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    echo "promtool: installed $(promtool --version 2>&1 | head -n 1)"
fi
