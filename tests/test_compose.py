"""docker-compose.yml, the runner Dockerfile and the sample module examples/hello.

Compose is not run here (CI has no Docker daemon); its file is parsed and checked against
the Helm chart's Redis settings and the helper's option table, so the three cannot drift.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python
import pytest
import redis
import yaml

from redis_gocache.config import OPTIONS
from tests.redisproc import RedisServer

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


def redis_args(command: list[str]) -> list[str]:
    """The redis-server arguments of the redis service's ``sh -c "exec redis-server ..."``,
    with compose's ``$$`` escape undone and the container's ``$REDIS_PASSWORD`` expanded from
    compose.env, as compose and the shell would."""
    assert command[:2] == ["sh", "-c"], command
    words = shlex.split(command[2].replace("$$", "$"))
    assert words[:2] == ["exec", "redis-server"], words
    env = compose_env()
    return [env["REDIS_PASSWORD"] if w == "$REDIS_PASSWORD" else w for w in words[2:]]


def as_options(args: list[str]) -> dict[str, str]:
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    return {k[2:]: v for k, v in zip(args[::2], args[1::2], strict=True)}


def compose_env() -> dict[str, str]:
    """compose.env, read as compose reads an env file (KEY=VALUE lines, # comments)."""
    env = {}
    for line in (ROOT / "compose.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, line
            env[key.strip()] = value.strip()
    return env


def laptop_lines() -> list[str]:
    """The code block of the README's "A laptop" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### A laptop"):]
    block = section[section.index("```") + 3:]
    lines = block[:block.index("```")].strip().splitlines()
    return [line.split("  #")[0].strip() for line in lines]


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "go"}
    redis = compose["services"]["redis"]
    go = compose["services"]["go"]
    # `docker compose up -d` starts Redis alone; the go demo only with --profile demo.
    assert "profiles" not in redis and go["profiles"] == ["demo"]
    assert go["depends_on"] == {"redis": {"condition": "service_healthy"}}
    health = redis["healthcheck"]["test"]
    assert health[0] == "CMD-SHELL" and "REDISCLI_AUTH" in health[1] and "ping" in health[1]
    # Published on the laptop's loopback only, never on every interface.
    assert redis["ports"] == ["127.0.0.1:6379:6379"]
    assert redis["env_file"] == go["env_file"] == "compose.env"


def test_password_comes_from_the_env_file(compose: dict[str, Any]) -> None:
    env = compose_env()
    assert env == {"REDIS_PASSWORD": "gocache-local"}
    command = compose["services"]["redis"]["command"][2]
    assert '--requirepass "$$REDIS_PASSWORD"' in command
    assert env["REDIS_PASSWORD"] not in (ROOT / "docker-compose.yml").read_text().split(
        "services:")[1], "the password belongs in compose.env, not in the compose file"


def test_redis_is_configured_like_the_chart(
    compose: dict[str, Any], chart_redis_conf: dict[str, str]
) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"] == chart_redis_conf["image"]
    args = as_options(redis_args(redis["command"]))
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
    assert args["requirepass"] == compose_env()["REDIS_PASSWORD"]


def test_compose_redis_arguments_on_a_real_server(
    compose: dict[str, Any], tmp_path: Path, go_env: dict[str, str]
) -> None:
    """The redis service's own arguments, given to a real redis-server (on a free loopback
    port instead of the container's 6379), then the README's laptop lines against it: the
    password is required and the URL there carries it, and a real go build through the
    helper puts its outputs into that Redis."""
    args = redis_args(compose["services"]["redis"]["command"])
    with RedisServer(args) as server:
        client = redis.Redis(port=server.port)
        with pytest.raises(redis.AuthenticationError):
            client.ping()
        lines = laptop_lines()
        assert lines[0] == "docker compose up -d"
        exports = dict(w.split("=", 1) for w in shlex.split(lines[1])[1:])
        assert set(exports) == {"REDIS_URL", "GOCACHEPROG"} and lines[1].startswith("export ")
        assert exports["GOCACHEPROG"] == "redis-gocache"
        url = urlsplit(exports["REDIS_URL"])
        assert (url.hostname, url.port) == ("127.0.0.1", 6379)
        assert url.password == compose_env()["REDIS_PASSWORD"]
        authed = redis.Redis(port=server.port, password=url.password)
        conf = authed.config_get("maxmemory*")
        assert conf["maxmemory"] == as_options(args)["maxmemory"]
        assert conf["maxmemory-policy"] == "allkeys-lru"
        assert authed.config_get("bind")["bind"] == "127.0.0.1"

        assert lines[2].startswith("go build")
        env = dict(go_env, GOCACHE=str(tmp_path / "gocache"),
                   REDIS_GOCACHE_DIR=str(tmp_path / "local"), GOCACHEPROG="redis-gocache",
                   REDIS_URL=exports["REDIS_URL"].replace(":6379/", f":{server.port}/"))
        done = subprocess.run(["go", "build", "-o", str(tmp_path / "hello"), "."], cwd=HELLO,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "redis-gocache" not in done.stderr, done.stderr  # no warning: Redis was used
        assert any(k.startswith(b"gocache:a:") for k in authed.scan_iter(count=1000))


def test_every_doc_starts_it_the_same_way() -> None:
    """One way to start the laptop Redis, the same everywhere it is mentioned."""
    for doc in ("README.md", "docs/kubernetes.md", "docker-compose.yml"):
        text = (ROOT / doc).read_text()
        starts = re.findall(r"docker compose[^\n`]*\bup\b[^\n`]*", text)
        assert starts, doc
        for start in starts:
            assert start.split("#")[0].strip() in (
                "docker compose up -d",
                "docker compose --profile demo up --build --abort-on-container-exit",
            ), (doc, start)


def test_go_service_uses_the_helper(compose: dict[str, Any]) -> None:
    go = compose["services"]["go"]
    env = go["environment"]
    assert env["GOCACHEPROG"] == "redis-gocache"
    url = urlsplit(env["REDIS_URL"])
    assert (url.scheme, url.hostname, url.port) == ("redis", "redis", 6379)
    assert url.password is None  # REDIS_PASSWORD from compose.env
    assert "REDIS_PASSWORD" in compose_env()
    assert env["REDIS_GOCACHE_VERBOSE"] == "1"
    assert env["GOPROXY"] == "off" and env["GOTOOLCHAIN"] == "local"
    # Every helper setting is spelt as the helper reads it.
    helper_env = {k for k in env if k.startswith("REDIS_")} | set(compose_env())
    assert helper_env <= KNOWN_ENV | {"REDIS_PASSWORD"}, helper_env - KNOWN_ENV
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
