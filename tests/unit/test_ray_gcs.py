"""RayGcsClient against a fake Ray GCS served by a real grpc.aio server on 127.0.0.1.

The fake (`FakeGcs`) serves Ray's two methods under Ray's service name with
our messages (tests/unit/test_ray_gcs_protos.py checks they are Ray's on the
wire). Like a real GCS it answers the state it holds, accepts a drain unless
told to refuse it, and then shows an accepted node DEAD (its raylet leaves)
and a refused one RUNNING (Ray refuses a node that is busy).

Rules (client):
- `nodes`: GetClusterResourceState -> one RayNode per node state, with Ray's
  status name (an unknown number reads UNKNOWN(n), never IDLE);
- `drain_idle`: DrainNode with reason IDLE_TERMINATION, our message and
  deadline -> Drain(accepted, Ray's rejection reason); a bad argument is a
  ValueError and sends nothing;
- the state query has QUERY_TIMEOUT_SECONDS, a drain DRAIN_TIMEOUT_SECONDS;
- every failure (refused connection, deadline, an error status, an answer
  that does not parse, no cluster state, a node without id) raises
  RayGcsUnreachable naming the call and the address, never anything else;
- channels come from the injected factory, one per address, reused; a
  failed call's channel is closed and the next call makes a new one; past
  MAX_CHANNELS the least recently used is closed; `aclose` closes them all.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import grpc
import pytest

from dask_operator import ray_gcs
from dask_operator.ray_gcs import (DRAIN_TIMEOUT_SECONDS, QUERY_TIMEOUT_SECONDS, Drain, RayGcsClient,
                                   RayGcsUnreachable, RayNode)
from dask_operator.ray_gcs_protos import ray_autoscaler_pb2 as pb


def node_id(name: str) -> bytes:
    return name.encode().ljust(28, b"\0")[:28]


def node(pod: str, ip: str, status=pb.IDLE, idle_ms=60_000, activity=(), **extra) -> pb.NodeState:
    """A node state as a KubeRay worker's raylet reports it: instance id = pod name."""
    fields = dict(node_id=node_id(pod), instance_id=pod, ray_node_type_name="workers", status=status,
                  idle_duration_ms=idle_ms, node_ip_address=ip, node_activity=list(activity))
    return pb.NodeState(**{**fields, **extra})


class FakeGcs:
    """Ray's AutoscalerStateService (GetClusterResourceState, DrainNode) on 127.0.0.1."""

    def __init__(self) -> None:
        self.nodes: list[pb.NodeState] = []
        self.refuse: dict[bytes, str] = {}  # node id -> rejection reason
        self.calls: list[tuple[str, object, float | None]] = []  # (method, request, seconds left)
        self.abort: dict[str, grpc.StatusCode] = {}
        self.delay = 0.0
        self.garbage = False
        self.reply: pb.GetClusterResourceStateReply | None = None
        self.before_state: Callable[[], None] | None = None
        self.server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        self.server = grpc.aio.server()
        handlers = {
            "GetClusterResourceState": grpc.unary_unary_rpc_method_handler(
                self._state, request_deserializer=pb.GetClusterResourceStateRequest.FromString,
                response_serializer=self._serialize),
            "DrainNode": grpc.unary_unary_rpc_method_handler(
                self._drain, request_deserializer=pb.DrainNodeRequest.FromString,
                response_serializer=self._serialize),
        }
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(ray_gcs.SERVICE, handlers)])
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        await self.server.stop(None)

    def _serialize(self, message) -> bytes:
        return b"\xff\xff\xff\xff" if self.garbage else message.SerializeToString()

    async def _enter(self, method: str, request, context) -> None:
        self.calls.append((method, request, context.time_remaining()))
        if self.delay:
            await asyncio.sleep(self.delay)
        if method in self.abort:
            await context.abort(self.abort[method], f"{method} failed on purpose")

    async def _state(self, request, context):
        await self._enter("GetClusterResourceState", request, context)
        if self.before_state:
            self.before_state()
        if self.reply is not None:
            return self.reply
        return pb.GetClusterResourceStateReply(cluster_resource_state=pb.ClusterResourceState(node_states=self.nodes))

    async def _drain(self, request, context):
        await self._enter("DrainNode", request, context)
        reason = self.refuse.get(request.node_id)
        for n in self.nodes:
            if n.node_id == request.node_id:  # refused: it is busy; accepted: its raylet leaves
                n.status, n.idle_duration_ms = (pb.RUNNING if reason is not None else pb.DEAD), 0
        if reason is not None:
            return pb.DrainNodeReply(is_accepted=False, rejection_reason_message=reason)
        return pb.DrainNodeReply(is_accepted=True)

    def drains(self) -> list[bytes]:
        return [request.node_id for method, request, _ in self.calls if method == "DrainNode"]


