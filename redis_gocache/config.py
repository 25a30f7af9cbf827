"""Settings of the helper: one table of options, parsed from flags and environment variables.

The table :data:`OPTIONS` is the single source of truth. The helper's fast path
(:func:`parse_helper_args`) reads it without importing click, so a ``go`` command
that starts the helper hundreds of times a day does not pay click's import; the
click CLI (:mod:`redis_gocache.cli`) builds its options from the same table, so
``--help`` and the fast path can never disagree.

Precedence: a flag beats its environment variable, which beats the default.
"""

from __future__ import annotations

import os

from redis_gocache.exceptions import ConfigError
from redis_gocache.value import FrozenValue

# Not typing.TYPE_CHECKING, and no dataclasses or re: this module is on the helper's way to
# its first answer, where those three imports cost more than the rest of it (see Config, and
# "The warm path" in docs/design.md for the rule every module on that path follows).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

DEFAULT_PREFIX = "gocache:"
"""Key prefix of every Redis key the cache writes. Never a Cluster hash tag."""

DEFAULT_TTL = 7 * 24 * 3600
"""Seconds an action entry lives in Redis after its last put or refresh (7 days)."""

DEFAULT_INLINE_MAX = 128 * 1024
"""Outputs up to this many bytes are stored inside the action hash (one round trip on a
hit); larger ones go to a content-addressed blob key. Chosen by measurement: see README."""

DEFAULT_COMPRESSION = "zstd"
"""How outputs above 1 KiB are stored in Redis and the spill directory: ``zstd``
(compressed when that saves a tenth or more: Go's outputs shrink about fourfold) or ``none``.
A helper reads both kinds whatever this says."""

COMPRESSIONS = ("zstd", "none")
"""The values ``--compression`` takes."""

DEFAULT_TIMEOUT = 0.5
"""Seconds to wait on one Redis socket operation or connect before calling Redis down.
redis-py's own default (5 s, 10 retries) would turn one stalled server into minutes."""

DEFAULT_RETRIES = 1
"""How many times a failed Redis command is retried (with a short backoff) before giving up."""

DEFAULT_WORKERS = 4
"""Threads serving requests that need Redis; cmd/go keeps at most GOMAXPROCS in flight."""

DEFAULT_BREAKER_COOLDOWN = 30.0
"""Seconds the circuit breaker keeps Redis switched off after it failed."""

DEFAULT_TRIM_MAX_AGE = 5 * 24 * 3600
"""Local outputs unused for this long are removed by ``trim`` (5 days, as Go's own cache)."""


def default_cache_dir(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/redis-gocache``, else ``~/.cache/redis-gocache``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "redis-gocache")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def _number_and_unit(text: str, units: Mapping[str, int]) -> tuple[str, int]:
    """Split ``"12 h"`` into ``("12", 3600)``; a bare number has the factor 1."""
    low = text.strip().lower()
    factor = units.get(low[-1:], 0)
    number = low[:-1].rstrip() if factor else low
    return number, factor or 1


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # isdigit alone accepts "²"


def parse_duration(text: str) -> int:
    """Seconds from ``3600``, ``45s``, ``30m``, ``12h``, ``7d``, ``2w`` or ``1.5h``."""
    number, factor = _number_and_unit(text, _DURATION_UNITS)
    whole, dot, fraction = number.partition(".")
    if not _is_digits(whole) or (dot and not _is_digits(fraction)):
        raise ConfigError(f"not a duration: {text!r} (use seconds, or a number with s/m/h/d/w)")
    seconds = int(float(number) * factor)
    if seconds <= 0:
        raise ConfigError(f"duration must be positive: {text!r}")
    return seconds


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64K``, ``64KiB``, ``64kb``, ``1M`` or ``1G``."""
    low = text.strip().lower()
    for suffix in ("ib", "b"):
        if low.endswith(suffix):
            low = low[:-len(suffix)]
            break
    number, factor = _number_and_unit(low, _SIZE_UNITS)
    if not _is_digits(number):
        raise ConfigError(f"not a size: {text!r} (use bytes, or a number with K/M/G)")
    return int(number) * factor


def parse_seconds(text: str) -> float:
    """A positive number of seconds, fractions allowed (``0.5``)."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise ConfigError(f"must be positive: {text!r}")
    return value


