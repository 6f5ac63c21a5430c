"""PodWatch: the per-Cluster coalescer and the watch loop, sequenced with Events and queues.

Rules:
- `request` while a Cluster's reconcile runs marks it dirty: however many
  requests arrive, one more reconcile follows it, never more and never alongside;
- requests made before the drain task first runs collapse into one reconcile;
- Clusters reconcile independently: one held reconcile does not delay another Cluster;
- a reconcile that raises is logged, and later requests still reconcile;
- `forget` drops a pending re-reconcile;
- no bookkeeping outlives its drain (a deleted Cluster's pods keep sending events);
- the watch covers pods with both Dask labels, one watch per namespace (one
  cluster-wide without namespaces), and restarts after an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from fakes import FakeKube

from dask_operator import constants as c
from dask_operator import pod_watch
from dask_operator.pod_watch import PodWatch

A, B = ("ns", "a"), ("ns", "b")
TIMEOUT = 2.0


class Reconciles:
    """A reconcile callable that records its calls; `hold` makes a Cluster's reconciles wait."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.started: asyncio.Queue = asyncio.Queue()
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.failures: dict[tuple[str, str], Exception] = {}
        self.running: dict[tuple[str, str], int] = {}
        self.most_at_once = 0  # most reconciles of one Cluster running at the same time

    def hold(self, key: tuple[str, str]) -> None:
        self.gates[key] = asyncio.Event()

    def release(self, key: tuple[str, str]) -> None:
        self.gates.pop(key).set()

    async def __call__(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.calls.append(key)
        self.started.put_nowait(key)
        self.running[key] = self.running.get(key, 0) + 1
        self.most_at_once = max(self.most_at_once, self.running[key])
        try:
            if key in self.gates:
                await self.gates[key].wait()
            if key in self.failures:
                raise self.failures.pop(key)
        finally:
            self.running[key] -= 1

    async def next_started(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.started.get(), TIMEOUT)


async def drained(watch: PodWatch) -> None:
    """Wait (bounded) until every Cluster's drain task has finished."""
    await asyncio.wait_for(asyncio.gather(*watch._draining.values()), TIMEOUT)


# ---------------------------------------------------------------- the coalescer


async def test_burst_while_reconciling_gives_exactly_one_more_reconcile():
    reconciles = Reconciles()
    watch = PodWatch(FakeKube(), reconciles)
    reconciles.hold(A)
    watch.request(*A)
    assert await reconciles.next_started() == A
    for _ in range(100):
        watch.request(*A)
    await asyncio.sleep(0)  # one turn of the loop: every task made ready by the burst runs
    assert reconciles.calls == [A], "nothing starts while the Cluster's reconcile runs"
    reconciles.release(A)
    await drained(watch)
    assert reconciles.calls == [A, A]
    assert reconciles.most_at_once == 1


async def test_burst_before_the_drain_starts_gives_one_reconcile():
    reconciles = Reconciles()
    watch = PodWatch(FakeKube(), reconciles)
    for _ in range(100):
        watch.request(*A)
    await drained(watch)
    assert reconciles.calls == [A]


async def test_request_after_the_drain_finished_reconciles_again():
    reconciles = Reconciles()
    watch = PodWatch(FakeKube(), reconciles)
    watch.request(*A)
    await drained(watch)
    watch.request(*A)
    await drained(watch)
    assert reconciles.calls == [A, A]


async def test_clusters_reconcile_independently():
    reconciles = Reconciles()
    watch = PodWatch(FakeKube(), reconciles)
    reconciles.hold(A)
    watch.request(*A)
    assert await reconciles.next_started() == A
    watch.request(*B)
    assert await reconciles.next_started() == B  # while A is still held
    watch.request(*A)
    reconciles.release(A)
    await drained(watch)
    assert reconciles.calls == [A, B, A]


async def test_failed_reconcile_is_logged_and_the_next_request_still_works(caplog):
    reconciles = Reconciles()
    watch = PodWatch(FakeKube(), reconciles)
    reconciles.failures[A] = RuntimeError("API server went away")
    with caplog.at_level(logging.WARNING, logger="dask_operator.pod_watch"):
        watch.request(*A)
        await drained(watch)
    assert [r.getMessage() for r in caplog.records if r.name == "dask_operator.pod_watch"] == [
        "reconcile of ns/a after a pod change failed: API server went away"
    ]
    watch.request(*A)
    await drained(watch)
    assert reconciles.calls == [A, A]


async def test_failed_reconcile_still_runs_the_pending_one():
    reconciles = Reconciles()
    watch = PodWatch(FakeKube(), reconciles)
    reconciles.hold(A)
    reconciles.failures[A] = RuntimeError("boom")
    watch.request(*A)
    assert await reconciles.next_started() == A
    watch.request(*A)
    reconciles.release(A)
    await drained(watch)
    assert reconciles.calls == [A, A]


async def test_forget_drops_a_pending_reconcile():
    reconciles = Reconciles()
    watch = PodWatch(FakeKube(), reconciles)
    reconciles.hold(A)
    watch.request(*A)
    assert await reconciles.next_started() == A
    watch.request(*A)
    watch.forget(A)
    reconciles.release(A)
    await drained(watch)
    assert reconciles.calls == [A]


async def test_no_bookkeeping_outlives_the_drains():
    reconciles = Reconciles()
    watch = PodWatch(FakeKube(), reconciles)
    for i in range(50):
        watch.request("ns", f"c{i}")
    watch.forget(("ns", "c0"))
    watch.request("ns", "c0")  # a deleted Cluster's pod event, after its delete handler
    await drained(watch)
    assert watch._draining == {}
    assert sorted(reconciles.calls) == sorted(("ns", f"c{i}") for i in range(50))
    assert watch._dirty == set()


# ---------------------------------------------------------------- the watch loop


def pod(name: str, cluster: str, namespace: str = "ns", role: str = c.ROLE_WORKER, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {c.LABEL_ROLE: role, c.LABEL_CLUSTER: cluster, **labels}}}


