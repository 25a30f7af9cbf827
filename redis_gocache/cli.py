"""The ``redis-gocache`` command.

With no subcommand it is the GOCACHEPROG helper. That path must answer cmd/go at once, so
:func:`main` parses the helper's flags itself (from the table in :mod:`redis_gocache.config`)
and imports click only for everything else: ``--help``, ``--version``, subcommands, and
explaining a bad command line.
"""

from __future__ import annotations

import sys

from redis_gocache.exceptions import ConfigError

# Not typing.TYPE_CHECKING: this module is on the way to the capability line, and importing
# typing would cost more than everything else there (mypy honours the constant by its name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVar

    import click

    from redis_gocache import config as _config

    F = TypeVar("F", bound=Callable[..., Any])

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


def helper_options(func: F) -> F:
    """Decorate a click command with every option of the settings table."""
    import click

    from redis_gocache import config as _config

    for opt in reversed(_config.OPTIONS):
        if opt.is_flag:
            func = click.option(*opt.flags, opt.name, is_flag=True, default=None,
                                help=f"{opt.help} [env: {opt.envvar}]")(func)
        else:
            func = click.option(*opt.flags, opt.name, default=None, metavar=opt.metavar,
                                type=_click_type(opt), help=f"{opt.help} [env: {opt.envvar}]")(func)
    return func


def _click_type(opt: _config.Option) -> Any:
    import click

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


def resolve_or_exit(values: dict[str, Any]) -> _config.Config:
    """Resolve settings for a subcommand; a bad one is a usage error, not a traceback."""
    import click

    from redis_gocache import config as _config

    try:
        return _config.resolve(values)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def build_cli() -> click.Group:
    """The click command tree (imported and built only when needed)."""
    import click

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

    for register in _SUBCOMMANDS:
        register(cli)
    return cli


_SUBCOMMANDS: list[Callable[[click.Group], None]] = []
"""Functions adding subcommands to the group; operator commands register themselves here."""


def _register_ops(group: click.Group) -> None:
    # Imported here, inside build_cli: the helper's path never loads the operator commands.
    from redis_gocache.ops.cli import register

    register(group)


_SUBCOMMANDS.append(_register_ops)


def _register_keygen(group: click.Group) -> None:
    from redis_gocache.signing import register_cli

    register_cli(group)


_SUBCOMMANDS.append(_register_keygen)


def _register_mtimes(group: click.Group) -> None:
    from redis_gocache.mtimes import register_cli

    register_cli(group)


_SUBCOMMANDS.append(_register_mtimes)
