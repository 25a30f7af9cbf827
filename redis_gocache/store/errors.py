"""Redis's error replies and redis-py's exceptions, translated into ours: the one table.

An error reply starts with a code (``-NOPERM this user has no permissions ...``). Both Redis
clients translate through :data:`REPLY_CODES`: the light client
(:mod:`redis_gocache.store.resp`) reads the code off the reply, and redis-py's exceptions carry
it as ``status_code`` (or, for the few redis-py raises on its own, their type names it:
:data:`_REDIS_PY_TYPES`). So a reply becomes the same exception on either path, and
``tests/test_errors.py`` feeds both clients the same replies to keep it so.

What each of our exceptions makes the helper do (:class:`redis_gocache.remote.Remote`):
``RemoteUnavailable`` switches Redis off for the run at once and trips the breaker;
``PermissionDenied`` and ``RemoteOutOfMemory`` stop writes only; a plain ``RemoteError`` is a
lost entry, and Redis is switched off after a few in a row. The error's ``code`` stays on the
exception, so the Cluster guard (:mod:`redis_gocache.store.cluster`) can tell a node that lost
its slots from a command that failed.

No import here beyond our exceptions: a new runner's first Redis hit goes through this module.
"""

from __future__ import annotations

import sys

from redis_gocache.exceptions import (
    PermissionDenied,
    RemoteError,
    RemoteMisconfigured,
    RemoteOutOfMemory,
    RemoteUnavailable,
)

REPLY_CODES: dict[str, tuple[type[RemoteError], str]] = {
    # Wrong or missing credentials are as good as down: nothing will work until fixed.
    "NOAUTH": (RemoteUnavailable, "Redis wants a password"),
    "WRONGPASS": (RemoteUnavailable, "Redis refused the credentials"),
    # The ACL reader user: reads work, writes stop quietly.
    "NOPERM": (PermissionDenied, "Redis denied the command"),
    # maxmemory under noeviction: reads work, writes stop.
    "OOM": (RemoteOutOfMemory, "Redis is out of memory"),
    # A replica (after a failover the URL may point at one): reads work, writes stop.
    "READONLY": (PermissionDenied, "Redis is a read-only replica"),
    # States in which the server answers every command with an error, for seconds or more.
    "LOADING": (RemoteUnavailable, "Redis is loading its dataset"),
    "MASTERDOWN": (RemoteUnavailable, "the Redis replica lost its primary"),
    "BUSY": (RemoteUnavailable, "Redis is busy running a script"),
    # A Cluster node without its slots: the Cluster guard takes the node for down.
    "CLUSTERDOWN": (RemoteError, "the Redis Cluster is down"),
    "TRYAGAIN": (RemoteError, "the Redis Cluster is resharding"),
    # Redirects reach a client only when it is not a Cluster client: the URL names one node
    # of a Cluster without redis+cluster://, and every key on other nodes fails.
    "MOVED": (RemoteError, "a Redis Cluster node redirected the command"),
    "ASK": (RemoteError, "a Redis Cluster node redirected the command"),
}
"""Error code -> (our exception, what to say). Any other code is a plain :class:`RemoteError`."""

ERR_MESSAGES: dict[str, tuple[type[RemoteError], str]] = {
    "max number of clients reached": (RemoteUnavailable, "Redis has no room for a client"),
    "invalid password": (RemoteUnavailable, "Redis refused the credentials"),
}
"""Plain ``ERR`` replies that mean more than a refused command (older servers spell some of
the codes above this way), by their exact text."""

NODE_DOWN = "CLUSTERDOWN"
"""The code of an error that means a Cluster node lost its slots (redis-py's
``SlotNotCoveredError``, which is no reply, gets it too)."""

_REDIS_PY_TYPES = (
    # Most specific first: MasterDownError is a ClusterDownError, MovedError an AskError.
    ("NoPermissionError", "NOPERM"),
    ("OutOfMemoryError", "OOM"),
    ("ReadOnlyError", "READONLY"),
    ("BusyLoadingError", "LOADING"),
    ("AuthenticationError", "WRONGPASS"),
    ("MasterDownError", "MASTERDOWN"),
    ("ClusterDownError", "CLUSTERDOWN"),
    ("SlotNotCoveredError", NODE_DOWN),
    ("TryAgainError", "TRYAGAIN"),
    ("MovedError", "MOVED"),
    ("AskError", "ASK"),
)
"""redis-py's exception types by the error code they stand for, for exceptions that carry no
``status_code`` (raised by redis-py itself, or annotated by its Cluster pipeline)."""


def from_reply(text: str) -> RemoteError:
    """Our exception for an error reply (its text without the leading ``-``)."""
    code, _, rest = text.partition(" ")
    found = REPLY_CODES.get(code)
    if found is None and code == "ERR":
        found = ERR_MESSAGES.get(rest)
    kind, lead = found if found is not None else (RemoteError, "Redis refused a command")
    exc = kind(f"{lead}: {text}")
    exc.code = code if code.isupper() else None
    return exc


def from_redis_py(exc: BaseException) -> RemoteError | None:
    """Our exception for one of redis-py's or a socket's; ``None`` for anything else."""
    if isinstance(exc, OSError):
        return _unavailable(exc)
    if "redis" not in sys.modules:
        return None  # Not redis-py's: it is not even imported.
    import redis.exceptions as rex

    if not isinstance(exc, (rex.RedisError, rex.RedisClusterException)):
        return None
    text = str(exc)
    code = getattr(exc, "status_code", None)
    if not code:
        names = {cls.__name__ for cls in type(exc).__mro__}
        code = next((c for name, c in _REDIS_PY_TYPES if name in names), None)
    if isinstance(exc, rex.ResponseError) or code in REPLY_CODES or code == "ERR":
        if not code:
            code = text.partition(" ")[0]  # a reply redis-py has no code for: it kept it
        # redis-py cuts the code it knows off the message; put it back, as the reply read.
        return from_reply(text if text.startswith(f"{code} ") or text == code
                          else f"{code} {text}")
    if isinstance(exc, rex.InvalidResponse):
        # Something answers, but not Redis (an HTTP server on the port, say).
        return RemoteMisconfigured(f"the server does not speak Redis ({text})")
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError)):
        return _unavailable(exc)
    # RedisClusterException is not a RedisError: a slot no node serves, a pipeline that spans
    # slots.
    return RemoteError(f"{type(exc).__name__}: {text}")


def _unavailable(exc: BaseException) -> RemoteUnavailable:
    """A socket that failed, was reset or timed out."""
    return RemoteUnavailable(f"{type(exc).__name__}: {exc}")
