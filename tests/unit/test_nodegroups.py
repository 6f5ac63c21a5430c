"""The node-group rules of dask_operator.core.nodegroups (and nodes.pricing), table-driven."""

from __future__ import annotations

import base64

import pytest

from dask_operator import constants as c
from dask_operator.core import nodegroups as ng
from dask_operator.errors import NodeGroupConfigError
from dask_operator.nodes import pricing

A100 = ng.InstanceType("1A100.22V", cpus=22, memory_gib=120, gpus=1, gpu_model="A100",
                       price_per_hour=1.29, spot_price_per_hour=0.45)
CPU = ng.InstanceType("CPU.4V.16G", cpus=4, memory_gib=16, gpus=0, gpu_model="", price_per_hour=0.12,
                      spot_price_per_hour=0.04)
SCRIPT = "#!/bin/bash\necho hello\n"


def config(**fields) -> dict:
    return {"image_type": "ubuntu-24.04-cuda-12.8-open-docker", **fields}


def group(name="gpu", instance_type="1A100.22V", **fields) -> ng.NodeGroup:
    return ng.NodeGroup(name, 0, 3, instance_type, "FIN-01", ng.parse_node_config(f"node_configs.{name}",
                                                                                 config(**fields)))


# ---------------------------------------------------------------- --nodes specs


@pytest.mark.parametrize("text, expected", [
    pytest.param("0:3:1A100.22V:FIN-01:gpu-nodes", ("gpu-nodes", 0, 3, "1A100.22V", "FIN-01"), id="seed-example"),
    pytest.param("1:1:CPU.4V.16G:fin-03:cpu", ("cpu", 1, 1, "CPU.4V.16G", "FIN-03"), id="location-upper-cased"),
    pytest.param("2:10:8H100.80S.176V:ICE-01:h100", ("h100", 2, 10, "8H100.80S.176V", "ICE-01"), id="min-above-zero"),
])
def test_node_group_spec_parses(text, expected):
    assert ng.parse_node_group_spec(text) == expected


@pytest.mark.parametrize("text, problem", [
    pytest.param("0:3:1A100.22V:FIN-01", "expected <min>", id="four-parts"),
    pytest.param("0:3:1A100.22V:FIN-01:gpu:extra", "expected <min>", id="six-parts"),
    pytest.param("0:3::FIN-01:gpu", "expected <min>", id="empty-type"),
    pytest.param("a:3:1A100.22V:FIN-01:gpu", "non-negative integers", id="min-not-a-number"),
    pytest.param("-1:3:1A100.22V:FIN-01:gpu", "non-negative integers", id="negative-min"),
    pytest.param("4:3:1A100.22V:FIN-01:gpu", "min <= max", id="min-over-max"),
    pytest.param("0:0:1A100.22V:FIN-01:gpu", "max > 0", id="max-zero"),
    pytest.param("0:3:1A100.22V:FIN-01:GPU", "DNS label", id="upper-case-name"),
    pytest.param("0:3:1A100.22V:FIN-01:" + "g" * 55, "DNS label", id="name-too-long-for-hostnames"),
])
def test_bad_node_group_spec_names_the_flag(text, problem):
    with pytest.raises(NodeGroupConfigError) as e:
        ng.parse_node_group_spec(text)
    assert e.value.field == f"--nodes={text}"
    assert problem in str(e.value)


# ---------------------------------------------------------------- node_configs


def test_every_seed_field_is_read():
    entry = config(ssh_key_ids=["key-1", "key-2"], disk_size_gb=100, instance_option="prefer_spot",
                   override_num_gpus=7, pricing_option="fixed",
                   startup_script_base64=base64.b64encode(SCRIPT.encode()).decode(),
                   taints=[{"key": "gpu-node", "effect": "NoSchedule"},
                           {"key": "nvidia.com/gpu", "value": "present", "effect": "NoExecute"}],
                   labels={"nodepool": "gpu", "nvidia.com/mig.config": "all-1g.10gb"})
    assert ng.parse_node_config("node_configs.gpu", entry) == ng.NodeConfig(
        image_type="ubuntu-24.04-cuda-12.8-open-docker", ssh_key_ids=("key-1", "key-2"), disk_size_gb=100,
        instance_option="prefer_spot", override_num_gpus=7, pricing_option="fixed", startup_script=SCRIPT,
        taints=(ng.Taint("gpu-node", "NoSchedule"), ng.Taint("nvidia.com/gpu", "NoExecute", "present")),
        labels={"nodepool": "gpu", "nvidia.com/mig.config": "all-1g.10gb"})


