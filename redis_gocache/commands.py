"""The click command tree, all of it: the group (the helper itself, run with no command), the
operator commands ``stats``, ``doctor``, ``config``, ``trim``, ``clear``, ``zero``,
``flush``, ``exporter``, ``keygen`` and ``normalize-mtimes``.

:mod:`redis_gocache.cli` imports this module only when the command line is not the helper's
(``--help``, ``--version``, a subcommand, a bad option): the helper's path never loads click.
The work is done in :mod:`redis_gocache.ops`, :mod:`redis_gocache.signing` and
:mod:`redis_gocache.mtimes`; here are
options, output and exit statuses. Every command reads the helper's settings from the
environment, so one job environment serves the helper and the commands alike, and offers as
options only the settings it uses (:func:`setting_options`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from redis_gocache import config as _config
from redis_gocache.config import Config, parse_duration, parse_size
from redis_gocache.exceptions import ConfigError, RemoteError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1


def setting_options(*names: str, **helps: str) -> Callable[[F], F]:
    """Decorate a click command with the settings ``names`` of the settings table (all of
    them when none is named); ``helps`` replaces a setting's help text for this command."""
    chosen = [opt for opt in _config.OPTIONS if not names or opt.name in names]

    def decorate(func: F) -> F:
        for opt in reversed(chosen):
            text = f"{helps.get(opt.name, opt.help)} [env: {opt.envvar}]"
            if opt.is_flag:
                func = click.option(*opt.flags, opt.name, is_flag=True, default=None,
                                    help=text)(func)
            else:
                func = click.option(*opt.flags, opt.name, default=None, metavar=opt.metavar,
                                    type=_click_type(opt), help=text)(func)
        return func

    return decorate


helper_options = setting_options()
"""Every setting: the group (the helper itself), ``doctor`` and ``config``."""

REDIS_SETTINGS = ("redis_url", "prefix", "timeout", "retries", "tls_ca", "tls_cert", "tls_key",
                  "password_file")
"""The settings a command that talks to Redis uses."""

_URL_KINDS = ("redis://, rediss:// (TLS), unix://, redis+cluster://host:port[,host:port] or "
              "redis+sentinel://host:port[,host:port]/service[/db]")


def _click_type(opt: _config.Option) -> Any:
    if opt.parse is None:
        raise TypeError(f"{opt.name} is a flag, not a value")
    parse: Callable[[str], Any] = opt.parse

    class _Parsed(click.ParamType):  # type: ignore[type-arg,unused-ignore]
        name = opt.metavar.lower() or "value"

        def convert(self, value: Any, param: Any, ctx: Any) -> Any:
            if not isinstance(value, str):
                return value
            try:
                return parse(value)
            except ConfigError as exc:
                self.fail(str(exc), param, ctx)

    return _Parsed()


def resolve_or_exit(values: dict[str, Any],
                    problems: list[str] | None = None) -> _config.Config:
    """Resolve settings for a subcommand; a bad one is a usage error, not a traceback (or,
    with ``problems``, a message there: see :func:`redis_gocache.config.resolve`)."""
    try:
        return _config.resolve(values, problems=problems)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def settings(values: dict[str, Any], problems: list[str] | None = None) -> Config:
    """The group's options overridden by the subcommand's own."""
    ctx = click.get_current_context()
    merged = dict(ctx.obj or {})
    merged.update({k: v for k, v in values.items() if v is not None})
    return resolve_or_exit(merged, problems)


def fail(message: str) -> None:
    click.echo(f"redis-gocache: {message}", err=True)
    click.get_current_context().exit(EXIT_FAILED)


@contextmanager
def redis_errors(config: Config, doing: str) -> Iterator[None]:
    """A Redis failure is one clear line and exit status 1, never a traceback."""
    from redis_gocache.config import redact_url
    from redis_gocache.ops.common import scrub

    try:
        yield
    except RemoteError as exc:
        where = redact_url(config.redis_url or "")
        fail(scrub(f"cannot {doing} at {where}: {_plainly(exc)}", config))
    except ConfigError as exc:
        raise click.UsageError(scrub(str(exc), config)) from None


_AUTH_HINTS = {
    "NOAUTH": "Redis wants a password and none was given: put it in the URL "
              "(redis://:PASSWORD@host:port/0), in a file named by --password-file "
              "(REDIS_PASSWORD_FILE), or in REDIS_PASSWORD",
    "WRONGPASS": "Redis refused the user name or password: check the URL's user and "
                 "password, --password-file (REDIS_PASSWORD_FILE) or REDIS_PASSWORD",
    "NOPERM": "the Redis user may not run this command (its ACL rules; docs/security.md)",
}


