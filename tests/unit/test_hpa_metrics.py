"""Replica proposals per metric and combined, worded after the HPA documentation.

"desiredReplicas = ceil[currentReplicas * ( currentMetricValue / desiredMetricValue )]":
each row states the documented rule it checks and the arithmetic by hand.
Values are milli-units (``milli("200m") == 200``).
"""

from __future__ import annotations

import pytest

from dask_operator.core.hpa_inputs import ControllerConfig, MetricSample, Pod, PodSample, Tolerances
from dask_operator.core.hpa_metrics import MetricResult, combine, propose
from dask_operator.core.hpa_quantity import milli
from dask_operator.core.hpa_spec import MetricTarget

NOW = 1000.0
PODS_100M = MetricTarget("Pods", "x", "AverageValue", milli("100m"))
CPU_50 = MetricTarget("Resource", "cpu", "Utilization", 50)
MEMORY_50 = MetricTarget("Resource", "memory", "Utilization", 50)
CPU_RAW = MetricTarget("Resource", "cpu", "AverageValue", milli("500m"))
OBJECT_10K = MetricTarget("Object", "requests-per-second", "Value", milli("10k"), "", "Ingress", "main-route")
OBJECT_AVG_1 = MetricTarget("Object", "desired_workers", "AverageValue", milli(1), "", "Cluster", "dask")
EXTERNAL_10 = MetricTarget("External", "queue", "Value", milli(10))
EXTERNAL_AVG_30 = MetricTarget("External", "queue_messages_ready", "AverageValue", milli(30))


def ready(*names: str, **requests: int) -> list[Pod]:
    return [Pod(n, requests=requests) for n in names]


def values(**per_pod) -> MetricSample:
    return MetricSample(pods=per_pod)


def run(metric, sample, pods, current=None, status=None, tol=Tolerances(), now=NOW):
    current = len(pods) if current is None else current
    return propose(metric, sample, pods, current, current if status is None else status, tol, now,
                   ControllerConfig())


ABC = ready("a", "b", "c")


@pytest.mark.parametrize(
    "metric, sample, pods, current, expected",
    [
        # "if the current metric value is 200m, and the desired value is 100m, the number of replicas
        # will be doubled, since 200.0 / 100.0 == 2.0"
        pytest.param(PODS_100M, values(a=200, b=200, c=200), ABC, 3, 6, id="doc-200m-of-100m-doubles"),
        # "If the current value is instead 50m, you'll halve the number of replicas, since 50.0 / 100.0 == 0.5"
        pytest.param(PODS_100M, values(a=50, b=50, c=50, d=50), ready("a", "b", "c", "d"), 4, 2,
                     id="doc-50m-of-100m-halves"),
        # "The control plane skips any scaling action if the ratio is sufficiently close to 1.0
        # (within a configurable tolerance, 0.1 by default)"
        pytest.param(PODS_100M, values(a=109, b=109, c=109, d=109), ready("a", "b", "c", "d"), 4, 4,
                     id="doc-ratio-1.09-within-tolerance"),
        pytest.param(PODS_100M, values(a=110, b=110, c=110, d=110), ready("a", "b", "c", "d"), 4, 4,
                     id="ratio-1.10-is-still-within"),
        pytest.param(PODS_100M, values(a=111, b=111, c=111, d=111), ready("a", "b", "c", "d"), 4, 5,
                     id="ratio-1.11-scales-ceil-4.44"),
        pytest.param(PODS_100M, values(a=90, b=90, c=90, d=90), ready("a", "b", "c", "d"), 4, 4,
                     id="ratio-0.90-within"),
        pytest.param(PODS_100M, values(a=89, b=89, c=89, d=89), ready("a", "b", "c", "d"), 4, 4,
                     id="ratio-0.89-ceil-3.56"),
        pytest.param(PODS_100M, values(a=60, b=60, c=60, d=60), ready("a", "b", "c", "d"), 4, 3,
                     id="ratio-0.6-ceil-2.4"),
        # the average is an integer division: (100 + 100 + 101) / 3 = 100 (not 100.33)
        pytest.param(PODS_100M, values(a=100, b=100, c=101), ABC, 3, 3, id="average-truncated"),
        # "the currentMetricValue is computed by taking the average of the given metric across all Pods"
        pytest.param(PODS_100M, values(a=0, b=300, c=300), ABC, 3, 6, id="average-over-pods-ceil-3x2"),
        # Utilization: 2 pods requesting 500m each use 500m each: 100 % of request, target 50 %: ratio 2
        pytest.param(CPU_50, values(a=500, b=500), ready("a", "b", cpu=500), 2, 4, id="cpu-utilization-doubles"),
        # utilization is a whole percentage (truncated): 1000m of 3000m is 33 %, 33 / 11 = 3.0 -> 3 (not 4)
        pytest.param(MetricTarget("Resource", "memory", "Utilization", 11), values(a=1000),
                     ready("a", memory=3000), 1, 3, id="utilization-truncated-to-whole-percent"),
        # AverageValue on a resource compares the raw average: 1 cpu against 500m
        pytest.param(CPU_RAW, values(a=1000, b=1000), ready("a", "b"), 2, 4, id="cpu-average-value"),
        # Object Value: ratio 25k / 10k = 2.5, times the 4 ready pods
        pytest.param(OBJECT_10K, MetricSample(value=milli("25k")), ready("a", "b", "c", "d"), 4, 10,
                     id="object-value-times-ready-pods"),
        pytest.param(OBJECT_10K, MetricSample(value=milli("10.5k")), ready("a", "b", "c", "d"), 4, 4,
                     id="object-value-within-tolerance"),
        # Object AverageValue: the value is divided by the replicas: 30 / (1 x 4) = 7.5 -> ceil(30 / 1) = 30
        pytest.param(OBJECT_AVG_1, MetricSample(value=milli(30)), ready("a", "b", "c", "d"), 4, 30,
                     id="object-average-value"),
        pytest.param(OBJECT_AVG_1, MetricSample(value=milli("4.3")), ready("a", "b", "c", "d"), 4, 4,
                     id="object-average-value-within-tolerance"),
        # External Value sums every series the selector matches: (10 + 20) / 10 = 3, times 2 ready pods
        pytest.param(EXTERNAL_10, MetricSample(series=(milli(10), milli(20))), ready("a", "b"), 2, 6,
                     id="external-value-sums-series"),
        # External AverageValue (the doc's queue_messages_ready, averageValue 30): 95 messages -> ceil(95/30)
        pytest.param(EXTERNAL_AVG_30, MetricSample(series=(milli(95),)), ready("a", "b"), 2, 4,
                     id="external-average-value"),
    ],
)
def test_usage_ratio(metric, sample, pods, current, expected):
    assert run(metric, sample, pods, current).replicas == expected


