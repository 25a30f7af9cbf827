"""Which Redis a URL names (one server, a Redis Cluster, or a Sentinel-managed primary) and
how to connect to it.

URL forms (``rediss`` in place of ``redis``: TLS to every node, sentinels included)::

    redis://[[user]:password@]host[:port][/db]           one server (redis-py's own parser)
    unix://[[user]:password@]/path/to/socket[?db=N]      one server on a Unix socket
    redis+cluster://[[user]:password@]host[:port][,host[:port]...]
                                                         a Redis Cluster: any reachable nodes
                                                         as seeds, the client learns the rest
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
                     [?sentinel_username=U&sentinel_password=P]
                                                         the primary that the sentinels name
                                                         for ``service``; the user and password
                                                         are the primary's, the query's are the
                                                         sentinels' own (if they require one); a
                                                         sentinel_username alone: the sentinels
                                                         take the primary's password too

Ports default to 6379 (cluster nodes) and 26379 (sentinels). A cluster has only database 0.

This module imports redis-py inside :func:`connect` only, so the settings parser can check a
URL without paying for it; and nothing heavy at all until a URL is parsed, since the Redis
store asks :func:`kind_of` on the way to a new runner's first Redis hit.
"""

from __future__ import annotations

from redis_gocache.exceptions import ConfigError
from redis_gocache.value import FrozenValue

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from typing import Any

    import redis
    from redis.retry import Retry

SINGLE = "single"
CLUSTER = "cluster"
SENTINEL = "sentinel"

_SCHEMES = {
    "redis": (SINGLE, False),
    "rediss": (SINGLE, True),
    "unix": (SINGLE, False),
    "redis+cluster": (CLUSTER, False),
    "rediss+cluster": (CLUSTER, True),
    "redis+sentinel": (SENTINEL, False),
    "rediss+sentinel": (SENTINEL, True),
}
SCHEMES = tuple(f"{s}://" for s in _SCHEMES)
"""Every URL scheme the helper accepts, with its ``://``."""

_DEFAULT_PORT = {CLUSTER: 6379, SENTINEL: 26379}
_SENTINEL_QUERY = ("sentinel_username", "sentinel_password")


class Topology(FrozenValue):
    """What a ``+cluster`` or ``+sentinel`` URL says (single-server URLs stay strings).
    Frozen, equal by value; its repr leaves the credentials out."""

    __slots__ = ("kind", "tls", "hosts", "username", "password", "service", "db",
                 "sentinel_username", "sentinel_password")
    _hidden = frozenset({"username", "password", "sentinel_username", "sentinel_password"})

    kind: str
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    service: str
    db: int
    sentinel_username: str | None
    sentinel_password: str | None

    def __init__(self, kind: str, tls: bool, hosts: tuple[tuple[str, int], ...],
                 username: str | None = None, password: str | None = None, service: str = "",
                 db: int = 0, sentinel_username: str | None = None,
                 sentinel_password: str | None = None) -> None:
        for name, value in (("kind", kind), ("tls", tls), ("hosts", hosts),
                            ("username", username), ("password", password),
                            ("service", service), ("db", db),
                            ("sentinel_username", sentinel_username),
                            ("sentinel_password", sentinel_password)):
            object.__setattr__(self, name, value)


def kind_of(url: str) -> str:
    """``single``, ``cluster`` or ``sentinel``, by the URL's scheme (unknown: ``single``)."""
    return _SCHEMES.get(url.partition("://")[0].lower(), (SINGLE, False))[0]


def is_tls(url: str) -> bool:
    return _SCHEMES.get(url.partition("://")[0].lower(), (SINGLE, False))[1]


