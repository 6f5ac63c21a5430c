"""The operator against the sandbox: seed 003's commands, real Dask, real RBAC."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from distributed import Client

from helpers import ROOT, OperatorProcess
from helpers import Kube, wait_for

from dask_operator.sandbox.netns import Network

pytestmark = pytest.mark.e2e

CLUSTERS = "clusters.dask.charmtx.com"
SIMULATE = {"sandbox.dask.charmtx.com/simulate": "true"}


def cluster(name: str, replicas: int, *, simulate_workers: bool = False, nthreads: int = 1) -> dict:
    worker = {"containers": [{"name": "worker", "image": "ghcr.io/dask/dask:latest", "command": ["dask", "worker"],
                              "args": ["--name", "$(DASK_WORKER_NAME)", "--nthreads", str(nthreads),
                                       "--dashboard-address", ":8788"]}]}
    template: dict = {"spec": worker}
    if simulate_workers:
        template["metadata"] = {"labels": dict(SIMULATE)}
    return {
        "apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
        "spec": {"scheduler": {"template": {"spec": {"containers": [
            {"name": "scheduler", "image": "ghcr.io/dask/dask:latest"}]}}},
                 "workers": {"replicas": replicas, "template": template}},
    }


def workers(kube: Kube, ns: str, name: str) -> list[dict]:
    return [p for p in kube.pods(ns, f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=worker")
            if not p["metadata"].get("deletionTimestamp")]


def running(pods: list[dict]) -> bool:
    return all(p.get("status", {}).get("phase") == "Running" for p in pods)


def ready_scheduler(kube: Kube, ns: str, name: str) -> dict | None:
    for p in kube.pods(ns, f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=scheduler"):
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])):
            return p
    return None


def status(kube: Kube, ns: str, name: str) -> dict:
    return kube.get(CLUSTERS, name, "-n", ns).get("status", {})


def condition(kube: Kube, ns: str, name: str, kind: str) -> dict:
    return next((c for c in status(kube, ns, name).get("conditions", []) if c["type"] == kind), {})


def scale(kube: Kube, ns: str, name: str, replicas: int) -> None:
    kube.kubectl("scale", f"{CLUSTERS}/{name}", f"--replicas={replicas}", "-n", ns)


def client_for(kube: Kube, ns: str, name: str) -> Client:
    pod = wait_for(lambda: ready_scheduler(kube, ns, name), 60, "a Ready scheduler")
    return Client(f"tcp://{pod['status']['podIP']}:8786", timeout=30)


# ---------------------------------------------------------------------- RBAC
def test_operator_runs_with_deploy_service_account_and_least_privilege(kube: Kube, deployed: Path) -> None:
    op = Kube(deployed)
    who = json.loads(op.kubectl("auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:dask-operator"

    def can(*args: str) -> bool:
        return op.kubectl("auth", "can-i", *args, check=False).stdout.strip() == "yes"

    assert can("create", "pods", "-A") and can("delete", "pods", "-A")
    assert can("patch", "clusters.dask.charmtx.com/status", "-A")
    assert not can("get", "secrets", "-A"), "the operator must not read secrets"
    assert not can("delete", "deployments", "-A")
    assert not can("create", "clusterroles")
    assert not can("*", "*")


# ------------------------------------------------------------------ scale up
def test_seed_commands_scale_up_within_5s(kube: Kube, operator: OperatorProcess) -> None:
    """kubectl apply -k example/ and the seed's kubectl scale, verbatim."""
    env = {**kube.env}
    subprocess.run(["kubectl", "apply", "-k", "example/"], cwd=ROOT, env=env, check=True, capture_output=True)
    # The example HPA would own the replica count; this test measures kubectl scale alone.
    kube.kubectl("delete", "hpa", "example-dask", "-n", "default")
    wait_for(lambda: ready_scheduler(kube, "default", "example-dask"), 60, "the example scheduler")
    wait_for(lambda: len(workers(kube, "default", "example-dask")) == 1, 30, "the example's one worker")

    start = time.monotonic()
    subprocess.run(["kubectl", "scale", "clusters.dask.charmtx.com/example-dask", "--replicas=3"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    pods = wait_for(lambda: (p := workers(kube, "default", "example-dask")) and len(p) == 3 and running(p) and p,
                    5, "3 Running worker pods within 5 s of kubectl scale")
    elapsed = time.monotonic() - start
    print(f"\nkubectl scale 1->3: 3 pods Running after {elapsed:.2f}s")
    assert sorted(p["metadata"]["name"] for p in pods) == [f"example-dask-worker-{i}" for i in range(3)]
    wait_for(lambda: status(kube, "default", "example-dask")["workers"]["count"] == 3, 10, "status.workers.count=3")

    scale_obj = kube.get(CLUSTERS, "example-dask", "-n", "default", "--subresource=scale")
    assert scale_obj["spec"]["replicas"] == 3
    assert scale_obj["status"]["selector"] == "dask.charmtx.com/cluster=example-dask,dask.charmtx.com/role=worker"

    with client_for(kube, "default", "example-dask") as client:
        client.wait_for_workers(3, timeout=60)
        assert {w["name"] for w in client.scheduler_info()["workers"].values()} == {
            p["metadata"]["name"] for p in pods}


# ---------------------------------------------------------------- scale down
def test_scale_down_retires_through_scheduler_and_loses_no_result(
        kube: Kube, operator: OperatorProcess, namespace: str) -> None:
    kube.apply(cluster("keep", 4), namespace)
    with client_for(kube, namespace, "keep") as client:
        client.wait_for_workers(4, timeout=90)
        names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
        futures = client.map(lambda i: bytes(10_000) + i.to_bytes(4, "big"), range(200), pure=False)
        client.gather(futures)  # all 200 results now sit in worker memory
        holders = {a for addrs in client.who_has(futures).values() for a in addrs}
        assert len(holders) == 4, "results are spread over all four workers"
        before = {p["metadata"]["name"] for p in workers(kube, namespace, "keep")}

        scale(kube, namespace, "keep", 1)
        wait_for(lambda: len(kube.pods(namespace, "dask.charmtx.com/cluster=keep,dask.charmtx.com/role=worker")) == 1,
                 90, "scale-down to 1 worker pod")
        after = {p["metadata"]["name"] for p in workers(kube, namespace, "keep")}

        results = client.gather(futures)
        assert [int.from_bytes(r[-4:], "big") for r in results] == list(range(200)), "every result retrievable"

        events = [e for _, e in client.get_events("all")]
        retired = {names[a] for e in events if e.get("action") == "retire-workers" for a in e["retired"]}
        assert before - after == retired, "deleted pods are exactly those the scheduler retired"
        lost = [e for e in events if e.get("action") == "remove-worker"
                and (e.get("lost-computed-tasks") or e.get("lost-scattered-tasks"))]
        assert not lost, f"workers left with data: {lost}"
    assert status(kube, namespace, "keep")["workers"]["count"] == 1


def _scheduler_pids(kube: Kube, sandbox, ns: str, name: str) -> list[int]:
    pod = ready_scheduler(kube, ns, name)
    net = Network(ipaddress.IPv4Network(sandbox.pod_cidr).network_address.packed[2] // 4)
    out = subprocess.run(["ip", "netns", "pids", net.netns_name(pod["metadata"]["uid"])],
                         capture_output=True, text=True, check=True).stdout
    return [int(p) for p in out.split()]


def test_scale_down_blocked_while_scheduler_unreachable(
        kube: Kube, sandbox, operator: OperatorProcess, namespace: str) -> None:
    kube.apply(cluster("blocked", 3), namespace)
    with client_for(kube, namespace, "blocked") as client:
        client.wait_for_workers(3, timeout=90)
    before = {p["metadata"]["name"] for p in workers(kube, namespace, "blocked")}
    pids = _scheduler_pids(kube, sandbox, namespace, "blocked")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # the scheduler stops answering
    try:
        scale(kube, namespace, "blocked", 1)
        cond = wait_for(lambda: (c := condition(kube, namespace, "blocked", "ScaleDownBlocked"))
                        .get("status") == "True" and c, 60, "ScaleDownBlocked=True")
        assert cond["reason"] == "SchedulerUnreachable"
        event = wait_for(lambda: [e for e in kube.get("events", "-n", namespace)["items"]
                                  if e["involvedObject"]["name"] == "blocked" and e["reason"] == "ScaleDownBlocked"],
                         30, "a ScaleDownBlocked Event")
        assert event[0]["type"] == "Warning"
        pods = kube.pods(namespace, "dask.charmtx.com/cluster=blocked,dask.charmtx.com/role=worker")
        assert {p["metadata"]["name"] for p in pods} == before, "no pod deleted while blocked"
        assert not any(p["metadata"].get("deletionTimestamp") for p in pods)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: len(kube.pods(namespace, "dask.charmtx.com/cluster=blocked,dask.charmtx.com/role=worker")) == 1,
             120, "the scale-down to complete once the scheduler is back")
    wait_for(lambda: condition(kube, namespace, "blocked", "ScaleDownBlocked").get("status") == "False",
             30, "ScaleDownBlocked=False")


# --------------------------------------------------------------------- crash
def test_crash_mid_scale_up_ends_with_exactly_desired(
        kube: Kube, operator: OperatorProcess, namespace: str) -> None:
    kube.apply(cluster("crash", 0, simulate_workers=True), namespace)
    wait_for(lambda: status(kube, namespace, "crash").get("observedGeneration"), 30, "the Cluster reconciled")
    # One create at a time so the kill lands mid-scale; SIGKILL on the first pod.
    operator.restart(env={"DASK_OPERATOR_API_CONCURRENCY": "1"})
    wait_for(lambda: status(kube, namespace, "crash").get("phase"), 30, "the operator back")
    watch = subprocess.Popen(
        ["kubectl", f"--kubeconfig={kube.kubeconfig}", "get", "pods", "-n", namespace, "-w", "-o", "name",
         "-l", "dask.charmtx.com/role=worker"], stdout=subprocess.PIPE, text=True)
    try:
        scale(kube, namespace, "crash", 20)
        watch.stdout.readline()
        operator.kill()
    finally:
        watch.kill()
    at_kill = len(kube.pods(namespace, "dask.charmtx.com/role=worker"))
    print(f"\noperator SIGKILLed with {at_kill} of 20 worker pods created")
    assert 0 < at_kill < 20, "the kill landed mid-scale"

    operator.restart(env={})
    wait_for(lambda: status(kube, namespace, "crash").get("workers", {}).get("count") == 20, 60, "count=20")
    pods = kube.pods(namespace, "dask.charmtx.com/role=worker")
    assert sorted(p["metadata"]["name"] for p in pods) == sorted(f"crash-worker-{i}" for i in range(20))
    uid = kube.get(CLUSTERS, "crash", "-n", namespace)["metadata"]["uid"]
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == uid for p in pods), "no orphans"
    assert len(kube.get("pods", "-n", namespace)["items"]) == 21, "20 workers and the scheduler, nothing else"


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("workers_spec, message", [
    pytest.param({"replicas": -1}, "spec.workers.replicas: Invalid value: -1", id="negative-replicas"),
    pytest.param({"replicas": "two"}, 'spec.workers.replicas: Invalid value: "string"', id="non-integer"),
    pytest.param({"replicas": 1.5}, "spec.workers.replicas", id="fractional"),
    pytest.param({"template": {"spec": {"containers": "worker"}}}, "spec.workers.template.spec.containers",
                 id="containers-not-a-list"),
    pytest.param({"template": {"spec": {"containers": [{"image": "x"}]}}}, "name: Required value",
                 id="container-without-name"),
])
def test_invalid_specs_are_rejected_by_the_api_server(kube: Kube, namespace: str, workers_spec, message) -> None:
    body = {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "metadata": {"name": "bad"},
            "spec": {"workers": workers_spec}}
    import yaml
    result = kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert kube.kubectl("get", CLUSTERS, "bad", "-n", namespace, check=False).returncode != 0, "nothing created"


def test_pods_pass_the_restricted_pod_security_standard(
        kube: Kube, operator: OperatorProcess, namespace: str) -> None:
    """PodSecurity admission in enforce mode admits the scheduler, the workers
    and the operator's own pod."""
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    kube.apply(cluster("psa", 1, simulate_workers=True), namespace)
    wait_for(lambda: workers(kube, namespace, "psa"), 30, "a worker pod admitted")
    wait_for(lambda: kube.pods(namespace, "dask.charmtx.com/role=scheduler"), 30, "the scheduler pod admitted")

    import yaml
    rendered = kube.kubectl("kustomize", str(ROOT / "deploy")).stdout
    deployment = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    spec.pop("serviceAccountName")  # lives in the operator's namespace, not this one
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "operator-psa-check"}, "spec": spec}
    result = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod))
    assert "created (server dry run)" in result.stdout
    # and the same admission does refuse a pod that is not restricted
    pod["spec"] = {"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]}
    refused = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod),
                           check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr


def test_kubectl_explain_documents_the_fields(kube: Kube) -> None:
    out = kube.kubectl("explain", "clusters.spec.workers.replicas").stdout
    assert "DESCRIPTION" in out and "worker" in out.lower()
    assert "selector" in kube.kubectl("explain", "clusters.status.workers").stdout


# -------------------------------------------------------------------- delete
def test_delete_cascades_through_the_garbage_collector(
        kube: Kube, operator: OperatorProcess, namespace: str) -> None:
    kube.apply(cluster("gone", 2, simulate_workers=True), namespace)
    wait_for(lambda: len(workers(kube, namespace, "gone")) == 2, 30, "2 workers")
    wait_for(lambda: kube.get("deployments", "-n", namespace)["items"], 30, "the scheduler Deployment")
    kube.kubectl("delete", CLUSTERS, "gone", "-n", namespace, "--wait=false")

    def children() -> list[str]:
        out = kube.kubectl("get", "pods,services,deployments,replicasets", "-n", namespace, "-o", "name").stdout
        return out.split()

    wait_for(lambda: not children(), 60, "every child gone")
