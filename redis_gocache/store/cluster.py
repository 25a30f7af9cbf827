"""Keeping one dead Redis Cluster node from costing the whole cache.

A node that failed is remembered for :data:`DEAD_NODE_SECONDS`: commands on its keys raise
:class:`ShardUnavailable` at once, without a network round trip, and a failure becomes
:class:`ShardUnavailable` too, which the guard (:class:`redis_gocache.remote.Remote`) answers
with a miss but does not take for an outage. Only when every primary has failed is Redis
unavailable. A node has failed when a command on it raised :class:`RemoteUnavailable`, or an
error whose code says its slots are gone (:data:`redis_gocache.store.errors.NODE_DOWN`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from redis_gocache.exceptions import RemoteError, RemoteUnavailable, ShardUnavailable
from redis_gocache.store.errors import NODE_DOWN

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

DEAD_NODE_SECONDS = 30.0
"""How long a Redis Cluster node that failed is left alone (its keys are misses meanwhile)."""


class NodeGuard:
    """The dead nodes of one Cluster client, and the check around each command."""

    def __init__(self) -> None:
        self._dead: dict[str, float] = {}  # node name -> monotonic time to retry

    @contextmanager
    def around(self, get_client: Callable[[], Any], keys: Sequence[str]) -> Iterator[None]:
        """Run the command on ``keys`` (see the module docstring). ``get_client`` returns the
        redis-py Cluster client, or ``None`` before it is made: asked again after a failure,
        since the first command makes the client inside this block."""
        client = get_client()
        nodes = self._nodes_of(client, keys) if client is not None else []
        now = time.monotonic()
        down = [n for n in nodes if self._dead.get(n, 0.0) > now]
        if down:
            raise ShardUnavailable(f"Redis Cluster node {down[0]} is down")
        try:
            yield
        except RemoteUnavailable as exc:
            self._failed(get_client(), nodes, keys, exc)
        except ShardUnavailable:
            raise
        except RemoteError as exc:
            if exc.code == NODE_DOWN:  # a node that died takes its slots along
                self._failed(get_client(), nodes, keys, exc)
            raise

    def _failed(self, client: Any, nodes: list[str], keys: Sequence[str],
                exc: RemoteError) -> None:
        if not nodes and client is not None:
            nodes = self._nodes_of(client, keys)  # the client was made by this command
        until = time.monotonic() + DEAD_NODE_SECONDS
        for node in nodes:
            self._dead[node] = until
        try:
            primaries = len(client.get_primaries()) if client is not None else 0
        except Exception:  # noqa: BLE001 - no topology known: assume the worst
            primaries = 0
        dead = sum(1 for t in self._dead.values() if t > time.monotonic())
        if primaries == 0 or dead >= primaries:
            raise RemoteUnavailable(f"every Redis Cluster primary failed: {exc}") from None
        which = ", ".join(nodes) or "?"
        raise ShardUnavailable(f"Redis Cluster node {which} failed: {exc}") from None

    @staticmethod
    def _nodes_of(client: Any, keys: Sequence[str]) -> list[str]:
        names: list[str] = []
        for key in keys:
            try:
                name = client.get_node_from_key(key).name
            except Exception:  # noqa: BLE001 - an unknown slot map: no node to blame
                continue
            if name not in names:
                names.append(name)
        return names
