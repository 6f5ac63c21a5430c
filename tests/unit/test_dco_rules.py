"""core.dco: seed 000's scale patch for Domino's DaskCluster, RayCluster and SparkCluster, and their status.

Rules (see the module's docstring):
- bad replicas (not a non-negative integer, 0, above the ceiling) are InvalidScale, checked first;
- an object without spec.image, a Ray/Spark object with spec.podSecurityPolicy, an object without
  spec.autoscaling are NotScalable (the last with seed 000's exact message);
- the patch sets worker.replicas = minReplicas = replicas and maxReplicas = max(old max, replicas + 1);
- a shape replaces the worker's resources, nodeSelector (maps, with null for dropped keys) and tolerations;
- status counts Ready worker pods and the head's readiness from the pods of this cluster only.
"""

from __future__ import annotations

import copy
import random

import pytest

from dask_operator.core import dco
from dask_operator.core.scaling import WorkerShape
from dask_operator.errors import InvalidScale, NotScalable

KINDS = ("DaskCluster", "RayCluster", "SparkCluster")


def obj(kind: str = "DaskCluster", *, autoscaling: dict | None = None, image: bool = True,
        psp: str | None = None, worker: dict | None = None, name: str = "c", version: str | None = "42") -> dict:
    spec: dict = {"worker": dict(worker or {"replicas": 1})}
    if image:
        spec["image"] = {"repository": "daskdev/dask", "tag": "2021.7.2"}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    if psp:
        spec["podSecurityPolicy"] = psp
    meta = {"name": name, "namespace": "ns"}
    if version:
        meta["resourceVersion"] = version
    return {"apiVersion": dco.API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


# ---------------------------------------------------------------- scale_patch: accepted


@pytest.mark.parametrize(
    "kind, autoscaling, replicas, expected_autoscaling",
    [
        pytest.param("DaskCluster", {"minReplicas": 1, "maxReplicas": 2}, 3, {"minReplicas": 3, "maxReplicas": 4},
                     id="up-past-max-gets-headroom"),
        pytest.param("DaskCluster", {"minReplicas": 1, "maxReplicas": 10}, 3, {"minReplicas": 3, "maxReplicas": 10},
                     id="old-max-kept-when-above"),
        pytest.param("DaskCluster", {"maxReplicas": 3}, 3, {"minReplicas": 3, "maxReplicas": 4},
                     id="max-equal-to-replicas-gets-+1"),
        pytest.param("DaskCluster", {"maxReplicas": 4}, 3, {"minReplicas": 3, "maxReplicas": 4},
                     id="exactly-+1-kept"),
        pytest.param("RayCluster", {"minReplicas": 5, "maxReplicas": 6}, 1, {"minReplicas": 1, "maxReplicas": 6},
                     id="down-keeps-max"),
        pytest.param("SparkCluster", {}, 2, {"minReplicas": 2, "maxReplicas": 3}, id="empty-autoscaling"),
        pytest.param("SparkCluster", {"maxReplicas": True}, 2, {"minReplicas": 2, "maxReplicas": 3},
                     id="non-integer-old-max-ignored"),
        pytest.param("RayCluster", {"maxReplicas": 1, "averageCPUUtilization": 50}, 1,
                     {"minReplicas": 1, "maxReplicas": 2}, id="other-fields-untouched"),
    ],
)
def test_scale_patch(kind, autoscaling, replicas, expected_autoscaling):
    cluster = obj(kind, autoscaling=autoscaling)
    before = copy.deepcopy(cluster)
    assert dco.scale_patch(kind, cluster, replicas) == {
        "metadata": {"resourceVersion": "42"},
        "spec": {"worker": {"replicas": replicas}, "autoscaling": expected_autoscaling},
    }
    assert cluster == before, "the object is not modified"


def test_scale_patch_without_resource_version_sends_none():
    assert "metadata" not in dco.scale_patch("DaskCluster", obj(autoscaling={"maxReplicas": 2}, version=None), 1)


def test_dask_cluster_with_pod_security_policy_is_scalable():
    """DCO's Dask controller only binds a Role to the named policy: nothing stalls."""
    patch = dco.scale_patch("DaskCluster", obj(autoscaling={"maxReplicas": 2}, psp="restricted"), 1)
    assert patch["spec"]["worker"] == {"replicas": 1}


OLD_WORKER = {"replicas": 1, "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1"}, "limits": {"cpu": "2"}},
              "nodeSelector": {"gpu": "a100", "zone": "a"}, "tolerations": [{"key": "old", "operator": "Exists"}]}


