"""HPA on desired_workers end to end: real scheduler and workers, real Prometheus
scrape, real prometheus-adapter, the real HPA controller, our operator."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from distributed import Client

from hpa_chain import (
    CLUSTERS, Timeline, cluster, follow_scale_up, hpa, replicas, scheduler_url, served_metric,
    use_metric_source, worker_pods,
)
from helpers import ROOT, Kube, OperatorPod, wait_for

from dask_operator.sandbox.build import servicemonitor_crd

pytestmark = pytest.mark.e2e


def _task():
    # Nested, so Dask ships it by value: workers cannot import this test module.
    def slow(i: int) -> bytes:
        import time
        time.sleep(0.5)
        return bytes(1000) + i.to_bytes(4, "big")
    return slow


slow = _task()


@pytest.mark.parametrize("source", ["scheduler", "operator"])
def test_hpa_scales_up_on_load_and_down_after_it_losing_nothing(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str, source: str) -> None:
    use_metric_source(sandbox, source)
    name = f"auto-{source}"
    kube.apply(cluster(name, 1), namespace)
    ip = wait_for(lambda: scheduler_url(kube, namespace, name), 60, "a Ready scheduler")
    with Client(f"tcp://{ip}:8786", timeout=30) as client:
        client.wait_for_workers(1, timeout=60)
        first = set(client.scheduler_info()["workers"])
        wait_for(lambda: served_metric(kube, namespace, name) is not None, 90,
                 f"desired_workers from the {source} served by the adapter")
        kube.apply(hpa(name, 1, 3), namespace)
        wait_for(lambda: any(c["type"] == "ScalingActive" and c["status"] == "True" for c in
                             kube.get("hpa", name, "-n", namespace).get("status", {}).get("conditions", [])),
                 60, "the HPA reading the metric")

        # 1. a burst: ~60 s of work for one single-threaded worker
        t0 = time.monotonic()
        futures = client.map(slow, range(120), pure=False)
        timeline = Timeline(source)
        # 2.-3. the HPA scales the Cluster up; new real workers join
        follow_scale_up(kube, namespace, name, ip, 3, timeline, t0)
        print(f"\n{timeline.line()}")
        results = client.gather(futures)
        ran_on = {a for addrs in client.who_has(futures).values() for a in addrs}
        assert ran_on - first, "workers added by the HPA ran tasks"

        # 4. the load is over: after its stabilization window the HPA scales down
        wait_for(lambda: replicas(kube, namespace, name) == 1, 120, "the HPA to scale back to 1")
        wait_for(lambda: len(worker_pods(kube, namespace, name)) == 1
                 and len(kube.pods(namespace, f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=worker")) == 1,
                 120, "one worker pod left")
        # 5. retired through the scheduler: every result still there
        again = client.gather(futures)
        assert [int.from_bytes(r[-4:], "big") for r in again] == list(range(120))
        assert again == results
        lost = [e for _, e in client.get_events("all") if e.get("action") == "remove-worker"
                and (e.get("lost-computed-tasks") or e.get("lost-scattered-tasks"))]
        assert not lost


def _operator_series(url: str, namespace: str, name: str) -> str | None:
    import httpx
    for line in httpx.get(url).text.splitlines():
        if line.startswith("dask_operator_cluster_desired_workers{") and f'cluster="{name}"' in line \
                and f'namespace="{namespace}"' in line:
            return line
    return None


def test_scheduler_down_withdraws_the_metric_and_the_hpa_holds(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
    from test_operator import _scheduler_pids
    use_metric_source(sandbox, "operator")
    name = "hold"
    kube.apply(cluster(name, 2), namespace)
    wait_for(lambda: scheduler_url(kube, namespace, name), 60, "a Ready scheduler")
    wait_for(lambda: _operator_series(operator.metrics_url, namespace, name), 30, "the operator's series")
    wait_for(lambda: served_metric(kube, namespace, name) is not None, 90, "the metric served")
    kube.apply(hpa(name, 1, 3, scale_down_window=0), namespace)
    # idle scheduler -> desired 0 -> the HPA goes to its minimum, 1
    wait_for(lambda: replicas(kube, namespace, name) == 1, 60, "the HPA acting on the metric")
    pids = _scheduler_pids(kube, sandbox, namespace, name)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # the scheduler stops answering
    try:
        wait_for(lambda: _operator_series(operator.metrics_url, namespace, name) is None, 30,
                 "the operator's series withdrawn (absent, not 0)")
        wait_for(lambda: served_metric(kube, namespace, name) is None, 60, "the adapter serving nothing")
        # A count the metric (0 -> minimum 1) would collapse if it were made up.
        kube.kubectl("patch", CLUSTERS, name, "-n", namespace, "--type=merge", "-p",
                     '{"spec": {"workers": {"replicas": 2}}}')

        def holding() -> bool:
            status = kube.get("hpa", name, "-n", namespace)["status"]
            inactive = any(c["type"] == "ScalingActive" and c["status"] == "False"
                           and c["reason"] == "FailedGetObjectMetric" for c in status.get("conditions", []))
            return inactive and status.get("currentReplicas") == 2

        wait_for(holding, 60, "the HPA seeing 2 replicas and no metric")
        assert replicas(kube, namespace, name) == 2, "the HPA held the replica count"
        events = [e["reason"] for e in kube.get("events", "-n", namespace)["items"]
                  if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"]
        assert "FailedGetObjectMetric" in events
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_scale_to_zero_and_back_with_hpa_scale_to_zero_gate(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
    use_metric_source(sandbox, "scheduler")
    name = "zero"
    kube.apply(cluster(name, 1), namespace)
    ip = wait_for(lambda: scheduler_url(kube, namespace, name), 60, "a Ready scheduler")
    wait_for(lambda: served_metric(kube, namespace, name) is not None, 90, "the metric served")
    kube.apply(hpa(name, 0, 2, scale_down_window=0), namespace)
    wait_for(lambda: replicas(kube, namespace, name) == 0 and not worker_pods(kube, namespace, name),
             90, "an idle Cluster scaled to 0 workers")
    assert scheduler_url(kube, namespace, name) == ip, "the scheduler stays up"
    with Client(f"tcp://{ip}:8786", timeout=30) as client:
        future = client.submit(slow, 7)
        result = future.result(timeout=120)  # needs a worker: the HPA brings one back
        assert int.from_bytes(result[-4:], "big") == 7
    assert replicas(kube, namespace, name) >= 1


def test_monitoring_component_validates_against_the_real_servicemonitor_crd(kube: Kube, sandbox) -> None:
    kube.kubectl("apply", "--server-side", "-f", str(servicemonitor_crd()))
    try:
        wait_for(lambda: kube.kubectl("get", "servicemonitors", "-A", check=False).returncode == 0, 30,
                 "the ServiceMonitor CRD served")
        with tempfile.TemporaryDirectory() as tmp:
            # How a user adds the component to an install of deploy/.
            (Path(tmp) / "deploy").symlink_to(ROOT / "deploy")
            (Path(tmp) / "kustomization.yaml").write_text("resources: [deploy]\ncomponents: [deploy/monitoring]\n")
            rendered = subprocess.run(["kubectl", "kustomize", tmp], capture_output=True, text=True, check=True).stdout
        monitors = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", "default", "-f", "-",
                                input=rendered)
        assert "servicemonitor.monitoring.coreos.com/dask-scheduler created (server dry run)" in monitors.stdout
        assert "servicemonitor.monitoring.coreos.com/dask-operator created (server dry run)" in monitors.stdout
        # a typo in a field is caught by the same validation
        bad = rendered.replace("jobLabel:", "jobLable:")
        result = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", "default", "-f", "-",
                              input=bad, check=False)
        assert result.returncode != 0 and "jobLable" in result.stderr
    finally:
        kube.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=true")


def test_kubectl_scale_against_the_example_hpa_gives_way_without_blocking(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
    """example/autoscaling/ verbatim: its HPA holds the idle Cluster at 1. A `kubectl scale
    --replicas=2` creates a worker, the HPA takes the count back at its next sync, and the
    new worker goes -- not yet Ready, not yet registered, or retired -- with no
    ScaleDownBlocked, while the first worker's results stay."""
    use_metric_source(sandbox, "scheduler")
    kube.kubectl("apply", "-k", str(ROOT / "example" / "autoscaling"), "-n", namespace)
    name = "example-dask"
    ip = wait_for(lambda: scheduler_url(kube, namespace, name), 60, "a Ready scheduler")
    wait_for(lambda: any(c["type"] == "ScalingActive" and c["status"] == "True" for c in
                         kube.get("hpa", name, "-n", namespace).get("status", {}).get("conditions", [])),
             90, "the example HPA reading desired_workers")
    with Client(f"tcp://{ip}:8786", timeout=30) as client:
        client.wait_for_workers(1, timeout=60)
        futures = client.map(lambda i: bytes(1000) + i.to_bytes(4, "big"), range(50), pure=False)
        client.gather(futures)

        kube.kubectl("scale", f"{CLUSTERS}/{name}", "--replicas=2", "-n", namespace)

        def scaled_events() -> list[str]:
            return [e["message"] for e in kube.get("events", "-n", namespace)["items"]
                    if e["involvedObject"]["name"] == name and e["reason"] == "Scaled"]

        wait_for(lambda: any("created 1 worker pods" in m for m in scaled_events()), 30,
                 "the operator creating the second worker")
        wait_for(lambda: replicas(kube, namespace, name) == 1 and [
            p["metadata"]["name"] for p in kube.pods(namespace, f"dask.charmtx.com/cluster={name},"
                                                                 "dask.charmtx.com/role=worker")]
                 == [f"{name}-worker-0"], 60, "the HPA's 1 worker, the first one, left")
        # whichever of the three safe ways applied at that moment: not yet Ready,
        # not yet registered, or retired by the scheduler
        removed = [m for m in scaled_events() if "(desired 1)" in m and ("deleted 1 worker pods" in m
                                                                         or "retired 1 workers" in m)]
        assert removed, scaled_events()
        blocked = [e for e in kube.get("events", "-n", namespace)["items"] if e["reason"] == "ScaleDownBlocked"]
        assert not blocked, [e["message"] for e in blocked]
        cond = next(c for c in kube.get(CLUSTERS, name, "-n", namespace)["status"]["conditions"]
                    if c["type"] == "ScaleDownBlocked")
        assert cond["status"] == "False"
        assert [int.from_bytes(r[-4:], "big") for r in client.gather(futures)] == list(range(50))