@pytest.mark.parametrize(
    "metric, sample, pods, expected",
    [
        # "the control plane ... assuming those pods were consuming 100% of the desired value in case of a
        # scale down": a, b at 20m, c missing: c counts at 100m; (20 + 20 + 100) / 3 = 46 -> ceil(0.46 x 3) = 2
        pytest.param(PODS_100M, values(a=20, b=20), ABC, 2, id="doc-missing-counts-at-target-on-scale-down"),
        # Utilization: a missing pod counts at 100 % of its request: 100m + 1000m of 2000m = 55 % of 50 %
        # is within tolerance -> no change (without the rule: ceil(0.2 x 1) = 1)
        pytest.param(CPU_50, values(a=100), ready("a", "b", cpu=1000), 2, id="missing-counts-at-full-request"),
        # ...or at the target when it is above 100 %: target 200 %: (100 + 2000) / 2000 = 105 %, ratio 0.525
        pytest.param(MetricTarget("Resource", "memory", "Utilization", 200), values(a=100),
                     ready("a", "b", memory=1000), 2, id="missing-counts-at-target-above-100-percent"),
        # "and 0% in case of a scale up": a, b at 150m, c missing counts 0: average 100m: within tolerance
        pytest.param(PODS_100M, values(a=150, b=150), ABC, 3, id="doc-missing-counts-zero-on-scale-up"),
        # a, b at 300m, c missing: (300 + 300 + 0) / 3 = 200 -> ceil(2 x 3) = 6
        pytest.param(PODS_100M, values(a=300, b=300), ABC, 6, id="missing-zero-then-scale-up"),
        # "if any pod has yet to become ready ... that pod is set aside": on a scale-up unready pods count 0
        # and "if the new ratio reverses the scale direction ... the controller doesn't take any scaling
        # action": a at 150m, b and c Pending: 150 / 3 = 50m, ratio 0.5 reverses: keep 3 (not ceil(1.5) = 2)
        pytest.param(PODS_100M, values(a=150), [Pod("a"), Pod("b", phase="Pending", ready=False),
                                                 Pod("c", phase="Pending", ready=False)], 3,
                     id="doc-unready-never-turn-a-scale-up-into-a-scale-down"),
        # on a scale-down unready pods are simply set aside: a at 50m, b Pending -> ceil(0.5 x 1) = 1
        pytest.param(PODS_100M, values(a=50), [Pod("a"), Pod("b", phase="Pending", ready=False)], 1,
                     id="unready-set-aside-on-scale-down"),
        # "All Pods with a deletion timestamp set ... and all failed Pods are discarded"
        pytest.param(PODS_100M, values(a=200, b=5000, c=5000),
                     [Pod("a"), Pod("b", phase="Failed"), Pod("c", deleting=True)], 2,
                     id="doc-failed-and-deleting-discarded"),
        # a value for a pod that is not the target's counts in the average (the controller keeps it)
        pytest.param(PODS_100M, values(a=200, z=400), ready("a"), 3, id="value-of-unknown-pod-counted"),
    ],
)
def test_missing_and_unready_pods(metric, sample, pods, expected):
    assert run(metric, sample, pods).replicas == expected