@pytest.mark.parametrize(
    "shape, expected_worker",
    [
        pytest.param(WorkerShape(), {"replicas": 2}, id="empty-shape"),
        pytest.param(
            WorkerShape(resources={"requests": {"cpu": "4"}}),
            {"replicas": 2, "resources": {"requests": {"cpu": "4", "nvidia.com/gpu": None}, "limits": None}},
            id="resources-replaced-dropped-keys-nulled"),
        pytest.param(
            WorkerShape(node_selector={"zone": "b"}),
            {"replicas": 2, "nodeSelector": {"zone": "b", "gpu": None}}, id="node-selector-replaced"),
        pytest.param(
            WorkerShape(tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]),
            {"replicas": 2, "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
            id="tolerations-replaced"),
        pytest.param(
            WorkerShape(resources={}, node_selector={}, tolerations=[]),
            {"replicas": 2, "resources": {"requests": None, "limits": None},
             "nodeSelector": {"gpu": None, "zone": None}, "tolerations": []},
            id="all-cleared"),
    ],
)
def test_scale_patch_with_a_shape(shape, expected_worker):
    cluster = obj("RayCluster", autoscaling={"maxReplicas": 5}, worker=copy.deepcopy(OLD_WORKER))
    assert dco.scale_patch("RayCluster", cluster, 2, shape)["spec"]["worker"] == expected_worker
    assert cluster["spec"]["worker"] == OLD_WORKER


def test_shape_on_a_worker_without_those_fields():
    shape = WorkerShape(resources={"limits": {"cpu": "1"}}, node_selector={"a": "b"})
    patch = dco.scale_patch("SparkCluster", obj("SparkCluster", autoscaling={"maxReplicas": 2}), 1, shape)
    assert patch["spec"]["worker"] == {"replicas": 1, "resources": {"limits": {"cpu": "1"}}, "nodeSelector": {"a": "b"}}


# ---------------------------------------------------------------- scale_patch: refused

SCALABLE = {"maxReplicas": 2}


@pytest.mark.parametrize(
    "cluster, replicas, error, message",
    [
        pytest.param(obj(autoscaling=SCALABLE), -1, InvalidScale, "replicas must be a non-negative integer",
                     id="negative"),
        pytest.param(obj(autoscaling=SCALABLE), 1.5, InvalidScale,
                     "replicas must be a non-negative integer, got 1.5", id="float"),
        pytest.param(obj(autoscaling=SCALABLE), "3", InvalidScale,
                     "replicas must be a non-negative integer, got '3'", id="string"),
        pytest.param(obj(autoscaling=SCALABLE), True, InvalidScale,
                     "replicas must be a non-negative integer, got True", id="bool"),
        pytest.param(obj(autoscaling=SCALABLE), None, InvalidScale,
                     "replicas must be a non-negative integer, got None", id="null"),
        pytest.param(obj(autoscaling=SCALABLE), 0, InvalidScale,
                     "replicas must be at least 1: Domino does not permit scaling a cluster to 0 workers", id="zero"),
        pytest.param(obj(autoscaling=SCALABLE), 10001, InvalidScale,
                     "replicas must be at most 10000 for this cluster, got 10001", id="above-ceiling"),
        pytest.param(obj(), 0, InvalidScale, "replicas must be at least 1", id="input-checked-before-the-object"),
        pytest.param(obj(), 2, NotScalable, "Cannot scale this cluster: autoscaling not enabled",
                     id="no-autoscaling"),
        pytest.param(obj(autoscaling=None), 2, NotScalable, "Cannot scale this cluster: autoscaling not enabled",
                     id="autoscaling-absent"),
        pytest.param({**obj(), "spec": {**obj()["spec"], "autoscaling": None}}, 2, NotScalable,
                     "Cannot scale this cluster: autoscaling not enabled", id="autoscaling-null"),
        pytest.param(obj(autoscaling=SCALABLE, image=False), 2, NotScalable,
                     "DaskCluster ns/c has no spec.image, and DCO v0.8.2 crashes", id="dask-no-image"),
        pytest.param(obj("RayCluster", autoscaling=SCALABLE, image=False), 2, NotScalable,
                     "RayCluster ns/c has no spec.image", id="ray-no-image"),
        pytest.param(obj("RayCluster", autoscaling=SCALABLE, psp="old"), 2, NotScalable,
                     "PodSecurityPolicy was removed from Kubernetes in 1.25", id="ray-psp"),
        pytest.param(obj("SparkCluster", autoscaling=SCALABLE, psp="old"), 2, NotScalable,
                     "sets spec.podSecurityPolicy", id="spark-psp"),
        pytest.param(obj("SparkCluster", psp="old"), 2, NotScalable, "podSecurityPolicy",
                     id="psp-reported-before-missing-autoscaling"),
    ],
)
def test_scale_patch_refusals(cluster, replicas, error, message):
    before = copy.deepcopy(cluster)
    with pytest.raises(error) as raised:
        dco.scale_patch(cluster["kind"], cluster, replicas)
    assert type(raised.value) is error
    assert str(raised.value).startswith(message) or message in str(raised.value)
    assert cluster == before