@pytest.fixture
async def gcs() -> FakeGcs:
    fake = FakeGcs()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def client() -> RayGcsClient:
    c = RayGcsClient()
    yield c
    await c.aclose()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "state, expected",
    [
        pytest.param(node("w-a", "10.0.1.1"),
                     RayNode(node_id("w-a"), "w-a", "workers", "10.0.1.1", "IDLE", 60_000, ()), id="idle-worker"),
        pytest.param(node("w-a", "10.0.1.1", pb.RUNNING, 0, ["Resource: CPU currently in use."]),
                     RayNode(node_id("w-a"), "w-a", "workers", "10.0.1.1", "RUNNING", 0,
                             ("Resource: CPU currently in use.",)), id="running-with-activity"),
        pytest.param(node("w-a", "10.0.1.1", pb.DRAINING),
                     RayNode(node_id("w-a"), "w-a", "workers", "10.0.1.1", "DRAINING", 60_000, ()), id="draining"),
        pytest.param(pb.NodeState(node_id=node_id("head"), node_ip_address="10.0.0.10", status=pb.IDLE),
                     RayNode(node_id("head"), "", "", "10.0.0.10", "IDLE", 0, ()), id="no-instance-id"),
        pytest.param(node("w-a", "10.0.1.1", 7),
                     RayNode(node_id("w-a"), "w-a", "workers", "10.0.1.1", "UNKNOWN(7)", 60_000, ()),
                     id="status-from-a-newer-ray"),
    ],
)
async def test_nodes(gcs: FakeGcs, client: RayGcsClient, state, expected: RayNode):
    gcs.nodes = [state]
    assert await client.nodes(gcs.address) == [expected]


async def test_dead_nodes_are_reported_not_alive(gcs: FakeGcs, client: RayGcsClient):
    gcs.nodes = [node("w-a", "10.0.1.1", pb.DEAD), node("w-b", "10.0.1.2")]
    assert [(n.instance_id, n.alive) for n in await client.nodes(gcs.address)] == [("w-a", False), ("w-b", True)]


async def test_state_query_has_its_named_timeout(gcs: FakeGcs, client: RayGcsClient):
    await client.nodes(gcs.address)
    ((method, request, left),) = gcs.calls
    assert (method, request) == ("GetClusterResourceState", pb.GetClusterResourceStateRequest())
    assert QUERY_TIMEOUT_SECONDS - 1 < left <= QUERY_TIMEOUT_SECONDS + 0.5  # gRPC rounds deadlines


@pytest.mark.parametrize("refusal", [None, "The node to be idle terminated is no longer idle."],
                         ids=["accepted", "refused"])
async def test_drain_idle(gcs: FakeGcs, client: RayGcsClient, refusal: str | None):
    gcs.nodes = [node("w-a", "10.0.1.1")]
    if refusal:
        gcs.refuse[node_id("w-a")] = refusal
    deadline = int(time.time() * 1000) + 60_000
    answer = await client.drain_idle(gcs.address, node_id("w-a"), "scale-down of rc", deadline)
    assert answer == (Drain(False, refusal) if refusal else Drain(True, ""))
    ((method, request, left),) = gcs.calls
    assert (method, request) == ("DrainNode", pb.DrainNodeRequest(
        node_id=node_id("w-a"), reason=pb.DRAIN_NODE_REASON_IDLE_TERMINATION, reason_message="scale-down of rc",
        deadline_timestamp_ms=deadline))
    assert DRAIN_TIMEOUT_SECONDS - 1 < left <= DRAIN_TIMEOUT_SECONDS + 0.5  # gRPC rounds deadlines


