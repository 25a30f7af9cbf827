"""The exceptions of redis-gocache, in one tree.

::

    GoCacheError
    ├── ConfigError          bad flag, environment variable or password file
    ├── ProtocolError        a request that breaks the GOCACHEPROG wire format
    │   └── FatalProtocolError   ... so badly that the stream cannot be resynchronised
    ├── LocalStoreError      the local directory cannot take a file (disk full, read-only)
    ├── RejectedEntry        a remote entry failed verification: served as a miss, counted
    └── RemoteError          Redis refused a command or answered nonsense
        ├── RemoteUnavailable    Redis cannot be reached or did not answer in time
        ├── ShardUnavailable     one Redis Cluster node is down: its keys miss, the rest serve
        ├── RemoteOutOfMemory    Redis is full (maxmemory under noeviction): reads still work
        ├── RemoteMisconfigured  the Redis settings proved unusable when first used (bad URL)
        └── PermissionDenied     Redis said NOPERM or READONLY: reads work, writes do not

Third-party errors (``redis.exceptions.*``, ``OSError`` from the local directory) are
translated into these where they enter: Redis's in :mod:`redis_gocache.store.errors` (one
table for both Redis clients), the local directory's in the stores.
"""

from __future__ import annotations


class GoCacheError(Exception):
    """Base class of every error raised on purpose by redis-gocache."""


class ConfigError(GoCacheError):
    """A setting has a value the helper cannot use; the message names the setting."""


class ProtocolError(GoCacheError):
    """A request breaks the wire format. ``request_id`` is set when the request's ID was read,
    so the helper can answer that request with ``Err`` and go on."""

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class FatalProtocolError(ProtocolError):
    """The input stream is broken beyond resynchronisation (no ID, no JSON, a huge line)."""


class LocalStoreError(GoCacheError):
    """The local directory cannot hold a file: the one failure that may fail a put."""


class RemoteError(GoCacheError):
    """Redis could not serve a command. The helper degrades to misses; it never fails a build.

    ``code`` is the error reply's code (``NOPERM``, ``CLUSTERDOWN``, ...) when Redis sent one
    (:mod:`redis_gocache.store.errors`)."""

    code: str | None = None


class RemoteUnavailable(RemoteError):
    """Redis cannot be reached, or did not answer within the timeout."""


class ShardUnavailable(RemoteError):
    """One node of a Redis Cluster is down or unreachable. Its keys are misses for a while;
    the other nodes keep serving, so this never switches Redis off as a whole."""


class RemoteOutOfMemory(RemoteError):
    """Redis refused a write because it reached ``maxmemory`` (``OOM``)."""


class RemoteMisconfigured(RemoteError):
    """A Redis setting turned out unusable when the first command was to be sent (a URL
    redis-py cannot parse, TLS files without ``rediss://``). Not an outage: Redis is left
    alone for the rest of the run, and the breaker is not tripped."""


class PermissionDenied(RemoteError):
    """Redis refused a write: for lack of permission (ACL ``NOPERM``), or because it is a
    read-only replica (``READONLY``)."""


class RejectedEntry(GoCacheError):
    """An entry from the remote store failed a check (missing field, wrong size or hash, blob
    gone). It is served as a miss and counted under ``kind``."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


def missing_module(exc: ImportError) -> str:
    """The one line for a module that the interpreter running the helper cannot import: a
    helper started by another interpreter than the one redis-gocache was installed for (say,
    another virtual environment's) still serves from local disk, and says what to fix."""
    import sys

    return (f"the Python module {exc.name or exc} is not installed for {sys.executable}; "
            "run the redis-gocache command of the environment it was installed in, or "
            "reinstall it there")