@contextlib.asynccontextmanager
async def running(watch: PodWatch, namespaces):
    task = asyncio.create_task(watch.run(namespaces))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)
        await drained(watch)


@pytest.fixture
def no_restart_delay(monkeypatch):
    monkeypatch.setattr(pod_watch, "RESTART_DELAY_SECONDS", 0)


async def test_watch_requests_a_reconcile_per_cluster_of_a_changed_pod():
    kube = FakeKube()
    kube.add("v1", "pods", pod("a-worker-0", "a"))
    kube.add("v1", "pods", pod("b-scheduler-x", "b", role=c.ROLE_SCHEDULER))
    kube.add("v1", "pods", {"metadata": {"name": "unrelated", "namespace": "ns", "labels": {"app": "x"}}})
    reconciles = Reconciles()
    watch = PodWatch(kube, reconciles)
    async with running(watch, ["ns"]):
        assert {await reconciles.next_started(), await reconciles.next_started()} == {A, B}
        await kube.create("v1", "pods", "ns", pod("a-worker-1", "a"))
        assert await reconciles.next_started() == A
    (call,) = kube.calls_of("watch")
    assert (call.namespace, call.selector) == ("ns", f"{c.LABEL_CLUSTER},{c.LABEL_ROLE}")
    assert reconciles.started.empty()


async def test_watch_restarts_after_an_exception(caplog, no_restart_delay):
    kube = FakeKube()
    kube.add("v1", "pods", pod("a-worker-0", "a"))
    kube.fail_next("watch", RuntimeError("connection refused"))
    reconciles = Reconciles()
    with caplog.at_level(logging.WARNING, logger="dask_operator.pod_watch"):
        async with running(PodWatch(kube, reconciles), ["ns"]):
            assert await reconciles.next_started() == A
    assert kube.log() == ["watch pods", "watch pods"]
    assert [r.getMessage() for r in caplog.records if r.name == "dask_operator.pod_watch"] == [
        "pod watch failed, restarting in 0 s: connection refused"
    ]


async def test_watch_restarts_when_the_stream_breaks(no_restart_delay):
    kube = FakeKube()
    kube.add("v1", "pods", pod("a-worker-0", "a"))
    reconciles = Reconciles()
    async with running(PodWatch(kube, reconciles), ["ns"]):
        assert await reconciles.next_started() == A
        kube.break_watches(ConnectionResetError("reset by peer"))
        assert await reconciles.next_started() == A  # re-listed
    assert kube.log() == ["watch pods", "watch pods"]


@pytest.mark.parametrize(
    "namespaces, watched",
    [
        pytest.param(None, [None], id="cluster-wide"),
        pytest.param([], [None], id="no-namespaces-is-cluster-wide"),
        pytest.param(["n1", "n2"], ["n1", "n2"], id="one-watch-per-namespace"),
    ],
)
async def test_one_watch_per_namespace(namespaces, watched):
    kube = FakeKube()
    kube.add("v1", "pods", pod("a-worker-0", "a", namespace="n1"))
    kube.add("v1", "pods", pod("b-worker-0", "b", namespace="n2"))
    reconciles = Reconciles()
    async with running(PodWatch(kube, reconciles), namespaces):
        assert {await reconciles.next_started(), await reconciles.next_started()} == {("n1", "a"), ("n2", "b")}
    assert sorted(call.namespace or "" for call in kube.calls_of("watch")) == [w or "" for w in watched]
