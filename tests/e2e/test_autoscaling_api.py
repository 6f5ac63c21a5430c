"""The autoscaling API (seed 004) on the sandbox: each autoscaler is a real HPA,
and the real HPA controller scales a Deployment from real CPU load and a
Cluster from the desired_workers Object metric.

deploy/autoscaling-api's ServiceAccount and RBAC are applied (not its
Deployment: the API runs as a host process with that ServiceAccount's token,
so every review and every change goes through the RBAC it grants). Callers
are ServiceAccounts of the test's namespace: `alice` may create, get, list
and delete HPAs there, `bob` may do nothing. CPU load is a real process in
each pod (the pod runner runs pods that carry the Dask role label, here
`dask.charmtx.com/role: load`); it burns ~150m while a file exists (3x its
50m request, so the 50 % target is far off even when the 2-core machine is
busy) and idles at ~1m otherwise; the sandbox serves what it really uses
through metrics.k8s.io. Every answer is
validated against the API's OpenAPI document.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from hpa_chain import CLUSTERS, cluster, replicas, scheduler_url, served_metric, use_metric_source
from helpers import ROOT, Kube, host_server, wait_for

from dask_operator.autoscaling_api import openapi
from dask_operator.sandbox.cluster import merge_rules

pytestmark = pytest.mark.e2e

API_NAMESPACE = "dask-autoscaling"
SELECTOR = "app.kubernetes.io/managed-by=dask-operator-autoscaling-api"
DOC = openapi.document()
BURN = """
import os, time
flag = os.environ["LOAD_FLAG"]
while True:
    if os.path.exists(flag):  # ~150m: 15 ms of CPU every ~100 ms
        start = time.process_time()
        while time.process_time() - start < 0.015:
            pass
        time.sleep(0.085)
    else:
        time.sleep(0.2)
"""


def check(method: str, path: str, status: int, body) -> None:
    """`body` is what the OpenAPI document says `method path` answers with `status`."""
    for template, ops in DOC["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and method.lower() in ops:
            response = ops[method.lower()]["responses"][str(status)]
            if "$ref" in response:
                response = DOC["components"]["responses"][response["$ref"].rpartition("/")[2]]
            schema = response["content"]["application/json"]["schema"]
            jsonschema.Draft202012Validator({**schema, "components": DOC["components"]}).validate(body)
            return
    raise AssertionError(f"{method} {path} is not documented")


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, token: str | None, body=None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = httpx.request(method, f"{self.url}{path}", headers=headers, json=body, timeout=30)
        answer = r.json()
        check(method, path.partition("?")[0], r.status_code, answer)
        assert not token or token not in r.text
        return r.status_code, answer


@pytest.fixture(scope="module")
def api(kube: Kube, sandbox, tmp_path_factory) -> Api:
    """deploy/autoscaling-api's RBAC applied, the API run on the host as its ServiceAccount."""
    rendered = kube.kubectl("kustomize", str(ROOT / "deploy" / "autoscaling-api")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "Deployment"]
    kube.apply(docs)
    state = tmp_path_factory.mktemp("autoscaling-api")
    try:
        with host_server(kube, state, ["autoscaling-api"], API_NAMESPACE, "dask-autoscaling-api") as (url, _):
            yield Api(url)
    finally:
        for kind in ("clusterrolebinding", "clusterrole"):
            kube.kubectl("delete", kind, "dask-autoscaling-api", "--ignore-not-found")
        kube.kubectl("delete", "namespace", API_NAMESPACE, "--wait=false")


def callers(kube: Kube, namespace: str) -> tuple[str, str]:
    """Tokens of alice (create/get/list/delete HPAs in `namespace`) and bob (no rights)."""
    kube.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "alice"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bob"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "hpa-editor"},
         "rules": [{"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
                    "verbs": ["create", "get", "list", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "alice"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hpa-editor"},
         "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": namespace}]}], namespace)
    return tuple(kube.kubectl("create", "token", who, "-n", namespace).stdout.strip() for who in ("alice", "bob"))


