"""One contract every scaling backend passes, each against its real operator.

In the style of KEDA's scaler tests, `CASES` is a table: each row names the
backend, the sandbox operators it needs, a factory of a minimal valid object,
and the label selectors of its worker and head pods -- taken from the
operator (its docs, its source, a real run), never from the backend's code,
so the test sees the pods independently of what it checks.

- `dask-operator` (our `Cluster`): the session sandbox with deploy/'s operator
  (conftest's `kube`, `operator` and `namespace`); the scheduler runs for real,
  the workers are simulated by kwok (the simulate label on their template).
- `dco-dask`, `dco-ray`, `dco-spark`: a `--with dco` sandbox running Domino's
  operator (shared with test_backend_dco.py); kwok simulates every pod.
- `kuberay`: when `dask_operator/backends/kuberay.py` exists and imports, a
  `--with kuberay` sandbox too.

The contract, each item a test per case:
1. get and list, list filtered by a label selector (the owner label), a
   missing cluster is ClusterNotFound;
2. the uniform status agrees with the pods: desired, Ready workers, head Ready;
3. a scale up through the backend changes the real worker pods;
4. a head restart brings a new Ready head pod;
5. bad input (negative or non-integer replicas, an unknown worker group, a
   missing cluster) raises the interface's errors and leaves the object's spec
   and resourceVersion as they were;
6. a head shape (a hardware tier) brings a new Ready head pod with the
   shape's resources; the same shape again changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kr8s.asyncio
import pytest

from helpers import Kube, async_wait_for, wait_for
from test_backend_dco import (
    DCO_RESOURCES,
    OWNER,
    WANTED,
    ThirdParty,
    dco_cluster,
    dco_resource,
    dco_selector,
    delete_namespace,
    live,
    names,
    namespace_name,
    thirdparty_sandbox,
)

from dask_operator.backends.base import SCALE_DOWN_FRAMEWORK, SCALE_DOWN_NAMED, SCALE_DOWN_OPERATOR, Backend
from dask_operator.backends.dask_cluster import DaskClusterBackend
from dask_operator.backends.dco import DcoDaskBackend, DcoRayBackend, DcoSparkBackend
from dask_operator.core.pods import pod_ready
from dask_operator.core.scaling import WorkerShape
from dask_operator.errors import ClusterNotFound, InvalidScale
from dask_operator.kube import Kube as ApiKube

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Case:
    backend: Callable[[ApiKube], Backend]
    operators: tuple[str, ...]  # third-party operators the sandbox runs; () = ours, from deploy/
    make: Callable[[str, int, str], dict]  # (name, workers, owner) -> a minimal valid object
    resource: str  # for kubectl, fully qualified
    workers: Callable[[str], str]  # cluster name -> worker pods' selector
    head: Callable[[str], str]  # cluster name -> head pod's selector
    cleanup: tuple[str, ...] = ()  # resources to delete before the namespace (finalizers)

    @property
    def id(self) -> str:
        return self.backend.name


# ------------------------------------------------------------ the cases
def our_cluster(name: str, workers: int, owner: str) -> dict:
    worker = {"name": "worker", "image": "ghcr.io/dask/dask:latest", "command": ["dask", "worker"]}
    return {
        "apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster",
        "metadata": {"name": name, "labels": {OWNER: owner}},
        "spec": {"scheduler": {"template": {"spec": {"containers": [
                     {"name": "scheduler", "image": "ghcr.io/dask/dask:latest"}]}}},
                 "workers": {"replicas": workers, "template": {
                     "metadata": {"labels": {"sandbox.dask.charmtx.com/simulate": "true"}},
                     "spec": {"containers": [worker]}}}},
    }


def dco_case(backend: type, framework: str, head: str) -> Case:
    return Case(
        backend, ("dco",),
        lambda name, workers, owner: dco_cluster(framework, name, workers, owner=owner),
        dco_resource(framework),
        lambda name: dco_selector(framework, name, "worker"),
        lambda name: dco_selector(framework, name, head),
        DCO_RESOURCES,
    )


def kuberay_cluster(name: str, workers: int, owner: str) -> dict:
    resources = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}

    def container(role: str) -> dict:
        return {"name": f"ray-{role}", "image": "rayproject/ray:2.41.0", "resources": resources}
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name, "labels": {OWNER: owner}},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container("head")]}}},
            "workerGroupSpecs": [{"groupName": "workers", "replicas": workers, "minReplicas": 0, "maxReplicas": 5,
                                  "rayStartParams": {}, "template": {"spec": {"containers": [container("worker")]}}}],
        },
    }


CASES = [
    Case(DaskClusterBackend, (), our_cluster, "clusters.dask.charmtx.com",
         lambda name: f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=worker",
         lambda name: f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=scheduler"),
    dco_case(DcoDaskBackend, "dask", "scheduler"),
    dco_case(DcoRayBackend, "ray", "head"),
    dco_case(DcoSparkBackend, "spark", "master"),
]

try:  # another backend file, written alongside this suite: in the table once it exists
    from dask_operator.backends.kuberay import KubeRayBackend
except Exception:  # noqa: BLE001 -- absent, or not importable yet
    KubeRayBackend = None
if KubeRayBackend is not None:
    CASES.append(Case(KubeRayBackend, ("kuberay",), kuberay_cluster, "rayclusters.ray.io",
                      lambda name: f"ray.io/cluster={name},ray.io/node-type=worker",
                      lambda name: f"ray.io/cluster={name},ray.io/node-type=head",
                      ("rayclusters.ray.io",)))

# Backends whose operator cannot run in the sandbox, and where they are tested instead.
NOT_RUNNABLE = {"spark-operator": "Java operator; schema-level tests in test_backend_dco.py"}
THIRD_PARTY = tuple(sorted({op for case in CASES for op in case.operators}))
WANTED.update(THIRD_PARTY)  # one sandbox for this module and test_backend_dco.py


# ------------------------------------------------------------ fixtures
@dataclass
class Env:
    case: Case
    kube: Kube
    ns: str
    backend: Backend
    sandbox: ThirdParty | None

    def create(self, name: str, workers: int = 1, owner: str = "alice") -> None:
        self.kube.apply(self.case.make(name, workers, owner), self.ns)

    def pods(self, selector: str) -> list[dict]:
        return live(self.kube.pods(self.ns, selector))

    def ready_workers(self, name: str) -> list[str]:
        return names([p for p in self.pods(self.case.workers(name)) if pod_ready(p)])

    def ready_heads(self, name: str) -> list[dict]:
        return [p for p in self.pods(self.case.head(name)) if pod_ready(p)]

    def wait_ready(self, name: str, workers: int, timeout: float = 120) -> list[str]:
        """A Ready head and exactly `workers` Ready worker pods, as the test sees them."""
        return wait_for(lambda: (lambda w: w if len(w) == workers and len(self.ready_heads(name)) == 1 else None)(
            self.ready_workers(name)), timeout, f"{self.case.id} {name}: a Ready head and {workers} Ready workers")

    def snapshot(self, name: str) -> tuple[dict, str]:
        obj = self.kube.get(self.case.resource, name, "-n", self.ns)
        return obj["spec"], obj["metadata"]["resourceVersion"]

    def settled(self, name: str, timeout: float = 60) -> tuple[dict, str]:
        """The object once two reads a poll apart agree (its operator done writing status)."""
        seen: list[tuple[dict, str]] = []

        def stable() -> tuple[dict, str] | None:
            seen.append(self.snapshot(name))
            return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] else None
        return wait_for(stable, timeout, f"{name} settled", interval=1.0)

    def check_alive(self) -> None:
        if self.sandbox is not None:
            self.sandbox.check_alive()


@pytest.fixture(params=CASES, ids=lambda c: c.id)
async def env(request: pytest.FixtureRequest, tmp_path_factory) -> Env:
    case: Case = request.param
    sandbox = None
    if case.operators:
        sandbox = thirdparty_sandbox(request.config, tmp_path_factory, THIRD_PARTY)
        kube = sandbox.kube
        ns = namespace_name(request, "contract")
        kube.kubectl("create", "namespace", ns)
    else:
        kube = request.getfixturevalue("kube")
        request.getfixturevalue("operator")
        ns = request.getfixturevalue("namespace")  # deleted and waited for by conftest
    api = ApiKube(await kr8s.asyncio.api(kubeconfig=str(kube.kubeconfig)))
    try:
        yield Env(case, kube, ns, case.backend(api), sandbox)
    finally:
        await api.aclose()
        if sandbox is not None:
            delete_namespace(kube, ns, case.cleanup)


async def pods_view(env: Env, name: str) -> tuple[Any, dict]:
    """The backend's status and, read after it, what the pods say."""
    status = await env.backend.status(await env.backend.get(env.ns, name))
    return status, {"ready_workers": len(env.ready_workers(name)), "head_ready": bool(env.ready_heads(name))}


