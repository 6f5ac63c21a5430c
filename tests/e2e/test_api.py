"""The cluster-scaler HTTP API on the sandbox: real TokenReviews and
SubjectAccessReviews, a real scale and a real head restart of our `Cluster`.

deploy/api is applied (its ServiceAccount, least-privilege RBAC, tiers); the
API runs as a host process with that ServiceAccount's token, so every review
and every change goes through the RBAC deploy/api grants. Callers are
ServiceAccount tokens from `kubectl create token`:

| caller | how | expected |
|---|---|---|
| owner | SA whose uid is the Cluster's owner label | 200 |
| stranger | another SA | 403 |
| group admin | SA in a namespace whose group is an --admin-group | 200 |
| SAR admin | SA bound to a ClusterRole with update on clusters/scale | 200 |
| wrong audience | owner's token for another audience | 401 |
| expired | owner's token re-signed with the sandbox's ServiceAccount key, `exp` an hour ago | 401 |
| malformed, none | | 401 |
| API keys | a valid key (owner), an unknown one | 200, 401 |

Every refused request is checked to have changed nothing: the Cluster's
resourceVersion and its worker pods are the same after it. deploy/api's own
pod runs too (the sandbox's pod runner), as `dask-operator api`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from helpers import ROOT, Kube, host_api, wait_for
from secrets_seen import remember

from dask_operator.core.pods import pod_ready

pytestmark = pytest.mark.e2e

FIELD = "domino-field"
OWNER_LABEL = "dominodatalab.com/starting-user-id"
CLUSTER = "scaled"
API_KEY = remember("e2e-api-key-" + "7" * 32, "test_api's API key")
SIMULATE = {"sandbox.dask.charmtx.com/simulate": "true"}
TEMPLATE_HASH = "dask.charmtx.com/worker-template-hash"


def cluster_manifest(owner: str) -> dict:
    worker = {"containers": [{"name": "worker", "image": "ghcr.io/dask/dask:latest", "command": ["dask", "worker"]}]}
    return {
        "apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster",
        "metadata": {"name": CLUSTER, "labels": {OWNER_LABEL: owner}},
        "spec": {"scheduler": {"template": {"spec": {"containers": [
            {"name": "scheduler", "image": "ghcr.io/dask/dask:latest"}]}}},
                 "workers": {"replicas": 1, "template": {"metadata": {"labels": dict(SIMULATE)}, "spec": worker}}},
    }


@dataclass
class Scaler:
    kube: Kube
    url: str
    namespace: str
    tokens: dict[str, str]
    log: Path

    def call(self, method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
        sep = "&" if "?" in path else "?"
        return httpx.request(method, f"{self.url}{path}{sep}namespace={self.namespace}", headers=headers or {},
                             timeout=60, **kwargs)

    def bearer(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def workers(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.kube.pods(
            self.namespace, f"dask.charmtx.com/cluster={CLUSTER},dask.charmtx.com/role=worker")
            if not p["metadata"].get("deletionTimestamp"))

    def describe(self) -> str:
        """The worker pods (name, template hash) and the Cluster's conditions, for a failure message."""
        pods = self.kube.pods(self.namespace, f"dask.charmtx.com/cluster={CLUSTER},dask.charmtx.com/role=worker")
        obj = self.kube.get("clusters.dask.charmtx.com", CLUSTER, "-n", self.namespace)
        return (f"worker pods {[(p['metadata']['name'], p['metadata']['labels'].get(TEMPLATE_HASH)) for p in pods]}, "
                f"conditions {[c.get('message') for c in (obj.get('status') or {}).get('conditions', [])]}")

    def snapshot(self) -> tuple:
        """What a request could change: generation, spec, labels and the worker pods (the
        resourceVersion also moves with the operator's own status writes)."""
        obj = self.kube.get("clusters.dask.charmtx.com", CLUSTER, "-n", self.namespace)
        meta = obj["metadata"]
        return meta["generation"], obj["spec"], meta.get("labels"), self.workers()


def _token(kube: Kube, namespace: str, account: str, *extra: str) -> str:
    return kube.kubectl("create", "token", account, "-n", namespace, "--duration=1h", *extra).stdout.strip()