def _plainly(exc: RemoteError) -> str:
    """A Redis error as a person should read it: missing or wrong credentials said plainly."""
    for code, hint in _AUTH_HINTS.items():
        if exc.code == code or str(exc).startswith(f"{code} ") or f": {code} " in str(exc):
            return hint
    return str(exc)


class _Bar:
    """``click.progressbar`` on a terminal (on stderr), nothing otherwise."""

    def __init__(self, length: int | None, label: str) -> None:
        self._bar: Any = None
        if length and sys.stderr.isatty():
            self._bar = click.progressbar(length=length, label=label, file=sys.stderr)

    def __enter__(self) -> Callable[[int], None]:
        if self._bar is None:
            return lambda n: None
        bar = self._bar.__enter__()
        return bar.update  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _converter(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None

    return convert


# -- stats --------------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--prometheus", is_flag=True,
              help="Print the Prometheus text format (textfile collector, Pushgateway).")
@click.option("--exact", is_flag=True,
              help="Count every key (a full SCAN) instead of estimating from a sample.")
@click.option("--sample", type=click.IntRange(min=1), default=None, metavar="N",
              help="Keys to visit when estimating [default: 10000].")
@click.option("--days", type=click.IntRange(0, 35), default=7, show_default=True,
              help="Also show this many days of per-day counters.")
@click.option("--namespace", "namespaces", multiple=True, metavar="PREFIX",
              help="Show this namespace (repeatable) [default: --prefix].")
@click.option("--all", "all_namespaces", is_flag=True,
              help="Show every namespace found in the database.")
@setting_options(*REDIS_SETTINGS, "cache_dir", "trim_max_size",
                 redis_url=f"Redis URL: {_URL_KINDS}. Unset: only the local directory is shown.",
                 cache_dir="The local directory whose size and entries are shown "
                           "[default: $XDG_CACHE_HOME/redis-gocache]",
                 trim_max_size="The local size limit shown beside the local directory's size "
                               "(see `trim`) [default: no limit]")
def stats(as_json: bool, prometheus: bool, exact: bool, sample: int | None, days: int,
          namespaces: tuple[str, ...], all_namespaces: bool, **values: Any) -> None:
    """Hit rate, bytes and Redis memory per namespace; the local directory's size.

    Counters are what helpers reported at the end of their runs; key counts and memory are
    estimated from a sample of keys unless --exact. The local directory's size and entries
    are shown beside its limit, --trim-max-size (as `ccache -s` and `ccache -M`).
    """
    from redis_gocache.ops.common import open_store, translated
    from redis_gocache.ops.stats_cmd import (
        DEFAULT_SAMPLE,
        gather,
        local_data,
        render_local,
        render_prometheus,
        render_text,
    )

    if as_json and prometheus:
        raise click.UsageError("--json and --prometheus do not mix")
    config = settings(values)
    local = local_data(config.cache_dir, config.trim_max_size)
    if not config.redis_url:
        data: dict[str, Any] = {"local": local}
        if as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        elif prometheus:
            click.echo(render_prometheus(data), nl=False)
        else:
            click.echo(render_local(local) + "no Redis URL (REDIS_URL, --redis-url): "
                       "nothing shared to show")
        return
    with redis_errors(config, "read statistics"):
        store = open_store(config)
        try:
            with translated(store):
                client = store.client()
                sample = sample or DEFAULT_SAMPLE
                # The bar's length: keys to visit (an exact count visits them all).
                size = int(client.dbsize())
                length = size if exact else min(size, sample)
            with translated(store), _Bar(length, "scanning keys") as step:
                data = gather(client, list(namespaces) or [config.prefix],
                              all_namespaces=all_namespaces, sample=sample,
                              exact=exact, days=days, progress=step)
        finally:
            store.close()
    data["local"] = local
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif prometheus:
        click.echo(render_prometheus(data), nl=False)
    else:
        click.echo(render_local(local) + "\n" + render_text(data), nl=False)


# -- doctor -------------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@helper_options
def doctor(as_json: bool, **values: Any) -> None:
    """Check Redis, the local directory and Go; exit 1 if a check fails."""
    import dataclasses

    from redis_gocache.config import redact_url
    from redis_gocache.ops.common import scrub
    from redis_gocache.ops.doctor import FAIL, render, run_checks

    # Every unusable setting is a failed check with its fix, not a usage error: doctor is
    # what to run when the helper has said a setting is wrong.
    problems: list[str] = []
    config = settings(values, problems)
    checks = run_checks(config, problems=problems)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(c) for c in checks], indent=2))
    else:
        where = redact_url(config.redis_url) if config.redis_url else "no Redis"
        header = scrub(f"redis-gocache doctor: {where}, prefix {config.prefix!r}, "
                       f"local {config.cache_dir}", config)
        click.echo(render(checks, header), nl=False)
    if any(c.status == FAIL for c in checks):
        click.get_current_context().exit(EXIT_FAILED)