async def consistent_status(env: Env, name: str, desired: int, timeout: float = 60):
    async def check():
        status, pods = await pods_view(env, name)
        agrees = (status.ready_workers, status.head_ready) == (pods["ready_workers"], pods["head_ready"])
        return status if agrees and status.desired == desired and status.ready_workers == desired else None
    return await async_wait_for(check, timeout, f"{env.case.id}: a status that agrees with the pods at {desired} workers")


# ------------------------------------------------------------ the contract
async def test_get_and_list_by_owner_label(env: Env) -> None:
    env.create("a", owner="alice")
    env.create("b", owner="bob")
    got = await env.backend.get(env.ns, "a")
    assert (got["metadata"]["name"], got["metadata"]["namespace"]) == ("a", env.ns)
    assert got["apiVersion"] == env.backend.api_version
    assert names(await env.backend.list(env.ns, f"{OWNER}=alice")) == ["a"]
    assert names(await env.backend.list(env.ns, f"{OWNER}=bob")) == ["b"]
    assert names(await env.backend.list(env.ns)) == ["a", "b"]
    everywhere = await env.backend.list(None, f"{OWNER}=alice")
    assert [o["metadata"]["name"] for o in everywhere if o["metadata"]["namespace"] == env.ns] == ["a"]
    with pytest.raises(ClusterNotFound):
        await env.backend.get(env.ns, "missing")
    env.check_alive()


