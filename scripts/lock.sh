#!/usr/bin/env bash
# Refresh the pinned versions that the quick start and CI install (requirements/*.txt), from
# pyproject.toml, requirements/tools.in and requirements/dev.in, with hashes. Run it on purpose, read the diff, run
# scripts/test.sh, and commit the lock files with the change that needed them.
#   bash scripts/lock.sh                  # newest versions allowed by pyproject.toml
#   bash scripts/lock.sh --upgrade-package mypy   # or move one package only
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
use_venv requirements/test.txt
common=(--universal --python-version 3.11 --generate-hashes --quiet)
uv pip compile pyproject.toml requirements/tools.in requirements/dev.in --extra test --extra signing --extra exporter \
  "${common[@]}" "$@" -o requirements/test.txt
# The demo's lock: the runtime dependencies and Go only, at the versions the tests use.
uv pip compile pyproject.toml requirements/tools.in -c requirements/test.txt \
  "${common[@]}" -o requirements/run.txt
echo "== requirements/test.txt and requirements/run.txt refreshed; now: bash scripts/test.sh"
