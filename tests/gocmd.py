"""A scripted fake ``go`` command that drives a GOCACHEPROG helper over pipes.

:class:`GoCmd` starts the helper as a subprocess and writes requests byte for byte the way
cmd/go's ``ProgCache.writeToChild`` does: the request as one compact JSON line, then an empty
line, then, for a put with ``BodySize > 0``, the body as a base64 JSON string on a line of its
own. A reader thread collects responses as they come (the helper may answer out of order) and
keeps every stdout line, so a test can also check that stdout carries nothing but JSON.

Every wait here has a deadline: a stuck helper fails the test instead of hanging the suite.

:func:`run_steps` plays a table of :class:`Send`, :class:`Want` and :class:`Pause` steps,
the way creachadair/gocache's server tests are written.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import select
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_TIMEOUT = 10.0
"""Seconds any single wait may take before the test fails (a CI runner can be slow)."""

CAPABILITIES = {"ID": 0, "KnownCommands": ["get", "put", "close"]}
"""The first line the helper must write."""


class HelperError(AssertionError):
    """The helper did not behave as the protocol requires (an assertion failure)."""


def b64(data: bytes) -> str:
    """Base64 as Go's encoding/json writes a ``[]byte``."""
    return base64.standard_b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.standard_b64decode(text)


def action_id(name: str) -> bytes:
    """A 32-byte action ID derived from a readable name (distinct names, distinct IDs)."""
    return hashlib.sha256(b"action:" + name.encode()).digest()


def output_id(body: bytes) -> bytes:
    """The output ID cmd/go computes for a body: its SHA-256."""
    return hashlib.sha256(body).digest()


HELPER_OVERRIDE = "REDIS_GOCACHE_TEST_HELPER"
"""Environment variable naming another helper command line to test (shell words)."""


def helper_command() -> list[str]:
    """argv of the helper: ``$REDIS_GOCACHE_TEST_HELPER`` if set, else the installed console
    script next to this Python, else ``python -m redis_gocache``."""
    override = os.environ.get(HELPER_OVERRIDE)
    if override:
        return shlex.split(override)
    script = Path(sys.executable).with_name("redis-gocache")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "redis_gocache"]