async def test_status_agrees_with_the_pods(env: Env) -> None:
    env.create("c", 1)
    env.wait_ready("c", 1)
    status = await consistent_status(env, "c", 1)
    assert status.head_ready
    assert status.scale_down in (SCALE_DOWN_FRAMEWORK, SCALE_DOWN_NAMED, SCALE_DOWN_OPERATOR)
    assert all(isinstance(c, dict) and "type" in c and "status" in c for c in status.conditions)
    env.check_alive()


async def test_scale_up_changes_the_worker_pods(env: Env) -> None:
    env.create("c", 1)
    before = env.wait_ready("c", 1)
    await consistent_status(env, "c", 1)
    updated = await env.backend.scale(env.ns, "c", 3)
    assert updated["metadata"]["name"] == "c"
    after = env.wait_ready("c", 3)
    assert set(before) <= set(after), "scaling up removes no worker"
    status = await consistent_status(env, "c", 3)
    assert status.desired == 3
    env.check_alive()


async def test_head_restart_brings_a_new_ready_head(env: Env) -> None:
    env.create("c", 1)
    env.wait_ready("c", 1)
    old = await env.backend.head_pod(env.ns, "c")
    assert old is not None and pod_ready(old)
    assert [p["metadata"]["uid"] for p in env.ready_heads("c")] == [old["metadata"]["uid"]], "the backend's head"
    started = time.time()
    deleted = await env.backend.restart_head(env.ns, "c")
    assert deleted["metadata"]["uid"] == old["metadata"]["uid"]

    def new_ready_head() -> dict | None:
        heads = env.ready_heads("c")
        return heads[0] if len(heads) == 1 and heads[0]["metadata"]["uid"] != old["metadata"]["uid"] else None
    new = wait_for(new_ready_head, 120, "a new Ready head pod")
    assert (await env.backend.head_pod(env.ns, "c"))["metadata"]["uid"] == new["metadata"]["uid"]
    status = await consistent_status(env, "c", 1)
    assert status.head_ready
    print(f"{env.case.id}: new head {new['metadata']['name']} Ready {time.time() - started:.1f}s after the restart")
    env.check_alive()


async def test_bad_input_changes_nothing(env: Env) -> None:
    env.create("c", 1)
    env.wait_ready("c", 1)
    await consistent_status(env, "c", 1)
    before = env.settled("c")
    for name, replicas, kwargs, error in [
        ("c", -1, {}, InvalidScale),
        ("c", 1.5, {}, InvalidScale),
        ("c", "2", {}, InvalidScale),
        ("c", True, {}, InvalidScale),
        ("c", None, {}, InvalidScale),
        ("c", 2, {"group": "no-such-group"}, InvalidScale),
        ("missing", 2, {}, ClusterNotFound),
    ]:
        with pytest.raises(error):
            await env.backend.scale(env.ns, name, replicas, **kwargs)
    assert env.snapshot("c") == before, "spec and resourceVersion unchanged"
    assert env.kube.kubectl("get", env.case.resource, "missing", "-n", env.ns, check=False).returncode != 0
    env.wait_ready("c", 1)
    env.check_alive()


async def test_head_shape_restarts_the_head_onto_it(env: Env) -> None:
    env.create("c", 1)
    env.wait_ready("c", 1)
    old = await env.backend.head_pod(env.ns, "c")
    resources = {"requests": {"cpu": "200m", "memory": "300Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    shape = WorkerShape(resources=resources)
    _, restarts = await env.backend.shape_head(env.ns, "c", shape)
    assert restarts, "a new shape restarts the head"

    def new_shaped_head() -> dict | None:
        heads = env.ready_heads("c")
        if len(heads) == 1 and heads[0]["metadata"]["uid"] != old["metadata"]["uid"]:
            return heads[0] if heads[0]["spec"]["containers"][0].get("resources") == resources else None
        return None
    wait_for(new_shaped_head, 180, "a new Ready head pod with the shape's resources")
    before = env.settled("c")
    _, again = await env.backend.shape_head(env.ns, "c", shape)
    assert not again and env.snapshot("c") == before, "the same shape again writes nothing"
    env.check_alive()


def test_the_table_covers_every_registered_backend() -> None:
    """Every backend the registry knows has a row here, but those whose operator cannot run."""
    from dask_operator.backends.registry import FACTORIES

    missing = set(FACTORIES) - {case.id for case in CASES} - set(NOT_RUNNABLE)
    assert not missing, f"registered backends without a contract case: {sorted(missing)}"
    assert len({case.id for case in CASES}) == len(CASES)
