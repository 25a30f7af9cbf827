"""The Redis key schema (store/keys.py): what the store builds, the ops commands recognise."""

from __future__ import annotations

import pytest

from redis_gocache.store.keys import KINDS, Keys, belongs, classify

ID = bytes(range(32))
TOKEN = bytes(range(16))
TAG = "0123456789abcdef" * 2


def built(prefix: str) -> dict[str, str]:
    """One key of every kind, as the store and the fleet counters build them."""
    keys = Keys(prefix)
    return {
        "action": keys.action(ID),
        "blob": keys.blob(ID),
        "zblob": keys.zblob(ID),
        "upload": keys.upload(TOKEN),
        "upload on a Cluster": keys.upload(TOKEN, keys.blob(ID)),
        "manifest": keys.manifest(TAG),
        "totals": keys.stats_totals(),
        "day": keys.stats_day("2026-12-05"),
        "paths": keys.stats_paths("2026-12-05"),
    }


@pytest.mark.parametrize("prefix", ["gocache:", "ci:team-a:", "c[i]*:", "x"])
def test_every_built_key_is_recognised_under_its_prefix(prefix: str) -> None:
    kinds = set()
    for name, key in built(prefix).items():
        kind = belongs(key.encode(), prefix)
        assert kind is not None, (name, key)
        kinds.add(kind)
        assert classify(key.encode()) is not None, (name, key)
    assert kinds == set(KINDS.values())


def test_shapes_are_strict() -> None:
    keys = Keys("gocache:")
    for key in ("gocache:a:short", "gocache:a:" + "A" * 64, "gocache:o:" + "0" * 63,
                "gocache:m:" + "0" * 31, "gocache:t:" + "0" * 32 + "{x{y}",
                "gocache:s:day:2026-1-05", "gocache:s:other", "gocache:not-a-cache-key",
                keys.action(ID) + "x"):
        assert belongs(key.encode(), "gocache:") is None, key
        assert classify(key.encode()) is None, key


def test_a_nested_namespace_is_not_ours() -> None:
    nested = Keys("gocache:team2:").action(ID).encode()
    assert belongs(nested, "gocache:") is None
    assert belongs(nested, "gocache:team2:") == "action"
    assert classify(nested) == ("gocache:team2:", "action")


def test_scan_pattern_escapes_glob_characters() -> None:
    assert Keys("c[i]*?:").pattern() == "c\\[i\\]\\*\\?:*"
    assert Keys("a\\b:").pattern() == "a\\\\b:*"
