"""The Helm chart of the cache tier (helm/redis-gocache).

Renders the chart offline with helm-python-sdk for the default values and each major option,
validates every manifest against the Kubernetes API schemas (kubernetes-validate, strict),
checks the security settings and the runner wiring, and runs the rendered Redis config and
ACL users in a real redis-server, driven by redis-py as the helper would.

Every tool is required: a missing helm-python-sdk, kubernetes-validate, redis-server,
redis-cli or sha256sum fails these tests, it never skips them.
"""

from __future__ import annotations

import base64
import datetime
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import helm_python
import kubernetes_validate.utils as kv
import pytest
import redis
import yaml

from tests.redisproc import RedisServer

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "redis-gocache"
RELEASE = "gocache"
NAMESPACE = "ci"
FULLNAME = "gocache-redis-gocache"
SERVICE_HOST = f"{FULLNAME}.{NAMESPACE}.svc.cluster.local"
# The newest Kubernetes whose schemas kubernetes-validate ships (it works offline), and the
# two newest minor versions it knows, which every render must pass.
KUBE_VERSION = kv.latest_version()
KUBE_VERSIONS = sorted(set(kv.all_versions()),
                       key=lambda v: tuple(int(x) for x in v.split(".")))[-2:]
GIB = 1024**3


@functools.cache
def ca_pem() -> str:
    """A self-signed CA certificate (PEM), as a cert-manager issuer would have."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gocache test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


EXPORTER_IMAGE = {"repository": "registry.example.com/runner-go", "tag": "1"}

# One set of values per major option of the chart.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "external": {
        "externalRedis": {
            "url": "rediss://writer:w-secret@cache.example.internal:6379/0",
            "readerUrl": "rediss://reader:r-secret@cache.example.internal:6379/0",
        }
    },
    "tls": {"tls": {"enabled": True, "existingSecret": "gocache-tls", "ca": ca_pem()}},
    "tls-client-certs": {
        "tls": {"enabled": True, "existingSecret": "gocache-tls", "authClients": True,
                "ca": ca_pem()}
    },
    "persistence": {"persistence": {"enabled": True, "size": "5Gi", "storageClass": "fast"}},
    "metrics": {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}},
    "networkpolicy-off": {"networkPolicy": {"enabled": False}},
    "networkpolicy-namespaces": {
        "networkPolicy": {
            "clientNamespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "ci-runners"}
            },
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
        },
        "metrics": {"enabled": True},
    },
    "existing-secrets": {
        "auth": {
            "writer": {"existingSecret": "my-writer", "existingSecretPasswordKey": "pw"},
            "reader": {"existingSecret": "my-reader"},
            "monitor": {"existingSecret": "my-monitor"},
        }
    },
    "auth-off": {"auth": {"enabled": False}},
    "extra-namespaces": {"runner": {"extraNamespaces": ["ci-runners", "gitlab"]}},
    "pdb": {"podDisruptionBudget": {"enabled": True}},
    "spill": {"spill": {"enabled": True, "storageClass": "efs-sc", "size": "100Gi"}},
    "ha": {"ha": {"enabled": True}},
    "ha-full": {
        "ha": {"enabled": True, "replicas": 5, "antiAffinity": "soft"},
        "tls": {"enabled": True, "existingSecret": "gocache-tls", "ca": ca_pem()},
        "persistence": {"enabled": True},
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
        "exporter": {"enabled": True, "image": EXPORTER_IMAGE,
                     "serviceMonitor": {"enabled": True}},
        "grafanaDashboard": {"enabled": True},
        "runner": {"extraNamespaces": ["ci-runners"]},
    },
    "ha-existing-secrets": {
        "ha": {"enabled": True},
        "auth": {user: {"existingSecret": f"my-{user}"}
                 for user in ("writer", "reader", "monitor", "replication", "sentinel")},
    },
    "exporter-dashboard": {
        "exporter": {"enabled": True, "image": EXPORTER_IMAGE,
                     "serviceMonitor": {"enabled": True}},
        "metrics": {"enabled": True},
        "grafanaDashboard": {"enabled": True, "labels": {"grafana_folder": "CI"}},
    },
    "spill-existing-claim": {
        "spill": {"enabled": True, "existingClaim": "ci-spill", "mountPath": "/spill"},
        "externalRedis": {"url": "redis://cache.example.internal:6379/0"},
        "runner": {"extraNamespaces": ["ci-runners"]},
    },
    "local-hostpath": {"runner": {"localDir": {"type": "hostPath"}},
                       "spill": {"enabled": True}},
    "local-emptydir": {"runner": {"localDir": {"type": "emptyDir", "maxSize": ""}}},
}


@dataclass
class Rendered:
    """One offline render: the manifests (parsed) and NOTES.txt."""

    docs: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        for d in self.docs:
            meta = d["metadata"]
            if d["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
                return d
        raise AssertionError(f"no {kind} {namespace}/{name} in {self.names()}")

    def names(self) -> list[str]:
        return [f"{d['kind']}/{d['metadata'].get('namespace')}/{d['metadata']['name']}"
                for d in self.docs]

    def secret(self, name: str, namespace: str = NAMESPACE) -> dict[str, str]:
        data = self.get("Secret", name, namespace).get("data", {})
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def config(self, key: str) -> str:
        return str(self.get("ConfigMap", f"{FULLNAME}-config")["data"][key])

    def pod_specs(self) -> list[dict[str, Any]]:
        specs = [d["spec"]["template"]["spec"]
                 for d in self.of_kind("StatefulSet") + self.of_kind("Deployment")]
        specs += [d["spec"] for d in self.of_kind("Pod")]
        return specs


def render(values: dict[str, Any] | None = None) -> Rendered:
    with helm_python.Chart.load(CHART) as chart:
        out = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return Rendered(docs, notes)


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, Rendered]:
    name = str(request.param)
    return name, render(SCENARIOS[name])


def redis_conf(text: str) -> dict[str, str]:
    """Directives of a redis.conf (the last one wins, as in Redis)."""
    conf: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


# --- the chart itself -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lint_is_clean(name: str) -> None:
    report = helm_python.lint(CHART, SCENARIOS[name], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_every_manifest_is_valid_kubernetes(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    assert rendered.docs, name
    assert len(KUBE_VERSIONS) == 2 and KUBE_VERSIONS[-1] == KUBE_VERSION
    for doc in rendered.docs:
        if doc["kind"] == "ServiceMonitor":
            check_service_monitor(doc)
            continue
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                raise AssertionError(f"{name}: {doc['kind']}/{doc['metadata']['name']} "
                                     f"(Kubernetes {version}): {exc.message} "
                                     f"at {list(exc.path)}") from None


def check_service_monitor(doc: dict[str, Any]) -> None:
    # A Prometheus Operator CRD: kubernetes-validate has no schema for it.
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    assert doc["spec"]["endpoints"][0]["port"] == "metrics"
    assert doc["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_pods_run_without_root_or_privileges(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    for spec in rendered.pod_specs():
        assert spec["automountServiceAccountToken"] is False
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec.get("initContainers", []) + spec["containers"]:
            sc = container["securityContext"]
            where = f"{name}: container {container['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"] and not sc.get("privileged"), where
            assert sc.get("runAsUser", psc["runAsUser"]) != 0, where
            resources = container["resources"]
            assert resources["requests"] and resources["limits"]["memory"], where


def test_no_password_is_written_into_a_pod_spec(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    secret_values = {
        value
        for secret in rendered.of_kind("Secret")
        for value in rendered.secret(secret["metadata"]["name"],
                                     secret["metadata"]["namespace"]).values()
        if len(value) > 1
    }
    for spec in rendered.pod_specs():
        text = yaml.safe_dump(spec)
        for value in secret_values:
            assert value not in text, f"{name}: a Secret's value is spelt out in a pod spec"
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                if re.search(r"PASSWORD|AUTH|URL", env["name"]) and env["name"] != "REDIS_ADDR":
                    assert "value" not in env, f"{name}: {env['name']} must come from a Secret"


def test_probes_and_resources() -> None:
    rendered = render()
    (sts,) = rendered.of_kind("StatefulSet")
    assert sts["spec"]["replicas"] == 1
    (redis_container,) = sts["spec"]["template"]["spec"]["containers"]
    assert redis_container["image"] == "redis:" + rendered_values()["image"]["tag"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(-\w+)?", rendered_values()["image"]["tag"])
    assert redis_container["livenessProbe"]["tcpSocket"]["port"] == "redis"
    assert redis_container["readinessProbe"]["exec"]["command"][-1].endswith("ready.sh")
    assert redis_container["resources"]["limits"]["memory"] == "1Gi"
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def rendered_values() -> dict[str, Any]:
    with helm_python.Chart.load(CHART) as chart:
        return chart.values


# --- Redis configuration --------------------------------------------------------------------


def test_default_redis_config_is_a_cache() -> None:
    conf = redis_conf(render().config("redis.conf"))
    assert conf["maxmemory"] == str(int(GIB * 0.7))  # 70% of the 1Gi limit
    assert conf["maxmemory-policy"] == "allkeys-lru"
    assert conf["lazyfree-lazy-eviction"] == "yes"
    assert conf["lazyfree-lazy-expire"] == "yes"
    assert conf["save"] == '""'
    assert conf["appendonly"] == "no"
    assert conf["aclfile"] == "/run/redis-gocache/users.acl"
    assert "requirepass" not in conf


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ({"resources": {"limits": {"memory": "2Gi"}}}, str(int(2 * GIB * 0.7))),
        ({"resources": {"limits": {"memory": "1500M"}}}, "1050000000"),
        ({"resources": {"limits": {"memory": "4Gi"}}, "redis": {"maxmemoryPercent": 50}},
         str(2 * GIB)),
        ({"redis": {"maxmemory": "800mb"}}, "800mb"),
        ({"redis": {"maxmemory": "800mb"}, "resources": {"requests": {"memory": "1Gi"}}},
         "800mb"),
    ],
)
def test_maxmemory_follows_the_memory_limit(values: dict[str, Any], want: str) -> None:
    assert redis_conf(render(values).config("redis.conf"))["maxmemory"] == want


def test_maxmemory_needs_a_limit_or_a_value() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="resources.limits.memory"):
        render({"resources": {"requests": {"memory": "1Gi"}, "limits": None}})


def test_eviction_policy_and_persistence_are_values() -> None:
    rendered = render({
        "redis": {"maxmemoryPolicy": "allkeys-lfu", "extraConfig": "hz 20"},
        "persistence": {"enabled": True, "save": "900 1", "appendonly": True},
    })
    conf = redis_conf(rendered.config("redis.conf"))
    assert conf["maxmemory-policy"] == "allkeys-lfu"
    assert conf["save"] == '"900 1"' and conf["appendonly"] == "yes"
    assert conf["hz"] == "20"
    (sts,) = rendered.of_kind("StatefulSet")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    volumes = {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "data" not in volumes  # the claim, not an emptyDir


def test_tls_config() -> None:
    rendered = render(SCENARIOS["tls-client-certs"])
    conf = redis_conf(rendered.config("redis.conf"))
    assert conf["port"] == "0" and conf["tls-port"] == "6379"
    assert conf["tls-auth-clients"] == "yes" and conf["tls-ca-cert-file"] == "/tls/ca.crt"
    for secret in ("writer", "reader"):
        assert rendered.secret(f"{FULLNAME}-{secret}")["REDIS_URL"].startswith("rediss://")
    assert "REDIS_GOCACHE_TLS_CA" in rendered.notes
    # The CA reaches runners through their ConfigMap, with the path to mount it at.
    for namespace in (NAMESPACE,):
        runner = rendered.get("ConfigMap", f"{FULLNAME}-runner", namespace)["data"]
        assert runner["ca.crt"].strip() == ca_pem().strip()
        assert runner["REDIS_GOCACHE_TLS_CA"] == "/etc/redis-gocache-tls/ca.crt"
    # Offline, without tls.ca, the chart cannot read the Secret: it says so, rather than
    # give runners nothing to verify with.
    with pytest.raises(helm_python.HelmRenderError, match="set tls.ca"):
        render({"tls": {"enabled": True, "existingSecret": "gocache-tls"}})


# --- runner-side objects --------------------------------------------------------------------


def test_runner_secrets_point_at_the_service() -> None:
    rendered = render()
    service = rendered.get("Service", FULLNAME)
    port = service["spec"]["ports"][0]["port"]
    auth = rendered.secret(f"{FULLNAME}-auth")
    for user in ("writer", "reader"):
        secret = rendered.secret(f"{FULLNAME}-{user}")
        url = urlsplit(secret["REDIS_URL"])
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "redis", SERVICE_HOST, port, "/0")
        assert url.username == f"gocache-{user}"
        # The same render made both Secrets: they must agree.
        assert url.password == auth[f"{user}-password"]
        assert len(url.password) >= 32
    reader = rendered.secret(f"{FULLNAME}-reader")
    assert reader["REDIS_GOCACHE_READONLY"] == "1"
    assert "REDIS_GOCACHE_READONLY" not in rendered.secret(f"{FULLNAME}-writer")
    runner = rendered.get("ConfigMap", f"{FULLNAME}-runner")["data"]
    assert runner == {"GOCACHEPROG": "redis-gocache", "REDIS_GOCACHE_PREFIX": "gocache:"}


def test_generated_passwords_are_looked_up_not_regenerated() -> None:
    # Offline renders cannot run `lookup`; check that the template asks for the release's
    # Secret and reuses what it holds before generating anything.
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert re.search(r'lookup "v1" "Secret" \.Release\.Namespace', helpers)
    assert "b64dec" in helpers and "randAlphaNum" in helpers
    # Two renders (two installs) get different passwords, so nothing is hard-coded.
    first = render().secret(f"{FULLNAME}-auth")
    second = render().secret(f"{FULLNAME}-auth")
    assert set(first) == {"writer-password", "reader-password", "monitor-password"}
    assert all(first[k] != second[k] for k in first)


def test_existing_secrets_are_used_and_not_generated() -> None:
    rendered = render(SCENARIOS["existing-secrets"])
    assert not any(s["metadata"]["name"] == f"{FULLNAME}-auth"
                   for s in rendered.of_kind("Secret"))
    writer_url = urlsplit(rendered.secret(f"{FULLNAME}-writer")["REDIS_URL"])
    assert writer_url.username == "gocache-writer" and writer_url.password is None
    (sts,) = rendered.of_kind("StatefulSet")
    refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in sts["spec"]["template"]["spec"]["initContainers"][0]["env"]
    }
    assert refs["REDIS_WRITER_PASSWORD"] == {"name": "my-writer", "key": "pw"}
    assert refs["REDIS_READER_PASSWORD"] == {"name": "my-reader", "key": "password"}
    assert refs["REDIS_MONITOR_PASSWORD"] == {"name": "my-monitor", "key": "password"}
    assert "REDIS_PASSWORD" in rendered.notes and "my-writer" in rendered.notes


def test_runner_objects_in_extra_namespaces() -> None:
    rendered = render(SCENARIOS["extra-namespaces"])
    urls = set()
    for namespace in (NAMESPACE, "ci-runners", "gitlab"):
        urls.add(rendered.secret(f"{FULLNAME}-writer", namespace)["REDIS_URL"])
        assert rendered.secret(f"{FULLNAME}-reader", namespace)["REDIS_GOCACHE_READONLY"] == "1"
        rendered.get("ConfigMap", f"{FULLNAME}-runner", namespace)
    assert len(urls) == 1  # one password everywhere
    # Server-side objects stay in the release's namespace.
    assert {d["metadata"]["namespace"] for d in rendered.docs
            if d["kind"] in ("StatefulSet", "Service", "NetworkPolicy")} == {NAMESPACE}


def test_external_redis_deploys_only_runner_objects() -> None:
    rendered = render(SCENARIOS["external"])
    assert sorted(d["kind"] for d in rendered.docs) == ["ConfigMap", "Secret", "Secret"]
    assert rendered.secret(f"{FULLNAME}-writer")["REDIS_URL"] == (
        SCENARIOS["external"]["externalRedis"]["url"])
    reader = rendered.secret(f"{FULLNAME}-reader")
    assert reader["REDIS_URL"] == SCENARIOS["external"]["externalRedis"]["readerUrl"]
    assert reader["REDIS_GOCACHE_READONLY"] == "1"
    # Without a readerUrl, read-only jobs use the writer URL (and the read-only switch).
    plain = render({"externalRedis": {"url": "redis://10.0.0.5:6379/0"}})
    assert plain.secret(f"{FULLNAME}-reader")["REDIS_URL"] == "redis://10.0.0.5:6379/0"


def test_notes_show_the_runner_environment() -> None:
    notes = render().notes
    for needed in ("GOCACHEPROG=redis-gocache", 'REDIS_GOCACHE_PREFIX="gocache:"', "REDIS_URL",
                   f"{FULLNAME}-writer", f"{FULLNAME}-reader", f"{FULLNAME}-runner",
                   "REDIS_GOCACHE_READONLY=1", "runner.extraNamespaces",
                   "redis-gocache/client", "-trimpath"):
        assert needed in notes, needed


# --- network policy, disruption budget, metrics, test hook ---------------------------------


def test_network_policy_admits_labelled_clients_only() -> None:
    (policy,) = render().of_kind("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"redis-gocache/client": "true"}}}]

    rendered = render(SCENARIOS["networkpolicy-namespaces"])
    (policy,) = rendered.of_kind("NetworkPolicy")
    redis_rule, metrics_rule = policy["spec"]["ingress"]
    assert redis_rule["from"][1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ci-runners"}},
        "podSelector": {"matchLabels": {"redis-gocache/client": "true"}},
    }
    # The metrics port: only from the namespaces the values name.
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_rule["from"] == [
        {"namespaceSelector": {"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring"]}]}},
        {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}},
    ]
    # No namespace named: the metrics port is reachable from nowhere (no rule admits it).
    closed = render({"metrics": {"enabled": True},
                     "networkPolicy": {"metricsNamespaces": []}})
    (policy,) = closed.of_kind("NetworkPolicy")
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == ["redis"]

    assert render(SCENARIOS["networkpolicy-off"]).of_kind("NetworkPolicy") == []
    # The test pod must be let in by the policy.
    (pod,) = render().of_kind("Pod")
    assert pod["metadata"]["labels"]["redis-gocache/client"] == "true"


def test_no_disruption_budget_that_blocks_drains() -> None:
    assert render().of_kind("PodDisruptionBudget") == []
    (pdb,) = render(SCENARIOS["pdb"]).of_kind("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]


def test_metrics_sidecar_and_service_monitor() -> None:
    rendered = render(SCENARIOS["metrics"])
    (sts,) = rendered.of_kind("StatefulSet")
    exporter = sts["spec"]["template"]["spec"]["containers"][1]
    assert exporter["image"].startswith("oliver006/redis_exporter:v")
    env = {e["name"]: e for e in exporter["env"]}
    assert env["REDIS_USER"]["value"] == "gocache-monitor"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "monitor-password"
    ports = {p["name"] for p in rendered.get("Service", FULLNAME)["spec"]["ports"]}
    assert ports == {"redis", "metrics"}
    assert len(rendered.of_kind("ServiceMonitor")) == 1
    assert render().of_kind("ServiceMonitor") == []


def test_helm_test_hook() -> None:
    (pod,) = render().of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["WRITER_URL"] == {"name": f"{FULLNAME}-writer", "key": "REDIS_URL"}
    assert env["READER_URL"] == {"name": f"{FULLNAME}-reader", "key": "REDIS_URL"}


def notes_pod(notes: str) -> dict[str, Any]:
    """The pod spec NOTES.txt shows, made a Pod (image added) to validate."""
    block = notes.split("In the runner's pod spec:\n", 1)[1].split("\n\n", 1)[0]
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", **yaml.safe_load(block)}
    pod["metadata"]["name"] = "runner"
    pod["spec"]["containers"][0]["image"] = "registry.example.com/runner-go:1"
    kv.validate(pod, KUBE_VERSION, strict=True)
    return pod


def test_local_dir_is_unset_by_default() -> None:
    rendered = render()
    data = rendered.get("ConfigMap", f"{FULLNAME}-runner")["data"]
    assert "REDIS_GOCACHE_DIR" not in data and "REDIS_GOCACHE_TRIM_MAX_SIZE" not in data
    assert "volumes" not in notes_pod(rendered.notes)["spec"]


def test_local_dir_on_a_host_path_shared_by_the_node() -> None:
    """The recommended layout: the ConfigMap points at a hostPath the NOTES mount, made
    (DirectoryOrCreate) and given to the runners' uid by an init container, and the runner
    containers run as that uid (helpers of two users cannot share a directory)."""
    rendered = render(SCENARIOS["local-hostpath"])
    local = rendered_values()["runner"]["localDir"]
    data = rendered.get("ConfigMap", f"{FULLNAME}-runner")["data"]
    assert data["REDIS_GOCACHE_DIR"] == local["path"]
    assert data["REDIS_GOCACHE_TRIM_MAX_SIZE"] == local["maxSize"]
    spec = notes_pod(rendered.notes)["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["gocache-local"]["hostPath"] == {"path": local["path"],
                                                   "type": "DirectoryOrCreate"}
    assert "gocache-spill" in volumes  # both volumes when both are on
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["gocache-local"] == local["path"]
    assert spec["securityContext"]["runAsUser"] == local["runAsUser"]
    (init,) = spec["initContainers"]
    assert f"chown {local['runAsUser']}:{local['runAsGroup']} /d" in init["command"][-1]
    assert init["volumeMounts"] == [{"name": "gocache-local", "mountPath": "/d"}]


def test_local_dir_per_pod_on_an_empty_dir() -> None:
    rendered = render(SCENARIOS["local-emptydir"])
    data = rendered.get("ConfigMap", f"{FULLNAME}-runner")["data"]
    assert data["REDIS_GOCACHE_DIR"] == "/var/cache/redis-gocache"
    assert "REDIS_GOCACHE_TRIM_MAX_SIZE" not in data  # maxSize ""
    spec = notes_pod(rendered.notes)["spec"]
    (volume,) = spec["volumes"]
    assert volume == {"name": "gocache-local", "emptyDir": {"sizeLimit": "10Gi"}}
    assert "initContainers" not in spec


def test_local_dir_and_the_same_setting_in_runner_env_fail() -> None:
    with pytest.raises(Exception, match="remove them from runner.env"):
        render({"runner": {"localDir": {"type": "hostPath"},
                           "env": {"REDIS_GOCACHE_DIR": "/elsewhere"}}})


# --- values.schema.json -----------------------------------------------------------------------


def test_spill_volume_is_off_by_default() -> None:
    rendered = render()
    assert rendered.of_kind("PersistentVolumeClaim") == []
    cm = rendered.get("ConfigMap", f"{FULLNAME}-runner")
    assert "REDIS_GOCACHE_SPILL_DIR" not in cm["data"]
    assert "SPILL" not in rendered.notes


def test_spill_volume_claim_and_runner_setting() -> None:
    rendered = render(SCENARIOS["spill"])
    (pvc,) = rendered.of_kind("PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == f"{FULLNAME}-spill"
    assert pvc["metadata"]["namespace"] == NAMESPACE
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "efs-sc"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    mount = rendered_values()["spill"]["mountPath"]
    cm = rendered.get("ConfigMap", f"{FULLNAME}-runner")
    assert cm["data"]["REDIS_GOCACHE_SPILL_DIR"] == mount
    # NOTES show the pod spec that mounts the claim where the ConfigMap points.
    assert f"claimName: {FULLNAME}-spill" in rendered.notes
    assert f"mountPath: {mount}" in rendered.notes
    # The Redis side does not change: the StatefulSet does not mount the runners' volume.
    for spec in rendered.pod_specs():
        claims = [v for v in spec.get("volumes", []) if "persistentVolumeClaim" in v]
        assert all(v["persistentVolumeClaim"]["claimName"] != f"{FULLNAME}-spill"
                   for v in claims)


def test_spill_with_an_existing_claim_makes_none() -> None:
    rendered = render(SCENARIOS["spill-existing-claim"])
    assert rendered.of_kind("PersistentVolumeClaim") == []
    for ns in (NAMESPACE, "ci-runners"):
        cm = rendered.get("ConfigMap", f"{FULLNAME}-runner", ns)
        assert cm["data"]["REDIS_GOCACHE_SPILL_DIR"] == "/spill"
    assert "claimName: ci-spill" in rendered.notes


def test_spill_trim_recipe_matches_the_chart() -> None:
    """The CronJob of docs/kubernetes.md is valid, runs ``trim --spill`` with the runner
    ConfigMap, and mounts the chart's claim where that ConfigMap points."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    docs = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    (job,) = [d for d in docs if isinstance(d, dict) and d.get("kind") == "CronJob"]
    kv.validate(job, KUBE_VERSION, strict=True)
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][-2:] == ["trim", "--spill"]
    rendered = render(SCENARIOS["spill"])
    cm = rendered.get("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    (pvc,) = rendered.of_kind("PersistentVolumeClaim")
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == cm["data"]["REDIS_GOCACHE_SPILL_DIR"]
    values = yaml.safe_load(next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
                                 if "spill:" in b and "enabled: true" in b))
    render(values)  # the values snippet passes the schema


