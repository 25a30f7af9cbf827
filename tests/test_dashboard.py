"""The chart's Grafana dashboard: every metric its queries name is one that a live
``redis-gocache exporter`` emits (scraped here) or one of the redis_exporter metrics listed
below (and in docs/kubernetes.md); and it shows what a platform team looks for."""

from __future__ import annotations

import json
import re

import redis

from redis_gocache.store import counters
from tests.redisproc import RedisServer
from tests.test_exporter import ExporterProcess
from tests.test_helm import FULLNAME, ROOT, SCENARIOS, render

REDIS_EXPORTER_METRICS = frozenset({
    "redis_memory_used_bytes",    # INFO used_memory
    "redis_memory_max_bytes",     # INFO maxmemory
    "redis_evicted_keys_total",   # INFO evicted_keys
    "redis_expired_keys_total",   # INFO expired_keys
    "redis_connected_clients",    # INFO connected_clients
})
"""The redis_exporter metrics the dashboard uses: the names its exporter/exporter.go maps
``INFO`` fields to (oliver006/redis_exporter, the chart's metrics.image). Keep
docs/kubernetes.md's list the same."""

# PromQL words that are not metric names.
PROMQL = frozenset({
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "increase", "irate",
    "clamp_min", "clamp_max", "topk", "bottomk", "label_values", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "offset", "bool", "histogram_quantile",
})


def dashboard() -> dict:
    rendered = render(SCENARIOS["exporter-dashboard"])
    cm = rendered.get("ConfigMap", f"{FULLNAME}-dashboard")
    data = json.loads(cm["data"]["redis-gocache.json"])
    assert isinstance(data, dict)
    return data


def queries(board: dict) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside label matchers
    ({...}), grouping clauses (by (...)), ranges ([...]), strings and Grafana variables."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    # label_values(metric, label): the label is not a metric.
    for m in re.finditer(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*(\w+)\s*\)", expr):
        words.discard(m.group(2))
    words -= {w for w in words if re.fullmatch(r"\d+(e-?\d+)?", w)}
    return {w for w in words if w not in PROMQL and not re.fullmatch(r"e\d*", w)}


def test_every_query_names_a_metric_our_exporter_or_redis_exporter_emits() -> None:
    board = dashboard()
    named = set().union(*(metric_names(e) for e in queries(board)))
    ours = {n for n in named if n.startswith("redis_gocache_")}
    theirs = named - ours
    assert ours and theirs, named
    assert theirs <= REDIS_EXPORTER_METRICS, theirs - REDIS_EXPORTER_METRICS

    # Our metrics, scraped live from a real exporter over a real Redis holding the counters
    # a helper pushes.
    with RedisServer() as server:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        counters.push(client, "gocache:", {"runs": 1, "gets": 4, "hits": 3, "local_hits": 1,
                                        "remote_hits": 2, "misses": 1, "puts": 1,
                                        "hit_bytes": 300, "remote_hit_bytes": 200,
                                        "get_errors": 1, "prefetched": 1, "trims": 1,
                                        "trimmed_bytes": 10})
        client.close()
        with ExporterProcess(server.url) as exp:
            scraped = {s.name for s in exp.scrape()}
    missing = ours - scraped
    assert not missing, f"the dashboard queries metrics the exporter does not emit: {missing}"


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    board = dashboard()
    text = json.dumps(board)
    for needed in ("redis_gocache_hits_total", "redis_gocache_gets_total",
                   "redis_gocache_puts_total", "redis_gocache_redis_read_bytes_total",
                   "redis_gocache_read_bytes_total", "redis_gocache_get_errors_total",
                   "redis_memory_used_bytes", "redis_evicted_keys_total",
                   "redis_connected_clients"):
        assert needed in text, needed
    titles = [p["title"] for p in board["panels"]]
    for title in ("Fleet hit rate", "Bytes served: from Redis vs local",
                  "Gets and puts per minute", "Errors per minute", "Redis memory",
                  "Evictions per minute", "Connected clients"):
        assert title in titles
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    # Every panel reads the Prometheus data source the user picks.
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
               for p in board["panels"])


def test_metric_name_extraction() -> None:
    # The helper above must not let a name slip through, nor take a label for a metric.
    assert metric_names('sum by (pod) (rate(redis_x_total{prefix=~"$prefix"}[5m])) * 60'
                        ) == {"redis_x_total"}
    assert metric_names("a_metric / clamp_min(sum(rate(b_metric[$__rate_interval])), 1e-9)"
                        ) == {"a_metric", "b_metric"}
    assert metric_names("label_values(redis_gocache_gets_total, prefix)") == {
        "redis_gocache_gets_total"}


def test_docs_list_the_redis_exporter_metrics() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    section = text.split("redis_exporter metrics the dashboard uses", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"`(redis_[a-z_]+)`", section)) == REDIS_EXPORTER_METRICS
