"""GPU nodes on Verda, end to end: the real cluster-autoscaler adds and removes them through our provider.

On the sandbox: the stand-in Verda API (tests/verda_standin.py), driven by
the real `verda` SDK inside `dask-operator nodes serve` (a host process), and
cluster-autoscaler 1.35.2 built from source with its externalgrpc provider
(`dask-operator sandbox build --with cluster-autoscaler`), run with the argv
`sandbox --with cluster-autoscaler` uses (thirdparty.operator_argv: loopback
ports, leader election off, timings in seconds) but authenticated as
deploy/verda's ServiceAccount, so that deploy/verda's RBAC is all it has.
Each instance the stand-in creates joins as a kwok Node (tests/verda_nodes.py);
pods bound to it are simulated by kwok.

Three node groups of one 8-GPU type, each tainted ``nvidia.com/gpu`` and
selected by the node-group label, so each test's pods can only land on its
own group's nodes (the sandbox's own kwok nodes have GPUs too).

Each instance's startup script comes from `dask-operator startup-scripts` (a
host process authenticated as deploy/verda's startup-script-server
ServiceAccount, with deploy/verda's template and flags), which the provider
asks with a token of its own ServiceAccount for audience startup-scripts.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from helpers import Kube, service_account_kubeconfig, wait_for
from secrets_seen import remember
from verda_nodes import NodeBridge
from verda_scripts import NAMESPACE, RBAC_KINDS, deploy_verda, script_server_argv, token
from verda_standin import VerdaStandIn

from dask_operator import constants as c
from dask_operator.core.startup_scripts import SCRIPT_NAME_PREFIX
from dask_operator.sandbox import procs, thirdparty
from dask_operator.sandbox.cluster import free_ports

pytestmark = pytest.mark.e2e

INSTANCE_TYPE = "8H100.80S.176V"  # 176 CPUs, 1480 GB, 8 H100 SXM5
GROUPS = {"spot": "FIN-01", "fallback": "FIN-03", "idle": "ICE-01"}  # name -> location
TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
CONFIG = {"node_configs": {
    name: {"image_type": "ubuntu-24.04-cuda-12.8-open-docker", "instance_option": "prefer_spot",
           "disk_size_gb": 100, "taints": [TAINT], "labels": {"nodepool": name}}
    for name in GROUPS}}
SCALE_UP_SECONDS = 90
SCALE_DOWN_SECONDS = 90
JOIN_TOKEN = remember(f"join-{secrets.token_hex(12)}", "deploy/verda's join token")  # the Secret's value: in each script, in no log


@dataclass
class Verda:
    kube: Kube
    api: VerdaStandIn
    bridge: NodeBridge
    logs: Path
    scripts_url: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def instance_of(self, node: dict) -> dict:
        """The stand-in's record of the instance behind ``node`` (by provider ID)."""
        iid = node["spec"]["providerID"].removeprefix("datacrunch://")
        with self.api.lock:
            return dict(self.api.instances[iid])

    def created(self, group: str) -> list[dict]:
        """The create requests the stand-in accepted for ``group``."""
        with self.api.lock:
            return [b for b in self.api.created if b.get("description") == group]