@pytest.mark.parametrize(
    "values",
    [
        {"prefix": "gocache:*"},
        {"prefix": "{gocache}:"},
        {"redis": {"maxmemoryPolicy": "allkeys-mru"}},
        {"redis": {"maxmemory": "lots"}},
        {"redis": {"maxmemoryPercent": 100}},
        {"tls": {"enabled": True}},
        {"auth": {"writer": {"username": "bad user"}}},
        {"auth": {"reader": {"commands": "+@all ~*"}}},
        {"podSecurityContext": {"runAsNonRoot": False}},
        {"securityContext": {"allowPrivilegeEscalation": True}},
        {"networkPolicy": {"clientPodLabels": {"team": 1}}},
        {"runner": {"env": {"GOCACHEPROG": "other"}}},
        {"runner": {"extraNamespaces": ["Not_A_Namespace"]}},
        {"externalRedis": {"url": "http://cache:6379"}},
        {"replicas": 3},
        {"ha": {"enabled": True, "replicas": 2}},
        {"ha": {"enabled": True, "replicas": 4}},
        {"ha": {"antiAffinity": "sometimes"}},
        {"redis": {"forkMaxmemoryPercent": 70}},
        {"networkPolicy": {"metricsFrom": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}},
        {"networkPolicy": {"metricsFrom": [{"podSelector": {}}]}},
        {"exporter": {"enabled": True}},
        {"tls": {"ca": "not a certificate"}},
        {"persistence": {"enabled": "yes"}},
        {"spill": {"mountPath": "relative/path"}},
        {"spill": {"mountPath": "/spill/../etc"}},
        {"spill": {"existingClaim": "Not A Claim"}},
        {"spill": {"size": "lots"}},
        {"spill": {"accessModes": ["ReadWriteSometimes"]}},
        {"spill": {"enabled": True, "claim": "typo"}},
        {"runner": {"localDir": {"type": "persistentVolumeClaim"}}},
        {"runner": {"localDir": {"path": "/var/../etc"}}},
        {"runner": {"localDir": {"maxSize": "lots"}}},
        {"runner": {"localDir": {"runAsUser": 0}}},
    ],
)
def test_schema_rejects_wrong_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


