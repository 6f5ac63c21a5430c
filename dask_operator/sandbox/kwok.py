"""kwok's configuration: its Stages and the fake nodes it keeps Ready.

kwok simulates every pod on its nodes except those the pod runner runs for
real (`podrunner.RUNNER_SELECTORS`: the Dask role label, or
`app.kubernetes.io/part-of=dask-operator`, without the simulate label). Stage
selectors are conjunctions, so each pod stage is written twice: once for pods
with neither the role label nor the part-of value, once for pods with the
simulate label; together they are exactly the complement of the runner's
selectors.
"""

from __future__ import annotations

from importlib import resources

import yaml

from ..constants import LABEL_PART_OF, LABEL_ROLE, PART_OF, SANDBOX_SIMULATE_LABEL

NODE_ANNOTATION = "kwok.x-k8s.io/node"

_KWOK_SIDES = (
    ("plain", [{"key": f'.metadata.labels["{LABEL_ROLE}"]', "operator": "DoesNotExist"},
               {"key": f'.metadata.labels["{LABEL_PART_OF}"]', "operator": "NotIn", "values": [PART_OF]}]),
    ("simulated", [{"key": f'.metadata.labels["{SANDBOX_SIMULATE_LABEL}"]', "operator": "Exists"}]),
)


def _stages() -> list[dict]:
    text = resources.files(__package__).joinpath("kwok-stages.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def render() -> str:
    """The multi-document kwok config file: KwokConfiguration plus Stages."""
    docs: list[dict] = [{
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        # Leases keep nodes alive: the heartbeat stage refreshes status only
        # every ~10 minutes, past the node lifecycle controller's grace period.
        "options": {"podPlayStageParallelism": 16, "nodePlayStageParallelism": 4,
                    "nodeLeaseDurationSeconds": 40, "nodeLeaseParallelism": 4},
    }]
    for stage in _stages():
        if stage["spec"]["resourceRef"]["kind"] != "Pod":
            docs.append(stage)
            continue
        for side, exprs in _KWOK_SIDES:
            copy = yaml.safe_load(yaml.safe_dump(stage))
            copy["metadata"]["name"] = f"{stage['metadata']['name']}-{side}"
            copy["spec"]["selector"].setdefault("matchExpressions", []).extend(exprs)
            docs.append(copy)
    return yaml.safe_dump_all(docs, sort_keys=False)


def nodes(config) -> list[dict]:
    """Ready nodes with allocatable CPU, memory, pods and nvidia.com/gpu."""
    resources_ = {
        "cpu": config.node_cpu, "memory": config.node_memory,
        "pods": config.node_pods, "nvidia.com/gpu": config.node_gpus,
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-node-{i}",
                "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": f"kwok-node-{i}", "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "type": "kwok",
                },
            },
            "status": {"allocatable": resources_, "capacity": resources_},
        }
        for i in range(config.nodes)
    ]