# -- trim ---------------------------------------------------------------------------------


@click.command()
@click.option("--max-age", metavar="DURATION", default=None,
              help="Remove outputs unused this long [default: --trim-max-age, 5d].")
@click.option("--max-size", metavar="BYTES", default=None,
              help="Then remove least recently used outputs down to this size "
                   "[default: --trim-max-size, no cap].")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--spill", is_flag=True,
              help="Trim the shared spill directory (--spill-dir) instead: remove files no "
                   "runner referenced for --max-age [default: --ttl].")
@setting_options("cache_dir", "trim_max_age", "trim_max_size", "spill_dir", "ttl")
def trim(max_age: str | None, max_size: str | None, dry_run: bool, as_json: bool,
         spill: bool, **values: Any) -> None:
    """Remove old local files (never one used within the last hour)."""
    from redis_gocache.ops.common import human_bytes
    from redis_gocache.ops.trim import TrimResult, count_entries, roots, trim_root

    config = settings(values)
    if spill and not config.spill_dir:
        raise click.UsageError("--spill needs --spill-dir (REDIS_GOCACHE_SPILL_DIR)")
    if spill and max_size is not None:
        raise click.UsageError("--max-size does not apply to --spill")
    age = _converter(parse_duration)(max_age) or (config.ttl if spill else config.trim_max_age)
    cap = _converter(parse_size)(max_size)
    cap = config.trim_max_size if cap is None else cap
    total = TrimResult()
    per_root: dict[str, dict[str, int]] = {}
    targets = [config.spill_dir] if spill and config.spill_dir else roots(config.cache_dir)
    for root in targets:
        length = count_entries(root) if sys.stderr.isatty() else None
        with _Bar(length, f"trimming {root}") as step:
            if spill:
                from redis_gocache.ops.spill_trim import trim_spill

                result = trim_spill(root, max_age=age, dry_run=dry_run, progress=step)
            else:
                result = trim_root(root, max_age=age, max_size=cap, dry_run=dry_run,
                                   progress=step)
        per_root[root] = result.as_dict()
        total.add(result)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "roots": per_root, **total.as_dict()},
                              indent=2, sort_keys=True))
        return
    verb = "would remove" if dry_run else "removed"
    line = (f"{verb} {total.outputs_removed} outputs ({human_bytes(total.bytes_removed)}), "
            f"{total.actions_removed} action records, {total.tmp_removed} temporary files, "
            f"{total.commands_removed} command markers; "
            f"kept {total.outputs_kept} outputs ({human_bytes(total.bytes_kept)})")
    if total.protected:
        line += f", {total.protected} of them because they were used within the last hour"
    if total.outputs_pending:
        line += (f"; left {total.outputs_pending} outputs for a later trim: helpers that may "
                 f"have handed them to a go command are running")
    click.echo(line)


# -- flush --------------------------------------------------------------------------------


@click.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@setting_options(*REDIS_SETTINGS, redis_url=f"Redis URL: {_URL_KINDS} [required]",
                 prefix=f"The namespace to delete [default: {_config.DEFAULT_PREFIX}]")
def flush(yes: bool, dry_run: bool, **values: Any) -> None:
    """Delete every Redis key of one namespace (--prefix).

    Keys of other prefixes, including ones nested under this prefix, are left alone. The
    local directory is not touched (see `trim`).
    """
    from redis_gocache.config import redact_url
    from redis_gocache.ops import flush as flushing
    from redis_gocache.ops.common import open_store, translated

    config = settings(values)
    if not config.prefix:
        raise click.UsageError("refusing to flush an empty prefix: that is the whole database")
    where = redact_url(config.redis_url or "")
    with redis_errors(config, "flush"):
        store = open_store(config)
        try:
            with translated(store):
                client = store.client()
                found = flushing.count(client, config.prefix)
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(found.by_kind.items()))
            if not found.matched:
                click.echo(f"namespace {config.prefix!r} on {where} has no keys")
                return
            summary = f"{found.matched} keys ({kinds}) of namespace {config.prefix!r} on {where}"
            if not _go_ahead("delete", summary, dry_run=dry_run, yes=yes):
                return
            with translated(store), _Bar(found.matched, "deleting") as step:
                done = flushing.flush(client, config.prefix, progress=step)
        finally:
            store.close()
    click.echo(f"deleted {done.deleted} keys of namespace {config.prefix!r}"
               + (f"; left {done.foreign} other keys under the prefix" if done.foreign else ""))