@pytest.fixture(scope="module")
def verda(kube: Kube, sandbox, tmp_path_factory) -> Verda:
    logs = tmp_path_factory.mktemp("verda")
    docs = deploy_verda()
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    kube.apply(rbac)
    kubeconfig = service_account_kubeconfig(kube, logs / "autoscaler.kubeconfig", NAMESPACE, "cluster-autoscaler")
    api = VerdaStandIn(capacity={(INSTANCE_TYPE, GROUPS["fallback"], True): 0})  # no spot H100s in FIN-03
    url = api.start()
    for name, data in (("startup-script-secrets", {"join-token": JOIN_TOKEN}),
                       ("verda-credentials", {"client-id": api.client_id, "client-secret": api.client_secret})):
        kube.kubectl("create", "secret", "generic", name, "-n", NAMESPACE,
                     *(f"--from-literal={k}={v}" for k, v in data.items()))
    bridge = NodeBridge(api, kube.kubeconfig, CONFIG["node_configs"]).start()
    health, provider_port, scripts_port = free_ports(3)
    (logs / "provider.token").write_text(token(kube, "verda-provider"))
    started: list[subprocess.Popen] = []
    verda_env = {**os.environ, "DATACRUNCH_CLIENT_ID": api.client_id, "DATACRUNCH_CLIENT_SECRET": api.client_secret}
    try:
        started.append(procs.spawn("scripts", script_server_argv(docs, logs, scripts_port, url), logs, env={
            **verda_env, "POD_NAMESPACE": NAMESPACE, "KUBECONFIG": str(service_account_kubeconfig(
                kube, logs / "scripts.kubeconfig", NAMESPACE, "startup-script-server"))}))
        started.append(procs.spawn("provider", [
            sys.executable, "-m", "dask_operator", "nodes", "serve", *(f"--nodes=0:2:{INSTANCE_TYPE}:{loc}:{name}"
                                                                      for name, loc in GROUPS.items()),
            f"--address=127.0.0.1:{provider_port}", f"--api-url={url}"], logs, env={
            **verda_env, "DATACRUNCH_CLUSTER_CONFIG_JSON": json.dumps(CONFIG),
            "DATACRUNCH_STARTUP_SCRIPT_FETCH_URL": f"http://127.0.0.1:{scripts_port}/script",
            "DATACRUNCH_STARTUP_SCRIPT_TOKEN_FILE": str(logs / "provider.token")}))
        binary = thirdparty.ensure_operator("cluster-autoscaler")
        argv, env = thirdparty.operator_argv("cluster-autoscaler", binary, kubeconfig, [health, provider_port])
        started.append(procs.spawn("autoscaler", [*argv, f"--namespace={NAMESPACE}"], logs, {**os.environ, **env}))
        world = Verda(kube, api, bridge, logs, f"http://127.0.0.1:{scripts_port}/script")

        def serving() -> bool:
            for p, name in zip(started, ("scripts", "provider", "autoscaler")):
                assert p.poll() is None, f"{name} exited:\n{world.log(name)[-3000:]}"
            return (httpx.get(f"http://127.0.0.1:{health}/health-check", timeout=2).status_code == 200
                    and httpx.get(f"http://127.0.0.1:{scripts_port}/healthz", timeout=2).status_code == 200)

        wait_for(serving, 60, "the autoscaler's /health-check")
        # Its status ConfigMap lists every group: it asked our provider for them (and may write there).
        wait_for(lambda: all(f"name: {g}" in kube.get("configmap", "cluster-autoscaler-status", "-n", NAMESPACE)
                             ["data"]["status"] for g in GROUPS), 60, "the autoscaler's status naming our groups")
        yield world
        bridge.check()
    finally:
        procs.stop(started, timeout=15)
        bridge.stop()
        api.stop()
        kube.kubectl("delete", "secret", "--ignore-not-found", "-n", NAMESPACE, "startup-script-secrets",
                     "verda-credentials")
        kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(rbac))
        if "world" in locals():
            print("\nverda autoscaler timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in world.timings.items()))


def gpu_pods(names: list[str], group: str) -> list[dict]:
    """Pods asking for one GPU each, on ``group``'s nodes only (kwok simulates them)."""
    return [{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "gpu-work"}},
        "spec": {
            "nodeSelector": {c.LABEL_NODE_GROUP: group},
            "tolerations": [{"key": TAINT["key"], "operator": "Equal", "value": TAINT["value"],
                             "effect": TAINT["effect"]}],
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "train", "image": "nvidia/cuda:12.8.0-base-ubuntu24.04",
                            "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                                          "limits": {"nvidia.com/gpu": "1"}}}],
        },
    } for name in names]


def node_ready(node: dict) -> bool:
    return any(x["type"] == "Ready" and x["status"] == "True" for x in node.get("status", {}).get("conditions", []))


def scale_up(verda: Verda, ns: str, group: str, pods: int) -> tuple[dict, list[dict]]:
    """Create ``pods`` GPU pods; wait for a Ready node of ``group`` and every pod Running on it."""
    kube = verda.kube
    start = time.monotonic()
    kube.apply(gpu_pods([f"{group}-{i}" for i in range(pods)], group), ns)

    def node() -> dict | None:
        verda.bridge.check()
        items = [n for n in kube.get("nodes", "-l", f"{c.LABEL_NODE_GROUP}={group}")["items"] if node_ready(n)]
        return items[0] if items else None

    ready = wait_for(node, SCALE_UP_SECONDS, f"a Ready node of group {group}", interval=0.5)
    verda.timings[f"{group}: pending pods -> Ready node"] = time.monotonic() - start

    def running() -> list[dict] | None:
        items = kube.pods(ns, "app=gpu-work")
        ok = len(items) == pods and all(p["status"].get("phase") == "Running" for p in items)
        return items if ok else None

    placed = wait_for(running, 60, f"the {group} pods Running", interval=0.5)
    verda.timings[f"{group}: pending pods -> pods Running"] = time.monotonic() - start
    return kube.get("node", ready["metadata"]["name"]), placed


