"""Ray's GCS over gRPC, as the KubeRay backend uses it: which nodes are idle, and releasing one.

The GCS (global control service) runs in the Ray head, on port 6379 under
KubeRay (the head container's `gcs-server` port). Its autoscaler service,
`ray.rpc.autoscaler.AutoscalerStateService` (Ray's autoscaler v2 talks to it;
it is served whether or not v2 is on), has the two calls used here; the
messages are `ray_gcs_protos/ray_autoscaler.proto`, a subset of Ray's
`src/ray/protobuf/autoscaler.proto`:

- `GetClusterResourceState`: every alive node, and the dead nodes the GCS
  still remembers, with `status` (RUNNING / IDLE / DRAINING / DEAD),
  `idle_duration_ms`, `node_activity` (why a node is not idle), the node's IP
  and `instance_id` (RAY_CLOUD_INSTANCE_ID, which KubeRay sets to the pod's
  name). The GCS refreshes it from the raylets' periodic reports, so it lags
  them: a real Ray 2.60 worker read IDLE for about a second after a task had
  put an object in its store; and `node_activity` is only fresh while a node
  is busy (an idle worker kept "Resource: CPU currently in use." for as long
  as it stayed idle), so only `status` and `idle_duration_ms` say idle
  (tests/e2e/test_ray_gcs_real.py).
- `DrainNode` with reason IDLE_TERMINATION: the GCS asks the node's raylet,
  which accepts only when nothing is in use on it at that moment (no task or
  actor lease, no pinned primary object in its store); an accepted node stops
  taking work and its raylet exits as soon as it is idle, which is at once.
  The rejection says "The node to be idle terminated is no longer idle.".
  This is the race-free "release this node" handshake; PREEMPTION is never
  sent (the raylet cannot refuse it). Careful: the GCS also *accepts* a node
  id it does not know or that is dead (nothing runs there), so only drain
  nodes just seen alive.

Every failure of a call -- cannot connect, deadline, an error status, an
answer that does not parse or lacks what is needed -- is `RayGcsUnreachable`.
Nothing here imports `ray`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from .errors import DaskOperatorError
from .ray_gcs_protos import ray_autoscaler_pb2 as pb

SERVICE = "ray.rpc.autoscaler.AutoscalerStateService"
GET_CLUSTER_RESOURCE_STATE = f"/{SERVICE}/GetClusterResourceState"
DRAIN_NODE = f"/{SERVICE}/DrainNode"

GCS_PORT = 6379
# The GCS answers the state from memory; a drain waits for the node's raylet too.
QUERY_TIMEOUT_SECONDS = 5.0
DRAIN_TIMEOUT_SECONDS = 10.0
# A failed connection is retried within 2 s, not gRPC's default of up to 2 minutes;
# the GCS is always reached directly, never through an HTTP proxy from the environment.
CHANNEL_OPTIONS = (("grpc.max_reconnect_backoff_ms", 2000), ("grpc.enable_http_proxy", 0))
MAX_CHANNELS = 8  # one per head address, least recently used closed first

IDLE = "IDLE"
DEAD = "DEAD"

ChannelFactory = Callable[[str], grpc.aio.Channel]


class RayGcsUnreachable(DaskOperatorError):
    """The Ray GCS could not be reached or gave no usable answer."""


@dataclass(frozen=True)
class RayNode:
    """One node of `GetClusterResourceState`."""

    node_id: bytes
    instance_id: str  # the pod's name under KubeRay ("" when RAY_CLOUD_INSTANCE_ID was not set)
    node_type: str  # the worker group's name under KubeRay
    ip: str
    status: str  # RUNNING, IDLE, DRAINING, DEAD, UNSPECIFIED (or UNKNOWN(n) from a newer Ray)
    idle_ms: int
    activity: tuple[str, ...] = ()

    @property
    def alive(self) -> bool:
        return self.status != DEAD

    @property
    def short_id(self) -> str:
        return self.node_id.hex()[:12]


@dataclass(frozen=True)
class Drain:
    """The GCS's answer to a drain: accepted, or Ray's reason for refusing."""

    accepted: bool
    reason: str = ""


def insecure_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


class RayGcsClient:
    """Thin async client over `grpc.aio`; every failure surfaces as `RayGcsUnreachable`.

    `channel` makes the channel for a `host:port` address (default: plaintext,
    as Ray serves it without token authentication). Channels are kept per
    address, at most MAX_CHANNELS; one whose call failed is closed (which also
    ends any other call on it), so the next call connects anew.
    """

    def __init__(self, channel: ChannelFactory | None = None) -> None:
        self._new_channel = channel or insecure_channel
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()

    async def aclose(self) -> None:
        channels, self._channels = list(self._channels.values()), OrderedDict()
        for channel in channels:
            await channel.close()

    async def nodes(self, address: str) -> list[RayNode]:
        """Every node the GCS reports, alive and dead."""
        reply = await self._call(GET_CLUSTER_RESOURCE_STATE, address, pb.GetClusterResourceStateRequest(),
                                 pb.GetClusterResourceStateReply, QUERY_TIMEOUT_SECONDS)
        what = f"GetClusterResourceState at {address}"
        if not reply.HasField("cluster_resource_state"):
            raise RayGcsUnreachable(f"{what}: unexpected answer: no cluster_resource_state")
        nodes = [_node(n) for n in reply.cluster_resource_state.node_states]
        if any(not n.node_id for n in nodes):
            raise RayGcsUnreachable(f"{what}: unexpected answer: a node without node_id")
        return nodes

    async def drain_idle(self, address: str, node_id: bytes, reason: str, deadline_ms: int) -> Drain:
        """Ask for `node_id` to be released because it is idle (IDLE_TERMINATION).

        `deadline_ms`: Unix time in ms by which the node will be gone (0: none).
        Accepted means the raylet found nothing in use and is leaving Ray.
        """
        if not node_id:
            raise ValueError("drain_idle needs a node id")
        if deadline_ms < 0:
            raise ValueError(f"deadline_ms must be >= 0, got {deadline_ms}")
        request = pb.DrainNodeRequest(node_id=node_id, reason=pb.DRAIN_NODE_REASON_IDLE_TERMINATION,
                                      reason_message=reason, deadline_timestamp_ms=deadline_ms)
        reply = await self._call(DRAIN_NODE, address, request, pb.DrainNodeReply, DRAIN_TIMEOUT_SECONDS)
        return Drain(reply.is_accepted, "" if reply.is_accepted else reply.rejection_reason_message)

    async def _call(self, method: str, address: str, request: Message, reply_type: type[Message],
                    timeout: float) -> Message:
        name = method.rsplit("/", 1)[1]
        channel = await self._channel(address)
        call = channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                                   response_deserializer=reply_type.FromString)
        try:
            reply = await call(request, timeout=timeout)
        except grpc.RpcError as e:
            await self._drop(address, channel)
            if isinstance(e, grpc.aio.AioRpcError):
                why = e.code().name + (f": {e.details()}" if e.details() else "")
            else:
                why = f"{type(e).__name__}: {e}"
            raise RayGcsUnreachable(f"{name} at {address}: {why}") from e
        if reply is None:  # grpc.aio logs the DecodeError and answers None
            await self._drop(address, channel)
            raise RayGcsUnreachable(f"{name} at {address}: unexpected answer: not a {reply_type.__name__}")
        return reply

    async def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._new_channel(address)
        self._channels.move_to_end(address)
        while len(self._channels) > MAX_CHANNELS:
            _, oldest = self._channels.popitem(last=False)
            await oldest.close()
        return channel

    async def _drop(self, address: str, channel: grpc.aio.Channel) -> None:
        """Close a channel whose call failed (and forget it, unless already replaced)."""
        if self._channels.get(address) is channel:
            del self._channels[address]
        await channel.close()


def _node(state: pb.NodeState) -> RayNode:
    status = pb.NodeStatus.Name(state.status) if state.status in pb.NodeStatus.values() else \
        f"UNKNOWN({state.status})"
    return RayNode(node_id=state.node_id, instance_id=state.instance_id, node_type=state.ray_node_type_name,
                   ip=state.node_ip_address, status=status, idle_ms=state.idle_duration_ms,
                   activity=tuple(state.node_activity))
