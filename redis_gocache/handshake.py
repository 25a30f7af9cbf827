"""The first thing the helper does: take stdout for the protocol and announce its commands.

The command names live here (:data:`KNOWN_COMMANDS`), and :mod:`redis_gocache.wire` takes
them from this module, so the commands announced are the commands served.

This module imports nothing but ``os`` and ``sys`` on purpose. cmd/go blocks until the
capability line arrives, so the plain ``GOCACHEPROG=redis-gocache`` start sends it before
the rest of the helper is even imported; the imports then overlap with cmd/go's own work.
"""

from __future__ import annotations

import os
import sys

CMD_GET = "get"
CMD_PUT = "put"
CMD_CLOSE = "close"

KNOWN_COMMANDS = (CMD_GET, CMD_PUT, CMD_CLOSE)
"""The commands the helper serves, named once: :mod:`redis_gocache.wire` reads requests by
these names, and the capability line announces them."""

CAPABILITIES = ('{"ID":0,"KnownCommands":['
                + ",".join(f'"{name}"' for name in KNOWN_COMMANDS) + "]}\n").encode("ascii")
"""The ID-0 response, written before anything else happens (JSON without the json package:
the names are plain ASCII words)."""


def claim_stdout() -> int:
    """Take fd 1 for the protocol and point everything else at stderr.

    Returns a private descriptor for protocol answers. Afterwards fd 1 *is* stderr, so a stray
    ``print`` or a C library writing to stdout can never corrupt the stream cmd/go reads.
    """
    proto = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a pipe may take it in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def announce() -> int | None:
    """Claim stdout and write the capability line; the protocol descriptor, or ``None`` when
    cmd/go is already gone."""
    proto = claim_stdout()
    try:
        write_all(proto, CAPABILITIES)
    except OSError:
        return None
    return proto
