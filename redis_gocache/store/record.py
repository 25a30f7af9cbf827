"""An action's record in Redis: the fields of its ``a:`` hash, built and parsed here only.

Fields (docs/design.md, "Redis keys"): ``oid`` (the output id, 64 hex digits), ``size``
(decimal bytes), ``time`` (the put time, decimal ns since the epoch), then either ``body``
(the output itself, up to ``--inline-max``) or ``ref``: :data:`REF_BLOB` (the output is in
the blob key) or :data:`REF_SPILL` and a path (the output is a file in the spill directory,
:mod:`redis_gocache.store.spill`). With a signing key, ``sig`` (:mod:`redis_gocache.signing`).
"""

from __future__ import annotations

import time

from redis_gocache.exceptions import RejectedEntry
from redis_gocache.store.entry import Entry
from redis_gocache.store.layout import is_hex_id

OID, SIZE, TIME, BODY, REF, SIG = b"oid", b"size", b"time", b"body", b"ref", b"sig"
"""The field names, as they come back from ``HGETALL``."""

REF_BLOB = b"o"
"""``ref`` of an output stored in its blob key."""

REF_SPILL = b"f:"
"""``ref`` prefix of an output in the spill directory; a relative path follows."""

MAX_CLOCK_SKEW_NS = 24 * 3600 * 10**9
"""A record's put time may be this far in the future (clocks of runners differ); later is
garbage. cmd/go expires test results by this time, so one from the future would outlive
``go clean -testcache``, and one past year 9999 is not a time Go can parse."""


def fields_for(entry: Entry, *, body: bytes | None = None, spill_path: str | None = None,
               sig: str | None = None) -> dict[str, bytes | str | int]:
    """The ``HSET`` mapping of a record: the output inline (``body``), else in the spill
    directory (``spill_path``), else in its blob key; with a signature if ``sig``."""
    fields: dict[str, bytes | str | int] = {
        "oid": entry.output_id.hex(), "size": entry.size, "time": entry.time_ns}
    if sig is not None:
        fields["sig"] = sig
    if body is not None:
        fields["body"] = body
    elif spill_path is not None:
        fields["ref"] = (REF_SPILL + spill_path.encode()).decode()
    else:
        fields["ref"] = REF_BLOB.decode()
    return fields


def parse_record(raw: dict[bytes, bytes]) -> Entry:
    """The :class:`Entry` of an action hash; :class:`RejectedEntry` if a field is bad."""
    try:
        oid = raw[OID].decode("ascii")
        size = int(raw[SIZE])
        time_ns = int(raw[TIME])
    except KeyError:
        raise RejectedEntry("bad_fields", "record lacks oid, size or time") from None
    except (UnicodeDecodeError, ValueError):
        raise RejectedEntry("bad_fields", "record has a garbled oid, size or time") from None
    if not is_hex_id(oid):
        raise RejectedEntry("bad_fields", "record's output id is not 32 bytes of hex")
    if size < 0 or time_ns <= 0 or time_ns > time.time_ns() + MAX_CLOCK_SKEW_NS:
        raise RejectedEntry("bad_fields", "record's size or time is out of range")
    return Entry(bytes.fromhex(oid), size, time_ns)
