"""Prices for the autoscaler's price expander, from Verda's instance type prices (pure).

A node costs its instance type's price per hour, or the spot price for a spot
instance; a node not created yet (a template) is priced at the offer its group
tries first. A pod costs the cheapest share of a group's node that fits it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..core.nodegroups import GPU_RESOURCE, INSTANCE_OPTIONS, InstanceType, NodeConfig, NodeGroup, gpu_count


def hourly_price(itype: InstanceType, is_spot: bool) -> float:
    return itype.spot_price_per_hour if is_spot else itype.price_per_hour


def first_offer_is_spot(config: NodeConfig) -> bool:
    """The offer a new node of this group is priced at: the first that instance_option tries."""
    return INSTANCE_OPTIONS[config.instance_option][0]


def pod_price(requests: Mapping[str, float], groups: Iterable[tuple[NodeGroup, InstanceType]],
              hours: float) -> float:
    """The cheapest share of a group's node that fits ``requests`` (CPU cores, memory bytes, GPUs).

    A pod's share of a node is its largest fraction of the node's CPU, memory
    or GPUs. 0 when no group fits the pod: no option of the autoscaler's then
    holds it, so there is nothing to compare.
    """
    best = None
    for group, itype in groups:
        capacity = {"cpu": itype.cpus, "memory": itype.memory_gib * 2**30, GPU_RESOURCE: gpu_count(group, itype)}
        asked = {r: amount for r, amount in requests.items() if r in capacity and amount > 0}
        if any(amount > capacity[r] for r, amount in asked.items()):
            continue
        share = max((amount / capacity[r] for r, amount in asked.items()), default=0.0)
        price = share * hourly_price(itype, first_offer_is_spot(group.config)) * hours
        best = price if best is None else min(best, price)
    return best or 0.0