@pytest.mark.parametrize("args, message", [
    pytest.param((b"", "x", 0), "needs a node id", id="no-node-id"),
    pytest.param((node_id("w-a"), "x", -1), "deadline_ms must be >= 0, got -1", id="negative-deadline"),
])
async def test_drain_arguments_checked_before_sending(gcs: FakeGcs, client: RayGcsClient, args, message: str):
    with pytest.raises(ValueError, match=message):
        await client.drain_idle(gcs.address, *args)
    assert gcs.calls == []


# ---------------------------------------------------------------- failures


def no_state(gcs: FakeGcs) -> None:
    gcs.reply = pb.GetClusterResourceStateReply()


def node_without_id(gcs: FakeGcs) -> None:
    gcs.nodes = [pb.NodeState(instance_id="w-a", status=pb.IDLE)]


@pytest.mark.parametrize(
    "setup, fragment",
    [
        pytest.param(lambda g: g.abort.update(GetClusterResourceState=grpc.StatusCode.UNAVAILABLE),
                     "UNAVAILABLE: GetClusterResourceState failed on purpose", id="unavailable"),
        pytest.param(lambda g: g.abort.update(GetClusterResourceState=grpc.StatusCode.UNAUTHENTICATED),
                     "UNAUTHENTICATED", id="token-auth-required"),
        pytest.param(lambda g: g.abort.update(GetClusterResourceState=grpc.StatusCode.UNIMPLEMENTED),
                     "UNIMPLEMENTED", id="unimplemented"),
        pytest.param(lambda g: setattr(g, "garbage", True), "unexpected answer: not a", id="reply-does-not-parse"),
        pytest.param(no_state, "unexpected answer: no cluster_resource_state", id="no-cluster-state"),
        pytest.param(node_without_id, "unexpected answer: a node without node_id", id="node-without-id"),
    ],
)
async def test_every_state_failure_is_ray_gcs_unreachable(gcs: FakeGcs, client: RayGcsClient, setup, fragment):
    setup(gcs)
    with pytest.raises(RayGcsUnreachable) as raised:
        await client.nodes(gcs.address)
    assert str(raised.value).startswith(f"GetClusterResourceState at {gcs.address}: ")
    assert fragment in str(raised.value)


async def test_refused_connection(client: RayGcsClient):
    address = closed_port()
    with pytest.raises(RayGcsUnreachable, match=f"^GetClusterResourceState at {address}: UNAVAILABLE"):
        await client.nodes(address)


async def test_deadline(gcs: FakeGcs, client: RayGcsClient, monkeypatch):
    monkeypatch.setattr(ray_gcs, "QUERY_TIMEOUT_SECONDS", 0.2)
    gcs.delay = 2.0
    with pytest.raises(RayGcsUnreachable, match="DEADLINE_EXCEEDED"):
        await client.nodes(gcs.address)


@pytest.mark.parametrize("setup, fragment", [
    pytest.param(lambda g: g.abort.update(DrainNode=grpc.StatusCode.INVALID_ARGUMENT), "INVALID_ARGUMENT",
                 id="invalid"),
    pytest.param(lambda g: setattr(g, "garbage", True), "unexpected answer: not a", id="reply-does-not-parse"),
])
async def test_every_drain_failure_is_ray_gcs_unreachable(gcs: FakeGcs, client: RayGcsClient, setup, fragment):
    setup(gcs)
    with pytest.raises(RayGcsUnreachable) as raised:
        await client.drain_idle(gcs.address, node_id("w-a"), "x", 0)
    assert str(raised.value).startswith(f"DrainNode at {gcs.address}: ") and fragment in str(raised.value)


# ---------------------------------------------------------------- channels