# --- the rendered config and ACL users in a real redis-server ------------------------------


def required_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: the chart tests need it")
    return path


@dataclass
class LiveRedis:
    """A redis-server started from a render's redis.conf and ACL script."""

    server: RedisServer
    rendered: Rendered
    passwords: dict[str, str]

    def local_url(self, url: str) -> str:
        """A runner URL with the Service's host:port swapped for the local server."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.server.port}" if userinfo else (
            f"127.0.0.1:{self.server.port}")
        return urlunsplit(parts._replace(netloc=netloc))

    def client(self, user: str, **kwargs: Any) -> redis.Redis:
        secret = self.rendered.secret(f"{FULLNAME}-{user}")
        url = self.local_url(secret["REDIS_URL"])
        if user in self.passwords:
            kwargs.setdefault("password", self.passwords[user])
        return redis.Redis.from_url(url, socket_timeout=5, **kwargs)


def start_live_redis(rendered: Rendered, passwords: dict[str, str], tmp: Path) -> RedisServer:
    required_tool("sha256sum")
    acl_path = tmp / "users.acl"
    env = dict(os.environ)
    for user, password in passwords.items():
        env[f"REDIS_{user.upper()}_PASSWORD"] = password
    script = tmp / "make-acl.sh"
    script.write_text(rendered.config("make-acl.sh"))
    subprocess.run(["sh", str(script), str(acl_path)], env=env, check=True, timeout=30)
    acl = acl_path.read_text()
    for password in passwords.values():
        assert password not in acl, "the ACL file must hold hashes, not passwords"
    # The pod's paths, moved into the temp dir; everything else as rendered.
    conf = rendered.config("redis.conf")
    conf = conf.replace("dir /data", f"dir {tmp}")
    conf = conf.replace("aclfile /run/redis-gocache/users.acl", f"aclfile {acl_path}")
    conf_path = tmp / "redis.conf"
    conf_path.write_text(conf)
    return RedisServer(config_file=str(conf_path)).start()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveRedis]:
    """The default render, running: generated passwords in the runner Secrets' URLs."""
    rendered = render()
    auth = rendered.secret(f"{FULLNAME}-auth")
    passwords = {user: auth[f"{user}-password"] for user in ("writer", "reader", "monitor")}
    with tempfile.TemporaryDirectory(prefix="redis-gocache-chart-") as tmp:
        server = start_live_redis(rendered, passwords, Path(tmp))
        try:
            # Passwords come from the URLs here, as in a runner pod.
            yield LiveRedis(server, rendered, {})
        finally:
            server.cleanup()


