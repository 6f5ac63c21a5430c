"""The two operators the benchmarks compare, behind one small interface.

Both run the way users run them: as one pod in the sandbox (the pod runner
runs it as a real process, with its ServiceAccount's token, reaching the API
server and the schedulers' Service names from the pod's network namespace),
each watching only its own namespace, standalone (no kopf peering objects), so
neither sees nor freezes the other.

A contender provides the manifests of one cluster -- workers simulated by kwok
or real Dask processes under the pod runner -- the API path of the `/scale`
subresource the benchmark writes, and label selectors for its pods. The peer
(dask-kubernetes) lives in `peer.py`.
"""

from __future__ import annotations

import copy
from typing import Protocol

import yaml

from helpers import ROOT, Kube, wait_for

from dask_operator.constants import SCHEDULER_CONTAINER, WORKER_CONTAINER
from dask_operator.core.pods import pod_ready

SIMULATE = {"sandbox.dask.charmtx.com/simulate": "true"}
# Small requests: 1,000 worker pods must fit on the sandbox's kwok nodes.
SMALL = {"requests": {"cpu": "10m", "memory": "32Mi"}}


class Contender(Protocol):
    name: str  # shown in the tables: "dask-operator", "dask-kubernetes"
    namespace: str  # the one namespace it watches; the benchmark's objects go there
    user: str  # the API server's name for it (its ServiceAccount)

    def install(self, kube: Kube) -> None:
        """Namespace, CRDs, RBAC and the operator's pod; returns once the pod is Ready."""

    def operator_pod(self, kube: Kube) -> dict:
        """The operator's (one, Ready) pod."""

    def cluster(self, name: str, replicas: int, real_workers: bool, real_scheduler: bool = True) -> dict:
        """One cluster's resource: kwok runs simulated pods, the pod runner real ones."""

    def scale_path(self, name: str) -> str:
        """The URL path of the cluster's `/scale` subresource."""

    def workers(self, name: str) -> str:
        """Label selector of the cluster's worker pods."""

    def scheduler(self, name: str) -> str:
        """Label selector of the cluster's scheduler pod."""

    def pods(self, name: str | None = None) -> str:
        """Label selector of the cluster's pods (scheduler and workers); all clusters' if no name."""


class DaskOperator:
    """Ours: deploy/ as the seed applies it, its args narrowed to one namespace."""

    name = "dask-operator"
    group = "dask.charmtx.com"

    def __init__(self, namespace: str = "bench-ours") -> None:
        self.namespace = namespace
        self.user = "system:serviceaccount:default:dask-operator"

    def install(self, kube: Kube) -> None:
        kube.kubectl("create", "namespace", self.namespace)
        docs = [d for d in yaml.safe_load_all(kube.kubectl("kustomize", str(ROOT / "deploy")).stdout) if d]
        for d in docs:
            if d["kind"] == "Deployment":  # `run --all-namespaces ...` -> `run --namespace <ns> ...`
                container = d["spec"]["template"]["spec"]["containers"][0]
                container["args"] = ["run", "--namespace", self.namespace, *container["args"][2:]]
        kube.apply(docs, "default")
        self.operator_pod(kube)

    def operator_pod(self, kube: Kube) -> dict:
        return one_ready_pod(kube, "default", "app.kubernetes.io/name=dask-operator", "dask-operator's pod")

    def cluster(self, name: str, replicas: int, real_workers: bool, real_scheduler: bool = True) -> dict:
        def template(real: bool, container: str) -> dict:
            t: dict = {"spec": {"containers": [{"name": container, "resources": copy.deepcopy(SMALL)}]}} \
                if not real else {}
            if not real:
                t["metadata"] = {"labels": dict(SIMULATE)}
            return t
        spec: dict = {"workers": {"replicas": replicas, "template": template(real_workers, WORKER_CONTAINER)}}
        if not real_scheduler:
            spec["scheduler"] = {"template": template(False, SCHEDULER_CONTAINER)}
        return {"apiVersion": f"{self.group}/v1alpha1", "kind": "Cluster",
                "metadata": {"name": name, "namespace": self.namespace}, "spec": spec}

    def scale_path(self, name: str) -> str:
        return f"/apis/{self.group}/v1alpha1/namespaces/{self.namespace}/clusters/{name}/scale"

    def workers(self, name: str) -> str:
        return f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=worker"

    def scheduler(self, name: str) -> str:
        return f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=scheduler"

    def pods(self, name: str | None = None) -> str:
        return f"dask.charmtx.com/cluster={name}" if name else "dask.charmtx.com/cluster"


def one_ready_pod(kube: Kube, namespace: str, selector: str, what: str) -> dict:
    """The one Ready, not terminating pod matching `selector`, within 120 s."""
    def ready() -> dict | None:
        pods = [p for p in kube.pods(namespace, selector)
                if pod_ready(p) and not p["metadata"].get("deletionTimestamp")]
        return pods[0] if len(pods) == 1 else None
    return wait_for(ready, 120, f"{what} Ready")



class ReplicaSetController:
    """The built-in controller, for scale-out only: a Deployment of the same simulated pods."""

    name = "ReplicaSet controller"

    def __init__(self, namespace: str = "bench-rs") -> None:
        self.namespace = namespace
        self.user = "system:serviceaccount:kube-system:replicaset-controller"

    def install(self, kube: Kube) -> None:
        kube.kubectl("create", "namespace", self.namespace)

    def cluster(self, name: str, replicas: int, real_workers: bool = False, real_scheduler: bool = False) -> dict:
        if real_workers:
            raise ValueError("the ReplicaSet peer runs simulated pods only")
        labels = {"app": name, **SIMULATE}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "w", "image": "ghcr.io/dask/dask:latest",
                                             "resources": copy.deepcopy(SMALL)}]}}}}

    def scale_path(self, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}/scale"

    def workers(self, name: str) -> str:
        return f"app={name}"

    def pods(self, name: str | None = None) -> str:
        return f"app={name}" if name else "app"
