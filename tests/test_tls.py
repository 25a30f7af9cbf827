"""TLS: a ``redis-server`` with ``--tls-port`` and a CA made here, reached with ``rediss://``,
a client certificate, and an ACL user whose password must never show."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import pytest
import redis

from tests.gocmd import GoCmd, action_id, helper_env, unb64
from tests.redisproc import TLSRedisServer

PASSWORD = "tls-S3cret-pw"


def _cert(path: Path, name: str, issuer: tuple | None, *, ca: bool = False,
          server: bool = False) -> tuple:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    (path / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (path / f"{name}.key").chmod(0o600)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca = _cert(d, "ca", None, ca=True)
    _cert(d, "server", ca, server=True)
    _cert(d, "client", ca)
    _cert(d, "rogue-ca", None, ca=True)
    return d


@pytest.fixture(scope="module")
def tls_server(pki: Path):
    srv = TLSRedisServer(cert=str(pki / "server.crt"), key=str(pki / "server.key"),
                         ca=str(pki / "ca.crt"), extra_args=["--requirepass", PASSWORD])
    srv.start()
    yield srv
    srv.cleanup()


def tls_env(pki: Path, **extra: str) -> dict[str, str]:
    return {"REDIS_GOCACHE_TLS_CA": str(pki / "ca.crt"),
            "REDIS_GOCACHE_TLS_CERT": str(pki / "client.crt"),
            "REDIS_GOCACHE_TLS_KEY": str(pki / "client.key"),
            "REDIS_GOCACHE_VERBOSE": "1", **extra}


def test_rediss_round_trip_with_client_certificate(
    tmp_path: Path, pki: Path, tls_server: TLSRedisServer
) -> None:
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_server.port}/0"
    body = b"over TLS" * 5000
    aid = action_id("tls")
    with GoCmd(helper_env(tmp_path / "w", url, tls_env(pki))) as cmd:
        cmd.capability()
        assert "Err" not in cmd.put_wait(aid, body)
        cmd.close()
        assert PASSWORD not in cmd.stderr
    stats = tmp_path / "stats"
    with GoCmd(helper_env(tmp_path / "r", url,
                          tls_env(pki, REDIS_GOCACHE_STATS_FILE=str(stats)))) as cmd:
        cmd.capability()
        res = cmd.get_wait(aid)
        cmd.close()
        assert PASSWORD not in cmd.stderr
    assert Path(res["DiskPath"]).read_bytes() == body and unb64(res["OutputID"])
    assert json.loads(stats.read_text())["remote_hits"] == 1
    # And the server really speaks TLS only: a plain client cannot talk to it.
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(port=tls_server.port, password=PASSWORD, socket_timeout=1).ping()


@pytest.mark.parametrize("problem", ["rogue-ca", "no-client-cert", "wrong-password",
                                     "plain-redis-url"])
def test_tls_failures_degrade_quietly_and_leak_nothing(
    tmp_path: Path, pki: Path, tls_server: TLSRedisServer, problem: str
) -> None:
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_server.port}/0"
    env = tls_env(pki)
    if problem == "rogue-ca":
        env["REDIS_GOCACHE_TLS_CA"] = str(pki / "rogue-ca.crt")
    elif problem == "no-client-cert":
        del env["REDIS_GOCACHE_TLS_CERT"], env["REDIS_GOCACHE_TLS_KEY"]
    elif problem == "wrong-password":
        url = url.replace(PASSWORD, PASSWORD + "-wrong")
    else:
        url = url.replace("rediss://", "redis://")
    with GoCmd(helper_env(tmp_path / problem, url, env)) as cmd:
        cmd.capability()
        aid = action_id(f"tls {problem}")
        assert "Err" not in cmd.put_wait(aid, b"local")
        assert cmd.get_wait(action_id("tls miss")).get("Miss") is True
        cmd.close()
        err = cmd.stderr
    lines = [line for line in err.splitlines() if not line.startswith("redis-gocache: 2 gets")
             and not line.startswith("redis-gocache: 1 gets")]
    assert len(lines) == 1, err
    assert PASSWORD not in err and "Traceback" not in err, err
