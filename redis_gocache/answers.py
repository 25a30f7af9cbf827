"""Answers kept from the last run of the same ``go`` command, for a warm runner's local hits.

A warm runner's build is a thousand local hits, and cmd/go waits for each answer. Building an
answer from its action record (read the fields, base64 the output ID, format the time,
escape the path) was most of what the helper spent per hit beyond the least a Python helper
can spend (docs/design.md, "The warm path"). CI runs the same commands again and again, so at
the end of a run the helper keeps the answers it could give for the actions the command asked
for; the next run of that command loads them once and answers each such get with a
dictionary lookup and one write.

They live in the command's marker file, ``m/<tag>`` in the local root (the tag of
:func:`redis_gocache.prefetch.command_tag`), which already means "this runner has run this
command": one line holding the local root, then one line per action::

    <action ID, base64> <size> <output path under the root> <the answer after its ID>

and last, the CRC-32 of everything before it as 8 hex digits. An empty marker, a file
written for another root (a copied cache directory), a torn or altered one: no answers, and
every get takes the usual path. An answer kept here can only be out of date in harmless
ways: its output file is content-addressed, so it is the right body or it is gone (the
trim), and cmd/go treats a missing file as a miss, which it builds and puts again.
"""

from __future__ import annotations

import os
from binascii import a2b_base64, b2a_base64, crc32

from redis_gocache.store.disk import replace_private
from redis_gocache.store.layout import output_relpath, parse_fields, record_output_hex
from redis_gocache.wire import ANSWER_END, hit_tail

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Container, Iterable

    from redis_gocache.store.disk import DiskStore

MAX_BYTES = 64 << 20
"""Largest answers file read (a command asking for some 200,000 actions); a larger one is
ignored, and the next run writes a new one."""


def load(path: str, root: str, skip: Container[str] = ()) -> dict[bytes, bytes]:
    """Action ID -> its kept line, from the file at ``path`` if it is whole and was written for
    ``root``; else empty. Lines for the outputs in ``skip`` (hex: those a trim is waiting to
    remove, :mod:`redis_gocache.store.shared`) are left out."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return {}
    try:
        size = os.fstat(fd).st_size
        # Exactly the size: os.read allocates all it is asked for before reading.
        data = os.read(fd, size) if 9 <= size <= MAX_BYTES else b""
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(data) != size or data[-1:] != b"\n":
        return {}
    body = data[:-9]
    if b"%08x" % crc32(body) != data[-9:-1]:
        return {}
    lines = body.split(b"\n")
    if lines.pop() != b"" or lines[0] != root.encode("utf-8", "surrogateescape"):
        return {}
    answers: dict[bytes, bytes] = {}
    try:
        for line in lines[1:]:
            answers[a2b_base64(line[:44], strict_mode=True)] = line
    except ValueError:  # binascii.Error: the CRC matched, so not ours to make sense of
        return {}
    if skip:
        # The relative path (output_relpath) is the third field, the output's hex its end.
        answers = {a: line for a, line in answers.items() if line.split(b" ", 3)[2]
                   .rpartition(b"/")[2].decode("ascii", "replace") not in skip}
    return answers


def line_for(action_id: bytes, record: str, root: str) -> bytes | None:
    """The kept line for an action whose action-log record is ``record``; ``None`` if the
    record does not parse."""
    fields = parse_fields(record)
    if fields is None:
        return None
    output_id, size, time_ns, _ = fields
    relative = output_relpath(record_output_hex(record))
    tail = hit_tail(output_id, size, time_ns, f"{root}/{relative}")
    # Kept without the answer's line end: the file is one line per action.
    return b"%s %d %s %s" % (b2a_base64(action_id, newline=False), size, relative.encode(),
                             tail[:-len(ANSWER_END)])


def lines_for(action_ids: Iterable[bytes], local: DiskStore) -> list[bytes]:
    """The kept lines for the actions a run asked for, in order, once each, for those with a
    well-formed local record."""
    index = local.index()
    seen: set[bytes] = set()
    lines: list[bytes] = []
    for action_id in action_ids:
        if action_id in seen:
            continue
        seen.add(action_id)
        record = index.get(action_id.hex())
        if record is not None:
            line = line_for(action_id, record, local.root)
            if line is not None:
                lines.append(line)
    return lines


def save(path: str, root: str, lines: list[bytes]) -> None:
    """Write the answers file at ``path`` whole (:func:`replace_private`). Raises OSError."""
    body = b"\n".join([root.encode("utf-8", "surrogateescape"), *lines, b""])
    data = body + b"%08x\n" % crc32(body)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    replace_private(path, data)
