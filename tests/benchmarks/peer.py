"""The benchmark's peer: the dask-kubernetes operator, run as users run it.

dask-kubernetes (https://kubernetes.dask.org) is the Dask project's own
operator. The benchmarks compare ours with it in the same run, on the same
sandbox, so both must run the same way: as one pod (a Deployment of its
Helm chart's shape, with the chart's ClusterRole), watching only its own
namespace, standalone (no kopf peering objects).

The sandbox's pod runner ignores images and runs the container's command on
the host, so the operator's command is `kopf` from a virtual environment of
its own (`ensure_peer_venv`): its pins (kr8s 0.20, kopf, aiohttp ...) never
touch ours, while its `dask`/`distributed` are ours, so that its Dask RPC
(the scale-down fallback) speaks the same protocol as the schedulers and
workers, which run with this venv's `dask`. The pod carries the
`dask.charmtx.com/role` label, which makes the runner run it; our operator
only watches pods that also carry `dask.charmtx.com/cluster`, so it ignores
the peer's.

DaskClusters follow the peer's own examples (`dask scheduler` with ports
tcp-comm/http-dashboard and a /health readiness probe; `dask worker --name
$(DASK_WORKER_NAME)`, the name the operator later asks the scheduler to
retire). Real pods get the role label, simulated ones the sandbox's simulate
label, so kwok runs them. By default the schedulers serve the same HTTP routes
as ours, including Dask's HTTP API, which the peer's troubleshooting guide
says to enable: it is the first of the peer's three ways to retire workers
(without it, /api/v1/retire_workers answers 404 and the peer falls back to
the Dask RPC). Scale-down retires only workers registered with a reachable
scheduler, so it needs a real scheduler and real workers: with a simulated
scheduler the handler fails (connection refused) and retries every 60 s; with
simulated workers the scheduler names none to close and no pod is deleted.
"""

from __future__ import annotations

import copy
import fcntl
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from contenders import SIMULATE, SMALL, one_ready_pod
from helpers import Kube

from dask_operator.constants import SCHEDULER_HTTP_ROUTES
from dask_operator.sandbox.build import cache_root

VERSION = "2026.3.0"
GROUP = "kubernetes.dask.org"
CRDS = ("daskcluster.yaml", "daskworkergroup.yaml", "daskjob.yaml", "daskautoscaler.yaml")
CHART = "dask_kubernetes/operator/deployment/helm/dask-kubernetes-operator"
ACCOUNT = "dask-kubernetes-operator"
POD_LABELS = {"app.kubernetes.io/name": ACCOUNT, "dask.charmtx.com/role": "benchmark-peer"}
REAL = {"dask.charmtx.com/role": "peer"}  # the pod runner runs these; kwok the rest
ALL_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]

# templates/clusterrole.yaml of the chart, "*" spelled out.
CLUSTER_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": f"{ACCOUNT}-role-cluster"},
    "rules": [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
         "verbs": ["list", "watch", "patch", "get"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["admissionregistration.k8s.io/v1", "admissionregistration.k8s.io/v1beta1"],
         "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
         "verbs": ["create", "patch"]},
        {"apiGroups": [GROUP],
         "resources": ["daskclusters", "daskworkergroups", "daskjobs", "daskjobs/status",
                       "daskautoscalers", "daskworkergroups/scale"],
         "verbs": ["get", "list", "watch", "patch", "create", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ALL_VERBS},
        {"apiGroups": [""], "resources": ["services", "services/status"], "verbs": ALL_VERBS},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/status"], "verbs": ALL_VERBS},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ALL_VERBS},
    ],
}


def ensure_peer_venv(cache_dir: Path | None = None) -> Path:
    """The peer's virtual environment, `<cache_dir>/dask-kubernetes-<VERSION>`, made once.

    `cache_dir` defaults to `bench/` under the sandbox's cache root
    (`~/.cache/dask-operator`, or $DASK_OPERATOR_CACHE).

    `dask`/`distributed` are pinned to ours. Idempotent: a marker naming the
    requirements is written last, so an interrupted install is redone; a file
    lock keeps two benchmark processes from installing at once.
    """
    venv = (cache_dir or cache_root() / "bench") / f"dask-kubernetes-{VERSION}"
    requirements = [f"dask-kubernetes=={VERSION}",
                    *(f"{d}=={importlib.metadata.version(d)}" for d in ("dask", "distributed"))]
    marker = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().split() == requirements:
            return venv
        marker.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *requirements], check=True)
        marker.write_text("\n".join(requirements) + "\n")
    return venv


def chart_dir(venv: Path) -> Path:
    """The Helm chart shipped inside the installed wheel (CRDs, RBAC)."""
    [chart] = venv.glob(f"lib/python*/site-packages/{CHART}")
    return chart


