"""Private Redis topologies on loopback: a Redis Cluster and a Sentinel-watched primary.

Built from :class:`tests.redisproc.RedisServer`, so every process binds 127.0.0.1 only, lives
in a temporary directory and is stopped by its pid. Timeouts are short (a node is called
failed after a second) so that failure tests finish in seconds, not the minutes of the
production defaults.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable

import redis

from tests.redisproc import RedisServer, free_port, redis_server_binary

NODE_TIMEOUT_MS = 1000
"""``cluster-node-timeout`` and sentinel ``down-after-milliseconds`` of the test topologies."""


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    """Poll ``check`` until it is true (Redis and socket errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _info(port: int, section: str) -> dict[str, str]:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)
    try:
        return {str(k): str(v) for k, v in client.info(section).items()}
    finally:
        client.close()


class Cluster:
    """``primaries`` cluster nodes (no replicas) on free loopback ports, slots spread evenly.

    ``cluster-require-full-coverage no``: when a node dies, the others keep serving their slots,
    as docs/scaling.md tells users to configure.
    """

    def __init__(self, primaries: int = 3, extra_args: tuple[str, ...] = ()) -> None:
        self.nodes = [
            RedisServer([
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                # The bus port defaults to port + 10000, which may be taken or out of range.
                "--cluster-port", str(free_port()),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage", "no",
                *extra_args,
            ])
            for _ in range(primaries)
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """The helper's URL: one seed node is enough, the client learns the rest."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self) -> Cluster:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            for port in self.ports:
                wait_until(f"cluster node {port} to report ok",
                      lambda port=port: _info_cluster(port).get("cluster_state") == "ok", 30)
        except BaseException:
            self.cleanup()
            raise
        return self

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=5)

    def node_of(self, key: str | bytes) -> RedisServer:
        """The node serving ``key``'s slot (asked of a live node)."""
        for node in self.nodes:
            if node.proc is None:
                continue
            c = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2)
            try:
                slot = int(c.execute_command("CLUSTER KEYSLOT", key))
                for start, end, owner, *_ in c.execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        port = int(owner[1])
                        return next(n for n in self.nodes if n.port == port)
            finally:
                c.close()
        raise RuntimeError("no live node knows the key's slot")

    def kill(self, index: int) -> None:
        """Kill one node (SIGKILL) and wait until the others call it failed."""
        dead = self.nodes[index]
        dead.stop()
        for node in self.nodes:
            if node.proc is not None:
                wait_until(f"node {node.port} to see {dead.port} fail",
                      lambda node=node: _sees_fail(node.port, dead.port), 30)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _cluster_command(port: int, *args: str) -> object:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def _info_cluster(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of one node. (Sent as two arguments, redis-py leaves the reply as
    text; as one, it would parse it.)"""
    text = str(_cluster_command(port, "CLUSTER", "INFO"))
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _sees_fail(port: int, dead: int) -> bool:
    """Whether node ``port`` flags node ``dead`` as failed in ``CLUSTER NODES``."""
    for line in str(_cluster_command(port, "CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1].split("@")[0] == f"127.0.0.1:{dead}":
            return "fail" in fields[2].split(",")
    return False


class SentinelServer:
    """One ``redis-server --sentinel`` on a free loopback port, watching ``service``."""

    def __init__(self, primary_port: int, service: str) -> None:
        self.port = free_port()
        self.service = service
        self.dir = tempfile.mkdtemp(prefix="redis-gocache-sentinel-")
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w", encoding="ascii") as f:
            # Sentinel rewrites this file as it learns the topology, so it must be writable.
            f.write(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                "daemonize no\n"
                f"dir {self.dir}\n"
                f"logfile {os.path.join(self.dir, 'sentinel.log')}\n"
                f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
                f"sentinel down-after-milliseconds {service} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {service} 5000\n"
                f"sentinel parallel-syncs {service} 1\n"
            )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelServer:
        self.proc = subprocess.Popen([redis_server_binary(), self.conf, "--sentinel"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_until(f"sentinel on {self.port}", self._ready, 10)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"sentinel exited at start: {self.log_tail()}")
        return self.primary() is not None

    def primary(self) -> tuple[str, int] | None:
        """The primary this sentinel currently names for the service."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                             decode_responses=True)
        try:
            addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        finally:
            client.close()
        return (str(addr[0]), int(addr[1])) if addr else None

    def failover(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            client.execute_command("SENTINEL", "FAILOVER", self.service)
        finally:
            client.close()

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "sentinel.log"), encoding="utf-8") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A primary, one replica of it, and one sentinel (quorum 1) watching them."""

    def __init__(self, service: str = "gocache") -> None:
        self.service = service
        self.primary = RedisServer()
        self.replica = RedisServer()
        self.sentinel: SentinelServer | None = None

    @property
    def url(self) -> str:
        assert self.sentinel is not None
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}/0"

    def start(self) -> SentinelGroup:
        try:
            self.primary.start()
            self.replica.extra_args += ["--replicaof", "127.0.0.1", str(self.primary.port)]
            self.replica.start()
            wait_until("the replica to sync",
                  lambda: _info(self.replica.port, "replication").get("master_link_status")
                  == "up", 30)
            self.sentinel = SentinelServer(self.primary.port, self.service).start()
            wait_until("the sentinel to find the replica", self._sentinel_knows_replica, 30)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _sentinel_knows_replica(self) -> bool:
        assert self.sentinel is not None
        client = redis.Redis(host="127.0.0.1", port=self.sentinel.port, socket_timeout=2)
        try:
            replicas = client.execute_command("SENTINEL", "REPLICAS", self.service)
        finally:
            client.close()
        # SENTINEL FAILOVER answers NOGOODSLAVE until the sentinel has talked to the replica.
        return any(r.get(b"flags", r.get("flags")) in (b"slave", "slave")
                   and r.get(b"master-link-status", r.get("master-link-status")) in (b"ok", "ok")
                   for r in replicas)

    def current_primary_port(self) -> int:
        assert self.sentinel is not None
        addr = self.sentinel.primary()
        assert addr is not None
        return addr[1]

    def wait_failover(self, old_port: int, timeout: float = 30) -> int:
        """Wait until the sentinel names another primary and that one accepts writes."""
        wait_until("the failover", lambda: self.current_primary_port() != old_port, timeout)
        port = self.current_primary_port()
        wait_until("the new primary to take writes",
              lambda: _info(port, "replication").get("role") == "master", timeout)
        old = self.primary if self.primary.port == old_port else self.replica
        if old.proc is not None:
            # Until the sentinel demotes it, the old primary still takes the writes of clients
            # connected to it (and loses them when it resyncs).
            wait_until("the old primary to become a replica",
                  lambda: _info(old_port, "replication").get("role") == "slave", timeout)
        return port

    def cleanup(self) -> None:
        if self.sentinel is not None:
            self.sentinel.cleanup()
        self.replica.cleanup()
        self.primary.cleanup()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
