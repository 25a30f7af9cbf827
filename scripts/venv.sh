# Sourced by scripts/demo.sh and scripts/test.sh: make (or reuse) the checkout's own virtual
# environment and install one lock file into it, exactly.
#
#   use_venv requirements/run.txt
#
# The environment is $REDIS_GOCACHE_VENV, default .venv in the checkout, made by $PYTHON
# (default python3, 3.11 or newer). A stock Debian or Ubuntu python3 (PEP 668, "externally
# managed") works: nothing is installed into it, only into the environment. Its bin/ goes first
# on PATH, so redis-gocache and go are the environment's.

use_venv() {
  local lock=$1 root venv python stamp want
  root=$(pwd)
  venv=${REDIS_GOCACHE_VENV:-$root/.venv}
  python=${PYTHON:-python3}

  if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    command -v "$python" >/dev/null 2>&1 || {
      echo "error: $python not found; install Python 3.11 or newer, or set PYTHON=/path/to/python3" >&2
      return 1
    }
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
      echo "error: $("$python" -V 2>&1) at $(command -v "$python") is too old; redis-gocache needs 3.11 or newer (set PYTHON=...)" >&2
      return 1
    }
    echo "== making a virtual environment in $venv with $(command -v "$python") ($("$python" -V 2>&1))"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
      # Debian and Ubuntu ship venv's pip in a package of its own.
      rm -rf "$venv"
      local pkg
      pkg="python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing $pkg (Debian package): $python cannot make a virtual environment without it"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
        "$python" -m venv "$venv"
      else
        echo "error: $python cannot make a virtual environment; install $pkg (sudo apt-get install $pkg) and run this again" >&2
        return 1
      fi
    fi
  fi

  # Install only when the lock (or the interpreter) changed since the last install; the editable
  # install of the checkout itself has no dependencies of its own to fetch (--no-deps), and its
  # build backend is the one the lock pins (--no-build-isolation).
  want="$(sha256sum "$lock" pyproject.toml | sha256sum | cut -c1-16) $("$venv/bin/python" -V 2>&1)"
  stamp="$venv/.installed-$(basename "$lock" .txt)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== installing $lock into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
      --require-hashes --no-deps -r "$lock"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
      --no-deps --no-build-isolation -e .
    echo "$want" >"$stamp"
  fi
  export VIRTUAL_ENV=$venv
  export PATH="$venv/bin:$PATH"
  hash -r
}
