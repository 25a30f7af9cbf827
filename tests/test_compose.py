"""docker-compose.yml, the runner Dockerfile and the sample module examples/hello.

Compose is not run here (CI has no Docker daemon); its file is parsed and checked against
the Helm chart's Redis settings and the helper's option table, so the three cannot drift.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python
import pytest
import yaml

from redis_gocache.config import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
HELLO = ROOT / "examples" / "hello"
KNOWN_ENV = {opt.envvar for opt in OPTIONS}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def chart_redis_conf() -> dict[str, str]:
    with helm_python.Chart.load(ROOT / "helm" / "redis-gocache") as chart:
        out = chart.render({}, name="gocache", namespace="ci")
        values = chart.values
    (configmap,) = [
        d for d in yaml.safe_load_all(out["redis-gocache/templates/configmap.yaml"]) if d
    ]
    conf: dict[str, str] = {"image": f"{values['image']['repository']}:{values['image']['tag']}"}
    for line in configmap["data"]["redis.conf"].splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


def memory_bytes(text: str) -> int:
    """Compose's memory size: a number with b/k/m/g (binary units)."""
    m = re.fullmatch(r"(\d+)([bkmg]?)", text.lower())
    assert m, text
    return int(m.group(1)) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)]


def redis_args(command: list[str]) -> dict[str, str]:
    assert command[0] == "redis-server"
    args = command[1:]
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    return {k[2:]: v for k, v in zip(args[::2], args[1::2], strict=True)}


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "go"}
    go = compose["services"]["go"]
    assert go["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert compose["services"]["redis"]["healthcheck"]["test"][-1] == "ping"
    # Redis stays on the compose network: nothing published on the host.
    assert "ports" not in compose["services"]["redis"]


def test_redis_is_configured_like_the_chart(
    compose: dict[str, Any], chart_redis_conf: dict[str, str]
) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"] == chart_redis_conf["image"]
    args = redis_args(redis["command"])
    # maxmemory: the chart's share (70%) of the memory limit.
    assert int(args["maxmemory"]) == int(memory_bytes(redis["mem_limit"]) * 0.7)
    assert args["maxmemory"] == chart_redis_conf["maxmemory"]
    for key in ("maxmemory-policy", "lazyfree-lazy-eviction", "lazyfree-lazy-expire",
                "lazyfree-lazy-server-del", "lazyfree-lazy-user-del", "appendonly"):
        assert args[key] == chart_redis_conf[key], key
    assert args["maxmemory-policy"] == "allkeys-lru"
    assert args["lazyfree-lazy-eviction"] == args["lazyfree-lazy-expire"] == "yes"
    assert args["save"] == "" and chart_redis_conf["save"] == '""'
    assert args["appendonly"] == "no"


def test_go_service_uses_the_helper(compose: dict[str, Any]) -> None:
    go = compose["services"]["go"]
    env = go["environment"]
    assert env["GOCACHEPROG"] == "redis-gocache"
    url = urlsplit(env["REDIS_URL"])
    assert (url.scheme, url.hostname, url.port) == ("redis", "redis", 6379)
    assert env["REDIS_GOCACHE_VERBOSE"] == "1"
    assert env["GOPROXY"] == "off" and env["GOTOOLCHAIN"] == "local"
    # Every helper setting is spelt as the helper reads it.
    helper_env = {k for k in env if k.startswith("REDIS_")}
    assert helper_env <= KNOWN_ENV, helper_env - KNOWN_ENV
    assert go["build"] == "."
    assert (ROOT / "Dockerfile").is_file()


def test_go_service_builds_twice_from_empty_local_caches(compose: dict[str, Any]) -> None:
    go = compose["services"]["go"]
    mount = go["volumes"][0]  # the second one is the spill volume (tests/test_spill.py)
    source, target, mode = mount.split(":")
    assert (ROOT / source).resolve() == HELLO and mode == "ro"
    assert go["working_dir"] == target
    script = go["command"][-1]
    assert go["command"][:2] == ["sh", "-c"]
    assert "for run in 1 2" in script
    # Fresh directories per run: a second-run hit can only come from Redis.
    assert "GOCACHE=/tmp/run$$run/" in script and "REDIS_GOCACHE_DIR=/tmp/run$$run/" in script
    assert "go build" in script and "go test ./..." in script


def test_dockerfile_installs_go_and_the_helper() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM golang:\$\{GO_VERSION\}", text, re.M)
    assert re.search(r"^ARG GO_VERSION=1\.(2[4-9]|[3-9]\d)$", text, re.M)  # GOCACHEPROG: 1.24+
    assert "pip install" in text and "COPY redis_gocache" in text
    assert "GOCACHEPROG=redis-gocache" in text
    assert re.search(r"^USER runner$", text, re.M)
    # Every file the Dockerfile copies is in the build context.
    ignored = (ROOT / ".dockerignore").read_text().split()
    for copied in ("pyproject.toml", "redis_gocache"):
        assert copied not in ignored


def test_hello_module_is_small_and_stdlib_only() -> None:
    assert (HELLO / "go.mod").read_text().split() == ["module", "example.com/hello", "go", "1.24"]
    sources = sorted(HELLO.rglob("*.go"))
    assert {p.relative_to(HELLO).as_posix() for p in sources} == {
        "main.go", "greet/greet.go", "greet/greet_test.go"}
    for path in sources:
        for imp in re.findall(r'^\s*(?:import\s+)?"([^"]+)"$', path.read_text(), re.M):
            first = imp.split("/")[0]
            assert "." not in first or imp.startswith("example.com/hello"), (path, imp)


def test_hello_module_builds_and_passes(go_env: dict[str, str]) -> None:
    """The sample module compiles and its test passes with the plain go command (go test
    runs a subset of vet too). The shared GOCACHE of go_env keeps this quick."""
    done = subprocess.run(["go", "test", "./..."], cwd=HELLO, env=go_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok  \texample.com/hello/greet" in done.stdout
    done = subprocess.run(["go", "run", ".", "compose"], cwd=HELLO, env=go_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("Hello, compose!"), done.stderr
