"""core.spark_operator: the scale patch and status of Apache spark-kubernetes-operator's SparkCluster.

Rules (see the module's docstring):
- bad replicas (not a non-negative integer, above the ceiling) are InvalidScale, before the object is read;
- an object without instanceConfig (or without an integer maxWorkers) is NotScalable;
- replicas above maxWorkers are InvalidScale naming the bound; 0 is allowed;
- the patch sets initWorkers = minWorkers = replicas and leaves maxWorkers: min <= init <= max;
- a shape goes on the `worker` container of the worker StatefulSet's pod template (added when absent);
- status: desired from the spec, ready workers and head readiness from this cluster's pods.
"""

from __future__ import annotations

import copy
import random

import pytest

from dask_operator.core import spark_operator as rules
from dask_operator.core.scaling import WorkerShape
from dask_operator.errors import InvalidScale, NotScalable


def cluster(init: int = 1, minimum: int = 1, maximum: int = 5, *, template: dict | None = None,
            name: str = "sc", version: str | None = "7") -> dict:
    spec: dict = {"runtimeVersions": {"sparkVersion": "4.0.0"},
                  "clusterTolerations": {"instanceConfig": {"initWorkers": init, "minWorkers": minimum,
                                                            "maxWorkers": maximum}}}
    if template is not None:
        spec["workerSpec"] = {"statefulSetSpec": {"template": template}}
    meta = {"name": name, "namespace": "ns"}
    if version:
        meta["resourceVersion"] = version
    return {"apiVersion": rules.API_VERSION, "kind": "SparkCluster", "metadata": meta, "spec": spec}


@pytest.mark.parametrize(
    "before, replicas, expected",
    [
        pytest.param(cluster(1, 1, 5), 3, {"initWorkers": 3, "minWorkers": 3}, id="up"),
        pytest.param(cluster(4, 2, 5), 1, {"initWorkers": 1, "minWorkers": 1}, id="down-lowers-min"),
        pytest.param(cluster(1, 1, 5), 5, {"initWorkers": 5, "minWorkers": 5}, id="up-to-max"),
        pytest.param(cluster(1, 0, 5), 0, {"initWorkers": 0, "minWorkers": 0}, id="zero-allowed"),
        pytest.param(cluster(2, 2, 2), 2, {"initWorkers": 2, "minWorkers": 2}, id="static-cluster"),
    ],
)
def test_scale_patch(before, replicas, expected):
    original = copy.deepcopy(before)
    assert rules.scale_patch(before, replicas) == {
        "metadata": {"resourceVersion": "7"},
        "spec": {"clusterTolerations": {"instanceConfig": expected}},
    }
    assert before == original


@pytest.mark.parametrize(
    "obj, replicas, error, message",
    [
        pytest.param(cluster(), -1, InvalidScale, "replicas must be a non-negative integer", id="negative"),
        pytest.param(cluster(), 2.0, InvalidScale, "replicas must be a non-negative integer, got 2.0", id="float"),
        pytest.param(cluster(), "2", InvalidScale, "replicas must be a non-negative integer, got '2'", id="string"),
        pytest.param(cluster(), False, InvalidScale, "replicas must be a non-negative integer, got False", id="bool"),
        pytest.param(cluster(maximum=5), 6, InvalidScale, "replicas must be at most 5 for this cluster, got 6",
                     id="above-max-workers"),
        pytest.param(cluster(maximum=50000), 10001, InvalidScale, "replicas must be at most 10000", id="ceiling"),
        pytest.param({"metadata": {"name": "sc", "namespace": "ns"}, "spec": {}}, 1, NotScalable,
                     "Cannot scale this cluster: SparkCluster ns/sc has no spec.clusterTolerations.instanceConfig",
                     id="no-instance-config"),
        pytest.param({"metadata": {"name": "sc", "namespace": "ns"},
                      "spec": {"clusterTolerations": {"instanceConfig": {"initWorkers": 1}}}}, 1, NotScalable,
                     "Cannot scale this cluster: SparkCluster ns/sc has no spec.clusterTolerations.instanceConfig "
                     "with an integer maxWorkers", id="no-max-workers"),
        pytest.param({"metadata": {}, "spec": {}}, -1, InvalidScale, "replicas must be a non-negative integer",
                     id="input-checked-before-the-object"),
    ],
)
def test_scale_patch_refusals(obj, replicas, error, message):
    before = copy.deepcopy(obj)
    with pytest.raises(error) as raised:
        rules.scale_patch(obj, replicas)
    assert type(raised.value) is error
    assert str(raised.value).startswith(message)
    assert obj == before


OLD_TEMPLATE = {"metadata": {"labels": {"x": "y"}},
                "spec": {"containers": [{"name": "sidecar"}, {"name": "worker", "resources": {"limits": {"cpu": "2"}}}],
                         "nodeSelector": {"pool": "cpu", "zone": "a"}}}


