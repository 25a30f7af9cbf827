"""The chart's HA layout (``ha.enabled``), running: the rendered redis.conf, sentinel.conf,
ACL script and start script (``ha.sh``) of three pods, started on loopback with only their
addresses, ports and paths rewritten; a real ``go build`` through the rendered runner URL
(``redis+sentinel://``) while the primary is failed over and killed; then a new runner served
by the promoted replica, and the killed pod coming back as a replica.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import redis

from tests.e2e.test_go_build import HELLO, make_runner, write_module
from tests.redisproc import free_port
from tests.redistopo import wait_until
from tests.test_helm import FULLNAME, NAMESPACE, Rendered, render, required_tool

HA_VALUES: dict[str, Any] = {
    # Short timings so the test takes seconds; everything else as shipped.
    "ha": {"enabled": True, "sentinel": {"downAfterMilliseconds": 1000,
                                         "failoverTimeout": 5000}},
}
MASTER = "gocache"
PREFIX = "gocache:"
COOLDOWN = 3.0
"""Breaker cool-down of the helpers here (production: 30 s)."""




@dataclass
class Pod:
    """One pod of the StatefulSet, as processes: its Redis and its sentinel."""

    index: int
    host: str  # the pod's DNS name in the render
    redis_port: int
    sentinel_port: int
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{FULLNAME}-{self.index}"

    def kill(self) -> None:
        """SIGKILL both containers' processes, by pid, as a lost node would."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    def log(self, container: str) -> str:
        try:
            return (self.root / f"{container}.log").read_text()[-3000:]
        except OSError:
            return "(no log)"


