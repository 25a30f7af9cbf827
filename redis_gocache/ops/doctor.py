"""``redis-gocache doctor``: is this runner set up to share the cache?

Each check gives one :class:`Check`: ``pass``, ``warn`` or ``fail``, a message, and a hint
when there is something to do. Redis checks stop at the first one that cannot connect (the
rest would only repeat it). Nothing here prints a password: messages go through
:func:`~redis_gocache.ops.common.scrub`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from redis_gocache.config import Config
from redis_gocache.exceptions import (
    ConfigError,
    PermissionDenied,
    RemoteError,
    RemoteOutOfMemory,
)
from redis_gocache.ops import fleet
from redis_gocache.ops.common import (
    human_bytes,
    open_store,
    primaries_info,
    scrub,
    translated,
)
from redis_gocache.store import counters
from redis_gocache.store.keys import Keys

PASS, WARN, FAIL = "pass", "warn", "fail"

LATENCY_WARN = 0.010
"""Median PING round trip (seconds) above which hits get slow: each Redis hit is at least one
round trip, and a build asks for thousands."""

HEADROOM_WARN = 0.90
"""Share of ``maxmemory`` in use above which doctor warns."""

FREE_SPACE_WARN = 2 * 1024**3
"""Free bytes on the local cache's file system below which doctor warns."""

MIN_GO = (1, 24)
"""First Go release with GOCACHEPROG on by default."""

EXPERIMENT_GO = (1, 21)
"""First Go release with GOCACHEPROG behind ``GOEXPERIMENT=cacheprog``."""

GOOD_POLICIES = ("allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu", "volatile-ttl")


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str
    message: str
    hint: str = ""


Runner = Callable[[list[str], Mapping[str, str]], str]


