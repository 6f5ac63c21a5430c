"""spec.autoscaling on the sandbox: the operator's own autoscaler, no Prometheus, no HPA.

Real Dask workers under the pod runner; the scheduler's adaptive target rises
with a burst of tasks, the operator (deploy/'s pod) scales the Cluster up
through /scale, and once the work is done it scales down after the
scale-down window, retiring workers through the scheduler, so every result
held in memory survives.
"""

from __future__ import annotations

import time

import pytest
from test_operator import client_for, cluster, status

from helpers import Kube, OperatorPod, wait_for

from dask_operator import constants as c

pytestmark = pytest.mark.e2e

WINDOW = 20  # seconds: the scale-down stabilization window under test


def autoscaled(name: str, simulate_workers: bool = False) -> dict:
    body = cluster(name, 1, simulate_workers=simulate_workers)
    body["spec"]["autoscaling"] = {
        "minReplicas": 1, "maxReplicas": 4,
        "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
                     "scaleDown": {"stabilizationWindowSeconds": WINDOW,
                                   "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}},
    }
    return body


def spec_replicas(kube: Kube, ns: str, name: str) -> int:
    return kube.get("clusters.dask.charmtx.com", name, "-n", ns)["spec"]["workers"]["replicas"]


def test_spec_autoscaling_grows_under_a_burst_and_shrinks_after_its_window(
        kube: Kube, sandbox, operator: OperatorPod, namespace: str) -> None:
    kube.apply(autoscaled("auto"), namespace)
    with client_for(kube, namespace, "auto") as client:
        client.wait_for_workers(1, timeout=90)
        # a lambda travels by value (a function of this module would not import on the workers)
        futures = client.map(lambda i: (__import__("time").sleep(1.0), bytes(10_000) + i.to_bytes(4, "big"))[1],
                             range(80), pure=False)
        try:
            wait_for(lambda: spec_replicas(kube, namespace, "auto") > 1, 90, "the autoscaler to grow the Cluster")
        except AssertionError as e:
            raise AssertionError(f"{e}; status: {status(kube, namespace, 'auto')}") from None
        grown = status(kube, namespace, "auto")["autoscaling"]
        assert grown["replicas"] > 1 and grown["desiredWorkers"] > 1, grown
        results = client.gather(futures)
        assert [int.from_bytes(r[-4:], "big") for r in results] == list(range(80))
        peak = max(spec_replicas(kube, namespace, "auto"), grown["replicas"])
        done = time.monotonic()

        wait_for(lambda: spec_replicas(kube, namespace, "auto") == 1
                 and status(kube, namespace, "auto").get("workers", {}).get("count") == 1, 240,
                 "the Cluster to shrink back to minReplicas")
        assert time.monotonic() - done >= WINDOW, "not before the scale-down window"
        final = status(kube, namespace, "auto")
        cond = next(x for x in final["conditions"] if x["type"] == c.COND_AUTOSCALING)
        assert cond["status"] == "True", cond
        assert final["autoscaling"]["lastScaleTime"] and final["autoscaling"]["replicas"] == 1

        results = client.gather(futures)  # held in memory throughout; none recomputed or lost
        assert [int.from_bytes(r[-4:], "big") for r in results] == list(range(80))
        events = [e for _, e in client.get_events("all")]
        lost = [e for e in events if e.get("action") == "remove-worker"
                and (e.get("lost-computed-tasks") or e.get("lost-scattered-tasks"))]
        assert not lost, f"workers left with data: {lost}"
        retired = [a for e in events if e.get("action") == "retire-workers" for a in e["retired"]]
        assert len(retired) >= peak - 1, "every worker removed was retired by the scheduler first"


def test_an_hpa_on_the_cluster_wins_over_spec_autoscaling(
        kube: Kube, operator: OperatorPod, namespace: str) -> None:
    kube.apply(autoscaled("both", simulate_workers=True), namespace)
    kube.apply({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "theirs"},
                "spec": {"scaleTargetRef": {"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "both"},
                         "minReplicas": 1, "maxReplicas": 2,
                         "metrics": [{"type": "Object", "object": {
                             "describedObject": {"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "both"},
                             "metric": {"name": "dask_operator_cluster_desired_workers"},
                             "target": {"type": "Value", "value": "1"}}}]}}, namespace)

    def conflict() -> dict | None:
        conds = status(kube, namespace, "both").get("conditions", [])
        return next((x for x in conds if x["type"] == c.COND_AUTOSCALING and x["reason"] == "HPAConflict"), None)

    cond = wait_for(conflict, 90, "the Autoscaling condition to name the HPA")
    assert cond["status"] == "False" and "theirs" in cond["message"]


@pytest.mark.parametrize("autoscaling, message", [
    pytest.param({"minReplicas": 3, "maxReplicas": 2}, "minReplicas must not exceed maxReplicas", id="min-above-max"),
    pytest.param({"minReplicas": 1}, "maxReplicas: Required value", id="no-max"),
    pytest.param({"maxReplicas": 2, "behavior": {"scaleDown": {"selectPolicy": "Most"}}},
                 'Unsupported value: "Most"', id="bad-select-policy"),
])
def test_invalid_autoscaling_is_rejected_by_the_api_server(kube: Kube, namespace: str, autoscaling: dict,
                                                           message: str) -> None:
    body = cluster("bad", 1, simulate_workers=True)
    body["spec"]["autoscaling"] = autoscaling
    import yaml

    result = kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert kube.kubectl("get", "clusters.dask.charmtx.com", "bad", "-n", namespace, check=False).returncode != 0
