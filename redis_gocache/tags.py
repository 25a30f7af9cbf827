"""Short stable names for longer strings: the breaker file and statistics spool of a Redis
server, the tag of a go command (:mod:`redis_gocache.prefetch`).

BLAKE2b from the interpreter's built-in ``_blake2`` module: ``hashlib`` would load OpenSSL
first, milliseconds that a warm run with Redis configured would pay before its first answer.
"""

from __future__ import annotations

try:
    from _blake2 import blake2b
except ImportError:  # An interpreter without the built-in module: the same function.
    from hashlib import blake2b


def tag(data: bytes, hex_chars: int = 32) -> str:
    """``hex_chars`` (at most 128) hex digits naming ``data``."""
    return blake2b(data, digest_size=(hex_chars + 1) // 2).hexdigest()[:hex_chars]


def server_tag(redis_url: str, prefix: str) -> str:
    """16 hex digits naming a (server, prefix) pair in local file names (the breaker file, the
    fleet-statistics spool); the password is redacted before hashing, so no file name is
    derived from it."""
    from redis_gocache.config import redact_url

    return tag(f"{redact_url(redis_url)} {prefix}".encode(), 16)
