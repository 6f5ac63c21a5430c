"""The `kuberay` backend against the real KubeRay operator (v1.6.2) in a sandbox.

One sandbox started with `--with kuberay` serves this module; KubeRay's pods are
simulated by kwok, so they become Ready but no Ray process runs: the Ray head
cannot be asked which workers are idle, and a scale-down may remove only
workers that are not Ready. Everything is driven through the backend object
and observed with kubectl; every wait has a deadline.

`OperatorNotInstalled` is checked against the session sandbox of conftest.py,
which has no KubeRay.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import kr8s.asyncio
import pytest

from helpers import Kube as Kubectl
from helpers import SandboxProcess, async_wait_for, start_sandbox, wait_for

from dask_operator.backends.base import SCALE_DOWN_NAMED
from dask_operator.backends.kuberay import KubeRayBackend
from dask_operator.core.pods import pod_ready
from dask_operator.core.scaling import WorkerShape
from dask_operator.errors import ClusterNotFound, InvalidScale, NotScalable, OperatorNotInstalled, ScaleDownUnsafe
from dask_operator.kube import Kube

pytestmark = pytest.mark.e2e

RAYCLUSTERS = "rayclusters.ray.io"
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
HEAD = "ray.io/cluster={},ray.io/node-type=head"
WORKERS = "ray.io/cluster={},ray.io/node-type=worker"
T = TypeVar("T")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ray_sandbox(tmp_path_factory) -> SandboxProcess:
    """A sandbox running the real KubeRay operator; stopped after the module."""
    sb = start_sandbox(tmp_path_factory.mktemp("kuberay"), "--with", "kuberay")
    try:
        assert set(sb.info.operators) == {"kuberay"}
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def kubectl(ray_sandbox: SandboxProcess) -> Kubectl:
    return Kubectl(Path(ray_sandbox.info.kubeconfig))


async def make_backend(kubeconfig: Path) -> tuple[KubeRayBackend, Kube]:
    kube = Kube(await kr8s.asyncio.api(kubeconfig=str(kubeconfig)))
    return KubeRayBackend(kube, via_service=False), kube  # the tests run on the host: the head pod's IP


@pytest.fixture
async def backend(kubectl: Kubectl) -> KubeRayBackend:
    b, kube = await make_backend(kubectl.kubeconfig)
    yield b
    await b.aclose()
    await kube.aclose()


@pytest.fixture
def ns(kubectl: Kubectl, request: pytest.FixtureRequest) -> str:
    """A namespace per test, deleted (and waited for) while KubeRay still runs."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:30].strip("-")
    name = f"kr-{test}-{int(time.time() * 1000) % 100000}"
    kubectl.kubectl("create", "namespace", name)
    yield name
    kubectl.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s")


# ------------------------------------------------------------------ helpers
def ray_container(name: str) -> dict:
    return {"name": name, "image": "rayproject/ray:2.41.0", "resources": RESOURCES}


def ray_cluster(name: str, replicas: int, **spec) -> dict:
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [ray_container("ray-head")]}}},
            "workerGroupSpecs": [{
                "groupName": "workers", "replicas": replicas, "minReplicas": 0, "maxReplicas": 5,
                "rayStartParams": {}, "template": {"spec": {"containers": [ray_container("ray-worker")]}},
            }],
            **spec,
        },
    }


def live(kubectl: Kubectl, ns: str, selector: str) -> list[dict]:
    """The pods matching `selector` that are not being deleted, by name."""
    pods = [p for p in kubectl.pods(ns, selector) if not p["metadata"].get("deletionTimestamp")]
    return sorted(pods, key=lambda p: p["metadata"]["name"])