class DaskKubernetes:
    """dask-kubernetes' operator, as its Helm chart deploys it, narrowed to one namespace."""

    name = "dask-kubernetes"
    group = GROUP

    def __init__(self, namespace: str = "bench-peer", cache_dir: Path | None = None,
                 http_api: bool = True) -> None:
        self.namespace = namespace
        self.cache_dir = cache_dir
        self.http_api = http_api  # schedulers serve Dask's HTTP API (as ours do)
        self.user = f"system:serviceaccount:{namespace}:{ACCOUNT}"

    def install(self, kube: Kube) -> None:
        venv = ensure_peer_venv(self.cache_dir)
        kube.kubectl("create", "namespace", self.namespace)
        for crd in CRDS:  # too big for client-side apply's last-applied annotation
            kube.kubectl("apply", "--server-side", "-f", str(chart_dir(venv) / "crds" / crd))
        for crd in CRDS:
            kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         f"crd/{crd.removesuffix('.yaml')}s.{GROUP}")
        kube.apply(self.manifests(venv))
        self.operator_pod(kube)

    def manifests(self, venv: Path) -> list[dict]:
        """ServiceAccount, ClusterRole(Binding) and the operator's Deployment."""
        ns = self.namespace
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{ACCOUNT}-rolebinding-cluster"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": CLUSTER_ROLE["metadata"]["name"]},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ns}],
        }
        health = {"httpGet": {"path": "/healthz", "port": "health"}}
        container = {
            "name": "dask-kubernetes-operator",
            "image": f"ghcr.io/dask/dask-kubernetes-operator:{VERSION}",  # ignored by the runner
            "command": [str(venv / "bin" / "kopf")],
            # The image's entrypoint, then the chart's args with --all-namespaces narrowed.
            "args": ["run", "-m", "dask_kubernetes.operator.controller",
                     "--liveness=http://0.0.0.0:8080/healthz", "--namespace", ns, "--standalone"],
            "ports": [{"name": "health", "containerPort": 8080, "protocol": "TCP"}],
            # As ours: Ready once kopf's health endpoint answers (the chart has liveness only).
            "readinessProbe": {**health, "periodSeconds": 5},
            "livenessProbe": {**health, "timeoutSeconds": 5},
        }
        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": ACCOUNT, "namespace": ns, "labels": dict(POD_LABELS)},
            "spec": {
                "replicas": 1, "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": ACCOUNT}},
                "template": {"metadata": {"labels": dict(POD_LABELS)},
                             "spec": {"serviceAccountName": ACCOUNT, "containers": [container]}},
            },
        }
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT, "namespace": ns}}
        return [account, copy.deepcopy(CLUSTER_ROLE), binding, deployment]

    def operator_pod(self, kube: Kube) -> dict:
        return one_ready_pod(kube, self.namespace, f"app.kubernetes.io/name={ACCOUNT}",
                             "dask-kubernetes' operator pod")

    def cluster(self, name: str, replicas: int, real_workers: bool, real_scheduler: bool = True) -> dict:
        def pod(real: bool, container: dict) -> dict:
            if not real:
                container["resources"] = copy.deepcopy(SMALL)
            return {"metadata": {"labels": dict(REAL if real else SIMULATE)},
                    "spec": {"containers": [container]}}

        scheduler = pod(real_scheduler, {
            "name": "scheduler", "image": "ghcr.io/dask/dask:latest", "args": ["dask", "scheduler"],
            "ports": [{"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                      {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"}],
            # As the peer's example, with our schedulers' period (the example says 10 s).
            "readinessProbe": {"httpGet": {"port": "http-dashboard", "path": "/health"}, "periodSeconds": 2},
        })
        if self.http_api:
            scheduler["spec"]["containers"][0]["env"] = [
                {"name": "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", "value": json.dumps(SCHEDULER_HTTP_ROUTES)}]
        scheduler["service"] = {
            "type": "ClusterIP",
            "selector": {"dask.org/cluster-name": name, "dask.org/component": "scheduler"},
            "ports": [{"name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm"},
                      {"name": "http-dashboard", "protocol": "TCP", "port": 8787,
                       "targetPort": "http-dashboard"}],
        }
        worker = pod(real_workers, {
            "name": "worker", "image": "ghcr.io/dask/dask:latest",
            "args": ["dask", "worker", "--name", "$(DASK_WORKER_NAME)",
                     "--dashboard", "--dashboard-address", "8788"],
            "ports": [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}],
        })
        worker["replicas"] = replicas
        return {"apiVersion": f"{GROUP}/v1", "kind": "DaskCluster",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"worker": worker, "scheduler": scheduler}}

    def scale_path(self, name: str) -> str:
        return f"/apis/{GROUP}/v1/namespaces/{self.namespace}/daskclusters/{name}/scale"

    def workers(self, name: str) -> str:
        return f"dask.org/cluster-name={name},dask.org/component=worker"

    def scheduler(self, name: str) -> str:
        return f"dask.org/cluster-name={name},dask.org/component=scheduler"

    def pods(self, name: str | None = None) -> str:
        return f"dask.org/cluster-name={name}" if name else "dask.org/cluster-name"