def test_refusals_carry_the_seed_codes():
    with pytest.raises(NotScalable) as raised:
        dco.scale_patch("DaskCluster", obj(), 1)
    assert (raised.value.code, raised.value.http_status) == ("not_scalable", 409)
    with pytest.raises(InvalidScale) as raised:
        dco.scale_patch("DaskCluster", obj(autoscaling=SCALABLE), -1)
    assert (raised.value.code, raised.value.http_status) == ("bad_request", 400)


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="not a DCO kind"):
        dco.scale_patch("MPICluster", obj("MPICluster", autoscaling=SCALABLE), 1)


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(40)])
def test_scale_patch_invariants(seed):
    rng = random.Random(seed)
    kind = rng.choice(KINDS)
    autoscaling = {}
    if rng.random() < 0.9:
        autoscaling["maxReplicas"] = rng.randint(1, 30)
    if rng.random() < 0.5:
        autoscaling["minReplicas"] = rng.randint(1, autoscaling.get("maxReplicas", 30))
    replicas = rng.randint(1, 40)
    cluster = obj(kind, autoscaling=autoscaling)
    before = copy.deepcopy(cluster)
    patch = dco.scale_patch(kind, cluster, replicas)
    bounds = patch["spec"]["autoscaling"]
    assert patch["spec"]["worker"]["replicas"] == bounds["minReplicas"] == replicas, "min pinned to replicas"
    assert bounds["maxReplicas"] >= bounds["minReplicas"] + 1, "at least +1 headroom"
    assert bounds["maxReplicas"] >= autoscaling.get("maxReplicas", 0), "max never lowered"
    assert bounds["maxReplicas"] == max(autoscaling.get("maxReplicas", 0), replicas + 1), "and never raised more"
    assert 1 <= bounds["minReplicas"] <= bounds["maxReplicas"], "DCO's webhook rule"
    assert cluster == before


# ---------------------------------------------------------------- head shape

HEAD_RES = {"limits": {"cpu": "2", "nvidia.com/gpu": 1}}


