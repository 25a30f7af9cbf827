"""Ends that are not ``close``: SIGINT and a broken stdout finish quietly with status 0."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start(cache_dir: Path, **popen: object) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "GO"))}
    env["REDIS_GOCACHE_DIR"] = str(cache_dir)
    return subprocess.Popen([sys.executable, "-m", "redis_gocache"], env=env,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # type: ignore[call-overload]


def get_line(req_id: int) -> bytes:
    action = base64.b64encode(hashlib.sha256(b"%d" % req_id).digest()).decode()
    return json.dumps({"ID": req_id, "Command": "get", "ActionID": action}).encode() + b"\n\n"


def test_sigint_exits_0_without_a_traceback(tmp_path: Path) -> None:
    with start(tmp_path, stdout=subprocess.PIPE) as proc:
        _interrupt(proc)


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b'{"ID":0,')
    proc.stdin.write(get_line(1))
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline()) == {"ID": 1, "Miss": True}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert b"Traceback" not in proc.stderr.read()


def test_broken_stdout_is_quiet_and_the_helper_still_finishes(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    with start(tmp_path, stdout=write_end) as proc:
        os.close(write_end)
        _break_stdout(proc, read_end, tmp_path)


def _break_stdout(proc: subprocess.Popen[bytes], read_end: int, tmp_path: Path) -> None:
    assert proc.stdin is not None and proc.stderr is not None
    assert os.read(read_end, 100).startswith(b'{"ID":0,')
    os.close(read_end)  # cmd/go died: every answer from now on hits EPIPE
    body = b"still stored"
    oid = base64.b64encode(hashlib.sha256(body).digest()).decode()
    action = base64.b64encode(hashlib.sha256(b"act").digest()).decode()
    put = json.dumps({"ID": 2, "Command": "put", "ActionID": action, "OutputID": oid,
                      "BodySize": len(body)}).encode()
    proc.stdin.write(get_line(1) + put + b"\n\n\"" + base64.b64encode(body) + b'"\n')
    proc.stdin.close()
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() == 0
    assert b"Traceback" not in proc.stderr.read()
    # The put still landed: the body is in the local directory.
    stored = tmp_path / "v1" / "o" / hashlib.sha256(body).hexdigest()[:2] / hashlib.sha256(
        body).hexdigest()
    assert stored.read_bytes() == body


def test_input_ending_inside_a_body_leaves_no_temporary_file(tmp_path: Path) -> None:
    body = os.urandom(50_000)
    action = base64.b64encode(hashlib.sha256(b"cut").digest()).decode()
    oid = base64.b64encode(hashlib.sha256(body).digest()).decode()
    put = json.dumps({"ID": 1, "Command": "put", "ActionID": action, "OutputID": oid,
                      "BodySize": len(body)}).encode()
    cut = put + b"\n\n\"" + base64.b64encode(body)[:20_000]  # cmd/go died mid-body
    with start(tmp_path, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
        proc.stdin.write(cut)
        proc.stdin.close()
        assert proc.wait(timeout=10) == 2  # unreadable input: a clear message, status 2
        assert b"ended inside the body" in proc.stderr.read()
        proc.stdout.read()
    assert os.listdir(tmp_path / "v1" / "tmp") == []
