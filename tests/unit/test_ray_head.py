"""RayHeadClient against httpx.MockTransport, and how the KubeRay backend uses it (over FakeKube).

Rules (client):
- `idle_workers`: GET /nodes?view=summary on the head's dashboard -> every
  identifier (IP, hostname, instance id, node name) of each ALIVE, non-head
  node whose `raylet.stateSnapshot.state` is IDLE; nothing else counts as idle
  (ACTIVE, DRAINING, UNDEFINED, no snapshot, DEAD, the head);
- the query has a named connect timeout and a named overall timeout;
- every failure (connect error, timeout, non-200, non-JSON, `result` false,
  wrong shape) raises RayHeadUnreachable naming the route, never anything else.

Rules (backend, `KubeRayBackend.scale`):
- the head is asked only when the surplus reaches Ready workers, at the Ready
  head pod's IP (outside a cluster);
- what it reports idle is named in `workersToDelete`; when it cannot be
  asked, the scale raises ScaleDownUnsafe saying why and writes nothing;
- a 409 on the patch (the RayCluster changed) makes it read and choose again.
"""

from __future__ import annotations

import httpx
import pytest
from fakes import FakeKube, Server

from dask_operator.backends.base import SCALE_DOWN_NAMED
from dask_operator.backends.kuberay import KubeRayBackend
from dask_operator.errors import HeadNotFound, KubeApiError, NotScalable, ScaleDownUnsafe, ScalingError
from dask_operator.ray_head import CONNECT_TIMEOUT_SECONDS, QUERY_TIMEOUT_SECONDS, RayHeadClient, RayHeadUnreachable

BASE = "http://10.0.0.10:8265"


def node(ip: str, snapshot: str | None = "IDLE", *, head=False, state="ALIVE", hostname=None, **raylet) -> dict:
    """One entry of `data.summary`, with the raylet keys a Ray 2.60.0 head sends (abridged)."""
    body = {"nodeId": f"id-{ip}", "nodeManagerAddress": ip, "nodeManagerPort": 34737, "nodeName": ip,
            "state": state, "isHeadNode": head, "instanceId": "", "nodeTypeName": "", "stateMessage": None,
            "storeStats": {"objectStoreBytesAvail": "7031431987"}, "coreWorkersStats": [],
            "objectStoreUsedMemory": 0, **raylet}
    if hostname:
        body["nodeManagerHostname"] = hostname
    if snapshot is not None:
        body["stateSnapshot"] = {"state": snapshot, "idleDurationMs": "5000", "nodeActivity": []}
    return {"ip": ip, "raylet": body}


def summary(*nodes: dict) -> dict:
    return {"result": True, "msg": "Node summary fetched.",
            "data": {"summary": list(nodes), "nodeLogicalResources": {}}}



def client_for(server: Server) -> RayHeadClient:
    return RayHeadClient(httpx.AsyncClient(transport=httpx.MockTransport(server)))


# ---------------------------------------------------------------- the client


async def test_route_query_and_named_timeouts():
    server = Server(summary())
    await client_for(server).idle_workers(BASE)
    (request,) = server.requests
    assert (request.method, str(request.url)) == ("GET", f"{BASE}/nodes?view=summary")
    timeout = request.extensions["timeout"]
    assert timeout["connect"] == CONNECT_TIMEOUT_SECONDS and timeout["read"] == QUERY_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    "nodes, expected",
    [
        pytest.param([], set(), id="no-nodes"),
        pytest.param([node("10.0.0.1")], {"10.0.0.1"}, id="idle-worker-by-ip"),
        pytest.param([node("10.0.0.1", hostname="rc-workers-worker-abcde", instanceId="rc-workers-worker-abcde")],
                     {"10.0.0.1", "rc-workers-worker-abcde"}, id="every-identifier"),
        pytest.param([node("10.0.0.1", "ACTIVE"), node("10.0.0.2", "DRAINING"), node("10.0.0.3", "UNDEFINED")],
                     set(), id="only-idle-counts"),
        pytest.param([node("10.0.0.1", None)], set(), id="no-snapshot-not-idle"),
        pytest.param([node("10.0.0.1", "ACTIVE", instanceId="")], set(), id="what-ray-2.60-serves-for-an-idle-node"),
        pytest.param([node("10.0.0.1", state="DEAD")], set(), id="dead-not-idle"),
        pytest.param([node("10.0.0.10", head=True), node("10.0.0.2")], {"10.0.0.2"}, id="head-excluded"),
        pytest.param([node("10.0.0.1", "ACTIVE"), node("10.0.0.2")], {"10.0.0.2"}, id="mixed"),
    ],
)
async def test_idle_workers(nodes, expected):
    assert await client_for(Server(summary(*nodes))).idle_workers(BASE) == expected


