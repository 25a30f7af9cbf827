"""``redis-gocache stats``: hit rate, bytes and Redis memory per namespace.

Counters come from the fleet hashes (:mod:`redis_gocache.store.counters`). Key counts and memory
come from a sample by default: ``SCAN`` (no ``MATCH``) until a bounded number of keys were
visited, ``MEMORY USAGE`` of each cache key among them, scaled up by ``DBSIZE`` / visited.
SCAN walks the keyspace in hash-table order, which has nothing to do with key names, so the
visited keys are a fair sample of every namespace at once. ``exact`` walks everything.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis_gocache.ops.common import BATCH, SCAN_COUNT, primaries, primaries_info
from redis_gocache.store import counters
from redis_gocache.store.keys import KINDS, Keys, classify

DEFAULT_SAMPLE = 10_000
"""Keys visited by a sampling ``stats`` (``--sample``)."""


@dataclasses.dataclass
class KeyCensus:
    """Keys and their memory per namespace and kind, counted or estimated."""

    exact: bool
    visited: int = 0
    dbsize: int = 0
    keys: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    memory: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    @property
    def scale(self) -> float:
        if self.exact or not self.visited:
            return 1.0
        return max(1.0, self.dbsize / self.visited)

    def add(self, prefix: str, kind: str, memory: int) -> None:
        keys = self.keys.setdefault(prefix, {})
        keys[kind] = keys.get(kind, 0) + 1
        mem = self.memory.setdefault(prefix, {})
        mem[kind] = mem.get(kind, 0) + memory

    def estimate(self, prefix: str) -> dict[str, dict[str, int]]:
        """``{"keys": {kind: n}, "memory_bytes": {kind: n}}`` for one namespace, scaled."""
        return {
            "keys": {k: round(self.keys.get(prefix, {}).get(k, 0) * self.scale)
                     for k in KINDS.values()},
            "memory_bytes": {k: round(self.memory.get(prefix, {}).get(k, 0) * self.scale)
                             for k in KINDS.values()},
        }


def census(client: Any, *, sample: int, exact: bool, prefixes: Iterable[str] = (),
           progress: Callable[[int], None] | None = None) -> KeyCensus:
    """Count keys and ``MEMORY USAGE`` per namespace (see the module docstring).

    ``exact`` with ``prefixes`` walks only those namespaces (``SCAN MATCH``); without, the
    whole database.
    """
    nodes = primaries(client)  # a Cluster's keys are spread over its primaries
    result = KeyCensus(exact=exact, dbsize=sum(int(node.dbsize()) for node in nodes))
    pending: list[tuple[bytes, str, str]] = []

    def measure() -> None:
        if not pending:
            return
        pipe = client.pipeline(transaction=False)
        for key, _, _ in pending:
            pipe.memory_usage(key)
        for (_, prefix, kind), used in zip(pending, pipe.execute(), strict=True):
            if used is not None:  # expired meanwhile
                result.add(prefix, kind, int(used))
        pending.clear()

    def take(key: bytes) -> None:
        found = classify(key)
        if found is not None:
            pending.append((key, found[0], found[1]))
            if len(pending) >= BATCH:
                measure()

    wanted = list(prefixes)
    if exact and wanted:
        for prefix in wanted:
            for key in client.scan_iter(match=Keys(prefix).pattern(), count=SCAN_COUNT):
                result.visited += 1
                if progress:
                    progress(1)
                take(key)
    else:
        complete = True
        for i, node in enumerate(nodes):  # slots spread keys evenly: any primary is a sample
            cursor = 0
            while True:
                cursor, keys = node.scan(cursor, count=SCAN_COUNT)
                result.visited += len(keys)
                if progress:
                    progress(len(keys))
                for key in keys:
                    take(key)
                if cursor == 0 or (not exact and result.visited >= sample):
                    break
            if cursor != 0 or (not exact and result.visited >= sample and i < len(nodes) - 1):
                complete = False
                break
        if complete:
            result.exact = True
    measure()
    return result


def server_info(client: Any) -> dict[str, Any]:
    """Version and memory facts from ``INFO`` (empty if the ACL forbids it)."""
    import redis.exceptions as rex

    try:
        infos = primaries_info(client, "server", "memory", "stats")
    except rex.ResponseError as exc:  # NoPermissionError is one
        # An ACL that forbids INFO leaves a gap in the report; it is not a failure.
        if isinstance(exc, rex.NoPermissionError) or "NOPERM" in str(exc):
            return {}
        raise
    keys = ("redis_version", "used_memory", "maxmemory", "maxmemory_policy",
            "evicted_keys", "expired_keys", "total_system_memory")
    info = dict(infos[0])
    # A Cluster's primaries: memory and key counts add up (version and policy: the first's).
    for more in infos[1:]:
        for k in ("used_memory", "maxmemory", "evicted_keys", "expired_keys"):
            if k in info and k in more:
                info[k] = int(info[k]) + int(more[k])
    return {k: info[k] for k in keys if k in info}


def gather(client: Any, prefixes: list[str], *, all_namespaces: bool, sample: int,
           exact: bool, days: int, progress: Callable[[int], None] | None = None
           ) -> dict[str, Any]:
    """Everything ``stats`` shows, as one JSON-ready dict."""
    keys = census(client, sample=sample, exact=exact,
                  prefixes=() if all_namespaces else prefixes, progress=progress)
    names = list(prefixes)
    if all_namespaces:
        names = sorted(set(names) | set(keys.keys))
    namespaces: dict[str, Any] = {}
    for prefix in names:
        totals, per_day = counters.read(client, prefix, days)
        namespaces[prefix] = {
            "totals": totals,
            "hit_rate": hit_rate(totals),
            "days": {d: {"counters": c, "hit_rate": hit_rate(c)} for d, c in per_day.items()},
            **keys.estimate(prefix),
        }
    return {
        "time": int(time.time()),
        "server": server_info(client),
        "keys_exact": keys.exact,
        "keys_visited": keys.visited,
        "dbsize": keys.dbsize,
        "namespaces": namespaces,
    }


def hit_rate(counts: Mapping[str, int]) -> float | None:
    gets = counts.get("gets", 0)
    return round(counts.get("hits", 0) / gets, 4) if gets else None


# -- rendering ---------------------------------------------------------------------------


def local_data(cache_dir: str, limit: int) -> dict[str, Any]:
    """The local directory's part of ``stats``: per trust level, outputs, bytes and action
    records, and the local size limit (``--trim-max-size``; 0: none)."""
    from redis_gocache.ops.local import usage

    levels = usage(cache_dir)
    return {
        "dir": cache_dir,
        "limit_bytes": limit,
        "bytes": sum(u.bytes for u in levels),
        "outputs": sum(u.outputs for u in levels),
        "actions": sum(u.actions for u in levels),
        "levels": {os.path.basename(u.root): {"bytes": u.bytes, "outputs": u.outputs,
                                              "actions": u.actions} for u in levels},
    }


def render_local(local: Mapping[str, Any]) -> str:
    """The local directory's lines of ``stats``."""
    from redis_gocache.ops.common import human_bytes as hb

    limit = local["limit_bytes"]
    cap = (f"{hb(limit)} limit (--trim-max-size), {local['bytes'] / limit:.0%} used" if limit
           else "no size limit (--trim-max-size)")
    lines = [f"local directory {local['dir']}: {hb(local['bytes'])} in {local['outputs']} "
             f"outputs, {local['actions']} action records; {cap}"]
    for name, use in local["levels"].items():
        lines.append(f"  {name}: {hb(use['bytes'])} in {use['outputs']} outputs, "
                     f"{use['actions']} action records")
    return "\n".join(lines) + "\n"