def names(pods: list[dict]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def uids(pods: list[dict]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}


def when(value: T, condition: Callable[[T], bool]) -> T | None:
    return value if condition(value) else None


def create_ready(kubectl: Kubectl, ns: str, name: str, replicas: int) -> list[dict]:
    """Apply a RayCluster and wait for its Ready head and `replicas` Ready workers; returns the workers."""
    kubectl.apply(ray_cluster(name, replicas), ns)
    wait_for(lambda: any(pod_ready(p) for p in live(kubectl, ns, HEAD.format(name))), 90, f"{name}'s head Ready")
    return wait_ready_workers(kubectl, ns, name, replicas)


def wait_ready_workers(kubectl: Kubectl, ns: str, name: str, n: int) -> list[dict]:
    return wait_for(lambda: when(live(kubectl, ns, WORKERS.format(name)),
                                 lambda ws: len(ws) == n and all(pod_ready(p) for p in ws)),
                    90, f"{n} Ready worker pods of {name}")


def group_spec(kubectl: Kubectl, ns: str, name: str) -> dict:
    return kubectl.get(RAYCLUSTERS, name, "-n", ns)["spec"]["workerGroupSpecs"][0]


def snapshot(kubectl: Kubectl, ns: str, name: str) -> tuple[int, dict, dict[str, str]]:
    """What "nothing changed" compares: the generation, the spec and every pod (name -> uid)."""
    obj = kubectl.get(RAYCLUSTERS, name, "-n", ns)
    pods = kubectl.pods(ns, f"ray.io/cluster={name}")
    return obj["metadata"]["generation"], obj["spec"], uids(pods)



# ------------------------------------------------------------------ scale
async def test_scale_up_changes_the_real_pods_and_clears_stale_names(
        kubectl: Kubectl, backend: KubeRayBackend, ns: str) -> None:
    (first,) = create_ready(kubectl, ns, "rc", 1)
    stale = {"workersToDelete": ["rc-workers-worker-gone1"]}  # as an earlier scale-down leaves it
    kubectl.kubectl("patch", f"{RAYCLUSTERS}/rc", "-n", ns, "--type=json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": stale}]))
    assert group_spec(kubectl, ns, "rc")["scaleStrategy"] == stale

    updated = await backend.scale(ns, "rc", 3)

    g = updated["spec"]["workerGroupSpecs"][0]
    assert (g["replicas"], g["scaleStrategy"]["workersToDelete"]) == (3, []), "stale names from before are dropped"
    workers = wait_ready_workers(kubectl, ns, "rc", 3)
    assert first["metadata"]["uid"] in uids(workers).values(), "the existing worker stays"
    status = await async_wait_for(lambda: _status_when(backend, ns, "rc", lambda s: s.ready_workers == 3), 60,
                              "status with 3 Ready workers")
    assert (status.desired, status.head_ready, status.min_replicas, status.max_replicas, status.scale_down) == \
        (3, True, 0, 5, SCALE_DOWN_NAMED)
    assert any(c.get("type") == "HeadPodReady" for c in status.conditions)


async def _status_when(backend: KubeRayBackend, ns: str, name: str, ok: Callable):
    status = await backend.status(await backend.get(ns, name))
    return status if ok(status) else None


async def test_scale_down_of_ready_workers_is_refused_and_changes_nothing(
        kubectl: Kubectl, backend: KubeRayBackend, ns: str) -> None:
    create_ready(kubectl, ns, "rc", 3)
    before = snapshot(kubectl, ns, "rc")

    with pytest.raises(ScaleDownUnsafe) as raised:
        await backend.scale(ns, "rc", 1)

    message = str(raised.value)
    print("refused:", message)
    assert "cannot choose 2 of the 2 workers to remove" in message
    assert "the Ray head could not be asked" in message, message  # kwok runs no Ray: nothing answers on 8265
    assert snapshot(kubectl, ns, "rc") == before, "same spec, same pods"


async def test_pending_surplus_goes_by_name_then_the_names_are_dropped(
        kubectl: Kubectl, backend: KubeRayBackend, ns: str) -> None:
    (ready,) = create_ready(kubectl, ns, "rc", 1)
    nowhere = WorkerShape(node_selector={"dask-operator.test/no-such-node": "true"})
    await backend.scale(ns, "rc", 3, shape=nowhere)
    pending = wait_for(lambda: when([p for p in live(kubectl, ns, WORKERS.format("rc"))
                                     if p["metadata"]["uid"] != ready["metadata"]["uid"]],
                                    lambda ps: len(ps) == 2 and all(p["status"].get("phase") == "Pending"
                                                                    for p in ps)),
                       60, "2 new worker pods, Pending (their nodeSelector matches no node)")
    assert uids(live(kubectl, ns, WORKERS.format("rc")))[ready["metadata"]["name"]] == ready["metadata"]["uid"]

    updated = await backend.scale(ns, "rc", 1)

    assert sorted(updated["spec"]["workerGroupSpecs"][0]["scaleStrategy"]["workersToDelete"]) == names(pending)
    wait_for(lambda: uids(kubectl.pods(ns, WORKERS.format("rc"))) == uids([ready]), 60,
             f"only the Ready worker {ready['metadata']['name']} left, the Pending ones deleted by name")

    updated = await backend.scale(ns, "rc", 2)  # KubeRay never clears the list: this scale must

    g = updated["spec"]["workerGroupSpecs"][0]
    assert (g["replicas"], g["scaleStrategy"]["workersToDelete"]) == (2, [])
    wait_for(lambda: len(live(kubectl, ns, WORKERS.format("rc"))) == 2, 60, "a second worker pod")
    assert uids(live(kubectl, ns, WORKERS.format("rc")))[ready["metadata"]["name"]] == ready["metadata"]["uid"]