def cpu_pod(name, started, ready=True, ready_since=None):
    return Pod(name, started=started, ready=ready, ready_since=started if ready_since is None else ready_since,
               requests={"cpu": 1000})


@pytest.mark.parametrize(
    "pod, sample, unready",
    [
        pytest.param(cpu_pod("a", started=0), PodSample(2000), False, id="long-running-ready"),
        pytest.param(Pod("a", ready=None, requests={"cpu": 1000}), PodSample(2000), True, id="no-ready-condition"),
        pytest.param(Pod("a", started=None, requests={"cpu": 1000}), PodSample(2000), True, id="not-started"),
        # within the CPU initialization period (300 s): not Ready -> set aside
        pytest.param(cpu_pod("a", started=NOW - 60, ready=False), PodSample(2000), True, id="initializing-unready"),
        # ...Ready, but the sample's window started before it became Ready -> set aside
        pytest.param(cpu_pod("a", started=NOW - 60, ready_since=NOW - 20), PodSample(2000, NOW - 5, 30), True,
                     id="initializing-sample-predates-readiness"),
        pytest.param(cpu_pod("a", started=NOW - 60, ready_since=NOW - 50), PodSample(2000, NOW - 5, 30), False,
                     id="initializing-sample-after-readiness"),
        # after the period: not Ready and never Ready since start (transition within 30 s) -> set aside
        pytest.param(cpu_pod("a", started=0, ready=False, ready_since=10), PodSample(2000), True,
                     id="never-became-ready"),
        # ...not Ready but was Ready once (transition later than 30 s after start) -> counted
        pytest.param(cpu_pod("a", started=0, ready=False, ready_since=500), PodSample(2000), False,
                     id="became-unready-later-counted"),
    ],
)
def test_cpu_readiness_rules(pod, sample, unready):
    """Only for cpu: a set-aside pod on a scale-up counts 0, so the proposal stays at the current count."""
    busy = cpu_pod("b", started=0)
    result = run(CPU_50, values(a=sample, b=PodSample(2000)), [pod, busy], current=2)
    # b alone: 200 % of 50 % -> ratio 4; with a counted too: ceil(4 x 2) = 8; with a set aside at 0:
    # (2000 + 0) / 2000 = 100 % -> ratio 2 -> ceil(2 x 2) = 4
    assert result.replicas == (4 if unready else 8)


def test_readiness_rules_apply_to_cpu_only():
    pods = [Pod("a", ready=None, requests={"memory": 1000}), Pod("b", requests={"memory": 1000})]
    assert run(MEMORY_50, values(a=1000, b=1000), pods).replicas == 4


@pytest.mark.parametrize(
    "metric, sample, pods, current, error",
    [
        pytest.param(PODS_100M, None, ABC, 3, "the metrics API returned nothing", id="no-sample"),
        pytest.param(PODS_100M, MetricSample(), ABC, 3, "no metrics returned", id="empty-sample"),
        pytest.param(PODS_100M, values(a=100), [], 3, "no pods returned by selector", id="no-pods"),
        pytest.param(PODS_100M, values(a=100), [Pod("a", phase="Pending", ready=False)], 1,
                     "pods might be unready", id="only-unready-pods"),
        pytest.param(CPU_50, values(a=100), ready("a"), 1, "missing request for cpu in Pod a", id="no-request"),
        pytest.param(CPU_50, values(z=100), ready("a", cpu=1000), 1, "no metrics returned matched known pods",
                     id="no-known-pod"),
        pytest.param(OBJECT_10K, MetricSample(), ABC, 3, "no value for object", id="object-without-value"),
        pytest.param(EXTERNAL_10, MetricSample(), ABC, 3, "no metrics returned from external", id="no-series"),
        pytest.param(OBJECT_10K, MetricSample(value=milli("50k")), [], 3, "unable to calculate ready pods",
                     id="object-no-pods"),
    ],
)
def test_unusable_values_fail_with_the_metrics_reason(metric, sample, pods, current, error):
    result = run(metric, sample, pods, current)
    assert result.failed and result.replicas is None
    assert error in result.error
    assert result.reason == {"Pods": "FailedGetPodsMetric", "Resource": "FailedGetResourceMetric",
                             "Object": "FailedGetObjectMetric", "External": "FailedGetExternalMetric"}[metric.type]


