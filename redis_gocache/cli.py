"""The ``redis-gocache`` command.

With no subcommand it is the GOCACHEPROG helper. That path must answer cmd/go at once, so
:func:`main` parses the helper's flags itself (from the table in :mod:`redis_gocache.config`)
and imports click only for everything else: ``--help``, ``--version``, subcommands, and
explaining a bad command line. The click command tree is :mod:`redis_gocache.commands`.
"""

from __future__ import annotations

import sys

from redis_gocache.exceptions import ConfigError

# Not typing.TYPE_CHECKING: this module is on the way to the capability line, and importing
# typing would cost more than everything else there (mypy honours the constant by its name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    import click

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m redis_gocache``."""
    args = list(sys.argv[1:] if argv is None else argv)
    proto_fd = None
    if not args:
        # The usual GOCACHEPROG=redis-gocache: no flag to parse, so answer cmd/go before
        # importing anything; a bad setting in the environment is still reported below.
        from redis_gocache.handshake import announce

        proto_fd = announce()
        if proto_fd is None:
            sys.exit(0)  # cmd/go is already gone.
    from redis_gocache import config as _config

    try:
        values = _config.parse_helper_args(args)
        cfg = _config.resolve(values) if values is not None else None
    except ConfigError as exc:
        sys.stderr.write(f"redis-gocache: {exc}\n")
        sys.exit(EXIT_USAGE)
    if cfg is not None:
        from redis_gocache.helper import run_helper

        sys.exit(run_helper(cfg, proto_fd))
    build_cli()(args=args, prog_name="redis-gocache")


def build_cli() -> click.Group:
    """The click command tree (:mod:`redis_gocache.commands`), imported only when needed."""
    from redis_gocache.commands import build_cli as build

    return build()