def _go_ahead(verb: str, summary: str, *, dry_run: bool, yes: bool) -> bool:
    """The confirmation rule of the commands that delete (flush, clear, zero): with
    ``--dry-run`` say what would be done and do nothing; else ask on the terminal unless
    ``--yes``. Aborts (exit 1) when the answer is no."""
    if dry_run:
        click.echo(f"would {verb} {summary}")
        return False
    if not yes:
        click.confirm(f"{verb.capitalize()} {summary}?", abort=True, err=True)
    return True


@click.command("keygen")
@click.argument("private_key", type=click.Path(dir_okay=False))
@click.option("--public", "public_key", type=click.Path(dir_okay=False), default=None,
              help="Where to write the public key [default: PRIVATE_KEY.pub]")
def keygen(private_key: str, public_key: str | None) -> None:
    """Make an Ed25519 key pair for signing cache entries.

    The private key (mode 0600) goes to trusted writers only (--signing-key); the public
    key to every helper that should check signatures (--trusted-keys).
    """
    from redis_gocache.signing import generate

    public_key = public_key or private_key + ".pub"
    try:
        kid = generate(private_key, public_key)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"private key: {private_key}\npublic key:  {public_key}\nkey id:      {kid}")


@click.command("normalize-mtimes")
@click.argument("directory", default=".",
                type=click.Path(exists=True, file_okay=False, dir_okay=True))
@click.option("-v", "--verbose", is_flag=True,
              help="List every file, directory and symlink with its time.")
@click.option("--no-git", is_flag=True,
              help="Read and hash every file even in a git working tree (the same times).")
def normalize_mtimes(directory: str, verbose: bool, no_git: bool) -> None:
    """Set modification times from content, so `go test` results hit on fresh checkouts.

    Run it right after the checkout, before any `go` command. cmd/go keys a cached test
    result on the modification times of the files the test read; a clone gives every
    file a new one. This sets the time of every file, directory and symlink under
    DIRECTORY (default: the current one; .git is left alone) to a hash of its content,
    years in the past: the same on every runner for the same content, different for
    different content, so an edit is never served a stale result. In a git working tree
    it takes the files' hashes from git's index and reads only files that git reports
    as changed or does not track.
    """
    from redis_gocache.mtimes import iso_time, normalize

    def show(path: str, kind: str, ns: int, done: bool) -> None:
        click.echo(f"{'set ' if done else 'kept'}  {iso_time(ns)}  {kind:<7}  {path}")

    try:
        result = normalize(directory, use_git=not no_git, listing=show if verbose else None)
    except OSError as exc:
        raise click.ClickException(f"{directory}: {exc.strerror or exc}") from None
    for error in result.errors:
        click.echo(f"redis-gocache: normalize-mtimes: {error}", err=True)
    click.echo(result.summary())
    if result.errors:
        click.get_current_context().exit(1)


# -- exporter ----------------------------------------------------------------------------


@click.command()
@click.option("--listen", default="0.0.0.0:9122", show_default=True, metavar="HOST:PORT",
              envvar="REDIS_GOCACHE_EXPORTER_LISTEN",
              help="Address to serve /metrics on. [env: REDIS_GOCACHE_EXPORTER_LISTEN]")
@click.option("--days", type=click.IntRange(0, 35), default=2, show_default=True,
              help="Per-day counters to export, today first.")
@click.option("--namespace", "namespaces", multiple=True, metavar="PREFIX",
              help="Export this namespace (repeatable) [default: --prefix].")
