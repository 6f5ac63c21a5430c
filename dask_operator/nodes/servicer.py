"""The externalgrpc ``CloudProvider`` service: parse the request, call the provider, map errors.

Every error becomes a gRPC status through one table (``STATUS``). The
autoscaler treats any error of NodeGroupIncreaseSize as a failed scale-up and
backs the group off; of Refresh, as a failed loop it retries. Methods not
overridden here answer UNIMPLEMENTED (the generated base class does).
"""

from __future__ import annotations

import functools
import logging

import grpc
from google.protobuf import any_pb2

from .. import constants as c
from ..errors import NodeGroupError, VerdaError
from ..core import nodegroups as ng
from . import cloud, kube, script_source
from . import provider as p
from .protos import externalgrpc_pb2 as pb
from .protos import externalgrpc_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Code = grpc.StatusCode
STATUS = {
    cloud.CAPACITY: Code.RESOURCE_EXHAUSTED,
    cloud.QUOTA: Code.RESOURCE_EXHAUSTED,
    cloud.AUTH: Code.FAILED_PRECONDITION,  # our Verda credentials were refused
    cloud.INVALID: Code.FAILED_PRECONDITION,  # Verda rejects what the config asks for
    cloud.NOT_FOUND: Code.NOT_FOUND,
    cloud.UNAVAILABLE: Code.UNAVAILABLE,
    p.BAD_REQUEST: Code.INVALID_ARGUMENT,
    p.UNKNOWN_GROUP: Code.NOT_FOUND,
    p.PRECONDITION: Code.FAILED_PRECONDITION,
    p.NOT_OURS: Code.NOT_FOUND,
    script_source.SCRIPT_UNAVAILABLE: Code.UNAVAILABLE,  # the startup-script server could not give one
}
STATE = {ng.RUNNING: pb.InstanceStatus.instanceRunning, ng.CREATING: pb.InstanceStatus.instanceCreating,
         ng.DELETING: pb.InstanceStatus.instanceDeleting, ng.UNSPECIFIED: pb.InstanceStatus.unspecified}


def _rpc(method):
    """Turn provider and Verda errors into gRPC statuses; never let one escape as a crash."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except (NodeGroupError, VerdaError) as e:
            code = STATUS.get(e.kind, Code.UNKNOWN)
            log.warning("%s: %s: %s", method.__name__, code.name, e)
            context.abort(code, str(e))
        except Exception as e:  # a bug: say so, keep serving
            log.exception("%s failed", method.__name__)
            context.abort(Code.INTERNAL, f"{type(e).__name__}: {e}")

    return wrapper


def _hours(request) -> float:
    seconds = (request.endTimestamp.ToNanoseconds() - request.startTimestamp.ToNanoseconds()) / 1e9
    if seconds < 0:
        raise NodeGroupError(p.BAD_REQUEST, "the end timestamp is before the start")
    return seconds / 3600


class CloudProviderServicer(pb_grpc.CloudProviderServicer):
    def __init__(self, provider: p.Provider) -> None:
        self.provider = provider

    def _group(self, group: ng.NodeGroup | None) -> pb.NodeGroup:
        if group is None:
            return pb.NodeGroup()
        debug = (f"{group.name}: {group.min_size}..{group.max_size} x {group.instance_type} in {group.location}, "
                 f"{group.config.instance_option}")
        return pb.NodeGroup(id=group.name, minSize=group.min_size, maxSize=group.max_size, debug=debug)

    @_rpc
    def NodeGroups(self, request, context):
        return pb.NodeGroupsResponse(nodeGroups=[self._group(g) for g in self.provider.groups.values()])

    @_rpc
    def NodeGroupForNode(self, request, context):
        group = self.provider.group_of(request.node.providerID, request.node.name)
        return pb.NodeGroupForNodeResponse(nodeGroup=self._group(group))

    @_rpc
    def PricingNodePrice(self, request, context):
        node = request.node
        price = self.provider.node_price(node.providerID, node.name, dict(node.labels), _hours(request))
        return pb.PricingNodePriceResponse(price=price)

    @_rpc
    def PricingPodPrice(self, request, context):
        try:
            requests = kube.pod_requests(request.pod_bytes)
        except ValueError as e:
            raise NodeGroupError(p.BAD_REQUEST, f"pod_bytes: {e}") from None
        return pb.PricingPodPriceResponse(price=self.provider.pod_price(requests, _hours(request)))

    @_rpc
    def GPULabel(self, request, context):
        return pb.GPULabelResponse(label=c.GPU_LABEL)

    @_rpc
    def GetAvailableGPUTypes(self, request, context):
        return pb.GetAvailableGPUTypesResponse(gpuTypes={t: any_pb2.Any() for t in self.provider.gpu_types()})

    @_rpc
    def Cleanup(self, request, context):
        return pb.CleanupResponse()

    @_rpc
    def Refresh(self, request, context):
        self.provider.refresh()
        return pb.RefreshResponse()

    @_rpc
    def NodeGroupTargetSize(self, request, context):
        return pb.NodeGroupTargetSizeResponse(targetSize=self.provider.target_size(request.id))

    @_rpc
    def NodeGroupIncreaseSize(self, request, context):
        self.provider.increase(request.id, request.delta)
        return pb.NodeGroupIncreaseSizeResponse()

    @_rpc
    def NodeGroupDeleteNodes(self, request, context):
        self.provider.delete(request.id, [(n.providerID, n.name) for n in request.nodes])
        return pb.NodeGroupDeleteNodesResponse()

    @_rpc
    def NodeGroupDecreaseTargetSize(self, request, context):
        self.provider.decrease_target(request.id, request.delta)
        return pb.NodeGroupDecreaseTargetSizeResponse()

    @_rpc
    def NodeGroupNodes(self, request, context):
        instances = []
        for instance in self.provider.members(request.id):
            state, error_class = ng.instance_state(instance.status)
            status = pb.InstanceStatus(instanceState=STATE[state])
            if error_class is not None:
                status.errorInfo.CopyFrom(pb.InstanceErrorInfo(
                    errorCode=f"verda-{instance.status}", instanceErrorClass=error_class,
                    errorMessage=f"Verda instance {instance.id} ({instance.hostname}) is {instance.status}"))
            instances.append(pb.Instance(id=ng.provider_id(instance.id), status=status))
        return pb.NodeGroupNodesResponse(instances=instances)

    @_rpc
    def NodeGroupTemplateNodeInfo(self, request, context):
        return pb.NodeGroupTemplateNodeInfoResponse(nodeBytes=kube.node_bytes(self.provider.template(request.id)))

    @_rpc
    def NodeGroupGetOptions(self, request, context):
        """No per-group options (yet): the autoscaler's defaults, as given."""
        self.provider.group(request.id)
        return pb.NodeGroupAutoscalingOptionsResponse(nodeGroupAutoscalingOptions=request.defaults)