class Channels:
    """A channel factory that records the channels it made and which were closed."""

    def __init__(self) -> None:
        self.made: list[tuple[str, grpc.aio.Channel]] = []
        self.closed: list[str] = []

    def __call__(self, address: str) -> grpc.aio.Channel:
        inner = grpc.aio.insecure_channel(address)
        record = self

        class Recorded:
            def unary_unary(self, *args, **kwargs):
                return inner.unary_unary(*args, **kwargs)

            async def close(self):
                record.closed.append(address)
                await inner.close()

        channel = Recorded()
        self.made.append((address, channel))
        return channel  # type: ignore[return-value]


async def test_one_channel_per_address_from_the_factory(gcs: FakeGcs):
    channels = Channels()
    client = RayGcsClient(channels)
    await client.nodes(gcs.address)
    await client.drain_idle(gcs.address, node_id("w-a"), "x", 0)
    assert [address for address, _ in channels.made] == [gcs.address]
    await client.aclose()
    assert channels.closed == [gcs.address]


async def test_a_failed_call_closes_its_channel_and_the_next_connects_anew(gcs: FakeGcs):
    channels = Channels()
    client = RayGcsClient(channels)
    gcs.abort["GetClusterResourceState"] = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(RayGcsUnreachable):
        await client.nodes(gcs.address)
    assert channels.closed == [gcs.address]
    del gcs.abort["GetClusterResourceState"]
    assert await client.nodes(gcs.address) == []
    assert len(channels.made) == 2
    await client.aclose()


async def test_least_recently_used_channel_closed_past_the_limit(monkeypatch):
    monkeypatch.setattr(ray_gcs, "MAX_CHANNELS", 2)
    fakes = [FakeGcs() for _ in range(3)]
    addresses = [await f.start() for f in fakes]
    channels = Channels()
    client = RayGcsClient(channels)
    try:
        for address in (addresses[0], addresses[1], addresses[0], addresses[2]):
            await client.nodes(address)
        assert channels.closed == [addresses[1]], "the least recently used one"
        await client.aclose()
        assert sorted(channels.closed) == sorted(addresses)
    finally:
        for f in fakes:
            await f.stop()


# ---------------------------------------------------------------- the KubeRay backend's use of it
#
# Rules (`KubeRayBackend.scale`, over FakeKube and the fake GCS):
# - the GCS is asked only when the surplus reaches Ready workers, at the Ready
#   head pod's IP and its `gcs-server` container port (outside a cluster);
# - each chosen idle worker is drained (IDLE_TERMINATION, a deadline
#   DRAIN_DEADLINE_SECONDS ahead), one at a time, and only the accepted ones
#   are named in `workersToDelete`; a refused one is replaced by the next idle
#   worker; when none is left, the released ones are still named, the group
#   is lowered by that many only, and ScaleDownUnsafe says which Ray kept;
#   when Ray released none (refused, or a drain not answered: draining stops),
#   nothing is written;
# - when the idle workers cannot cover the surplus, or the GCS cannot be
#   asked, nothing is drained and nothing written (ScaleDownUnsafe says why);
# - a 409 on the patch makes it read and choose again, keeping the workers
#   Ray already released, without draining them twice; when the retry cannot
#   cover the surplus, it still names the released ones.

from fakes import FakeKube  # noqa: E402

from dask_operator.backends.base import SCALE_DOWN_NAMED  # noqa: E402
from dask_operator.backends.kuberay import KubeRayBackend  # noqa: E402
from dask_operator.core.kuberay import DRAIN_DEADLINE_SECONDS  # noqa: E402
from dask_operator.errors import HeadNotFound, KubeApiError, NotScalable, ScaleDownUnsafe, ScalingError  # noqa: E402

NS, NAME = "ns", "rc"
RAY = ("ray.io/v1", "rayclusters")
REFUSAL = "The node to be idle terminated is no longer idle."


def ray_cluster(*groups: dict, **spec) -> dict:
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": NAME, "namespace": NS},
            "spec": {"headGroupSpec": {"template": {}}, "workerGroupSpecs": list(groups), **spec},
            "status": {"head": {"serviceName": f"{NAME}-head-svc"}, "endpoints": {"gcs-server": "30123"},
                       "conditions": [{"type": "HeadPodReady", "status": "True"}]}}


