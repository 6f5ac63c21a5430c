"""The `dco-dask`, `dco-ray` and `dco-spark` backends against the real Domino
distributed-compute-operator (DCO v0.8.2, `--with dco` sandbox), and the
`spark-operator` backend against Apache spark-kubernetes-operator's CRD.

Apache's operator is Java and is **not run** here: its SparkCluster is tested
at the schema level, on the sandbox's real API server (which validates and
prunes every patched object against the 1.0.0 CRD), and there is no master or
worker pod unless a test makes one.

Every pod DCO creates is simulated by kwok. DCO objects carry a finalizer, so
each test's namespace is emptied and deleted (and waited for) while DCO runs;
the sandbox is shared with tests/e2e/test_backends_contract.py through
`thirdparty_sandbox`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from helpers import Kube, SandboxProcess, async_wait_for, start_sandbox, wait_for

from dask_operator.backends.base import SCALE_DOWN_OPERATOR
from dask_operator.backends.dco import DcoBackend, DcoDaskBackend, DcoRayBackend, DcoSparkBackend
from dask_operator.backends.spark_operator import SparkOperatorBackend
from dask_operator.core import dco as dco_rules
from dask_operator.core.pods import pod_ready
from dask_operator.core.scaling import WorkerShape
from dask_operator.errors import ClusterNotFound, HeadNotFound, InvalidScale, NotScalable, OperatorNotInstalled
from dask_operator.kube import Kube as ApiKube
from dask_operator.sandbox import SandboxInfo
from dask_operator.sandbox.procs import alive

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DCO_GROUP = "distributed-compute.dominodatalab.com"
DCO_KINDS = {"dask": DcoDaskBackend, "ray": DcoRayBackend, "spark": DcoSparkBackend}
DCO_RESOURCES = tuple(f"{b.plural}.{DCO_GROUP}" for b in DCO_KINDS.values())
OWNER = "dominodatalab.com/starting-user-id"
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
APACHE_CRD = ROOT.parent / "shared" / "crds" / "sparkclusters.spark.apache.org-v1.yaml"  # ../shared beside the checkout
APACHE = "sparkclusters.spark.apache.org"


# ------------------------------------------------------------ the sandbox
@dataclass
class ThirdParty:
    """A sandbox running third-party operators (`--with ...`), shared by the session."""

    kube: Kube
    info: SandboxInfo
    process: SandboxProcess

    def check_alive(self) -> None:
        for name, op in self.info.operators.items():
            if not alive(op["pid"]):
                log = Path(self.info.state_dir) / "logs" / f"{name}.log"
                raise AssertionError(f"{name} exited:\n{log.read_text(errors='replace')[-3000:]}")

    async def api(self) -> ApiKube:
        """The product's Kubernetes client, as the backends use it, with the admin kubeconfig."""
        return ApiKube(await kr8s.asyncio.api(kubeconfig=self.info.kubeconfig))


_SANDBOXES = pytest.StashKey[list]()
# Operators other modules of the session need (they add to it when imported, i.e. at
# collection, before any test runs): the first sandbox starts with them all, so one serves all.
WANTED: set[str] = set()


def thirdparty_sandbox(config: pytest.Config, tmp_path_factory, operators: tuple[str, ...]) -> ThirdParty:
    """The session's sandbox running (at least) `operators`, started on first use and
    stopped when the session ends (after every test's namespace is gone)."""
    running = config.stash.setdefault(_SANDBOXES, [])
    for tp in running:
        if set(operators) <= set(tp.info.operators):
            return tp
    sb = start_sandbox(tmp_path_factory.mktemp("thirdparty"), "--with", ",".join(sorted({*operators, *WANTED})))
    tp = ThirdParty(Kube(Path(sb.info.kubeconfig)), sb.info, sb)
    running.append(tp)

    def stop() -> None:
        sb.stop()
        leftovers = [name for name, pid in sb.info.pids.items() if alive(pid)]
        assert not leftovers, f"sandbox processes survived teardown: {leftovers}"
    config.add_cleanup(stop)
    assert set(operators) <= set(tp.info.operators)
    return tp


