"""The Redis store's two clients, each made on first use, and the choice between them, made once.

* redis-py (:meth:`Clients.redis_py`) sends the puts and uploads, and everything on TLS, Redis
  Cluster, Sentinel or a URL with options. Its import costs about 100 ms (it brings asyncio), so
  it is made when the first such command is sent, not before.
* The *reader* (:meth:`Clients.reader`) sends the reads and the small writes after the last
  answer (TTL refreshes, the prefetch manifest, fleet counters). On a plain single-server URL
  it is :class:`~redis_gocache.store.resp.LightClient`; anywhere else :class:`PyReader`, the
  same methods on redis-py. Callers see one interface
  (:class:`~redis_gocache.store.base.Reader`) and never ask which it is.

Both raise redis-py's or our exceptions; :mod:`redis_gocache.store.errors` translates them,
at the store's edge.
"""

from __future__ import annotations

import sys
import threading

from redis_gocache.config import redact_url
from redis_gocache.exceptions import ConfigError, RemoteMisconfigured, missing_module
from redis_gocache.store.resp import HIREDIS, LightClient, plain_address
from redis_gocache.store.topology import CLUSTER, SINGLE, is_tls, kind_of
from redis_gocache.store.topology import connect as connect_topology

TYPE_CHECKING = False  # not typing's: a new runner's first Redis hit waits for this module
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import redis

    from redis_gocache.store.base import Reader, Sink


class PyReader:
    """The :class:`~redis_gocache.store.base.Reader` interface on a redis-py client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return self.client.hgetall(key)  # type: ignore[return-value]

    def get(self, key: str) -> bytes | None:
        return self.client.get(key)  # type: ignore[return-value]

    def strlen(self, key: str) -> int:
        return self.client.strlen(key)

    def set(self, key: str, value: bytes, ex: int) -> None:
        self.client.set(key, value, ex=ex)

    def pipeline(self, transaction: bool = False) -> Any:
        return self.client.pipeline(transaction=transaction)

    def stream(self, command: Sequence[str], size: int, sink: Sink) -> int | None:
        """The bulk-string reply to ``command`` to ``sink`` if it is ``size`` bytes long;
        returns its length, ``None`` for a nil reply (as the light client's ``stream``)."""
        data: bytes | None = self.client.execute_command(*command)  # type: ignore[no-untyped-call]
        if data is None:
            return None
        if len(data) == size and data:
            sink(data)
        return len(data)

    def close(self) -> None:
        """Nothing: the redis-py client is the store's, closed with it."""


class Clients:
    """The clients of one Redis store (see the module docstring); safe to share by threads."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        retries: int,
        max_connections: int,
        password: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.url = url
        self.clustered = kind_of(url) == CLUSTER
        self._conn_kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_connections": max_connections,
            "timeout": timeout,  # wait for a free pooled connection
            "health_check_interval": 0,
        }
        if password is not None:
            self._conn_kwargs["password"] = password
        if tls_ca:
            self._conn_kwargs["ssl_ca_certs"] = tls_ca
        if tls_cert:
            self._conn_kwargs["ssl_certfile"] = tls_cert
        if tls_key:
            self._conn_kwargs["ssl_keyfile"] = tls_key
        self._retries = retries
        self._password = password
        self._timeout = timeout
        self._lock = threading.Lock()
        self._reader_lock = threading.Lock()  # not _lock: choosing may make the redis-py client
        self.client: redis.Redis | None = None
        """The redis-py client once made (a test may set its own)."""
        self._reader: Reader | None = None

    def redis_py(self) -> redis.Redis:
        """The redis-py client, made (and redis imported) on first use."""
        if self.client is None:
            with self._lock:
                if self.client is None:
                    try:
                        self.client = self._connect()
                    except ConfigError as exc:
                        raise RemoteMisconfigured(str(exc)) from None
                    except ImportError as exc:
                        raise RemoteMisconfigured(missing_module(exc)) from None
        return self.client

    def reader(self) -> Reader:
        """The client for reads and the end-of-run writes, chosen on first use: the light
        client where it can serve (plain single-server URLs, no TLS, hiredis importable),
        which spares a helper redis-py's import until it uploads; else redis-py's."""
        reader = self._reader
        if reader is None:
            with self._reader_lock:
                reader = self._reader
                if reader is None:
                    reader = self._reader = self._choose_reader()
        return reader

    def _choose_reader(self) -> Reader:
        address = None
        if not self.clustered and not any(k.startswith("ssl_") for k in self._conn_kwargs):
            address = plain_address(self.url, self._password)
        if address is not None:
            return LightClient(address, self._timeout)
        if not HIREDIS:
            sys.stderr.write("redis-gocache: hiredis is not installed for this Python; "
                             "reading through redis-py instead\n")
        return PyReader(self.redis_py())

    def _connect(self) -> redis.Redis:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        kwargs = dict(self._conn_kwargs)
        if not is_tls(self.url):
            for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
                if kwargs.pop(key, None):
                    raise ConfigError("TLS options need a rediss:// URL")
        if kind_of(self.url) != SINGLE:
            return connect_topology(
                self.url, kwargs, Retry(ExponentialBackoff(cap=0.1, base=0.01), self._retries))
        try:
            pool = redis.BlockingConnectionPool.from_url(
                self.url,
                # Bounds of one stalled call: connect and each reply wait socket timeouts, a
                # busy pool waits ``timeout``; each retry pays them again after a short backoff.
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), self._retries),
                **kwargs,
            )
        except (ValueError, TypeError):
            # Not the parser's message: for a URL like redis://:pa/ss@host it quotes a piece of
            # the password as the "port".
            raise ConfigError(
                f"cannot parse the Redis URL {redact_url(self.url)} (a password with / ? # or "
                "@ must be percent-encoded, or given in REDIS_PASSWORD)"
            ) from None
        return redis.Redis(connection_pool=pool)

    def close(self) -> None:
        """Close every socket; closing must not fail an exit."""
        if self._reader is not None:
            self._reader.close()
        if self.client is not None:
            try:
                self.client.connection_pool.disconnect()
            except Exception:  # noqa: BLE001 - closing sockets must not fail an exit
                pass
