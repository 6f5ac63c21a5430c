"""The operator against the sandbox: seed 003's commands, real Dask, real RBAC.

The operator runs as deploy/'s own pod (`operator` fixture); only the crash
test runs it on the host (`host_operator`), to SIGKILL it at a chosen moment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client

from helpers import ROOT, Kube, OperatorPod, operator_pods, wait_for

from dask_operator.core.pods import pod_ready
from dask_operator.sandbox.netns import pod_pids

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
    return next((p for p in kube.pods(ns, f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=scheduler")
                 if pod_ready(p)), None)


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
def _operator_processes() -> set[int]:
    """PIDs of every `dask-operator run` / `python -m dask_operator run` on this machine."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = [Path(a.decode(errors="replace")).name for a in argv]
        for i, a in enumerate(names[:-1]):
            if a in ("dask-operator", "dask_operator") and names[i + 1] == "run":
                found.add(int(proc.name))
    return found


@contextlib.contextmanager
def example_applied(kube: Kube):
    """`kubectl apply -k example/` in the default namespace; deleted and waited for on exit."""
    run = dict(cwd=ROOT, env=kube.env, check=True, capture_output=True, text=True)
    subprocess.run(["kubectl", "apply", "-k", "example/"], **run)
    try:
        yield run
    finally:
        subprocess.run(["kubectl", "delete", "-k", "example/", "--wait=true"], **run)
        wait_for(lambda: not kube.pods("default", "dask.charmtx.com/cluster=example-dask"), 90,
                 "the example's pods gone")


def _scale_example_to_two(kube: Kube, run: dict) -> list[dict]:
    wait_for(lambda: ready_scheduler(kube, "default", "example-dask"), 120, "the example scheduler")
    wait_for(lambda: len(workers(kube, "default", "example-dask")) == 1, 60, "the example's one worker")
    start = time.monotonic()
    subprocess.run(["kubectl", "scale", "clusters.dask.charmtx.com/example-dask", "--replicas=2"], **run)
    pods = wait_for(lambda: (p := workers(kube, "default", "example-dask")) and len(p) == 2 and running(p) and p,
                    60, "2 Running worker pods")
    print(f"\nkubectl scale 1->2: 2 pods Running after {time.monotonic() - start:.2f}s")
    assert sorted(p["metadata"]["name"] for p in pods) == ["example-dask-worker-0", "example-dask-worker-1"]
    return pods


def test_seed_commands_scale_the_example(kube: Kube, operator: OperatorPod) -> None:
    """Seed 003's commands verbatim, on any cluster (deploy/ is applied by the session):
    `kubectl apply -k example/`, `kubectl scale ... --replicas=2` -> 2 Running workers,
    the scale subresource and status agree, and `kubectl get daskclusters` lists it."""
    with example_applied(kube) as run:
        _scale_example_to_two(kube, run)
        wait_for(lambda: status(kube, "default", "example-dask")["workers"]["count"] == 2, 30,
                 "status.workers.count=2")
        scale_obj = kube.get(CLUSTERS, "example-dask", "-n", "default", "--subresource=scale")
        assert scale_obj["spec"]["replicas"] == 2
        assert scale_obj["status"]["selector"] == \
            "dask.charmtx.com/cluster=example-dask,dask.charmtx.com/role=worker"
        assert "example-dask" in kube.kubectl("get", "daskclusters", "-n", "default").stdout


def test_seed_commands_give_real_workers_from_the_operators_own_pod(
        kube: Kube, sandbox, operator: OperatorPod) -> None:
    """The same commands in the sandbox: both workers are real Dask processes registered
    with the scheduler, created by deploy/'s pod, the only operator process on the machine."""
    with example_applied(kube) as run:
        pods = _scale_example_to_two(kube, run)
        address = subprocess.run([sys.executable, "-m", "dask_operator", "sandbox", "address", "example-dask"],
                                 **run).stdout.strip()
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            assert {w["name"] for w in client.scheduler_info()["workers"].values()} == {
                p["metadata"]["name"] for p in pods}
        (op_pod,) = operator_pods(kube)
        assert _operator_processes() == set(pod_pids(sandbox.network, op_pod["metadata"]["uid"])), \
            "the only operator running is the one in deploy/'s pod"


def test_readme_client_snippet_computes_on_the_example(kube: Kube, sandbox, operator: OperatorPod) -> None:
    """The quick start's way in from the host: the README's bash block, run as written."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- tested: test_readme_client_snippet -->", 1)[1].split("```bash\n", 1)[1]
    block = block.split("```", 1)[0]
    env = {**kube.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with example_applied(kube):
        wait_for(lambda: ready_scheduler(kube, "default", "example-dask"), 60, "the example scheduler")
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "6"


# ---------------------------------------------------------------- scale down
def test_scale_down_retires_through_scheduler_and_loses_no_result(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
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


def test_a_worker_pod_deleted_by_hand_hands_its_data_over_first(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
    """Whoever deletes a worker pod (kubectl, an eviction, a drain), its preStop hook has
    the scheduler retire the worker before SIGTERM: what it held survives, unrecomputed."""
    kube.apply(cluster("byhand", 3), namespace)
    with client_for(kube, namespace, "byhand") as client:
        client.wait_for_workers(3, timeout=90)
        names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
        futures = client.map(lambda i: bytes(10_000) + i.to_bytes(4, "big"), range(90), pure=False)
        client.gather(futures)
        held = {}
        for key, addrs in client.who_has(futures).items():
            for a in addrs:
                held.setdefault(a, set()).add(key)
        victim_address, victim_keys = max(held.items(), key=lambda kv: len(kv[1]))
        victim = names[victim_address]
        assert victim_keys, "the victim holds results"

        kube.kubectl("delete", "pod", victim, "-n", namespace, "--wait=true", "--timeout=60s")
        events = [e for _, e in client.get_events("all")]
        retired = {a for e in events if e.get("action") == "retire-workers" for a in e["retired"]}
        assert victim_address in retired, "the scheduler retired the worker before its pod went"
        lost = [e for e in events if e.get("action") == "remove-worker"
                and (e.get("lost-computed-tasks") or e.get("lost-scattered-tasks"))]
        assert not lost, f"a worker left with data: {lost}"
        assert all(client.who_has(futures).values()), "every result is still held by some worker"
        results = client.gather(futures)
        assert [int.from_bytes(r[-4:], "big") for r in results] == list(range(90))
    # and the operator replaces the pod: desired is still 3
    wait_for(lambda: len(workers(kube, namespace, "byhand")) == 3, 60, "the pod replaced")


def _scheduler_pids(kube: Kube, sandbox, ns: str, name: str) -> list[int]:
    return pod_pids(sandbox.network, ready_scheduler(kube, ns, name)["metadata"]["uid"])


def test_scale_down_blocked_while_scheduler_unreachable(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
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
        kube: Kube, operator: OperatorPod, namespace: str) -> None:
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
        kube: Kube, operator: OperatorPod, namespace: str) -> None:
    kube.apply(cluster("gone", 2, simulate_workers=True), namespace)
    wait_for(lambda: len(workers(kube, namespace, "gone")) == 2, 30, "2 workers")
    wait_for(lambda: kube.get("deployments", "-n", namespace)["items"], 30, "the scheduler Deployment")
    kube.kubectl("delete", CLUSTERS, "gone", "-n", namespace, "--wait=false")

    def children() -> list[str]:
        out = kube.kubectl("get", "pods,services,deployments,replicasets", "-n", namespace, "-o", "name").stdout
        return out.split()

    wait_for(lambda: not children(), 60, "every child gone")