def test_live_config_is_loaded(live: LiveRedis) -> None:
    writer = live.client("writer")
    memory = writer.info("memory")
    assert memory["maxmemory"] == int(GIB * 0.7)
    assert memory["maxmemory_policy"] == "allkeys-lru"


def test_default_user_is_off(live: LiveRedis) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=live.server.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=live.server.port, username="gocache-writer",
                    password="wrong", socket_timeout=5).ping()


def assert_permitted(client: redis.Redis, *command: str) -> None:
    """The ACL lets ``command`` through; an older Redis may still not know it."""
    try:
        client.execute_command(*command)
    except redis.exceptions.NoPermissionError:
        raise
    except redis.exceptions.ResponseError as exc:
        assert "unknown subcommand" in str(exc).lower(), exc


def test_writer_can_send_every_command_of_the_design(live: LiveRedis) -> None:
    w = live.client("writer")
    assert w.ping() is True
    # What redis-py sends on connect (CLIENT SETINFO exists from Redis 7.2 on).
    assert_permitted(w, "CLIENT", "SETINFO", "LIB-NAME", "redis-gocache")
    assert_permitted(w, "SELECT", "0")
    action, blob, tmp = "gocache:a:" + "ab" * 32, "gocache:o:" + "cd" * 32, "gocache:t:ef01"
    assert w.set(tmp, b"part1") is True
    assert w.append(tmp, b"part2") == 10
    assert w.rename(tmp, blob) is True
    assert w.expire(blob, 600) is True
    pipe = w.pipeline(transaction=True)  # MULTI / EXEC
    pipe.delete(action)
    pipe.hset(action, mapping={"oid": "cd" * 32, "size": 10, "time": 1, "ref": "o"})
    pipe.expire(action, 600)
    assert pipe.execute() == [0, 4, True]
    assert w.hgetall(action)[b"ref"] == b"o"
    assert w.get(blob) == b"part1part2"
    assert w.getrange(blob, 0, 4) == b"part1"
    assert w.strlen(blob) == 10
    assert w.hincrby("gocache:s:fleet", "gets", 3) == 3
    assert w.delete(action, blob, "gocache:s:fleet") == 3
    # The operator commands (stats, doctor, trim, flush) scan, measure and unlink.
    assert w.set("gocache:o:op", b"x", ex=60) is True
    assert list(w.scan_iter(match="gocache:o:*", count=100)) == [b"gocache:o:op"]
    assert w.dbsize() >= 1 and w.exists("gocache:o:op") == 1 and w.ttl("gocache:o:op") > 0
    assert w.memory_usage("gocache:o:op") > 0
    assert {"redis_version", "used_memory", "evicted_keys"} <= set(
        w.info("server") | w.info("memory") | w.info("stats"))
    assert w.getdel("gocache:o:op") == b"x"
    assert w.set("gocache:o:op", b"x") is True and w.unlink("gocache:o:op") == 1
    # RESP3 (HELLO) works too.
    resp3 = live.client("writer", protocol=3)
    assert resp3.ping() is True