@pytest.fixture(scope="module")
def scaler(kube: Kube, deployed: Path, tmp_path_factory) -> Scaler:
    suffix = str(int(time.time() * 1000) % 100000)
    ns, adm, role = f"api-e2e-{suffix}", f"api-e2e-adm-{suffix}", f"api-e2e-scale-admin-{suffix}"
    state = tmp_path_factory.mktemp("api")
    kube.kubectl("apply", "-k", str(ROOT / "deploy" / "api"))
    try:
        for name in (ns, adm):
            kube.kubectl("create", "namespace", name)
        for account in ("owner", "stranger", "sar-admin"):
            kube.kubectl("create", "serviceaccount", account, "-n", ns)
        kube.kubectl("create", "serviceaccount", "boss", "-n", adm)
        kube.kubectl("create", "clusterrole", role, "--verb=update", "--resource=clusters.dask.charmtx.com/scale")
        kube.kubectl("create", "clusterrolebinding", role, f"--clusterrole={role}",
                     f"--serviceaccount={ns}:sar-admin")
        owner_uid = kube.get("serviceaccount", "owner", "-n", ns)["metadata"]["uid"]
        entries = [{"sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "user": owner_uid, "groups": []}]
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ddl-cluster-scaler-keys"},
                    "data": {"keys.yaml": base64.b64encode(yaml.safe_dump(entries).encode()).decode()}}, FIELD)
        kube.apply(cluster_manifest(owner_uid), ns)
        tokens = {who: _token(kube, ns, who) for who in ("owner", "stranger", "sar-admin")}
        tokens["boss"] = _token(kube, adm, "boss")
        tokens["wrong-audience"] = _token(kube, ns, "owner", "--audience=not-the-scaler")
        with host_api(kube, state, "--namespace", "domino-compute", "--admin-group", f"system:serviceaccounts:{adm}",
                      "--tiers-configmap", f"{FIELD}/ddl-cluster-scaler-tiers",
                      "--keys-secret", f"{FIELD}/ddl-cluster-scaler-keys") as (url, log):
            s = Scaler(kube, url, ns, tokens, log)
            wait_for(lambda: s.workers() and pod_ready(kube.pods(ns, "dask.charmtx.com/role=worker")[0]), 120,
                     "the Cluster's first worker")
            yield s
    finally:
        kube.kubectl("delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found")
        for name in (ns, adm):
            kube.kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", "--ignore-not-found")
        kube.kubectl("delete", "-k", str(ROOT / "deploy" / "api"), "--wait=true", "--timeout=180s",
                     "--ignore-not-found")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def resigned(token: str, key: Path, **claims: int) -> str:
    """`token` (a `kubectl create token` JWT) with `claims` replaced, signed RS256 with the
    sandbox's ServiceAccount signing key. Header (kid), issuer, audience and the
    `kubernetes.io` binding stay, so the API server judges only what changed."""
    header, payload, _ = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) | claims
    signed = f"{header}.{_b64url(json.dumps(body, separators=(',', ':')).encode())}"
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    return remember(f"{signed}.{_b64url(private.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256()))}",
                    "test_api's re-signed token")