def group(name="workers", replicas=3, **extra) -> dict:
    return {"groupName": name, "replicas": replicas, "minReplicas": 0, "maxReplicas": 5, "template": {}, **extra}


def pod(name: str, ip: str, *, node_type="worker", group_name="workers", ready=True, phase="Running",
        gcs_port: int | None = None) -> dict:
    labels = {"ray.io/cluster": NAME, "ray.io/node-type": node_type}
    if node_type == "worker":
        labels["ray.io/group"] = group_name
    ports = [{"name": "dashboard", "containerPort": 8265}]
    if gcs_port:
        ports.append({"name": "gcs-server", "containerPort": gcs_port})
    return {"metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "ray-head" if node_type == "head" else "ray-worker", "ports": ports}]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def setup(kube: FakeKube, gcs: FakeGcs | str, *workers: dict, cluster: dict | None = None,
          head_ready=True) -> None:
    """The RayCluster, its head pod at the GCS's address, and `workers` (created in this order: later is newer)."""
    address = gcs.address if isinstance(gcs, FakeGcs) else gcs
    host, port = address.rsplit(":", 1)
    kube.add(*RAY, cluster or ray_cluster(group()))
    kube.add("v1", "pods", pod("rc-head-x", host, node_type="head", ready=head_ready, gcs_port=int(port)))
    for w in workers:
        kube.add("v1", "pods", w)


def group_spec(kube: FakeKube) -> dict:
    return kube.object(*RAY, NS, NAME)["spec"]["workerGroupSpecs"][0]


THREE = (pod("w-a", "10.0.1.1"), pod("w-b", "10.0.1.2"), pod("w-c", "10.0.1.3"))
HEAD_NODE = pb.NodeState(node_id=node_id("head"), node_ip_address="127.0.0.1", status=pb.IDLE, idle_duration_ms=9)


@pytest.fixture
async def backend(client: RayGcsClient):
    kube = FakeKube()
    yield kube, KubeRayBackend(kube, client, via_service=False)  # type: ignore[arg-type]


async def test_scale_down_drains_idle_workers_and_names_the_released(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE)
    gcs.nodes = [HEAD_NODE, node("w-a", "10.0.1.1"), node("w-b", "10.0.1.2", pb.RUNNING, 0), node("w-c", "10.0.1.3")]
    before = time.time()
    await b.scale(NS, NAME, 1)
    assert [m for m, _, _ in gcs.calls] == ["GetClusterResourceState", "DrainNode", "DrainNode"]
    assert gcs.drains() == [node_id("w-c"), node_id("w-a")], "newest first"
    for _, request, _ in gcs.calls[1:]:
        assert request.reason == pb.DRAIN_NODE_REASON_IDLE_TERMINATION
        assert (before + DRAIN_DEADLINE_SECONDS) * 1000 - 1000 <= request.deadline_timestamp_ms \
            <= (time.time() + DRAIN_DEADLINE_SECONDS) * 1000
        assert request.reason_message.startswith("dask-operator: RayCluster ns/rc, group 'workers', to 1 workers")
    g = group_spec(kube)
    assert (g["replicas"], g["scaleStrategy"]["workersToDelete"]) == (1, ["w-c", "w-a"])
    (write,) = kube.calls_of("patch")
    assert write.body["metadata"]["resourceVersion"], "the patch carries the resourceVersion read"


async def test_gcs_not_asked_when_unready_workers_cover_the_surplus(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, pod("w-a", "10.0.1.1"), pod("w-b", "10.0.1.2", ready=False, phase="Pending"))
    await b.scale(NS, NAME, 1)
    assert gcs.calls == []
    assert group_spec(kube)["scaleStrategy"]["workersToDelete"] == ["w-b"]


def busy(gcs: FakeGcs) -> None:
    gcs.nodes = [HEAD_NODE, node("w-a", "10.0.1.1", pb.RUNNING, 0), node("w-b", "10.0.1.2"),
                 node("w-c", "10.0.1.3", pb.DRAINING)]


def idle_briefly(gcs: FakeGcs) -> None:
    gcs.nodes = [node("w-a", "10.0.1.1", idle_ms=1200), node("w-b", "10.0.1.2"), node("w-c", "10.0.1.3", idle_ms=4999)]