@setting_options(*REDIS_SETTINGS, redis_url=f"Redis URL: {_URL_KINDS} [required]")
def exporter(listen: str, days: int, namespaces: tuple[str, ...], **values: Any) -> None:
    """Serve the fleet counters as Prometheus metrics.

    Each scrape reads the counters that helpers keep in Redis; read access to the prefix is
    enough (the chart's reader user). Needs prometheus-client:
    pip install 'redis-gocache[exporter]'.
    """
    try:
        # An optional dependency: imported by this command only.
        from redis_gocache.ops import exporter as exporting
    except ImportError as exc:
        raise click.ClickException(
            f"the exporter needs prometheus-client ({exc}): "
            "pip install 'redis-gocache[exporter]'") from None
    from redis_gocache.ops.common import open_store

    config = settings(values)
    try:
        host, port = exporting.parse_listen(listen)
        store = open_store(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        server = exporting.start(store, host, port, list(namespaces) or [config.prefix], days)
    except OSError as exc:
        store.close()
        raise click.ClickException(f"cannot listen on {listen}: {exc}") from None
    names = ", ".join(repr(p) for p in server.prefixes)
    click.echo(f"redis-gocache exporter: the fleet counters of {names} on "
               f"http://{host}:{server.port}/metrics", err=True)
    try:
        server.wait()  # until SIGTERM ends the process, or Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        store.close()


# -- config, clear, zero ------------------------------------------------------------------


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@setting_options()
def show_config(as_json: bool, **values: Any) -> None:
    """Print the effective settings and where each comes from (flag, variable, default).

    As the helper would resolve them in this environment (like `ccache -p`); passwords are
    shown as ***. A setting the helper could not use is marked, with what it does instead.
    """
    import os

    from redis_gocache.ops.show_config import effective, render

    problems: list[str] = []
    config = settings(values, problems)
    ctx = click.get_current_context()
    given = {**(ctx.obj or {}), **{k: v for k, v in values.items() if v is not None}}
    rows = effective(config, _config.sources(given), problems, os.environ)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(render(rows), nl=False)


@click.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@setting_options("cache_dir")
def clear(yes: bool, dry_run: bool, **values: Any) -> None:
    """Empty the local directory (as `ccache -C`): every output, action record and kept
    answer, of every trust level. Redis is not touched (see `flush`); counters stay (see
    `zero`). Run it when no build is running on this runner.
    """
    from redis_gocache.ops.common import human_bytes
    from redis_gocache.ops.local import clear as clearing

    config = settings(values)
    files, size = clearing(config.cache_dir, dry_run=True)
    summary = f"{files} files ({human_bytes(size)}) in {config.cache_dir}"
    if not files:
        click.echo(f"the local directory {config.cache_dir} holds no cache files")
        return
    if not _go_ahead("remove", summary, dry_run=dry_run, yes=yes):
        return
    clearing(config.cache_dir)
    click.echo(f"removed {summary}")


@click.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Count what would be zeroed; change nothing.")
@setting_options("cache_dir", "stats_file")
def zero(yes: bool, dry_run: bool, **values: Any) -> None:
    """Zero this runner's counters (as `ccache -z`): the runs waiting in the local spool to
    be added to the fleet statistics are dropped, and the --stats-file is emptied. The
    fleet statistics in Redis are not touched (`flush` deletes a namespace's).
    """
    from redis_gocache.ops.local import counter_files
    from redis_gocache.ops.local import zero as zeroing

    config = settings(values)
    paths = counter_files(config.cache_dir, config.stats_file)
    runs = sum(1 for p in paths if p != config.stats_file)
    stats_file = config.stats_file if config.stats_file in paths else None
    summary = f"{runs} spooled runs under {config.cache_dir}" + (
        f" and the stats file {stats_file}" if stats_file else "")
    if not paths:
        click.echo(f"no counters to zero under {config.cache_dir}"
                   + (f" or in {config.stats_file}" if config.stats_file else ""))
        return
    if not _go_ahead("zero", summary, dry_run=dry_run, yes=yes):
        return
    zeroing(paths)
    click.echo(f"zeroed {summary}")


COMMANDS = (stats, doctor, show_config, trim, clear, zero, flush, exporter, keygen,
            normalize_mtimes)
"""The subcommands, in the order ``--help`` lists them (click sorts them by name)."""


def build_cli() -> click.Group:
    """The click command tree."""
    from redis_gocache import __version__

    @click.group(
        invoke_without_command=True,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    @click.version_option(__version__, "-V", "--version", prog_name="redis-gocache")
    @helper_options
    @click.pass_context
    def cli(ctx: click.Context, /, **values: Any) -> None:
        """Share Go's build cache through Redis.

        With no command, run as the GOCACHEPROG helper that the go command starts:

            GOCACHEPROG=redis-gocache REDIS_URL=redis://cache:6379/0 go build ./...

        Every option can also be set by its environment variable.
        """
        if ctx.invoked_subcommand is not None:
            ctx.obj = values
            return
        from redis_gocache.helper import run_helper

        ctx.exit(run_helper(resolve_or_exit(values)))

    for command in COMMANDS:
        cli.add_command(command)
    return cli



__all__ = ["build_cli", "helper_options", "resolve_or_exit"]
