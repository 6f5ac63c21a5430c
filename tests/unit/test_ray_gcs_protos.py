"""ray_gcs_protos: our subset of Ray's autoscaler.proto is Ray's, and its committed stub is what protoc gives.

Ray's side is the installed ray wheel's generated `autoscaler_pb2` (ray is a
test-only dependency; product code never imports it). Rules:
- the committed `ray_autoscaler_pb2.py` is byte for byte what regenerating gives;
- every message we declare exists in Ray's package with each of our fields
  under the same number, type, label and (for messages and enums) type name;
- every enum we declare has exactly Ray's values and numbers;
- Ray's service has both methods we call, taking and returning the messages we
  send and parse;
- bytes Ray serializes parse with ours to the same values, and the reverse;
  both sets of messages live in one process (different packages).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from ray.core.generated import autoscaler_pb2 as theirs

from dask_operator import ray_gcs
from dask_operator.ray_gcs_protos import ray_autoscaler_pb2 as ours
from dask_operator.ray_gcs_protos import regenerate

OURS = ours.DESCRIPTOR
THEIRS = theirs.DESCRIPTOR


def test_regenerating_gives_the_committed_file(tmp_path: Path):
    fresh = regenerate.generate(tmp_path)
    for name in regenerate.GENERATED:
        assert (fresh / name).read_bytes() == (regenerate.HERE / name).read_bytes(), \
            f"stale {name}: run python -m dask_operator.ray_gcs_protos.regenerate"
    assert sorted(p.name for p in regenerate.HERE.glob("*_pb2*.py")) == sorted(regenerate.GENERATED)


def test_the_package_is_ours_and_the_service_is_rays():
    assert OURS.package == "dask_operator.ray_gcs_protos" != THEIRS.package == "ray.rpc.autoscaler"
    assert ray_gcs.SERVICE == THEIRS.services_by_name["AutoscalerStateService"].full_name


def _fields():
    for message in OURS.message_types_by_name.values():
        for field in message.fields:
            yield pytest.param(message.name, field.name, id=f"{message.name}.{field.name}")


def _short(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


def _field(file, message: str, field: str) -> descriptor_pb2.FieldDescriptorProto | None:
    proto = descriptor_pb2.DescriptorProto()
    file.message_types_by_name[message].CopyToProto(proto)
    return next((f for f in proto.field if f.name == field), None)


@pytest.mark.parametrize("message, field", list(_fields()))
def test_every_field_is_rays(message: str, field: str):
    mine = _field(OURS, message, field)
    assert message in THEIRS.message_types_by_name, f"Ray has no message {message}"
    ray = _field(THEIRS, message, field)
    assert ray is not None, f"Ray's {message} has no {field}"
    assert (mine.number, mine.type, mine.label) == (ray.number, ray.type, ray.label)
    assert _short(mine.type_name) == _short(ray.type_name)


def test_every_message_has_a_field_or_is_an_empty_request():
    empty = [m.name for m in OURS.message_types_by_name.values() if not m.fields]
    assert empty == ["GetClusterResourceStateRequest"]


@pytest.mark.parametrize("enum", sorted(OURS.enum_types_by_name))
def test_enums_are_rays(enum: str):
    mine = {v.name: v.number for v in OURS.enum_types_by_name[enum].values}
    assert mine == {v.name: v.number for v in THEIRS.enum_types_by_name[enum].values}


@pytest.mark.parametrize("method, request_type, reply_type", [
    pytest.param(ray_gcs.GET_CLUSTER_RESOURCE_STATE, ours.GetClusterResourceStateRequest,
                 ours.GetClusterResourceStateReply, id="GetClusterResourceState"),
    pytest.param(ray_gcs.DRAIN_NODE, ours.DrainNodeRequest, ours.DrainNodeReply, id="DrainNode"),
])
def test_the_methods_we_call_are_rays(method: str, request_type, reply_type):
    service, name = method.strip("/").split("/")
    ray_method = THEIRS.services_by_name["AutoscalerStateService"].methods_by_name[name]
    assert ray_method.containing_service.full_name == service
    assert (ray_method.input_type.name, ray_method.output_type.name) == \
        (request_type.DESCRIPTOR.name, reply_type.DESCRIPTOR.name)


def test_rays_bytes_parse_with_ours():
    node = theirs.NodeState(
        node_id=b"\x01" * 28, instance_id="rc-workers-worker-abcde", ray_node_type_name="workers",
        available_resources={"CPU": 1.0}, total_resources={"CPU": 1.0}, node_state_version=7,
        status=theirs.IDLE, idle_duration_ms=12345, node_ip_address="10.0.1.2", instance_type_name="m5",
        node_activity=["Resource: CPU currently in use."], labels={"ray.io/node-group": "workers"})
    reply = theirs.GetClusterResourceStateReply(cluster_resource_state=theirs.ClusterResourceState(
        cluster_resource_state_version=3, node_states=[node], cluster_session_name="session_x"))
    parsed = ours.GetClusterResourceStateReply.FromString(reply.SerializeToString())
    (got,) = parsed.cluster_resource_state.node_states
    assert (got.node_id, got.instance_id, got.ray_node_type_name, got.status, got.idle_duration_ms,
            got.node_ip_address, list(got.node_activity)) == \
        (b"\x01" * 28, "rc-workers-worker-abcde", "workers", ours.IDLE, 12345, "10.0.1.2",
         ["Resource: CPU currently in use."])
    drain = theirs.DrainNodeReply(is_accepted=False, rejection_reason_message="no longer idle")
    assert ours.DrainNodeReply.FromString(drain.SerializeToString()) == \
        ours.DrainNodeReply(is_accepted=False, rejection_reason_message="no longer idle")


def test_our_bytes_parse_with_rays():
    request = ours.DrainNodeRequest(node_id=b"\x02" * 28, reason=ours.DRAIN_NODE_REASON_IDLE_TERMINATION,
                                    reason_message="idle", deadline_timestamp_ms=1_700_000_000_000)
    assert theirs.DrainNodeRequest.FromString(request.SerializeToString()) == theirs.DrainNodeRequest(
        node_id=b"\x02" * 28, reason=theirs.DRAIN_NODE_REASON_IDLE_TERMINATION, reason_message="idle",
        deadline_timestamp_ms=1_700_000_000_000)
    assert theirs.GetClusterResourceStateRequest.FromString(
        ours.GetClusterResourceStateRequest().SerializeToString()) == theirs.GetClusterResourceStateRequest()
