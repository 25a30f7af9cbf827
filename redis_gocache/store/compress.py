"""zstd for outputs on their way to Redis or the spill directory, and back.

Go's build outputs (archives, object files, export data) shrink about fourfold with zstd,
and Redis memory and the network out of one Redis are what the cache tier costs. An output
above :data:`MIN_SIZE` is compressed at :data:`LEVEL` and stored compressed only if that saves
at least :data:`MIN_SAVING` of it; else it is stored as is (an already-compressed file costs
the attempt only). The record says which (:mod:`redis_gocache.store.record`).

Both directions stream, so no whole large output is held in memory: :func:`compress_file`
writes the compressed copy of a local file to another local file, piece by piece, and
:class:`Decompressing` is a sink that expands the pieces a store streams into the sink behind
it, at most :data:`OUT_PIECE` at a time, and refuses more output than the record's size.

The binding is the standard library's ``compression.zstd`` (Python 3.14+) or, before that, its
backport ``backports.zstd`` (same API): imported on first use, never on the way to a local
hit nor before a Redis hit that is not compressed.
"""

from __future__ import annotations

import os

from redis_gocache.exceptions import LocalStoreError, RejectedEntry

TYPE_CHECKING = False  # not typing's: a new runner's first Redis hit imports this module
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Protocol

    from redis_gocache.store.base import Sink

    class Digest(Protocol):
        def update(self, data: bytes, /) -> None: ...

ZSTD = "zstd"
NONE = "none"
CHOICES = (ZSTD, NONE)
"""The values of ``--compression``."""

MIN_SIZE = 1024
"""Outputs up to this many bytes are stored as they are: what compressing them would save is
less than a record's own overhead in Redis."""

MIN_SAVING = 0.1
"""An output is stored compressed only if that saves at least this fraction of its size."""

LEVEL = 3
"""zstd's level, its own default. Measured with this binding on Go's tool binaries (35 MB) on
the shared 2-CPU VM: level 1 2.32x at 230 MB/s, level 3 2.50x at 151 MB/s, level 6 2.65x at
40 MB/s, decompression 300-400 MB/s for all three; on `go build std`'s archives level 3 gives
3.9x, level 1 3.8x. Compression runs on the upload path, off the build's, and the level does not
change what a reader pays, so no option for it."""

IN_PIECE = 1024 * 1024
"""Bytes read from a local file per step when compressing it."""

PROBE = 4 * 1024 * 1024
"""After this much of a large output, one that has not shrunk enough so far is stored raw."""

OUT_PIECE = 64 * 1024
"""Most bytes one step of decompression hands to the sink: a 4 MiB piece from Redis may
expand many times over, and no more than this of it is held at once. Small enough that the
piece is still in the CPU's cache when the sink hashes and writes it, and that its buffer
stays under glibc's mmap threshold (128 KiB), so it is reused rather than mapped, faulted in
and unmapped each time: a new runner's prefetch of `go build std` (173 MiB) took 0.64 s of
CPU with 1 MiB pieces, 0.59 s with these (tmpfs, two threads)."""

_module: ModuleType | None = None


def zstd() -> ModuleType:
    """The zstd binding, imported on first use."""
    global _module
    if _module is None:
        try:
            from compression import zstd as module  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd as module
        _module = module
    return _module


def worth(size: int, compressed: int) -> bool:
    """Whether ``compressed`` bytes are enough of a saving over ``size`` to store them."""
    return compressed <= size * (1 - MIN_SAVING)


def compress_bytes(data: bytes) -> bytes | None:
    """The compressed form of a small output, or ``None`` if it is not worth storing so."""
    if len(data) <= MIN_SIZE:
        return None
    packed: bytes = zstd().compress(data, LEVEL)
    return packed if worth(len(data), len(packed)) else None