def parse_positive_count(text: str) -> int:
    """A whole number of at least 1."""
    value = parse_count(text)
    if value < 1:
        raise ConfigError(f"must be at least 1: {text!r}")
    return value


def parse_count(text: str) -> int:
    """A non-negative whole number."""
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise ConfigError(f"must not be negative: {text!r}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"not a yes/no value: {text!r}")


_SINGLE_SERVER_SCHEMES = ("redis://", "rediss://", "unix://")


URL_OPTIONS = frozenset({
    "db", "password", "username", "socket_timeout", "socket_connect_timeout",
    "socket_keepalive", "retry_on_timeout", "max_connections", "health_check_interval",
    "client_name", "protocol", "timeout", "ssl_cert_reqs", "ssl_check_hostname",
    "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path", "socket_read_size",
    "retry_on_error", "ssl_validate_ocsp", "ssl_validate_ocsp_stapled", "ssl_min_version",
    "ssl_include_verify_flags", "ssl_exclude_verify_flags", "legacy_responses",
})
"""The ``?name=value`` options a single server's Redis URL may carry (those redis-py's
``from_url`` knows; Cluster and Sentinel URLs have theirs checked by
:mod:`redis_gocache.store.topology`).
Any other would reach redis-py's connection class as an unknown argument and fail every
command, so it is refused with the setting up front."""


def _check_url_options(text: str) -> None:
    query = text.partition("?")[2].partition("#")[0]
    for pair in query.split("&"):
        name = pair.partition("=")[0]
        if name and name not in URL_OPTIONS:
            # The name only: a value could be a password.
            raise ConfigError(f"unknown Redis URL option {name!r} (redis-py's URL options "
                              "only: db, socket_timeout, protocol, client_name, ...)")


def parse_redis_url(text: str) -> str:
    """A ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL of one server, a
    ``redis+cluster://`` URL of a Redis Cluster, or a ``redis+sentinel://`` URL of a
    Sentinel-managed primary (``rediss+``: with TLS); see :mod:`redis_gocache.store.topology`."""
    if text.startswith(_SINGLE_SERVER_SCHEMES):
        if "?" in text:
            _check_url_options(text)  # Cluster and Sentinel URLs: topology.parse checks theirs
        return text  # The common case, decided without importing the topology module.
    from redis_gocache.store import topology

    if not text.startswith(topology.SCHEMES):
        # Say what is wrong without echoing the URL: it may hold a password.
        scheme = text.partition("://")[0] if "://" in text else "(none)"
        raise ConfigError("Redis URL must start with redis://, rediss://, unix://, "
                          f"redis+cluster:// or redis+sentinel:// (scheme: {scheme})")
    if topology.kind_of(text) != topology.SINGLE:
        topology.parse(text)  # its errors name the part, never the password
    return text


def parse_key_files(text: str) -> tuple[str, ...]:
    """Comma-separated key files (``a.pub,b.pub``), made absolute; at least one."""
    paths = tuple(os.path.abspath(os.path.expanduser(p.strip())) for p in text.split(",")
                  if p.strip())
    if not paths:
        raise ConfigError("no key file given")
    return paths


def redact_url(url: str) -> str:
    """``url`` with any password (in the user part or a ``password=`` query argument)
    replaced by ``***``, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    auth, at, host = rest.rpartition("@")
    if at:
        user, colon, _ = auth.partition(":")
        rest = f"{user}{':***' if colon else ''}@{host}"
    base, q, query = rest.partition("?")
    if q and "password" in query.lower():
        from urllib.parse import parse_qsl, urlencode

        pairs = [(k, "***" if "password" in k.lower() else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        rest = f"{base}?{urlencode(pairs, safe='*')}"
    return f"{scheme}://{rest}"


def parse_prefix(text: str) -> str:
    """A key prefix; ``{`` and ``}`` are refused since they would make a Cluster hash tag
    and pin the whole cache to one slot."""
    if "{" in text or "}" in text:
        raise ConfigError(f"prefix must not contain '{{' or '}}' (a Cluster hash tag): {text!r}")
    return text


def parse_compression(text: str) -> str:
    """One of :data:`COMPRESSIONS`."""
    value = text.strip().lower()
    if value not in COMPRESSIONS:
        raise ConfigError(f"compression must be one of {', '.join(COMPRESSIONS)}: {text!r}")
    return value


def parse_spill_dir(text: str) -> str:
    """The spill directory, made absolute. It is a mount point: the helper never creates it."""
    if not text.strip():
        raise ConfigError("empty spill directory")
    return os.path.abspath(os.path.expanduser(text))


class Option:
    """One setting: its flags, environment variable, parser (``None``: a boolean switch) and
    help text."""

    __slots__ = ("name", "flags", "envvar", "help", "parse", "metavar")

    def __init__(self, name: str, flags: tuple[str, ...], envvar: str, help: str,
                 parse: Callable[[str], Any] | None = None, metavar: str = "") -> None:
        self.name = name
        self.flags = flags
        self.envvar = envvar
        self.help = help
        self.parse = parse
        self.metavar = metavar

    @property
    def is_flag(self) -> bool:
        return self.parse is None

    def __repr__(self) -> str:
        return f"Option({self.name!r}, {self.flags!r}, {self.envvar!r})"


OPTIONS: tuple[Option, ...] = (
    Option("redis_url", ("--redis-url",), "REDIS_URL",
           "Redis URL: redis://, rediss:// (TLS), redis+cluster://host:port[,host:port] "
           "(Redis Cluster), redis+sentinel://host:port[,host:port]/service[/db] "
           "(Sentinel). Unset: local disk only.",
           parse_redis_url, "URL"),
    Option("cache_dir", ("--cache-dir",), "REDIS_GOCACHE_DIR",
           "Local directory for materialized outputs [default: $XDG_CACHE_HOME/redis-gocache]",
           str, "DIR"),
    Option("prefix", ("--prefix",), "REDIS_GOCACHE_PREFIX",
           f"Prefix of every Redis key [default: {DEFAULT_PREFIX}]", parse_prefix, "TEXT"),
    Option("ttl", ("--ttl",), "REDIS_GOCACHE_TTL",
           "Lifetime of a Redis entry after its last use: seconds or 30m/12h/7d/2w [default: 7d]",
           parse_duration, "DURATION"),
    Option("inline_max", ("--inline-max",), "REDIS_GOCACHE_INLINE_MAX",
           f"Largest output stored inside the action hash [default: {DEFAULT_INLINE_MAX}]",
           parse_size, "BYTES"),
    Option("spill_dir", ("--spill-dir",), "REDIS_GOCACHE_SPILL_DIR",
           "Shared directory (a ReadWriteMany volume) for outputs above --inline-max; Redis "
           "then holds a pointer [default: unset: large outputs go to Redis]",
           parse_spill_dir, "DIR"),
    Option("compression", ("--compression",), "REDIS_GOCACHE_COMPRESSION",
           "How outputs over 1 KiB are stored in Redis and the spill directory: zstd "
           "(when it saves 10% or more) or none; both are read either way "
           f"[default: {DEFAULT_COMPRESSION}]", parse_compression, "zstd|none"),
    Option("read_only", ("--read-only",), "REDIS_GOCACHE_READONLY",
           "Never write to Redis (for untrusted jobs); puts still land on local disk."),
    Option("timeout", ("--timeout",), "REDIS_GOCACHE_TIMEOUT",
           f"Seconds to wait on Redis before calling it down [default: {DEFAULT_TIMEOUT}]",
           parse_seconds, "SECONDS"),
    Option("retries", ("--retries",), "REDIS_GOCACHE_RETRIES",
           f"Retries of a failed Redis command [default: {DEFAULT_RETRIES}]",
           parse_count, "N"),
    Option("workers", ("--workers",), "REDIS_GOCACHE_WORKERS",
           f"Threads serving requests that need Redis [default: {DEFAULT_WORKERS}]",
           parse_positive_count, "N"),
    Option("tls_ca", ("--tls-ca",), "REDIS_GOCACHE_TLS_CA",
           "CA bundle to verify a rediss:// server", str, "FILE"),
    Option("tls_cert", ("--tls-cert",), "REDIS_GOCACHE_TLS_CERT",
           "Client certificate for rediss://", str, "FILE"),
    Option("tls_key", ("--tls-key",), "REDIS_GOCACHE_TLS_KEY",
           "Client private key for rediss://", str, "FILE"),
    Option("password_file", ("--password-file",), "REDIS_PASSWORD_FILE",
           "File holding the Redis password, used when the URL has none (else "
           "REDIS_PASSWORD)", str, "FILE"),
    Option("breaker_cooldown", ("--breaker-cooldown",), "REDIS_GOCACHE_BREAKER_COOLDOWN",
           "Seconds helpers leave Redis alone after it failed "
           f"[default: {DEFAULT_BREAKER_COOLDOWN:g}]", parse_seconds, "SECONDS"),
    Option("signing_key", ("--signing-key",), "REDIS_GOCACHE_SIGNING_KEY",
           "Ed25519 private key (PEM or raw) to sign every entry this helper writes "
           "(trusted writers only)", os.path.abspath, "FILE"),
    Option("trusted_keys", ("--trusted-keys",), "REDIS_GOCACHE_TRUSTED_KEYS",
           "Ed25519 public keys (PEM or raw, comma-separated): Redis entries not signed by "
           "one of them are misses", parse_key_files, "FILE[,FILE...]"),
    Option("stats_file", ("--stats-file",), "REDIS_GOCACHE_STATS_FILE",
           "Append this run's counters to FILE as one JSON line", str, "FILE"),
    Option("verbose", ("-v", "--verbose"), "REDIS_GOCACHE_VERBOSE",
           "Print a statistics line on stderr at the end"),
    Option("trim_max_age", ("--trim-max-age",), "REDIS_GOCACHE_TRIM_MAX_AGE",
           "Local outputs unused this long are trimmed: seconds or 12h/5d [default: 5d]",
           parse_duration, "DURATION"),
    Option("trim_max_size", ("--trim-max-size",), "REDIS_GOCACHE_TRIM_MAX_SIZE",
           "Trim the local directory down to this size, least recently used first "
           "[default: no cap]", parse_size, "BYTES"),
    Option("no_auto_trim", ("--no-auto-trim",), "REDIS_GOCACHE_NO_AUTO_TRIM",
           "Never trim the local directory at the end of a helper run (default: once a day)"),
    Option("no_prefetch", ("--no-prefetch",), "REDIS_GOCACHE_NO_PREFETCH",
           "Do not fetch, on a new runner, what the last run of the same go command needed"),
    Option("no_fleet_stats", ("--no-fleet-stats",), "REDIS_GOCACHE_NO_FLEET_STATS",
           "Do not add this run's counters to the fleet statistics in Redis"),
)
"""Every option of the helper, in ``--help`` order."""

_BY_FLAG = {flag: opt for opt in OPTIONS for flag in opt.flags}
_BY_NAME = {opt.name: opt for opt in OPTIONS}


class Config(FrozenValue):
    """Everything the helper needs to know, resolved from flags, environment and defaults.

    Frozen and keyword-only, like a ``dataclasses.dataclass(frozen=True, kw_only=True)``, but
    written out: ``dataclasses`` imports ``inspect`` and ``re``, about 15 ms on a CI runner,
    and every ``go`` command starts the helper anew and waits for its first answer (measured
    in bench/: start-up delay adds one for one to a warm build's time).
    """

    _hidden = frozenset({"redis_url", "password"})  # never shown: a URL may hold a password

    __slots__ = (
        "redis_url", "cache_dir", "prefix", "ttl", "inline_max", "spill_dir", "compression",
        "read_only",
        "timeout", "retries", "workers", "tls_ca", "tls_cert", "tls_key", "password",
        "password_file", "breaker_cooldown", "signing_key", "trusted_keys", "stats_file",
        "verbose", "trim_max_age", "trim_max_size", "no_auto_trim", "no_fleet_stats",
        "no_prefetch",
    )

    redis_url: str | None
    cache_dir: str
    prefix: str
    ttl: int
    inline_max: int
    spill_dir: str | None
    compression: str
    read_only: bool
    timeout: float
    retries: int
    workers: int
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    password: str | None
    password_file: str | None
    breaker_cooldown: float
    signing_key: str | None
    trusted_keys: tuple[str, ...]
    stats_file: str | None
    verbose: bool
    trim_max_age: int
    trim_max_size: int  # 0: no size cap
    no_auto_trim: bool
    no_fleet_stats: bool
    no_prefetch: bool

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        cache_dir: str | None = None,  # None: default_cache_dir()
        prefix: str = DEFAULT_PREFIX,
        ttl: int = DEFAULT_TTL,
        inline_max: int = DEFAULT_INLINE_MAX,
        spill_dir: str | None = None,
        compression: str = DEFAULT_COMPRESSION,
        read_only: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        workers: int = DEFAULT_WORKERS,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        password: str | None = None,
        password_file: str | None = None,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        signing_key: str | None = None,
        trusted_keys: tuple[str, ...] = (),
        stats_file: str | None = None,
        verbose: bool = False,
        trim_max_age: int = DEFAULT_TRIM_MAX_AGE,
        trim_max_size: int = 0,
        no_auto_trim: bool = False,
        no_fleet_stats: bool = False,
        no_prefetch: bool = False,
    ) -> None:
        if workers < 1:
            raise ConfigError("workers must be at least 1")
        values = locals()
        values["cache_dir"] = cache_dir or default_cache_dir()
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Config(**values)


SAFE_DEFAULTS: dict[str, str] = {
    "cache_dir": "$XDG_CACHE_HOME/redis-gocache",
    "ttl": "7d",
    "inline_max": str(DEFAULT_INLINE_MAX),
    "timeout": f"{DEFAULT_TIMEOUT:g}",
    "retries": str(DEFAULT_RETRIES),
    "workers": str(DEFAULT_WORKERS),
    "breaker_cooldown": f"{DEFAULT_BREAKER_COOLDOWN:g}",
    "stats_file": "none",
    "verbose": "off",
    "trim_max_age": "5d",
    "trim_max_size": "no cap",
    "no_auto_trim": "off",
    "no_prefetch": "off",
    "no_fleet_stats": "off",
}
"""Settings whose default may stand in for an unusable value in a helper run (the text is
the default as shown). For every other setting (the URL, the prefix, credentials, TLS,
keys, read-only) a guess could write to the wrong place or trust the wrong entries, so an
unusable value switches Redis off for the run instead."""

LOCAL_ONLY = "not using Redis this run (local disk only)"
"""What the helper says it does about an unusable setting that is not in SAFE_DEFAULTS."""

BAD = object()
"""The value :func:`parse_helper_args` records, when told to collect problems, for a flag
whose value it could not use."""


def names(opt: Option) -> str:
    """``REDIS_GOCACHE_TTL (--ttl)``: both names people may have used for a setting."""
    return f"{opt.envvar} ({opt.flags[-1]})"


def consequence(name: str) -> str:
    """What a helper does instead of using an unusable value of setting ``name``."""
    default = SAFE_DEFAULTS.get(name)
    return LOCAL_ONLY if default is None else f"using the default ({default})"


def resolve(values: Mapping[str, Any], env: Mapping[str, str] | None = None,
            problems: list[str] | None = None) -> Config:
    """Build a :class:`Config` from flag values (``None`` or absent: not given) and ``env``.

    Raises :class:`ConfigError` naming the flag or variable that holds a bad value, unless
    ``problems`` is given (the helper's way: no setting may fail a build): then each unusable
    value is one message appended to it, naming the setting and its variable, and the
    setting takes its default where that is safe (:data:`SAFE_DEFAULTS`), else Redis is
    left unset for the run.
    """
    env = os.environ if env is None else env
    kwargs: dict[str, Any] = {}
    local_only = False

    for opt in OPTIONS:
        value = values.get(opt.name)
        if value is BAD:  # parse_helper_args has said why
            local_only = local_only or opt.name not in SAFE_DEFAULTS
            continue
        if value is None or (opt.is_flag and value is False):
            raw = env.get(opt.envvar)
            if raw is None or (raw == "" and not opt.is_flag):
                continue
            try:
                value = parse_bool(raw) if opt.is_flag else opt.parse(raw)  # type: ignore[misc]
            except ConfigError as exc:
                if problems is None:
                    raise ConfigError(f"{opt.envvar}: {exc}") from None
                problems.append(f"{names(opt)}: {exc}; {consequence(opt.name)}")
                local_only = local_only or opt.name not in SAFE_DEFAULTS
                continue
        kwargs[opt.name] = value
    if "cache_dir" in kwargs:
        kwargs["cache_dir"] = os.path.abspath(os.path.expanduser(kwargs["cache_dir"]))
    else:
        kwargs["cache_dir"] = default_cache_dir(env)
    try:
        kwargs["password"] = _password(kwargs.get("password_file"), env)
    except ConfigError as exc:
        if problems is None:
            raise
        problems.append(f"{names(_BY_NAME['password_file'])}: {exc}; {LOCAL_ONLY}")
        local_only = True
    if local_only:
        kwargs["redis_url"] = None
    return Config(**kwargs)


def sources(values: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where each setting's value comes from, by the precedence :func:`resolve` applies:
    ``flag``, its environment variable's name, or ``default``; plus ``password``: the URL,
    the password file, ``REDIS_PASSWORD`` or ``none``."""
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    for opt in OPTIONS:
        value = values.get(opt.name)
        if value is not None and not (opt.is_flag and value is False):
            found[opt.name] = "flag"
        elif env.get(opt.envvar) not in (None, "") or (opt.is_flag and opt.envvar in env):
            found[opt.name] = opt.envvar
        else:
            found[opt.name] = "default"
    return found


def _password(password_file: str | None, env: Mapping[str, str]) -> str | None:
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as f:
                return f.read().strip("\r\n")
        except OSError as exc:
            # Say which file, never what it holds.
            raise ConfigError(
                f"cannot read password file {password_file}: {exc.strerror}"
            ) from None
    return env.get("REDIS_PASSWORD") or None


_CLICK_ONLY = ("-h", "--help", "-V", "--version")
"""Flags that are never the helper's: click answers them."""


def parse_helper_args(argv: Sequence[str], problems: list[str] | None = None,
                      ignore_unknown: bool = False) -> dict[str, Any] | None:
    """Parse the helper's own flags without click.

    Returns the flag values, or ``None`` when ``argv`` holds anything else (a subcommand,
    ``--help``, an unknown flag): the caller then hands ``argv`` to click, which knows
    how to explain it. Raises :class:`ConfigError` for a known flag with a bad value, unless
    ``problems`` is given: then the message goes there and the value is :data:`BAD`, which
    :func:`resolve` replaces as it does a bad variable.

    ``ignore_unknown`` (the helper started by cmd/go, with ``problems``): an unknown option is
    a message in ``problems`` and ignored, with the word after it if that is no option (its
    value, not named: it could be a password), rather than the usage error that would fail
    the build.
    """
    values: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        opt = _BY_FLAG.get(name)
        if opt is None:
            if (not ignore_unknown or problems is None or not arg.startswith("-")
                    or name in _CLICK_ONLY):
                return None
            problems.append(f"unknown option {name.split()[0][:40]!r} ignored")
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1  # its value
            i += 1
            continue
        if opt.is_flag:
            if eq:
                return None
            values[opt.name] = True
        else:
            if eq:
                raw = inline
            elif i + 1 < len(argv):
                i += 1
                raw = argv[i]
            else:
                return None
            try:
                values[opt.name] = opt.parse(raw)  # type: ignore[misc]
            except ConfigError as exc:
                if problems is None:
                    raise ConfigError(f"{name}: {exc}") from None
                problems.append(f"{names(opt)}: {exc}; {consequence(opt.name)}")
                values[opt.name] = BAD
        i += 1
    return values
