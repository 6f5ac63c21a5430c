"""The scheduler's node lost while workers hold data (issue 12, fault 6).

The sandbox partitions a node as a network failure would (`sandbox/kwok.py`):
its Lease renewals are refused, so the node lifecycle controller marks it
NotReady and taints it `unreachable`, and the pod runner cuts the links of the
pods there while their processes run on. The scheduler's template tolerates
`unreachable` for a few seconds (the way to fail over faster than Kubernetes'
default 300 s), so the taint evicts it and its Deployment starts another on a
node that is still there.

Pass: the Cluster reports the loss (Available=False, a Warning SchedulerLost
Event); no worker pod is deleted or replaced; a new scheduler becomes Ready on
another node and the same workers register with it. Healing the node ends the
old scheduler pod, as a kubelet that returns does.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import yaml
from test_operator import client_for, cluster, condition, ready_scheduler, workers

from helpers import Kube, OperatorPod, wait_for

from dask_operator.sandbox.kwok import MANAGED, NODE_ANNOTATION, PARTITIONED, partition_objects

pytestmark = pytest.mark.e2e

NAME = "lostnode"
EVICT_AFTER_SECONDS = 5
# The node lifecycle controller's grace period (50 s by default) plus its 5 s
# monitor period, the eviction, and a scheduler's start, with room for a busy machine.
NODE_LOST_TIMEOUT = 150
WORKERS = 2


def _ready(node: dict) -> str:
    return next((c["status"] for c in node["status"].get("conditions", []) if c["type"] == "Ready"), "")


def _lost_node_cluster(lost: str) -> dict:
    spec = cluster(NAME, WORKERS)
    spec["spec"]["scheduler"]["template"]["spec"]["tolerations"] = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": EVICT_AFTER_SECONDS}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]
    spec["spec"]["workers"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [lost]}]}]}}}
    return spec


@contextlib.contextmanager
def _only_schedulable(kube: Kube, node: str):
    """Every other node cordoned meanwhile (and uncordoned after, if it was not before)."""
    others = [n["metadata"]["name"] for n in kube.get("nodes")["items"]
              if n["metadata"]["name"] != node and not n["spec"].get("unschedulable")]
    for other in others:
        kube.kubectl("cordon", other)
    try:
        yield
    finally:
        for other in others:
            kube.kubectl("uncordon", other)


@contextlib.contextmanager
def _partitioned(kube: Kube, node: str):
    kube.apply(partition_objects(node))
    kube.kubectl("annotate", "node", node, f"{NODE_ANNOTATION}={PARTITIONED}", "--overwrite")
    try:
        yield
    finally:
        kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=yaml.safe_dump_all(partition_objects(node)))
        kube.kubectl("annotate", "node", node, f"{NODE_ANNOTATION}={MANAGED}", "--overwrite")
        wait_for(lambda: _ready(kube.get("node", node)) == "True", 60, f"{node} Ready again")


def test_the_scheduler_node_lost_is_reported_and_its_workers_keep_their_pods_and_register_again(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
    operator_node = operator.pod()["spec"]["nodeName"]
    lost = next(n["metadata"]["name"] for n in kube.get("nodes", "-l", "type=kwok")["items"]
                if n["metadata"]["name"] != operator_node and _ready(n) == "True")
    with _only_schedulable(kube, lost):  # the scheduler lands there; the workers wait for the uncordon
        kube.apply(_lost_node_cluster(lost), namespace)
        old = wait_for(lambda: ready_scheduler(kube, namespace, NAME), 90, "a Ready scheduler")
    assert old["spec"]["nodeName"] == lost
    client = client_for(kube, namespace, NAME)
    try:
        client.wait_for_workers(WORKERS, timeout=90)
        futures = client.map(lambda i: bytes(10_000) + i.to_bytes(4, "big"), range(50), pure=False)
        client.gather(futures)  # the results sit in worker memory while the client holds them
        pods = workers(kube, namespace, NAME)
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
        assert len(uids) == WORKERS and lost not in {p["spec"]["nodeName"] for p in pods}
        with _partitioned(kube, lost):
            t0 = time.monotonic()
            wait_for(lambda: _ready(kube.get("node", lost)) == "Unknown", NODE_LOST_TIMEOUT, f"{lost} NotReady")
            not_ready_after = time.monotonic() - t0
            unavailable = wait_for(lambda: (a := condition(kube, namespace, NAME, "Available")).get("status") ==
                                   "False" and a, 30, "Available=False")  # until the evicted scheduler's successor
            assert unavailable["reason"] == "SchedulerNotReady", unavailable
            event = wait_for(lambda: [e for e in kube.get("events", "-n", namespace)["items"]
                                      if e["involvedObject"]["name"] == NAME and e["reason"] == "SchedulerLost"],
                             60, "a SchedulerLost Event")
            lost_after = time.monotonic() - t0
            assert event[0]["type"] == "Warning" and f"{WORKERS} workers keep their pods" in event[0]["message"]
            new = wait_for(lambda: (p := ready_scheduler(kube, namespace, NAME)) and
                           p["metadata"]["uid"] != old["metadata"]["uid"] and p, NODE_LOST_TIMEOUT,
                           "a new Ready scheduler")
            new_after = time.monotonic() - t0
            assert new["spec"]["nodeName"] != lost
            wait_for(lambda: condition(kube, namespace, NAME, "Available").get("status") == "True", 60,
                     "Available again")
            with client_for(kube, namespace, NAME) as again:
                assert again.scheduler.address.split("//")[1].startswith(new["status"]["podIP"])
                again.wait_for_workers(WORKERS, timeout=120)
                registered = {w["name"] for w in again.scheduler_info()["workers"].values()}
            registered_after = time.monotonic() - t0
            still = kube.pods(namespace, f"dask.charmtx.com/cluster={NAME},dask.charmtx.com/role=worker")
            assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in still} == uids, \
                "no worker pod deleted or replaced"
            assert not [p for p in still if p["metadata"].get("deletionTimestamp")], "no worker pod deleted"
            restarts = sum(s["restartCount"] for p in still for s in p["status"].get("containerStatuses", []))
            assert registered == set(uids), "the same workers registered with the new scheduler"
            old_pod = kube.get("pod", old["metadata"]["name"], "-n", namespace)
            assert old_pod["metadata"].get("deletionTimestamp"), "the old scheduler was evicted"
    finally:
        with contextlib.suppress(Exception):  # its scheduler is gone
            client.close(timeout=5)
    # Healed: the runner ends the old scheduler's process and removes its pod.
    wait_for(lambda: old["metadata"]["name"] not in {
        p["metadata"]["name"] for p in kube.pods(namespace, f"dask.charmtx.com/cluster={NAME}")}, 60,
        "the old scheduler pod gone once its node is back")
    print(f"\nnode {lost} NotReady {not_ready_after:.1f} s after the partition; SchedulerLost at "
          f"{lost_after:.1f} s; a new scheduler Ready on {new['spec']['nodeName']} at {new_after:.1f} s; "
          f"{WORKERS} workers registered again at {registered_after:.1f} s ({restarts} container restarts)")
