"""The ``redis-gocache`` command.

With no subcommand it is the GOCACHEPROG helper. That path must answer cmd/go at once, so
:func:`main` parses the helper's flags itself (from the table in :mod:`redis_gocache.config`)
and imports click only for everything else: ``--help``, ``--version``, subcommands, and
explaining a bad command line. The click command tree is :mod:`redis_gocache.commands`.
"""

from __future__ import annotations

import os
import sys

# Not typing.TYPE_CHECKING: this module is on the way to the capability line, and importing
# typing would cost more than everything else there (mypy honours the constant by its name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    import click

def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m redis_gocache``."""
    args = list(sys.argv[1:] if argv is None else argv)
    proto_fd = None
    if not args and _on_terminal():
        sys.stderr.write(TERMINAL_HINT)
    if not args:
        # The usual GOCACHEPROG=redis-gocache: no flag to parse, so answer cmd/go before
        # importing anything; a bad setting in the environment is still reported below.
        from redis_gocache.handshake import announce

        proto_fd = announce()
        if proto_fd is None:
            sys.exit(0)  # cmd/go is already gone.
    from redis_gocache import config as _config

    # No setting may fail a build: each unusable one is a line on stderr, and the helper
    # runs without it (see config.resolve).
    problems: list[str] = []
    # Started by cmd/go (no terminal): an unknown option must not fail the build either.
    values = _config.parse_helper_args(args, problems, ignore_unknown=not _on_terminal())
    if values is not None:
        from redis_gocache.helper import run_helper

        try:
            cfg = _config.resolve(values, problems=problems)
        except Exception as exc:  # noqa: BLE001 - the last resort: a bug must not fail a build
            # The type only: the message of an unexpected error could quote a setting's value.
            problems.append(f"cannot resolve the settings ({type(exc).__name__}); running "
                            f"with the defaults, {_config.LOCAL_ONLY}")
            cfg = _config.Config()
        sys.exit(run_helper(cfg, proto_fd, problems))
    build_cli()(args=args, prog_name="redis-gocache")


TERMINAL_HINT = ("redis-gocache: this is the GOCACHEPROG helper, meant to be started by the go "
                 "command (GOCACHEPROG=redis-gocache go build ./...); see redis-gocache --help\n")
"""What the helper says when it is started by hand, on a terminal."""


def _on_terminal() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


def build_cli() -> click.Group:
    """The click command tree (:mod:`redis_gocache.commands`), imported only when needed."""
    from redis_gocache.commands import build_cli as build

    return build()
