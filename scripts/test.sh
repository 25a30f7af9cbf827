#!/usr/bin/env bash
# Run the test suite on a fresh machine: installs what the tests need, then runs ruff, mypy and
# pytest. redis-server comes from apt (as root); everything else from requirements/test.txt into
# the checkout's own virtual environment (.venv, see scripts/venv.sh). Missing tools are
# installed, not skipped; if an install fails, this fails with the installer's own error.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: redis-server is not installed; install it (sudo apt-get install redis-server) and run this again" >&2
    exit 1
  fi
  echo "== installing redis-server (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
. scripts/venv.sh
use_venv requirements/test.txt

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
