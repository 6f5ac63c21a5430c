"""kwok's configuration: its Stages and the fake nodes it keeps Ready.

kwok simulates every pod on its nodes except those the pod runner runs for
real (`podrunner.RUNNER_SELECTORS`: the Dask role label, or
`app.kubernetes.io/part-of=dask-operator`, without the simulate label). Stage
selectors are conjunctions, so each pod stage is written twice: once for pods
with neither the role label nor the part-of value, once for pods with the
simulate label; together they are exactly the complement of the runner's
selectors.

A node can be partitioned (`partition_objects`): its kwok annotation set to
`PARTITIONED` stops kwok's stages for it (which would set it Ready again), and
a ValidatingAdmissionPolicy refuses its Lease's renewals, which kwok keeps
sending for every node it ever managed. The node lifecycle controller then
finds the lease stale, as for a node whose kubelet lost the API server: the
node goes NotReady (Unknown), its pods are marked not Ready, and the
`unreachable` taints evict them after their toleration. The pod runner cuts
the network of the pods it runs there and stops tending them
(`podrunner.py`). Deleting the policy and annotating the node `fake` again
heals it.
"""

from __future__ import annotations

from importlib import resources

import yaml

from ..constants import LABEL_PART_OF, LABEL_ROLE, PART_OF, SANDBOX_SIMULATE_LABEL

NODE_ANNOTATION = "kwok.x-k8s.io/node"
MANAGED = "fake"  # the annotation's value on the nodes kwok keeps Ready
PARTITIONED = "partitioned"  # ... and on a node cut off from the API server and the pod network

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
                "annotations": {NODE_ANNOTATION: MANAGED, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": f"kwok-node-{i}", "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "type": "kwok",
                },
            },
            "status": {"allocatable": resources_, "capacity": resources_},
        }
        for i in range(config.nodes)
    ]


def partition_objects(node: str) -> list[dict]:
    """A ValidatingAdmissionPolicy and its binding refusing writes of `node`'s Lease.

    Apply them and annotate the node `PARTITIONED` to cut it off; delete them
    and annotate it `MANAGED` to heal it.
    """
    name = f"sandbox-partition-{node}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["coordination.k8s.io"], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["leases"],
            }]},
            "matchConditions": [{
                "name": "the-partitioned-node",
                "expression": f"request.namespace == 'kube-node-lease' && object.metadata.name == '{node}'",
            }],
            "validations": [{
                "expression": "false",
                "message": f"sandbox: node {node} is partitioned; its heartbeat does not reach the API server",
            }],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]