def deployment(name: str, run: bool, env: dict | None = None, requests: dict | None = None) -> dict:
    """A Deployment of one pod: run for real by the pod runner (`run`), else simulated by kwok."""
    labels = {"app": name, **({"dask.charmtx.com/role": "load"} if run else {})}
    container = {"name": name, "image": "python", "command": ["python", "-c", BURN],
                 "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                 "resources": {"requests": requests or {"cpu": "50m", "memory": "64Mi"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def spec_replicas(kube: Kube, namespace: str, name: str) -> int:
    return kube.get("deployment", name, "-n", namespace)["spec"]["replicas"]


def rescales(kube: Kube, namespace: str, hpa: str) -> list[str]:
    events = kube.get("events", "-n", namespace, "--field-selector",
                      f"involvedObject.name={hpa},reason=SuccessfulRescale")["items"]
    return [e["message"] for e in sorted(events, key=lambda e: e.get("lastTimestamp") or "")]


# ------------------------------------------------------------------ Deployment from real CPU load


def test_an_autoscaler_is_a_real_hpa_and_real_cpu_load_scales_the_deployment(
        kube: Kube, api: Api, namespace: str, tmp_path: Path) -> None:
    alice, _ = callers(kube, namespace)
    flag = tmp_path / "load"
    kube.apply(deployment("burner", run=True, env={"LOAD_FLAG": str(flag)}), namespace)
    wait_for(lambda: kube.get("deployment", "burner", "-n", namespace).get("status", {}).get("readyReplicas") == 1,
             60, "the burner pod Ready")
    body = {"workload_name": "burner", "workload_namespace": namespace, "workload_type": "Deployment",
            "min_replicas": 1, "max_replicas": 3, "target_cpu_percent": 50,
            "scale_up_policy": {"stabilization_window_seconds": 0, "max_scale_change": 1},
            "scale_down_policy": {"stabilization_window_seconds": 5}}
    status, created = api.call("POST", "/api/v1/autoscaling", alice, body)
    assert status == 201 and created["message"] == "Autoscaler created successfully"
    ident, name = created["autoscaling_id"], created["details"]["hpa_name"]
    assert ident == f"{namespace}.{name}"

    # 1. It is a real HPA: kubectl shows it, labelled as ours, with the request's metric and behavior.
    assert name in kube.kubectl("get", "hpa", "-n", namespace).stdout
    (hpa,) = kube.get("hpa", "-n", namespace, "-l", SELECTOR)["items"]
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 15}]

    def seen(predicate) -> dict | None:
        status, view = api.call("GET", f"/api/v1/autoscaling/{ident}", alice)
        return view if status == 200 and predicate(view) else None

    idle = wait_for(lambda: seen(lambda v: v["status"] == "active" and v["details"]["current_cpu_percent"]
                                 is not None), 90, "the HPA reading the pod's real CPU")
    assert idle["details"]["current_cpu_percent"] < 50 and idle["details"]["current_replicas"] == 1

    # 2. Real CPU load: the HPA scales the Deployment, one pod per 15 s (max_scale_change 1).
    flag.touch()
    t0 = time.monotonic()
    wait_for(lambda: spec_replicas(kube, namespace, "burner") >= 2, 90, "the HPA scaling out on CPU load")
    print(f"\nCPU load -> HPA scaled the Deployment to 2: {time.monotonic() - t0:.1f} s")
    wait_for(lambda: spec_replicas(kube, namespace, "burner") == 3, 120, "the Deployment at max_replicas")
    print(f"CPU load -> 3 replicas: {time.monotonic() - t0:.1f} s")
    assert [int(m.split(";")[0].split()[-1]) for m in rescales(kube, namespace, name)] == [2, 3]
    busy = wait_for(lambda: seen(lambda v: v["details"]["scale_up_count"] == 2 and v["details"]["current_replicas"]
                                 == 3), 30, "two scale-ups in the status")
    assert busy["details"]["current_cpu_percent"] > 50 and busy["details"]["last_scale_time"]

    # 3. Load gone: after its 5 s window the HPA scales back to 1.
    flag.unlink()
    wait_for(lambda: spec_replicas(kube, namespace, "burner") == 1, 120, "the HPA scaling back in")
    calm = wait_for(lambda: seen(lambda v: v["details"]["scale_down_count"] >= 1), 30, "the scale-down counted")
    assert calm["details"]["scale_up_count"] == 2
    status, totals = api.call("GET", f"/api/v1/autoscaling/metrics?namespace={namespace}", alice)
    assert status == 200 and totals["total_autoscalers"] == 1 and totals["total_scale_ups"] == 2
    status, listed = api.call("GET", "/api/v1/autoscaling", alice)
    assert [a["autoscaling_id"] for a in listed["autoscalers"]] == [ident]

    # 4. Delete: the HPA is gone, and so is the autoscaler.
    assert api.call("DELETE", f"/api/v1/autoscaling/{ident}", alice) == (
        200, {"message": "Autoscaler deleted successfully", "autoscaler_id": ident})
    wait_for(lambda: not kube.get("hpa", "-n", namespace)["items"], 30, "the HPA deleted")
    assert api.call("GET", f"/api/v1/autoscaling/{ident}", alice)[0] == 404


