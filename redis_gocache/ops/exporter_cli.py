"""The ``exporter`` subcommand's click front end (the work: :mod:`redis_gocache.ops.exporter`).

Kept apart so that building the command tree never imports prometheus-client, an optional
dependency: only running ``redis-gocache exporter`` does.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from redis_gocache.cli import helper_options
from redis_gocache.exceptions import ConfigError

DEFAULT_LISTEN = "0.0.0.0:9122"
"""Where the exporter serves by default (all addresses: it runs in its own pod)."""


@click.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              envvar="REDIS_GOCACHE_EXPORTER_LISTEN",
              help="Address to serve /metrics on. [env: REDIS_GOCACHE_EXPORTER_LISTEN]")
@click.option("--days", type=click.IntRange(0, 35), default=None,
              help="Per-day counters to export, today first [default: 2].")
@click.option("--namespace", "namespaces", multiple=True, metavar="PREFIX",
              help="Export this namespace (repeatable) [default: --prefix].")
@helper_options
def exporter(listen: str, days: int | None, namespaces: tuple[str, ...], **values: Any) -> None:
    """Serve the fleet counters as Prometheus metrics.

    Each scrape reads the counters that helpers keep in Redis; read access to the prefix is
    enough (the chart's reader user). Needs prometheus-client:
    pip install 'redis-gocache[exporter]'.
    """
    try:
        from redis_gocache.ops import exporter as exporting
    except ImportError as exc:
        raise click.ClickException(
            f"the exporter needs prometheus-client ({exc}): "
            "pip install 'redis-gocache[exporter]'") from None
    from redis_gocache.ops.cli import settings
    from redis_gocache.ops.common import open_store, translated

    config = settings(values)
    try:
        host, port = exporting.parse_listen(listen)
        store = open_store(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    collector = exporting.FleetCollector(
        store.client, lambda: translated(store), list(namespaces) or [config.prefix],
        exporting.DEFAULT_DAYS if days is None else days,
        log=lambda line: print(line, file=sys.stderr, flush=True))
    try:
        server = exporting.Exporter(collector, host, port)
    except OSError as exc:
        store.close()
        raise click.ClickException(f"cannot listen on {listen}: {exc}") from None
    names = ", ".join(repr(p) for p in collector.prefixes)
    click.echo(f"redis-gocache exporter: the fleet counters of {names} on "
               f"http://{host}:{server.port}/metrics", err=True)
    try:
        # The server runs on its own thread; SIGTERM ends the process as it should.
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        store.close()


def register(group: click.Group) -> None:
    """Add ``exporter`` to the command tree."""
    group.add_command(exporter)


__all__ = ["exporter", "register"]
