#!/usr/bin/env bash
# The provider tests against the oldest and the newest supported release of each provider SDK.
#
#   bash scripts/sdk-matrix.sh                      # all 8 cells
#   bash scripts/sdk-matrix.sh openai anthropic:oldest google-genai:newest
#
# The supported ranges are read from the provider modules (`_SUPPORTED`); "oldest" pins the
# range's lower bound (e.g. openai==1.66.0), "newest" lets pip take the newest release in range.
# Each cell gets its own virtualenv, cached under
#   ${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}/venvs/<sdk>-<oldest|newest>-<key>
# where <key> hashes the Python version, the requirements and VENV_LAYOUT; a "newest" venv is
# rebuilt when older than SDK_MATRIX_NEWEST_MAX_AGE_DAYS (default 7) so it follows new releases.
# The package itself is not installed there: its dependencies are, and the tests import it from
# the work tree, so one cache serves every checkout.
#
# Environment: PYTHON (default python3), OTEL_LLM_COST_CACHE, SDK_MATRIX_NEWEST_MAX_AGE_DAYS,
# SDK_MATRIX_PYTEST_ARGS (extra pytest arguments). Prints one line per cell and a summary;
# exits non-zero if any cell failed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CACHE=${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}
VENVS="$CACHE/venvs"
MAX_AGE_DAYS=${SDK_MATRIX_NEWEST_MAX_AGE_DAYS:-7}
VENV_LAYOUT=1  # bump when the way venvs are built changes: every cached venv is rebuilt
mkdir -p "$VENVS"

# sdk | provider module | companion SDKs (newest in range) the test modules import | tests | -k
CELLS=(
  "openai|openai||tests/test_openai.py tests/test_sdk_versions.py|"
  "anthropic|anthropic||tests/test_anthropic.py tests/test_sdk_versions.py|"
  "google-genai|google_genai|google-generativeai|tests/test_google.py tests/test_sdk_versions.py|genai or versions"
  "google-generativeai|google_generativeai|google-genai|tests/test_google.py tests/test_sdk_versions.py|legacy or versions"
)

# The supported range of a provider module, e.g. "openai >= 1.66, < 4".
supported() {
  sed -n 's/^_SUPPORTED = "\(.*\)"$/\1/p' "otel_llm_cost/providers/$1.py"
}

# "openai==1.66.0" from "openai >= 1.66, < 4".
oldest_pin() {
  "$PYTHON" - "$1" <<'PY'
import re, sys
name, rest = sys.argv[1].split(None, 1)
low = re.search(r">=\s*([0-9][0-9.]*)", rest).group(1)
parts = low.split(".")
while len(parts) < 3:
    parts.append("0")
print(f"{name}=={'.'.join(parts)}")
PY
}

# The package's runtime dependencies and the test runner (from pyproject.toml), one a line.
base_requirements() {
  "$PYTHON" - <<'PY'
import re
try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None
text = open("pyproject.toml").read()
if tomllib is not None:
    project = tomllib.loads(text)["project"]
    deps = project["dependencies"]
    test = project["optional-dependencies"]["test"]
else:
    def array(name):
        body = re.search(name + r"\s*=\s*\[(.*?)\]", text, re.S).group(1)
        return re.findall(r'"([^"]+)"', body)
    deps, test = array(r"\ndependencies"), array(r"\ntest")
keep = ("pytest", "pytest-asyncio")
for req in deps + [t for t in test if re.split(r"[<>=!~ \[]", t)[0] in keep]:
    print(req)
PY
}

# The range as a pip requirement: "openai>=1.66,<4".
as_requirement() {
  echo "$1" | tr -d ' '
}

venv_for() {  # sdk which requirement... -> prints the venv path, creating it when needed
  local sdk=$1 which=$2
  shift 2
  local key
  key=$({ echo "$VENV_LAYOUT"; "$PYTHON" -VV; printf '%s\n' "$@"; } | sha256sum | cut -c1-12)
  local venv="$VENVS/$sdk-$which-$key"
  local stamp="$venv/.complete"
  if [ -f "$stamp" ] && [ "$which" = newest ] &&
    [ -n "$(find "$stamp" -mtime +"$MAX_AGE_DAYS" 2>/dev/null)" ]; then
    rm -rf "$venv"
  fi
  if [ ! -f "$stamp" ]; then
    rm -rf "$venv"
    # old venvs of this cell (other keys) go: the cache holds one per cell
    rm -rf "$VENVS/$sdk-$which-"*
    # (set -e does not apply inside a function whose status is tested: check each step)
    "$PYTHON" -m venv "$venv" >&2 || return 1
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2 || return 1
    "$venv/bin/python" -m pip freeze --disable-pip-version-check >"$venv/.freeze" || return 1
    touch "$stamp" || return 1
  fi
  echo "$venv"
}

selected() {  # sdk which
  [ $# -ge 2 ] || return 1
  local sdk=$1 which=$2
  shift 2
  [ ${#ARGS[@]} -eq 0 ] && return 0
  local arg
  for arg in "${ARGS[@]}"; do
    [ "$arg" = "$sdk" ] || [ "$arg" = "$sdk:$which" ] && return 0
  done
  return 1
}

ARGS=("$@")
mapfile -t BASE < <(base_requirements)
failed=0
summary=()
started_all=$(date +%s)

for cell in "${CELLS[@]}"; do
  IFS='|' read -r sdk module companions tests filter <<<"$cell"
  range=$(supported "$module")
  [ -n "$range" ] || { echo "sdk-matrix: no _SUPPORTED in providers/$module.py" >&2; exit 2; }
  companion_reqs=()
  for companion in $companions; do
    companion_module=${companion//-/_}
    companion_reqs+=("$(as_requirement "$(supported "$companion_module")")")
  done
  for which in oldest newest; do
    selected "$sdk" "$which" || continue
    if [ "$which" = oldest ]; then
      pin=$(oldest_pin "$range")
    else
      pin=$(as_requirement "$range")
    fi
    started=$(date +%s)
    if ! venv=$(venv_for "$sdk" "$which" "${BASE[@]}" "$pin" "${companion_reqs[@]}"); then
      summary+=("$(printf '%-20s %-7s %-10s %s' "$sdk" "$which" "?" "INSTALL FAILED ($pin)")")
      failed=1
      continue
    fi
    setup=$(($(date +%s) - started))
    version=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$sdk'))")
    read -r -a argv <<<"$tests"
    [ -z "$filter" ] || argv+=(-k "$filter")
    log="$venv/.last-run.log"
    set +e
    # shellcheck disable=SC2086
    PYTHONPATH="$PWD" "$venv/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning \
      "${argv[@]}" ${SDK_MATRIX_PYTEST_ARGS:-} >"$log" 2>&1
    status=$?
    set -e
    result=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)|no tests ran' "$log" | tail -1 | tr -d '=' | sed 's/^ *//;s/ in [0-9.]*s.*//')
    elapsed=$(($(date +%s) - started))
    line=$(printf '%-20s %-7s %-10s %-55s setup %3ss, total %3ss' "$sdk" "$which" "$version" \
      "${result:-no result} (exit $status)" "$setup" "$elapsed")
    echo "$line"
    summary+=("$line")
    if [ $status -ne 0 ]; then
      failed=1
      grep -E '^(FAILED|ERROR) tests/' "$log" | sed 's/^/    /' | head -40
      echo "    full log: $log"
    fi
  done
done

echo
echo "sdk-matrix: $((${#summary[@]})) cells in $(($(date +%s) - started_all)) s (venvs in $VENVS)"
printf '  %s\n' "${summary[@]}"
exit $failed
