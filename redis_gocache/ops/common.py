"""What the operator commands share: the Redis connection and numbers for people. The key
shapes are :mod:`redis_gocache.store.keys`'s.

Nothing here imports click or redis at module level: :mod:`redis_gocache.ops.fleet` and
:mod:`redis_gocache.ops.trim` run inside the helper, after its last answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from redis_gocache.config import Config
from redis_gocache.exceptions import ConfigError

if TYPE_CHECKING:
    from redis_gocache.store.redis import RedisStore

OPS_TIMEOUT = 5.0
"""Seconds an operator command waits on one Redis reply at least. The helper's own timeout
(half a second) is right for a build, too short for a ``SCAN`` batch on a loaded server."""

SCAN_COUNT = 1000
"""``COUNT`` hint of every ``SCAN`` an operator command sends."""

BATCH = 500
"""Keys per pipelined ``MEMORY USAGE`` or ``UNLINK`` round trip."""

def open_store(config: Config, timeout: float | None = None) -> RedisStore:
    """A :class:`RedisStore` for an operator command (nothing is sent yet)."""
    if not config.redis_url:
        raise ConfigError("no Redis URL: set REDIS_URL or --redis-url")
    from redis_gocache.store.redis import RedisStore

    return RedisStore.from_config(
        config, timeout=timeout if timeout is not None else max(config.timeout, OPS_TIMEOUT),
        max_connections=2)


def primaries(client: Any) -> list[Any]:
    """A client of each primary of a Redis Cluster (whose ``SCAN``, ``DBSIZE`` and ``INFO``
    are per node), or ``[client]`` for one server."""
    get_primaries = getattr(client, "get_primaries", None)
    if get_primaries is None:
        return [client]
    return [client.get_redis_connection(node) for node in get_primaries()]


def primaries_info(client: Any, *sections: str) -> list[dict[str, Any]]:
    """``INFO`` of ``sections``, one dict per primary (see :func:`primaries`)."""
    infos = []
    for node in primaries(client):
        info: dict[str, Any] = {}
        for section in sections:
            info.update(node.info(section))
        infos.append(info)
    return infos


@contextmanager
def translated(store: RedisStore) -> Iterator[None]:
    """redis-py's errors as ours (:class:`~redis_gocache.exceptions.RemoteError` and kin)."""
    # The store owns the translation table; reuse it rather than keep a second copy.
    with store.translate_errors():
        yield


def human_bytes(n: float) -> str:
    """``1.5 GiB``-style sizes for people (powers of 1024, as ``--max-size`` reads them)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def scrub(text: str, config: Config) -> str:
    """``text`` with the password replaced, wherever it came from (URL, file, environment)."""
    from redis_gocache.config import redact_url

    if config.redis_url:
        text = text.replace(config.redis_url, redact_url(config.redis_url))
    secrets = [config.password or ""]
    if config.redis_url and "@" in config.redis_url:
        auth = config.redis_url.partition("://")[2].rpartition("@")[0]
        secrets.append(auth.partition(":")[2])
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
