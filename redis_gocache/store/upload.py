"""Large outputs into their Redis blob keys, in pieces, and local files read for a put.

A blob above :data:`STREAM_CHUNK` is made at its full size under a temporary upload key,
filled piece by piece with ``SETRANGE``, then renamed to its blob key (TTL
:data:`UPLOAD_TTL` until then), so neither the helper nor Redis holds a whole large output
and no reader ever sees a partial blob. Errors are redis-py's, for the store to translate; a
local file that cannot be read raises :class:`LocalStoreError`, which is no Redis outage.
"""

from __future__ import annotations

from redis_gocache.exceptions import LocalStoreError, RemoteError

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from typing import IO

    import redis

STREAM_CHUNK = 4 * 1024 * 1024
"""Blobs larger than this travel in pieces this size (SETRANGE on the way in, GETRANGE on the
way out), so neither side holds a whole large output in memory: not the helper, and not
Redis, which copies a whole reply into its output buffers before it sends any of it."""

UPLOAD_TTL = 600
"""Seconds a half-finished streamed upload may linger before Redis drops it."""


def upload(client: redis.Redis, tkey: str, okey: str, path: str, size: int, ttl: int,
           clustered: bool) -> None:
    """The file at ``path`` (``size`` bytes) into the blob ``okey`` with TTL ``ttl``, by way
    of the upload key ``tkey`` (on a Cluster, one in the blob's slot)."""
    with open_local(path) as f:
        # The key is made at its full size first, then filled piece by piece at fixed
        # offsets. SETRANGE at an offset can be retried after a timeout without harm (an
        # APPEND that timed out may have landed, and its retry doubled the piece), and
        # the string never grows, so Redis copies nothing: growing it by APPEND made
        # Redis reallocate it once per piece, slow enough to hit the timeout.
        pipe = client.pipeline(transaction=False)
        pipe.setrange(tkey, size - 1, b"\0")
        pipe.expire(tkey, UPLOAD_TTL)
        pipe.execute()
        offset = 0
        while piece := read_piece(f):
            if offset + len(piece) <= size:  # A file that grew fails the check below.
                client.setrange(tkey, offset, piece)
            offset += len(piece)
    if offset != size:
        client.delete(tkey)
        raise RemoteError(f"the local file changed during the upload ({offset} of {size} "
                          "bytes)")
    if clustered:
        # redis-py refuses RENAME in a cluster pipeline; the blob keeps the upload key's
        # short TTL until the EXPIRE, and no record points at it before then.
        client.rename(tkey, okey)
        client.expire(okey, ttl)
        return
    pipe = client.pipeline(transaction=True)
    pipe.rename(tkey, okey)
    pipe.expire(okey, ttl)
    pipe.execute()


def read_file(path: str) -> bytes:
    """A small output's whole body."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise LocalStoreError(f"cannot read {path}: {exc.strerror}") from None


def open_local(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise LocalStoreError(f"cannot read {path}: {exc.strerror}") from None


def read_piece(f: IO[bytes]) -> bytes:
    try:
        return f.read(STREAM_CHUNK)
    except OSError as exc:
        raise LocalStoreError(f"cannot read {f.name}: {exc.strerror}") from None
