"""An action's record in Redis: the fields of its ``a:`` hash, built and parsed here only.

Fields (docs/design.md, "Redis keys"): ``oid`` (the output id, 64 hex digits), ``size``
(decimal bytes), ``time`` (the put time, decimal ns since the epoch), then either ``body``
(the output itself, up to ``--inline-max``) or ``ref``: :data:`REF_BLOB` (the output is in
the blob key) or :data:`REF_SPILL` and a path (the output is a file in the spill directory,
:mod:`redis_gocache.store.spill`). With a signing key, ``sig`` (:mod:`redis_gocache.signing`).

A compressed output (:mod:`redis_gocache.store.compress`) has other names for where it is:
``zbody`` instead of ``body``, ``ref`` = :data:`REF_ZBLOB` (the compressed blob key) or
:data:`REF_ZSPILL` and a path, and ``zsize``, its compressed length. The names differ, not just
an extra field, so that a helper from before compression, which ignores fields it does not
know and rejects a record with neither ``body`` nor a ``ref`` it knows, takes such a record
for a miss instead of handing Go compressed bytes (it would fail their hash anyway).
"""

from __future__ import annotations

import time

from redis_gocache.exceptions import RejectedEntry
from redis_gocache.store.entry import Entry
from redis_gocache.store.layout import is_hex_id

OID, SIZE, TIME, BODY, REF, SIG = b"oid", b"size", b"time", b"body", b"ref", b"sig"
"""The field names, as they come back from ``HGETALL``."""

ZBODY, ZSIZE = b"zbody", b"zsize"
"""The fields of a compressed output: its compressed body inline, its compressed length."""

REF_BLOB = b"o"
"""``ref`` of an output stored in its blob key."""

REF_SPILL = b"f:"
"""``ref`` prefix of an output in the spill directory; a relative path follows."""

REF_ZBLOB = b"z"
"""``ref`` of a compressed output stored in its compressed blob key."""

REF_ZSPILL = b"zf:"
"""``ref`` prefix of a compressed output in the spill directory; a relative path follows."""

MAX_CLOCK_SKEW_NS = 24 * 3600 * 10**9
"""A record's put time may be this far in the future (clocks of runners differ); later is
garbage. cmd/go expires test results by this time, so one from the future would outlive
``go clean -testcache``, and one past year 9999 is not a time Go can parse."""


def fields_for(entry: Entry, *, body: bytes | None = None, spill_path: str | None = None,
               sig: str | None = None, zsize: int | None = None) -> dict[str, bytes | str | int]:
    """The ``HSET`` mapping of a record: the output inline (``body``), else in the spill
    directory (``spill_path``), else in its blob key; with a signature if ``sig``. With
    ``zsize`` the stored value is compressed, ``zsize`` bytes long."""
    fields: dict[str, bytes | str | int] = {
        "oid": entry.output_id.hex(), "size": entry.size, "time": entry.time_ns}
    if sig is not None:
        fields["sig"] = sig
    packed = zsize is not None
    if zsize is not None:
        fields["zsize"] = zsize
    if body is not None:
        fields["zbody" if packed else "body"] = body
    elif spill_path is not None:
        fields["ref"] = ((REF_ZSPILL if packed else REF_SPILL) + spill_path.encode()).decode()
    else:
        fields["ref"] = (REF_ZBLOB if packed else REF_BLOB).decode()
    return fields


def stored_size(raw: dict[bytes, bytes], entry: Entry) -> int:
    """The compressed length of a compressed record's value (``zsize``), checked: a
    compressed output is never stored unless it is smaller than the output."""
    try:
        zsize = int(raw[ZSIZE])
    except KeyError:
        raise RejectedEntry("bad_fields", "compressed record lacks zsize") from None
    except ValueError:
        raise RejectedEntry("bad_fields", "compressed record has a garbled zsize") from None
    if not 0 < zsize < entry.size:
        raise RejectedEntry("bad_fields", "compressed record's zsize is out of range")
    return zsize


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