def helper_env(
    cache_dir: str | os.PathLike[str],
    redis_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a helper: the test's own, less any inherited ``REDIS_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "GOCACHEPROG"))}
    # ``python -m redis_gocache`` must find the package even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env["REDIS_GOCACHE_DIR"] = os.fspath(cache_dir)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


def go_quote(args: Sequence[str]) -> str:
    """Join ``args`` into one string that cmd/go's ``quoted.Split`` splits back into ``args``.

    quoted.Split splits on white space and lets a field be wrapped in ``'`` or ``"``
    (with no escapes inside), so a field holding both quote characters cannot be written.
    """
    out = []
    for arg in args:
        if arg and not any(c in arg for c in " \t\n\r'\""):
            out.append(arg)
        elif "'" not in arg:
            out.append(f"'{arg}'")
        elif '"' not in arg:
            out.append(f'"{arg}"')
        else:
            raise ValueError(f"cannot quote {arg!r} for GOCACHEPROG")
    return " ".join(out)


def encode_request(req: Mapping[str, Any], body: bytes | None = None) -> bytes:
    """The exact bytes cmd/go writes for one request.

    ``json.Encoder.Encode`` ends the object with a newline and cmd/go adds another, so every
    request is followed by an empty line; a body follows as ``"<base64>"`` and a newline.
    """
    data = json.dumps(req, separators=(",", ":")).encode() + b"\n\n"
    if body:
        data += b'"' + base64.standard_b64encode(body) + b'"\n'
    return data


class GoCmd:
    """One helper process and the pipes a fake ``go`` command talks to it through."""

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.argv = [*(command or helper_command()), *args]
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
        )
        self.started = time.monotonic()
        assert self.proc.stdin is not None
        self.stdin = self.proc.stdin
        os.set_blocking(self.stdin.fileno(), False)
        self.lines: list[bytes] = []  # every stdout line, in order, raw
        self.junk: list[bytes] = []  # stdout lines that are not a JSON object with an ID
        self.stdout_closed = False
        self._responses: dict[int, list[dict[str, Any]]] = {}
        self._cond = threading.Condition()
        self._stderr = bytearray()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._err_reader.start()

    # -- background readers ------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            with self._cond:
                self.lines.append(line)
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = None
                if (
                    not line.endswith(b"\n")
                    or not isinstance(msg, dict)
                    or not isinstance(msg.get("ID", 0), int)
                ):
                    self.junk.append(line)
                else:
                    # cmd/go omits a zero ID; the capability line is ID 0.
                    self._responses.setdefault(msg.get("ID", 0), []).append(msg)
                self._cond.notify_all()
        with self._cond:
            self.stdout_closed = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 65536):
            with self._cond:
                self._stderr += chunk

    @property
    def stderr(self) -> str:
        with self._cond:
            return self._stderr.decode("utf-8", "replace")

    def describe(self) -> str:
        """What the helper said so far, for assertion messages."""
        return f"helper {self.argv} rc={self.proc.poll()} stderr:\n{self.stderr[-3000:]}"

    # -- writing -----------------------------------------------------------------------

    def write(self, data: bytes, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Write raw bytes to the helper's stdin; fail if it stops reading for ``timeout``."""
        fd = self.stdin.fileno()
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HelperError(f"helper stopped reading stdin; {self.describe()}")
            _, writable, _ = select.select([], [fd], [], left)
            if not writable:
                continue
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise HelperError(f"helper closed stdin early; {self.describe()}") from None
            view = view[n:]

    def close_stdin(self) -> None:
        """EOF for the helper, as when cmd/go goes away without ``close``."""
        if not self.stdin.closed:
            try:
                self.stdin.close()
            except BrokenPipeError:
                pass

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def send(self, req: Mapping[str, Any], body: bytes | None = None) -> int:
        """Send one request (an ``ID`` is added if missing) and return its ID."""
        req = dict(req)
        if "ID" not in req:
            req["ID"] = self.next_id()
        else:
            self._next_id = max(self._next_id, int(req["ID"]))
        self.write(encode_request(req, body))
        return int(req["ID"])

    def get(self, action: bytes) -> int:
        return self.send({"Command": "get", "ActionID": b64(action)})

    def put(
        self,
        action: bytes,
        body: bytes,
        output_id: bytes | None = None,
        field: str = "OutputID",
    ) -> int:
        """A put as cmd/go sends it; ``field="ObjectID"`` speaks Go 1.21–1.23."""
        oid = output_id if output_id is not None else hashlib.sha256(body).digest()
        req: dict[str, Any] = {"Command": "put", "ActionID": b64(action), field: b64(oid)}
        if body:
            req["BodySize"] = len(body)
        return self.send(req, body)

    # -- reading -----------------------------------------------------------------------

    def _wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def capability(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The capability line (ID 0); fails if it is not the first line within ``timeout``."""
        if not self._wait_for(lambda: bool(self.lines) or self.stdout_closed, timeout):
            raise HelperError(f"no capability line within {timeout}s; {self.describe()}")
        with self._cond:
            if not self.lines:
                raise HelperError(f"stdout closed before the capability line; {self.describe()}")
            first = self.lines[0]
        msg = json.loads(first)
        if msg.get("ID", 0) != 0 or "KnownCommands" not in msg:
            raise HelperError(f"first line is not the capability line: {first!r}")
        return dict(msg)

    def recv(self, id: int, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The response to request ``id``, however late or out of order it comes."""

        def arrived() -> bool:
            return bool(self._responses.get(id)) or self.stdout_closed

        if not self._wait_for(arrived, timeout):
            raise HelperError(f"no response to ID {id} within {timeout}s; {self.describe()}")
        with self._cond:
            if not self._responses.get(id):
                raise HelperError(f"stdout closed with no response to ID {id}; {self.describe()}")
            return self._responses[id].pop(0)

    def responses(self) -> list[dict[str, Any]]:
        """Every JSON response seen so far, capability line included, in arrival order."""
        with self._cond:
            return [json.loads(line) for line in self.lines if line not in self.junk]

    def call(
        self, req: Mapping[str, Any], body: bytes | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        return self.recv(self.send(req, body), timeout)

    def get_wait(self, action: bytes, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        return self.recv(self.get(action), timeout)

    def put_wait(
        self, action: bytes, body: bytes, timeout: float = DEFAULT_TIMEOUT, **kw: Any
    ) -> dict[str, Any]:
        return self.recv(self.put(action, body, **kw), timeout)

    # -- ending ------------------------------------------------------------------------

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The exit status; kills the helper and fails if it does not exit within ``timeout``."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HelperError(f"helper did not exit within {timeout}s; {self.describe()}") from None
        self._reader.join(timeout)
        self._err_reader.join(timeout)
        return rc

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Send ``close``, wait for its answer, close stdin (as cmd/go does) and the exit."""
        res = self.recv(self.send({"Command": "close"}), timeout)
        self.close_stdin()
        rc = self.wait(timeout)
        if rc != 0:
            raise HelperError(f"helper exited {rc} after close; {self.describe()}")
        return res

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEFAULT_TIMEOUT)

    def __enter__(self) -> GoCmd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_stdin()
        try:
            self.proc.wait(DEFAULT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# -- step tables -------------------------------------------------------------------------


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""In a :class:`Want`, the field must not be present."""

ANY: Any = object()
"""In a :class:`Want`, the field must be present, with any value."""


@dataclasses.dataclass(frozen=True)
class Send:
    """Write one request (and its body)."""

    req: Mapping[str, Any]
    body: bytes | None = None


@dataclasses.dataclass(frozen=True)
class Want:
    """Wait for the response to ``id`` and check ``fields``: a value must be equal, or a
    callable returning true, or :data:`ANY` / :data:`ABSENT`. Unlisted fields are not
    checked, except ``Err``, which must be absent unless listed."""

    id: int
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT


@dataclasses.dataclass(frozen=True)
class Pause:
    """Sleep, to let the helper get ahead (or fall behind)."""

    seconds: float


Step = Send | Want | Pause


def check_fields(res: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    fields = {"Err": ABSENT, **fields}
    for key, want in fields.items():
        if want is ABSENT:
            assert key not in res, f"{key} should be absent in {res}"
        elif want is ANY:
            assert key in res, f"{key} missing in {res}"
        elif callable(want):
            assert key in res and want(res[key]), f"{key} fails {want} in {res}"
        else:
            assert res.get(key) == want, f"{key}: want {want!r} in {res}"


def run_steps(cmd: GoCmd, steps: Sequence[Step]) -> dict[int, dict[str, Any]]:
    """Play ``steps`` against ``cmd``; returns the checked responses by ID."""
    got: dict[int, dict[str, Any]] = {}
    for n, step in enumerate(steps):
        if isinstance(step, Send):
            cmd.send(step.req, step.body)
        elif isinstance(step, Want):
            res = cmd.recv(step.id, step.timeout)
            try:
                check_fields(res, step.fields)
            except AssertionError as exc:
                raise AssertionError(f"step {n} {step}: {exc}") from None
            got[step.id] = res
        else:
            time.sleep(step.seconds)
    return got
