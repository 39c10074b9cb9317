#!/usr/bin/env bash
# Installs Debian's PgBouncer for the connection-pooling tests when it is missing and we may
# install it (the tests run it on a loopback port as a user process; the system service is not used).
set -euo pipefail
if command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's pgbouncer for the pooling tests..."
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
  (command -v systemctl >/dev/null && systemctl disable --now pgbouncer >/dev/null 2>&1) || true
  (command -v service >/dev/null && service pgbouncer stop >/dev/null 2>&1) || true
else
  echo "pgbouncer is not installed and cannot be installed here (not root): the pooling tests will be skipped."
fi