def raise_(error: Exception):
    def answer(request: httpx.Request):
        raise error
    return answer


@pytest.mark.parametrize(
    "answer, fragment",
    [
        pytest.param(raise_(httpx.ConnectError("refused")), "ConnectError: refused", id="connect-error"),
        pytest.param(raise_(httpx.ConnectTimeout("slow")), "ConnectTimeout", id="connect-timeout"),
        pytest.param(raise_(httpx.ReadTimeout("slow")), "ReadTimeout", id="read-timeout"),
        pytest.param(httpx.Response(500, text="boom"), "HTTP 500: boom", id="server-error"),
        pytest.param(httpx.Response(404, text="no dashboard"), "HTTP 404", id="no-dashboard"),
        pytest.param(httpx.Response(200, text="<html>"), "not JSON", id="not-json"),
        pytest.param({"result": False, "msg": "failed", "data": {}}, "unexpected answer", id="result-false"),
        pytest.param({"result": True, "data": {}}, "unexpected answer", id="no-summary"),
        pytest.param({"result": True, "data": {"summary": [{"ip": "x"}]}}, "unexpected answer", id="no-raylet"),
        pytest.param({"result": True, "data": {"summary": "nodes"}}, "unexpected answer", id="summary-not-a-list"),
        pytest.param([1, 2], "unexpected answer", id="not-an-object"),
    ],
)
async def test_every_failure_is_ray_head_unreachable(answer, fragment):
    with pytest.raises(RayHeadUnreachable) as raised:
        await client_for(Server(answer)).idle_workers(BASE)
    assert str(raised.value).startswith(f"GET {BASE}/nodes: ") and fragment in str(raised.value)


# ---------------------------------------------------------------- the backend's use of it

NS, NAME = "ns", "rc"
RAY = ("ray.io/v1", "rayclusters")


def ray_cluster(*groups: dict, **spec) -> dict:
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": NAME, "namespace": NS},
            "spec": {"headGroupSpec": {"template": {}}, "workerGroupSpecs": list(groups), **spec},
            "status": {"head": {"serviceName": f"{NAME}-head-svc"}, "endpoints": {"dashboard": "8265"},
                       "conditions": [{"type": "HeadPodReady", "status": "True"}]}}


def group(name="workers", replicas=3, **extra) -> dict:
    return {"groupName": name, "replicas": replicas, "minReplicas": 0, "maxReplicas": 5, "template": {}, **extra}