@pytest.fixture(scope="module")
def minted(scaler: Scaler, sandbox) -> dict[str, str]:
    """The owner's token re-signed (TokenRequest refuses durations under 10 minutes):
    `expired` an hour ago, and `resigned`, the same re-signing with a valid `exp`, the
    control that shows `expired` is refused for its `exp` alone."""
    key = Path(sandbox.state_dir) / "pki" / "sa.key"
    now = int(time.time())
    tokens = {"expired": resigned(scaler.tokens["owner"], key, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
              "resigned": resigned(scaler.tokens["owner"], key, iat=now - 60, nbf=now - 60, exp=now + 3600)}
    scaler.tokens.update(tokens)  # and so looked for in the API's log like every other token
    return tokens


GET = f"/cluster/daskclusters/{CLUSTER}"
REFUSED_TOKEN = {"error": "unauthenticated",
                 "message": "the token was not accepted (invalid, expired or for another audience)"}
SCALE = f"/cluster/scale/daskclusters/{CLUSTER}"


@pytest.mark.parametrize("who, headers, get_status, scale_status", [
    pytest.param(None, {}, 401, 401, id="no-credentials"),
    pytest.param(None, {"Authorization": "Bearer not.a.jwt"}, 401, 401, id="malformed-token"),
    pytest.param("wrong-audience", None, 401, 401, id="wrong-audience-token"),
    pytest.param("expired", None, 401, 401, id="expired-token"),
    pytest.param("resigned", None, 200, None, id="resigned-token-control"),
    pytest.param(None, {"X-Domino-Api-Key": "unknown-key-0000000000"}, 401, 401, id="unknown-api-key"),
    pytest.param("stranger", None, 403, 403, id="non-owner"),
    pytest.param("owner", None, 200, None, id="owner"),
    pytest.param("boss", None, 200, None, id="admin-by-group"),
    pytest.param("sar-admin", None, 200, None, id="admin-by-subjectaccessreview"),
    pytest.param(None, {"X-Domino-Api-Key": API_KEY}, 200, None, id="owner-api-key"),
])
def test_auth_matrix_with_real_reviews(scaler: Scaler, request, who, headers, get_status, scale_status) -> None:
    if who in ("expired", "resigned"):
        request.getfixturevalue("minted")
    headers = scaler.bearer(who) if who else headers
    before = scaler.snapshot()
    r = scaler.call("GET", GET, headers)
    assert r.status_code == get_status, r.text
    assert r.headers["Cache-Control"] == "no-store"
    if who in ("expired", "wrong-audience"):
        assert r.json() == REFUSED_TOKEN
    if get_status == 200:
        assert r.json()["metadata"]["name"] == CLUSTER and r.json()["spec"]["worker"]["replicas"] == 1
    if scale_status is not None:
        r = scaler.call("POST", SCALE, headers, json={"replicas": 3})
        assert r.status_code == scale_status, r.text
        assert set(r.json()) <= {"error", "message", "details"}
        assert scaler.snapshot() == before, "a refused request changed the cluster"
    for token in scaler.tokens.values():
        assert token not in scaler.log.read_text(errors="replace"), "a token reached the API's log"


def test_list_shows_owners_their_own_and_admins_all(scaler: Scaler) -> None:
    for who, count in (("owner", 1), ("stranger", 0), ("boss", 1), ("sar-admin", 1)):
        r = scaler.call("GET", "/ddl_cluster_scaler_api/list/daskclusters", scaler.bearer(who))
        assert r.status_code == 200 and r.json()["count"] == count, (who, r.text)
    r = scaler.call("GET", "/ddl_cluster_scaler_api/list/rayclusters", scaler.bearer("owner"))
    assert r.status_code in (200, 404, 501), r.text  # 501 until the KubeRay backend is registered


def test_invalid_tier_and_bad_replicas_change_nothing(scaler: Scaler) -> None:
    before = scaler.snapshot()
    r = scaler.call("POST", SCALE, scaler.bearer("owner"), json={"replicas": 2, "worker_hw_tier_name": "Huge"})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_hw_tier")
    r = scaler.call("POST", SCALE, scaler.bearer("owner"), json={"replicas": -2})
    assert r.json() == {"error": "bad_request", "message": "replicas must be a non-negative integer"}
    assert scaler.snapshot() == before


def test_owner_scales_the_cluster_with_a_tier_and_workers_follow(scaler: Scaler) -> None:
    r = scaler.call("POST", SCALE, scaler.bearer("owner"), json={"replicas": 2, "worker_hw_tier_name": "Small"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["kind"], body["name"], body["replicas"], body["capped"]) == ("daskclusters", CLUSTER, 2, False)
    template = body["object"]["spec"]["workers"]["template"]["spec"]["containers"][0]
    assert template["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    try:
        wait_for(lambda: len(scaler.workers()) == 2, 120, "a second worker pod")
    except AssertionError as e:
        raise AssertionError(f"{e}: {scaler.describe()}") from None

    def complete() -> bool:
        view = scaler.call("GET", GET, scaler.bearer("owner")).json()
        return view["spec"]["worker"]["replicas"] == len(view["status"]["nodes"]) - 1 == 2

    wait_for(complete, 120, "the compatibility view to show 2 workers (seed-001's completion check)", interval=1)
    pods = scaler.kube.pods(scaler.namespace, f"dask.charmtx.com/cluster={CLUSTER},dask.charmtx.com/role=worker")
    newest = max(pods, key=lambda p: p["metadata"]["creationTimestamp"])
    assert newest["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"


def test_restart_head_until_restarted_and_ready(scaler: Scaler) -> None:
    owner = scaler.bearer("owner")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    r = scaler.call("PATCH", f"/ddl_cluster_scaler/restart_head/daskclusters/{CLUSTER}?started_at={started}", owner)
    assert r.status_code == 200, r.text
    kick = r.json()
    assert kick["ok"] is True and kick["pod"]
    since = kick["started_at"]

    def status() -> dict | None:
        body = scaler.call("GET", f"/ddl_cluster_scaler/restart_head_status/daskclusters/{CLUSTER}?started_at={since}",
                           owner).json()
        return body if body["status"] == "restarted_and_ready" else None

    body = wait_for(status, 180, "the head restarted and Ready", interval=1)
    assert body["pod"] != kick["pod"] and body["restarted"] and body["ready"]


def test_deployed_api_pod_is_ready_and_serves_with_its_own_service_account(scaler: Scaler, sandbox) -> None:
    """deploy/api's pod, run by the sandbox's pod runner: Ready on /healthz, and a
    real request through its in-cluster ServiceAccount (TokenReview, RBAC). The
    sandbox's pod IPs are reachable from the host; a kind cluster's are not."""
    kube = scaler.kube

    def ready_pod() -> dict | None:
        pods = [p for p in kube.pods(FIELD, "app.kubernetes.io/name=ddl-cluster-scaler") if pod_ready(p)]
        return pods[0] if pods else None

    pod = wait_for(ready_pod, 120, "the deployed API pod Ready")
    r = httpx.get(f"http://{pod['status']['podIP']}:8080/healthz", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    base = f"http://{pod['status']['podIP']}:8080"
    r = httpx.get(f"{base}{GET}?namespace={scaler.namespace}", headers=scaler.bearer("owner"), timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.get(f"{base}{GET}?namespace={scaler.namespace}", headers={"X-Domino-Api-Key": API_KEY}, timeout=30)
    assert r.status_code == 200, r.text  # the keys Secret, read through the Role by name
    before = scaler.snapshot()
    r = httpx.post(f"{base}{SCALE}?namespace={scaler.namespace}", headers=scaler.bearer("owner"), timeout=30,
                   json={"replicas": 1, "worker_hw_tier_name": "Huge"})
    assert r.json()["error"] == "invalid_hw_tier", r.text  # the tiers ConfigMap, read through the Role
    assert scaler.snapshot() == before
