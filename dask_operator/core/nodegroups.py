"""GPU node groups on Verda (formerly DataCrunch) for cluster-autoscaler's externalgrpc provider.

Pure rules, no I/O and no clock: the ``--nodes=<min>:<max>:<instance-type>:
<location>:<name>`` specs and the cluster config's ``node_configs`` (seed 002's
fields), the template node of a group, the mapping of Verda instance statuses
to the autoscaler's instance states, and the spot/on-demand order to try.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dask_operator import constants as c
from dask_operator.core.k8s_names import DNS_SUBDOMAIN_RE
from dask_operator.errors import NodeGroupConfigError

PROVIDER_ID_PREFIX = "datacrunch://"  # seed 002's, so nodes joined by its startup scripts keep working
GPU_RESOURCE = "nvidia.com/gpu"
MAX_PODS = 110
SCRIPT_NAME_PREFIX = "autoscaler-startup-script-"  # seed 002's: a node's script is found (and deleted) by name

# instance_option -> is_spot values to try, in order.
INSTANCE_OPTIONS = {
    "prefer_spot": (True, False),
    "prefer_on_demand": (False, True),
    "spot_only": (True,),
    "on_demand_only": (False,),
}
DEFAULT_INSTANCE_OPTION = "on_demand_only"
PRICING_OPTIONS = {"dynamic": "DYNAMIC_PRICE", "fixed": "FIXED_PRICE"}  # on-demand only
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# Verda instance status -> (autoscaler state, error class or None). Error class
# 1 is the autoscaler's OutOfResources, 99 its Other; an instance with an error
# is one the autoscaler gives up on and deletes. Unknown statuses: no state.
RUNNING, CREATING, DELETING, UNSPECIFIED = "instanceRunning", "instanceCreating", "instanceDeleting", "unspecified"
OUT_OF_RESOURCES, OTHER_ERROR = 1, 99
INSTANCE_STATES: dict[str, tuple[str, int | None]] = {
    "running": (RUNNING, None),
    "offline": (RUNNING, None),  # stopped: its node goes NotReady and the autoscaler removes it
    **{s: (CREATING, None) for s in ("new", "ordered", "validating", "provisioning", "restoring")},
    **{s: (DELETING, None) for s in ("deleting", "discontinued", "notfound", "starting_hibernation",
                                     "hibernating")},
    "no_capacity": (CREATING, OUT_OF_RESOURCES),
    **{s: (CREATING, OTHER_ERROR) for s in ("error", "installation_failed")},
}

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,52}[a-z0-9])?$")  # a DNS label leaving room for "-<8 hex>"
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class NodeConfig:
    """One ``node_configs`` entry (seed 002's table)."""

    image_type: str
    ssh_key_ids: tuple[str, ...] = ()
    disk_size_gb: int | None = None
    instance_option: str = DEFAULT_INSTANCE_OPTION
    override_num_gpus: int | None = None
    pricing_option: str | None = None
    startup_script: str | None = None  # decoded from startup_script_base64
    taints: tuple[Taint, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class NodeGroup:
    """A ``--nodes`` spec with its ``node_configs`` entry."""

    name: str
    min_size: int
    max_size: int
    instance_type: str
    location: str
    config: NodeConfig

    def owns(self, hostname: str, description: str) -> bool:
        """Whether an instance is this group's: seed 002 describes it with the group name."""
        return description == self.name and hostname.startswith(f"{self.name}-")


@dataclass(frozen=True)
class InstanceType:
    """What a template node and a price need of a Verda instance type."""

    name: str
    cpus: int
    memory_gib: int
    gpus: int
    gpu_model: str
    price_per_hour: float
    spot_price_per_hour: float


def parse_node_group_spec(text: str) -> tuple[str, int, int, str, str]:
    """``<min>:<max>:<instance-type>:<location>:<name>`` -> (name, min, max, type, location)."""
    where = f"--nodes={text}"
    parts = text.split(":")
    if len(parts) != 5 or not all(parts):
        raise NodeGroupConfigError(where, "expected <min>:<max>:<instance-type>:<location>:<name>")
    low, high, instance_type, location, name = parts
    if not (low.isdigit() and high.isdigit()):
        raise NodeGroupConfigError(where, f"min and max must be non-negative integers, got {low!r}, {high!r}")
    if int(low) > int(high) or int(high) == 0:
        raise NodeGroupConfigError(where, f"need 0 <= min <= max and max > 0, got min {low}, max {high}")
    if not _NAME.match(name):
        raise NodeGroupConfigError(where, f"name {name!r} must be a lower-case DNS label of at most 54 "
                                          "characters (it prefixes instance hostnames)")
    return name, int(low), int(high), instance_type, location.upper()


def parse_node_config(where: str, entry: object) -> NodeConfig:
    """One ``node_configs`` entry; ``where`` is its path, e.g. ``node_configs.gpu``."""
    if not isinstance(entry, Mapping):
        raise NodeGroupConfigError(where, f"must be an object, got {type(entry).__name__}")
    known = {f for f in NodeConfig.__dataclass_fields__ if f != "startup_script"} | {"startup_script_base64"}
    if unknown := sorted(set(entry) - known):
        raise NodeGroupConfigError(f"{where}.{unknown[0]}", f"unknown field; known: {', '.join(sorted(known))}")

    def text(key: str, required: bool = False) -> str | None:
        value = entry.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise NodeGroupConfigError(f"{where}.{key}", f"must be a non-empty string, got {value!r}")
        return value

    def integer(key: str, low: int) -> int | None:
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise NodeGroupConfigError(f"{where}.{key}", f"must be an integer >= {low}, got {value!r}")
        return value

    def choice(key: str, options: Iterable[str]) -> str | None:
        value = entry.get(key)
        if value is not None and value not in options:
            raise NodeGroupConfigError(f"{where}.{key}", f"must be one of {', '.join(options)}, got {value!r}")
        return value

    keys = entry.get("ssh_key_ids") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise NodeGroupConfigError(f"{where}.ssh_key_ids", f"must be a list of key ids, got {keys!r}")
    return NodeConfig(
        image_type=text("image_type", required=True),
        ssh_key_ids=tuple(keys),
        disk_size_gb=integer("disk_size_gb", 1),
        instance_option=choice("instance_option", INSTANCE_OPTIONS) or DEFAULT_INSTANCE_OPTION,
        override_num_gpus=integer("override_num_gpus", 0),
        pricing_option=choice("pricing_option", PRICING_OPTIONS),
        startup_script=_script(f"{where}.startup_script_base64", text("startup_script_base64")),
        taints=_taints(f"{where}.taints", entry.get("taints") or []),
        labels=_labels(f"{where}.labels", entry.get("labels") or {}),
    )


def build_node_groups(specs: Sequence[str], cluster_config: object) -> dict[str, NodeGroup]:
    """Node groups from the ``--nodes`` specs and the cluster config document, by name."""
    if not isinstance(cluster_config, Mapping) or not isinstance(cluster_config.get("node_configs"), Mapping):
        raise NodeGroupConfigError("node_configs", "the cluster config must be an object with a node_configs object")
    if not specs:
        raise NodeGroupConfigError("--nodes", "give at least one node group")
    configs = cluster_config["node_configs"]
    groups: dict[str, NodeGroup] = {}
    for spec in specs:
        name, low, high, instance_type, location = parse_node_group_spec(spec)
        if name in groups:
            raise NodeGroupConfigError(f"--nodes={spec}", f"node group {name!r} is given twice")
        if name not in configs:
            raise NodeGroupConfigError(f"node_configs.{name}", "missing: every --nodes group needs an entry")
        config = parse_node_config(f"node_configs.{name}", configs[name])
        groups[name] = NodeGroup(name, low, high, instance_type, location, config)
    return groups


def _script(where: str, encoded: str | None) -> str | None:
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise NodeGroupConfigError(where, f"not base64 of a UTF-8 script: {e}") from None


def _label_key(where: str, key: object) -> str:
    prefix, _, name = key.rpartition("/") if isinstance(key, str) else ("", "", "")
    if not _LABEL_NAME.match(name) or (prefix and not DNS_SUBDOMAIN_RE.fullmatch(prefix)):
        raise NodeGroupConfigError(where, f"{key!r} is not a valid label or taint key")
    return key


def _label_value(where: str, value: object) -> str:
    if not isinstance(value, str) or (value and not _LABEL_NAME.match(value)):
        raise NodeGroupConfigError(where, f"{value!r} is not a valid label or taint value")
    return value


def _labels(where: str, labels: object) -> dict[str, str]:
    if not isinstance(labels, Mapping):
        raise NodeGroupConfigError(where, f"must be an object of strings, got {labels!r}")
    return {_label_key(f"{where}.{k}", k): _label_value(f"{where}.{k}", v) for k, v in labels.items()}


def _taints(where: str, taints: object) -> tuple[Taint, ...]:
    if not isinstance(taints, list):
        raise NodeGroupConfigError(where, f"must be a list of taints, got {taints!r}")
    out = []
    for i, taint in enumerate(taints):
        at = f"{where}[{i}]"
        if not isinstance(taint, Mapping) or set(taint) - {"key", "value", "effect"}:
            raise NodeGroupConfigError(at, f"must be an object with key, value and effect, got {taint!r}")
        if taint.get("effect") not in TAINT_EFFECTS:
            raise NodeGroupConfigError(f"{at}.effect", f"must be one of {', '.join(TAINT_EFFECTS)}, "
                                                       f"got {taint.get('effect')!r}")
        out.append(Taint(_label_key(f"{at}.key", taint.get("key")), taint["effect"],
                         _label_value(f"{at}.value", taint.get("value", ""))))
    return tuple(out)


# ---------------------------------------------------------------- instances


def provider_id(instance_id: str) -> str:
    return f"{PROVIDER_ID_PREFIX}{instance_id}"


def instance_id(provider_id_: str) -> str | None:
    """The instance id of a ``datacrunch://<id>`` provider ID; None for anyone else's."""
    if not provider_id_.startswith(PROVIDER_ID_PREFIX):
        return None
    return provider_id_[len(PROVIDER_ID_PREFIX):] or None


def new_instance_names(group: str, suffix: str) -> tuple[str, str]:
    """(hostname, startup script name) of a new instance: ``<group>-<suffix>`` and seed 002's script name."""
    return f"{group}-{suffix}", f"{SCRIPT_NAME_PREFIX}{group}-{suffix}"


def instance_state(status: str) -> tuple[str, int | None]:
    """Verda status -> (autoscaler instance state, error class or None)."""
    return INSTANCE_STATES.get(status, (UNSPECIFIED, None))


def counts_toward_target(status: str) -> bool:
    """Whether an instance is part of its group's target size: every one not going away."""
    return instance_state(status)[0] != DELETING


def offers_to_try(instance_option: str, available: Mapping[bool, bool]) -> tuple[bool, ...]:
    """The is_spot values to try, in ``instance_option``'s order, keeping only available ones.

    ``available`` maps is_spot to the last availability answer; a missing key
    counts as available (the create call is the final judge).
    """
    return tuple(s for s in INSTANCE_OPTIONS[instance_option] if available.get(s, True))


def deploy_pricing(config: NodeConfig, is_spot: bool) -> str | None:
    """The API's ``pricing`` for a create: the pricing option, for on-demand instances only."""
    if is_spot or config.pricing_option is None:
        return None
    return PRICING_OPTIONS[config.pricing_option]


# ---------------------------------------------------------------- template nodes


def gpu_label_value(model: str) -> str:
    """A GPU model as a label value: A100, H100_SXM5 (invalid characters become ``_``)."""
    return _LABEL_VALUE_BAD.sub("_", model).strip("_.-")[:63]


def gpu_count(group: NodeGroup, itype: InstanceType) -> int:
    """``override_num_gpus`` (e.g. MiG slices) if set, else the instance type's GPUs."""
    return itype.gpus if group.config.override_num_gpus is None else group.config.override_num_gpus


def template_node(group: NodeGroup, itype: InstanceType, name: str) -> dict:
    """The Node a new instance of ``group`` becomes, as the API would return it (a dict)."""
    gpus = gpu_count(group, itype)
    capacity = {"cpu": str(itype.cpus), "memory": f"{itype.memory_gib}Gi", "pods": str(MAX_PODS)}
    if group.config.disk_size_gb:
        capacity["ephemeral-storage"] = f"{group.config.disk_size_gb}Gi"
    labels = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
              "node.kubernetes.io/instance-type": itype.name, "topology.kubernetes.io/region": group.location,
              c.LABEL_NODE_GROUP: group.name}
    if gpus:
        capacity[GPU_RESOURCE] = str(gpus)
        labels[c.GPU_LABEL] = gpu_label_value(itype.gpu_model)
    labels.update(group.config.labels)
    conditions = [{"type": "Ready", "status": "True"}] + [
        {"type": t, "status": "False"} for t in ("NetworkUnavailable", "DiskPressure", "MemoryPressure")]
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in group.config.taints]},
        "status": {"capacity": capacity, "allocatable": dict(capacity), "conditions": conditions},
    }