def namespace_name(request: pytest.FixtureRequest, prefix: str) -> str:
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:34].strip("-")
    return f"{prefix}-{test}-{int(time.time() * 1000) % 100000}"


def delete_namespace(kube: Kube, ns: str, resources: tuple[str, ...]) -> None:
    """Delete the custom resources first (their operators' finalizers run at once), then
    the namespace; wait for both. Three times faster than the namespace alone."""
    if resources:
        kube.kubectl("delete", ",".join(resources), "--all", "-n", ns, "--wait=true", "--timeout=120s")
    kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=180s")



def live(pods: list[dict]) -> list[dict]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def names(pods: list[dict]) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods)


def snapshot(kube: Kube, resource: str, ns: str, name: str) -> tuple[dict, str]:
    obj = kube.get(resource, name, "-n", ns)
    return obj["spec"], obj["metadata"]["resourceVersion"]


# ------------------------------------------------------------ DCO objects
def dco_cluster(framework: str, name: str, replicas: int = 1, *, autoscaling: dict | None = None,
                scalable: bool = True, psp: str | None = None, owner: str | None = None) -> dict:
    """A minimal valid DCO object: no webhook runs, so the image and every port are set,
    and `worker.replicas` too (Ray and Spark crash DCO without it)."""
    image = {"dask": ("daskdev/dask", "2021.7.2"), "ray": ("rayproject/ray", "1.6.0-cpu"),
             "spark": ("bitnami/spark", "3.0.2-debian-10-r0")}[framework]
    spec: dict[str, Any] = {"image": {"repository": image[0], "tag": image[1], "pullPolicy": "IfNotPresent"},
                            "worker": {"replicas": replicas, "resources": RESOURCES}}
    if framework == "dask":
        spec.update(schedulerPort=8786, dashboardPort=8787, workerPort=3000, nannyPort=3001,
                    scheduler={"resources": RESOURCES})
    elif framework == "ray":
        spec.update(port=6379, redisShardPorts=[6380, 6381], clientServerPort=10001, objectManagerPort=2384,
                    nodeManagerPort=2385, gcsServerPort=2386, dashboardPort=8265, enableDashboard=True,
                    head={"resources": RESOURCES})
    else:
        spec.update(clusterPort=7077, masterWebPort=8080, workerWebPort=8081,
                    driver={"port": 4041, "uiPort": 4040, "blockManagerPort": 4042}, master={"resources": RESOURCES})
    if scalable:
        spec["autoscaling"] = autoscaling or {"minReplicas": 1, "maxReplicas": 2}
    if psp:
        spec["podSecurityPolicy"] = psp
    meta: dict[str, Any] = {"name": name}
    if owner:
        meta["labels"] = {OWNER: owner}
    kind = DCO_KINDS[framework].kind
    return {"apiVersion": f"{DCO_GROUP}/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}


def dco_selector(framework: str, name: str, component: str) -> str:
    return (f"app.kubernetes.io/instance={name},app.kubernetes.io/name={framework},"
            f"app.kubernetes.io/component={component}")


def dco_resource(framework: str) -> str:
    return f"{DCO_KINDS[framework].plural}.{DCO_GROUP}"


def ready_pods(kube: Kube, ns: str, selector: str) -> list[str]:
    return names([p for p in live(kube.pods(ns, selector)) if pod_ready(p)])


def wait_reconciled(kube: Kube, ns: str, framework: str, name: str, workers: int) -> dict:
    """The head and `workers` workers Ready, and DCO's status saying Running with all of them."""
    head = dco_rules.KINDS[DCO_KINDS[framework].kind][1]
    wait_for(lambda: len(ready_pods(kube, ns, dco_selector(framework, name, head))) == 1
             and len(ready_pods(kube, ns, dco_selector(framework, name, "worker"))) == workers,
             120, f"{framework} {name}: a Ready {head} and {workers} Ready workers")
    return wait_for(lambda: (lambda o: o if o.get("status", {}).get("clusterStatus") == "Running"
                             and len(o["status"].get("nodes", [])) == workers + 1 else None)(
        kube.get(dco_resource(framework), name, "-n", ns)), 60, f"{framework} {name} Running in DCO's status")


# ------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def dco(request: pytest.FixtureRequest, tmp_path_factory) -> ThirdParty:
    tp = thirdparty_sandbox(request.config, tmp_path_factory, ("dco",))
    yield tp
    tp.check_alive()  # no object of these tests crashed DCO


@pytest.fixture
def ns(dco: ThirdParty, request: pytest.FixtureRequest) -> str:
    name = namespace_name(request, "dco")
    dco.kube.kubectl("create", "namespace", name)
    yield name
    delete_namespace(dco.kube, name, DCO_RESOURCES)


@pytest.fixture
async def api(dco: ThirdParty) -> ApiKube:
    kube = await dco.api()
    yield kube
    await kube.aclose()


def apache_crd_installed(kube: Kube) -> bool:
    return kube.kubectl("get", "crd", APACHE, check=False).returncode == 0


@pytest.fixture
def apache_crd(dco: ThirdParty) -> Path:
    """Apache's SparkCluster CRD, installed server-side (829 kB) for one test and removed after it."""
    kube = dco.kube
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(APACHE_CRD))
    try:
        wait_for(lambda: any(c["type"] == "Established" and c["status"] == "True"
                             for c in kube.get("crd", APACHE).get("status", {}).get("conditions", [])),
                 60, f"{APACHE} Established")
        wait_for(lambda: json.loads(kube.kubectl("get", "--raw", "/apis/spark.apache.org/v1").stdout), 30,
                 "spark.apache.org/v1 in discovery")
        yield APACHE_CRD
    finally:
        kube.kubectl("delete", "crd", APACHE, "--wait=true", "--timeout=120s")


