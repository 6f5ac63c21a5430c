"""Contract tests of the externalgrpc provider: every call the autoscaler makes.

The real gRPC server on 127.0.0.1, a real client (the generated stub), the real
`verda` SDK against the stand-in Verda API (tests/verda_standin.py).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from dask_operator import constants as c
from dask_operator.core import nodegroups as ng
from dask_operator.nodes import pricing
from dask_operator.nodes.cloud import VerdaCloud
from dask_operator.nodes.kube import node_dict
from dask_operator.nodes.protos import externalgrpc_pb2 as pb
from dask_operator.nodes.protos import externalgrpc_pb2_grpc as pb_grpc
from dask_operator.nodes.protos.k8s.api.core.v1 import generated_pb2 as core
from dask_operator.errors import NodeGroupError
from dask_operator.nodes.provider import Provider
from dask_operator.nodes.script_source import ScriptSource
from dask_operator.nodes.server import start

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from verda_standin import INSTANCE_TYPES, VerdaStandIn  # noqa: E402

A100 = "1A100.22V"
SCRIPT = "#!/bin/bash\necho joining the cluster\n"
SPECS = ["0:3:1A100.22V:FIN-01:gpu", "0:2:1A100.22V:FIN-03:spot", "0:2:1A100.22V:ICE-01:ondemand",
         "0:2:1A100.22V:FIN-01:mig"]
CONFIG = {"node_configs": {
    "gpu": {"image_type": "ubuntu-24.04-cuda-12.8-open-docker", "ssh_key_ids": ["key-1"], "disk_size_gb": 100,
            "instance_option": "prefer_spot", "pricing_option": "fixed",
            "startup_script_base64": base64.b64encode(SCRIPT.encode()).decode(),
            "taints": [{"key": "gpu-node", "effect": "NoSchedule"}], "labels": {"nodepool": "gpu"}},
    "spot": {"image_type": "ubuntu-24.04", "instance_option": "spot_only",
             "startup_script_base64": base64.b64encode(SCRIPT.encode()).decode()},
    "ondemand": {"image_type": "ubuntu-24.04", "instance_option": "on_demand_only", "pricing_option": "dynamic"},
    "mig": {"image_type": "ubuntu-24.04", "instance_option": "prefer_on_demand", "override_num_gpus": 7,
            "labels": {"nvidia.com/mig.config": "all-1g.10gb"}},
}}
TIMEOUT = 10  # seconds, per call: the autoscaler's grpc_timeout


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    api: VerdaStandIn
    stub: pb_grpc.CloudProviderStub
    clock: Clock
    cloud: VerdaCloud
    address: str

    def call(self, method: str, **fields):
        request = getattr(pb, _REQUESTS[method])(**fields)
        return getattr(self.stub, method)(request, timeout=TIMEOUT)

    def error(self, method: str, **fields) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as e:
            self.call(method, **fields)
        return e.value

    def target(self, group: str) -> int:
        return self.call("NodeGroupTargetSize", id=group).targetSize

    def nodes(self, group: str) -> list:
        return list(self.call("NodeGroupNodes", id=group).instances)

    def grow(self, group: str, delta: int = 1) -> list[str]:
        """IncreaseSize; the provider IDs of the instances it made."""
        before = {i.id for i in self.nodes(group)}
        self.call("NodeGroupIncreaseSize", id=group, delta=delta)
        return [i.id for i in self.nodes(group) if i.id not in before]

    def instance(self, provider_id: str) -> dict:
        return self.api.instances[ng.instance_id(provider_id)]


_REQUESTS = {
    "NodeGroups": "NodeGroupsRequest", "NodeGroupForNode": "NodeGroupForNodeRequest",
    "PricingNodePrice": "PricingNodePriceRequest", "PricingPodPrice": "PricingPodPriceRequest",
    "GPULabel": "GPULabelRequest", "GetAvailableGPUTypes": "GetAvailableGPUTypesRequest",
    "Cleanup": "CleanupRequest", "Refresh": "RefreshRequest", "NodeGroupTargetSize": "NodeGroupTargetSizeRequest",
    "NodeGroupIncreaseSize": "NodeGroupIncreaseSizeRequest", "NodeGroupDeleteNodes": "NodeGroupDeleteNodesRequest",
    "NodeGroupDecreaseTargetSize": "NodeGroupDecreaseTargetSizeRequest", "NodeGroupNodes": "NodeGroupNodesRequest",
    "NodeGroupTemplateNodeInfo": "NodeGroupTemplateNodeInfoRequest",
    "NodeGroupGetOptions": "NodeGroupAutoscalingOptionsRequest",
}


def serve(api: VerdaStandIn, url: str, timeout: float = 5.0):
    clock = Clock()
    cloud = VerdaCloud(api.client_id, api.client_secret, url, timeout=timeout, clock=clock)
    counter = itertools.count(1)  # its next() is atomic: instances are created on several threads
    provider = Provider(ng.build_node_groups(SPECS, CONFIG), cloud, suffix=lambda: f"{next(counter):08x}")
    server, port = start(provider, "127.0.0.1:0")
    return server, port, clock, cloud


@pytest.fixture
def world():
    api = VerdaStandIn()
    url = api.start()
    server, port, clock, cloud = serve(api, url)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield World(api, pb_grpc.CloudProviderStub(channel), clock, cloud, f"127.0.0.1:{port}")
    channel.close()
    server.stop(None).wait()
    api.stop()


def node(provider_id: str = "", name: str = "", **labels) -> pb.ExternalGrpcNode:
    return pb.ExternalGrpcNode(providerID=provider_id, name=name, labels=labels)


# ---------------------------------------------------------------- node groups


def test_node_groups_are_the_specs(world):
    groups = world.call("NodeGroups").nodeGroups
    assert [(g.id, g.minSize, g.maxSize) for g in groups] == [
        ("gpu", 0, 3), ("spot", 0, 2), ("ondemand", 0, 2), ("mig", 0, 2)]
    assert groups[0].debug == "gpu: 0..3 x 1A100.22V in FIN-01, prefer_spot"


def test_an_empty_account_has_empty_groups(world):
    assert [world.target(g) for g in ("gpu", "spot", "ondemand", "mig")] == [0, 0, 0, 0]
    assert world.nodes("gpu") == []


@pytest.mark.parametrize("method, fields", [
    pytest.param("NodeGroupTargetSize", {}, id="target-size"),
    pytest.param("NodeGroupIncreaseSize", {"delta": 1}, id="increase"),
    pytest.param("NodeGroupDeleteNodes", {}, id="delete"),
    pytest.param("NodeGroupDecreaseTargetSize", {"delta": -1}, id="decrease"),
    pytest.param("NodeGroupNodes", {}, id="nodes"),
    pytest.param("NodeGroupTemplateNodeInfo", {}, id="template"),
    pytest.param("NodeGroupGetOptions", {}, id="options"),
])
def test_unknown_group_is_not_found(world, method, fields):
    e = world.error(method, id="nope", **fields)
    assert e.code() == grpc.StatusCode.NOT_FOUND and "no node group 'nope'" in e.details()


# ---------------------------------------------------------------- increase


def test_increase_creates_instances_as_configured(world):
    made = world.grow("gpu", 2)
    assert len(made) == 2 and world.target("gpu") == 2
    assert all(p.startswith("datacrunch://") for p in made)
    first = world.api.created[0]
    assert {k: first[k] for k in ("instance_type", "image", "location_code", "ssh_key_ids", "is_spot",
                                  "description")} == {
        "instance_type": A100, "image": "ubuntu-24.04-cuda-12.8-open-docker", "location_code": "FIN-01",
        "ssh_key_ids": ["key-1"], "is_spot": True, "description": "gpu"}
    assert "pricing" not in first, "a spot instance has no pricing option"
    hosts = sorted(c["hostname"] for c in world.api.created)
    assert hosts == ["gpu-00000001", "gpu-00000002"]
    assert sorted(c["os_volume"]["name"] for c in world.api.created) == hosts
    assert {c["os_volume"]["size"] for c in world.api.created} == {100}
    scripts = {s["id"]: s for s in world.api.scripts.values()}
    for created in world.api.created:
        script = scripts[created["startup_script_id"]]
        assert script["name"] == f"autoscaler-startup-script-{created['hostname']}" and script["script"] == SCRIPT


def test_new_instances_are_creating_until_running(world):
    [made] = world.grow("ondemand")
    assert [(i.id, i.status.instanceState) for i in world.nodes("ondemand")] == [
        (made, pb.InstanceStatus.instanceCreating)]
    world.api.set_status(ng.instance_id(made), "running")
    world.call("Refresh")
    assert world.nodes("ondemand")[0].status.instanceState == pb.InstanceStatus.instanceRunning
    assert world.api.created[0]["pricing"] == "DYNAMIC_PRICE"


def test_prefer_spot_falls_back_to_on_demand_when_spot_is_unavailable(world):
    world.api.capacity[(A100, "FIN-01", True)] = 0
    [made] = world.grow("gpu")
    assert world.instance(made)["is_spot"] is False
    assert world.api.created[-1]["pricing"] == "FIXED_PRICE"
    assert world.api.count("POST", "/v1/instances") == 1, "no spot create is even tried"


def test_prefer_spot_falls_back_when_the_spot_create_is_refused(world):
    world.api.fail_next[("POST", "/instances")] = (
        503, "service_unavailable", "Not enough resources to deploy a 1 GPU instance type 1A100.22V in FIN-01")
    [made] = world.grow("gpu")
    assert world.instance(made)["is_spot"] is False
    assert world.api.count("POST", "/v1/instances") == 2
    world.grow("gpu")
    assert world.api.count("POST", "/v1/instances") == 3, "spot stays unavailable while the answer is fresh"
    assert not world.api.created[-1]["is_spot"]


def test_prefer_on_demand_falls_back_to_spot(world):
    world.api.capacity[(A100, "FIN-01", False)] = 0
    [made] = world.grow("mig")
    assert world.instance(made)["is_spot"] is True


def test_availability_is_cached_for_its_ttl(world):
    world.api.capacity[(A100, "FIN-01", True)] = 0
    world.grow("gpu")
    asked = world.api.count("GET", "/v1/instance-availability")
    world.api.capacity[(A100, "FIN-01", True)] = 5  # spot is back, but the cached answer still says no
    [made] = world.grow("gpu")
    assert world.api.count("GET", "/v1/instance-availability") == asked
    assert world.instance(made)["is_spot"] is False
    world.clock.now += 31
    [made] = world.grow("gpu")
    assert world.instance(made)["is_spot"] is True
    assert world.api.count("GET", "/v1/instance-availability") > asked


def test_spot_only_fails_cleanly_without_spot(world):
    world.api.capacity[(A100, "FIN-03", True)] = 0
    e = world.error("NodeGroupIncreaseSize", id="spot", delta=1)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "no spot capacity for 1A100.22V in FIN-03 (instance_option spot_only)" in e.details()
    assert world.api.count("POST", "/v1/instances") == 0 and world.api.scripts == {}
    assert world.target("spot") == 0


def test_spot_only_refused_create_leaves_no_script(world):
    world.api.fail_next[("POST", "/instances")] = (503, "service_unavailable", "Not enough resources to deploy")
    e = world.error("NodeGroupIncreaseSize", id="spot", delta=1)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "created 0 of 1" in e.details()
    assert world.api.count("POST", "/v1/scripts") == 1 and world.api.scripts == {}, "its script was deleted"
    assert not any(c.get("is_spot") is False for c in world.api.created), "never on-demand"


def test_quota_refusal_is_an_error_and_the_group_keeps_working(world):
    world.api.quota = 0
    e = world.error("NodeGroupIncreaseSize", id="gpu", delta=1)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "quota exceeded" in e.details().lower()
    assert world.target("gpu") == 0 and world.api.scripts == {}
    world.api.quota = 3
    assert len(world.grow("gpu")) == 1 and world.target("gpu") == 1


def test_partial_scale_up_reports_what_was_made(world):
    world.api.capacity[(A100, "ICE-01", False)] = 1
    e = world.error("NodeGroupIncreaseSize", id="ondemand", delta=2)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "created 1 of 2" in e.details()
    assert world.target("ondemand") == 1


def test_a_slow_api_is_an_error_within_the_timeout(world):
    api = world.api
    slow_api_server, port, _, _ = serve(api, world.cloud.api_url, timeout=0.3)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.CloudProviderStub(channel)
    try:
        stub.NodeGroupTemplateNodeInfo(pb.NodeGroupTemplateNodeInfoRequest(id="gpu"), timeout=TIMEOUT)
        stub.Refresh(pb.RefreshRequest(), timeout=TIMEOUT)
        tokens = api.count("POST", "/v1/oauth2/token")  # authenticated; instance types and instances known
        api.delay = 1.0
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            stub.NodeGroupIncreaseSize(pb.NodeGroupIncreaseSizeRequest(id="ondemand", delta=1), timeout=TIMEOUT)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "availability of 1A100.22V in ICE-01: no answer within 0.3s" in e.value.details()
        assert time.monotonic() - began < 3 and api.count("POST", "/v1/oauth2/token") == tokens
        api.delay = 0.0
        stub.NodeGroupIncreaseSize(pb.NodeGroupIncreaseSizeRequest(id="ondemand", delta=1), timeout=TIMEOUT)
        assert stub.NodeGroupTargetSize(pb.NodeGroupTargetSizeRequest(id="ondemand"), timeout=TIMEOUT).targetSize >= 1
    finally:
        api.delay = 0.0
        channel.close()
        slow_api_server.stop(None).wait()


@pytest.mark.parametrize("delta, code", [
    pytest.param(0, grpc.StatusCode.INVALID_ARGUMENT, id="zero"),
    pytest.param(-1, grpc.StatusCode.INVALID_ARGUMENT, id="negative"),
    pytest.param(4, grpc.StatusCode.FAILED_PRECONDITION, id="over-max"),
])
def test_bad_increase(world, delta, code):
    assert world.error("NodeGroupIncreaseSize", id="gpu", delta=delta).code() == code
    assert world.api.created == []


def test_a_create_lost_in_transit_keeps_its_script(world):
    """A 5xx or timeout may hide a created instance, which will run its script: keep it."""
    world.api.fail_next[("POST", "/instances")] = (502, "server_error", "Bad gateway")
    e = world.error("NodeGroupIncreaseSize", id="spot", delta=1)
    assert e.code() == grpc.StatusCode.UNAVAILABLE
    assert [s["name"] for s in world.api.scripts.values()] == ["autoscaler-startup-script-spot-00000001"]


def test_an_unknown_image_is_a_failed_precondition(world):
    world.api.fail_next[("POST", "/instances")] = (400, "invalid_request", "Invalid image type")
    e = world.error("NodeGroupIncreaseSize", id="ondemand", delta=1)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "Invalid image type" in e.details()


# ---------------------------------------------------------------- delete, decrease


def test_delete_nodes_deletes_instances_with_volumes_and_scripts(world):
    made = world.grow("gpu", 2)
    doomed = world.instance(made[0])
    world.call("NodeGroupDeleteNodes", id="gpu", nodes=[node(made[0], doomed["hostname"])])
    assert [d["id"] for d in world.api.deleted] == [doomed["id"]]
    assert world.api.deleted_volumes == [doomed["os_volume_id"]]
    assert doomed["startup_script_id"] not in world.api.scripts
    assert world.target("gpu") == 1
    world.call("Refresh")
    assert [i.id for i in world.nodes("gpu")] == [made[1]]


def test_delete_an_unregistered_node_by_name(world):
    [made] = world.grow("ondemand")
    world.call("NodeGroupDeleteNodes", id="ondemand", nodes=[node("", world.instance(made)["hostname"])])
    assert world.target("ondemand") == 0


@pytest.mark.parametrize("target", [
    pytest.param(lambda made: node(made, "x"), id="another-groups-node"),
    pytest.param(lambda made: node("aws:///eu-west-1a/i-0abc", "ip-10-0-0-1"), id="another-clouds-node"),
    pytest.param(lambda made: node("datacrunch://gone", "gone"), id="unknown-instance"),
])
def test_delete_refuses_nodes_not_in_the_group(world, target):
    [made] = world.grow("ondemand")
    e = world.error("NodeGroupDeleteNodes", id="gpu", nodes=[target(made)])
    assert e.code() == grpc.StatusCode.NOT_FOUND and "is not an instance of node group gpu" in e.details()
    assert world.api.deleted == []


def test_decrease_target_cancels_the_newest_pending_instances(world):
    made = world.grow("gpu", 3)
    world.api.set_status(ng.instance_id(made[0]), "running")
    world.call("Refresh")
    newest = max((world.instance(p) for p in made[1:]), key=lambda i: i["created_at"])
    world.call("NodeGroupDecreaseTargetSize", id="gpu", delta=-1)
    assert [d["id"] for d in world.api.deleted] == [newest["id"]]
    assert world.target("gpu") == 2
    e = world.error("NodeGroupDecreaseTargetSize", id="gpu", delta=-2)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "only 1 instances" in e.details()
    assert world.error("NodeGroupDecreaseTargetSize", id="gpu", delta=1).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ng.instance_id(made[0]) in world.api.instances, "a running instance is never cancelled"


# ---------------------------------------------------------------- nodes and node groups of nodes


@pytest.mark.parametrize("status, state, error_class", [
    pytest.param("running", pb.InstanceStatus.instanceRunning, 0, id="running"),
    pytest.param("ordered", pb.InstanceStatus.instanceCreating, 0, id="ordered"),
    pytest.param("no_capacity", pb.InstanceStatus.instanceCreating, 1, id="no-capacity"),
    pytest.param("error", pb.InstanceStatus.instanceCreating, 99, id="error"),
    pytest.param("discontinued", pb.InstanceStatus.instanceDeleting, 0, id="discontinued"),
    pytest.param("mystery", pb.InstanceStatus.unspecified, 0, id="unknown"),
])
def test_node_group_nodes_map_instance_states(world, status, state, error_class):
    [made] = world.grow("ondemand")
    world.api.set_status(ng.instance_id(made), status)
    world.call("Refresh")
    [instance] = world.nodes("ondemand")
    assert (instance.id, instance.status.instanceState) == (made, state)
    assert instance.status.errorInfo.instanceErrorClass == error_class
    assert instance.status.errorInfo.errorCode == (f"verda-{status}" if error_class else "")


def test_node_group_for_node(world):
    [made] = world.grow("mig")
    host = world.instance(made)["hostname"]
    foreign = ng.provider_id(world.api.add_instance("web-1", "web"))
    world.call("Refresh")
    assert world.call("NodeGroupForNode", node=node(made, host)).nodeGroup.id == "mig"
    assert world.call("NodeGroupForNode", node=node("", host)).nodeGroup.id == "mig", "by hostname"
    for other in (node(foreign, "web-1"), node("aws:///eu-west-1a/i-0abc", "ip-10-0-0-1"), node("", "master")):
        assert world.call("NodeGroupForNode", node=other).nodeGroup.id == ""


def test_instances_made_elsewhere_with_the_seed_naming_belong_to_the_group(world):
    world.api.add_instance("gpu-handmade", "gpu")
    world.call("Refresh")
    assert world.target("gpu") == 1


def test_refresh_failure_is_unavailable_then_recovers(world):
    world.api.fail_next[("GET", "/instances")] = (500, "server_error", "Internal error")
    e = world.error("Refresh")
    assert e.code() == grpc.StatusCode.UNAVAILABLE and "server_error" in e.details()
    world.call("Refresh")


# ---------------------------------------------------------------- templates, GPUs, prices, options


def test_template_node_info(world):
    data = world.call("NodeGroupTemplateNodeInfo", id="gpu").nodeBytes
    template = node_dict(data)
    assert template["status"]["capacity"] == {"cpu": "22", "memory": "120Gi", "pods": "110",
                                              "ephemeral-storage": "100Gi", "nvidia.com/gpu": "1"}
    assert template["metadata"]["labels"][c.GPU_LABEL] == "A100"
    assert template["metadata"]["labels"]["nodepool"] == "gpu"
    assert template["spec"]["taints"] == [{"key": "gpu-node", "value": "", "effect": "NoSchedule"}]
    assert core.Node.FromString(data).status.allocatable["nvidia.com/gpu"].string == "1"


def test_template_of_a_mig_group_has_the_override(world):
    template = node_dict(world.call("NodeGroupTemplateNodeInfo", id="mig").nodeBytes)
    assert template["status"]["capacity"]["nvidia.com/gpu"] == "7"
    assert template["metadata"]["labels"]["nvidia.com/mig.config"] == "all-1g.10gb"


def test_gpu_label_and_types(world):
    assert world.call("GPULabel").label == c.GPU_LABEL
    assert sorted(world.call("GetAvailableGPUTypes").gpuTypes) == ["A100", "H100_SXM5"]


def _period(hours: float) -> dict:
    return {"startTimestamp": timestamp_pb2.Timestamp(seconds=1_700_000_000),
            "endTimestamp": timestamp_pb2.Timestamp(seconds=1_700_000_000 + int(hours * 3600))}


def test_node_prices(world):
    [spot] = world.grow("gpu")
    price = world.call("PricingNodePrice", node=node(spot, "n"), **_period(2)).price
    assert price == pytest.approx(2 * 0.45), "a spot instance at the spot price"
    template = node("", "template", **{c.LABEL_NODE_GROUP: "ondemand"})
    assert world.call("PricingNodePrice", node=template, **_period(2)).price == pytest.approx(2 * 1.29)
    e = world.error("PricingNodePrice", node=node("aws:///x", "x"), **_period(2))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_pod_price(world):
    pod = core.Pod()
    container = pod.spec.containers.add(name="worker")
    container.resources.requests["cpu"].string = "11"
    container.resources.requests["memory"].string = "8Gi"
    init = pod.spec.initContainers.add(name="init")
    init.resources.requests["cpu"].string = "500m"
    price = world.call("PricingPodPrice", pod_bytes=pod.SerializeToString(), **_period(1)).price
    itype = {t["instance_type"]: t for t in INSTANCE_TYPES}[A100]
    groups = ng.build_node_groups(SPECS, CONFIG).values()
    expected = min(11 / itype["cpu"]["number_of_cores"] * pricing.hourly_price(
        ng.InstanceType(A100, 22, 120, 1, "A100", float(itype["price_per_hour"]), float(itype["spot_price"])),
        pricing.first_offer_is_spot(g.config)) for g in groups)
    assert price == pytest.approx(expected)
    assert world.error("PricingPodPrice", pod_bytes=b"\xff\xff").code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_options_are_the_defaults(world):
    defaults = pb.NodeGroupAutoscalingOptions(scaleDownUtilizationThreshold=0.5,
                                              scaleDownUnneededDuration=duration_pb2.Duration(seconds=600))
    answer = world.call("NodeGroupGetOptions", id="gpu", defaults=defaults)
    assert answer.nodeGroupAutoscalingOptions == defaults


def test_cleanup(world):
    world.call("Cleanup")


def test_calls_we_do_not_serve_are_unimplemented(world):
    """A call a newer autoscaler might make and this proto lacks: UNIMPLEMENTED, which it takes as optional."""
    with grpc.insecure_channel(world.address) as ch:
        call = ch.unary_unary("/clusterautoscaler.cloudprovider.v1.externalgrpc.CloudProvider/NodeGroupAtomicIncrease",
                              request_serializer=pb.NodeGroupIncreaseSizeRequest.SerializeToString,
                              response_deserializer=pb.NodeGroupIncreaseSizeResponse.FromString)
        with pytest.raises(grpc.RpcError) as e:
            call(pb.NodeGroupIncreaseSizeRequest(id="gpu", delta=1), timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------- credentials


def test_refused_credentials_are_a_failed_precondition_and_never_shown(caplog):
    api = VerdaStandIn()
    url = api.start()
    cloud = VerdaCloud(api.client_id, "wrong-secret-value", url, timeout=5.0)
    server, port = start(Provider(ng.build_node_groups(SPECS, CONFIG), cloud), "127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, caplog.at_level(logging.DEBUG):
            with pytest.raises(grpc.RpcError) as e:
                pb_grpc.CloudProviderStub(channel).Refresh(pb.RefreshRequest(), timeout=TIMEOUT)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "unauthorized_request" in e.value.details()
        assert "wrong-secret-value" not in e.value.details() + caplog.text
    finally:
        server.stop(None).wait()
        api.stop()


def test_expired_tokens_are_renewed(world):
    world.api.token_lifetime = 0  # every token is expired at once: each request authenticates again
    world.call("Refresh")
    before = world.api.count("POST", "/v1/oauth2/token")
    world.call("Refresh")
    assert world.api.count("POST", "/v1/oauth2/token") > before


def test_no_secret_or_token_is_ever_logged_or_answered(world, caplog):
    with caplog.at_level(logging.DEBUG):
        world.grow("gpu")
        world.api.quota = 0
        quota = world.error("NodeGroupIncreaseSize", id="gpu", delta=1)
        world.api.fail_next[("GET", "/instances")] = (401, "unauthorized_request", "Invalid or expired access token")
        auth = world.error("Refresh")
        world.call("Refresh")
        made = world.nodes("gpu")[0].id
        world.call("NodeGroupDeleteNodes", id="gpu", nodes=[node(made, "n")])
    assert "node group gpu: created spot instance" in caplog.text and "deleted instances" in caplog.text
    seen = caplog.text + quota.details() + auth.details()
    assert world.api.tokens and world.api.client_secret not in seen
    assert not [t for t in world.api.tokens if t in seen]


# ---------------------------------------------------------------- startup scripts from the server


def scripts_world(answer: httpx.Response, tmp_path: Path):
    """A Provider (no gRPC) whose ScriptSource the MockTransport answers (the server itself runs on the
    sandbox: tests/e2e/test_verda_autoscaler.py); the stand-in Verda behind it."""
    api = VerdaStandIn()
    url = api.start()
    asked: list[dict] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content))
        return answer

    (tmp_path / "token").write_text("t")
    source = ScriptSource("http://scripts.test/script", tmp_path / "token",
                          http=httpx.Client(transport=httpx.MockTransport(handle)))
    provider = Provider(ng.build_node_groups(SPECS, CONFIG), VerdaCloud(api.client_id, api.client_secret, url),
                        suffix=lambda: "0000abcd", scripts=source)
    return api, provider, asked


def test_the_server_gives_the_script_of_a_group_without_its_own(tmp_path):
    api, provider, asked = scripts_world(httpx.Response(200, text="server-script-id"), tmp_path)
    try:
        (instance,) = provider.increase("ondemand", 1)
        assert asked == [{"script_name": "autoscaler-startup-script-ondemand-0000abcd",
                          "hostname": "ondemand-0000abcd", "node_group": "ondemand", "instance_type": A100,
                          "location": "ICE-01"}]
        assert api.created[0]["startup_script_id"] == "server-script-id" == instance.startup_script_id
        assert api.uploaded == [], "the server uploads it, not the provider"
    finally:
        api.stop()


def test_startup_script_base64_overrides_the_server(tmp_path):
    api, provider, asked = scripts_world(httpx.Response(200, text="server-script-id"), tmp_path)
    try:
        provider.increase("gpu", 1)
        assert asked == [] and [u["script"] for u in api.uploaded] == [SCRIPT]
    finally:
        api.stop()


def test_no_script_from_the_server_no_instance(tmp_path):
    api, provider, asked = scripts_world(httpx.Response(503, json={"error": "Secret unavailable"}), tmp_path)
    try:
        with pytest.raises(NodeGroupError) as e:
            provider.increase("ondemand", 1)
        assert e.value.kind == "startup_script" and "created 0 of 1 instances" in str(e.value)
        assert len(asked) == 1 and api.created == []
    finally:
        api.stop()