def test_defaults():
    assert ng.parse_node_config("node_configs.gpu", config()) == ng.NodeConfig(
        image_type="ubuntu-24.04-cuda-12.8-open-docker", instance_option="on_demand_only")


@pytest.mark.parametrize("entry, field, problem", [
    pytest.param("gpu", "node_configs.gpu", "must be an object", id="not-an-object"),
    pytest.param({}, "node_configs.gpu.image_type", "non-empty string", id="image-missing"),
    pytest.param(config(image_type=""), "node_configs.gpu.image_type", "non-empty string", id="image-empty"),
    pytest.param(config(instance_option="spot"), "node_configs.gpu.instance_option", "prefer_spot, prefer_on_demand",
                 id="instance-option-unknown"),
    pytest.param(config(pricing_option="cheap"), "node_configs.gpu.pricing_option", "dynamic, fixed",
                 id="pricing-option-unknown"),
    pytest.param(config(disk_size_gb=0), "node_configs.gpu.disk_size_gb", "integer >= 1", id="disk-zero"),
    pytest.param(config(disk_size_gb="100"), "node_configs.gpu.disk_size_gb", "integer >= 1", id="disk-string"),
    pytest.param(config(override_num_gpus=-1), "node_configs.gpu.override_num_gpus", "integer >= 0",
                 id="gpus-negative"),
    pytest.param(config(override_num_gpus=True), "node_configs.gpu.override_num_gpus", "integer >= 0",
                 id="gpus-bool"),
    pytest.param(config(ssh_key_ids="key-1"), "node_configs.gpu.ssh_key_ids", "list of key ids", id="keys-string"),
    pytest.param(config(startup_script_base64="not base64!"), "node_configs.gpu.startup_script_base64", "base64",
                 id="script-not-base64"),
    pytest.param(config(taints={"key": "a"}), "node_configs.gpu.taints", "list of taints", id="taints-object"),
    pytest.param(config(taints=[{"key": "a", "effect": "NoRun"}]), "node_configs.gpu.taints[0].effect",
                 "NoSchedule, PreferNoSchedule, NoExecute", id="taint-effect"),
    pytest.param(config(taints=[{"key": "a b", "effect": "NoSchedule"}]), "node_configs.gpu.taints[0].key",
                 "not a valid", id="taint-key"),
    pytest.param(config(taints=[{"key": "a", "effect": "NoSchedule", "operator": "Exists"}]),
                 "node_configs.gpu.taints[0]", "key, value and effect", id="taint-extra-field"),
    pytest.param(config(labels=["a"]), "node_configs.gpu.labels", "object of strings", id="labels-list"),
    pytest.param(config(labels={"nodepool": 3}), "node_configs.gpu.labels.nodepool", "not a valid",
                 id="label-value-number"),
    pytest.param(config(labels={"-bad": "x"}), "node_configs.gpu.labels.-bad", "not a valid", id="label-key"),
    pytest.param(config(instnce_option="prefer_spot"), "node_configs.gpu.instnce_option", "unknown field",
                 id="typo-in-field-name"),
])
def test_bad_node_config_names_the_field(entry, field, problem):
    with pytest.raises(NodeGroupConfigError) as e:
        ng.parse_node_config("node_configs.gpu", entry)
    assert e.value.field == field
    assert problem in str(e.value) and str(e.value).startswith(f"{field}: ")


@pytest.mark.parametrize("specs, document, field", [
    pytest.param(["0:3:1A100.22V:FIN-01:gpu"], {"node_configs": {}}, "node_configs.gpu", id="group-without-config"),
    pytest.param(["0:3:1A100.22V:FIN-01:gpu"], {}, "node_configs", id="no-node-configs"),
    pytest.param(["0:3:1A100.22V:FIN-01:gpu"], [], "node_configs", id="document-not-an-object"),
    pytest.param([], {"node_configs": {"gpu": config()}}, "--nodes", id="no-groups"),
    pytest.param(["0:3:1A100.22V:FIN-01:gpu", "0:1:CPU.4V.16G:FIN-01:gpu"], {"node_configs": {"gpu": config()}},
                 "--nodes=0:1:CPU.4V.16G:FIN-01:gpu", id="group-twice"),
    pytest.param(["0:3:1A100.22V:FIN-01:gpu"], {"node_configs": {"gpu": config(disk_size_gb=-5)}},
                 "node_configs.gpu.disk_size_gb", id="bad-field-inside"),
])
def test_bad_groups_name_the_field(specs, document, field):
    with pytest.raises(NodeGroupConfigError) as e:
        ng.build_node_groups(specs, document)
    assert e.value.field == field