# ------------------------------------------------------------------ validation and access


@pytest.mark.parametrize("change, details", [
    ({"min_replicas": 0}, "min_replicas must be at least 1"),
    ({"max_replicas": 1, "min_replicas": 2}, "max_replicas must be greater than or equal to min_replicas"),
    ({"target_cpu_percent": 101}, "target_cpu_percent must be an integer between 0 and 100"),
    ({"workload_type": "DaemonSet"}, "workload_type must be one of Deployment, StatefulSet, ReplicaSet, Cluster"),
    ({"target_cpu_percent": None}, "at least one target is required: target_cpu_percent, target_memory_percent, "
                                   "target_gpu_percent (or follow_desired_workers for a Cluster)"),
    ({"cooldown_seconds": 15}, "unknown field(s): cooldown_seconds"),
], ids=["min", "max", "percent", "type", "no-target", "unknown-field"])
def test_invalid_requests_are_400_with_details_and_create_nothing(kube: Kube, api: Api, namespace: str, change,
                                                                  details: str) -> None:
    alice, _ = callers(kube, namespace)
    kube.apply(deployment("web", run=False), namespace)
    body = {"workload_name": "web", "workload_namespace": namespace, "workload_type": "Deployment",
            "min_replicas": 1, "max_replicas": 3, "target_cpu_percent": 60, **change}
    assert api.call("POST", "/api/v1/autoscaling", alice, body) == (400, {"error": "Validation failed",
                                                                          "details": details})
    assert kube.get("hpa", "-n", namespace)["items"] == []


def test_missing_workload_strangers_and_no_credentials(kube: Kube, api: Api, namespace: str) -> None:
    alice, bob = callers(kube, namespace)
    body = {"workload_name": "nginx", "workload_namespace": namespace, "workload_type": "StatefulSet",
            "min_replicas": 1, "max_replicas": 2, "target_memory_percent": 80}
    assert api.call("POST", "/api/v1/autoscaling", alice, body) == (404, {
        "error": "Workload not found", "details": f'StatefulSet "nginx" not found in namespace "{namespace}"'})
    assert api.call("POST", "/api/v1/autoscaling", bob, body)[0] == 403
    assert api.call("POST", "/api/v1/autoscaling", None, body)[0] == 401
    assert api.call("GET", "/api/v1/autoscaling/autoscaler-xyz123", alice) == (
        404, {"error": "Autoscaler not found", "details": "autoscaler autoscaler-xyz123 not found"})
    assert kube.get("hpa", "-n", namespace)["items"] == []


# ------------------------------------------------------------------ GPU: DCGM through prometheus-adapter


class StandInDcgm:
    """DCGM exporter's DCGM_FI_DEV_GPU_UTIL for some pods, on a loopback port Prometheus finds (file_sd)."""

    def __init__(self, sandbox, series: dict[tuple[str, str], float]) -> None:
        self.series, self.target = series, Path(sandbox.file_sd_dir) / "dcgm-stand-in.json"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                text = "".join(f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-stand-in-{i}",namespace="{ns}",'
                               f'pod="{pod}",container="trainer"}} {value}\n'
                               for i, ((ns, pod), value) in enumerate(outer.series.items()))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.target.write_text(json.dumps([{"targets": [f"127.0.0.1:{self.server.server_port}"],
                                            "labels": {"job": "dcgm-exporter"}}]))

    def stop(self) -> None:
        self.target.unlink(missing_ok=True)
        self.server.shutdown()


def load_adapter_rules(sandbox, files: list[Path]) -> None:
    """Restart the sandbox's prometheus-adapter with these rules files (as hpa_chain.use_metric_source does)."""
    rules = Path(sandbox.adapter_rules)
    wanted = yaml.safe_dump(merge_rules(files))
    if rules.read_text() == wanted:
        return
    rules.write_text(wanted)
    state = Path(sandbox.state_dir) / "sandbox.json"
    old = json.loads(state.read_text())["pids"]["prometheus-adapter"]
    os.kill(sandbox.supervisor_pid, signal.SIGHUP)
    wait_for(lambda: json.loads(state.read_text())["pids"]["prometheus-adapter"] != old, 30,
             "prometheus-adapter restarted")


