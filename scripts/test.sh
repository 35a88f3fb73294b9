#!/usr/bin/env bash
# The test command: set up (idempotent), lint, run the whole test suite, then the SDK matrix
# (scripts/sdk-matrix.sh: the provider tests against the oldest and the newest release of each
# provider SDK, and the coexistence tests next to other instrumentations). Both always run; the
# command fails if either does.
#
#   bash scripts/test.sh                          # everything: what CI runs (.ci/run)
#   bash scripts/test.sh tests/test_core.py -x    # pytest arguments: that pytest run, no matrix
#   SDK_MATRIX=0 bash scripts/test.sh             # no matrix (SDK_MATRIX=1: the matrix even
#                                                 # with pytest arguments)
#   SDK_MATRIX_REFRESH=1 bash scripts/test.sh     # rebuild the matrix's cached venvs first
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
bash scripts/setup.sh
.venv/bin/ruff check otel_llm_cost tests bench grafana

if [ -n "${SDK_MATRIX:-}" ]; then
  matrix=$SDK_MATRIX
elif [ $# -eq 0 ]; then
  matrix=1
else
  matrix=0
fi

suite=0
.venv/bin/python -m pytest -q "$@" || suite=$?
suite_time=$(($(date +%s) - started))
[ "$matrix" = 1 ] || exit $suite

echo
echo "== SDK matrix: bash scripts/sdk-matrix.sh"
sdk=0
bash scripts/sdk-matrix.sh || sdk=$?

verdict() { [ "$1" = 0 ] && echo "passed" || echo "FAILED (exit $1)"; }
echo
echo "test.sh: test suite $(verdict $suite) (${suite_time} s, set-up included);" \
  "SDK matrix $(verdict $sdk) ($(($(date +%s) - started - suite_time)) s, logs in build/sdk-matrix/)"
[ $suite = 0 ] && [ $sdk = 0 ]