def test_groups_join_specs_and_configs():
    groups = ng.build_node_groups(["0:3:1A100.22V:FIN-01:gpu", "1:2:CPU.4V.16G:FIN-03:cpu"],
                                  {"node_configs": {"gpu": config(), "cpu": config(), "unused": {}}})
    assert [(g.name, g.min_size, g.max_size, g.instance_type, g.location) for g in groups.values()] == [
        ("gpu", 0, 3, "1A100.22V", "FIN-01"), ("cpu", 1, 2, "CPU.4V.16G", "FIN-03")]


# ---------------------------------------------------------------- instances


@pytest.mark.parametrize("hostname, description, owned", [
    pytest.param("gpu-1a2b3c4d", "gpu", True, id="ours"),
    pytest.param("gpu-1a2b3c4d", "other", False, id="other-description"),
    pytest.param("gpux-1a2b3c4d", "gpu", False, id="other-hostname"),
    pytest.param("gpu-big-1a2b", "gpu-big", False, id="longer-group-name-is-another-group"),
])
def test_membership(hostname, description, owned):
    assert group("gpu").owns(hostname, description) is owned


@pytest.mark.parametrize("status, state, error_class, counted", [
    pytest.param("running", ng.RUNNING, None, True, id="running"),
    pytest.param("offline", ng.RUNNING, None, True, id="offline-left-to-unready-removal"),
    pytest.param("ordered", ng.CREATING, None, True, id="ordered"),
    pytest.param("new", ng.CREATING, None, True, id="new"),
    pytest.param("validating", ng.CREATING, None, True, id="validating"),
    pytest.param("provisioning", ng.CREATING, None, True, id="provisioning"),
    pytest.param("no_capacity", ng.CREATING, ng.OUT_OF_RESOURCES, True, id="no-capacity-is-out-of-resources"),
    pytest.param("error", ng.CREATING, ng.OTHER_ERROR, True, id="error"),
    pytest.param("installation_failed", ng.CREATING, ng.OTHER_ERROR, True, id="installation-failed"),
    pytest.param("deleting", ng.DELETING, None, False, id="deleting"),
    pytest.param("discontinued", ng.DELETING, None, False, id="discontinued"),
    pytest.param("notfound", ng.DELETING, None, False, id="notfound"),
    pytest.param("something-new", ng.UNSPECIFIED, None, True, id="unknown-status-no-state"),
])
def test_instance_states(status, state, error_class, counted):
    assert ng.instance_state(status) == (state, error_class)
    assert ng.counts_toward_target(status) is counted


@pytest.mark.parametrize("provider_id, instance_id", [
    pytest.param("datacrunch://abc-123", "abc-123", id="ours"),
    pytest.param("aws:///eu-west-1a/i-0abc", None, id="another-cloud"),
    pytest.param("datacrunch://", None, id="no-id"),
    pytest.param("", None, id="empty"),
])
def test_provider_ids(provider_id, instance_id):
    assert ng.instance_id(provider_id) == instance_id
    if instance_id:
        assert ng.provider_id(instance_id) == provider_id


def test_new_instance_names_follow_the_seed():
    assert ng.new_instance_names("gpu", "1a2b3c4d") == ("gpu-1a2b3c4d", "autoscaler-startup-script-gpu-1a2b3c4d")


@pytest.mark.parametrize("option, available, expected", [
    pytest.param("prefer_spot", {True: True, False: True}, (True, False), id="prefer-spot-both"),
    pytest.param("prefer_spot", {True: False, False: True}, (False,), id="prefer-spot-falls-back"),
    pytest.param("prefer_spot", {True: False, False: False}, (), id="prefer-spot-none"),
    pytest.param("prefer_on_demand", {True: True, False: True}, (False, True), id="prefer-on-demand-both"),
    pytest.param("prefer_on_demand", {True: True, False: False}, (True,), id="prefer-on-demand-falls-back"),
    pytest.param("spot_only", {True: False, False: True}, (), id="spot-only-never-on-demand"),
    pytest.param("spot_only", {True: True}, (True,), id="spot-only"),
    pytest.param("on_demand_only", {True: True, False: False}, (), id="on-demand-only-never-spot"),
    pytest.param("on_demand_only", {}, (False,), id="unknown-availability-is-tried"),
])
def test_offers_to_try(option, available, expected):
    assert ng.offers_to_try(option, available) == expected