def test_writer_is_confined_to_the_prefix(live: LiveRedis) -> None:
    w = live.client("writer")
    with pytest.raises(redis.exceptions.NoPermissionError):
        w.set("other:key", b"x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        w.get("other:key")
    for command in (("FLUSHALL",), ("CONFIG", "SET", "maxmemory", "1"), ("KEYS", "*"),
                    ("EVAL", "return 1", "0"), ("ACL", "LIST"), ("CLIENT", "LIST"),
                    ("CLIENT", "KILL", "ID", "999999"), ("SWAPDB", "0", "1")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            w.execute_command(*command)


def test_reader_reads_the_prefix_and_nothing_else(live: LiveRedis) -> None:
    w = live.client("writer")
    action, blob = "gocache:a:" + "12" * 32, "gocache:o:" + "34" * 32
    w.hset(action, mapping={"oid": "34" * 32, "size": 5, "time": 1, "body": b"hello"})
    w.set(blob, b"hello world")
    r = live.client("reader")
    assert r.ping() is True
    assert_permitted(r, "CLIENT", "SETINFO", "LIB-NAME", "redis-gocache")
    assert_permitted(r, "SELECT", "0")
    assert r.hgetall(action)[b"body"] == b"hello"
    assert r.get(blob) == b"hello world"
    assert r.getrange(blob, 0, 4) == b"hello"
    assert r.strlen(blob) == 11
    writes = [
        lambda: r.set(blob, b"evil"),
        lambda: r.set("gocache:o:new", b"evil"),
        lambda: r.hset(action, "body", b"evil"),
        lambda: r.delete(action),
        lambda: r.expire(action, 1),
        lambda: r.append(blob, b"evil"),
        lambda: r.rename(blob, "gocache:o:moved"),
        lambda: r.hincrby("gocache:s:fleet", "gets", 1),
        lambda: r.execute_command("FLUSHALL"),
    ]
    for write in writes:
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    pipe = r.pipeline(transaction=True)
    pipe.set(blob, b"evil")
    with pytest.raises(redis.exceptions.ResponseError):
        pipe.execute()
    w2 = live.client("writer")
    assert w2.get(blob) == b"hello world" and w2.hget(action, "body") == b"hello"
    # Nobody here can make a key outside the prefix; the permission check comes first anyway.
    for read in (lambda: r.get("other:secret"), lambda: r.hgetall("other:hash"),
                 lambda: r.strlen("other:secret"), lambda: r.execute_command("KEYS", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            read()
    w.delete(action, blob)


def test_monitor_user_and_readiness_script(live: LiveRedis, tmp_path: Path) -> None:
    required_tool("redis-cli")
    password = live.rendered.secret(f"{FULLNAME}-auth")["monitor-password"]
    monitor = redis.Redis(host="127.0.0.1", port=live.server.port, username="gocache-monitor",
                          password=password, socket_timeout=5)
    assert monitor.ping() is True
    assert "used_memory" in monitor.info("memory")
    assert monitor.config_get("maxmemory") == {"maxmemory": str(int(GIB * 0.7))}
    with pytest.raises(redis.exceptions.NoPermissionError):
        monitor.get("gocache:a:00")
    script = tmp_path / "ready.sh"
    script.write_text(live.rendered.config("ready.sh").replace(
        "-p 6379", f"-p {live.server.port}"))
    env = dict(os.environ, REDISCLI_AUTH=password)
    ok = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    env["REDISCLI_AUTH"] = "wrong"
    bad = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 1 and "not ready" in bad.stderr


def run_helm_test_script(live: LiveRedis, extra_env: dict[str, str]) -> str:
    required_tool("redis-cli")
    (pod,) = live.rendered.of_kind("Pod")
    script = pod["spec"]["containers"][0]["args"][0]
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    env["WRITER_URL"] = live.local_url(live.rendered.secret(f"{FULLNAME}-writer")["REDIS_URL"])
    env["READER_URL"] = live.local_url(live.rendered.secret(f"{FULLNAME}-reader")["REDIS_URL"])
    env.update(extra_env)
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_helm_test_script_passes(live: LiveRedis) -> None:
    out = run_helm_test_script(live, {})
    assert "ok: reader set -> NOPERM" in out
    assert "writer and reader credentials work" in out
    for password in live.rendered.secret(f"{FULLNAME}-auth").values():
        assert password not in out


def test_helm_test_script_fails_when_the_reader_can_write(live: LiveRedis) -> None:
    # Hand the test the writer's credentials as the "reader": it must notice.
    writer_url = live.rendered.secret(f"{FULLNAME}-writer")["REDIS_URL"]
    (pod,) = live.rendered.of_kind("Pod")
    script = pod["spec"]["containers"][0]["args"][0]
    env = dict(os.environ, WRITER_URL=live.local_url(writer_url),
               READER_URL=live.local_url(writer_url))
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "FAILED: reader set" in done.stdout


def test_existing_secrets_work_live(tmp_path: Path) -> None:
    """Users' own Secrets: URLs name the user, the password comes from REDIS_PASSWORD."""
    rendered = render(SCENARIOS["existing-secrets"])
    passwords = {"writer": "writer pass: with spaces & $", "reader": "r'ead\"er",
                 "monitor": "m0nitor"}
    server = start_live_redis(rendered, passwords, tmp_path)
    try:
        live = LiveRedis(server, rendered, passwords)
        assert live.client("writer").set("gocache:o:x", b"1") is True
        assert live.client("reader").get("gocache:o:x") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            live.client("reader").set("gocache:o:x", b"2")
        out = run_helm_test_script(live, {"WRITER_PASSWORD": passwords["writer"],
                                          "READER_PASSWORD": passwords["reader"]})
        assert "writer and reader credentials work" in out
    finally:
        server.cleanup()


@pytest.mark.parametrize("name", ["persistence", "auth-off", "metrics"])
def test_other_configs_start(name: str, tmp_path: Path) -> None:
    rendered = render(SCENARIOS[name])
    passwords = {"writer": "w" * 40, "reader": "r" * 40, "monitor": "m" * 40}
    if rendered.of_kind("Secret") and "make-acl.sh" in rendered.get(
            "ConfigMap", f"{FULLNAME}-config")["data"]:
        server = start_live_redis(rendered, passwords, tmp_path)
    else:
        conf = rendered.config("redis.conf").replace("dir /data", f"dir {tmp_path}")
        (tmp_path / "redis.conf").write_text(conf)
        server = RedisServer(config_file=str(tmp_path / "redis.conf")).start()
    try:
        if name == "auth-off":
            url = urlsplit(rendered.secret(f"{FULLNAME}-reader")["REDIS_URL"])
            assert url.username is None and url.password is None
            client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
        else:
            client = redis.Redis(host="127.0.0.1", port=server.port, username="gocache-writer",
                                 password="w" * 40, socket_timeout=5)
        assert client.set("gocache:o:y", b"1") is True
        assert client.info("memory")["maxmemory_policy"] == "allkeys-lru"
    finally:
        server.cleanup()


# --- docs/kubernetes.md ---------------------------------------------------------------------


def test_kubernetes_doc_snippets_are_valid() -> None:
    """Every YAML block of the runner recipes parses; the Pod recipe is a valid Pod that
    names the chart's runner objects (release "gocache")."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 6
    docs = [yaml.safe_load(block) for block in blocks]
    pods = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Pod"]
    assert len(pods) == 1
    kv.validate(pods[0], KUBE_VERSION, strict=True)
    (container,) = pods[0]["spec"]["containers"]
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    rendered = render()
    rendered.get("ConfigMap", f"{FULLNAME}-runner")
    rendered.get("Secret", f"{FULLNAME}-writer")
    assert refs == {f"{FULLNAME}-runner", f"{FULLNAME}-writer"}
    assert pods[0]["metadata"]["labels"] == {"redis-gocache/client": "true"}
    # The ACL table shows the rules the chart really uses.
    values = rendered_values()
    for user in ("writer", "reader"):
        assert values["auth"][user]["commands"] in text


# --- high availability, the fork's headroom, the headless Service -----------------------------


def test_statefulset_is_governed_by_a_headless_service() -> None:
    for values in ({}, SCENARIOS["ha"]):
        rendered = render(values)
        (sts,) = rendered.of_kind("StatefulSet")
        headless = rendered.get("Service", sts["spec"]["serviceName"])
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["publishNotReadyAddresses"] is True
        assert headless["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    # The runners' Service (one pod) stays a normal one.
    assert render().get("Service", FULLNAME)["spec"].get("clusterIP") != "None"


@pytest.mark.parametrize(
    ("values", "want"),
    [
        # A snapshot's or a full sync's fork: maxmemory drops to forkMaxmemoryPercent (45%).
        ({"persistence": {"enabled": True}}, str(int(GIB * 0.45))),
        ({"ha": {"enabled": True}}, str(int(GIB * 0.45))),
        ({"persistence": {"enabled": True}, "redis": {"maxmemoryPercent": 30}},
         str(int(GIB * 0.3))),
        ({"persistence": {"enabled": True}, "resources": {"limits": {"memory": "4Gi"}}},
         str(int(4 * GIB * 0.45))),
        ({"persistence": {"enabled": True}, "redis": {"maxmemory": "400mb"}}, "400mb"),
        # No fork: the whole 70%.
        ({}, str(int(GIB * 0.7))),
    ],
)
def test_maxmemory_leaves_room_for_the_fork(values: dict[str, Any], want: str) -> None:
    assert redis_conf(render(values).config("redis.conf"))["maxmemory"] == want


@pytest.mark.parametrize("values", [
    {"persistence": {"enabled": True}, "redis": {"maxmemory": "800mb"}},
    {"ha": {"enabled": True}, "redis": {"maxmemory": "1gb"}},
    {"persistence": {"enabled": True}, "redis": {"maxmemory": "600000000"},
     "resources": {"limits": {"memory": "1G"}}},
])
def test_a_maxmemory_without_room_for_the_fork_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="no room for the fork"):
        render(values)


def test_ha_layout() -> None:
    rendered = render(SCENARIOS["ha"])
    (sts,) = rendered.of_kind("StatefulSet")
    assert sts["spec"]["replicas"] == 3
    spec = sts["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"redis", "sentinel"}
    image = "redis:" + rendered_values()["image"]["tag"]
    assert {c["image"] for c in containers.values()} == {image}  # the same official image
    assert containers["redis"]["lifecycle"]["preStop"]["exec"]["command"][-1] == "prestop"
    assert containers["sentinel"]["ports"] == [
        {"name": "sentinel", "containerPort": 26379, "protocol": "TCP"}]
    # Anti-affinity across nodes by default; soft, none, or the user's own on request.
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    soft = render({"ha": {"enabled": True, "antiAffinity": "soft"}}).of_kind("StatefulSet")[0]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in (
        soft["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"])
    none = render({"ha": {"enabled": True, "antiAffinity": "none"}}).of_kind("StatefulSet")[0]
    assert "affinity" not in none["spec"]["template"]["spec"]
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["cache"]}]}]}}}
    mine = render({"ha": {"enabled": True}, "affinity": own}).of_kind("StatefulSet")[0]
    assert mine["spec"]["template"]["spec"]["affinity"] == own
    assert "affinity" not in render().of_kind("StatefulSet")[0]["spec"]["template"]["spec"]

    # A disruption budget that keeps a quorum of sentinels (2 of 3; 3 of 5).
    (pdb,) = rendered.of_kind("PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 2, "selector": sts["spec"]["selector"]}
    (pdb5,) = render(SCENARIOS["ha-full"]).of_kind("PodDisruptionBudget")
    assert pdb5["spec"]["minAvailable"] == 3
    five = render(SCENARIOS["ha-full"]).config("ha.sh")
    assert re.search(r"sentinel monitor \$master \S+ \S+ 3\"", five)

    # Runners: the Sentinel URL naming every pod's sentinel, the same user everywhere.
    auth = rendered.secret(f"{FULLNAME}-auth")
    assert set(auth) == {f"{u}-password" for u in
                         ("writer", "reader", "monitor", "replication", "sentinel")}
    for user in ("writer", "reader"):
        url = rendered.secret(f"{FULLNAME}-{user}")["REDIS_URL"]
        parts = urlsplit(url)
        assert parts.scheme == "redis+sentinel"
        assert parts.username == f"gocache-{user}" and parts.password == auth[f"{user}-password"]
        hosts = parts.netloc.rpartition("@")[2].split(",")
        assert hosts == [f"{FULLNAME}-{i}.{FULLNAME}-headless.{NAMESPACE}.svc.cluster.local:26379"
                         for i in range(3)]
        assert parts.path == "/gocache/0" and parts.query == f"sentinel_username=gocache-{user}"
    # TLS: rediss+sentinel, and replication over TLS.
    full = render(SCENARIOS["ha-full"])
    assert full.secret(f"{FULLNAME}-writer")["REDIS_URL"].startswith("rediss+sentinel://")
    assert redis_conf(full.config("redis.conf"))["tls-replication"] == "yes"
    assert redis_conf(full.config("sentinel.conf"))["tls-port"] == "26379"

    # The Service runners' people and tools use offers the sentinels, not a Redis that
    # might be a replica; the NetworkPolicy lets the pods reach each other.
    ports = [p["name"] for p in rendered.get("Service", FULLNAME)["spec"]["ports"]]
    assert ports == ["sentinel"]
    (policy,) = rendered.of_kind("NetworkPolicy")
    clients, peers = policy["spec"]["ingress"]
    assert [p["port"] for p in clients["ports"]] == ["redis", "sentinel"]
    assert peers["from"] == [{"podSelector": sts["spec"]["selector"]}]


def test_ha_passwords_are_kept_across_upgrades_like_the_others() -> None:
    # generatedPasswords looks the release's Secret up and covers every user of the layout.
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert re.search(r'range \$user := include "redis-gocache.users" \. \| fromJsonArray',
                     helpers)
    rendered = render(SCENARIOS["ha-existing-secrets"])
    assert not [s for s in rendered.of_kind("Secret")
                if s["metadata"]["name"] == f"{FULLNAME}-auth"]
    (sts,) = rendered.of_kind("StatefulSet")
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
           for c in sts["spec"]["template"]["spec"]["containers"] for e in c["env"]
           if "secretKeyRef" in e.get("valueFrom", {})}
    assert env["REDIS_SENTINEL_PASSWORD"] == "my-sentinel"
    assert env["REDIS_REPLICATION_PASSWORD"] == "my-replication"


# --- the fleet exporter and the dashboard ----------------------------------------------------


def test_exporter_objects() -> None:
    rendered = render(SCENARIOS["exporter-dashboard"])
    deployment = rendered.get("Deployment", f"{FULLNAME}-exporter")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example.com/runner-go:1"
    assert container["command"][:3] == ["redis-gocache", "exporter", "--listen"]
    env = {e["name"]: e for e in container["env"]}
    # The reader's URL: the exporter can read the counters and write nothing.
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULLNAME}-reader", "key": "REDIS_URL"}
    # Admitted by the Redis NetworkPolicy like a runner.
    assert pod["metadata"]["labels"]["redis-gocache/client"] == "true"
    service = rendered.get("Service", f"{FULLNAME}-exporter")
    assert service["spec"]["ports"][0]["name"] == "metrics"
    monitors = {m["metadata"]["name"] for m in rendered.of_kind("ServiceMonitor")}
    assert monitors == {f"{FULLNAME}-exporter"}
    policy = rendered.get("NetworkPolicy", f"{FULLNAME}-exporter")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "monitoring"]
    closed = render({**SCENARIOS["exporter-dashboard"],
                     "networkPolicy": {"metricsNamespaces": []}})
    assert closed.get("NetworkPolicy", f"{FULLNAME}-exporter")["spec"]["ingress"] == []
    # With TLS, the exporter mounts the CA from the runner ConfigMap.
    tls = render({**SCENARIOS["exporter-dashboard"], **SCENARIOS["tls"]})
    (container,) = tls.get("Deployment", f"{FULLNAME}-exporter")["spec"]["template"]["spec"][
        "containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["ca"]
    assert env["REDIS_GOCACHE_TLS_CA"] == f"{mount}/ca.crt"


def test_dashboard_config_map() -> None:
    rendered = render(SCENARIOS["exporter-dashboard"])
    cm = rendered.get("ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["grafana_folder"] == "CI"
    assert render().of_kind("ConfigMap") and not [
        c for c in render().of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]


def test_every_recipe_mounts_the_ca_where_the_runner_config_map_points() -> None:
    """TLS: the runner ConfigMap's ca.crt reaches the runner in every recipe of
    docs/kubernetes.md, at the directory of REDIS_GOCACHE_TLS_CA."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    rendered = render(SCENARIOS["tls"])
    runner = rendered.get("ConfigMap", f"{FULLNAME}-runner")["data"]
    want_dir, _, want_file = runner["REDIS_GOCACHE_TLS_CA"].rpartition("/")
    docs = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    pod_specs = [d["spec"] for d in docs if isinstance(d, dict) and d.get("kind") == "Pod"]
    pod_specs += [d["template"]["spec"] for d in docs
                  if isinstance(d, dict) and "runnerScaleSetName" in d]
    toml = re.findall(r"```toml\n(.*?)```", text, re.S)
    pod_specs += [yaml.safe_load(re.search(r"patch = '''\n(.*?)'''", t, re.S).group(1))
                  for t in toml if "patch = '''" in t]
    assert len(pod_specs) == 3  # a plain Pod, ARC, GitLab's pod-spec patch
    for spec in pod_specs:
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        mounts = [m for m in container["volumeMounts"]
                  if volumes[m["name"]].get("configMap", {}).get("name") == f"{FULLNAME}-runner"]
        assert len(mounts) == 1 and mounts[0]["mountPath"] == want_dir, spec
        config_map = volumes[mounts[0]["name"]]["configMap"]
        assert config_map["items"] == [{"key": "ca.crt", "path": want_file}]
        assert config_map["optional"] is True  # the same spec works with TLS off
    # GitLab without the feature flag: the ConfigMap mounted there, the variable set.
    assert any('mount_path = "/etc/redis-gocache-tls"' in t and '"ca.crt" = "ca.crt"' in t
               for t in toml)
    assert f"REDIS_GOCACHE_TLS_CA={want_dir}/{want_file}" in text


def test_values_snippets_of_the_docs_pass_the_schema() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        values = yaml.safe_load(block)
        if isinstance(values, dict) and set(values) & {"ha", "exporter", "tls"}:
            if "tls" in values:
                values["tls"]["ca"] = ca_pem()  # the doc shows "..." for the PEM
            render(values)
