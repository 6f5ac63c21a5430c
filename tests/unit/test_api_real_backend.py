"""The API over the real `dask-operator` backend (our Cluster) on `FakeKube`:
the route's scale and restart reach the Kubernetes verbs the operator watches."""

from __future__ import annotations

import pytest
from api_world import World, serve
from fakes import FakeKube

from dask_operator import constants as c
from dask_operator.backends.dask_cluster import DaskClusterBackend
from dask_operator.core import scheduler_selector

OWNER_LABEL = "dominodatalab.com/starting-user-id"


@pytest.fixture
def world() -> tuple[World, FakeKube]:
    kube = FakeKube()
    kube.add(c.API_VERSION, c.PLURAL, {
        "apiVersion": c.API_VERSION, "kind": c.KIND,
        "metadata": {"name": "dask", "namespace": "ns", "labels": {OWNER_LABEL: "u-owner"}},
        "spec": {"workers": {"replicas": 1, "template": {"spec": {"containers": [{"name": "worker"}]}}}},
        "status": {"workers": {"ready": 1}, "conditions": [{"type": c.COND_AVAILABLE, "status": "True"}]}})
    labels = dict(kv.split("=") for kv in scheduler_selector("dask").split(","))
    kube.add("v1", "pods", {"metadata": {"name": "dask-scheduler-abc", "namespace": "ns", "labels": labels},
                            "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    w = World()
    w.dask = DaskClusterBackend(kube)
    return w, kube


async def test_scale_patches_the_cluster_with_its_resource_version(world) -> None:
    w, kube = world
    async with serve(w) as api:
        status, body, _ = await api.call("POST", "/cluster/scale/daskclusters/dask", token="owner-token",
                                         body={"replicas": 3, "worker_hw_tier_name": "Small"})
    assert status == 200, body
    (patch,) = kube.calls_of("patch", c.PLURAL)
    assert patch.body["spec"]["workers"]["replicas"] == 3
    assert patch.body["metadata"]["resourceVersion"]
    resources = patch.body["spec"]["workers"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert body["object"]["status"]["scaler"]["desired"] == 3


async def test_stranger_reaches_no_kubernetes_write(world) -> None:
    w, kube = world
    async with serve(w) as api:
        assert (await api.call("POST", "/cluster/scale/daskclusters/dask", token="stranger-token",
                               body={"replicas": 3}))[0] == 403
        assert (await api.call("PATCH", "/ddl_cluster_scaler/restart_head/daskclusters/dask",
                               token="stranger-token"))[0] == 403
    assert kube.writes() == []


async def test_restart_deletes_the_scheduler_pod(world) -> None:
    w, kube = world
    async with serve(w) as api:
        status, body, _ = await api.call("PATCH", "/ddl_cluster_scaler/restart_head/daskclusters/dask",
                                         token="owner-token")
    assert (status, body["pod"]) == (200, "dask-scheduler-abc")
    assert kube.writes() == ["delete pods/dask-scheduler-abc"]