@pytest.mark.parametrize(
    "prepare, head, head_ready, missing, reason",
    [
        pytest.param(busy, "fake", True, 1, "the Ray head reports 1 of 3 Ready workers idle (busy: w-a, w-c)",
                     id="workers-busy"),
        pytest.param(idle_briefly, "fake", True, 1, "(busy: w-a, w-c)", id="idle-for-less-than-the-minimum"),
        pytest.param(busy, "closed", True, 2, "could not be asked which workers are idle, and without it only "
                     "workers that are not Ready may go; nothing was changed (GetClusterResourceState at 127.0.0.1:",
                     id="gcs-down"),
        pytest.param(busy, "fake", False, 2, "(no Ready head pod)", id="head-not-ready"),
    ],
)
async def test_unsafe_scale_down_drains_nothing_writes_nothing_and_says_why(gcs: FakeGcs, backend, prepare, head,
                                                                          head_ready, missing, reason):
    kube, b = backend
    prepare(gcs)
    setup(kube, gcs if head == "fake" else closed_port(), *THREE, head_ready=head_ready)
    with pytest.raises(ScaleDownUnsafe) as raised:
        await b.scale(NS, NAME, 1)
    message = str(raised.value)
    assert message.startswith(f"RayCluster ns/rc, group 'workers', to 1 workers: cannot choose {missing} of the 2 "
                              "workers to remove: "), message
    assert reason in message
    assert kube.writes() == [] and gcs.drains() == []


async def test_a_refused_drain_is_replaced_by_the_next_idle_worker(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE)
    gcs.nodes = [node("w-a", "10.0.1.1"), node("w-b", "10.0.1.2"), node("w-c", "10.0.1.3")]
    gcs.refuse[node_id("w-c")] = REFUSAL
    await b.scale(NS, NAME, 2)
    assert gcs.drains() == [node_id("w-c"), node_id("w-b")]
    g = group_spec(kube)
    assert (g["replicas"], g["scaleStrategy"]["workersToDelete"]) == (2, ["w-b"])


async def test_refused_drains_without_a_spare_lower_the_group_by_the_released_only(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE)
    gcs.nodes = [node("w-a", "10.0.1.1"), node("w-b", "10.0.1.2", pb.RUNNING, 0), node("w-c", "10.0.1.3")]
    gcs.refuse[node_id("w-c")] = REFUSAL
    with pytest.raises(ScaleDownUnsafe) as raised:
        await b.scale(NS, NAME, 1)
    assert str(raised.value) == ("RayCluster ns/rc, group 'workers', to 1 workers: only 1 of the 2 workers could be "
                                 f"removed, so the group now wants 2: Ray did not release the others: w-c ({REFUSAL})")
    assert gcs.drains() == [node_id("w-c"), node_id("w-a")]
    g = group_spec(kube)
    assert (g["replicas"], g["scaleStrategy"]["workersToDelete"]) == (2, ["w-a"]), "w-a's raylet has left Ray"
    assert kube.writes() == ["patch rayclusters/rc"]


async def test_a_conflict_chooses_again_keeping_the_released_without_draining_twice(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE)
    gcs.nodes = [node("w-a", "10.0.1.1"), node("w-b", "10.0.1.2"), node("w-c", "10.0.1.3")]
    kube.fail_next("patch", KubeApiError(409, "the object has been modified"))
    await b.scale(NS, NAME, 2)
    assert len(kube.calls_of("patch")) == 2 and len(kube.calls_of("get")) == 2
    assert gcs.drains() == [node_id("w-c")], "drained once; the second read sees its node DEAD"
    assert [n.status for n in gcs.nodes if n.instance_id == "w-c"] == [pb.DEAD]
    assert group_spec(kube)["scaleStrategy"]["workersToDelete"] == ["w-c"]


async def test_other_patch_errors_are_not_retried(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE)
    kube.fail_next("patch", KubeApiError(422, "invalid"))
    with pytest.raises(ScalingError, match="HTTP 422"):
        await b.scale(NS, NAME, 4)
    assert len(kube.calls_of("patch")) == 1 and gcs.calls == []