def render_text(data: Mapping[str, Any]) -> str:
    from redis_gocache.ops.common import human_bytes as hb

    lines: list[str] = []
    server = data["server"]
    if server:
        maxmem = server.get("maxmemory", 0)
        used = server.get("used_memory", 0)
        cap = f" of {hb(maxmem)} ({used / maxmem:.0%})" if maxmem else " (no maxmemory)"
        lines.append(
            f"Redis {server.get('redis_version', '?')}: {hb(used)} used{cap}, "
            f"policy {server.get('maxmemory_policy', '?')}, "
            f"{server.get('evicted_keys', 0)} keys evicted since start")
    how = "counted" if data["keys_exact"] else (
        f"estimated from {data['keys_visited']} of {data['dbsize']} keys; --exact to count")
    for prefix, ns in data["namespaces"].items():
        t = ns["totals"]
        lines.append("")
        lines.append(f"namespace {prefix!r}")
        if t:
            rate = ns["hit_rate"]
            lines.append(
                f"  {t.get('runs', 0)} runs, {t.get('gets', 0)} gets: "
                f"{t.get('hits', 0)} hits ({'-' if rate is None else f'{rate:.1%}'}; "
                f"{t.get('local_hits', 0)} local, {t.get('remote_hits', 0)} redis), "
                f"{t.get('misses', 0)} misses, {t.get('rejected', 0)} rejected, "
                f"{t.get('get_errors', 0)} errors")
            lines.append(
                f"  {t.get('puts', 0)} puts ({t.get('put_errors', 0)} errors); "
                f"{hb(t.get('hit_bytes', 0))} read ({hb(t.get('remote_hit_bytes', 0))} "
                f"from redis), {hb(t.get('put_bytes', 0))} written "
                f"({hb(t.get('upload_bytes', 0))} stored in Redis{stored_ratio(t)}); "
                f"redis wait {t.get('redis_wait_ms', 0) / 1000:.1f} s")
            if t.get("updated"):
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t["updated"]))
                lines.append(f"  last report {when}")
        else:
            lines.append("  no fleet statistics yet (helpers report at the end of a run)")
        for d, c in ns["days"].items():
            rate = c["hit_rate"]
            cnt = c["counters"]
            lines.append(
                f"  {d}: {cnt.get('runs', 0)} runs, {cnt.get('gets', 0)} gets, hit rate "
                f"{'-' if rate is None else f'{rate:.1%}'}, {hb(cnt.get('hit_bytes', 0))} read")
        keys, mem = ns["keys"], ns["memory_bytes"]
        parts = [f"{keys[k]} {k} keys {hb(mem[k])}" for k in KINDS.values() if keys[k]]
        lines.append(f"  redis keys ({how}): {', '.join(parts) or 'none'}; "
                     f"total {hb(sum(mem.values()))}")
    return "\n".join(lines).lstrip("\n") + "\n"


