#!/usr/bin/env bash
# Installs Debian's nginx for the test of deploy/nginx.conf when it is missing and we may install
# it (the test runs it on a loopback port as a user process; the system service is not used).
set -euo pipefail
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's nginx for the proxy test..."
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
  # Debian starts the packaged service on port 80; the test needs only the binary.
  (command -v systemctl >/dev/null && systemctl disable --now nginx >/dev/null 2>&1) || true
  (command -v service >/dev/null && service nginx stop >/dev/null 2>&1) || true
else
  echo "nginx is not installed and cannot be installed here (not root): the proxy test will be skipped."
fi
