"""The Redis key schema: every key the cache writes, built and recognised here only.

Every key starts with the namespace's prefix (default ``gocache:``), then one letter naming
its kind, a colon, and a shape of its own (docs/design.md, "Redis keys")::

    a:<action id, 64 hex>        hash    one action's record (redis_gocache.store.record)
    o:<output id, 64 hex>        string  a large output, shared by every action that made it
    z:<output id, 64 hex>        string  the same, zstd-compressed (redis_gocache.store.compress)
    t:<32 hex>[{<blob key>}]     string  an upload in progress; on a Redis Cluster it carries
                                         its blob key as a hash tag, so RENAME stays in one slot
    m:<command tag, 32 hex>      string  the action ids one go command asked for (prefetch)
    s:totals                     hash    fleet counters since the namespace was first used
    s:day:<YYYY-MM-DD>           hash    fleet counters of one day (UTC)
    s:paths:<YYYY-MM-DD>         hash    runs per checkout directory of one day

The store builds keys with :class:`Keys`; the operator commands recognise them with
:func:`classify` and :func:`belongs`, which accept exactly these shapes, so a key of another
namespace nested under ours (``gocache:team2:a:...`` under ``gocache:``) is never taken for
ours. No ``re`` here: a new runner imports this module before its first Redis hit.
"""

from __future__ import annotations

ACTION = "a"
BLOB = "o"
ZBLOB = "z"
UPLOAD = "t"
MANIFEST = "m"
STATS = "s"

KINDS = {ACTION: "action", BLOB: "blob", ZBLOB: "zblob", UPLOAD: "upload", MANIFEST: "manifest",
         STATS: "stats"}
"""Key kinds by their letter, as the operator commands name them in reports."""

ID_HEX = 64
"""Hex digits of an action or output id (SHA-256)."""

UPLOAD_HEX = 32
"""Hex digits of an upload key's random part."""

TAG_HEX = 32
"""Hex digits of a go command's tag (:func:`redis_gocache.prefetch.command_tag`)."""

STATS_TOTALS = "totals"
STATS_DAY = "day:"
STATS_PATHS = "paths:"

_HEX = frozenset(b"0123456789abcdef")
_DIGITS = frozenset(b"0123456789")


class Keys:
    """The key builders of one namespace (``prefix``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def action(self, action_id: bytes) -> str:
        """The hash of an action's record."""
        return f"{self.prefix}{ACTION}:{action_id.hex()}"

    def blob(self, output_id: bytes) -> str:
        """The string holding a large output."""
        return f"{self.prefix}{BLOB}:{output_id.hex()}"

    def zblob(self, output_id: bytes) -> str:
        """The string holding a large output compressed. Not the raw blob's key: a helper
        from before compression may read or skip writing that one (it exists), and each
        kind must hold what its readers expect."""
        return f"{self.prefix}{ZBLOB}:{output_id.hex()}"

    def upload(self, token: bytes, blob_key: str | None = None) -> str:
        """A temporary upload key (``token``: 16 random bytes); with ``blob_key`` (a Redis
        Cluster) the blob key rides along as a hash tag, putting both in one slot. The blob
        key has no braces, so its own slot is that of its whole name."""
        key = f"{self.prefix}{UPLOAD}:{token.hex()}"
        return key if blob_key is None else f"{key}{{{blob_key}}}"

    def manifest(self, tag: str) -> str:
        """The prefetch manifest of the go command named by ``tag``."""
        return f"{self.prefix}{MANIFEST}:{tag}"

    def stats_totals(self) -> str:
        """The fleet counters since the namespace was first used."""
        return f"{self.prefix}{STATS}:{STATS_TOTALS}"

    def stats_day(self, day: str) -> str:
        """The fleet counters of one UTC day (``YYYY-MM-DD``)."""
        return f"{self.prefix}{STATS}:{STATS_DAY}{day}"

    def stats_paths(self, day: str) -> str:
        """Runs per checkout directory on one UTC day (``YYYY-MM-DD``)."""
        return f"{self.prefix}{STATS}:{STATS_PATHS}{day}"

    def pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every key under the prefix (glob characters in the
        prefix escaped): a superset of the cache's keys, which :func:`belongs` narrows."""
        return "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"


def _is_hex(data: bytes, n: int) -> bool:
    return len(data) == n and _HEX.issuperset(data)


def _is_day(data: bytes) -> bool:
    return (len(data) == 10 and data[4:5] == data[7:8] == b"-"
            and _DIGITS.issuperset(data[:4] + data[5:7] + data[8:]))


def kind_of(rest: bytes) -> str | None:
    """The kind letter of a key whose prefix is already cut off (``rest`` starts with the
    letter), or ``None`` if ``rest`` does not have one of the shapes above."""
    letter, colon, body = rest[:1], rest[1:2], rest[2:]
    if colon != b":":
        return None
    if letter in (b"a", b"o", b"z"):
        return letter.decode() if _is_hex(body, ID_HEX) else None
    if letter == b"t":
        head, tag = body[:UPLOAD_HEX], body[UPLOAD_HEX:]
        if _is_hex(head, UPLOAD_HEX) and (not tag or (
                tag[:1] == b"{" and tag[-1:] == b"}" and b"{" not in tag[1:-1]
                and b"}" not in tag[1:-1])):
            return UPLOAD
        return None
    if letter == b"m":
        return MANIFEST if _is_hex(body, TAG_HEX) else None
    if letter == b"s":
        if body == STATS_TOTALS.encode():
            return STATS
        for head in (STATS_DAY.encode(), STATS_PATHS.encode()):
            if body.startswith(head) and _is_day(body[len(head):]):
                return STATS
    return None


def classify(key: bytes) -> tuple[str, str] | None:
    """``(prefix, kind name)`` of a key the cache writes, or ``None`` for any other key.

    The prefix is the shortest that fits; a prefix that itself ends in a kind letter and a
    colon could be read two ways, so the operator commands that act on one namespace use
    :func:`belongs` with the prefix they were given.
    """
    start = 0
    while True:
        colon = key.find(b":", start + 1)
        if colon < 0:
            return None
        found = kind_of(key[colon - 1:])
        if found is not None:
            return key[:colon - 1].decode("utf-8", "replace"), KINDS[found]
        start = colon


def belongs(key: bytes, prefix: str) -> str | None:
    """The kind name of ``key`` if it is one of the cache's keys under exactly ``prefix``."""
    raw = prefix.encode()
    if not key.startswith(raw):
        return None
    found = kind_of(key[len(raw):])
    return None if found is None else KINDS[found]