def pod(name: str, ip: str, *, node_type="worker", group_name="workers", ready=True, phase="Running") -> dict:
    labels = {"ray.io/cluster": NAME, "ray.io/node-type": node_type}
    if node_type == "worker":
        labels["ray.io/group"] = group_name
    return {"metadata": {"name": name, "namespace": NS, "labels": labels},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def setup(kube: FakeKube, *workers: dict, cluster: dict | None = None, head_ready=True) -> None:
    kube.add(*RAY, cluster or ray_cluster(group()))
    kube.add("v1", "pods", pod("rc-head-x", "10.0.0.10", node_type="head", ready=head_ready))
    for w in workers:
        kube.add("v1", "pods", w)


def backend(kube: FakeKube, server: Server) -> KubeRayBackend:
    return KubeRayBackend(kube, client_for(server), via_service=False)  # type: ignore[arg-type]


def group_spec(kube: FakeKube) -> dict:
    return kube.object(*RAY, NS, NAME)["spec"]["workerGroupSpecs"][0]


THREE = (pod("w-a", "10.0.1.1"), pod("w-b", "10.0.1.2"), pod("w-c", "10.0.1.3"))


async def test_scale_down_names_the_workers_the_head_reports_idle():
    kube, server = FakeKube(), Server(summary(node("10.0.1.2"), node("10.0.1.3", "ACTIVE"), node("10.0.1.1")))
    setup(kube, *THREE)
    await backend(kube, server).scale(NS, NAME, 1)
    assert [str(r.url) for r in server.requests] == ["http://10.0.0.10:8265/nodes?view=summary"]
    g = group_spec(kube)
    assert g["replicas"] == 1 and sorted(g["scaleStrategy"]["workersToDelete"]) == ["w-a", "w-b"]
    (write,) = kube.calls_of("patch")
    assert write.body["metadata"]["resourceVersion"], "the patch carries the resourceVersion read"


async def test_head_not_asked_when_unready_workers_cover_the_surplus():
    kube, server = FakeKube(), Server(summary())
    setup(kube, pod("w-a", "10.0.1.1"), pod("w-b", "10.0.1.2", ready=False, phase="Pending"))
    await backend(kube, server).scale(NS, NAME, 1)
    assert server.requests == []
    assert group_spec(kube)["scaleStrategy"]["workersToDelete"] == ["w-b"]


@pytest.mark.parametrize(
    "answer, head_ready, reason",
    [
        pytest.param(raise_(httpx.ConnectError("unreachable")), True, "ConnectError: unreachable", id="head-down"),
        pytest.param(summary(), False, "no Ready head pod", id="head-not-ready"),
        pytest.param(summary(node("10.0.1.1", "ACTIVE")), True, "busy: w-a, w-b, w-c", id="workers-busy"),
    ],
)
async def test_unsafe_scale_down_writes_nothing_and_says_why(answer, head_ready, reason):
    kube, server = FakeKube(), Server(answer)
    setup(kube, *THREE, head_ready=head_ready)
    with pytest.raises(ScaleDownUnsafe) as raised:
        await backend(kube, server).scale(NS, NAME, 1)
    assert str(raised.value).startswith("RayCluster ns/rc, group 'workers', to 1 workers: cannot choose 2 of the 2")
    assert reason in str(raised.value)
    assert kube.writes() == []


async def test_a_conflict_makes_it_choose_again_from_a_fresh_read():
    kube, server = FakeKube(), Server(summary(node("10.0.1.1"), node("10.0.1.2"), node("10.0.1.3")))
    setup(kube, *THREE)
    kube.fail_next("patch", KubeApiError(409, "the object has been modified"))
    await backend(kube, server).scale(NS, NAME, 2)
    assert len(kube.calls_of("patch")) == 2 and len(kube.calls_of("get")) == 2
    assert len(group_spec(kube)["scaleStrategy"]["workersToDelete"]) == 1


async def test_other_patch_errors_are_not_retried():
    kube, server = FakeKube(), Server(summary())
    setup(kube, *THREE)
    kube.fail_next("patch", KubeApiError(422, "invalid"))
    with pytest.raises(ScalingError, match="HTTP 422"):
        await backend(kube, server).scale(NS, NAME, 4)
    assert len(kube.calls_of("patch")) == 1


async def test_autoscaled_cluster_is_not_scaled():
    kube, server = FakeKube(), Server(summary())
    setup(kube, *THREE, cluster=ray_cluster(group(), enableInTreeAutoscaling=True))
    with pytest.raises(NotScalable):
        await backend(kube, server).scale(NS, NAME, 1)
    assert kube.writes() == [] and server.requests == []


async def test_status():
    kube = FakeKube()
    setup(kube, pod("w-a", "10.0.1.1"), pod("w-b", "10.0.1.2", ready=False), pod("g-a", "10.0.2.1", group_name="gpu"),
          cluster=ray_cluster(group(replicas=2), group("gpu", replicas=1, minReplicas=1, maxReplicas=2)))
    b = backend(kube, Server(summary()))
    obj = await b.get(NS, NAME)
    whole, gpu = await b.status(obj), await b.status(obj, group="gpu")
    assert (whole.desired, whole.ready_workers, whole.head_ready) == (3, 2, True)
    assert (whole.min_replicas, whole.max_replicas, whole.scale_down) == (None, None, SCALE_DOWN_NAMED)
    assert (gpu.desired, gpu.ready_workers, gpu.min_replicas, gpu.max_replicas) == (1, 1, 1, 2)
    assert whole.conditions == ({"type": "HeadPodReady", "status": "True"},)


async def test_restart_head_deletes_the_head_pod():
    kube = FakeKube()
    setup(kube, *THREE)
    b = backend(kube, Server(summary()))
    deleted = await b.restart_head(NS, NAME)
    assert deleted["metadata"]["name"] == "rc-head-x"
    assert kube.writes() == ["delete pods/rc-head-x"]
    with pytest.raises(HeadNotFound):
        await b.restart_head(NS, NAME)