# ------------------------------------------------------------------ head
async def test_head_restart_gives_a_new_ready_head(kubectl: Kubectl, backend: KubeRayBackend, ns: str) -> None:
    create_ready(kubectl, ns, "rc", 1)
    old = await backend.head_pod(ns, "rc")
    assert old is not None and pod_ready(old)

    deleted = await backend.restart_head(ns, "rc")

    assert deleted["metadata"]["uid"] == old["metadata"]["uid"]
    new = wait_for(lambda: when(live(kubectl, ns, HEAD.format("rc")),
                                lambda ps: len(ps) == 1 and ps[0]["metadata"]["uid"] != old["metadata"]["uid"]
                                and pod_ready(ps[0])), 90, "a new Ready head pod")
    assert (await backend.head_pod(ns, "rc"))["metadata"]["uid"] == new[0]["metadata"]["uid"]
    status = await async_wait_for(lambda: _status_when(backend, ns, "rc", lambda s: s.head_ready), 60, "head_ready")
    assert status.head_ready


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "name, replicas, group, error, message",
    [
        pytest.param("rc", -1, None, InvalidScale, "non-negative integer", id="negative"),
        pytest.param("rc", 1.5, None, InvalidScale, "got 1.5", id="non-integer"),
        pytest.param("rc", "2", None, InvalidScale, "got '2'", id="string"),
        pytest.param("rc", 6, None, InvalidScale, "at most 5", id="above-max-replicas"),
        pytest.param("rc", 2, "gpu", InvalidScale, "unknown worker group 'gpu'", id="unknown-group"),
        pytest.param("missing", 2, None, ClusterNotFound, "RayCluster (ray.io/v1) {ns}/missing does not exist",
                     id="missing-cluster"),
        pytest.param("auto", 2, None, NotScalable, "enableInTreeAutoscaling: true", id="in-tree-autoscaling"),
    ],
)
async def test_bad_input_changes_nothing(kubectl: Kubectl, backend: KubeRayBackend, bad_input_ns: str,
                                         name, replicas, group, error, message) -> None:
    ns = bad_input_ns
    before = {n: snapshot(kubectl, ns, n) for n in ("rc", "auto")}

    with pytest.raises(error) as raised:
        await backend.scale(ns, name, replicas, group=group)

    assert message.format(ns=ns) in str(raised.value)
    assert {n: snapshot(kubectl, ns, n) for n in ("rc", "auto")} == before


@pytest.fixture(scope="module")
def bad_input_ns(kubectl: Kubectl) -> str:
    """One namespace for every bad-input case: a Ready RayCluster `rc` (2 workers)
    and `auto`, whose in-tree autoscaling owns its counts."""
    name = f"kr-bad-input-{int(time.time() * 1000) % 100000}"
    kubectl.kubectl("create", "namespace", name)
    try:
        create_ready(kubectl, name, "rc", 2)
        kubectl.apply(ray_cluster("auto", 1, enableInTreeAutoscaling=True), name)
        wait_for(lambda: live(kubectl, name, HEAD.format("auto")), 90, "auto's head pod")
        yield name
    finally:
        kubectl.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s")


async def test_operator_not_installed(kube: Kubectl, namespace: str) -> None:
    """The session sandbox (conftest.py) runs no KubeRay: its CRD is not served."""
    if "rayclusters" in kube.kubectl("api-resources", "--api-group=ray.io", "-o", "name").stdout:
        pytest.skip("this cluster serves ray.io RayClusters")
    backend, api = await make_backend(kube.kubeconfig)
    try:
        for call in (lambda: backend.scale(namespace, "rc", 1), lambda: backend.get(namespace, "rc"),
                     lambda: backend.list(namespace)):
            with pytest.raises(OperatorNotInstalled, match="RayCluster \\(ray.io/v1\\) is not served"):
                await call()
    finally:
        await backend.aclose()
        await api.aclose()
