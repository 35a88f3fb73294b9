#!/usr/bin/env bash
# otel-llm-cost beside the other OpenTelemetry instrumentations of the openai SDK.
#
#   bash bench/peers.sh                 # build (once) the peers virtualenv, check, measure
#   bash bench/peers.sh --quick         # arguments go to bench/peers.py
#
# Installs, in virtualenvs of their own outside the repository (cached, keyed on the Python
# version and the pins below):
#   ${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}/bench-peers-<key>
#   ${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}/bench-peers-openai-v2-<key> (see below)
# openai 2.x and anthropic 0.x (the newest of each: the peers pin openai below 3), the
# OpenTelemetry SDK, this package's runtime dependencies (the package itself is imported from
# the work tree through PYTHONPATH, so one cache serves every checkout), and the peers:
# opentelemetry-instrumentation-openai-v2, opentelemetry-instrumentation-genai-openai (with
# opentelemetry-util-genai), OpenLLMetry's opentelemetry-instrumentation-openai, and OpenLIT.
# Needs the package registry (pip) the first time only; the measurement itself reaches no
# network (the children refuse any connection).
#
# Then, in that virtualenv:
#   1. bench/overhead.py --quick --providers openai,anthropic: otel-llm-cost itself works with
#      openai 2.x and anthropic 0.x (its checks fail the run otherwise);
#   2. bench/peers.py "$@": the comparison.
# Not run in CI (it installs packages). Environment: PYTHON (default python3), OTEL_LLM_COST_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CACHE=${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}
LAYOUT=1 # bump when the way the venv is built changes

# Pinned, so that a figure can be reproduced; bump them together. The OpenTelemetry SDK is the
# same in both virtualenvs (the version OpenLIT's dependencies settle on).
COMMON=(
  "openai==2.54.0"
  "opentelemetry-api==1.45.1"
  "opentelemetry-sdk==1.45.1"
  "opentelemetry-instrumentation==0.66b1"
)
PEERS=(
  "${COMMON[@]}"
  "anthropic==0.125.0"
  "opentelemetry-instrumentation-genai-openai==1.3b0"
  "opentelemetry-util-genai==1.3b0"
  "opentelemetry-instrumentation-openai==0.62.4"
  "openlit==1.45.0"
)
# opentelemetry-instrumentation-openai-v2 2.4b0 imports opentelemetry.util.genai.instruments,
# which opentelemetry-util-genai removed in 1.2b0, while the genai-openai package needs >= 1.3b0:
# the two cannot share a virtualenv, so openai-v2 gets its own, and peers.py runs its children
# with that interpreter (BENCH_PYTHON_OPENAI_V2).
OPENAI_V2=(
  "${COMMON[@]}"
  "opentelemetry-instrumentation-openai-v2==2.4b0"
  "opentelemetry-util-genai==1.1b0"
)

# The package's runtime dependencies, from pyproject.toml.
mapfile -t DEPS < <("$PYTHON" - <<'PY'
import re
try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None
text = open("pyproject.toml").read()
if tomllib is not None:
    deps = tomllib.loads(text)["project"]["dependencies"]
else:
    body = re.search(r"\ndependencies\s*=\s*\[(.*?)\]", text, re.S).group(1)
    deps = re.findall(r'"([^"]+)"', body)
print("\n".join(deps))
PY
)

venv_for() { # name requirement... -> prints the venv path, building it when needed
  local name=$1
  shift
  local key venv
  key=$({ echo "$LAYOUT"; "$PYTHON" -VV; printf '%s\n' "$@"; } | sha256sum | cut -c1-12)
  venv="$CACHE/$name-$key"
  if [ ! -f "$venv/.complete" ]; then
    echo "peers: building $venv (once)" >&2
    rm -rf "$venv"
    mkdir -p "$CACHE"
    "$PYTHON" -m venv "$venv" >&2 || return 1
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2 || return 1
    "$venv/bin/python" -m pip freeze --disable-pip-version-check >"$venv/.freeze" || return 1
    touch "$venv/.complete"
  fi
  echo "$venv"
}

VENV=$(venv_for bench-peers "${PEERS[@]}" "${DEPS[@]}")
V2_VENV=$(venv_for bench-peers-openai-v2 "${OPENAI_V2[@]}" "${DEPS[@]}")
echo "peers: using $VENV and $V2_VENV" >&2
export BENCH_PYTHON_OPENAI_V2="$V2_VENV/bin/python"

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "peers: otel-llm-cost with openai $("$VENV/bin/python" -c 'import openai; print(openai.__version__)')" \
  "and anthropic $("$VENV/bin/python" -c 'import anthropic; print(anthropic.__version__)')" \
  "(overhead.py --quick --providers openai,anthropic)" >&2
if ! "$VENV/bin/python" bench/overhead.py --quick --providers openai,anthropic >"$VENV/.product-check.log" 2>&1; then
  tail -40 "$VENV/.product-check.log" >&2
  echo "peers: otel-llm-cost does not run with these SDKs (full log: $VENV/.product-check.log)" >&2
  exit 1
fi
echo "peers: it does (log: $VENV/.product-check.log)" >&2
exec "$VENV/bin/python" bench/peers.py "$@"
