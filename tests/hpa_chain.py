"""The HPA chain on the sandbox, shared by the e2e test and the latency benchmark.

scheduler (real) -> Prometheus scrape -> prometheus-adapter -> HPA controller
-> Cluster /scale -> operator -> worker pods (real) -> workers registered.
Two metric sources: the scheduler's own `dask_scheduler_desired_workers`
(adapter-rules/scheduler.yaml) or the operator's
`dask_operator_cluster_desired_workers` (adapter-rules/operator.yaml).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from helpers import ROOT, Kube, wait_for

from dask_operator.core.pods import pod_ready
from dask_operator.sandbox import SandboxInfo
from dask_operator.sandbox.cluster import merge_rules

CLUSTERS = "clusters.dask.charmtx.com"
RULES = {"scheduler": ROOT / "adapter-rules" / "scheduler.yaml",
         "operator": ROOT / "adapter-rules" / "operator.yaml"}


def use_metric_source(info: SandboxInfo, source: str, host_operator_port: int | None = None) -> None:
    """Load the adapter with one source's rules. Prometheus scrapes the operator's
    pod through its Service by itself; a host-run operator (benchmarks) is
    announced to it on `host_operator_port`."""
    if host_operator_port is not None:
        (Path(info.file_sd_dir) / "dask-operator.json").write_text(json.dumps(
            [{"targets": [f"127.0.0.1:{host_operator_port}"], "labels": {"job": "dask-operator"}}]))
    rules = Path(info.adapter_rules)
    wanted = yaml.safe_dump(merge_rules([RULES[source]]))
    if rules.read_text() == wanted:
        return
    rules.write_text(wanted)
    old = json.loads((Path(info.state_dir) / "sandbox.json").read_text())["pids"]["prometheus-adapter"]
    os.kill(info.supervisor_pid, signal.SIGHUP)
    wait_for(lambda: json.loads((Path(info.state_dir) / "sandbox.json").read_text())
             ["pids"]["prometheus-adapter"] != old, 30, "prometheus-adapter restarted")


def cluster(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
        "spec": {"workers": {"replicas": replicas, "template": {"spec": {"containers": [{
            "name": "worker", "image": "ghcr.io/dask/dask:latest", "command": ["dask", "worker"],
            "args": ["--name", "$(DASK_WORKER_NAME)", "--nthreads", "1", "--dashboard-address", ":8788"]}]}}}},
    }


def hpa(name: str, min_replicas: int, max_replicas: int, scale_down_window: int = 10) -> dict:
    ref = {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "name": name}
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
        "spec": {"scaleTargetRef": ref, "minReplicas": min_replicas, "maxReplicas": max_replicas,
                 "metrics": [{"type": "Object", "object": {
                     "metric": {"name": "desired_workers"}, "describedObject": ref,
                     "target": {"type": "AverageValue", "averageValue": "1"}}}],
                 "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0},
                              "scaleDown": {"stabilizationWindowSeconds": scale_down_window}}},
    }


def served_metric(kube: Kube, ns: str, name: str) -> float | None:
    r = kube.kubectl("get", "--raw", f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/{CLUSTERS}/{name}"
                     "/desired_workers", check=False)
    if r.returncode != 0:
        return None
    value = json.loads(r.stdout)["items"][0]["value"]
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def replicas(kube: Kube, ns: str, name: str) -> int:
    return kube.get(CLUSTERS, name, "-n", ns)["spec"]["workers"]["replicas"]


def worker_pods(kube: Kube, ns: str, name: str) -> list[dict]:
    return [p for p in kube.pods(ns, f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=worker")
            if not p["metadata"].get("deletionTimestamp")]


def scheduler_url(kube: Kube, ns: str, name: str) -> str | None:
    """The Ready scheduler pod's IP."""
    for p in kube.pods(ns, f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=scheduler"):
        if pod_ready(p):
            return p["status"]["podIP"]
    return None


@dataclass
class Timeline:
    """Seconds after the burst was submitted at which each link first moved."""

    source: str
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, what: str, t0: float) -> None:
        self.marks.setdefault(what, time.monotonic() - t0)

    def line(self) -> str:
        order = ["scheduler target rose", "adapter serves it", "HPA wrote /scale", "pods created",
                 "workers registered"]
        return f"{self.source:>9}: " + " -> ".join(f"{k} {self.marks[k]:.1f}s" for k in order if k in self.marks)


def follow_scale_up(kube: Kube, ns: str, name: str, ip: str, target: int, timeline: Timeline, t0: float,
                    timeout: float = 120) -> None:
    """Poll every link of the chain until `target` workers are registered."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=f"http://{ip}:8787", timeout=2) as scheduler:
        last: dict = {}
        while "workers registered" not in timeline.marks:
            assert time.monotonic() < deadline, f"chain stalled: {timeline.marks}, last seen {last}"
            last["target"] = scheduler.get("/api/v1/adaptive_target").json()["workers"]
            if last["target"] > 1:
                timeline.mark("scheduler target rose", t0)
            last["served"] = value = served_metric(kube, ns, name)
            last["replicas"] = current = replicas(kube, ns, name)
            if value is not None and value > 1:
                timeline.mark("adapter serves it", t0)
            if current > 1:  # the HPA's first write, from the 1 worker it started with
                timeline.mark("HPA wrote /scale", t0)
            if len(worker_pods(kube, ns, name)) >= target:
                timeline.mark("pods created", t0)
            if scheduler.get("/api/v1/get_workers").json()["num_workers"] >= target:
                timeline.mark("workers registered", t0)
