#!/usr/bin/env bash
# The provider tests against the oldest and the newest supported release of each provider SDK,
# and the coexistence tests next to other instrumentations of the same SDKs.
#
#   bash scripts/sdk-matrix.sh                      # every cell: 4 SDKs x oldest/newest, and peers
#   bash scripts/sdk-matrix.sh openai anthropic:oldest google-genai:newest peers
#   bash scripts/sdk-matrix.sh openai==1.92.0       # the openai cell's tests against any release
#   bash scripts/sdk-matrix.sh --refresh openai     # rebuild the selected venvs first
#
# Cells:
#   <sdk>:oldest  the range's lower bound, exactly (e.g. openai==1.66.0)
#   <sdk>:newest  the newest release in the range
#   peers:newest  tests/test_coexistence.py with opentelemetry-instrumentation-openai-v2 and
#                 OpenLLMetry's opentelemetry-instrumentation-openai and -anthropic, each the
#                 newest release (openai-v2 is pre-release only), with the newest openai below 3
#                 (openai-v2 imports httpx, which openai 3 replaced with httpx2) and the newest
#                 anthropic in range. Every case must run: a skipped case fails the cell.
# The supported ranges are read from the provider modules (`_SUPPORTED`). Each cell gets its own
# virtualenv, cached under
#   ${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}/venvs/<cell>-<key>
# where <key> hashes the Python version, the requirements and VENV_LAYOUT (another key's venv of
# the same cell is removed once unused for a day). A cached venv is
# reused as it is, except that the "newest" ones (SDKs and peers) are rebuilt when older than
# SDK_MATRIX_NEWEST_MAX_AGE_DAYS (default 7), so that they follow new releases; --refresh (or
# SDK_MATRIX_REFRESH=1) rebuilds the selected venvs now. The package itself is not installed
# there: its dependencies are, and the tests import it from the work tree, so one cache serves
# every checkout. Two runs sharing the cache wait for each other per venv (flock).
#
# Logs: $SDK_MATRIX_LOGS (default build/sdk-matrix/ in the work tree) holds, per cell, the pytest
# output (<cell>.log), its JUnit XML (<cell>.xml), the venv's pip freeze (<cell>.freeze) and the
# pip log when the install failed; summary.txt is the table printed at the end.
#
# Environment: PYTHON (default python3), OTEL_LLM_COST_CACHE, SDK_MATRIX_NEWEST_MAX_AGE_DAYS,
# SDK_MATRIX_REFRESH, SDK_MATRIX_LOGS, SDK_MATRIX_PYTEST_ARGS (extra pytest arguments).
# Prints one line per cell (and, for a failed cell, its failed tests and the log), then a
# summary; exits non-zero if any cell failed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CACHE=${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}
VENVS="$CACHE/venvs"
MAX_AGE_DAYS=${SDK_MATRIX_NEWEST_MAX_AGE_DAYS:-7}
REFRESH=${SDK_MATRIX_REFRESH:-0}
LOGS=${SDK_MATRIX_LOGS:-$PWD/build/sdk-matrix}
CONSTRAINTS=scripts/sdk-constraints.txt
VENV_LAYOUT=2  # bump when the way venvs are built changes: every cached venv is rebuilt
mkdir -p "$VENVS"
# venvs of releases asked for by name (sdk==version) go when unused for MAX_AGE_DAYS
find "$VENVS" -mindepth 2 -maxdepth 2 -path '*-pinned-*/.used' -mtime +"$MAX_AGE_DAYS" \
  -printf '%h\n' 2>/dev/null | xargs -r rm -rf

# sdk | provider module | companion SDKs (newest in range) the test modules import | tests | -k
CELLS=(
  "openai|openai||tests/test_openai.py tests/test_sdk_versions.py|"
  "anthropic|anthropic||tests/test_anthropic.py tests/test_sdk_versions.py|"
  "google-genai|google_genai|google-generativeai|tests/test_google.py tests/test_sdk_versions.py|genai or versions"
  "google-generativeai|google_generativeai|google-genai|tests/test_google.py tests/test_sdk_versions.py|legacy or versions"
)
# The peers cell: the other instrumentations, and what their SDKs must satisfy besides our range.
PEERS=(
  "opentelemetry-instrumentation-openai-v2>=2.0b0"  # a pre-release bound lets pip take betas
  # openai-v2 2.4b0 imports opentelemetry.util.genai.instruments, gone from util-genai 1.2b0 on
  # (its own requirement, util-genai>=0.4b0.dev, does not say so)
  "opentelemetry-util-genai>=0.4b0,<1.2b0"
  "opentelemetry-instrumentation-openai"
  "opentelemetry-instrumentation-anthropic"
)
PEER_OPENAI_CAP="<3"  # openai-v2 (2.4b0) imports httpx; openai 3 is built on httpx2
PEER_TESTS="tests/test_coexistence.py"

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

