#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently:
#   - Debian's prometheus and prometheus-alertmanager (promtool, amtool) when missing;
#   - a virtualenv in .venv with the package (editable) and its test extras, the provider SDKs
#     at the releases scripts/sdk-constraints.txt pins (the SDK matrix tests the newest ones);
#   - the OpenTelemetry Collector distribution of collector/builder-config.yaml (cached
#     outside the repo, see collector/build.sh), unless SETUP_COLLECTOR=0.
# Prints nothing but progress; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v amtool >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ] && [ "${SETUP_APT:-1}" = 1 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
CONSTRAINTS=scripts/sdk-constraints.txt
stamp="$VENV/.installed-$(cat pyproject.toml "$CONSTRAINTS" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[test]" -c "$CONSTRAINTS"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

if [ "${SETUP_COLLECTOR:-1}" = 1 ] && [ -f collector/build.sh ]; then
  bash collector/build.sh >/dev/null
fi
