"""The operator's path to the API server under faults (issue 12, faults 2 and 3).

The operator runs on the host (`helpers.host_operator`, deploy/'s
ServiceAccount) with its kubeconfig pointed at a proxy (`apiproxy`); every
other client (kubectl, the HPA, the cluster-scaler API, kwok) talks to the
API server directly, so changes keep coming while the operator's own path
is faulty.

- Conflicts: 30 % of the operator's writes answered 409 and every request
  delayed by up to 100 ms, while kubectl, a pinned HPA and the scaling API
  change the replicas at once. Pass: the worker pods equal the last
  `spec.workers.replicas` within 5 s of the last write; `observedGeneration`
  equals `generation`.
- Outage: the operator's connections closed and refused for 30 s (120 s with
  `DASK_OPERATOR_OUTAGE_SECONDS=30,120`) just after a scale, while more
  changes are made (another scale, a worker pod deleted by hand). Pass: the
  operator process lives on (no crash loop), applies every change once it
  reconnects, and creates no pod the targets did not need.
- The API server process stopped (SIGSTOP) for 30 s (120 s likewise) right
  after a scale, for every client. Pass: the operator's pod does not
  restart; the scale completes once it runs again, no pod made twice.
- Stall: every connection the operator has open stops carrying bytes, with
  no reset, then the Cluster is scaled. Pass: the operator notices within its
  inactivity timeout (70 s, `kube.WATCH_INACTIVITY_SECONDS`), on new
  connections, and reaches the new count with no pod created twice.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from test_api import CLUSTER, SCALE, Scaler, scaler  # noqa: F401  (the module's fixture: the API and its Cluster)
from test_faults import PodNames
from test_operator import CLUSTERS, cluster, scale

from apiproxy import ConflictProxy, TcpProxy, through
from helpers import Kube, OperatorPod, host_operator, wait_for

from dask_operator import constants as c
from dask_operator.kube import WATCH_INACTIVITY_SECONDS

pytestmark = pytest.mark.e2e

CONFLICT_RATE = 0.3
MAX_LATENCY = 0.1
WRITERS_SECONDS = float(os.environ.get("DASK_OPERATOR_CONFLICT_SECONDS", "30"))
OUTAGES = [float(s) for s in os.environ.get("DASK_OPERATOR_OUTAGE_SECONDS", "30").split(",")]
SEED = int(os.environ.get("DASK_OPERATOR_FAULT_SEED", str(int(time.time()) % 10_000)))
WORKERS = "dask.charmtx.com/role=worker"


def live_workers(kube: Kube, namespace: str, name: str) -> list[dict]:
    """The Cluster's worker pods not being deleted."""
    return [p for p in kube.pods(namespace, f"dask.charmtx.com/cluster={name},{WORKERS}")
            if not p["metadata"].get("deletionTimestamp")]


def replicas_and_generations(kube: Kube, namespace: str, name: str) -> tuple[int, int, int | None]:
    obj = kube.get(CLUSTERS, name, "-n", namespace)
    return (obj["spec"]["workers"]["replicas"], obj["metadata"]["generation"],
            obj.get("status", {}).get("observedGeneration"))


