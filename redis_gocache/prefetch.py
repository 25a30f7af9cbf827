"""Prefetching for new runners: fetch what the last run of the same ``go`` command needed.

cmd/go keeps at most GOMAXPROCS requests in flight, so a new runner (empty local directory,
warm Redis) pays one Redis round trip per get, one or two at a time. But CI runs the same
commands in the same place again and again: at the end of a run the helper records the action
ids cmd/go asked for, in order (a *manifest*, ``<prefix>m:<tag>`` in Redis); a helper that has
not run that command before reads the manifest at start and fetches those entries with several
threads while cmd/go works, so most of cmd/go's gets find their file already local.

The *tag* names "the same go command": the working directory, cmd/go's arguments (read from
``/proc/<parent>/cmdline``) and the environment variables that change action ids. A local
marker file ``m/<tag>`` says "this runner has run this command before": then nothing is
prefetched and, on a fully local run, Redis is not even imported.

Prefetched entries go through the same verification as any Redis hit.
"""

from __future__ import annotations

import os

from redis_gocache.store.disk import touch_private
from redis_gocache.store.layout import COMMANDS
from redis_gocache.tags import tag
from redis_gocache.wire import ID_SIZE

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from concurrent.futures import ThreadPoolExecutor

    from redis_gocache.cache import Cache
    from redis_gocache.remote import Remote

PREFETCH_THREADS = 2
"""Threads fetching ahead of cmd/go, a batch each at a time. Hashing, file writes and socket
reads release the GIL, so a second thread keeps Redis busy while the first writes files; more
threads only trade the GIL back and forth (measured on two cores: 4 threads 0.84 s, 2 threads
0.79 s for a new runner's `go build std` on tmpfs)."""

PREFETCH_BATCH = 32
"""Action ids per pipelined round trip: inline records come back in one reply, and a thread
that holds the GIL for a whole batch hands it over far less often than one per entry."""

MIN_MANIFEST = 20
"""Runs asking for fewer action ids (``go env``, ``go version``) record no manifest."""

MAX_MANIFEST = 200_000
"""Most action ids one manifest holds (6.4 MB)."""

TAG_ENV = ("GOOS", "GOARCH", "GOFLAGS", "CGO_ENABLED", "GOEXPERIMENT", "GOAMD64", "GOARM",
           "GO386", "GOARM64", "GORISCV64", "GOWASM", "GOTOOLCHAIN")
"""Environment variables that select different actions for the same command line."""


def command_tag(cwd: str | None = None, env: Mapping[str, str] | None = None,
                parent_cmdline: bytes | None = None) -> str:
    """The tag of the go command that started this helper (see the module docstring)."""
    cwd = os.getcwd() if cwd is None else cwd
    env = os.environ if env is None else env
    if parent_cmdline is None:
        parent_cmdline = _parent_cmdline()
    args = parent_cmdline.split(b"\0")
    # Runners may call go by another path (/usr/local/go/bin/go, go): only its name counts.
    args[0] = os.path.basename(args[0])
    settings = "".join(f"{name}={env.get(name, '')}\0" for name in TAG_ENV)
    return tag(cwd.encode("utf-8", "surrogateescape") + b"\0\0" + b"\0".join(args) + b"\0\0"
               + settings.encode("utf-8", "surrogateescape"))


def _parent_cmdline() -> bytes:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0")
    except OSError:
        return b""  # Not Linux: the working directory and environment must do.


def marker_path(local_root: str, tag: str) -> str:
    return os.path.join(local_root, COMMANDS, tag)


def split_manifest(data: bytes) -> list[bytes]:
    """The action ids of a manifest; a torn or foreign value yields what is well-formed."""
    usable = len(data) - len(data) % ID_SIZE
    return [data[i:i + ID_SIZE] for i in range(0, min(usable, MAX_MANIFEST * ID_SIZE), ID_SIZE)]


class Prefetcher:
    """Reads the manifest and fetches its entries on a few threads, until stopped."""

    def __init__(self, cache: Cache, remote: Remote, tag: str,
                 log: Callable[[str], None], threads: int = PREFETCH_THREADS) -> None:
        self._cache = cache
        self._remote = remote
        self._tag = tag
        self._log = log
        self._threads = threads
        # Here, not at the top: a warm run imports this module but never prefetches, and
        # threading is one of the imports its start-up leaves out (docs/design.md).
        import threading

        self._stopped = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._starter = threading.Thread(target=self._run, name="prefetch", daemon=True)

    def start(self) -> Prefetcher:
        self._starter.start()
        return self

    def _run(self) -> None:
        try:
            self._start_batches()
        except Exception as exc:  # noqa: BLE001 - a prefetch is an optimisation, never a failure
            self._log(f"prefetch stopped: {type(exc).__name__}: {exc}")

    def _start_batches(self) -> None:
        data = self._remote.read_manifest(self._tag)
        if not data or self._stopped.is_set():
            return
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._stopped.is_set():
                return
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="prefetch")
            ids = split_manifest(data)
            for start in range(0, len(ids), PREFETCH_BATCH):
                self._pool.submit(self._batch, ids[start:start + PREFETCH_BATCH])

    def _batch(self, action_ids: list[bytes]) -> None:
        if self._stopped.is_set() or not self._remote.readable:
            return
        try:
            for action_id, pending in self._cache.prefetch_many(action_ids):
                # Blobs, one by one: cmd/go may be done asking before a batch of them is.
                if self._stopped.is_set() or not self._remote.readable:
                    return
                self._cache.prefetch(action_id, pending)
        except Exception as exc:  # noqa: BLE001 - a prefetch is an optimisation, never a failure
            self._log(f"prefetch failed: {exc!r}")
            self._stopped.set()

    def stop(self) -> None:
        """Drop what is queued and wait for fetches under way (cmd/go is done asking)."""
        self._stopped.set()
        with self._lock:
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def maybe_start(cache: Cache, remote: Remote | None, local_root: str,
                log: Callable[[str], None], tag: str | None = None) -> str | None:
    """Start prefetching if this runner has not run this go command (``tag``, by default
    :func:`command_tag`) before; returns the tag (``None`` when there is no Redis to prefetch
    from)."""
    if remote is None or not remote.readable:
        return None
    if tag is None:
        tag = command_tag()
    if not os.path.exists(marker_path(local_root, tag)):
        cache.prefetcher = Prefetcher(cache, remote, tag, log).start()
    return tag


def record(cache: Cache, remote: Remote | None, local_root: str, tag: str | None) -> None:
    """After the last answer: store this run's manifest in Redis (if it asked for enough to be
    worth prefetching) and mark the command as run here, so this runner never prefetches it
    again. A run that never touched Redis and was run here before sends nothing."""
    if remote is None or tag is None:
        return
    marker = marker_path(local_root, tag)
    known = os.path.exists(marker)
    if known and not remote.used:
        return  # Fully local run of a known command: Redis stays untouched.
    if len(cache.requested) >= MIN_MANIFEST:
        remote.write_manifest(tag, b"".join(cache.requested[:MAX_MANIFEST]))
    if not known:
        try:
            os.makedirs(os.path.dirname(marker), mode=0o700, exist_ok=True)
            touch_private(marker)
        except OSError:
            pass  # Without the marker the next run of this command prefetches again: harmless.