async def test_autoscaled_cluster_is_not_scaled(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE, cluster=ray_cluster(group(), enableInTreeAutoscaling=True))
    with pytest.raises(NotScalable):
        await b.scale(NS, NAME, 1)
    assert kube.writes() == [] and gcs.calls == []


async def test_status(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, pod("w-a", "10.0.1.1"), pod("w-b", "10.0.1.2", ready=False),
          pod("g-a", "10.0.2.1", group_name="gpu"),
          cluster=ray_cluster(group(replicas=2), group("gpu", replicas=1, minReplicas=1, maxReplicas=2)))
    obj = await b.get(NS, NAME)
    whole, gpu = await b.status(obj), await b.status(obj, group="gpu")
    assert (whole.desired, whole.ready_workers, whole.head_ready) == (3, 2, True)
    assert (whole.min_replicas, whole.max_replicas, whole.scale_down) == (None, None, SCALE_DOWN_NAMED)
    assert (gpu.desired, gpu.ready_workers, gpu.min_replicas, gpu.max_replicas) == (1, 1, 1, 2)
    assert whole.conditions == ({"type": "HeadPodReady", "status": "True"},)
    assert gcs.calls == []


async def test_restart_head_deletes_the_head_pod(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE)
    deleted = await b.restart_head(NS, NAME)
    assert deleted["metadata"]["name"] == "rc-head-x"
    assert kube.writes() == ["delete pods/rc-head-x"]
    with pytest.raises(HeadNotFound):
        await b.restart_head(NS, NAME)


async def test_refused_drains_and_none_released_write_nothing(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE, pod("w-d", "10.0.1.4", ready=False, phase="Pending"))
    gcs.nodes = [node("w-a", "10.0.1.1"), node("w-b", "10.0.1.2", pb.RUNNING, 0), node("w-c", "10.0.1.3")]
    gcs.refuse.update({node_id("w-a"): REFUSAL, node_id("w-c"): REFUSAL})
    with pytest.raises(ScaleDownUnsafe) as raised:
        await b.scale(NS, NAME, 1)
    assert str(raised.value) == ("RayCluster ns/rc, group 'workers', to 1 workers: Ray released none of the idle "
                                 f"workers: w-a ({REFUSAL}); w-c ({REFUSAL}); nothing was changed")
    assert gcs.drains() == [node_id("w-c"), node_id("w-a")] and kube.writes() == []


async def test_an_unanswered_drain_stops_draining_and_writes_nothing(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE)
    gcs.nodes = [node("w-a", "10.0.1.1"), node("w-b", "10.0.1.2"), node("w-c", "10.0.1.3")]
    gcs.abort["DrainNode"] = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ScaleDownUnsafe, match=r"Ray released none of the idle workers: w-c \(drain not answered: "
                                              r"DrainNode at 127\.0\.0\.1:\d+: UNAVAILABLE"):
        await b.scale(NS, NAME, 1)
    assert gcs.drains() == [node_id("w-c")] and kube.writes() == []


async def test_a_conflict_after_a_refusal_still_names_the_released(gcs: FakeGcs, backend):
    kube, b = backend
    setup(kube, gcs, *THREE)
    gcs.nodes = [node("w-a", "10.0.1.1"), node("w-b", "10.0.1.2", pb.RUNNING, 0), node("w-c", "10.0.1.3")]
    gcs.refuse[node_id("w-c")] = REFUSAL
    kube.fail_next("patch", KubeApiError(409, "the object has been modified"))
    with pytest.raises(ScaleDownUnsafe, match=r"only 1 of the 2 workers could be removed, so the group now wants 2: "
                                              r"Ray did not release the others: w-c \("):
        await b.scale(NS, NAME, 1)
    assert gcs.drains() == [node_id("w-c"), node_id("w-a")], "the retry drains nothing more"
    assert len(kube.calls_of("patch")) == 2
    g = group_spec(kube)
    assert (g["replicas"], g["scaleStrategy"]["workersToDelete"]) == (2, ["w-a"])