# The version the main suite pins for an SDK (scripts/sdk-constraints.txt), if any.
constrained() {
  [ -f "$CONSTRAINTS" ] || return 0
  sed -n "s/^$1==\([^ #]*\).*/\1/p" "$CONSTRAINTS"
}

venv_for() {  # name refreshable(0/1) requirement... -> prints the venv path, creating it when needed
  local name=$1 refreshable=$2
  shift 2
  local key
  key=$({ echo "$VENV_LAYOUT"; "$PYTHON" -VV; printf '%s\n' "$@"; } | sha256sum | cut -c1-12)
  local venv="$VENVS/$name-$key"
  local stamp="$venv/.complete"
  local lock="$VENVS/.$name.lock"
  (
    flock 9
    if [ -f "$stamp" ] && { [ "$REFRESH" = 1 ] ||
      { [ "$refreshable" = 1 ] && [ -n "$(find "$stamp" -mtime +"$MAX_AGE_DAYS" 2>/dev/null)" ]; }; }; then
      rm -f "$stamp"
    fi
    if [ ! -f "$stamp" ]; then
      rm -rf "$venv"
      # venvs of this cell with other requirements (another branch, an older pyproject.toml) go
      # once unused for a day (not at once: another checkout's CI may be using one right now)
      local old
      for old in "$VENVS/$name-"*; do
        [ -d "$old" ] || continue
        [[ ${old#"$VENVS/$name-"} =~ ^[0-9a-f]{12}$ ]] || continue  # not another cell's
        [ -z "$(find "$old/.used" -mmin -1440 2>/dev/null)" ] && rm -rf "$old"
      done
      # (set -e does not apply inside a function whose status is tested: check each step)
      "$PYTHON" -m venv "$venv" >&2 || exit 1
      "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
        "$@" >"$venv/.pip.log" 2>&1 || exit 1
      "$venv/bin/python" -m pip freeze --disable-pip-version-check >"$venv/.freeze" || exit 1
      touch "$stamp" || exit 1
    fi
    touch "$venv/.used"
  ) 9>"$lock" || { echo "$venv"; return 1; }
  echo "$venv"
}

# -- which cells ------------------------------------------------------------------------------

ARGS=()
for arg in "$@"; do
  case $arg in
    --refresh) REFRESH=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) ARGS+=("$arg") ;;
  esac
done

known_sdk() {
  local cell
  for cell in "${CELLS[@]}"; do [ "${cell%%|*}" = "$1" ] && return 0; done
  return 1
}

selected() {  # sdk which
  local sdk=$1 which=$2
  [ ${#ARGS[@]} -eq 0 ] && [ "$which" != pinned ] && return 0
  local arg
  for arg in "${ARGS[@]}"; do
    [ "$arg" = "$sdk" ] || [ "$arg" = "$sdk:$which" ] && return 0
  done
  return 1
}

for arg in "${ARGS[@]}"; do
  name=${arg%%[:=]*}
  if [ "$name" != peers ] && ! known_sdk "$name"; then
    echo "sdk-matrix: unknown cell '$arg' (sdks: openai anthropic google-genai google-generativeai; peers)" >&2
    exit 2
  fi
done

# -- running a cell ---------------------------------------------------------------------------

mkdir -p "$LOGS"
rm -f "$LOGS"/*.log "$LOGS"/*.xml "$LOGS"/*.freeze "$LOGS"/summary.txt
mapfile -t BASE < <(base_requirements)
failed=0
summary=()
notes=()
started_all=$(date +%s)

# run_cell label venv-name refreshable version-of strict-skips "tests" "-k" requirement...
run_cell() {
  local label=$1 name=$2 refreshable=$3 version_of=$4 strict_skips=$5 tests=$6 filter=$7
  shift 7
  local started venv setup version log status result elapsed line
  started=$(date +%s)
  log="$LOGS/$name.log"
  if ! venv=$(venv_for "$name" "$refreshable" "$@"); then
    cp "$venv/.pip.log" "$LOGS/$name.pip.log" 2>/dev/null || true
    rm -rf "$venv"
    line=$(printf '%-28s %-10s %s' "$label" "?" "INSTALL FAILED")
    echo "$line"
    { grep -E '^ERROR' "$LOGS/$name.pip.log" || tail -5 "$LOGS/$name.pip.log"; } 2>/dev/null |
      cut -c1-300 | sed 's/^/    /' | head -10 || true
    echo "    pip log: $LOGS/$name.pip.log"
    summary+=("$line")
    failed=1
    return 0
  fi
  setup=$(($(date +%s) - started))
  cp "$venv/.freeze" "$LOGS/$name.freeze"
  version=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$version_of'))")
  local argv
  read -r -a argv <<<"$tests"
  [ -z "$filter" ] || argv+=(-k "$filter")
  set +e
  # shellcheck disable=SC2086
  COLUMNS=200 PYTHONPATH="$PWD" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    -W ignore::DeprecationWarning -rfEsxX --junitxml="$LOGS/$name.xml" \
    "${argv[@]}" ${SDK_MATRIX_PYTEST_ARGS:-} >"$log" 2>&1
  status=$?
  set -e
  result=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped|xfailed|deselected)|no tests ran' "$log" |
    tail -1 | tr -d '=' | sed 's/^ *//;s/ in [0-9.]*s.*//')
  if [ $status -eq 0 ] && [ "$strict_skips" = 1 ] && grep -qE '^SKIPPED' "$log"; then
    status=99  # every case of this cell must run
  fi
  elapsed=$(($(date +%s) - started))
  line=$(printf '%-28s %-10s %-58s setup %3ss, total %3ss' "$label" "$version" \
    "${result:-no result} ($([ $status -eq 0 ] && echo ok || echo "FAILED, exit $status"))" \
    "$setup" "$elapsed")
  echo "$line"
  summary+=("$line")
  if [ $status -ne 0 ]; then
    failed=1
    [ $status -ne 99 ] || echo "    every case of this cell must run, and some were skipped:"
    { grep -E '^(FAILED|ERROR|XPASS) [^ ]+\.py' "$log" || true; } | sed 's/^/    /' | head -40
    [ $status -ne 99 ] || { grep -E '^SKIPPED' "$log" || true; } | sed 's/^/    /' | head -20
    echo "    log: $log"
  fi
}

for cell in "${CELLS[@]}"; do
  IFS='|' read -r sdk module companions tests filter <<<"$cell"
  range=$(supported "$module")
  [ -n "$range" ] || { echo "sdk-matrix: no _SUPPORTED in providers/$module.py" >&2; exit 2; }
  companion_reqs=()
  for companion in $companions; do
    companion_reqs+=("$(as_requirement "$(supported "${companion//-/_}")")")
  done
  for which in oldest newest; do
    selected "$sdk" "$which" || continue
    if [ "$which" = oldest ]; then
      pin=$(oldest_pin "$range")
      refreshable=0
    else
      pin=$(as_requirement "$range")
      refreshable=1
    fi
    n=${#summary[@]}
    run_cell "$sdk:$which" "$sdk-$which" "$refreshable" "$sdk" 0 "$tests" "$filter" \
      "${BASE[@]}" "$pin" "${companion_reqs[@]}"
    if [ "$which" = newest ] && [ ${#summary[@]} -gt "$n" ]; then
      newest=$(sed -n "s/^$sdk==//p" "$LOGS/$sdk-$which.freeze" 2>/dev/null || true)
      pinned=$(constrained "$sdk")
      if [ -n "$newest" ] && [ -n "$pinned" ] && [ "$newest" != "$pinned" ]; then
        notes+=("$sdk $newest is out; the main suite pins $pinned ($CONSTRAINTS): bump it when the matrix passes")
      fi
    fi
  done
  # any release, on request: sdk==version
  for arg in "${ARGS[@]}"; do
    case $arg in
      "$sdk=="*)
        version=${arg#*==}
        run_cell "$sdk==$version" "$sdk-pinned-$version" 0 "$sdk" 0 "$tests" "$filter" \
          "${BASE[@]}" "$sdk==$version" "${companion_reqs[@]}"
        ;;
    esac
  done
done

if selected peers newest; then
  run_cell "peers:newest" "peers-newest" 1 "openai" 1 "$PEER_TESTS" "" \
    "${BASE[@]}" "$(as_requirement "$(supported openai)"),$PEER_OPENAI_CAP" \
    "$(as_requirement "$(supported anthropic)")" "${PEERS[@]}"
  # the peers' versions, for the summary
  peers_line=$(grep -iE '^(openai|anthropic|opentelemetry-instrumentation-(openai-v2|openai|anthropic))==' \
    "$LOGS/peers-newest.freeze" 2>/dev/null | tr '\n' ' ' || true)
  [ -z "$peers_line" ] || notes+=("peers:newest ran $peers_line")
fi

{
  echo
  echo "sdk-matrix: ${#summary[@]} cells in $(($(date +%s) - started_all)) s (venvs in $VENVS, logs in $LOGS)"
  printf '  %s\n' "${summary[@]}"
  [ ${#notes[@]} -eq 0 ] || printf '  note: %s\n' "${notes[@]}"
} | tee "$LOGS/summary.txt"
exit $failed
