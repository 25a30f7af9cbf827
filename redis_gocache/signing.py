"""Ed25519 signatures on Redis entries: trusted writers sign, everyone else can only check.

Why: the code of a pull request runs next to the helper and can read its environment, so
anything the helper may write to Redis, that code may write too. A Redis ACL reader user keeps
it from writing at all; signatures go further and let a reader refuse an entry that someone
with write access forged. Writers hold the private key (``--signing-key``); readers hold only
public keys (``--trusted-keys``, a list, so a key can be rotated without a flag day) and treat
an entry without a valid signature from one of them as a miss.

What is signed (:func:`message`): a fixed tag, the action id, the output id, the size and the
put time, in fixed-width binary. The body is covered through the output id, which the cache
checks against the SHA-256 of the body before Go sees it. The signature lives in the action
hash's ``sig`` field as 128 hex digits.

Key files are PEM (``BEGIN PRIVATE KEY`` / ``BEGIN PUBLIC KEY``, as ``openssl genpkey -algorithm
ed25519`` and ``redis-gocache keygen`` write them) or raw: the 32 key bytes, as binary or as 64
hex digits. ``cryptography`` is imported only when a key is loaded (``pip install
redis-gocache[signing]``); a helper that neither signs nor verifies never imports it.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import struct
from collections.abc import Sequence
from typing import Any

from redis_gocache.exceptions import ConfigError
from redis_gocache.store.base import Entry
from redis_gocache.store.record import SIG

TAG = b"redis-gocache entry v1\0"
"""Domain separation: a signature made for an entry is good for nothing else."""

SIG_FIELD = SIG.decode()
"""Name of the hash field holding the signature (:mod:`redis_gocache.store.record`'s)."""

SIG_SIZE = 64
"""Bytes in an Ed25519 signature."""

KEY_SIZE = 32
"""Bytes in a raw Ed25519 private (seed) or public key."""

MAX_KEY_FILE = 16 * 1024
"""Largest key file read; a key is a few hundred bytes at most."""


def message(action_id: bytes, entry: Entry) -> bytes:
    """The bytes that are signed for ``entry`` stored under ``action_id``."""
    return TAG + action_id + entry.output_id + struct.pack(">QQ", entry.size, entry.time_ns)


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ConfigError(
            "signing needs the 'cryptography' package: pip install 'redis-gocache[signing]'"
        ) from None
    return ed25519


def _read_key_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_KEY_FILE)
    except OSError as exc:
        # Name the file, never its content.
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None


def _raw_key(data: bytes) -> bytes | None:
    """The 32 bytes of a raw key file (binary, or 64 hex digits), else ``None``."""
    if len(data) == KEY_SIZE:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_SIZE:
        try:
            return binascii.unhexlify(text)
        except binascii.Error:
            return None
    return None


def load_private_key(path: str) -> Any:
    """An Ed25519 private key from ``path``; :class:`ConfigError` when it is not one."""
    ed25519 = _crypto()
    data = _read_key_file(path)
    if b"-----BEGIN" in data:
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            # Say what kind of problem, never echo key material.
            kind = "a public key" if b"PUBLIC KEY" in data else "an unencrypted PEM private key"
            raise ConfigError(f"signing key {path} is {kind}, not usable to sign") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"signing key {path} is not an Ed25519 key")
        return key
    raw = _raw_key(data)
    if raw is None:
        raise ConfigError(f"signing key {path} is neither PEM nor 32 raw bytes")
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(path: str) -> Any:
    """An Ed25519 public key from ``path``; :class:`ConfigError` when it is not one.

    A private key file is refused: readers are meant to hold public keys only.
    """
    ed25519 = _crypto()
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"trusted key {path} holds a private key; give readers the public key")
    if b"-----BEGIN" in data:
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise ConfigError(f"trusted key {path} is not a PEM public key") from None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ConfigError(f"trusted key {path} is not an Ed25519 key")
        return key
    raw = _raw_key(data)
    if raw is None:
        raise ConfigError(f"trusted key {path} is neither PEM nor 32 raw bytes")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def _public_raw(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


class Signer:
    """Signs entries with one private key."""

    def __init__(self, private_key: Any) -> None:
        self._key = private_key
        self.key_id = key_id(_public_raw(private_key.public_key()))

    @classmethod
    def from_file(cls, path: str) -> Signer:
        return cls(load_private_key(path))

    def sign(self, action_id: bytes, entry: Entry) -> str:
        """The ``sig`` field for ``entry``: 128 hex digits."""
        sig: bytes = self._key.sign(message(action_id, entry))
        return sig.hex()


class Verifier:
    """Checks signatures against a list of public keys (several, for rotation)."""

    def __init__(self, public_keys: Sequence[Any]) -> None:
        if not public_keys:
            raise ConfigError("no trusted keys")
        self._keys = list(public_keys)
        self.key_ids = [key_id(_public_raw(k)) for k in self._keys]

    @classmethod
    def from_files(cls, paths: Sequence[str]) -> Verifier:
        return cls([load_public_key(p) for p in paths])

    def verify(self, action_id: bytes, entry: Entry, sig: bytes | None) -> str | None:
        """``None`` when ``sig`` is a valid signature of ``entry`` by a trusted key, else the
        rejection kind: ``unsigned`` or ``bad_signature``."""
        if not sig:
            return "unsigned"
        if len(sig) != 2 * SIG_SIZE:
            return "bad_signature"
        try:
            raw = binascii.unhexlify(sig)
        except binascii.Error:
            return "bad_signature"
        from cryptography.exceptions import InvalidSignature

        data = message(action_id, entry)
        for key in self._keys:
            try:
                key.verify(raw, data)
            except InvalidSignature:
                continue
            return None
        return "bad_signature"


def key_id(public_raw: bytes) -> str:
    """A short name for a public key (first 8 bytes of its SHA-256, hex), for logs and docs."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def keyset_tag(paths: Sequence[str]) -> str:
    """A short tag naming a set of trusted key files by their content (order does not
    matter), so a helper with other trusted keys uses another local directory. Unreadable
    files count as empty: the helper will refuse Redis anyway."""
    digests = []
    for path in paths:
        try:
            data = _read_key_file(path)
        except ConfigError:
            data = b""
        digests.append(hashlib.sha256(data).hexdigest())
    return hashlib.sha256(" ".join(sorted(digests)).encode()).hexdigest()[:12]


def generate(private_path: str, public_path: str) -> str:
    """Write a new key pair (private key 0600, both PEM); returns the key id."""
    ed25519 = _crypto()
    from cryptography.hazmat.primitives import serialization

    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{private_path} exists; not overwriting a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    with open(public_path, "wb") as f:
        f.write(public_pem)
    return key_id(_public_raw(key.public_key()))


__all__ = ["SIG_FIELD", "Signer", "Verifier", "generate", "keyset_tag", "message"]