@pytest.mark.parametrize("pricing_option, is_spot, expected", [
    pytest.param(None, False, None, id="unset"),
    pytest.param("dynamic", False, "DYNAMIC_PRICE", id="dynamic"),
    pytest.param("fixed", False, "FIXED_PRICE", id="fixed"),
    pytest.param("fixed", True, None, id="spot-has-no-pricing-option"),
])
def test_deploy_pricing(pricing_option, is_spot, expected):
    entry = config(pricing_option=pricing_option) if pricing_option else config()
    assert ng.deploy_pricing(ng.parse_node_config("n", entry), is_spot) == expected


# ---------------------------------------------------------------- template nodes


def test_template_node_of_a_gpu_group():
    g = group("gpu", disk_size_gb=100, taints=[{"key": "gpu-node", "effect": "NoSchedule"}],
              labels={"nodepool": "gpu"})
    node = ng.template_node(g, A100, "gpu-template")
    assert node["metadata"] == {"name": "gpu-template", "labels": {
        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": "gpu-template",
        "node.kubernetes.io/instance-type": "1A100.22V", "topology.kubernetes.io/region": "FIN-01",
        c.LABEL_NODE_GROUP: "gpu", c.GPU_LABEL: "A100", "nodepool": "gpu"}}
    assert node["spec"] == {"taints": [{"key": "gpu-node", "value": "", "effect": "NoSchedule"}]}
    capacity = {"cpu": "22", "memory": "120Gi", "pods": "110", "ephemeral-storage": "100Gi", "nvidia.com/gpu": "1"}
    assert node["status"]["capacity"] == capacity == node["status"]["allocatable"]
    assert {"type": "Ready", "status": "True"} in node["status"]["conditions"]


@pytest.mark.parametrize("itype, fields, gpus, gpu_label", [
    pytest.param(A100, {}, "1", "A100", id="instance-type-gpus"),
    pytest.param(A100, {"override_num_gpus": 7}, "7", "A100", id="mig-override"),
    pytest.param(A100, {"override_num_gpus": 0}, None, None, id="override-to-none"),
    pytest.param(CPU, {}, None, None, id="cpu-only-no-gpu-label"),
    pytest.param(CPU, {"labels": {c.GPU_LABEL: "custom"}}, None, "custom", id="config-labels-win"),
])
def test_template_gpus(itype, fields, gpus, gpu_label):
    node = ng.template_node(group(**fields), itype, "n")
    assert node["status"]["capacity"].get("nvidia.com/gpu") == gpus
    assert node["metadata"]["labels"].get(c.GPU_LABEL) == gpu_label


@pytest.mark.parametrize("model, value", [
    pytest.param("A100", "A100", id="plain"),
    pytest.param("H100 SXM5", "H100_SXM5", id="space"),
    pytest.param("RTX 6000 Ada (48GB)", "RTX_6000_Ada__48GB", id="parentheses-trimmed"),
])
def test_gpu_label_values(model, value):
    assert ng.gpu_label_value(model) == value


# ---------------------------------------------------------------- prices


@pytest.mark.parametrize("option, expected", [
    pytest.param("prefer_spot", 0.45, id="prefer-spot-at-spot-price"),
    pytest.param("spot_only", 0.45, id="spot-only"),
    pytest.param("prefer_on_demand", 1.29, id="prefer-on-demand"),
    pytest.param("on_demand_only", 1.29, id="on-demand-only"),
])
def test_template_price_is_the_first_offer(option, expected):
    g = group(instance_option=option)
    assert pricing.hourly_price(A100, pricing.first_offer_is_spot(g.config)) == expected


GiB = 2**30


@pytest.mark.parametrize("requests, expected", [
    pytest.param({"cpu": 11}, 1.29 * 0.5 * 2, id="too-big-for-the-cpu-node-half-an-a100-node"),
    pytest.param({"cpu": 1, "memory": 8 * GiB}, 0.12 * 0.5 * 2, id="half-the-memory-of-the-cpu-node"),
    pytest.param({"nvidia.com/gpu": 1}, 1.29 * 2, id="a-gpu-needs-the-gpu-group"),
    pytest.param({"nvidia.com/gpu": 2}, 0.0, id="fits-nowhere"),
    pytest.param({}, 0.0, id="no-requests"),
    pytest.param({"example.com/dongle": 1, "cpu": 2}, 0.12 * 0.5 * 2, id="unknown-resources-ignored"),
])
def test_pod_price(requests, expected):
    groups = [(group("gpu"), A100), (group("cpu", "CPU.4V.16G"), CPU)]
    assert pricing.pod_price(requests, groups, hours=2) == pytest.approx(expected)