def test_pending_gpu_pods_make_the_autoscaler_add_a_node_through_the_provider(verda: Verda, namespace: str) -> None:
    node, pods = scale_up(verda, namespace, "spot", pods=2)
    name = node["metadata"]["name"]
    assert {p["spec"]["nodeName"] for p in pods} == {name}  # both fit one 8-GPU node: one was asked for
    (created,) = verda.created("spot")
    assert created["is_spot"] is True and created["instance_type"] == INSTANCE_TYPE
    assert created["location_code"] == "FIN-01" and created["hostname"] == name
    instance = verda.instance_of(node)
    assert instance["hostname"] == name and instance["status"] == "running"
    labels = node["metadata"]["labels"]
    assert labels[c.LABEL_NODE_GROUP] == "spot" and labels[c.GPU_LABEL] == "H100_SXM5"
    assert labels["nodepool"] == "spot"
    assert TAINT in node["spec"]["taints"]
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    # The autoscaler decided it: each pod's TriggeredScaleUp event names our group.
    events = verda.kube.get("events", "-n", namespace, "--field-selector", "reason=TriggeredScaleUp")["items"]
    assert {e["involvedObject"]["name"] for e in events} == {p["metadata"]["name"] for p in pods}
    assert all("spot" in e["message"] and e["source"]["component"] == "cluster-autoscaler" for e in events)


def test_prefer_spot_without_spot_capacity_gets_an_on_demand_node(verda: Verda, namespace: str) -> None:
    node, _ = scale_up(verda, namespace, "fallback", pods=1)
    (created,) = verda.created("fallback")  # spot was never tried: Verda said none was available
    assert created["is_spot"] is False and created["location_code"] == "FIN-03"
    instance = verda.instance_of(node)
    assert instance["is_spot"] is False and instance["contract"] == "PAY_AS_YOU_GO"
    with verda.api.lock:
        asked = [q for m, p, q in verda.api.requests
                 if m == "GET" and p.endswith(f"/instance-availability/{INSTANCE_TYPE}")]
    assert {"isSpot": "true", "location_code": "FIN-03"} in [
        {k: q.get(k) for k in ("isSpot", "location_code")} for q in asked]


def test_idle_node_is_removed_and_its_instance_deleted(verda: Verda, namespace: str) -> None:
    node, _ = scale_up(verda, namespace, "idle", pods=1)
    name, instance = node["metadata"]["name"], verda.instance_of(node)
    verda.kube.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=false")
    start = time.monotonic()

    def gone() -> bool:
        verda.bridge.check()
        with verda.api.lock:
            deleted = instance["id"] in {i["id"] for i in verda.api.deleted}
        return deleted and not verda.kube.kubectl("get", "node", name, "--ignore-not-found", "-o", "name").stdout
    wait_for(gone, SCALE_DOWN_SECONDS, f"node {name} removed and its instance deleted", interval=0.5)
    verda.timings["idle: pods deleted -> node and instance gone"] = time.monotonic() - start
    with verda.api.lock:
        assert instance["os_volume_id"] in verda.api.deleted_volumes  # with its OS volume, permanently
    assert f"deleted instances {instance['id']}" in verda.log("provider")
    wait_for(lambda: "ScaleDown" in {e["reason"] for e in verda.kube.get(  # the autoscaler's event on the node
        "events", "-A", "--field-selector", f"involvedObject.name={name}")["items"]}, 20, f"ScaleDown of {name}")


