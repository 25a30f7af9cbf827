#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time each way: a Redis "one node away".

``netem`` does not work on this VM's kernel, so the latency scenario of bench/compression.py
puts this in front of a loopback Redis. Each direction of a connection has a reader thread
that stamps what it reads and a writer thread that sends it once ``delay`` has passed since;
bytes stay in flight meanwhile, as on a real link (a pipelined burst is not serialised into
one round trip per piece).

    python bench/delay_proxy.py --listen 127.0.0.1:7000 --target 127.0.0.1:6390 --delay-ms 0.5
"""

from __future__ import annotations

import argparse
import collections
import socket
import threading
import time

PIECE = 256 * 1024


class DelayProxy:
    """Listens on ``listen`` (port 0: a free one, see :attr:`port`) and forwards to
    ``target`` with ``delay`` seconds added each way. Runs in daemon threads."""

    def __init__(self, target: tuple[str, int], delay: float,
                 listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.target, self.delay = target, delay
        self._server = socket.create_server(listen)
        self.port = self._server.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, upstream)
            self._pipe(upstream, client)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        ready = threading.Condition()

        def read() -> None:
            while True:
                try:
                    data = src.recv(PIECE)
                except OSError:
                    data = b""
                with ready:
                    queue.append((time.monotonic() + self.delay, data))
                    ready.notify()
                if not data:
                    return

        def write() -> None:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, data = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self._server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--target", required=True)
    ap.add_argument("--delay-ms", type=float, default=0.5)
    args = ap.parse_args()
    lhost, lport = args.listen.rsplit(":", 1)
    thost, tport = args.target.rsplit(":", 1)
    proxy = DelayProxy((thost, int(tport)), args.delay_ms / 1000, (lhost, int(lport)))
    print(f"listening on {lhost}:{proxy.port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