def pinned_hpa(name: str, replicas: int) -> dict:
    """An HPA whose min and max are `replicas`: it writes /scale back to that
    count whenever another writer moves it (out-of-range scaling needs no metric)."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": f"{name}-pinned"},
        "spec": {"scaleTargetRef": {"apiVersion": f"{c.GROUP}/{c.VERSION}", "kind": "Cluster", "name": name},
                 "minReplicas": replicas, "maxReplicas": replicas,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}]},
    }


def operator_through(kube: Kube, op, url: str) -> None:
    """Restart the host operator with its API server at `url`."""
    through(op.kubeconfig, url, op.kubeconfig)
    op.restart()
    wait_for(op.answers, 60, "the operator up")


class Writer(threading.Thread):
    """Calls `write(rng)` every 0.3-1.2 s until stopped; counts the writes."""

    def __init__(self, name: str, write, seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self.write, self.rng, self.count, self.error = write, random.Random(seed), 0, None
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.rng.uniform(0.3, 1.2)):
                self.write(self.rng)
                self.count += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)
        assert self.error is None, f"writer {self.name} failed: {self.error!r}"


def test_conflicts_and_latency_with_several_writers_converge_on_the_last_write(
        kube: Kube, sandbox, operator: OperatorPod, scaler: Scaler, tmp_path: Path) -> None:  # noqa: F811
    """30 % of the operator's writes get 409 and every request up to 100 ms more,
    while kubectl, a pinned HPA (4) and the cluster-scaler API scale the API's
    Cluster (simulated workers) for `WRITERS_SECONDS`. After the last write the
    worker pods equal spec.workers.replicas within 5 s, and observedGeneration
    equals generation."""
    ns, name = scaler.namespace, CLUSTER
    print(f"\nseed {SEED}")
    proxy = ConflictProxy(sandbox.apiserver, Path(sandbox.state_dir) / "pki", CONFLICT_RATE, MAX_LATENCY, SEED)
    try:
        with host_operator(kube, tmp_path) as op:
            operator_through(kube, op, proxy.url)

            def api_write(rng: random.Random) -> None:
                r = scaler.call("POST", SCALE, scaler.bearer("owner"), json={"replicas": rng.randint(1, 8)})
                assert r.status_code == 200, r.text

            writers = [Writer("kubectl", lambda rng: scale(kube, ns, name, rng.randint(1, 8)), SEED),
                       Writer("api", api_write, SEED + 1)]
            kube.apply(pinned_hpa(name, 4), ns)
            for w in writers:
                w.start()
            try:
                time.sleep(WRITERS_SECONDS)  # the workload: the writers race meanwhile
            finally:
                for w in writers:
                    w.stop()
                kube.kubectl("delete", "hpa", f"{name}-pinned", "-n", ns, "--wait=true")
            hpa_writes = [e for e in kube.get("events", "-n", ns)["items"]
                          if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"
                          and e["reason"] == "SuccessfulRescale"]
            scale(kube, ns, name, 6)  # the last write
            last = time.monotonic()
            wait_for(lambda: len(live_workers(kube, ns, name)) == 6, 5,
                     "the worker pods at the last spec.workers.replicas (6) within 5 s of the last write",
                     interval=0.05)
            settled = time.monotonic() - last
            replicas, generation, observed = wait_for(
                lambda: (t := replicas_and_generations(kube, ns, name))[1] == t[2] and t, 30,
                "observedGeneration = generation")
            counts = proxy.counts
            print(f"writes: kubectl {writers[0].count}, api {writers[1].count}, "
                  f"HPA rescales {sum(e.get('count', 1) for e in hpa_writes)}; proxy: {counts.requests} requests, "
                  f"{counts.writes} writes, {counts.conflicts} answered 409 {counts.by_method}; "
                  f"6 pods {settled:.2f} s after the last write")
    finally:
        proxy.close()
    assert replicas == 6 and observed == generation
    assert writers[0].count and writers[1].count and hpa_writes, "every writer wrote"
    assert set(counts.by_method) >= {"POST", "PATCH", "DELETE"}, "the proxy refused creates, patches and deletes"


@contextlib.contextmanager
def behind_a_tcp_proxy(kube: Kube, sandbox, namespace: str, name: str, tmp_path: Path):
    """A Cluster of 2 simulated workers, its pods watched (`PodNames`), and the
    host operator reaching the API server through a `TcpProxy`, the 2 pods
    counted in the status; yields (operator, proxy, watch)."""
    proxy = TcpProxy(_host_port(sandbox.apiserver))
    kube.apply(cluster(name, 2, simulate_workers=True), namespace)
    watch = PodNames(kube, namespace, f"dask.charmtx.com/cluster={name},{WORKERS}")
    try:
        with host_operator(kube, tmp_path) as op:
            operator_through(kube, op, proxy.url)
            wait_for(lambda: len(live_workers(kube, namespace, name)) == 2 and _stable(kube, namespace, name), 60,
                     "2 workers, counted in the status")
            yield op, proxy, watch
    finally:
        watch.stop()
        proxy.close()


@pytest.mark.parametrize("seconds", OUTAGES, ids=lambda s: f"{s:g}s")
def test_an_outage_of_the_api_server_loses_no_change_and_makes_no_duplicate(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str, tmp_path: Path, seconds: float) -> None:
    """The operator's API connections closed and refused for `seconds` just after
    a 2 -> 12 scale; meanwhile the Cluster is scaled to 7 and a worker pod is
    deleted by hand. Once the operator can reach the API server again: the same
    process runs (no crash loop), exactly 7 worker pods, each pod the operator
    made needed by the targets (no duplicate), observedGeneration = generation."""
    name = "outage"
    with behind_a_tcp_proxy(kube, sandbox, namespace, name, tmp_path) as (op, proxy, watch):
        pid = op.process.pid
        scale(kube, namespace, name, 12)
        proxy.cut()
        cut_at = time.monotonic()
        print(f"\nAPI server cut off for {seconds:g} s with {len(watch.first_uid)} of 12 worker pods made "
              f"({proxy.counts.cut} connections closed)")
        scale(kube, namespace, name, 7)
        victim = sorted(p["metadata"]["name"] for p in live_workers(kube, namespace, name))[0]
        kube.kubectl("delete", "pod", victim, "-n", namespace, "--wait=false")
        wait_for(lambda: time.monotonic() - cut_at >= seconds, seconds + 5, "the outage's end", interval=0.5)
        proxy.restore()
        back = time.monotonic()
        wait_for(lambda: len(live_workers(kube, namespace, name)) == 7 and victim in watch.first_uid
                 and _stable(kube, namespace, name), 120, "7 worker pods once the API server is back")
        caught_up = time.monotonic() - back
        _, generation, observed = wait_for(
            lambda: (t := replicas_and_generations(kube, namespace, name))[1] == t[2] and t, 60,
            "observedGeneration = generation")
        assert op.process.poll() is None and op.process.pid == pid, "the operator process survived the outage"
        made = dict(watch.first_uid)
    print(f"7 pods {caught_up:.2f} s after the API server came back; {len(made)} worker pods made in all")
    assert observed == generation
    # 12 names at most for the 2 -> 12 scale, plus the hand-deleted pod's replacement when it was
    # among the 7 kept: any other pod would be a duplicate.
    assert len(made) <= 12 + 1, f"pods made beyond the targets' need: {sorted(made)}"


@pytest.mark.parametrize("seconds", OUTAGES, ids=lambda s: f"{s:g}s")
def test_the_api_server_process_stopped_with_a_scale_pending(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str, seconds: float) -> None:
    """The sandbox's kube-apiserver process itself stopped (SIGSTOP) for `seconds`
    right after a 2 -> 6 scale, for every client at once (the operator's pod, the
    controllers, kwok). Once it runs again: the operator's pod has not restarted,
    exactly 6 worker pods, each name made once, observedGeneration = generation."""
    name = "frozen"
    kube.apply(cluster(name, 2, simulate_workers=True), namespace)
    wait_for(lambda: len(live_workers(kube, namespace, name)) == 2 and _stable(kube, namespace, name), 60,
             "2 workers, counted in the status")
    restarts = _restarts(operator.pod())
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_workers(kube, namespace, name)}
    apiserver = sandbox.pids["kube-apiserver"]
    scale(kube, namespace, name, 6)
    os.kill(apiserver, signal.SIGSTOP)
    try:
        time.sleep(seconds)  # the outage itself
    finally:
        os.kill(apiserver, signal.SIGCONT)
    back = time.monotonic()
    # A watch would not outlive a long stop (kubectl's HTTP/2 health check drops it): this one
    # starts now, and its first list is what exists; a name made twice would show a second uid.
    watch = PodNames(kube, namespace, f"dask.charmtx.com/cluster={name},{WORKERS}")
    try:
        wait_for(lambda: len(live_workers(kube, namespace, name)) == 6, 120, "6 worker pods once it runs again")
        caught_up = time.monotonic() - back
        _, generation, observed = wait_for(
            lambda: (t := replicas_and_generations(kube, namespace, name))[1] == t[2] and t, 60,
            "observedGeneration = generation")
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_workers(kube, namespace, name)}
        assert watch.watching, "the watch saw everything since the API server ran again"
    finally:
        watch.stop()
    print(f"\nkube-apiserver stopped {seconds:g} s; 6 pods {caught_up:.2f} s after it ran again")
    assert _restarts(operator.pod()) == restarts, "the operator's pod did not restart"
    assert observed == generation
    assert all(uids[n] == u for n, u in before.items()), "the 2 pods from before kept"
    assert all(watch.first_uid[n] == u for n, u in uids.items()), "no pod created twice"


def _restarts(pod: dict) -> int:
    return sum(s.get("restartCount", 0) for s in pod["status"].get("containerStatuses", ()))


def test_a_stalled_connection_is_noticed_within_the_inactivity_timeout(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str, tmp_path: Path) -> None:
    """Once the operator has scaled 2 -> 3, every connection it has open stops
    carrying bytes (no reset), then the Cluster is scaled to 5. The operator gives
    up on the silent streams and requests within `WATCH_INACTIVITY_SECONDS`
    (+ 30 s for the reconcile and its retry), opens new connections and reaches
    5 pods, each name made once."""
    name = "stall"
    with behind_a_tcp_proxy(kube, sandbox, namespace, name, tmp_path) as (op, proxy, watch):
        scale(kube, namespace, name, 3)  # past its start: its watches deliver, its writes land
        wait_for(lambda: len(live_workers(kube, namespace, name)) == 3 and _stable(kube, namespace, name), 60,
                 "3 workers, counted in the status")
        connections = proxy.counts.connections
        stalled = proxy.stall()
        at = time.monotonic()
        scale(kube, namespace, name, 5)
        wait_for(lambda: len(live_workers(kube, namespace, name)) == 5, WATCH_INACTIVITY_SECONDS + 30,
                 "5 worker pods after the stall", interval=0.5)
        noticed = time.monotonic() - at
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_workers(kube, namespace, name)}
        assert op.process.poll() is None, "the operator process survived the stall"
        new_connections = proxy.counts.connections - connections
    print(f"\n{stalled} connections stalled; 5 pods {noticed:.1f} s later, over {new_connections} new connections")
    assert stalled >= 1 and new_connections >= 1, "new connections replaced the stalled ones"
    assert all(watch.first_uid[n] == u for n, u in uids.items()), "no pod created twice"


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def _stable(kube: Kube, namespace: str, name: str) -> bool:
    """The status counts what exists (the operator has looked since the last change)."""
    obj = kube.get(CLUSTERS, name, "-n", namespace)
    return obj.get("status", {}).get("workers", {}).get("count") == obj["spec"]["workers"]["replicas"]