class HaRelease:
    """The HA render's three pods on loopback."""

    def __init__(self, rendered: Rendered, tmp: Path, tls_dir: Path | None = None) -> None:
        self.rendered = rendered
        # With TLS: the files of the pods' tls Secret (tls.crt, tls.key, ca.crt) are here.
        self.tls_dir = tls_dir
        self.tls: dict[str, Any] = {} if tls_dir is None else {
            "ssl": True, "ssl_ca_certs": str(tls_dir / "ca.crt"), "ssl_check_hostname": False}
        (self.sts,) = rendered.of_kind("StatefulSet")
        spec = self.sts["spec"]["template"]["spec"]
        self.containers = {c["name"]: c for c in spec["containers"]}
        self.init = spec["initContainers"][0]
        self.auth = rendered.secret(f"{FULLNAME}-auth")
        self.pods: list[Pod] = []
        for i in range(self.sts["spec"]["replicas"]):
            host = f"{FULLNAME}-{i}.{FULLNAME}-headless.{NAMESPACE}.svc.cluster.local"
            self.pods.append(Pod(i, host, free_port(), free_port(), tmp / f"pod{i}"))

    # -- rewriting: addresses, ports and paths only -------------------------------------

    def localize(self, text: str, pod: Pod | None = None) -> str:
        """``text`` with every pod's DNS name:port moved to 127.0.0.1 and its own ports,
        and (for ``pod``) its own name alone moved to 127.0.0.1."""
        for p in self.pods:
            text = text.replace(f"{p.host}:6379", f"127.0.0.1:{p.redis_port}")
            text = text.replace(f"{p.host}:26379", f"127.0.0.1:{p.sentinel_port}")
        if pod is not None:
            text = text.replace(pod.host, "127.0.0.1")
        return text

    def paths(self, pod: Pod, text: str) -> str:
        """The pod's mounts moved into its directory (the sentinel's own directory is
        ha.sh's SENTINEL_DIR, set in :meth:`env`)."""
        for mount, sub in (("/etc/redis-gocache/", "etc/"), ("/run/redis-gocache/", "run/")):
            text = text.replace(mount, f"{pod.root}/{sub}")
        if self.tls_dir is not None:
            text = text.replace(" /tls/", f" {self.tls_dir}/")
        return text

    def secret_value(self, ref: dict[str, str]) -> str:
        assert ref["name"] == f"{FULLNAME}-auth", ref
        return self.auth[ref["key"]]

    def env(self, container: dict[str, Any], pod: Pod) -> dict[str, str]:
        """The container's environment as the kubelet would make it, then localized."""
        env = {"PATH": os.environ["PATH"]}
        for var in container.get("env", []):
            if "value" in var:
                value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
            elif "secretKeyRef" in var["valueFrom"]:
                value = self.secret_value(var["valueFrom"]["secretKeyRef"])
            else:
                assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
                value = pod.name
            env[var["name"]] = value
        for name, value in list(env.items()):
            env[name] = self.localize(value, pod)
        if "REDIS_PORT" in env:
            env["REDIS_PORT"] = str(pod.redis_port)
            env["SENTINEL_PORT"] = str(pod.sentinel_port)
        env.update(CONFIG_DIR=str(pod.root / "etc"), RUN_DIR=str(pod.root / "run"),
                   SENTINEL_DIR=str(pod.root / "sentinel"))
        return env

    # -- pods ---------------------------------------------------------------------------

    def prepare(self, pod: Pod) -> None:
        """The pod's volumes: the ConfigMap (rewritten), and the init container's ACL files."""
        for sub in ("etc", "run", "sentinel"):
            shutil.rmtree(pod.root / sub, ignore_errors=True)  # a new pod: empty volumes
            (pod.root / sub).mkdir(parents=True)
        data = self.rendered.get("ConfigMap", f"{FULLNAME}-config")["data"]
        for name, text in data.items():
            if name not in ("redis.conf", "sentinel.conf"):
                (pod.root / "etc" / name).write_text(text)
                continue
            if name == "redis.conf":
                text = text.replace("bind * -::*", "bind 127.0.0.1")
                text = text.replace("\nport 6379\n", f"\nport {pod.redis_port}\n")
                text = text.replace("\ntls-port 6379\n", f"\ntls-port {pod.redis_port}\n")
                text = text.replace("dir /data", f"dir {pod.root}")
            elif name == "sentinel.conf":
                text = text.replace("bind * -::*", "bind 127.0.0.1")
                text = text.replace("\nport 26379\n", f"\nport {pod.sentinel_port}\n")
                text = text.replace("\ntls-port 26379\n", f"\ntls-port {pod.sentinel_port}\n")
            (pod.root / "etc" / name).write_text(self.paths(pod, text))
        command = [self.paths(pod, arg) for arg in self.init["command"]]
        subprocess.run(command, env=self.env(self.init, pod), check=True, timeout=30)

    def start(self, pod: Pod, container: str) -> None:
        c = self.containers[container]
        command = [self.paths(pod, arg) for arg in c["command"]]
        log = open(pod.root / f"{container}.log", "ab")  # noqa: SIM115 - the process keeps it
        pod.procs[container] = subprocess.Popen(
            command, env=self.env(c, pod), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

    def start_pod(self, pod: Pod) -> None:
        self.prepare(pod)
        self.start(pod, "redis")
        wait_until(f"{pod.name} redis", lambda: self.redis(pod).ping(), 20)
        self.start(pod, "sentinel")
        wait_until(f"{pod.name} sentinel to name a primary",
              lambda: self.named_primary(pod) is not None, 20)

    # -- clients ------------------------------------------------------------------------

    def redis(self, pod: Pod, user: str = "sentinel") -> redis.Redis:
        """A client of the pod's Redis as ``user`` (the sentinel user may ROLE and INFO)."""
        return redis.Redis(host="127.0.0.1", port=pod.redis_port, socket_timeout=3,
                           username=f"gocache-{user}", password=self.auth[f"{user}-password"],
                           decode_responses=True, **self.tls)

    def sentinel(self, pod: Pod) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=pod.sentinel_port, socket_timeout=3,
                           username="gocache-sentinel", password=self.auth["sentinel-password"],
                           decode_responses=True, **self.tls)

    def named_primary(self, pod: Pod) -> int | None:
        """The Redis port the pod's sentinel names as the primary."""
        addr = self.sentinel(pod).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(addr[1]) if addr else None

    def pod_of_port(self, port: int) -> Pod:
        return next(p for p in self.pods if p.redis_port == port)

    def settled(self, primary: Pod, alive: list[Pod]) -> bool:
        """Every live pod's sentinel names ``primary``, sees the other replicas and sentinels
        up, and every live replica streams from it."""
        replicas = [p for p in alive if p is not primary]
        for pod in alive:
            if self.named_primary(pod) != primary.redis_port:
                return False
            master = self.sentinel(pod).execute_command("SENTINEL", "MASTER", MASTER)
            info = master if isinstance(master, dict) else dict(
                zip(master[::2], master[1::2], strict=True))
            if (int(info["num-slaves"]) < len(replicas)
                    or int(info["num-other-sentinels"]) < len(alive) - 1):
                return False
        for pod in replicas:
            repl = self.redis(pod).info("replication")
            if repl["role"] != "slave" or repl["master_link_status"] != "up" or (
                    int(repl["master_port"]) != primary.redis_port):
                return False
        return self.redis(primary).info("replication")["role"] == "master"

    def runner_url(self, user: str = "writer") -> str:
        return self.localize(self.rendered.secret(f"{FULLNAME}-{user}")["REDIS_URL"])

    def cleanup(self) -> None:
        for pod in self.pods:
            pod.kill()