def test_each_instance_got_its_own_script_with_the_secret_and_it_was_deleted_after_use(verda: Verda) -> None:
    """After the scale-ups: the startup-script server rendered deploy/verda's template for each instance,
    with the join token read from its Secret, and deleted the script once the instance was running."""
    with verda.api.lock:
        created = [dict(b) for b in verda.api.created]
        uploaded = {u["id"]: u for u in verda.api.uploaded}
    assert len(created) >= 3
    ids = [b["startup_script_id"] for b in created]
    assert len(set(ids)) == len(ids) and set(ids) <= set(uploaded), "one uploaded script per instance"
    for body in created:
        script = uploaded[body["startup_script_id"]]
        host, group = body["hostname"], body["description"]
        assert script["name"] == f"{SCRIPT_NAME_PREFIX}{host}"
        text = script["script"]
        assert f"--node-name {host}" in text and f"--token {JOIN_TOKEN} " in text
        assert f"dask.charmtx.com/node-group={group}" in text and "--provider-id=datacrunch://$INSTANCE_ID" in text
        assert f'"client_secret": "{verda.api.client_secret}"' in text  # the self-deletion's, from its Secret
        assert "{{" not in text

    def deleted() -> bool:
        with verda.api.lock:
            return set(ids) <= set(verda.api.deleted_scripts) and not set(ids) & set(verda.api.scripts)
    wait_for(deleted, 30, "every instance's script deleted from Verda", interval=0.5)
    log = verda.log("scripts")
    for body in created:
        assert f"deleted startup script {SCRIPT_NAME_PREFIX}{body['hostname']} " in log
    for name in ("scripts", "provider", "autoscaler"):
        text = verda.log(name)
        assert JOIN_TOKEN not in text and verda.api.client_secret not in text, f"a secret in the {name} log"


def test_script_server_refuses_strangers_and_bad_requests_and_uploads_nothing(verda: Verda) -> None:
    with verda.api.lock:
        before = len(verda.api.uploaded)
    request = {"script_name": f"{SCRIPT_NAME_PREFIX}spot-0000abcd", "hostname": "spot-0000abcd",
               "node_group": "spot", "instance_type": INSTANCE_TYPE, "location": "FIN-01"}

    def post(body: object, bearer: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return httpx.post(verda.scripts_url, json=body, headers=headers, timeout=30)

    provider = token(verda.kube, "verda-provider")
    cases = [
        (post(request, None), 401, "Unauthenticated"),
        # the provider's token for the API server: not for this audience
        (post(request, token(verda.kube, "verda-provider", "https://kubernetes.default.svc")), 401,
         "Unauthenticated"),
        # another ServiceAccount of the namespace, with the right audience: RBAC says no
        (post(request, token(verda.kube, "cluster-autoscaler")), 403, "Forbidden"),
        (post({**request, "hostname": "Not_A_Label"}, provider), 400, "Invalid request"),
        (post({**request, "script_name": "my-script"}, provider), 400, "Invalid request"),
    ]
    for response, status, title in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"] == title and response.json()["details"]
        assert provider not in response.text
    assert "hostname: 'Not_A_Label' is not a DNS label" == cases[3][0].json()["details"]
    assert "may not create startupscripts.verda.dask.charmtx.com in namespace verda-nodes" in cases[2][0].text
    with verda.api.lock:
        assert len(verda.api.uploaded) == before, "a refused request uploads nothing"
    assert provider not in verda.log("scripts")


def test_script_server_does_not_start_without_its_secrets(verda: Verda, tmp_path: Path) -> None:
    """A Secret its flags name but RBAC does not let it read: exit 2 at start, naming the Secret."""
    argv = [sys.executable, "-m", "dask_operator", "startup-scripts", f"--template-file={verda.logs / 'template.sh'}",
            "--var=API_SERVER=x", "--var=CA_CERT_HASH=x", "--var=VERDA_API=x",
            "--secret=JOIN_TOKEN=other-secret/join-token", "--secret=DATACRUNCH_CLIENT_ID=verda-credentials/client-id",
            "--secret=DATACRUNCH_CLIENT_SECRET=verda-credentials/client-secret", "--port=0"]
    env = {**os.environ, "POD_NAMESPACE": NAMESPACE, "DATACRUNCH_CLIENT_ID": "id", "DATACRUNCH_CLIENT_SECRET": "s",
           "KUBECONFIG": str(verda.logs / "scripts.kubeconfig")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: Secret verda-nodes/other-secret:" in done.stderr and "forbidden" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_autoscaler_needed_no_permission_beyond_deploy_verda(verda: Verda) -> None:
    """Runs last: over this module's scale-ups and scale-downs, nothing the autoscaler did was refused."""
    refused = [line for line in verda.log("autoscaler").splitlines() if "forbidden" in line.lower()]
    assert refused == [], "\n".join(refused[:5])