# ------------------------------------------------------------ DCO: scale
@pytest.mark.parametrize("framework", list(DCO_KINDS))
async def test_scale_changes_the_worker_pods_and_pins_the_bounds(dco: ThirdParty, ns: str, api: ApiKube,
                                                                 framework: str) -> None:
    kube, backend = dco.kube, DCO_KINDS[framework](api)
    kube.apply(dco_cluster(framework, "c", 1, autoscaling={"minReplicas": 1, "maxReplicas": 2}), ns)
    wait_reconciled(kube, ns, framework, "c", 1)
    workers = dco_selector(framework, "c", "worker")
    before = await backend.status(await backend.get(ns, "c"))
    assert (before.desired, before.ready_workers, before.head_ready) == (1, 1, True)
    assert (before.min_replicas, before.max_replicas, before.scale_down) == (1, 2, SCALE_DOWN_OPERATOR)

    obj = await backend.scale(ns, "c", 3)
    assert obj["spec"]["worker"]["replicas"] == 3
    assert obj["spec"]["autoscaling"] == {"minReplicas": 3, "maxReplicas": 4}, "min = replicas, max = replicas + 1"
    three = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(ready_pods(kube, ns, workers)), 90,
                     "3 Ready worker pods from DCO")
    assert three == [f"c-{framework}-worker-{i}" for i in range(3)]
    status = await async_wait_for(lambda: _status_with(backend, ns, "c", ready_workers=3), 30, "status: 3 ready workers")
    assert (status.desired, status.head_ready, status.min_replicas, status.max_replicas) == (3, True, 3, 4)
    def hpa_bounds() -> dict | None:
        hpa = kube.get("hpa", f"c-{framework}", "-n", ns)
        return hpa if (hpa["spec"].get("minReplicas"), hpa["spec"]["maxReplicas"]) == (3, 4) else None
    hpa = wait_for(hpa_bounds, 30, "DCO's HPA between the new bounds")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "c"

    # Down to 2 with a hardware tier's shape: the old max is kept (4 >= 2 + 1), and the
    # StatefulSet -- DCO's choice, not ours -- removes the highest ordinal.
    shape = WorkerShape(resources={"requests": {"cpu": "200m", "memory": "128Mi"}},
                        node_selector={"kubernetes.io/os": "linux"},
                        tolerations=[{"key": "tier", "operator": "Equal", "value": "small", "effect": "NoSchedule"}])
    obj = await backend.scale(ns, "c", 2, shape=shape)
    assert obj["spec"]["autoscaling"] == {"minReplicas": 2, "maxReplicas": 4}
    assert obj["spec"]["worker"]["resources"] == {"requests": {"cpu": "200m", "memory": "128Mi"}}, "limits removed"

    def rolled_out() -> dict | None:
        sts = kube.get("statefulset", f"c-{framework}-worker", "-n", ns)
        st = sts.get("status", {})
        done = (sts["spec"]["replicas"] == 2 and st.get("readyReplicas") == 2 and st.get("updatedReplicas") == 2
                and st.get("currentRevision") == st.get("updateRevision") and st.get("replicas") == 2)
        return sts if done else None
    sts = wait_for(rolled_out, 120, "the worker StatefulSet at 2 replicas with the new shape")
    pod_spec = sts["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["resources"] == {"requests": {"cpu": "200m", "memory": "128Mi"}}
    assert pod_spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod_spec["tolerations"] == [dict(t) for t in shape.tolerations]
    assert wait_for(lambda: (lambda r: r if len(r) == 2 else None)(ready_pods(kube, ns, workers)), 60,
                    "2 Ready workers") == [f"c-{framework}-worker-0", f"c-{framework}-worker-1"]
    dco.check_alive()


async def _status_with(backend: DcoBackend, ns: str, name: str, **expected: Any):
    status = await backend.status(await backend.get(ns, name))
    return status if all(getattr(status, k) == v for k, v in expected.items()) else None


# ------------------------------------------------------------ DCO: head restart
@pytest.mark.parametrize("framework", list(DCO_KINDS))
async def test_head_restart_gives_a_new_ready_head(dco: ThirdParty, ns: str, api: ApiKube, framework: str) -> None:
    kube, backend = dco.kube, DCO_KINDS[framework](api)
    kube.apply(dco_cluster(framework, "c"), ns)
    wait_reconciled(kube, ns, framework, "c", 1)
    old = await backend.head_pod(ns, "c")
    assert old["metadata"]["name"] == f"c-{framework}-{backend.head_role}-0" and pod_ready(old)

    deleted = await backend.restart_head(ns, "c")
    assert deleted["metadata"]["uid"] == old["metadata"]["uid"]

    async def new_ready_head() -> dict | None:
        pod = await backend.head_pod(ns, "c")
        return pod if pod and pod["metadata"]["uid"] != old["metadata"]["uid"] and pod_ready(pod) else None
    new = await async_wait_for(new_ready_head, 90, "a new Ready head pod")
    assert new["metadata"]["name"] == old["metadata"]["name"], "the StatefulSet recreates it under its name"
    assert new["metadata"]["creationTimestamp"] >= old["metadata"]["creationTimestamp"]
    assert (await async_wait_for(lambda: _status_with(backend, ns, "c", head_ready=True), 30, "head_ready")).head_ready
    dco.check_alive()


async def test_head_restart_of_a_missing_cluster(api: ApiKube, ns: str) -> None:
    with pytest.raises(ClusterNotFound):
        await DcoDaskBackend(api).restart_head(ns, "nope")


# ------------------------------------------------------------ DCO: bad input
@pytest.mark.parametrize("framework", list(DCO_KINDS))
async def test_bad_input_is_refused_and_changes_nothing(dco: ThirdParty, ns: str, api: ApiKube,
                                                        framework: str) -> None:
    kube, backend = dco.kube, DCO_KINDS[framework](api)
    resource = dco_resource(framework)
    objects = [dco_cluster(framework, "c"), dco_cluster(framework, "noauto", scalable=False)]
    if framework != "dask":
        objects.append(dco_cluster(framework, "psp", psp="restricted"))
    kube.apply(objects, ns)
    wait_reconciled(kube, ns, framework, "c", 1)
    wait_reconciled(kube, ns, framework, "noauto", 1)
    cases: list[tuple[str, Any, dict, type, str]] = [
        ("c", -1, {}, InvalidScale, "replicas must be a non-negative integer"),
        ("c", 1.5, {}, InvalidScale, "replicas must be a non-negative integer, got 1.5"),
        ("c", "3", {}, InvalidScale, "replicas must be a non-negative integer, got '3'"),
        ("c", 0, {}, InvalidScale, "Domino does not permit scaling a cluster to 0 workers"),
        ("c", 2, {"group": "gpu"}, InvalidScale, "unknown worker group 'gpu'"),
        ("noauto", 2, {}, NotScalable, "Cannot scale this cluster: autoscaling not enabled"),
        ("missing", 2, {}, ClusterNotFound, "does not exist"),
    ]
    if framework != "dask":
        cases.append(("psp", 2, {}, NotScalable, "PodSecurityPolicy was removed from Kubernetes in 1.25"))
    before = {name: snapshot(kube, resource, ns, name) for name in {c[0] for c in cases} if name != "missing"}
    for name, replicas, kwargs, error, message in cases:
        with pytest.raises(error) as raised:
            await backend.scale(ns, name, replicas, **kwargs)
        assert message in str(raised.value), (name, replicas, str(raised.value))
    after = {name: snapshot(kube, resource, ns, name) for name in before}
    assert after == before, "no refused scale changed an object"
    assert kube.kubectl("get", resource, "missing", "-n", ns, check=False).returncode != 0, "nothing created"
    dco.check_alive()


# ------------------------------------------------------------ operator not installed
async def test_a_kind_whose_crd_is_absent_is_operator_not_installed(dco: ThirdParty, api: ApiKube, ns: str) -> None:
    if apache_crd_installed(dco.kube):  # left by an interrupted run
        dco.kube.kubectl("delete", "crd", APACHE, "--wait=true", "--timeout=120s")
    wait_for(lambda: dco.kube.kubectl("get", "--raw", "/apis/spark.apache.org/v1", check=False).returncode != 0,
             30, "spark.apache.org/v1 gone from discovery")
    backend = SparkOperatorBackend(api)
    for call in (backend.get(ns, "sc"), backend.list(ns), backend.list(None, f"{OWNER}=alice"),
                 backend.scale(ns, "sc", 1), backend.restart_head(ns, "sc")):
        with pytest.raises(OperatorNotInstalled, match="its operator's CRD is not installed"):
            await call


# ------------------------------------------------------------ Apache SparkCluster (schema level)
def apache_cluster(name: str, init: int = 1, minimum: int = 1, maximum: int = 5, owner: str | None = None) -> dict:
    meta: dict[str, Any] = {"name": name}
    if owner:
        meta["labels"] = {OWNER: owner}
    return {"apiVersion": "spark.apache.org/v1", "kind": "SparkCluster", "metadata": meta,
            "spec": {"runtimeVersions": {"sparkVersion": "4.0.0"},
                     "clusterTolerations": {"instanceConfig": {"initWorkers": init, "minWorkers": minimum,
                                                               "maxWorkers": maximum}}}}


async def test_spark_operator_scales_within_the_crd_schema(dco: ThirdParty, apache_crd: Path, ns: str,
                                                           api: ApiKube) -> None:
    """Apache's operator is not run: the API server's validation of the patched object is the check."""
    kube, backend = dco.kube, SparkOperatorBackend(api)
    kube.apply([apache_cluster("sc", owner="alice"), apache_cluster("other", owner="bob")], ns)
    assert (await backend.get(ns, "sc"))["metadata"]["name"] == "sc"
    assert names(await backend.list(ns, f"{OWNER}=alice")) == ["sc"]
    assert names(await backend.list(ns)) == ["other", "sc"]
    status = await backend.status(await backend.get(ns, "sc"))
    assert (status.desired, status.ready_workers, status.head_ready) == (1, 0, False), "no operator, no pods"
    assert (status.min_replicas, status.max_replicas, status.scale_down) == (1, 5, SCALE_DOWN_OPERATOR)

    spec, version = snapshot(kube, APACHE, ns, "sc")
    obj = await backend.scale(ns, "sc", 3)
    assert obj["metadata"]["resourceVersion"] != version
    assert obj["spec"]["clusterTolerations"]["instanceConfig"] == {"initWorkers": 3, "minWorkers": 3, "maxWorkers": 5}
    assert kube.get(APACHE, "sc", "-n", ns)["spec"] == obj["spec"], "stored as sent"

    shape = WorkerShape(resources={"requests": {"cpu": "2", "nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
                        node_selector={"gpu": "a100"}, tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    await backend.scale(ns, "sc", 5, shape=shape)
    stored = kube.get(APACHE, "sc", "-n", ns)["spec"]
    template = stored["workerSpec"]["statefulSetSpec"]["template"]["spec"]
    assert template["containers"] == [{"name": "worker", "resources": dict(shape.resources)}], "not pruned"
    assert template["nodeSelector"] == {"gpu": "a100"}
    assert template["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert stored["clusterTolerations"]["instanceConfig"] == {"initWorkers": 5, "minWorkers": 5, "maxWorkers": 5}

    # The schema is enforced by the server, so a patch that breaks it would not go through.
    bad = kube.kubectl("patch", APACHE, "sc", "-n", ns, "--type=merge", "-p",
                       json.dumps({"spec": {"clusterTolerations": {"instanceConfig": {"initWorkers": "three"}}}}),
                       check=False)
    assert bad.returncode != 0 and "initWorkers" in bad.stderr, bad.stderr

    before = {n: snapshot(kube, APACHE, ns, n) for n in ("sc", "other")}
    for name, replicas, error, message in [
        ("sc", 6, InvalidScale, "replicas must be at most 5 for this cluster, got 6"),
        ("sc", -1, InvalidScale, "replicas must be a non-negative integer"),
        ("sc", 2.5, InvalidScale, "replicas must be a non-negative integer, got 2.5"),
        ("missing", 1, ClusterNotFound, "does not exist"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            await backend.scale(ns, name, replicas)
    with pytest.raises(InvalidScale, match="unknown worker group"):
        await backend.scale(ns, "sc", 1, group="executors")
    with pytest.raises(HeadNotFound, match="no master pod"):
        await backend.restart_head(ns, "sc")
    assert await backend.head_pod(ns, "sc") is None
    assert {n: snapshot(kube, APACHE, ns, n) for n in ("sc", "other")} == before, "refusals changed nothing"


async def test_spark_operator_head_is_the_master_pod(dco: ThirdParty, apache_crd: Path, ns: str,
                                                     api: ApiKube) -> None:
    """The pod Apache's master StatefulSet would make (its labels, from the operator's source), made by
    hand since the operator is not run; kwok simulates it. Nothing recreates it after a restart."""
    kube, backend = dco.kube, SparkOperatorBackend(api)
    kube.apply(apache_cluster("sc"), ns)
    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "sc-master-0", "labels": {"spark-role": "master",
                                                               "spark.operator/spark-cluster-name": "sc"}},
                "spec": {"containers": [{"name": "master", "image": "apache/spark:4.0.0"}]}}, ns)
    status = await async_wait_for(lambda: _status_with(backend, ns, "sc", head_ready=True), 60, "head_ready from the master pod")
    assert status.ready_workers == 0
    head = await backend.head_pod(ns, "sc")
    assert head["metadata"]["name"] == "sc-master-0"
    assert (await backend.restart_head(ns, "sc"))["metadata"]["uid"] == head["metadata"]["uid"]
    wait_for(lambda: not kube.pods(ns, "spark-role=master"), 60, "the master pod deleted")
    with pytest.raises(HeadNotFound):
        await backend.restart_head(ns, "sc")
