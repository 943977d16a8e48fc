#!/usr/bin/env bash
# What `make test` needs besides the build: headless Chromium and its driver, Node.js with the test
# peers from npm (playwright-core), and the PostgreSQL client for cleaning up test databases.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/apt-ensure.sh chromium chromium-driver postgresql-client
command -v node >/dev/null && command -v npm >/dev/null || scripts/apt-ensure.sh nodejs npm
peers=tests/peers/node
if [ ! -d "$peers/node_modules/playwright-core" ] || [ ! -d "$peers/node_modules/oidc-provider" ] || [ "$peers/package-lock.json" -nt "$peers/node_modules/.package-lock.json" ]; then
  echo "Installing Node test peers in $peers"
  npm ci --prefix "$peers" --no-audit --no-fund --loglevel=error
fi
# Python peers (pysaml2 IdP, aiosmtpd SMTP server) in their own virtualenv; pysaml2 needs xmlsec1.
scripts/apt-ensure.sh xmlsec1 python3 python3-venv
py=tests/peers/python
if [ ! -x "$py/.venv/bin/python" ] || [ "$py/requirements.txt" -nt "$py/.venv/.installed" ]; then
  echo "Installing Python test peers in $py/.venv"
  python3 -m venv "$py/.venv"
  "$py/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$py/requirements.txt"
  touch "$py/.venv/.installed"
fi
