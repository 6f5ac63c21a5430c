"""Faults injected on the sandbox, each with its pass criterion (issue 12; README "Reliability").

- The operator SIGKILLed after the k-th pod creation of a 0 -> 100 scale
  (k = 1, 10, 50): exactly 100 pods within 5 s of the restarted operator
  answering, no name created twice, no orphan.
- The operator SIGKILLed between the scheduler's retirement of workers and
  the deletion of their pods: exactly the desired pods afterwards, every
  result still there, no worker retired twice.
- The scheduler pod deleted while workers hold results: a SchedulerLost
  Event and Available=False, no worker pod deleted, the workers register
  with the new scheduler.
The crash tests run the operator on the host (`helpers.host_operator`) to
SIGKILL it at the chosen moment.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from test_operator import CLUSTERS, client_for, cluster, condition, ready_scheduler, scale, status, workers

from helpers import Kube, OperatorPod, host_operator, wait_for

from dask_operator import constants as c


CRASH_REPLICAS = 100


@pytest.mark.parametrize("k", [1, 10, 50], ids=lambda k: f"after-{k}-creations")
def test_sigkill_mid_scale_up_ends_with_exactly_desired(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str, tmp_path: Path, k: int) -> None:
    """SIGKILL the operator (run on the host by `host_operator`, one create at a
    time) once k of the 100 worker pods of a 0 -> 100 scale exist. Once the
    restarted operator answers, it reaches exactly 100 within 5 s: every name
    once, no pod ever created twice (each name keeps the uid first seen), none
    owned by anything but the Cluster, nothing else in the namespace."""
    kube.apply(cluster("crash", 0, simulate_workers=True), namespace)
    wait_for(lambda: status(kube, namespace, "crash").get("observedGeneration"), 30, "the Cluster reconciled")
    with host_operator(kube, tmp_path) as op:
        op.restart(env={"DASK_OPERATOR_API_CONCURRENCY": "1"})  # one create at a time: the kill lands mid-scale
        wait_for(op.answers, 60, "the operator up")
        watch = PodNames(kube, namespace, "dask.charmtx.com/role=worker")
        try:
            scale(kube, namespace, "crash", CRASH_REPLICAS)
            wait_for(lambda: len(watch.first_uid) >= k, 60, f"{k} worker pods created", interval=0.01)
            op.kill()
            at_kill = len(kube.pods(namespace, "dask.charmtx.com/role=worker"))
            print(f"\noperator SIGKILLed with {at_kill} of {CRASH_REPLICAS} worker pods created")
            assert k <= at_kill < CRASH_REPLICAS, "the kill landed mid-scale"

            op.restart(env={})
            wait_for(op.answers, 60, "the operator up again")
            up = time.monotonic()
            wait_for(lambda: len(kube.pods(namespace, "dask.charmtx.com/role=worker")) >= CRASH_REPLICAS, 5,
                     f"{CRASH_REPLICAS} worker pods within 5 s of the restarted operator answering")
            print(f"{CRASH_REPLICAS} pods {time.monotonic() - up:.2f} s after the restarted operator answered")
            wait_for(lambda: status(kube, namespace, "crash").get("workers", {}).get("count") == CRASH_REPLICAS,
                     30, f"status count={CRASH_REPLICAS}")
            pods = kube.pods(namespace, "dask.charmtx.com/role=worker")
            uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
            seen = dict(watch.first_uid)
        finally:
            watch.stop()
    names = sorted(p["metadata"]["name"] for p in pods)
    assert names == sorted(f"crash-worker-{i}" for i in range(CRASH_REPLICAS))
    assert len(seen) >= at_kill and set(seen) <= set(uids), "the watch saw every pod made before the kill, no other"
    assert all(uids[n] == u for n, u in seen.items()), "no pod created twice: each name keeps the uid first seen"
    uid = kube.get(CLUSTERS, "crash", "-n", namespace)["metadata"]["uid"]
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == uid for p in pods), "no orphans"
    assert len(kube.get("pods", "-n", namespace)["items"]) == CRASH_REPLICAS + 1, "the workers and the scheduler"


def test_sigkill_between_retirement_and_deletion_loses_nothing(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str, tmp_path: Path) -> None:
    """6 real workers hold 300 results; scaled to 1, the operator (one API call at
    a time) is SIGKILLed once the scheduler has retired workers and the first of
    their pods is annotated, before the pods are all deleted. The restarted
    operator ends with exactly 1 worker pod within 5 s of answering (the
    annotated pods are deleted without asking the scheduler again), no worker
    left with data, and every result is still there."""
    kube.apply(cluster("retire", 6), namespace)
    with host_operator(kube, tmp_path) as op:
        op.restart(env={"DASK_OPERATOR_API_CONCURRENCY": "1"})
        wait_for(op.answers, 60, "the operator up")
        with client_for(kube, namespace, "retire") as client:
            client.wait_for_workers(6, timeout=120)
            futures = client.map(lambda i: bytes(10_000) + i.to_bytes(4, "big"), range(300), pure=False)
            client.gather(futures)
            watch = PodNames(kube, namespace, "dask.charmtx.com/cluster=retire,dask.charmtx.com/role=worker")
            try:
                scale(kube, namespace, "retire", 1)
                wait_for(lambda: watch.retiring, 120, "a retired worker's pod annotated", interval=0.005)
                op.kill()
                annotated_alive = watch.retiring - watch.deleted
                print(f"\noperator SIGKILLed with {len(watch.retiring)} pods annotated as retired, "
                      f"{len(watch.deleted)} deleted")
                assert annotated_alive, "the kill landed between a retirement and its pod's deletion"

                op.restart(env={})
                wait_for(op.answers, 60, "the operator up again")
                up = time.monotonic()
                wait_for(lambda: len(workers(kube, namespace, "retire")) == 1, 5,
                         "1 worker pod within 5 s of the restarted operator answering")
                print(f"1 worker pod {time.monotonic() - up:.2f} s after the restarted operator answered")
            finally:
                watch.stop()
            results = client.gather(futures)
            assert [int.from_bytes(r[-4:], "big") for r in results] == list(range(300)), "every result is there"
            events = [e for _, e in client.get_events("all")]
        lost = [e for e in events if e.get("action") == "remove-worker"
                and (e.get("lost-computed-tasks") or e.get("lost-scattered-tasks"))]
    assert not lost, f"workers left with data: {lost}"
    wait_for(lambda: status(kube, namespace, "retire").get("workers", {}).get("count") == 1, 30, "status count=1")


class PodNames:
    """A raw pod watch (`kubectl get --raw`, one JSON event per line, unbuffered) read
    in a thread: the uid each pod name was first seen with, the pods annotated as
    retired, and those deleted; and every event, with the time (`time.time()`) it
    was read, for tests that replay the pods' history."""

    def __init__(self, kube: Kube, namespace: str, selector: str) -> None:
        self.first_uid: dict[str, str] = {}
        self.retiring: set[str] = set()  # pods annotated as retired
        self.deleted: set[str] = set()  # pods being deleted or gone
        self.events: list[tuple[float, str, dict]] = []  # (time read, event type, pod)
        query = urllib.parse.urlencode({"watch": "true", "labelSelector": selector})
        self._proc = subprocess.Popen(
            ["kubectl", f"--kubeconfig={kube.kubeconfig}", "get", "--raw",
             f"/api/v1/namespaces/{namespace}/pods?{query}"], stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            event = json.loads(line)
            self.events.append((time.time(), event["type"], event["object"]))
            meta = event["object"]["metadata"]
            self.first_uid.setdefault(meta["name"], meta["uid"])
            if c.ANNOTATION_RETIRING in (meta.get("annotations") or {}):
                self.retiring.add(meta["name"])
            if event["type"] == "DELETED" or meta.get("deletionTimestamp"):
                self.deleted.add(meta["name"])

    @property
    def watching(self) -> bool:
        """The watch is still open: no event was missed so far."""
        return self._proc.poll() is None

    def stop(self) -> None:
        self._proc.kill()
        self._thread.join(5)


def test_a_lost_scheduler_is_reported_and_its_workers_keep_their_pods_and_register_again(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
    """The scheduler pod is deleted while two workers hold results: a Warning
    SchedulerLost Event and Available=False; no worker pod is deleted; the
    Deployment's new scheduler becomes Ready and both workers register with it."""
    kube.apply(cluster("lost", 2), namespace)
    client = client_for(kube, namespace, "lost")
    try:
        client.wait_for_workers(2, timeout=90)
        futures = client.map(lambda i: bytes(10_000) + i.to_bytes(4, "big"), range(50), pure=False)
        client.gather(futures)  # the results sit in worker memory while the client holds them
        old = ready_scheduler(kube, namespace, "lost")
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in workers(kube, namespace, "lost")}
        kube.kubectl("delete", "pod", old["metadata"]["name"], "-n", namespace, "--wait=false")
        event = wait_for(lambda: [e for e in kube.get("events", "-n", namespace)["items"]
                                  if e["involvedObject"]["name"] == "lost" and e["reason"] == "SchedulerLost"],
                         60, "a SchedulerLost Event")
    finally:
        with contextlib.suppress(Exception):  # its scheduler is gone
            client.close(timeout=5)
    assert event[0]["type"] == "Warning" and "2 workers keep their pods" in event[0]["message"], event[0]
    new = wait_for(lambda: (p := ready_scheduler(kube, namespace, "lost")) and p["metadata"]["uid"] !=
                   old["metadata"]["uid"] and p, 120, "a new Ready scheduler")
    wait_for(lambda: condition(kube, namespace, "lost", "Available").get("status") == "True", 60, "Available again")
    with client_for(kube, namespace, "lost") as client:
        assert client.scheduler.address.split("//")[1].startswith(new["status"]["podIP"])
        client.wait_for_workers(2, timeout=120)
        registered = {w["name"] for w in client.scheduler_info()["workers"].values()}
    pods = kube.pods(namespace, "dask.charmtx.com/cluster=lost,dask.charmtx.com/role=worker")
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods} == uids, "no worker pod deleted or replaced"
    assert registered == set(uids), "the same workers registered with the new scheduler"


