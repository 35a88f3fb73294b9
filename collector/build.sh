#!/usr/bin/env bash
# Build the otelcol-llm-cost collector distribution from builder-config.yaml.
#
# Usage: collector/build.sh [--force]
#
# Installs the pinned OpenTelemetry Collector Builder (ocb) with `go install`
# and builds the distribution. Everything (builder, Go module and build caches,
# generated sources, the binary) lives OUTSIDE the repository, under
#   ${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}
# unless GOMODCACHE / GOCACHE are already set in the environment, in which case
# those are used. The binary is cached under a key made of a hash of
# builder-config.yaml, the builder version and the target platform: a second
# run with the same manifest finishes in well under a second.
#
# Progress goes to stderr; the LAST LINE ON STDOUT is the binary's path, so
#   OTELCOL=$(collector/build.sh | tail -n1)
# works. Needs Go (go on PATH, or GO=/path/to/go, or /usr/local/go/bin/go) and
# access to the Go module proxy on a cold build.
set -euo pipefail

# Keep in step with every version in builder-config.yaml.
OCB_VERSION=v0.155.0
DIST_NAME=otelcol-llm-cost

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
esac

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
manifest="$here/builder-config.yaml"
cache=${OTEL_LLM_COST_CACHE:-$HOME/.cache/otel-llm-cost}

GO=${GO:-$(command -v go || true)}
if [[ -z $GO && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
if [[ -z $GO ]]; then
  echo "build.sh: Go not found (put go on PATH or set GO=/path/to/go)" >&2
  exit 1
fi
# The builder runs `go` itself: make sure it finds the same one.
PATH="$(dirname -- "$GO"):$PATH"
export PATH

goos=$("$GO" env GOOS)
goarch=$("$GO" env GOARCH)
if command -v sha256sum >/dev/null; then sha256() { sha256sum; }; else sha256() { shasum -a 256; }; fi
key=$( { printf '%s\n%s/%s\n' "$OCB_VERSION" "$goos" "$goarch"; cat -- "$manifest"; } \
       | sha256 | cut -c1-16)
out="$cache/collector/$key"
bin="$out/dist/$DIST_NAME"

if [[ $force -eq 0 && -x $bin ]]; then
  echo "build.sh: cached $DIST_NAME for this manifest ($key)" >&2
  echo "$bin"
  exit 0
fi

mkdir -p -- "$cache"
export GOMODCACHE=${GOMODCACHE:-$cache/go/pkg/mod}
export GOCACHE=${GOCACHE:-$cache/go/build-cache}
export GOPATH=${GOPATH:-$cache/go}
# -modcacherw: module cache files writable, so that `rm -rf "$cache"` works.
# -e: lets the builder's `go mod tidy` carry on when a component's TEST-only
# dependency cannot be fetched (a proxy or mirror that lacks, e.g.,
# contrib's pkg/golden at this version); go build still fails on anything the
# binary really needs. Commands without an -e flag ignore it.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw -e"
export CGO_ENABLED=0

ocb_dir="$cache/tools/ocb-$OCB_VERSION"
ocb="$ocb_dir/builder"
if [[ ! -x $ocb ]]; then
  echo "build.sh: installing go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION" >&2
  GOBIN="$ocb_dir" "$GO" install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION" >&2
fi

# Build in a private directory, then move it into place: concurrent runs
# (e.g. parallel test jobs) never see a half-written binary.
mkdir -p -- "$cache/collector"
tmp=$(mktemp -d "$cache/collector/.build-$key.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
echo "build.sh: building $DIST_NAME ($key) in $tmp; the first build takes a few minutes" >&2
start=$SECONDS
( cd -- "$tmp" && "$ocb" --config="$manifest" ) >&2
if [[ ! -x $tmp/dist/$DIST_NAME ]]; then
  echo "build.sh: the builder produced no $tmp/dist/$DIST_NAME" >&2
  exit 1
fi
echo "build.sh: built in $((SECONDS - start)) s" >&2

if [[ $force -eq 1 ]]; then rm -rf -- "$out"; fi
if [[ ! -e $out ]]; then
  mv -- "$tmp" "$out"
fi  # else another run finished first with the same manifest: use its result
[[ -x $bin ]] || { echo "build.sh: no binary at $bin" >&2; exit 1; }
echo "$bin"
