"""Third-party operators run against the sandbox: KubeRay v1.6.2 and Domino's
distributed-compute-operator (DCO) v0.8.2, built from their Go modules by
`dask_operator.sandbox.thirdparty`.

One sandbox serves both (`dask-operator sandbox --with kuberay,dco`, which
installs their CRDs server-side: KubeRay's exceed client-side apply's 256 KiB
annotation). Every pod these operators create is simulated by kwok.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from helpers import Kube, start_sandbox, wait_for
from test_backend_kuberay import ray_cluster

from dask_operator.sandbox import SandboxInfo
from dask_operator.sandbox.procs import alive

# A cold start builds both operators (~7 min on 2 cores) inside the first test's
# setup; every wait below has its own deadline.
pytestmark = pytest.mark.e2e

NAMES = ("kuberay", "dco")
KUBERAY = "rayclusters.ray.io"
DCO_GROUP = "distributed-compute.dominodatalab.com"
DASK = f"daskclusters.{DCO_GROUP}"
DCO_RAY = f"rayclusters.{DCO_GROUP}"
DCO_SPARK = f"sparkclusters.{DCO_GROUP}"
T = TypeVar("T")
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


@dataclass
class Operators:
    kube: Kube
    info: SandboxInfo

    def check_alive(self) -> None:
        for name, op in self.info.operators.items():
            if not alive(op["pid"]):
                log = Path(self.info.state_dir) / "logs" / f"{name}.log"
                raise AssertionError(f"{name} exited:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def operators(tmp_path_factory) -> Operators:
    """One sandbox started with `--with kuberay,dco` (the operators run as admin); stopped at the end."""
    sb = start_sandbox(tmp_path_factory.mktemp("thirdparty"), "--with", ",".join(NAMES))
    try:
        ops = Operators(Kube(Path(sb.info.kubeconfig)), sb.info)
        assert set(sb.info.operators) == set(NAMES)
        yield ops
        ops.check_alive()  # neither crashed during the tests
    finally:
        sb.stop()


@pytest.fixture
def ns(operators: Operators, request: pytest.FixtureRequest) -> str:
    """A namespace per test, deleted (and waited for) while the operators still run."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:30].strip("-")
    name = f"tp-{test}-{int(time.time() * 1000) % 100000}"
    operators.kube.kubectl("create", "namespace", name)
    yield name
    operators.kube.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s")


def live_pods(kube: Kube, ns: str, selector: str) -> list[str]:
    """Names of the pods matching `selector` that are not being deleted."""
    return sorted(p["metadata"]["name"] for p in kube.pods(ns, selector)
                  if not p["metadata"].get("deletionTimestamp"))


def when(value: T, condition: Callable[[T], bool]) -> T | None:
    """`value` if it meets `condition`, else None: a wait_for predicate that returns what it saw."""
    return value if condition(value) else None


def all_pods(kube: Kube, ns: str, selector: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in kube.pods(ns, selector))


def test_operators_listen_only_on_loopback(operators: Operators) -> None:
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    for name, op in operators.info.operators.items():
        local = [line.split()[3] for line in listening if f"pid={op['pid']}," in line]
        assert local, f"{name} listens on no TCP port"
        assert all(addr.startswith("127.0.0.1:") for addr in local), f"{name} listens on {local}"


# ------------------------------------------------------------------ KubeRay

def test_kuberay_creates_and_scales_a_raycluster(operators: Operators, ns: str) -> None:
    kube = operators.kube
    kube.apply(ray_cluster("rc", 1), ns)
    head, workers = "ray.io/cluster=rc,ray.io/node-type=head", "ray.io/cluster=rc,ray.io/node-type=worker"
    wait_for(lambda: len(live_pods(kube, ns, head)) == 1 and len(live_pods(kube, ns, workers)) == 1,
             60, "KubeRay's head pod and 1 worker pod")

    kube.kubectl("patch", f"{KUBERAY}/rc", "-n", ns, "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3}]))
    three = wait_for(lambda: when(live_pods(kube, ns, workers), lambda w: len(w) == 3), 60, "3 worker pods")
    # Every worker Running (kwok) so none is removed as unhealthy instead.
    wait_for(lambda: all(p["status"].get("phase") == "Running" for p in kube.pods(ns, workers)), 60,
             "3 Running workers")

    doomed, keep = three[:2], three[2]
    kube.kubectl("patch", f"{KUBERAY}/rc", "-n", ns, "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1},
        {"op": "add", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {"workersToDelete": doomed}},
    ]))
    wait_for(lambda: all_pods(kube, ns, workers) == [keep], 60, f"only {keep} left of {three}")
    assert live_pods(kube, ns, head), "the head pod survives the scale-down"
    status = wait_for(lambda: when(kube.get(KUBERAY, "rc", "-n", ns).get("status", {}),
                                   lambda s: s.get("desiredWorkerReplicas") == 1), 60, "RayCluster status")
    print("KubeRay RayCluster status:", json.dumps(status, indent=1))
    print("KubeRay scaleStrategy after the scale-down:",
          kube.get(KUBERAY, "rc", "-n", ns)["spec"]["workerGroupSpecs"][0].get("scaleStrategy"))
    operators.check_alive()