@pytest.mark.parametrize(
    "metric, sample, expected",
    [
        # "Scale to zero or n pods depending on usageRatio": from 0 replicas ceil(ratio), tolerance aside
        pytest.param(OBJECT_10K, MetricSample(value=milli("25k")), 3, id="object-from-zero"),
        pytest.param(EXTERNAL_10, MetricSample(series=(milli(10),)), 1, id="external-from-zero-ratio-1"),
        pytest.param(EXTERNAL_10, MetricSample(series=(0,)), 0, id="external-idle-stays-at-zero"),
    ],
)
def test_from_zero_replicas(metric, sample, expected):
    assert run(metric, sample, [], current=0).replicas == expected


def test_object_value_multiplies_running_and_ready_pods_only():
    pods = [Pod("a"), Pod("b", ready=False), Pod("c", phase="Pending", ready=False)]
    assert run(OBJECT_10K, MetricSample(value=milli("30k")), pods, current=3).replicas == 3  # ceil(3.0 x 1)


def test_average_value_per_replica_uses_status_replicas():
    """AverageValue divides by the scale's status.replicas (pods that exist), not spec.replicas."""
    result = run(OBJECT_AVG_1, MetricSample(value=milli(6)), ready("a", "b"), current=4, status=2)
    assert (result.replicas, result.current) == (6, milli(3))


def test_per_direction_tolerance():
    """behavior.scaleUp.tolerance / scaleDown.tolerance: 1 - down <= ratio <= 1 + up changes nothing."""
    sample = values(a=104, b=104)
    assert run(PODS_100M, sample, ready("a", "b"), tol=Tolerances(down=0.1, up=0.05)).replicas == 2
    assert run(PODS_100M, sample, ready("a", "b"), tol=Tolerances(down=0.1, up=0.01)).replicas == 3


@pytest.mark.parametrize(
    "metric, sample, pods, current",
    [
        pytest.param(CPU_50, values(a=800, b=600), ready("a", "b", cpu=1000), 70, id="utilization-percent"),
        pytest.param(PODS_100M, values(a=150, b=100), ready("a", "b"), 125, id="average-milli"),
        pytest.param(OBJECT_AVG_1, MetricSample(value=milli(5)), ready("a", "b"), milli("2.5"), id="per-replica"),
    ],
)
def test_current_value_is_what_status_reports(metric, sample, pods, current):
    assert run(metric, sample, pods).current == current


# ---------------------------------------------------------------- several metrics


def ok(metric, replicas) -> MetricResult:
    return MetricResult(metric, replicas)


def failed(metric) -> MetricResult:
    return MetricResult(metric, None, None, "boom")


@pytest.mark.parametrize(
    "results, current, replicas, reason",
    [
        # "the HPA controller ... will choose the largest" of the proposals
        pytest.param([ok(CPU_50, 3), ok(PODS_100M, 5)], 4, 5, "ValidMetricFound", id="doc-largest-wins"),
        pytest.param([ok(CPU_50, 2), ok(PODS_100M, 1)], 4, 2, "ValidMetricFound", id="largest-of-scale-downs"),
        # "If any of these metrics cannot be converted into a desired replica count ... and a scale down is
        # suggested by the metrics which can be fetched, scaling is skipped."
        pytest.param([failed(CPU_50), ok(PODS_100M, 2)], 4, None, "FailedGetResourceMetric",
                     id="doc-no-scale-down-on-partial-data"),
        # "This means that the HPA is still capable of scaling up if one or more metrics give a
        # desiredReplicas greater than the current value."
        pytest.param([failed(CPU_50), ok(PODS_100M, 6)], 4, 6, "ValidMetricFound", id="doc-scale-up-on-partial"),
        pytest.param([ok(PODS_100M, 4), failed(OBJECT_10K)], 4, 4, "ValidMetricFound", id="partial-at-current"),
        pytest.param([failed(OBJECT_10K), failed(CPU_50)], 4, None, "FailedGetObjectMetric",
                     id="all-missing-first-reason"),
    ],
)
def test_combine(results, current, replicas, reason):
    proposal = combine(results, current)
    assert (proposal.replicas, proposal.reason) == (replicas, reason)
    if replicas is None:
        assert proposal.message.startswith(f"invalid metrics ({sum(r.failed for r in results)} invalid out of "
                                           f"{len(results)}), first error is: boom")
    else:
        assert proposal.metric == max((r for r in results if not r.failed), key=lambda r: r.replicas).metric.description
