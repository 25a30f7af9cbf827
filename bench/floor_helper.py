"""The least a Python GOCACHEPROG can do for a warm runner: the floor under redis-gocache.

The benchmark runs this with the helper's own interpreter (same venv, same site) on the warm
cache of Go's cold build: it reads an index of Go's cache (made by the benchmark before the
build, not timed), then answers each ``get`` from a dict with a path into that cache. No
verification, no counters, no locks, no threads, no Redis, no output file checks, and only
``os`` and ``binascii`` imported before the first answer. What remains is the interpreter's
start-up and a pipe round trip per request: a Python helper cannot be faster than this on a
warm runner, so its ratio to Go's warm cache is the bound for ours.

Index lines: ``<action hex> <output hex> <size> <Time as RFC 3339> <path>``; the environment
variable ``FLOOR_INDEX`` names the file.

Not a usable cache: a ``put`` is answered with a file under ``FLOOR_SPOOL`` (the body is
decoded and written) so that a build which does put something still completes.
"""

import os

os.write(1, b'{"ID":0,"KnownCommands":["get","put","close"]}\n')

import binascii  # noqa: E402  (after the capability line, as a real helper would)

_GET_HEAD = b'{"ID":'
_GET_MIDDLE = b',"Command":"get","ActionID":"'


def _load(index_path: str) -> dict[bytes, bytes]:
    """base64 action id -> the response after ``{"ID":<n>,``."""
    answers = {}
    with open(index_path, "rb") as f:
        for line in f:
            action, output, size, when, path = line.split()
            oid = binascii.b2a_base64(bytes.fromhex(output.decode()), newline=False)
            key = binascii.b2a_base64(bytes.fromhex(action.decode()), newline=False)
            answers[key] = b'"OutputID":"%s","Size":%s,"Time":"%s","DiskPath":"%s"}\n' % (
                oid, size, when, path)
    return answers


def _put(line: bytes, stdin: object, spool: str) -> bytes:
    import json  # only a build that writes to the cache pays for this

    req = json.loads(line)
    body = b""
    if req.get("BodySize"):
        text = b""
        while not text.strip():
            text = stdin.readline()  # type: ignore[attr-defined]
        body = binascii.a2b_base64(json.loads(text))
    os.makedirs(spool, exist_ok=True)
    path = os.path.join(spool, os.urandom(16).hex())
    with open(path, "wb") as f:
        f.write(body)
    return b'{"ID":%d,"DiskPath":%s}\n' % (req["ID"], json.dumps(path).encode())


def main() -> None:
    answers = _load(os.environ["FLOOR_INDEX"])
    spool = os.environ.get("FLOOR_SPOOL", "/tmp/floor-spool")
    stdin = os.fdopen(0, "rb")
    while True:
        line = stdin.readline()
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        if line.startswith(_GET_HEAD):
            comma = line.find(b",", 6)
            if line.startswith(_GET_MIDDLE, comma):
                req_id = line[6:comma]
                start = comma + len(_GET_MIDDLE)
                answer = answers.get(line[start:start + 44])
                if answer is None:
                    os.write(1, b'{"ID":%s,"Miss":true}\n' % req_id)
                else:
                    os.write(1, b'{"ID":%s,%s' % (req_id, answer))
                continue
        if b'"Command":"close"' in line:
            os.write(1, b'{"ID":%s}\n' % line[6:line.find(b",", 6)])
            return
        os.write(1, _put(line, stdin, spool))


main()
