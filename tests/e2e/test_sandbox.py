"""The sandbox is a real control plane: apiserver, scheduler, controllers, kwok,
the pod runner, Prometheus and prometheus-adapter all do their real jobs."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client

from helpers import Kube, wait_for

from dask_operator.core.pods import pod_ready
from dask_operator.sandbox import API_ADDRESS
from dask_operator.sandbox.netns import list_namespaces
from dask_operator.sandbox.procs import alive

pytestmark = pytest.mark.e2e

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.sandbox.test"},
    "spec": {
        "group": "sandbox.test",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                "status": {"type": "object", "properties": {
                    "replicas": {"type": "integer"}, "selector": {"type": "string"}}},
            }}},
            "subresources": {"status": {}, "scale": {
                "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector"}},
        }],
    },
}


def test_kubectl_apply_and_get(kube: Kube, namespace: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hello"},
                "data": {"greeting": "hi"}}, namespace)
    assert kube.get("configmap", "hello", "-n", namespace)["data"] == {"greeting": "hi"}


def test_kubectl_scale_changes_a_custom_resource(kube: Kube, namespace: str) -> None:
    kube.apply(WIDGET_CRD)
    try:
        wait_for(lambda: kube.kubectl("get", "widgets", "-n", namespace, check=False).returncode == 0,
                 30, "the Widget CRD to be served")
        kube.apply({"apiVersion": "sandbox.test/v1", "kind": "Widget", "metadata": {"name": "w"},
                    "spec": {"replicas": 1}}, namespace)
        kube.kubectl("scale", "widgets.sandbox.test/w", "--replicas=5", "-n", namespace)
        assert kube.get("widget", "w", "-n", namespace)["spec"]["replicas"] == 5
    finally:
        kube.kubectl("delete", "crd", WIDGET_CRD["metadata"]["name"], "--wait=true")


def test_deployment_pods_run_on_kwok_nodes(kube: Kube, sandbox, namespace: str) -> None:
    kube.apply({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx",
                                                       "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1"},
                                                                     "limits": {"nvidia.com/gpu": "1"}}}]}}},
    }, namespace)

    def running() -> list[dict]:
        pods = kube.pods(namespace, "app=web")
        return pods if len(pods) == 3 and all(p["status"].get("phase") == "Running" for p in pods) else []

    pods = wait_for(running, 60, "3 Running web pods")
    nodes = {n["metadata"]["name"]: n for n in kube.get("nodes")["items"]}
    for pod in pods:
        node = nodes[pod["spec"]["nodeName"]]
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 1
        assert pod["status"]["podIP"]


def _dask_pod(name: str, role: str, args: list[str], ports: list[dict], probe: dict | None = None) -> dict:
    container = {"name": role, "image": "ghcr.io/dask/dask:latest", "command": ["dask", *args], "ports": ports}
    if probe:
        container["readinessProbe"] = probe
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"dask.charmtx.com/role": role, "dask.charmtx.com/cluster": "raw"}},
        "spec": {"containers": [container], "securityContext": {"runAsNonRoot": True, "runAsUser": 1000}},
    }


def test_pod_runner_runs_real_dask(kube: Kube, sandbox, namespace: str) -> None:
    scheduler = _dask_pod(
        "raw-scheduler", "scheduler", ["scheduler"],
        [{"name": "tcp-comm", "containerPort": 8786}, {"name": "http-dashboard", "containerPort": 8787}],
        {"httpGet": {"path": "/health", "port": "http-dashboard"}, "periodSeconds": 1},
    )
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "raw-scheduler"},
        "spec": {"selector": {"dask.charmtx.com/role": "scheduler", "dask.charmtx.com/cluster": "raw"},
                 "ports": [{"name": "tcp-comm", "port": 8786}]},
    }
    address = f"tcp://raw-scheduler.{namespace}.svc:8786"
    workers = [_dask_pod(f"raw-worker-{i}", "worker", ["worker", address, "--name", f"raw-worker-{i}", "--nthreads", "1"],
                         []) for i in range(2)]
    kube.apply([scheduler, service, *workers], namespace)

    def ready_scheduler_ip() -> str | None:
        pod = kube.get("pod", "raw-scheduler", "-n", namespace)
        return pod["status"]["podIP"] if pod_ready(pod) else None

    ip = wait_for(ready_scheduler_ip, 60, "the scheduler pod to be Ready")
    assert ipaddress.ip_address(ip) in sandbox.network.runner_range
    with Client(f"tcp://{ip}:8786", timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        names = {w["name"] for w in client.scheduler_info()["workers"].values()}
        assert names == {"raw-worker-0", "raw-worker-1"}
        futures = client.map(lambda x: x * x, range(100))
        assert sum(client.gather(futures)) == sum(x * x for x in range(100))
        where = {addr for addrs in client.who_has(futures).values() for addr in addrs}
        assert len(where) == 2, "both real workers did work"


def test_hpa_object_metric_from_prometheus_changes_its_target(kube: Kube, sandbox, namespace: str) -> None:
    """A real scheduler is scraped by Prometheus; prometheus-adapter serves its
    desired_workers (seed 003's rule) on a Cluster; the HPA controller acts on it."""
    name = "hpa-demo"
    labels = {"dask.charmtx.com/role": "scheduler", "dask.charmtx.com/cluster": name}
    pod = _dask_pod(f"{name}-scheduler", "scheduler", ["scheduler"],
                    [{"name": "tcp-comm", "containerPort": 8786}, {"name": "http-dashboard", "containerPort": 8787}],
                    {"httpGet": {"path": "/health", "port": "http-dashboard"}, "periodSeconds": 1})
    pod["metadata"]["labels"] = labels
    kube.apply([
        pod,
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-scheduler", "labels": labels},
         "spec": {"selector": labels, "ports": [{"name": "http-dashboard", "port": 8787}]}},
        {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
         "spec": {"workers": {"replicas": 3}}},
    ], namespace)
    # No operator runs in this test: publish the selector the HPA requires by hand.
    kube.kubectl("patch", "clusters.dask.charmtx.com", name, "-n", namespace, "--subresource=status",
                 "--type=merge", "-p", '{"status": {"workers": {"count": 3, "selector": "a=b"}}}')

    path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/clusters.dask.charmtx.com/{name}/desired_workers"

    def metric() -> dict | None:
        r = kube.kubectl("get", "--raw", path, check=False)
        return json.loads(r.stdout)["items"][0] if r.returncode == 0 else None

    served = wait_for(metric, 90, "desired_workers served by prometheus-adapter")
    assert served["metric"]["name"] == "desired_workers"
    assert served["describedObject"]["name"] == name
    assert served["value"] == "0", "an idle scheduler wants no workers"

    kube.apply({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "name": name},
                 "minReplicas": 1, "maxReplicas": 5,
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
                 "metrics": [{"type": "Object", "object": {
                     "metric": {"name": "desired_workers"},
                     "describedObject": {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "name": name},
                     "target": {"type": "AverageValue", "averageValue": "1"}}}]},
    }, namespace)
    wait_for(lambda: kube.get("clusters.dask.charmtx.com", name, "-n", namespace)["spec"]["workers"]["replicas"] == 1,
             60, "the HPA to scale the Cluster from 3 to 1")
    hpa = kube.get("hpa", name, "-n", namespace)
    assert hpa["status"]["desiredReplicas"] == 1


