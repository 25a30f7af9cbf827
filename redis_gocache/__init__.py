"""redis-gocache: a GOCACHEPROG helper that shares Go's build cache through Redis.

Public names are loaded on first use (PEP 562), so ``import redis_gocache`` stays cheap:
cmd/go starts a helper for every ``go`` command, and the first answer must come at once.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing costs more than the rest of the path to the
# capability line (mypy honours the constant by its name).
TYPE_CHECKING = False

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "redis_gocache.config",
    "Cache": "redis_gocache.cache",
    "Server": "redis_gocache.server",
    "Stats": "redis_gocache.stats",
    "Entry": "redis_gocache.store.entry",
    "RemoteStore": "redis_gocache.store.base",
    "DiskStore": "redis_gocache.store.disk",
    "RedisStore": "redis_gocache.store.redis",
    "MemoryStore": "redis_gocache.store.memory",
    "GoCacheError": "redis_gocache.exceptions",
    "ConfigError": "redis_gocache.exceptions",
    "ProtocolError": "redis_gocache.exceptions",
    "LocalStoreError": "redis_gocache.exceptions",
    "RemoteError": "redis_gocache.exceptions",
    "RejectedEntry": "redis_gocache.exceptions",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from typing import Any

    from redis_gocache.cache import Cache as Cache
    from redis_gocache.config import Config as Config
    from redis_gocache.server import Server as Server
    from redis_gocache.stats import Stats as Stats
    from redis_gocache.store.base import RemoteStore as RemoteStore
    from redis_gocache.store.disk import DiskStore as DiskStore
    from redis_gocache.store.entry import Entry as Entry
    from redis_gocache.store.memory import MemoryStore as MemoryStore
    from redis_gocache.store.redis import RedisStore as RedisStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'redis_gocache' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
