"""The GOCACHEPROG helper process: wiring a :class:`Config` into a running server."""

from __future__ import annotations

import os
import sys
import time

from redis_gocache.exceptions import ConfigError, LocalStoreError
from redis_gocache.handshake import announce
from redis_gocache.store.disk import auto_trim_due
from redis_gocache.store.layout import level_name

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis_gocache.config import Config
    from redis_gocache.remote import Remote
    from redis_gocache.stats import Stats
    from redis_gocache.store.base import RemoteStore
    from redis_gocache.store.disk import DiskStore
    from redis_gocache.store.spill import SpillDir


def log(message: str) -> None:
    """One line on stderr; stdout belongs to the protocol."""
    sys.stderr.write(f"redis-gocache: {message}\n")
    sys.stderr.flush()


def local_root(config: Config, cache_dir: str | None = None) -> str:
    """The trust level's own directory: entries a read-only (untrusted) job wrote locally are
    never served to a trusted helper, which does not re-verify local hits. A helper that checks
    signatures gets a directory of its own per set of trusted keys, so it never serves a local
    entry that was fetched without that check (see docs/security.md)."""
    tag = None
    if config.trusted_keys:
        from redis_gocache.signing import keyset_tag

        tag = keyset_tag(config.trusted_keys)
    return os.path.join(config.cache_dir if cache_dir is None else cache_dir,
                        level_name(config.read_only, tag))


def run_helper(config: Config, proto_fd: int | None = None,
               problems: Sequence[str] = ()) -> int:
    """Serve cmd/go on stdin/stdout until close or EOF; returns the exit status.

    ``proto_fd``: the protocol descriptor when the caller has already announced the
    capabilities (:func:`redis_gocache.handshake.announce`); else this does it first.
    ``problems``: the settings that could not be used (:func:`redis_gocache.config.resolve`),
    one line each on stderr.

    Nothing makes this fail a build: an unexpected exception (a bug) is one line on stderr,
    and if no answer has been sent yet the run goes on answering misses
    (:func:`serve_without_disk`).

    Ctrl-C reaches cmd/go and the helper alike: the helper then leaves at once with status 0
    and no traceback. Everything on disk is complete or in tmp/, and half an upload is a
    temporary key that expires. (SIGTERM keeps its default, the same immediate end; no
    ``signal`` handler is installed because that module's import alone costs milliseconds.)
    """
    if proto_fd is None:
        proto_fd = announce()
        if proto_fd is None:
            return 0  # cmd/go is already gone.
    for problem in problems:
        log(problem)
    started = [False]
    try:
        from redis_gocache.config import LOCAL_ONLY

        # A setting's line has said that Redis is off: no second line about it.
        quiet = any(problem.endswith(LOCAL_ONLY) for problem in problems)
        return _serve(config, proto_fd, quiet_local_only=quiet, started=started)
    except KeyboardInterrupt:
        os._exit(0)
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug must not fail the build
        log(f"internal error ({type(exc).__name__}: {exc}); " + (
            "answering the remaining requests with misses" if not started[0] else "stopping"))
        if started[0]:
            return 1
        return serve_without_disk(proto_fd, None)


def serve_without_disk(proto_fd: int, root: str | None) -> int:
    """Answer every get with a miss and every put with a path where no file is, until close.

    For a run that has no local directory (none can be made): cmd/go fails a build on an
    ``Err`` put, and on a put answered without a ``DiskPath``, but takes a ``DiskPath``
    whose file is missing for an entry it must rebuild (``cache.GetFile`` checks every file
    it is handed), and it ignores the output files of puts otherwise. The path named is
    under ``root`` (the directory that could not be made), or ``/nonexistent``.
    """
    from redis_gocache import wire
    from redis_gocache.exceptions import FatalProtocolError, ProtocolError
    from redis_gocache.handshake import write_all

    where = os.path.join(root or "/nonexistent", "unusable")
    stream = wire.InputStream(0)
    try:
        while True:
            line = stream.readline()
            if line is None:
                return 0
            try:
                req = wire.parse_request(line)
            except FatalProtocolError as exc:
                log(f"cannot read the request stream: {exc}")
                return 2
            except ProtocolError as exc:
                if exc.request_id is not None:
                    write_all(proto_fd, wire.error_response(exc.request_id, str(exc)))
                continue
            if req.command == wire.CMD_PUT:
                if req.body_size > 0:
                    stream.read_body(req, lambda chunk: None)
                answer = wire.put_response(req.id, os.path.join(where, req.output_id.hex()))
            elif req.command == wire.CMD_CLOSE:
                write_all(proto_fd, wire.close_response(req.id))
                return 0
            else:
                answer = wire.miss_response(req.id)
            write_all(proto_fd, answer)
    except FatalProtocolError as exc:
        log(f"cannot read the request stream: {exc}")
        return 2
    except OSError:
        return 0  # cmd/go is gone