def _run(argv: list[str], env: Mapping[str, str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=dict(env),
                          check=True)
    return done.stdout.strip()


def run_checks(config: Config, env: Mapping[str, str] | None = None,
               cwd: str | None = None, run: Runner = _run,
               problems: Sequence[str] = ()) -> list[Check]:
    """Every check, in order; messages already scrubbed of secrets. ``problems``: the
    settings that could not be used (:func:`redis_gocache.config.resolve`), each a failure."""
    env = dict(os.environ if env is None else env)
    checks = [setting_check(problem) for problem in problems]
    checks += redis_checks(config)
    checks += local_checks(config)
    checks += go_checks(env, run)
    checks.append(path_check(config, env, cwd or os.getcwd(), checks))
    return [dataclasses.replace(c, message=scrub(c.message, config), hint=scrub(c.hint, config))
            for c in checks]


# -- settings ------------------------------------------------------------------------------

_FORMATS = {
    "URL": "redis://[user:password@]host:port/db, rediss://... (TLS), unix:///path/redis.sock, "
           "redis+cluster://host:port,... or redis+sentinel://host:port/service",
    "DURATION": "seconds, or a number with s/m/h/d/w (90s, 30m, 12h, 7d, 2w)",
    "BYTES": "bytes, or a number with K/M/G (65536, 64K, 1G)",
    "SECONDS": "a positive number of seconds (0.5, 30)",
    "N": "a whole number (workers: at least 1)",
    "FILE": "a readable file",
    "FILE[,FILE...]": "readable key files, comma-separated",
    "DIR": "a directory the runner's user can create and write",
    "TEXT": "text without { or }",
}


def setting_check(problem: str) -> Check:
    """A failed check for a setting the helper could not use, with what to set instead."""
    from redis_gocache.config import OPTIONS

    name = problem.partition(" ")[0]
    opt = next((o for o in OPTIONS if o.envvar == name), None)
    if opt is None:
        return Check("setting", FAIL, problem)
    if opt.name == "cache_dir":
        wanted = _FORMATS["DIR"]
    elif opt.is_flag:
        wanted = "1/true/yes/on or 0/false/no/off"
    else:
        wanted = _FORMATS.get(opt.metavar, "a valid value")
    return Check(f"setting {opt.envvar}", FAIL, problem,
                 f"set {opt.envvar} (or {opt.flags[-1]}) to {wanted}, or unset it")


# -- Redis ---------------------------------------------------------------------------------


def _explain(exc: RemoteError) -> str:
    text = str(exc)
    if "does not speak Redis" in text:
        return ("something other than Redis answers on that port: check the host and port "
                "(Redis listens on 6379 unless told otherwise)")
    if "NOPERM" in text:
        return ("the ACL user may not run this command: give it +@read +@connection on "
                "~<prefix>* (writers also +@write +@keyspace +@transaction; docs/security.md)")
    if "AuthenticationError" in text or "WRONGPASS" in text or "NOAUTH" in text:
        return ("the server refused the credentials: check the URL's user, REDIS_PASSWORD or "
                "REDIS_PASSWORD_FILE")
    if "Timeout" in text:
        return "no answer in time: a NetworkPolicy, a firewall, or the wrong host"
    return "is the host and port right, and is Redis running? (a NetworkPolicy may block it)"


def redis_checks(config: Config) -> Iterator[Check]:
    if not config.redis_url:
        yield Check("redis", WARN, "no REDIS_URL: the helper caches on local disk only",
                    "set REDIS_URL (or --redis-url) to share the cache")
        return
    from redis_gocache.config import redact_url

    where = redact_url(config.redis_url)
    try:
        store = open_store(config, timeout=max(config.timeout, 2.0))
    except ConfigError as exc:
        yield Check("redis reachable", FAIL, str(exc))
        return
    try:
        try:
            with translated(store):
                client = store.client()
            rtts = [store.ping() for _ in range(5)]
        except RemoteError as exc:
            yield Check("redis reachable", FAIL, f"cannot use Redis at {where}: {exc}",
                        _explain(exc))
            return
        except ConfigError as exc:
            yield Check("redis reachable", FAIL, str(exc))
            return
        yield Check("redis reachable", PASS, f"connected to {where}")
        yield _latency(statistics.median(rtts), config.timeout)
        info: dict[str, Any] = {}
        try:
            with translated(store):
                # Of a Cluster, judge the fullest primary: one full shard fails its puts.
                info = max(primaries_info(client, "server", "memory"), key=_fullness)
        except PermissionDenied:
            yield Check("server info", WARN, "this user may not run INFO",
                        "version, maxmemory and headroom were not checked")
        except RemoteError as exc:
            yield Check("server info", WARN, f"INFO failed: {exc}")
        if info:
            yield from _server(info)
        yield _read_check(store, client)
        yield _write_check(config, store, client)
    finally:
        store.close()


def _latency(rtt: float, timeout: float) -> Check:
    ms = rtt * 1000
    if rtt >= timeout / 2:
        return Check("latency", FAIL, f"median PING {ms:.1f} ms; the helper gives up after "
                     f"{timeout * 1000:.0f} ms", "put Redis closer to the runners, or raise "
                     "REDIS_GOCACHE_TIMEOUT")
    if rtt > LATENCY_WARN:
        return Check("latency", WARN, f"median PING {ms:.1f} ms",
                     "every Redis hit costs a round trip: run Redis in the runners' cluster "
                     "and zone")
    return Check("latency", PASS, f"median PING {ms:.2f} ms")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _fullness(info: Mapping[str, Any]) -> float:
    """used_memory / maxmemory of one server (0 without a maxmemory)."""
    maxmemory = int(info.get("maxmemory", 0) or 0)
    return int(info.get("used_memory", 0) or 0) / maxmemory if maxmemory else 0.0


def _server(info: Mapping[str, Any]) -> Iterator[Check]:
    version = str(info.get("redis_version", "?"))
    if _version(version) < (6, 2):
        yield Check("server version", WARN, f"Redis {version}",
                    "6.2 or newer is tested (ACL users, UNLINK, GETDEL)")
    else:
        yield Check("server version", PASS, f"Redis {version}")

    maxmemory = int(info.get("maxmemory", 0))
    policy = str(info.get("maxmemory_policy", "?"))
    used = int(info.get("used_memory", 0))
    if policy == "noeviction":
        yield Check("eviction policy", WARN, "maxmemory-policy is noeviction: when Redis is "
                    "full, every put fails until entries expire",
                    "set maxmemory-policy allkeys-lru: a cache should forget the oldest "
                    "entries, not refuse new ones")
    elif policy in GOOD_POLICIES:
        yield Check("eviction policy", PASS, f"maxmemory-policy {policy}")
    else:
        yield Check("eviction policy", WARN, f"maxmemory-policy {policy}",
                    "allkeys-lru keeps what builds use; random eviction drops hot entries")
    if not maxmemory:
        system = int(info.get("total_system_memory", 0))
        share = f" ({used / system:.0%} of the host's memory)" if system else ""
        yield Check("maxmemory", WARN, f"no maxmemory set; {human_bytes(used)} used{share}",
                    "set maxmemory below the container's memory limit, or the kernel kills "
                    "Redis instead of Redis evicting entries")
        return
    ratio = used / maxmemory
    yield Check("maxmemory", PASS, f"maxmemory {human_bytes(maxmemory)}")
    message = f"{human_bytes(used)} of {human_bytes(maxmemory)} used ({ratio:.0%})"
    if ratio >= HEADROOM_WARN:
        hint = ("puts are failing or about to" if policy == "noeviction"
                else "Redis is evicting: a larger maxmemory would keep more hits")
        status = FAIL if policy == "noeviction" and ratio >= 0.98 else WARN
        yield Check("memory headroom", status, message, hint)
    else:
        yield Check("memory headroom", PASS, message)


def _read_check(store: Any, client: Any) -> Check:
    key = Keys(store.prefix).action(bytes(32))
    try:
        with translated(store):
            client.hgetall(key)
    except PermissionDenied as exc:
        return Check("read permission", FAIL, f"cannot read under {store.prefix!r}: {exc}",
                     f"the ACL user needs ~{store.prefix}* and +hgetall +get +getrange "
                     "+strlen")
    except RemoteError as exc:
        return Check("read permission", FAIL, f"a read failed: {exc}")
    return Check("read permission", PASS, f"may read keys under {store.prefix!r}")


def _write_check(config: Config, store: Any, client: Any) -> Check:
    if config.read_only:
        return Check("write permission", PASS, "read-only helper: writes not tested")
    key = Keys(store.prefix).upload(os.urandom(16))  # an upload key: expires, flush knows it
    try:
        with translated(store):
            client.set(key, b"redis-gocache doctor", ex=60)
            client.delete(key)
    except PermissionDenied as exc:
        return Check("write permission", FAIL, f"cannot write under {store.prefix!r}: {exc}",
                     "give this user write access, or set REDIS_GOCACHE_READONLY=1 for "
                     "untrusted jobs")
    except RemoteOutOfMemory as exc:
        return Check("write permission", FAIL, f"Redis refuses writes: {exc}",
                     "Redis is full under noeviction: raise maxmemory or use allkeys-lru")
    except RemoteError as exc:
        return Check("write permission", FAIL, f"a test write failed: {exc}")
    return Check("write permission", PASS, f"may write keys under {store.prefix!r}")


# -- local ---------------------------------------------------------------------------------


def local_checks(config: Config) -> list[Check]:
    path = config.cache_dir
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        probe = os.path.join(path, f".doctor-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
    except OSError as exc:
        return [Check("local directory", FAIL, f"cannot write in {path}: {exc.strerror}",
                      "set REDIS_GOCACHE_DIR to a writable directory")]
    checks = [Check("local directory", PASS, f"{path} is writable")]
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < FREE_SPACE_WARN:
        checks.append(Check("free space", WARN, f"{human_bytes(free)} free under {path}",
                            "run `redis-gocache trim --max-size ...` or give it more room"))
    else:
        checks.append(Check("free space", PASS, f"{human_bytes(free)} free"))
    return checks


# -- go ------------------------------------------------------------------------------------


def go_checks(env: Mapping[str, str], run: Runner) -> list[Check]:
    go = shutil.which("go", path=env.get("PATH"))
    if go is None:
        return [Check("go version", WARN, "no `go` on PATH: Go was not checked",
                      "run doctor where the builds run")]
    try:
        text = run([go, "version"], env)
        goenv = run([go, "env", "GOCACHEPROG", "GOEXPERIMENT"], env).splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        return [Check("go version", FAIL, f"`go version` failed: {exc}")]
    checks = [_go_version(text, goenv[1] if len(goenv) > 1 else "")]
    prog = goenv[0] if goenv else env.get("GOCACHEPROG", "")
    if not prog:
        checks.append(Check("GOCACHEPROG", WARN, "GOCACHEPROG is not set: go will not use "
                            "redis-gocache", "export GOCACHEPROG=redis-gocache in the job"))
    elif "redis-gocache" not in prog and "redis_gocache" not in prog:
        checks.append(Check("GOCACHEPROG", WARN, f"GOCACHEPROG={prog} is another program"))
    else:
        checks.append(Check("GOCACHEPROG", PASS, f"GOCACHEPROG={prog}"))
    return checks


def _go_version(text: str, experiment: str) -> Check:
    m = re.search(r"go(\d+)\.(\d+)", text)
    if m is None:
        return Check("go version", WARN, f"cannot read the Go version from {text!r}")
    version = (int(m.group(1)), int(m.group(2)))
    name = f"go{version[0]}.{version[1]}"
    if version >= MIN_GO:
        return Check("go version", PASS, name)
    if version >= EXPERIMENT_GO:
        if "cacheprog" in experiment.split(","):
            return Check("go version", PASS, f"{name} with GOEXPERIMENT=cacheprog")
        return Check("go version", FAIL, f"{name} ignores GOCACHEPROG without the experiment",
                     "set GOEXPERIMENT=cacheprog, or use Go 1.24 or newer")
    return Check("go version", FAIL, f"{name} has no GOCACHEPROG", "use Go 1.24 or newer")


# -- checkout path ------------------------------------------------------------------------


def path_check(config: Config, env: Mapping[str, str], cwd: str,
               so_far: list[Check]) -> Check:
    """Hits need the same absolute path on every runner, unless builds use ``-trimpath``."""
    here = fleet.checkout_root(cwd)
    if "-trimpath" in env.get("GOFLAGS", ""):
        return Check("checkout path", PASS, "GOFLAGS has -trimpath: paths do not matter")
    seen: dict[str, int] = {}
    reachable = any(c.name == "redis reachable" and c.status == PASS for c in so_far)
    if reachable:
        try:
            store = open_store(config)
            try:
                with translated(store):
                    seen = counters.read_paths(store.client(), config.prefix)
            finally:
                store.close()
        except (RemoteError, ConfigError):
            seen = {}
    hint = ("go's cache keys include absolute paths: check out at one fixed path on every "
            "runner (e.g. /src/<repo>), or build with GOFLAGS=-trimpath")
    if len(seen) > 1:
        top = sorted(seen.items(), key=lambda kv: -kv[1])[:3]
        listing = ", ".join(f"{p} ({n} runs)" for p, n in top)
        return Check("checkout path", WARN,
                     f"helpers ran under {len(seen)} checkout paths in two days: {listing}", hint)
    return Check("checkout path", PASS, f"this checkout is {here}; every runner must use the "
                 "same path (or -trimpath) to share hits")


def render(checks: list[Check], header: str) -> str:
    width = max((len(c.name) for c in checks), default=0)
    lines = [header]
    for c in checks:
        lines.append(f"{c.status.upper():4}  {c.name:<{width}}  {c.message}")
        if c.hint and c.status != PASS:
            lines.append(f"{'':4}  {'':<{width}}  hint: {c.hint}")
    counts = {s: sum(1 for c in checks if c.status == s) for s in (PASS, WARN, FAIL)}
    lines.append(f"{counts[PASS]} passed, {counts[WARN]} warnings, {counts[FAIL]} failed")
    return "\n".join(lines) + "\n"