@pytest.mark.parametrize(
    "template, shape, expected",
    [
        pytest.param(None, WorkerShape(resources={"requests": {"cpu": "1"}}),
                     {"spec": {"containers": [{"name": "worker", "resources": {"requests": {"cpu": "1"}}}]}},
                     id="no-template-adds-the-worker-container"),
        pytest.param(OLD_TEMPLATE, WorkerShape(resources={"requests": {"cpu": "1"}}),
                     {"metadata": {"labels": {"x": "y"}},
                      "spec": {"containers": [{"name": "sidecar"},
                                              {"name": "worker", "resources": {"requests": {"cpu": "1"}}}],
                               "nodeSelector": {"pool": "cpu", "zone": "a"}}},
                     id="the-worker-container-not-the-first"),
        pytest.param(OLD_TEMPLATE, WorkerShape(node_selector={"pool": "gpu"}, tolerations=[{"key": "gpu"}]),
                     {"metadata": {"labels": {"x": "y"}},
                      "spec": {"containers": OLD_TEMPLATE["spec"]["containers"], "nodeSelector": {"pool": "gpu"},
                               "tolerations": [{"key": "gpu"}]}},
                     id="selector-and-tolerations"),
        pytest.param({"spec": {"containers": [{"name": "other"}]}}, WorkerShape(tolerations=[]),
                     {"spec": {"containers": [{"name": "other"}, {"name": "worker"}], "tolerations": []}},
                     id="worker-container-appended"),
    ],
)
def test_shape_worker_template(template, shape, expected):
    original = copy.deepcopy(template)
    assert rules.shape_worker_template(template, shape) == expected
    assert template == original


def test_scale_patch_with_a_shape_replaces_the_maps():
    patch = rules.scale_patch(cluster(template=copy.deepcopy(OLD_TEMPLATE)), 2,
                              WorkerShape(node_selector={"pool": "gpu"}))
    template = patch["spec"]["workerSpec"]["statefulSetSpec"]["template"]
    assert template["spec"]["nodeSelector"] == {"pool": "gpu", "zone": None}
    assert template["spec"]["containers"] == OLD_TEMPLATE["spec"]["containers"]
    assert "workerSpec" not in rules.scale_patch(cluster(), 2, WorkerShape())["spec"], "an empty shape changes nothing"


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(40)])
def test_scale_patch_invariants(seed):
    rng = random.Random(seed)
    maximum = rng.randint(0, 20)
    minimum = rng.randint(0, maximum)
    obj = cluster(rng.randint(minimum, maximum), minimum, maximum)
    replicas = rng.randint(0, 25)
    if replicas > maximum:
        with pytest.raises(InvalidScale, match=f"at most {maximum}"):
            rules.scale_patch(obj, replicas)
        return
    config = {**obj["spec"]["clusterTolerations"]["instanceConfig"],
              **rules.scale_patch(obj, replicas)["spec"]["clusterTolerations"]["instanceConfig"]}
    assert config["minWorkers"] <= config["initWorkers"] <= config["maxWorkers"], "coherent bounds"
    assert config["initWorkers"] == config["minWorkers"] == replicas
    assert config["maxWorkers"] == maximum, "the maximum is not the scaler's to change"


def pod(role: str, *, ready: bool = True, name: str = "sc", deleting: bool = False) -> dict:
    meta: dict = {"name": f"{name}-{role}-0", "labels": {rules.LABEL_CLUSTER: name, rules.LABEL_ROLE: role}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(
    "obj, pods, expected",
    [
        pytest.param(cluster(3, 1, 5), [],
                     {"desired": 3, "ready_workers": 0, "head_ready": False, "min_replicas": 1, "max_replicas": 5},
                     id="no-operator-no-pods"),
        pytest.param(cluster(2, 2, 5), [pod("master"), pod("worker"), pod("worker", ready=False)],
                     {"desired": 2, "ready_workers": 1, "head_ready": True, "min_replicas": 2, "max_replicas": 5},
                     id="with-pods"),
        pytest.param(cluster(1, 1, 1), [pod("master", name="other"), pod("worker", name="other"),
                                        pod("worker", deleting=True)],
                     {"desired": 1, "ready_workers": 0, "head_ready": False, "min_replicas": 1, "max_replicas": 1},
                     id="other-clusters-and-deleting-pods-ignored"),
        pytest.param({"metadata": {"name": "sc"}, "spec": {}}, [],
                     {"desired": 0, "ready_workers": 0, "head_ready": False, "min_replicas": None,
                      "max_replicas": None}, id="no-instance-config"),
    ],
)
def test_observed_status(obj, pods, expected):
    assert rules.observed_status(obj, pods) == {**expected, "conditions": ()}


@pytest.mark.parametrize(
    "state, expected",
    [
        pytest.param({"currentStateSummary": "RunningHealthy", "message": "ok"},
                     ({"type": "Running", "status": "True", "reason": "RunningHealthy", "message": "ok"},),
                     id="healthy"),
        pytest.param({"currentStateSummary": "SchedulingFailure"},
                     ({"type": "Running", "status": "False", "reason": "SchedulingFailure", "message": ""},),
                     id="failing"),
        pytest.param({}, (), id="no-state"),
    ],
)
def test_observed_status_conditions(state, expected):
    obj = {**cluster(), "status": {"currentState": state}}
    assert rules.observed_status(obj, [])["conditions"] == expected


@pytest.mark.parametrize(
    "name, role, expected",
    [
        pytest.param("sc", None, "spark.operator/spark-cluster-name=sc", id="all"),
        pytest.param("sc", "master", "spark.operator/spark-cluster-name=sc,spark-role=master", id="master"),
    ],
)
def test_pod_selector(name, role, expected):
    assert rules.pod_selector(name, role) == expected
