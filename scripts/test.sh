#!/usr/bin/env bash
# The test command: set up (idempotent), lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check otel_llm_cost tests bench grafana
exec .venv/bin/python -m pytest -q "$@"