@pytest.mark.parametrize(
    "kind, section, old, shape, expected",
    [
        pytest.param("DaskCluster", "scheduler", {}, WorkerShape(resources={"limits": {"cpu": "1"}}),
                     {"resources": {"limits": {"cpu": "1"}}}, id="dask-scheduler"),
        pytest.param("RayCluster", "head", {"resources": HEAD_RES}, WorkerShape(resources={"limits": {"cpu": "4"}}),
                     {"resources": {"limits": {"cpu": "4", "nvidia.com/gpu": None}}}, id="ray-head-gpu-dropped"),
        pytest.param("SparkCluster", "master", {"nodeSelector": {"a": "1"}},
                     WorkerShape(node_selector={"b": "2"}, tolerations=[{"key": "k", "operator": "Exists"}]),
                     {"nodeSelector": {"a": None, "b": "2"}, "tolerations": [{"key": "k", "operator": "Exists"}]},
                     id="spark-master-placement"),
        pytest.param("RayCluster", "head", {"resources": HEAD_RES, "nodeSelector": {"a": "1"}},
                     WorkerShape(resources=HEAD_RES, node_selector={"a": "2"}),
                     {"nodeSelector": {"a": "2"}}, id="only-what-changes"),
        pytest.param("RayCluster", "head", {"resources": HEAD_RES}, WorkerShape(resources=HEAD_RES), None,
                     id="already-shaped-none"),
    ],
)
def test_head_patch(kind, section, old, shape, expected):
    obj = {"spec": {section: copy.deepcopy(old), "worker": {"replicas": 2}}}
    patch = dco.head_patch(kind, obj, shape)
    assert patch == (None if expected is None else {"spec": {section: expected}})


# ---------------------------------------------------------------- pods and status


@pytest.mark.parametrize(
    "framework, name, component, expected",
    [
        pytest.param("dask", "c", None, "app.kubernetes.io/instance=c,app.kubernetes.io/name=dask", id="all"),
        pytest.param("ray", "rc", "head",
                     "app.kubernetes.io/instance=rc,app.kubernetes.io/name=ray,app.kubernetes.io/component=head",
                     id="head"),
    ],
)
def test_pod_selector(framework, name, component, expected):
    assert dco.pod_selector(framework, name, component) == expected


def pod(component: str, *, ready: bool = True, framework: str = "dask", instance: str = "c",
        deleting: bool = False) -> dict:
    meta: dict = {"name": f"{instance}-{framework}-{component}-x",
                  "labels": {dco.LABEL_INSTANCE: instance, dco.LABEL_NAME: framework, dco.LABEL_COMPONENT: component}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


RUNNING = {"clusterStatus": "Running", "workerReplicas": 3, "nodes": ["a", "b"]}


@pytest.mark.parametrize(
    "kind, cluster, pods, expected",
    [
        pytest.param("DaskCluster", obj(worker={"replicas": 3}, autoscaling={"minReplicas": 3, "maxReplicas": 4}),
                     [pod("scheduler"), pod("worker"), pod("worker", ready=False), pod("worker")],
                     {"desired": 3, "ready_workers": 2, "head_ready": True, "min_replicas": 3, "max_replicas": 4},
                     id="dask"),
        pytest.param("DaskCluster", obj(worker={}), [],
                     {"desired": 1, "ready_workers": 0, "head_ready": False, "min_replicas": None,
                      "max_replicas": None}, id="replicas-default-to-1-no-pods"),
        pytest.param("RayCluster", obj("RayCluster", worker={"replicas": 2}),
                     [pod("head", framework="ray", ready=False), pod("worker", framework="ray")],
                     {"desired": 2, "ready_workers": 1, "head_ready": False, "min_replicas": None,
                      "max_replicas": None}, id="ray-head-not-ready"),
        pytest.param("SparkCluster", obj("SparkCluster", worker={"replicas": 1}),
                     [pod("master", framework="spark"), pod("worker", framework="spark", deleting=True),
                      pod("worker", framework="spark")],
                     {"desired": 1, "ready_workers": 1, "head_ready": True, "min_replicas": None,
                      "max_replicas": None}, id="spark-deleting-worker-not-counted"),
        pytest.param("DaskCluster", obj(worker={"replicas": 1}),
                     [pod("scheduler", instance="other"), pod("worker", instance="other"),
                      pod("worker", framework="ray"), pod("scheduler", framework="ray")],
                     {"desired": 1, "ready_workers": 0, "head_ready": False, "min_replicas": None,
                      "max_replicas": None}, id="other-clusters-pods-ignored"),
        pytest.param("RayCluster", obj("RayCluster", worker={"replicas": 1}),
                     [pod("scheduler", framework="ray"), pod("master", framework="ray")],
                     {"desired": 1, "ready_workers": 0, "head_ready": False, "min_replicas": None,
                      "max_replicas": None}, id="only-the-kind's-head-role"),
    ],
)
def test_observed_status(kind, cluster, pods, expected):
    assert dco.observed_status(kind, cluster, pods) == {**expected, "conditions": ()}


@pytest.mark.parametrize(
    "status, expected",
    [
        pytest.param({}, (), id="no-status-yet"),
        pytest.param(RUNNING, ({"type": "Running", "status": "True", "reason": "Running", "message": ""},),
                     id="running"),
        pytest.param({"clusterStatus": "Starting"},
                     ({"type": "Running", "status": "False", "reason": "Starting", "message": ""},), id="starting"),
        pytest.param({"clusterStatus": "Failed", "reason": "bad port"},
                     ({"type": "Running", "status": "False", "reason": "Failed", "message": "bad port"},),
                     id="failed-with-reason"),
    ],
)
def test_observed_status_conditions(status, expected):
    cluster = {**obj(), "status": status}
    assert dco.observed_status("DaskCluster", cluster, [])["conditions"] == expected


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(30)])
def test_observed_status_invariants(seed):
    rng = random.Random(seed)
    kind = rng.choice(KINDS)
    framework, head = dco.KINDS[kind]
    pods = [pod(rng.choice([head, "worker", "worker", "other"]), ready=rng.random() < 0.6,
                framework=rng.choice([framework, framework, "ray", "dask"]), instance=rng.choice(["c", "c", "d"]),
                deleting=rng.random() < 0.2) for _ in range(rng.randint(0, 12))]
    fields = dco.observed_status(kind, obj(kind, worker={"replicas": 3}), pods)
    ours = [p for p in pods if p["metadata"]["labels"][dco.LABEL_INSTANCE] == "c"
            and p["metadata"]["labels"][dco.LABEL_NAME] == framework]

    def serving(p: dict) -> bool:
        return p["status"]["conditions"][0]["status"] == "True" and "deletionTimestamp" not in p["metadata"]

    role = dco.LABEL_COMPONENT
    assert fields["ready_workers"] == sum(serving(p) for p in ours if p["metadata"]["labels"][role] == "worker")
    assert fields["head_ready"] == any(serving(p) for p in ours if p["metadata"]["labels"][role] == head)
    assert 0 <= fields["ready_workers"] <= len(pods)
    assert fields["desired"] == 3


