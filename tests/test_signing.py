"""Signed entries: trusted writers sign with an Ed25519 private key, readers verify with public
keys only, and an entry without a valid signature from a trusted key is a miss, counted."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_gocache import signing
from redis_gocache.exceptions import ConfigError
from redis_gocache.store.base import Entry
from tests.gocmd import GoCmd, action_id, helper_command, helper_env, unb64
from tests.redisproc import RedisServer

INLINE_MAX = 1024


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("a", "b", "c"):
        signing.generate(str(d / name), str(d / f"{name}.pub"))
        out[name] = d / name
        out[f"{name}.pub"] = d / f"{name}.pub"
    return out


def run(
    tmp: Path, url: str, name: str, env: dict[str, str], script: list[tuple[str, bytes, bytes]]
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """One helper in dir ``name``: ``("put"|"get", action, body)`` steps; returns answers,
    the stats line and stderr."""
    stats = tmp / f"{name}.stats"
    full = {"REDIS_GOCACHE_INLINE_MAX": str(INLINE_MAX),
            "REDIS_GOCACHE_STATS_FILE": str(stats), **env}
    answers = []
    with GoCmd(helper_env(tmp / name, url, full)) as cmd:
        cmd.capability()
        for op, aid, body in script:
            res = cmd.put_wait(aid, body) if op == "put" else cmd.get_wait(aid)
            assert "Err" not in res, res
            answers.append(res)
        cmd.close()
        err = cmd.stderr
    return answers, json.loads(stats.read_text().splitlines()[-1]), err


def is_hit(res: dict[str, Any], body: bytes) -> bool:
    if res.get("Miss"):
        return False
    data = Path(res["DiskPath"]).read_bytes()
    assert hashlib.sha256(data).digest() == unb64(res["OutputID"]) and len(data) == res["Size"]
    return data == body


BODIES = {action_id(f"signed {i}"): os.urandom(n) for i, n in enumerate((0, 10, 900, 5000))}


def test_signed_entries_are_served_to_a_verifying_reader(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis, keys: dict[str, Path]
) -> None:
    url = redis_server.url
    run(tmp_path, url, "writer", {"REDIS_GOCACHE_SIGNING_KEY": str(keys["a"])},
        [("put", a, b) for a, b in BODIES.items()])
    for aid in BODIES:
        sig = redis_client.hget(f"gocache:a:{aid.hex()}", "sig")
        assert sig is not None and len(sig) == 128
    answers, stats, err = run(tmp_path, url, "reader",
                              {"REDIS_GOCACHE_TRUSTED_KEYS": str(keys["a.pub"]),
                               "REDIS_GOCACHE_READONLY": "1"},
                              [("get", a, b"") for a in BODIES])
    assert all(is_hit(r, b) for r, b in zip(answers, BODIES.values(), strict=True)), answers
    assert stats["remote_hits"] == len(BODIES) and stats["rejected"] == {}, stats
    assert err == ""
    # A verifying reader keeps its own local directory (local hits are not re-verified).
    assert [p.name for p in (tmp_path / "reader").iterdir() if p.is_dir()] == [
        "v1-readonly-verified-" + signing.keyset_tag([str(keys["a.pub"])])]


def test_unsigned_foreign_and_tampered_entries_are_misses(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis, keys: dict[str, Path]
) -> None:
    url = redis_server.url
    small, other, big = b"genuine output", b"evil output!!!", os.urandom(3000)
    names = ["unsigned", "foreign-key", "time-changed", "body-swapped", "moved",
             "sig-garbage", "sig-truncated", "size-changed", "blob-swapped"]
    aid = {n: action_id(f"tamper {n}") for n in names}
    run(tmp_path, url, "plain", {}, [("put", aid["unsigned"], small)])
    run(tmp_path, url, "foreign", {"REDIS_GOCACHE_SIGNING_KEY": str(keys["c"])},
        [("put", aid["foreign-key"], small)])
    run(tmp_path, url, "writer", {"REDIS_GOCACHE_SIGNING_KEY": str(keys["a"])},
        [("put", aid[n], big if n == "blob-swapped" else small) for n in names[2:]]
        + [("put", action_id("source of move"), small)])
    c = redis_client

    def key(n: str) -> str:
        return f"gocache:a:{aid[n].hex()}"

    c.hincrby(key("time-changed"), "time", 1)
    # A consistent record for another body (it passes the SHA-256 check), old signature.
    c.hset(key("body-swapped"), mapping={"body": other, "oid": hashlib.sha256(other).hexdigest(),
                                         "size": len(other)})
    # A genuine record copied under another action id (a replay).
    c.delete(key("moved"))
    c.hset(key("moved"), mapping=c.hgetall(f"gocache:a:{action_id('source of move').hex()}"))
    c.hset(key("sig-garbage"), "sig", "zz" * 64)
    c.hset(key("sig-truncated"), "sig", c.hget(key("sig-truncated"), "sig")[:-2])  # type: ignore[index]
    c.hset(key("size-changed"), mapping={"size": len(small) - 1, "body": small[:-1]})
    evil_blob = os.urandom(3000)
    c.set(f"gocache:o:{hashlib.sha256(evil_blob).hexdigest()}", evil_blob)
    c.hset(key("blob-swapped"), "oid", hashlib.sha256(evil_blob).hexdigest())

    reader_env = {"REDIS_GOCACHE_TRUSTED_KEYS": str(keys["a.pub"])}
    answers, stats, _ = run(tmp_path, url, "reader", reader_env,
                            [("get", aid[n], b"") for n in names])
    assert all(r.get("Miss") for r in answers), list(zip(names, answers, strict=True))
    assert stats["rejected"] == {"unsigned": 1, "bad_signature": len(names) - 1}, stats

    # Without signatures the swapped records would have been served: SHA-256 alone cannot
    # tell a forged record from a genuine one.
    plain, _, _ = run(tmp_path, url, "trusting", {}, [("get", aid["body-swapped"], b""),
                                                      ("get", aid["blob-swapped"], b"")])
    assert is_hit(plain[0], other) and is_hit(plain[1], evil_blob)


def test_key_rotation_with_two_public_keys(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis, keys: dict[str, Path]
) -> None:
    url = redis_server.url
    old, new = action_id("signed by old key"), action_id("signed by new key")
    run(tmp_path, url, "old-writer", {"REDIS_GOCACHE_SIGNING_KEY": str(keys["a"])},
        [("put", old, b"old")])
    run(tmp_path, url, "new-writer", {"REDIS_GOCACHE_SIGNING_KEY": str(keys["b"])},
        [("put", new, b"new")])
    both = f"{keys['a.pub']},{keys['b.pub']}"
    answers, stats, _ = run(tmp_path, url, "r", {"REDIS_GOCACHE_TRUSTED_KEYS": both},
                            [("get", old, b""), ("get", new, b"")])
    assert is_hit(answers[0], b"old") and is_hit(answers[1], b"new"), answers
    # The old key retired: its entries are misses, even for a runner that had them locally
    # (another key set, another local directory).
    answers, stats, _ = run(tmp_path, url, "r", {"REDIS_GOCACHE_TRUSTED_KEYS": str(keys["b.pub"])},
                            [("get", old, b""), ("get", new, b"")])
    assert answers[0].get("Miss") and is_hit(answers[1], b"new"), answers
    assert stats["rejected"] == {"bad_signature": 1}, stats


def test_a_reader_cannot_sign(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis, keys: dict[str, Path]
) -> None:
    with pytest.raises(ConfigError, match="public key"):
        signing.load_private_key(str(keys["a.pub"]))
    with pytest.raises(ConfigError, match="private key"):
        signing.load_public_key(str(keys["a"]))
    # Misconfigured helpers: Redis stays off (one line), the build goes on locally.
    for env in ({"REDIS_GOCACHE_SIGNING_KEY": str(keys["a.pub"])},
                {"REDIS_GOCACHE_TRUSTED_KEYS": str(keys["a"])},
                {"REDIS_GOCACHE_TRUSTED_KEYS": str(tmp_path / "missing.pub")}):
        answers, stats, err = run(tmp_path, redis_server.url, "bad", env,
                                  [("put", action_id("k"), b"v"), ("get", action_id("k"), b"")])
        assert is_hit(answers[1], b"v")
        assert len(err.splitlines()) == 1 and "key" in err, err
        assert "BEGIN" not in err
    assert redis_client.dbsize() == 0


def test_message_covers_every_field(keys: dict[str, Path]) -> None:
    signer = signing.Signer.from_file(str(keys["a"]))
    verifier = signing.Verifier.from_files([str(keys["a.pub"])])
    aid, entry = os.urandom(32), Entry(os.urandom(32), 1234, 1_700_000_000_000_000_000)
    sig = signer.sign(aid, entry).encode()
    assert verifier.verify(aid, entry, sig) is None
    for a, e in [
        (os.urandom(32), entry),
        (aid, Entry(os.urandom(32), entry.size, entry.time_ns)),
        (aid, Entry(entry.output_id, entry.size + 1, entry.time_ns)),
        (aid, Entry(entry.output_id, entry.size, entry.time_ns + 1)),
    ]:
        assert verifier.verify(a, e, sig) == "bad_signature"
    assert verifier.verify(aid, entry, None) == "unsigned"
    assert verifier.verify(aid, entry, b"") == "unsigned"


def test_raw_key_files(tmp_path: Path, keys: dict[str, Path]) -> None:
    from cryptography.hazmat.primitives import serialization

    key = signing.load_private_key(str(keys["a"]))
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    (tmp_path / "seed.bin").write_bytes(seed)
    (tmp_path / "pub.hex").write_text(pub.hex() + "\n")
    signer = signing.Signer.from_file(str(tmp_path / "seed.bin"))
    verifier = signing.Verifier.from_files([str(tmp_path / "pub.hex")])
    entry = Entry(bytes(32), 1, 2)
    assert verifier.verify(bytes(32), entry, signer.sign(bytes(32), entry).encode()) is None
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(ConfigError, match="neither PEM nor"):
        signing.load_public_key(str(tmp_path / "junk"))


def test_keygen_command(tmp_path: Path) -> None:
    out = subprocess.run([*helper_command(), "keygen", str(tmp_path / "k")],
                         env=helper_env(tmp_path / "unused"), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert "BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_text()
    again = subprocess.run([*helper_command(), "keygen", str(tmp_path / "k")],
                           env=helper_env(tmp_path / "unused"), capture_output=True, text=True,
                           timeout=60)
    assert again.returncode != 0 and "not overwriting" in again.stderr
    assert signing.Verifier.from_files([str(tmp_path / "k.pub")]).key_ids == [
        signing.Signer.from_file(str(tmp_path / "k")).key_id]