def stored_ratio(totals: dict[str, Any]) -> str:
    """What the uploads took as stored (compressed or not) per byte of output uploaded, when
    the helpers' counters say: ", 0.26 per output byte". Counters from helpers before
    compression count output bytes, so a fleet mid-upgrade shows a figure between the two."""
    uploaded, puts = totals.get("upload_bytes", 0), totals.get("put_bytes", 0)
    if not uploaded or not puts:
        return ""
    return f", {uploaded / puts:.2f} per output byte written"


COUNTER_HELP = {
    "runs": "Helper runs that reported",
    "gets": "Get requests",
    "misses": "Gets answered with a miss",
    "get_errors": "Gets that failed on a local or Redis error",
    "rejected": "Entries from Redis that failed verification",
    "puts": "Put requests",
    "put_errors": "Puts that failed",
    "uploads": "Outputs uploaded to Redis",
    "upload_errors": "Uploads that failed",
    "refreshed": "Redis TTL refreshes",
    "prefetched": "Entries fetched ahead from Redis on new runners",
    "trims": "Daily trims of a runner's local directory",
    "trimmed_outputs": "Outputs the daily trims removed from local directories",
    "trimmed_bytes": "Bytes the daily trims removed from local directories",
}
"""Fleet counters (:data:`redis_gocache.ops.counters.COUNTERS`) exported under their own name,
``redis_gocache_<name>_total``, with their help text (``stats --prometheus`` and the exporter)."""