def compress_file(src: str, dst: str, size: int) -> int | None:
    """Write the compressed form of the local file ``src`` (``size`` bytes) to the new file
    ``dst``; its length, or ``None`` (``dst`` removed) when it is not worth storing so. Gives
    up as soon as the output passes the worthwhile size. :class:`LocalStoreError` if a local
    file cannot be read or written."""
    if size <= MIN_SIZE:
        return None
    limit = size * (1 - MIN_SAVING)
    module = zstd()
    compressor = module.ZstdCompressor(LEVEL)
    # The frame header carries the size, which lets a reader check it before expanding.
    compressor.set_pledged_input_size(size)
    written = read = 0
    try:
        with open(src, "rb") as f, open(dst, "xb") as out:
            while piece := f.read(IN_PIECE):
                read += len(piece)
                written += out.write(compressor.compress(piece))
                # An output that does not shrink (already compressed, random) is known after
                # a few pieces: stop there rather than compress the rest of it for nothing.
                if written > limit or (read >= PROBE and not worth(read, written)):
                    written = size
                    break
            else:
                written += out.write(compressor.flush())
    except OSError as exc:
        _remove(dst)
        raise LocalStoreError(f"cannot compress {src}: {exc.strerror}") from None
    except module.ZstdError as exc:  # the file's size changed under us: pledged size wrong
        _remove(dst)
        raise LocalStoreError(f"cannot compress {src}: {exc}") from None
    if written > limit:
        _remove(dst)
        return None
    return written


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Decompressing:
    """A sink that expands a zstd stream into ``sink``, for an output of ``size`` bytes.

    Call :meth:`finish` after the last piece: it raises :class:`RejectedEntry` unless exactly
    one complete frame of ``size`` bytes came through. With ``digest`` (a ``hashlib`` object)
    the expanded bytes are hashed too. A stream that is not zstd, is corrupt, or expands past
    ``size`` raises :class:`RejectedEntry` at once. Not a bound method and without
    ``clone_from``: the spill directory's copy-the-file fast path must not see through it.
    """

    __slots__ = ("_sink", "_size", "_done", "_digest", "_dec", "_error")

    def __init__(self, sink: Sink, size: int, digest: Digest | None = None) -> None:
        module = zstd()
        self._sink, self._size, self._done, self._digest = sink, size, 0, digest
        self._dec = module.ZstdDecompressor()
        self._error: type[Exception] = module.ZstdError

    def __call__(self, piece: bytes | memoryview) -> None:
        dec = self._dec
        if dec.eof:
            raise RejectedEntry("bad_zstd", "compressed output has data after its end")
        try:
            out = dec.decompress(piece, OUT_PIECE)
            while True:
                self._emit(out)
                if dec.eof or dec.needs_input:
                    break
                out = dec.decompress(b"", OUT_PIECE)
        except self._error:
            raise RejectedEntry("bad_zstd", "compressed output is corrupt") from None
        if dec.eof and dec.unused_data:
            raise RejectedEntry("bad_zstd", "compressed output has data after its end")

    def _emit(self, out: bytes) -> None:
        if not out:
            return
        self._done += len(out)
        if self._done > self._size:
            raise RejectedEntry("bad_zstd", "compressed output expands past its record's size")
        if self._digest is not None:
            self._digest.update(out)
        self._sink(out)

    def finish(self) -> None:
        """Check that the stream ended where it should."""
        if not self._dec.eof or self._done != self._size:
            raise RejectedEntry("bad_zstd", "compressed output is short of its record's size")


def decompress_bytes(data: bytes, size: int) -> bytes:
    """A small compressed output (an inline body), expanded and checked against ``size``."""
    parts: list[bytes] = []
    sink = Decompressing(lambda piece: parts.append(bytes(piece)), size)
    sink(data)
    sink.finish()
    return b"".join(parts)


__all__ = ["CHOICES", "Decompressing", "compress_bytes", "compress_file", "decompress_bytes",
           "zstd"]
