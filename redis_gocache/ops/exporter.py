"""``redis-gocache exporter``: the fleet counters as Prometheus metrics, read at scrape time.

Every helper adds its counters to ``<prefix>s:totals`` and ``<prefix>s:day:<date>`` after its
last answer (:mod:`redis_gocache.ops.fleet`). The exporter keeps no state of its own: each
scrape reads those hashes (one pipelined round trip per namespace), so any number of exporter
replicas agree, and a restart loses nothing. It needs only ``HGETALL`` on the prefix: run it
with the chart's reader user.

What a scrape returns, per namespace (label ``prefix``: the key prefix. Not ``namespace``, as
``stats --prometheus`` has it, because Prometheus's Kubernetes discovery sets that label to
the pod's namespace):

* ``redis_gocache_<counter>_total``: the totals, under the names ``stats --prometheus`` uses
  (:data:`~redis_gocache.ops.stats_cmd.COUNTER_HELP`, ``..._bytes_total``, and
  ``redis_gocache_hits_total{source="local"|"remote"}``);
* ``redis_gocache_day_<counter>{day="YYYY-MM-DD"}``: the same counters for each of the last
  ``--days`` days (UTC), as gauges: a day's value only grows, then the day ends;
* ``redis_gocache_hit_ratio`` and ``redis_gocache_last_report_timestamp_seconds``;
* ``redis_gocache_fleet_up``: 1 if Redis answered this scrape, else 0 (and nothing else).

prometheus-client is an optional dependency (``pip install 'redis-gocache[exporter]'``);
only this module imports it, and only the ``exporter`` command
(:mod:`redis_gocache.commands`) imports this module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_wsgi_server
from prometheus_client.registry import Collector, CollectorRegistry

from redis_gocache.exceptions import ConfigError, GoCacheError
from redis_gocache.ops.stats_cmd import BYTES_HELP, COUNTER_HELP, HIT_SOURCES, HITS_HELP, hit_rate
from redis_gocache.store import counters

if TYPE_CHECKING:
    from redis_gocache.store.redis import RedisStore

DEFAULT_DAYS = 2
"""Per-day counters exported by default: today and yesterday (UTC)."""

METRIC = "redis_gocache_"
"""Prefix of every metric name."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::]:9122`` for IPv6) as ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen wants HOST:PORT, e.g. 0.0.0.0:9122, not {text!r}")
    return host, int(port)


def metric_names() -> list[str]:
    """Every metric name a scrape can return (as Prometheus sees it: counters end in
    ``_total``). The chart's dashboard test checks its queries against this list and a live
    scrape."""
    names = [f"{METRIC}fleet_up", f"{METRIC}hit_ratio",
             f"{METRIC}last_report_timestamp_seconds", f"{METRIC}hits_total",
             f"{METRIC}redis_wait_seconds_total"]
    names += [f"{METRIC}{field}_total" for field in COUNTER_HELP]
    names += [f"{METRIC}{name}_total" for name, _ in BYTES_HELP.values()]
    names += [f"{METRIC}day_{field}" for field in counters.COUNTERS]
    return sorted(names)


class FleetCollector(Collector):
    """Reads the fleet hashes of ``prefixes`` through ``client()`` on every scrape.

    ``client`` returns a redis-py client; ``translate`` is a context manager factory that
    turns redis-py's errors into ours (the store's); ``log`` gets one line per failed scrape.
    """

    def __init__(self, client: Callable[[], Any], translate: Callable[[], Any],
                 prefixes: Sequence[str], days: int = DEFAULT_DAYS,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self._client = client
        self._translate = translate
        self._prefixes = list(prefixes)
        self._days = days
        self._log = log

    @property
    def prefixes(self) -> list[str]:
        return list(self._prefixes)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{METRIC}fleet_up",
                               "1 if this scrape read the fleet counters from Redis")
        try:
            with self._translate():
                client = self._client()
                read = {p: counters.read(client, p, self._days) for p in self._prefixes}
        except GoCacheError as exc:
            self._log(f"redis-gocache exporter: cannot read the fleet counters: {exc}")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._totals(read)
        yield from self._per_day(read)

    def _totals(self, read: dict[str, tuple[counters.Counts, dict[str, counters.Counts]]]
                ) -> Iterator[Metric]:
        ns = ["prefix"]

        def counter(name: str, help_: str, value: Callable[[counters.Counts], float]
                    ) -> CounterMetricFamily:
            # prometheus-client adds the _total suffix of the exposition itself.
            family = CounterMetricFamily(f"{METRIC}{name}", help_, labels=ns)
            for prefix, (totals, _) in read.items():
                family.add_metric([prefix], value(totals))
            return family

        def field_of(name: str) -> Callable[[counters.Counts], float]:
            return lambda totals: totals.get(name, 0)

        for field, help_ in COUNTER_HELP.items():
            yield counter(field, help_, field_of(field))
        for field, (name, help_) in BYTES_HELP.items():
            yield counter(name, help_, field_of(field))
        yield counter("redis_wait_seconds", "Time helpers spent waiting on Redis",
                      lambda t: t.get("redis_wait_ms", 0) / 1000)
        hits = CounterMetricFamily(f"{METRIC}hits", HITS_HELP, labels=["prefix", "source"])
        ratio = GaugeMetricFamily(f"{METRIC}hit_ratio",
                                  "Hits per get since the namespace was first used", labels=ns)
        last = GaugeMetricFamily(f"{METRIC}last_report_timestamp_seconds",
                                 "When a helper last reported", labels=ns)
        for prefix, (totals, _) in read.items():
            for source in HIT_SOURCES:
                hits.add_metric([prefix, source], totals.get(f"{source}_hits", 0))
            rate = hit_rate(totals)
            if rate is not None:
                ratio.add_metric([prefix], rate)
            if totals.get("updated"):
                last.add_metric([prefix], totals["updated"])
        yield from (hits, ratio, last)

    def _per_day(self, read: dict[str, tuple[counters.Counts, dict[str, counters.Counts]]]
                 ) -> Iterator[Metric]:
        for field in counters.COUNTERS:
            family = GaugeMetricFamily(f"{METRIC}day_{field}",
                                       f"The fleet counter {field} of one day (UTC)",
                                       labels=["prefix", "day"])
            for prefix, (_, days) in read.items():
                for day, counts in days.items():
                    family.add_metric([prefix, day], counts.get(field, 0))
            yield family


class Exporter:
    """The HTTP server of ``redis-gocache exporter`` (``/metrics``; any path answers the
    same), serving on a thread until :meth:`stop`."""

    def __init__(self, collector: FleetCollector, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.prefixes = collector.prefixes
        self._server, self._thread = start_wsgi_server(port, host, registry=self.registry)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def wait(self) -> None:
        """Block while the server runs (its thread is a daemon: the process's end ends it)."""
        self._thread.join()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def start(store: RedisStore, host: str, port: int, prefixes: Sequence[str],
          days: int = DEFAULT_DAYS) -> Exporter:
    """Serve the fleet counters of ``prefixes``, read through ``store`` at each scrape, on
    ``host:port``; failed reads are one line on stderr each."""
    from redis_gocache.ops.common import translated

    collector = FleetCollector(store.client, lambda: translated(store), prefixes, days,
                               log=lambda line: print(line, file=sys.stderr, flush=True))
    return Exporter(collector, host, port)


__all__ = ["DEFAULT_DAYS", "Exporter", "FleetCollector", "metric_names", "parse_listen",
           "start"]