# ---------------------------------------------------------------- the backend sends nothing refused

from dask_operator.backends.dco import DcoRayBackend, DcoSparkBackend  # noqa: E402


class StubResource:
    """`Resource.update`: counts reads and patches, like the real one (read, decide, write)."""

    def __init__(self, cluster: dict) -> None:
        self.cluster = cluster
        self.reads = 0
        self.patches: list[dict] = []

    async def update(self, namespace, name, change):
        self.reads += 1
        patch = await change(copy.deepcopy(self.cluster))
        self.patches.append(patch)
        return patch


@pytest.mark.parametrize(
    "backend, cluster, replicas, kwargs, error, reads",
    [
        pytest.param(DcoRayBackend, obj("RayCluster", autoscaling=SCALABLE), 0, {}, InvalidScale, 0,
                     id="zero-before-any-read"),
        pytest.param(DcoRayBackend, obj("RayCluster", autoscaling=SCALABLE), 1, {"group": "gpu"}, InvalidScale, 0,
                     id="unknown-group-before-any-read"),
        pytest.param(DcoSparkBackend, obj("SparkCluster"), 2, {}, NotScalable, 1, id="no-autoscaling-after-a-read"),
        pytest.param(DcoSparkBackend, obj("SparkCluster", autoscaling=SCALABLE, psp="x"), 2, {}, NotScalable, 1,
                     id="psp-after-a-read"),
    ],
)
async def test_refused_scale_sends_nothing(backend, cluster, replicas, kwargs, error, reads):
    b = backend(None)
    b.api = stub = StubResource(cluster)
    with pytest.raises(error):
        await b.scale("ns", "c", replicas, **kwargs)
    assert (stub.reads, stub.patches) == (reads, [])


async def test_backend_scale_sends_the_rules_patch():
    b = DcoRayBackend(None)
    b.api = stub = StubResource(obj("RayCluster", autoscaling={"minReplicas": 1, "maxReplicas": 2}))
    assert await b.scale("ns", "c", 3) == dco.scale_patch("RayCluster", stub.cluster, 3)