def parse(url: str) -> Topology:
    """The parts of a ``+cluster`` or ``+sentinel`` URL.

    Raises :class:`ConfigError` saying what is wrong without quoting the URL: it may hold a
    password.
    """
    from urllib.parse import parse_qsl, unquote

    scheme, sep, rest = url.partition("://")
    kind, tls = _SCHEMES.get(scheme.lower(), (SINGLE, False))
    if not sep or kind == SINGLE:
        raise ConfigError(f"not a Cluster or Sentinel URL (scheme: {scheme or '(none)'})")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    auth, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = auth.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    hosts = tuple(_host_port(h, _DEFAULT_PORT[kind], kind) for h in hostlist.split(","))
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if kind != SENTINEL or key not in _SENTINEL_QUERY:
            raise ConfigError(f"the {scheme} URL does not take the option {key!r}")
        options[key] = value
    parts = [p for p in path.split("/") if p]
    service, db = "", 0
    if kind == CLUSTER:
        if parts not in ([], ["0"]):
            raise ConfigError("a Redis Cluster has only database 0: drop the URL's path")
    else:
        if not parts or len(parts) > 2:
            raise ConfigError("a Sentinel URL names the service after the hosts: "
                              "redis+sentinel://host:26379/<service>[/<db>]")
        service = unquote(parts[0])
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise ConfigError("the database of a Sentinel URL must be a number")
            db = int(parts[1])
    return Topology(kind, tls, hosts, username, password, service, db,
                    options.get("sentinel_username") or None,
                    options.get("sentinel_password") or None)


def _host_port(text: str, default: int, kind: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [::1]:6379
        host, _, after = text[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigError(f"a {kind} URL needs host[:port] after '//' "
                          "(several separated by commas)")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"a {kind} URL has a bad port (a password with / ? # or @ must be "
                          "percent-encoded, or given in REDIS_PASSWORD)")
    return host, int(port_text)


_POOL_WAIT = "timeout"  # BlockingConnectionPool's wait for a free connection


def connect(url: str, conn_kwargs: dict[str, Any], retry: Retry) -> redis.Redis:
    """A client of the Cluster or Sentinel-managed primary ``url`` names.

    ``conn_kwargs`` are the store's connection settings (socket timeouts, pool size, password,
    TLS files). A cluster client is typed as :class:`redis.Redis` here: the store only uses
    commands both have.
    """
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    from redis.sentinel import Sentinel

    topo = parse(url)
    kwargs = {k: v for k, v in conn_kwargs.items() if k != _POOL_WAIT}
    # A password in the URL wins over REDIS_PASSWORD, as it does for redis:// URLs.
    if topo.password is not None:
        kwargs["password"] = topo.password
    if topo.username is not None:
        kwargs["username"] = topo.username
    tls = {k: v for k, v in kwargs.items() if k.startswith("ssl_")}
    if topo.tls:
        kwargs["ssl"] = True
    if topo.kind == CLUSTER:
        try:
            client = RedisCluster(
                startup_nodes=[ClusterNode(host, port)  # type: ignore[no-untyped-call]
                               for host, port in topo.hosts],
                # With full coverage required, losing one shard would fail every command.
                require_full_coverage=False,
                retry=retry,
                **kwargs,
            )
        except redis.exceptions.RedisClusterException as exc:
            # Raised when no seed answers: as good as down.
            raise redis.exceptions.ConnectionError(str(exc)) from None
        return client  # type: ignore[return-value]
    sentinel_kwargs: dict[str, Any] = {
        k: v for k, v in kwargs.items() if k.startswith("socket_")
    }
    if topo.tls:
        sentinel_kwargs.update(ssl=True, **tls)
    if topo.sentinel_username:
        sentinel_kwargs["username"] = topo.sentinel_username
    if topo.sentinel_password:
        sentinel_kwargs["password"] = topo.sentinel_password
    elif topo.sentinel_username and kwargs.get("password") is not None:
        # The same ACL user on the sentinels and on Redis (the Helm chart's HA layout): its
        # password, from the URL or REDIS_PASSWORD, is not spelt out twice.
        sentinel_kwargs["password"] = kwargs["password"]
    sentinel = Sentinel(
        list(topo.hosts), sentinel_kwargs=sentinel_kwargs)
    primary: redis.Redis = sentinel.master_for(
        topo.service, db=topo.db, retry=retry, **kwargs)
    return primary


__all__ = ["CLUSTER", "SCHEMES", "SENTINEL", "SINGLE", "Topology", "connect", "is_tls",
           "kind_of", "parse"]
