"""Bad input the protocol tests in test_server.py do not cover: what cannot be answered ends the
helper with a clear message and exit status 2; what can be answered gets an ``Err``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gocmd import GoCmd, HelperError, action_id, b64, helper_env, output_id

AID = b64(action_id("bad input 2"))

FATAL: dict[str, bytes] = {
    "binary-garbage": bytes(range(256)) * 4 + b"\n",
    "nul-bytes": b"\x00\x00\x00\n",
    "not-utf8": b'{"ID": 1, "Command": "get\xff\xfe"}\n',
    "huge-line": b'{"ID": 1, "Command": "get", "Pad": "' + b"x" * (4 << 20),
    "id-negative": b'{"ID": -1, "Command": "get"}\n',
    "id-float": b'{"ID": 1.5, "Command": "get"}\n',
    "id-bool": b'{"ID": true, "Command": "get"}\n',
    "id-string": b'{"ID": "1", "Command": "get"}\n',
    "bodysize-string": b'{"ID": 4, "Command": "put", "BodySize": "9"}\n',
    "bodysize-huge": b'{"ID": 4, "Command": "put", "BodySize": 1e300}\n',
    "input-ends-in-body": (b'{"ID":4,"Command":"put","ActionID":"' + AID.encode()
                           + b'","OutputID":"' + AID.encode() + b'","BodySize":100}\n\n"QUFB'),
    "input-ends-before-body": (b'{"ID":4,"Command":"put","ActionID":"' + AID.encode()
                               + b'","OutputID":"' + AID.encode() + b'","BodySize":100}\n\n'),
}


@pytest.mark.parametrize("name", list(FATAL))
def test_unanswerable_input_exits_2_with_a_message(tmp_path: Path, name: str) -> None:
    with GoCmd(helper_env(tmp_path)) as cmd:
        cmd.capability()
        try:
            cmd.write(FATAL[name])
        except HelperError:
            pass  # the helper gave up reading a huge line before we finished writing it
        cmd.close_stdin()
        assert cmd.wait() == 2, cmd.describe()
        assert "unreadable request" in cmd.stderr, cmd.stderr
        assert "Traceback" not in cmd.stderr, cmd.stderr
        assert len(cmd.stderr.splitlines()) <= 2, cmd.stderr
        assert cmd.junk == []


ANSWERABLE: dict[str, tuple[dict[str, object], bytes | None]] = {
    "get-with-a-body": ({"Command": "get", "ActionID": AID, "BodySize": 3}, b"abc"),
    "close-with-a-body": ({"Command": "close", "BodySize": 3}, b"abc"),
    "put-action-not-base64-with-body": (
        {"Command": "put", "ActionID": "@@", "OutputID": AID, "BodySize": 3}, b"abc"),
    "put-output-missing": ({"Command": "put", "ActionID": AID, "BodySize": 3}, b"abc"),
    "put-action-64-bytes": (
        {"Command": "put", "ActionID": b64(bytes(64)), "OutputID": AID, "BodySize": 3}, b"abc"),
    "command-not-a-string": ({"Command": ["get"], "ActionID": AID}, None),
    "command-empty": ({"Command": "", "ActionID": AID}, None),
    "command-uppercase": ({"Command": "GET", "ActionID": AID}, None),
}


@pytest.mark.parametrize("name", list(ANSWERABLE))
def test_answerable_bad_request_gets_err_and_stream_goes_on(tmp_path: Path, name: str) -> None:
    req, body = ANSWERABLE[name]
    with GoCmd(helper_env(tmp_path)) as cmd:
        cmd.capability()
        res = cmd.call(req, body)
        assert isinstance(res.get("Err"), str) and res["Err"], res
        good = b"after"
        ok = cmd.put_wait(action_id("after bad"), good)
        assert Path(ok["DiskPath"]).read_bytes() == good
        cmd.close()
        assert cmd.junk == []


def test_put_body_not_matching_output_id_is_stored_nowhere(tmp_path: Path) -> None:
    """Go's OutputID is the SHA-256 of the body; a body that does not match gets its
    DiskPath (the build goes on) but is never served or uploaded."""
    stats = tmp_path / "stats"
    env = {"REDIS_GOCACHE_STATS_FILE": str(stats)}
    with GoCmd(helper_env(tmp_path / "d", extra=env)) as cmd:
        cmd.capability()
        aid = action_id("lying put")
        res = cmd.put_wait(aid, b"real body", output_id=output_id(b"other body"))
        assert "Err" not in res and Path(res["DiskPath"]).read_bytes() == b"real body"
        assert cmd.get_wait(aid).get("Miss") is True
        cmd.close()
    assert json.loads(stats.read_text())["rejected"] == {"put_hash": 1}
