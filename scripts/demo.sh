#!/usr/bin/env bash
# The main job: set up (idempotent), then run the demo against the built-in fake provider.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_COLLECTOR=0 bash scripts/setup.sh
exec .venv/bin/otel-llm-cost demo "$@"
