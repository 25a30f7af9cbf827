"""A scripted Redis on a loopback port: it answers the connection set-up (``AUTH``, ``HELLO``,
``CLIENT``, ``SELECT``) like Redis, and every other command with one scripted behaviour: an
error reply, a connection reset, or silence (a timeout). Real sockets and real RESP, so both
of the helper's clients (store/resp.py and redis-py) meet exactly the same bytes.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

SETUP = frozenset({b"AUTH", b"HELLO", b"CLIENT", b"SELECT", b"PING"})

SETUP_REPLIES = {
    b"PING": b"+PONG\r\n",
    # redis-py 8 asks for RESP3 and wants the server's map back; the error replies that
    # follow read the same in RESP2 and RESP3.
    b"HELLO": b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n",
}

RESET = "reset"
"""Close the connection with an RST instead of answering."""

SILENT = "silent"
"""Read the command and never answer."""


class ScriptedRedis:
    """Serves on 127.0.0.1 until closed; ``behaviour`` is an error reply's text (without the
    ``-``), :data:`RESET` or :data:`SILENT`."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.commands: list[bytes] = []  # the data commands' names, as they came
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> ScriptedRedis:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self._conns:
            conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        reader = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                command = _read_command(reader)
                if command is None:
                    return
                name = command[0].upper() if command else b""
                if name in SETUP:
                    conn.sendall(SETUP_REPLIES.get(name, b"+OK\r\n"))
                    continue
                self.commands.append(name)
                if self.behaviour == RESET:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                    return
                if self.behaviour == SILENT:
                    continue
                conn.sendall(b"-" + self.behaviour.encode() + b"\r\n")
        except OSError:
            return


def _read_command(reader: object) -> list[bytes] | None:
    """One RESP array of bulk strings (what clients send); ``None`` at the end."""
    readline = reader.readline  # type: ignore[attr-defined]
    read = reader.read  # type: ignore[attr-defined]
    head = readline()
    if not head:
        return None
    if not head.startswith(b"*"):
        return head.split()  # an inline command
    parts = []
    for _ in range(int(head[1:])):
        length = int(readline()[1:])
        parts.append(read(length + 2)[:-2])
    return parts