def test_gpu_metric_is_unavailable_without_series_and_served_from_dcgm(kube: Kube, api: Api, sandbox,
                                                                      namespace: str) -> None:
    alice, _ = callers(kube, namespace)
    kube.apply(deployment("trainer", run=False), namespace)  # kwok: a GPU pod needs no process here
    body = {"workload_name": "trainer", "workload_namespace": namespace, "workload_type": "Deployment",
            "min_replicas": 1, "max_replicas": 4, "target_gpu_percent": 80}
    status, created = api.call("POST", "/api/v1/autoscaling", alice, body)
    assert status == 201
    ident = created["autoscaling_id"]

    def view() -> dict:
        return api.call("GET", f"/api/v1/autoscaling/{ident}", alice)[1]

    # 1. No DCGM series: the HPA cannot read it, and the API says so; nothing is made up.
    missing = wait_for(lambda: (v := view())["status"] == "inactive" and v, 90, "the HPA failing on the GPU metric")
    assert missing["details"]["current_gpu_percent"] is None
    assert missing["details"]["unavailable_metrics"]["gpu"].startswith("FailedGetPodsMetric: ")

    # 2. A stand-in DCGM exporter and adapter-rules/gpu.yaml: the HPA reads the pod's GPU utilization.
    (pod,) = kube.pods(namespace, "app=trainer")
    exporter = StandInDcgm(sandbox, {(namespace, pod["metadata"]["name"]): 42})
    rules = [ROOT / "adapter-rules" / "scheduler.yaml", ROOT / "adapter-rules" / "gpu.yaml"]
    try:
        load_adapter_rules(sandbox, rules)
        active = wait_for(lambda: (v := view())["details"]["current_gpu_percent"] == 42 and v, 120,
                          "the GPU utilization served through prometheus-adapter")
        assert active["status"] == "active" and active["details"]["unavailable_metrics"] == {}
        assert spec_replicas(kube, namespace, "trainer") == 1  # 42 % < 80 %: no scale

        # 3. The series goes away: unavailable again, never a stale or invented value.
        exporter.stop()
        gone = wait_for(lambda: (v := view())["details"]["current_gpu_percent"] is None and v, 120,
                        "the GPU metric withdrawn")
        assert "gpu" in gone["details"]["unavailable_metrics"]
    finally:
        exporter.stop()
        load_adapter_rules(sandbox, rules[:1])


# ------------------------------------------------------------------ Cluster from desired_workers


def test_a_cluster_follows_desired_workers_through_the_api(kube: Kube, api: Api, sandbox, operator,
                                                           namespace: str) -> None:
    alice, _ = callers(kube, namespace)
    use_metric_source(sandbox, "scheduler")
    kube.apply(cluster("follow", 2), namespace)
    wait_for(lambda: scheduler_url(kube, namespace, "follow"), 90, "a Ready scheduler")
    wait_for(lambda: served_metric(kube, namespace, "follow") is not None, 90, "desired_workers served")
    body = {"workload_name": "follow", "workload_namespace": namespace, "workload_type": "Cluster",
            "min_replicas": 1, "max_replicas": 3, "follow_desired_workers": True,
            "scale_down_policy": {"stabilization_window_seconds": 0}}
    status, created = api.call("POST", "/api/v1/autoscaling", alice, body)
    assert status == 201 and created["details"]["current_replicas"] == 2
    hpa = kube.get("hpa", created["details"]["hpa_name"], "-n", namespace)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster",
                                             "name": "follow"}
    # An idle scheduler wants no workers: the HPA takes the Cluster to its minimum, through /scale.
    wait_for(lambda: replicas(kube, namespace, "follow") == 1, 90, "the HPA scaling the Cluster in")
    view = wait_for(lambda: (v := api.call("GET", f"/api/v1/autoscaling/{created['autoscaling_id']}", alice)[1])
                    ["details"]["scale_down_count"] >= 1 and v, 30, "the scale-down counted")
    assert view["status"] == "active" and view["details"]["unavailable_metrics"] == {}
    assert kube.get(CLUSTERS, "follow", "-n", namespace)["spec"]["workers"]["replicas"] == 1