def _open_local(config: Config) -> DiskStore | None:
    """The local directory, or the default one when ``--cache-dir`` cannot be used (one line
    says so), or ``None`` when neither can."""
    from redis_gocache.config import OPTIONS, default_cache_dir, names
    from redis_gocache.store.disk import DiskStore
    from redis_gocache.store.shared import owner_problem

    opt = next(o for o in OPTIONS if o.name == "cache_dir")
    tried = []
    for cache_dir in dict.fromkeys((config.cache_dir, default_cache_dir())):
        try:
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            root = local_root(config, cache_dir)
            # Helpers of two users cannot share a directory: then the next one is tried.
            problem = owner_problem(cache_dir) or owner_problem(root)
            if problem is not None:
                tried.append(f"{cache_dir}: {problem}")
                continue
            local = DiskStore(root).open().join()  # each level 0700
        except (OSError, LocalStoreError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            tried.append(f"{cache_dir}: {reason}")
            continue
        if tried:
            log(f"{names(opt)}: cannot use {tried[0]}; using {cache_dir} instead")
        return local
    log(f"{names(opt)}: no local directory can be made ({'; '.join(tried)}); answering every "
        "get with a miss and storing nothing this run")
    return None


def _serve(config: Config, proto_fd: int, *, quiet_local_only: bool = False,
           started: list[bool] | None = None) -> int:
    from redis_gocache.cache import Cache
    from redis_gocache.server import Server
    from redis_gocache.stats import Stats

    stats = Stats()
    local = _open_local(config)
    if local is None:
        return serve_without_disk(proto_fd, config.cache_dir)
    if local.root != local_root(config):
        config = config.replace(cache_dir=os.path.dirname(local.root))
    try:
        remote = _make_remote(config, stats, quiet_local_only)
    except ConfigError as exc:
        log(str(exc))
        remote = None
    cache = Cache(local, remote, stats)
    from redis_gocache import answers, prefetch

    command = prefetch.command_tag()
    marker = prefetch.marker_path(local.root, command)
    kept = answers.load(marker, local.root, local.condemned)
    tag = None
    if remote is not None and not config.no_prefetch:
        tag = prefetch.maybe_start(cache, remote, local.root, log, command)

    def report() -> None:
        if config.verbose:
            sys.stderr.write(stats.summary_line() + "\n")
            sys.stderr.flush()

    server = Server(cache, in_fd=0, out_fd=proto_fd, stats=stats, log=log,
                    workers=config.workers, on_drained=report, answers=kept)
    if started is not None:
        started[0] = True
    status = server.serve()
    # cmd/go has its answers and its stdout is closed; the rest is housekeeping.
    local.flush_marks()  # before the trim below goes by them
    local.leave()  # cmd/go opens no file any more: a trim may remove what it was handed
    # The kept answers are still right if they answered every get and nothing was put.
    all_kept = (cache.kept_hits == cache.requested and len(kept) == len(cache.requested)
                and not stats.puts)
    cache.refresh_served()
    if tag is not None:
        prefetch.record(cache, remote, local.root, tag)
    if not all_kept and cache.requested:
        _keep_answers(marker, local, cache.requested)
    elif all_kept and kept:
        try:
            os.utime(marker)  # run again: the trim goes by this mtime
        except OSError:
            pass
    _end_of_run(config, remote, stats, local.root)
    cache.close()
    if config.stats_file:
        try:
            stats.append_json(config.stats_file)
        except OSError as exc:
            log(f"cannot write the stats file: {exc}")
    return status


def _keep_answers(marker: str, local: DiskStore, requested: list[bytes]) -> None:
    """Keep this run's answers for the next run of the same go command (unless every get was
    answered from the ones kept before, which are then still right)."""
    from redis_gocache import answers

    try:
        answers.save(marker, local.root, answers.lines_for(requested, local))
    except OSError as exc:
        log(f"cannot keep this run's answers: {exc}")


def _end_of_run(config: Config, remote: Remote | None, stats: Stats, root: str) -> None:
    """Fleet statistics and the daily trim (redis_gocache.ops); never fails the run."""
    try:
        # The trim first, so that the fleet statistics pushed below count it.
        if not config.no_auto_trim and auto_trim_due(root, time.time()):
            from redis_gocache.ops.trim import maybe_auto_trim

            trimmed = maybe_auto_trim(root, max_age=config.trim_max_age,
                                      max_size=config.trim_max_size)
            if trimmed is not None:
                stats.add(trims=1, trimmed_outputs=trimmed.outputs_removed,
                          trimmed_bytes=trimmed.bytes_removed)
        if remote is not None and not config.read_only and not config.no_fleet_stats:
            from redis_gocache.ops.fleet import end_of_run

            end_of_run(config, remote, stats, log)
    except Exception as exc:  # noqa: BLE001 - housekeeping must not turn a good run bad
        log(f"end-of-run housekeeping failed: {exc!r}")


def _make_spill(config: Config) -> SpillDir | None:
    """The shared directory for large outputs (--spill-dir), if one is set."""
    if not config.spill_dir:
        return None
    from redis_gocache.store.spill import SpillDir

    return SpillDir(config.spill_dir, log=log)


def _make_remote(config: Config, stats: Stats, quiet: bool = False) -> Remote | None:
    if not config.redis_url:
        if not quiet:  # else a setting's line has said why
            log(f"no REDIS_URL configured; caching on local disk only ({config.cache_dir})")
        return None
    from redis_gocache.config import redact_url
    from redis_gocache.remote import Breaker, Remote

    signer = verifier = None
    if config.signing_key or config.trusted_keys:
        # Loaded now, not on first use: a bad key is one clear line, and Redis stays off
        # rather than be written unsigned or read unverified.
        from redis_gocache.signing import Signer, Verifier

        if config.signing_key:
            signer = Signer.from_file(config.signing_key)
        if config.trusted_keys:
            verifier = Verifier.from_files(config.trusted_keys)

    def make_store() -> RemoteStore:
        # On first use only: a fully local run never imports the Redis store (nor redis).
        from redis_gocache.store.redis import RedisStore

        return RedisStore.from_config(config, signer=signer, verifier=verifier,
                                      spill=_make_spill(config))

    from redis_gocache.tags import server_tag

    describe = redact_url(config.redis_url)
    # One breaker per server and prefix.
    name = "breaker-" + server_tag(config.redis_url, config.prefix)
    breaker = Breaker(os.path.join(config.cache_dir, name), config.breaker_cooldown)
    return Remote(factory=make_store, stats=stats, log=log, describe=describe,
                  read_only=config.read_only, breaker=breaker)
