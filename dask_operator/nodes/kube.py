"""Kubernetes objects on the wire of the externalgrpc protocol: v1.Node and v1.Pod as protobuf bytes.

The autoscaler decodes a template node with ``v1.Node#Unmarshal`` and sends a
pod to price as ``v1.Pod#Marshal``: plain protobuf of k8s.io/api's
``generated.proto`` (no ``k8s\\x00`` envelope), hence the generated stubs.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from ..core.hpa_quantity import parse_quantity as exact_quantity
from .protos.k8s.api.core.v1 import generated_pb2 as core


def node_bytes(node: Mapping) -> bytes:
    """A Node dict (metadata name/labels, spec taints, status capacity/allocatable/conditions) as v1.Node bytes."""
    out = core.Node()
    meta, spec, status = node.get("metadata", {}), node.get("spec", {}), node.get("status", {})
    out.metadata.name = meta.get("name", "")
    out.metadata.labels.update(meta.get("labels", {}))
    out.metadata.annotations.update(meta.get("annotations", {}))
    if spec.get("providerID"):
        out.spec.providerID = spec["providerID"]
    for taint in spec.get("taints", []):
        out.spec.taints.add(key=taint["key"], value=taint.get("value", ""), effect=taint["effect"])
    for field in ("capacity", "allocatable"):
        for name, quantity in status.get(field, {}).items():
            getattr(out.status, field)[name].string = quantity
    for condition in status.get("conditions", []):
        out.status.conditions.add(type=condition["type"], status=condition["status"])
    return out.SerializeToString()


def node_dict(data: bytes) -> dict:
    """v1.Node bytes back to the dict shape ``node_bytes`` takes (for tests and debugging)."""
    node = core.Node.FromString(data)
    return {
        "metadata": {"name": node.metadata.name, "labels": dict(node.metadata.labels)},
        "spec": {"taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in node.spec.taints]},
        "status": {
            "capacity": {k: v.string for k, v in node.status.capacity.items()},
            "allocatable": {k: v.string for k, v in node.status.allocatable.items()},
            "conditions": [{"type": c.type, "status": c.status} for c in node.status.conditions],
        },
    }


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity ("500m", "4Gi", "1e3") as a number (`core.hpa_quantity`'s rule)."""
    return float(exact_quantity(text))


def pod_requests(data: bytes) -> dict[str, float]:
    """What a pod asks for, as the scheduler counts it: the sum over its containers or, when
    larger, any one init container's requests, plus the pod's overhead. Raises ValueError."""
    try:
        pod = core.Pod.FromString(data)
    except DecodeError as e:
        raise ValueError(f"not a v1.Pod: {e}") from None

    def requests(resources) -> dict[str, float]:
        return {k: parse_quantity(v.string) for k, v in resources.requests.items()}

    total: dict[str, float] = {}
    for container in pod.spec.containers:
        for name, amount in requests(container.resources).items():
            total[name] = total.get(name, 0.0) + amount
    for container in pod.spec.initContainers:
        for name, amount in requests(container.resources).items():
            total[name] = max(total.get(name, 0.0), amount)
    for name, quantity in pod.spec.overhead.items():
        total[name] = total.get(name, 0.0) + parse_quantity(quantity.string)
    return total