@pytest.fixture
def release(tmp_path: Path) -> Iterator[HaRelease]:
    with running_release(HA_VALUES, tmp_path) as rel:
        yield rel


@contextmanager
def running_release(values: dict[str, Any], tmp_path: Path,
                    tls_dir: Path | None = None) -> Iterator[HaRelease]:
    """The render of ``values``, its pods started and settled around pod 0 as primary."""
    required_tool("redis-cli")
    required_tool("timeout")
    rel = HaRelease(render(values), tmp_path / "pods", tls_dir)
    try:
        for pod in rel.pods:
            rel.start_pod(pod)
        first = rel.pods[0]
        wait_until("the three pods to settle", lambda: rel.settled(first, rel.pods), 60)
        yield rel
    except BaseException:
        for pod in rel.pods:
            print(f"--- {pod.name}\n{pod.log('redis')}\n{pod.log('sentinel')}")
        raise
    finally:
        rel.cleanup()


def test_the_rendered_pods_form_one_primary_and_two_replicas(release: HaRelease) -> None:
    first, *replicas = release.pods
    # The bootstrap: the first pod is the primary, the others copy it, each pod says so.
    assert "starting as primary" in first.log("redis")
    for pod in replicas:
        assert f"starting as replica of 127.0.0.1:{first.redis_port}" in pod.log("redis")
    # The same ACL users everywhere: the writer works on the primary, not on a replica
    # (READONLY), and the runner user can ask any sentinel for the primary but not fail over.
    url = urlsplit(release.runner_url())
    password = unquote(url.password or "")
    writer = redis.Redis(host="127.0.0.1", port=first.redis_port, username="gocache-writer",
                         password=password, socket_timeout=3)
    assert writer.set(f"{PREFIX}o:ha-check", b"1") is True
    for pod in replicas:
        replica = redis.Redis(host="127.0.0.1", port=pod.redis_port,
                              username="gocache-writer", password=password, socket_timeout=3)
        wait_until("the replica to copy the write",
              lambda r=replica: r.get(f"{PREFIX}o:ha-check") == b"1", 10)
        with pytest.raises(redis.exceptions.ReadOnlyError):
            replica.set(f"{PREFIX}o:ha-check", b"2")
    for pod in release.pods:
        runner = redis.Redis(host="127.0.0.1", port=pod.sentinel_port,
                             username="gocache-writer", password=password, socket_timeout=3)
        addr = runner.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        assert int(addr[1]) == first.redis_port
        with pytest.raises(redis.exceptions.NoPermissionError):
            runner.execute_command("SENTINEL", "FAILOVER", MASTER)
        anonymous = redis.Redis(host="127.0.0.1", port=pod.sentinel_port, socket_timeout=3)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
    # The `helm test` pod's script: it asks the sentinels for the primary through the
    # runner URLs, then checks the writer writes and the reader cannot.
    (test_pod,) = release.rendered.of_kind("Pod")
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    env.update(WRITER_URL=release.runner_url("writer"), READER_URL=release.runner_url("reader"))
    done = subprocess.run(["sh", "-c", test_pod["spec"]["containers"][0]["args"][0]], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: the sentinels name the primary" in done.stdout
    assert "ok: reader set -> NOPERM" in done.stdout
    assert "writer and reader credentials work" in done.stdout
    # The fleet exporter, as the chart runs it: the reader's Sentinel URL.
    from redis_gocache.store import counters
    from tests.test_exporter import ExporterProcess, value

    counters.push(writer, PREFIX, {"runs": 1, "gets": 7, "hits": 5})
    with ExporterProcess(release.runner_url("reader")) as exp:
        got = exp.scrape()
        assert value(got, "redis_gocache_fleet_up") == 1
        assert value(got, "redis_gocache_gets_total", prefix=PREFIX) == 7
    # Passwords never reach a config file: the ACL files hold hashes; the sentinel's own
    # file (in its emptyDir) holds only the internal sentinel user's password.
    for pod in release.pods:
        acl = (pod.root / "run" / "users.acl").read_text()
        assert password not in acl and release.auth["sentinel-password"] not in acl
        assert password not in (pod.root / "sentinel" / "sentinel.conf").read_text()


def test_go_build_survives_failover_and_a_new_runner_uses_the_promoted_replica(
        release: HaRelease, tmp_path: Path, go_env: dict[str, str]) -> None:
    url = release.runner_url()
    assert url.startswith("redis+sentinel://gocache-writer:")
    first = release.pods[0]
    writer = redis.Redis(host="127.0.0.1", port=first.redis_port, username="gocache-writer",
                         password=unquote(urlsplit(url).password or ""), socket_timeout=3)
    checkout = tmp_path / "checkout" / "src"
    write_module(checkout)
    a = make_runner(tmp_path, "A", checkout, go_env, url)
    a.env["REDIS_GOCACHE_BREAKER_COOLDOWN"] = str(COOLDOWN)

    def fail_over() -> None:
        # Mid-build: a sentinel of another pod fails the primary over, and the primary's
        # pod dies (both processes, SIGKILL) as on a lost node.
        release.sentinel(release.pods[1]).execute_command("SENTINEL", "FAILOVER", MASTER)
        first.kill()

    out, _ = a.build_and_run_through(
        lambda: len(list(writer.scan_iter(match=f"{PREFIX}a:*", count=1000))) >= 20,
        fail_over, start_timeout=90)
    assert out == HELLO
    a.take_stats()

    # The two live sentinels (the quorum) agree on a promoted replica.
    alive = release.pods[1:]
    wait_until("a promoted replica", lambda: release.named_primary(alive[0]) not in (
        None, first.redis_port), 30)
    promoted = release.pod_of_port(release.named_primary(alive[0]) or 0)
    wait_until("the two live pods to settle", lambda: release.settled(promoted, alive), 60)

    # A new runner, once any breaker A's helpers set has cooled down, is served from the
    # promoted replica: the only primary left, whose keyspace hits count its gets.
    time.sleep(COOLDOWN + 0.5)
    hits_before = int(release.redis(promoted).info("stats")["keyspace_hits"])
    b = make_runner(tmp_path, "B", checkout, go_env, url)
    assert b.build_and_run() == HELLO
    stats = b.take_stats()
    hits_after = int(release.redis(promoted).info("stats")["keyspace_hits"])
    # The 20 entries written before the failover were replicated; how much more of A's
    # build reached the new primary depends on when the failover landed.
    assert stats["remote_hits"] >= 15 and stats["get_errors"] == 0, stats
    assert hits_after - hits_before >= stats["remote_hits"], (hits_before, hits_after)

    # The killed pod comes back (a new pod: empty volumes) as a replica of the new primary.
    release.start_pod(first)
    wait_until("the returning pod to settle", lambda: release.settled(promoted, release.pods), 60)
    assert f"starting as replica of 127.0.0.1:{promoted.redis_port}" in first.log("redis")


def test_a_primary_back_before_the_sentinels_noticed_does_not_empty_the_cache(
        tmp_path: Path) -> None:
    """The primary's pod dies and comes back (new volumes: an empty Redis) before the
    sentinels call it down: they still name it the primary. It must not start as an empty
    primary, which its replicas would copy; it starts as a replica of a live peer."""
    slow = {"ha": {**HA_VALUES["ha"], "sentinel": {"downAfterMilliseconds": 60000,
                                                   "failoverTimeout": 5000}}}
    with running_release(slow, tmp_path) as release:
        first, second, _ = release.pods
        admin_keys = [f"{PREFIX}o:{i:064x}" for i in range(50)]
        url = urlsplit(release.runner_url())
        w = redis.Redis(host="127.0.0.1", port=first.redis_port, username="gocache-writer",
                        password=unquote(url.password or ""), socket_timeout=3)
        for key in admin_keys:
            w.set(key, b"x" * 100)
        def keys(pod: Pod) -> int:
            return int(release.redis(pod).info("keyspace").get("db0", {}).get("keys", 0))

        wait_until("the replicas to copy the keys",
              lambda: all(keys(p) >= 50 for p in release.pods[1:]), 20)
        first.kill()
        release.start_pod(first)  # at once: the sentinels still name it
        assert "the sentinels still name this pod the primary" in first.log("redis")
        starts = re.findall(r"starting as (.*)", first.log("redis"))
        assert starts[-1] in {f"replica of 127.0.0.1:{p.redis_port}" for p in release.pods[1:]}
        # It asked the sentinels to promote a replica, at once (down-after is a minute here).
        wait_until("a replica to be promoted", lambda: release.named_primary(second) not in (
            None, first.redis_port), 20)
        promoted = release.pod_of_port(release.named_primary(second) or 0)
        wait_until("the pods to settle", lambda: release.settled(promoted, release.pods), 30)
        # It copies a peer instead of being copied: the keys are back on it, and still on the
        # replicas.
        wait_until("the returning pod to copy its peer", lambda: keys(first) >= 50, 20)
        assert all(keys(p) >= 50 for p in release.pods[1:])
        w.close()


def test_ha_over_tls_with_the_ca_from_the_runner_config_map(tmp_path: Path) -> None:
    """tls.enabled with ha.enabled: Redis, replication and the sentinels speak TLS only, and a
    helper store reaches the primary through the rendered rediss+sentinel:// URL, verifying
    with the CA it finds in the runner ConfigMap."""
    from redis_gocache.store.base import Entry
    from redis_gocache.store.redis import RedisStore
    from tests.test_tls import _cert

    pki = tmp_path / "pki"
    pki.mkdir()
    ca = _cert(pki, "ca", None, ca=True)
    _cert(pki, "tls", ca, server=True)  # tls.crt / tls.key, as in the Secret
    values = {**HA_VALUES, "tls": {"enabled": True, "existingSecret": "gocache-tls",
                                   "ca": (pki / "ca.crt").read_text()}}
    with running_release(values, tmp_path, tls_dir=pki) as release:
        # Nothing in plain text: a client without TLS gets nowhere.
        plain = redis.Redis(host="127.0.0.1", port=release.pods[0].redis_port, socket_timeout=2,
                            retry=None)
        with pytest.raises(redis.exceptions.ConnectionError):
            plain.ping()
        url = release.runner_url()
        assert url.startswith("rediss+sentinel://")
        runner = release.rendered.get("ConfigMap", f"{FULLNAME}-runner")["data"]
        ca_file = tmp_path / "runner-ca.crt"
        ca_file.write_text(runner["ca.crt"])
        store = RedisStore(url, prefix=PREFIX, ttl=3600, inline_max=1024, timeout=5.0,
                           retries=1, max_connections=4, tls_ca=str(ca_file))
        body = os.urandom(2000)
        path = tmp_path / "out"
        path.write_bytes(body)
        entry = Entry(hashlib.sha256(body).digest(), len(body), time.time_ns())
        store.put(b"\x07" * 32, entry, str(path))
        got: list[bytes] = []
        assert store.get(b"\x07" * 32, got.append) == entry and b"".join(got) == body
        store.close()
        # And the replicas copied it over TLS (read as the writer: the sentinel user can
        # reach no key).
        password = unquote(urlsplit(url).password or "")
        for pod in release.pods[1:]:
            reader = redis.Redis(host="127.0.0.1", port=pod.redis_port, socket_timeout=3,
                                 username="gocache-writer", password=password, **release.tls)
            wait_until("the replica to copy the entry",
                  lambda r=reader: r.exists(f"{PREFIX}a:{'07' * 32}") == 1, 10)
            reader.close()
        # The helm test script, with its TLS flags, through the sentinels.
        (test_pod,) = release.rendered.of_kind("Pod")
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        env.update(WRITER_URL=url, READER_URL=release.runner_url("reader"))
        done = subprocess.run(["sh", "-c", test_pod["spec"]["containers"][0]["args"][0]],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "writer and reader credentials work" in done.stdout