# ---------------------------------------------------------------------- DCO
def dco_image(repository: str, tag: str) -> dict:
    return {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}


def dask_cluster(name: str, replicas: int) -> dict:
    # No webhook runs, so nothing is defaulted: every port and the image are set.
    return {
        "apiVersion": f"{DCO_GROUP}/v1alpha1", "kind": "DaskCluster", "metadata": {"name": name},
        "spec": {
            "image": dco_image("daskdev/dask", "2021.7.2"),
            "schedulerPort": 8786, "dashboardPort": 8787, "workerPort": 3000, "nannyPort": 3001,
            "scheduler": {"resources": RESOURCES},
            "worker": {"replicas": replicas, "resources": RESOURCES},
        },
    }


def test_dco_daskcluster_reconciles_and_scales(operators: Operators, ns: str) -> None:
    kube = operators.kube
    kube.apply(dask_cluster("dc", 1), ns)
    sel = "app.kubernetes.io/instance=dc,app.kubernetes.io/name=dask"
    workers = f"{sel},app.kubernetes.io/component=worker"
    wait_for(lambda: len(kube.get("statefulsets", "-n", ns, "-l", sel)["items"]) == 2, 60,
             "DCO's scheduler and worker StatefulSets")
    wait_for(lambda: len(live_pods(kube, ns, f"{sel},app.kubernetes.io/component=scheduler")) == 1
             and len(live_pods(kube, ns, workers)) == 1, 60, "the scheduler pod and 1 worker pod")
    status = wait_for(lambda: when(kube.get(DASK, "dc", "-n", ns).get("status", {}),
                                   lambda s: len(s.get("nodes", [])) == 2), 60, "status.nodes listing both pods")
    print("DCO DaskCluster status (1 worker):", json.dumps(status, indent=1))
    assert status["workerSelector"]

    scale = json.loads(kube.kubectl(
        "get", "--raw", f"/apis/{DCO_GROUP}/v1alpha1/namespaces/{ns}/daskclusters/dc/scale").stdout)
    print("DCO DaskCluster /scale:", json.dumps(scale, indent=1))
    kube.kubectl("scale", f"{DASK}/dc", "--replicas=3", "-n", ns)
    wait_for(lambda: len(live_pods(kube, ns, workers)) == 3, 90, "3 worker pods")
    status = wait_for(lambda: when(kube.get(DASK, "dc", "-n", ns)["status"],
                                   lambda s: s.get("workerReplicas") == 3 and len(s.get("nodes", [])) == 4),
                      60, "status after the scale")
    print("DCO DaskCluster status (3 workers):", json.dumps(status, indent=1))
    operators.check_alive()


def dco_ray_cluster(name: str) -> dict:
    return {
        "apiVersion": f"{DCO_GROUP}/v1alpha1", "kind": "RayCluster", "metadata": {"name": name},
        "spec": {
            "image": dco_image("rayproject/ray", "1.6.0-cpu"),
            "port": 6379, "redisShardPorts": [6380, 6381], "clientServerPort": 10001,
            "objectManagerPort": 2384, "nodeManagerPort": 2385, "gcsServerPort": 2386,
            "dashboardPort": 8265, "enableDashboard": True,
            "head": {"resources": RESOURCES}, "worker": {"replicas": 1, "resources": RESOURCES},
        },
    }


def dco_spark_cluster(name: str) -> dict:
    return {
        "apiVersion": f"{DCO_GROUP}/v1alpha1", "kind": "SparkCluster", "metadata": {"name": name},
        "spec": {
            "image": dco_image("bitnami/spark", "3.0.2-debian-10-r0"),
            "clusterPort": 7077, "masterWebPort": 8080, "workerWebPort": 8081,
            "driver": {"port": 4041, "uiPort": 4040, "blockManagerPort": 4042},
            "master": {"resources": RESOURCES}, "worker": {"replicas": 1, "resources": RESOURCES},
        },
    }


@pytest.mark.parametrize("kind", ["ray", "spark"])
def test_dco_ray_and_spark_clusters_reconcile(operators: Operators, ns: str, kind: str) -> None:
    kube = operators.kube
    obj, resource = (dco_ray_cluster("c"), DCO_RAY) if kind == "ray" else (dco_spark_cluster("c"), DCO_SPARK)
    kube.apply(obj, ns)
    sel = f"app.kubernetes.io/instance=c,app.kubernetes.io/name={kind}"
    sets = wait_for(lambda: when(kube.get("statefulsets", "-n", ns, "-l", sel)["items"], lambda s: len(s) == 2),
                    60, f"DCO's two {kind} StatefulSets")
    print(f"DCO {kind} StatefulSets:", sorted(s["metadata"]["name"] for s in sets))
    wait_for(lambda: len(live_pods(kube, ns, sel)) == 2, 60, f"the {kind} pods")
    status = wait_for(lambda: when(kube.get(resource, "c", "-n", ns).get("status", {}),
                                   lambda s: len(s.get("nodes", [])) == 2), 60, f"{kind} status.nodes")
    print(f"DCO {kind} status:", json.dumps(status, indent=1))
    operators.check_alive()
