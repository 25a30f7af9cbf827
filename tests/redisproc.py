"""Start and stop private ``redis-server`` processes on free loopback ports.

Tests never touch a shared Redis on 6379: each server here binds 127.0.0.1 only, lives in a
temporary directory and is stopped by its pid. A missing ``redis-server`` is an error, not a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server is not installed: the tests need a real Redis "
            "(apt-get install -y redis-server)"
        )
    return path


class RedisServer:
    """A private ``redis-server`` on a free loopback port.

    ``extra_args`` are passed as command-line config (``["--maxmemory", "10mb"]``);
    ``config_file`` is an optional redis.conf to start from (its directives come first,
    then the loopback/port/persistence settings of this class, which win).
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        config_file: str | None = None,
        port: int | None = None,
        password: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="redis-gocache-redis-")
        self.extra_args = list(extra_args)
        self.config_file = config_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [redis_server_binary()]
        if self.config_file:
            args.append(self.config_file)
        args += [
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", os.path.join(self.dir, "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
                    # -NOAUTH also proves the server is up.
                    if reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR")):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), encoding="utf-8") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server by its pid (SIGKILL: no shutdown save) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts TCP connections but never answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Kill and start again on the same port: the data is gone (persistence is off)."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class TLSRedisServer(RedisServer):
    """A private ``redis-server`` that speaks TLS only (``--port 0 --tls-port``).

    ``cert``/``key`` are the server's, ``ca`` verifies clients when ``auth_clients`` is
    ``"yes"`` (Redis's default) or ``"optional"``.
    """

    def __init__(
        self, *, cert: str, key: str, ca: str, auth_clients: str = "yes",
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(extra_args)
        self.tls = (cert, key, ca, auth_clients)

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> TLSRedisServer:

        cert, key, ca, auth_clients = self.tls
        args = [
            redis_server_binary(),
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", cert,
            "--tls-key-file", key,
            "--tls-ca-cert-file", ca,
            "--tls-auth-clients", auth_clients,
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", os.path.join(self.dir, "redis.log"),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server (TLS) exited at start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self  # listening; the TLS handshake is the test's business
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server (TLS) did not start: {self.log_tail()}")