def test_two_sandboxes_coexist_and_teardown_leaves_no_process(sandbox, tmp_path: Path) -> None:
    """A second sandbox starts beside the session's (free ports, own bridge) and,
    once stopped, leaves no process, namespace or bridge behind."""
    from helpers import start_sandbox

    t0 = time.monotonic()
    second = start_sandbox(tmp_path / "second", timeout=300)
    startup = time.monotonic() - t0
    print(f"\nwarm sandbox start: {startup:.1f}s")
    try:
        assert second.info.pod_cidr != sandbox.pod_cidr
        assert second.info.apiserver != sandbox.apiserver
        kube = Kube(Path(second.info.kubeconfig))
        kube.apply(_dask_pod("lonely-scheduler", "scheduler", ["scheduler"], []), "default")
        net = second.info.network

        def pids_in_pod_namespaces() -> list[int]:
            return [int(p) for ns in list_namespaces(net) for p in subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()]

        pod_pids = wait_for(pids_in_pod_namespaces, 60, "the runner pod's process")
    finally:
        second.stop()
    pids = list(second.info.pids.values()) + [second.info.supervisor_pid] + pod_pids
    assert not [p for p in pids if alive(p)], "a sandbox process survived teardown"
    assert not list_namespaces(net)
    assert subprocess.run(["ip", "link", "show", net.bridge], capture_output=True).returncode != 0
    assert second.process.returncode == 0


def test_example_runs_the_operator_and_the_api_as_pods_and_says_how_to_reach_the_api(sandbox, tmp_path: Path) -> None:
    """`sandbox --example`: deploy/, example/ and deploy/api applied; the operator, the
    example's scheduler and the cluster-scaler API run as pods of the pod runner. The
    commands it prints for the API's address work from the host, and the API answers
    there with real TokenReviews (its pod's own ServiceAccount)."""
    from helpers import start_sandbox

    second = start_sandbox(tmp_path / "example", "--example", timeout=300)
    try:
        kube = Kube(Path(second.info.kubeconfig))
        printed = (tmp_path / "example" / "supervisor.log").read_text(errors="replace")
        assert "".join(f"  {line}\n" for line in API_ADDRESS.splitlines()) in printed, printed[-2000:]
        api = wait_for(lambda: [p for p in kube.pods("domino-field", "app.kubernetes.io/name=ddl-cluster-scaler")
                                if pod_ready(p)], 240, "deploy/api's pod Ready")[0]
        assert api["metadata"]["labels"]["app.kubernetes.io/part-of"] == "dask-operator"
        assert ipaddress.ip_address(api["status"]["podIP"]) in second.info.network.runner_range, "a real pod"
        wait_for(lambda: [p for p in kube.pods("default", "app.kubernetes.io/name=dask-operator") if pod_ready(p)],
                 240, "the operator's pod Ready")
        kube.kubectl("create", "serviceaccount", "probe", "-n", "default")
        uid = kube.get("serviceaccount", "probe", "-n", "default")["metadata"]["uid"]
        kube.kubectl("label", "clusters.dask.charmtx.com/example-dask", f"dominodatalab.com/starting-user-id={uid}",
                     "-n", "default")
        script = API_ADDRESS + (
            'curl -sS -w "\\n" "$BASE/healthz"\n'
            'curl -sS -w "\\n" -H "Authorization: Bearer $(kubectl create token probe)" '
            '"$BASE/ddl_cluster_scaler_api/list/daskclusters?namespace=default"\n')
        env = {**kube.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                             timeout=240)
        assert out.returncode == 0, out.stderr
        health, listed = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        assert health == {"status": "ok"}
        assert [c["metadata"]["name"] for c in listed["clusters"]] == ["example-dask"], listed
    finally:
        second.stop()
    assert second.process.returncode == 0