BYTES_HELP = {
    "hit_bytes": ("read_bytes", "Bytes of outputs served on hits"),
    "remote_hit_bytes": ("redis_read_bytes", "Bytes of outputs fetched from Redis"),
    "put_bytes": ("written_bytes", "Bytes of outputs put by go"),
    "upload_bytes": ("uploaded_bytes", "Bytes uploaded to Redis, as stored (compressed)"),
}
"""Fleet byte counters, exported as ``redis_gocache_<metric>_total``: field: (metric, help)."""

HITS_HELP = "Gets answered with a hit, by where the output came from"
HIT_SOURCES = ("local", "remote")
"""The ``source`` label of ``redis_gocache_hits_total``: counters ``<source>_hits``."""


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_prometheus(data: Mapping[str, Any]) -> str:
    """The text exposition format (version 0.0.4), for a textfile collector or Pushgateway."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str,
               samples: Iterable[tuple[Mapping[str, str], float]], suffix: str = "") -> None:
        rows = list(samples)
        if not rows:
            return
        # The 0.0.4 text format names a counter's family with its _total suffix.
        full = f"redis_gocache_{name}{suffix}"
        out.append(f"# HELP {full} {help_}")
        out.append(f"# TYPE {full} {kind}")
        for labels, value in rows:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            out.append(f"{full}{{{text}}} {_number(value)}" if text
                       else f"{full} {_number(value)}")

    spaces: Mapping[str, Any] = data.get("namespaces", {})

    def per_ns(field: str) -> list[tuple[Mapping[str, str], float]]:
        return [({"namespace": p}, ns["totals"].get(field, 0)) for p, ns in spaces.items()]

    for field, help_ in COUNTER_HELP.items():
        family(field, "counter", help_, per_ns(field), "_total")
    family("hits", "counter", HITS_HELP,
           [({"namespace": p, "source": src}, ns["totals"].get(f"{src}_hits", 0))
            for p, ns in spaces.items() for src in HIT_SOURCES], "_total")
    for field, (name, help_) in BYTES_HELP.items():
        family(name, "counter", help_, per_ns(field), "_total")
    family("redis_wait_seconds", "counter", "Time helpers spent waiting on Redis",
           [(labels, v / 1000) for labels, v in per_ns("redis_wait_ms")], "_total")
    family("hit_ratio", "gauge", "Hits per get since the namespace was first used",
           [({"namespace": p}, ns["hit_rate"]) for p, ns in spaces.items()
            if ns["hit_rate"] is not None])
    family("last_report_timestamp_seconds", "gauge", "When a helper last reported",
           [({"namespace": p}, ns["totals"]["updated"]) for p, ns in spaces.items()
            if ns["totals"].get("updated")])
    family("keys", "gauge", "Redis keys by kind (estimated unless keys_exact is 1)",
           [({"namespace": p, "kind": k}, v) for p, ns in spaces.items()
            for k, v in ns["keys"].items()])
    family("memory_bytes", "gauge", "Redis MEMORY USAGE by kind (estimated unless keys_exact)",
           [({"namespace": p, "kind": k}, v) for p, ns in spaces.items()
            for k, v in ns["memory_bytes"].items()])
    if "keys_exact" in data:
        family("keys_exact", "gauge",
               "1 if key counts were counted, 0 if estimated from a sample",
               [({}, 1 if data["keys_exact"] else 0)])
    local = data.get("local")
    if local:
        family("local_bytes", "gauge", "Bytes of outputs in this runner's local directory",
               [({"level": n}, u["bytes"]) for n, u in local["levels"].items()])
        family("local_outputs", "gauge", "Output files in this runner's local directory",
               [({"level": n}, u["outputs"]) for n, u in local["levels"].items()])
        family("local_limit_bytes", "gauge", "The local size limit, --trim-max-size (0: none)",
               [({}, local["limit_bytes"])])
    server = data.get("server")
    if server:
        family("redis_used_memory_bytes", "gauge", "Redis used_memory",
               [({}, server.get("used_memory", 0))])
        family("redis_maxmemory_bytes", "gauge", "Redis maxmemory (0: no limit)",
               [({}, server.get("maxmemory", 0))])
        family("redis_evicted_keys", "counter", "Keys Redis evicted since it started",
               [({}, server.get("evicted_keys", 0))], "_total")
    return "\n".join(out) + "\n"


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
