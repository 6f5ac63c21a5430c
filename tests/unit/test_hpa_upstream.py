"""The Kubernetes controller's own test tables, replayed against the engine.

Rows of ``replica_calculator_test.go`` (TestReplicaCalc*) and
``horizontal_test.go`` (TestScalingWithRules, TestNormalizeDesiredReplicas*,
TestStoreScaleEvents) of kubernetes/kubernetes, with the controller's
expected values; only the inputs are translated. As in those tests: each pod
has two containers, so a pod's request and usage are twice the listed value
(``makePodMetricLevels``); a "hot" pod started now and a "cool" one 3 min
ago; metric samples are stamped at the zero time with a 1 min window; the
CPU initialization period is 2 min and the readiness delay 10 s; pods with no
start time set in the Go test start at the zero time.
Rows for ContainerResource metrics are left out (not supported here).
"""

from __future__ import annotations

import pytest

from dask_operator.core import hpa_behavior as hb
from dask_operator.core.hpa_behavior import Recommendation as Rec
from dask_operator.core.hpa_behavior import ScaleEvent as Ev
from dask_operator.core.hpa_inputs import ControllerConfig, MetricSample, Pod, PodSample, Tolerances
from dask_operator.core.hpa_metrics import propose
from dask_operator.core.hpa_quantity import milli
from dask_operator.core.hpa_spec import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    MetricTarget,
    ScalingPolicy,
    ScalingRules,
)

NOW = 1_000_000.0
ZERO = -1e11  # Go's zero time: long before anything
HOT, COOL = NOW, NOW - 180
TESTING = ControllerConfig(tolerance=0.1, cpu_initialization_period=120, initial_readiness_delay=10)
T, F = True, False


def pods(count, readiness=None, start=None, phase=None, deleting=None, requests=(), resource="cpu"):
    count = max(count, len(phase or ()))
    return [Pod(f"test-pod-{i}", phase=phase[i] if phase else "Running",
                ready=readiness[i] if readiness and i < len(readiness) else True,
                deleting=bool(deleting and deleting[i]), started=start[i] if start else ZERO, ready_since=ZERO,
                requests={resource: 2 * milli(requests[i])} if i < len(requests) else {})
            for i in range(count)]


def resource_case(current, expected, levels, target, *, requests=None, names=(), **pod_options):
    requests = ["1.0"] * max(current, len(pod_options.get("phase") or ())) if requests is None else requests
    sample = MetricSample(pods={(names[i] if i < len(names) else f"test-pod-{i}"): PodSample(2 * level, ZERO, 60)
                                for i, level in enumerate(levels)})
    return (MetricTarget("Resource", "cpu", "Utilization", target), sample,
            pods(current, requests=requests, **pod_options), current, expected)


def pods_case(current, expected, levels, target, **pod_options):
    sample = MetricSample(pods={f"test-pod-{i}": PodSample(level, ZERO, 60) for i, level in enumerate(levels)})
    return MetricTarget("Pods", "qps", "AverageValue", target), sample, pods(current, **pod_options), current, expected


def object_case(current, expected, value, target, average=False, **pod_options):
    metric = MetricTarget("Object", "qps", "AverageValue" if average else "Value", target, "", "Deployment", "d")
    return metric, MetricSample(value=value), pods(current, **pod_options), current, expected


def external_case(current, expected, value, target, average=False, **pod_options):
    metric = MetricTarget("External", "qps", "AverageValue" if average else "Value", target)
    return metric, MetricSample(series=(value,)), pods(current, **pod_options), current, expected


@pytest.mark.parametrize(
    "metric, sample, target_pods, current, expected",
    [
        pytest.param(*resource_case(3, 5, [300, 500, 700], 30), id="ScaleUp"),
        pytest.param(*resource_case(3, 4, [300, 500, 700], 30, readiness=[F, T, T]), id="ScaleUpUnreadyLessScale"),
        pytest.param(*resource_case(3, 4, [300, 500, 700], 30, start=[HOT, COOL, COOL]), id="ScaleUpHotCpuLessScale"),
        pytest.param(*resource_case(3, 3, [400, 500, 700], 30, readiness=[T, F, F]), id="ScaleUpUnreadyNoScale"),
        pytest.param(*resource_case(3, 3, [400, 500, 700], 30, readiness=[T, F, F], start=[COOL, HOT, HOT]),
                     id="ScaleHotCpuNoScale"),
        pytest.param(*resource_case(2, 4, [500, 700], 30, readiness=[T, T, F, F],
                                    phase=["Running", "Running", "Failed", "Failed"]), id="ScaleUpIgnoresFailedPods"),
        pytest.param(*resource_case(2, 4, [500, 700], 30, readiness=[T, T, F, F], phase=["Running"] * 4,
                                    deleting=[F, F, T, T]), id="ScaleUpIgnoresDeletionPods"),
        pytest.param(*resource_case(5, 3, [100, 300, 500, 250, 250], 50), id="ScaleDown"),
        pytest.param(*resource_case(5, 2, [100, 300, 500, 250, 250], 50, readiness=[T, T, T, F, F]),
                     id="ScaleDownExcludeUnreadyPods"),
        pytest.param(*resource_case(5, 1, [100], 50, readiness=[T, F, F, F, F],
                                    phase=["Running"] + ["Pending"] * 4), id="ScaleDownExcludeUnscheduledPods"),
        pytest.param(*resource_case(5, 2, [100, 300, 500, 250, 250], 50, start=[COOL, COOL, COOL, HOT, HOT]),
                     id="ScaleDownIgnoreHotCpuPods"),
        pytest.param(*resource_case(5, 3, [100, 300, 500, 250, 250], 50, readiness=[T] * 5 + [F, F],
                                    phase=["Running"] * 5 + ["Failed"] * 2), id="ScaleDownIgnoresFailedPods"),
        pytest.param(*resource_case(5, 3, [100, 300, 500, 250, 250], 50, readiness=[T] * 5 + [F, F],
                                    phase=["Running"] * 7, deleting=[F] * 5 + [T, T]),
                     id="ScaleDownIgnoresDeletionPods"),
        pytest.param(*resource_case(3, 3, [1010, 1030, 1020], 100, requests=["0.9", "1.0", "1.1"]), id="Tolerance"),
        pytest.param(*resource_case(4, 24, [4000, 9500, 3000, 7000, 3200, 2000], 100), id="SuperfluousMetrics"),
        pytest.param(*resource_case(4, 3, [400, 95], 100), id="MissingMetrics"),
        pytest.param(*resource_case(2, 2, [1000], 100), id="MissingMetricsNoChangeEq"),
        pytest.param(*resource_case(2, 2, [1900], 100), id="MissingMetricsNoChangeGt"),
        pytest.param(*resource_case(2, 2, [600], 100), id="MissingMetricsNoChangeLt"),
        pytest.param(*resource_case(3, 3, [100, 450], 50, readiness=[F, T, T]), id="MissingMetricsUnreadyChange"),
        pytest.param(*resource_case(3, 3, [100, 450], 50, start=[HOT, COOL, COOL]), id="MissingMetricsHotCpuNoChange"),
        pytest.param(*resource_case(3, 4, [100, 2000], 50, readiness=[F, T, T]), id="MissingMetricsUnreadyScaleUp"),
        pytest.param(*resource_case(3, 4, [100, 2000], 50, readiness=[F, T, T], start=[HOT, COOL, COOL]),
                     id="MissingMetricsHotCpuScaleUp"),
        pytest.param(*resource_case(4, 3, [100, 100, 100], 50, readiness=[F, T, T, T]),
                     id="MissingMetricsUnreadyScaleDown"),
        pytest.param(*resource_case(4, 2, [200, 100, 100], 300, readiness=[F, T, T, T],
                                    requests=["1.0", "1.0", "2.0", "2.0"]), id="MissingMetricsScaleDownTargetOver100"),
        pytest.param(*resource_case(2, 2, [100, 100], 50, phase=["Running"] * 3), id="DuringRollingUpdateWithMaxSurge"),
        pytest.param(*pods_case(3, 4, [20000, 10000, 30000], 15000), id="ScaleUpCM"),
        pytest.param(*pods_case(3, 6, [50000, 10000, 30000], 15000, readiness=[T, T, F], start=[COOL, COOL, HOT]),
                     id="ScaleUpCMUnreadyHotCpuNoLessScale"),
        pytest.param(*pods_case(3, 7, [50000, 15000, 30000], 15000, readiness=[F, T, F], start=[HOT, COOL, HOT]),
                     id="ScaleUpCMUnreadyHotCpuScaleWouldScaleDown"),
        pytest.param(*pods_case(1, 2, [8600], 4400), id="ScaleUpCMExternal-pods"),
        pytest.param(*pods_case(5, 3, [12000] * 5, 20000), id="ScaleDownCM"),
        pytest.param(*pods_case(3, 3, [20000, 21000, 21000], 20000), id="ToleranceCM"),
        pytest.param(*pods_case(5, 5, [20000, 19000, 21000], 20000), id="PlainMetricMissingMetricsNoChangeEq"),
        pytest.param(*pods_case(2, 2, [10000, 10000], 17000, phase=["Running"] * 3),
                     id="DuringRollingUpdateWithMaxSurgeCM"),
        pytest.param(*object_case(3, 4, 20000, 15000), id="ScaleUpCMObject"),
        pytest.param(*object_case(3, 4, 20000, 5000, average=True), id="ScaleUpCMPerPodObject"),
        pytest.param(*object_case(3, 5, 50000, 10000, readiness=[F, T, F]), id="ScaleUpCMObjectIgnoresUnreadyPods"),
        pytest.param(*object_case(5, 3, 6000, 2000, average=True), id="ScaleDownPerPodCMObject"),
        pytest.param(*object_case(5, 3, 12000, 20000), id="ScaleDownCMObject"),
        pytest.param(*object_case(3, 3, 20666, 20000), id="ToleranceCMObject"),
        pytest.param(*object_case(4, 4, 20166, 5000, average=True), id="TolerancePerPodCMObject"),
        pytest.param(*external_case(3, 2, 8600, 4400, readiness=[F, T, F]), id="ScaleUpCMExternalIgnoresUnreadyPods"),
        pytest.param(*external_case(3, 4, 8600, 2150, average=True), id="ScaleUpPerPodCMExternal"),
        pytest.param(*external_case(5, 3, 8600, 14334), id="ScaleDownCMExternal"),
        pytest.param(*external_case(5, 3, 8600, 2867, average=True), id="ScaleDownPerPodCMExternal"),
        pytest.param(*external_case(3, 3, 8600, 8888), id="ToleranceCMExternal"),
        pytest.param(*external_case(3, 3, 8600, 2900, average=True), id="TolerancePerPodCMExternal"),
    ],
)
def test_replica_calculator_table(metric, sample, target_pods, current, expected):
    result = propose(metric, sample, target_pods, current, current, Tolerances(), NOW, TESTING)
    assert result.replicas == expected, result.error


@pytest.mark.parametrize(
    "case, current, utilization",
    [
        pytest.param(resource_case(3, 5, [300, 500, 700], 30), 3, 50, id="ScaleUp"),
        pytest.param(resource_case(5, 3, [100, 300, 500, 250, 250], 50), 5, 28, id="ScaleDown"),
        pytest.param(resource_case(4, 24, [4000, 9500, 3000, 7000, 3200, 2000], 100), 4, 587, id="Superfluous"),
        pytest.param(resource_case(4, 2, [200, 100, 100], 300, readiness=[F, T, T, T],
                                   requests=["1.0", "1.0", "2.0", "2.0"]), 4, 6, id="TargetOver100"),
        pytest.param(object_case(3, 4, 20000, 5000, average=True), 3, 6667, id="PerPodObject-usage"),
        pytest.param(external_case(5, 3, 8600, 2867, average=True), 5, 1720, id="PerPodExternal-usage"),
        pytest.param(pods_case(3, 7, [50000, 15000, 30000], 15000), 3, 31666, id="CM-usage"),
    ],
)
def test_replica_calculator_reported_values(case, current, utilization):
    metric, sample, target_pods, _, _ = case
    assert propose(metric, sample, target_pods, current, current, Tolerances(), NOW, TESTING).current == utilization


@pytest.mark.parametrize(
    "case, error",
    [
        pytest.param(resource_case(4, None, [], 100, requests=["1.0"] * 3), "no metrics returned", id="EmptyMetrics"),
        pytest.param(resource_case(1, None, [200], 100, requests=[]), "missing request for", id="EmptyCPURequest"),
        pytest.param(resource_case(1, None, [100], 100, names=["an-older-pod-name"]),
                     "no metrics returned matched known pods", id="DisjointResourcesMetrics"),
    ],
)
def test_replica_calculator_errors(case, error):
    metric, sample, target_pods, current, _ = case
    result = propose(metric, sample, target_pods, current, current, Tolerances(), NOW, TESTING)
    assert result.failed and error in result.error


# ---------------------------------------------------------------- horizontal_test.go


def rules(pods=0, pods_period=0, percent=0, percent_period=0, window=0) -> ScalingRules:
    """``generateScalingRules``."""
    policies = ((ScalingPolicy("Pods", pods, pods_period),) if pods else ()) + (
        (ScalingPolicy("Percent", percent, percent_period),) if percent else ())
    return ScalingRules(policies, "Max", window)


def uniform(changes, period) -> tuple[Ev, ...]:
    """``generateEventsUniformDistribution``: each event in the middle of its share of the last ``period`` s."""
    segment = period / len(changes)
    return tuple(Ev(c, NOW - int(period - segment * (i + 1) + segment / 2) - 1e-6) for i, c in enumerate(changes))


@pytest.mark.parametrize(
    "up_events, down_events, minimum, maximum, up, down, current, desired, expected, reason",
    [
        pytest.param((), (), 3, 8, None, None, 5, 7, 7, "DesiredWithinRange", id="within-range"),
        pytest.param((), (), 2, 8, None, None, 3, 1, 2, "TooFewReplicas", id="below-min"),
        pytest.param((), (), 0, 10, None, None, 1, 0, 0, "DesiredWithinRange", id="min-zero"),
        pytest.param((), (), 1, 10, None, None, 20, 1000, 10, "TooManyReplicas", id="max-below-scale-up-limit"),
        pytest.param((), (), 100, 150, None, None, 100, 1000, 150, "TooManyReplicas", id="more-than-max"),
        pytest.param((), (), 1, 2000, rules(0, 0, 1, 60), None, 3, 1000, 4, "ScaleUpLimit", id="user-percent-1"),
        pytest.param((), (), 3, 2000, None, rules(20, 60), 1000, 3, 980, "ScaleDownLimit", id="user-pods-down-20"),
        pytest.param((), (), 1, 1000, None, None, 10, 50, 20, "ScaleUpLimit", id="default-up"),
        pytest.param((), (), 1, 1000, rules(100, 60, 100, 60), None, 10, 500, 110, "ScaleUpLimit",
                     id="pods-larger-than-percent"),
        pytest.param((), (), 1, 1000, rules(2, 60, 100, 60), None, 10, 500, 20, "ScaleUpLimit",
                     id="percent-larger-than-pods"),
        pytest.param((), (), 1, 1000, rules(100, 60), None, 10, 50, 50, "DesiredWithinRange", id="large-pods"),
        pytest.param((), (), 1, 1000, rules(10000, 60), None, 10, 50, 50, "DesiredWithinRange", id="huge-pods"),
        pytest.param((), (), 1, 1000, rules(30, 60), None, 10, 50, 40, "ScaleUpLimit", id="pods-limit"),
        pytest.param((), (), 1, 1000, rules(0, 0, 200, 60), None, 10, 50, 30, "ScaleUpLimit", id="percent-limit"),
        pytest.param((), (), 1, 1000, None, rules(20, 60, 1, 60, 300), 100, 2, 80, "ScaleDownLimit",
                     id="down-percent-vs-pods"),
        pytest.param((), (), 1, 1000, None, rules(2, 60, 1, 60, 300), 100, 2, 98, "ScaleDownLimit",
                     id="down-pods-vs-percent"),
        pytest.param((), (), 1, 1000, None, rules(100, 60, 0, 0, 300), 10, 0, 1, "TooFewReplicas", id="down-to-min"),
        pytest.param((), (), 5, 1000, None, rules(0, 0, 100, 60, 300), 10, 2, 5, "TooFewReplicas",
                     id="down-percent-to-min"),
        pytest.param((), (), 1, 1000, None, rules(5, 60, 0, 0, 300), 10, 2, 5, "ScaleDownLimit", id="down-pods-limit"),
        pytest.param((), (), 1, 1000, None, rules(0, 0, 50, 60, 300), 10, 5, 5, "DesiredWithinRange",
                     id="down-percent-exact"),
        pytest.param(uniform([1, 5, 9], 120), (), 1, 200, rules(300, 60), None, 100, 500, 200, "TooManyReplicas",
                     id="events-large-pods"),
        pytest.param(uniform([1, 5, 9], 120), (), 1, 200, rules(0, 0, 10000, 60), None, 100, 500, 200,
                     "TooManyReplicas", id="events-large-percent"),
        pytest.param(uniform([1, 5, 9], 120), (), 1, 1000, rules(5, 120), None, 100, 500, 100, "ScaleUpLimit",
                     id="events-above-the-rate"),
        pytest.param(uniform([1, 5, 9], 120), (), 1, 1000, rules(150, 120), None, 100, 500, 235, "ScaleUpLimit",
                     id="events-pods"),
        pytest.param(uniform([1, 5, 9], 120), (), 1, 1000, rules(0, 0, 200, 120), None, 100, 500, 255,
                     "ScaleUpLimit", id="events-percent"),
        pytest.param(uniform([4], 120), uniform([2], 120), 1, 1000, rules(0, 0, 300, 300), None, 6, 24, 16,
                     "ScaleUpLimit", id="events-up-and-down"),
        pytest.param((), uniform([1, 5, 9], 120), 1, 1000, None, None, 10, 5, 5, "DesiredWithinRange",
                     id="down-default-with-events"),
        pytest.param((), uniform([1, 5, 9], 120), 1, 1000, None, rules(115, 120, 0, 0, 300), 100, 0, 1,
                     "TooFewReplicas", id="down-events-to-min"),
        pytest.param((), uniform([1, 5, 9], 120), 5, 1000, None, rules(130, 120, 0, 0, 300), 100, 0, 5,
                     "TooFewReplicas", id="down-events-pods-to-min"),
        pytest.param((), uniform([1, 5, 9], 120), 5, 1000, None, rules(0, 0, 100, 120, 300), 100, 2, 5,
                     "TooFewReplicas", id="down-events-percent-to-min"),
        pytest.param((), uniform([1, 5, 9], 120), 1, 1000, None, rules(5, 120, 0, 0, 300), 100, 2, 100,
                     "ScaleDownLimit", id="down-events-pods"),
        pytest.param((), uniform([2, 4, 6], 120), 1, 1000, None, rules(0, 0, 50, 120, 300), 100, 0, 56,
                     "ScaleDownLimit", id="down-events-percent"),
        pytest.param(uniform([2], 120), uniform([4], 120), 1, 1000, None, rules(0, 0, 50, 180), 10, 1, 6,
                     "ScaleDownLimit", id="down-events-up-and-down"),
        pytest.param((), uniform([10, 10, 10], 120), 1, 1000, None, rules(0, 0, 10, 120, 300), 100, 0, 100,
                     "ScaleDownLimit", id="down-events-prevent"),
        pytest.param((), uniform([10, 10, 10], 120), 1, 1000, None, rules(0, 0, 1000, 120, 300), 10, 5, 5,
                     "DesiredWithinRange", id="down-events-allow"),
        pytest.param(uniform([8, 12, 9, 11], 120), (), 1, 1000, rules(1000, 60), None, 100, 200, 200,
                     "DesiredWithinRange", id="outdated-up"),
        pytest.param(uniform([8, 12, 9, 11], 120), (), 1, 1000, rules(1000, 120, 100, 60), None, 100, 200, 200,
                     "DesiredWithinRange", id="not-outdated-two-policies-up"),
        pytest.param(uniform([8, 12, 9, 11], 120), (), 1, 1000, rules(1000, 30, 100, 60), None, 100, 200, 200,
                     "DesiredWithinRange", id="outdated-two-policies-up"),
        pytest.param((), uniform([8, 12, 9, 11], 120), 1, 1000, None, rules(1000, 60, 0, 0, 300), 100, 5, 5,
                     "DesiredWithinRange", id="outdated-down"),
        pytest.param((), uniform([8, 12, 9, 11], 120), 1, 1000, None, rules(1000, 120, 100, 60, 300), 100, 5, 5,
                     "DesiredWithinRange", id="not-outdated-two-policies-down"),
        pytest.param((), uniform([8, 12, 9, 11], 120), 1, 1000, None, rules(1000, 30, 100, 60, 300), 100, 5, 5,
                     "DesiredWithinRange", id="outdated-two-policies-down"),
    ],
)
def test_scaling_with_rules(up_events, down_events, minimum, maximum, up, down, current, desired, expected, reason):
    behavior = Behavior(up or DEFAULT_SCALE_UP, down or DEFAULT_SCALE_DOWN)
    limited = hb.limit(behavior, NOW, current, desired, minimum, maximum, up_events, down_events)
    assert (limited.replicas, limited.reason) == (expected, reason)


def test_scale_down_limit_min_change_policy():
    """TestCalculateScaleDownLimitWithBehaviors: Min picks the policy that removes fewer pods."""
    min_rules = ScalingRules((ScalingPolicy("Pods", 2, 60), ScalingPolicy("Percent", 50, 60)), "Min", 300)
    assert hb.scale_down_limit(min_rules, NOW, 5, (), ()) == 3


@pytest.mark.parametrize(
    "recs, current, desired, up_window, down_window, expected",
    [
        pytest.param([], 100, 5, 0, 0, 5, id="empty-scale-down"),
        pytest.param([Rec(4, NOW - 120), Rec(5, NOW - 60)], 100, 3, 0, 180, 5, id="simple-scale-down"),
        pytest.param([Rec(4, NOW - 120), Rec(5, NOW - 60)], 1, 7, 300, 0, 4, id="simple-scale-up"),
        pytest.param([Rec(1, NOW - 120), Rec(2, NOW - 60)], 100, 3, 300, 0, 3, id="no-scale-down-stabilization"),
        pytest.param([Rec(4, NOW - 120), Rec(5, NOW - 60)], 1, 3, 0, 300, 3, id="no-scale-up-stabilization"),
        pytest.param([Rec(10, NOW - 600), Rec(9, NOW - 540)], 100, 3, 0, 0, 3, id="reuse-down"),
        pytest.param([Rec(10, NOW - 600), Rec(9, NOW - 540)], 1, 100, 0, 0, 100, id="reuse-up"),
        pytest.param([Rec(10, NOW - 600), Rec(4, NOW - 60), Rec(5, NOW - 120), Rec(9, NOW - 540)], 100, 3, 0, 180,
                     5, id="down-with-obsolete"),
        pytest.param([Rec(10, NOW - 6000), Rec(6, NOW - 60), Rec(5, NOW - 120), Rec(9, NOW - 180)], 1, 100, 300, 0,
                     5, id="up-with-obsolete"),
        pytest.param([Rec(2, NOW - 6000), Rec(3, NOW - 180)], 2, 1, 300, 300, 2, id="no-scale-up-when-rec-goes-down"),
        pytest.param([Rec(2, NOW - 6000), Rec(1, NOW - 180)], 2, 3, 300, 300, 2, id="no-scale-down-when-rec-goes-up"),
    ],
)
def test_normalize_desired_replicas_with_behavior(recs, current, desired, up_window, down_window, expected):
    stabilized, _, kept = hb.stabilize(tuple(recs), NOW, current, desired, up_window, down_window)
    assert stabilized == expected
    assert kept[-1] == Rec(desired, NOW)


@pytest.mark.parametrize(
    "recs, desired, expected",
    [
        pytest.param([], 5, 5, id="empty-log"),
        pytest.param([Rec(4, NOW - 120), Rec(5, NOW - 60)], 3, 5, id="stabilize"),
        pytest.param([Rec(1, NOW - 120), Rec(2, NOW - 60)], 3, 3, id="no-stabilize"),
        pytest.param([Rec(10, NOW - 600), Rec(9, NOW - 540)], 3, 3, id="no-stabilize-old"),
        pytest.param([Rec(10, NOW - 600), Rec(4, NOW - 60), Rec(5, NOW - 120), Rec(9, NOW - 540)], 3, 5,
                     id="stabilize-old"),
    ],
)
def test_normalize_desired_replicas_legacy(recs, desired, expected):
    assert hb.stabilize_legacy(tuple(recs), NOW, desired, 300)[0] == expected


@pytest.mark.parametrize(
    "previous, policy_rules, in_last_60s, stored",
    [
        pytest.param((), rules(10, 60, 100, 60), 0, [(5, False)], id="empty-two-policies"),
        pytest.param((Ev(7, NOW - 61),), rules(10, 60, 100, 60), 0, [(5, False)], id="outdated-replaced"),
        pytest.param((Ev(7, NOW - 58),), rules(10, 60, 100, 60), 7, [(7, False), (5, False)], id="actual-kept"),
        pytest.param((Ev(7, NOW - 61), Ev(6, NOW - 59)), rules(10, 60), 6, [(5, False), (6, False)],
                     id="one-of-two-replaced"),
        pytest.param((Ev(8, NOW - 29), Ev(6, NOW - 59), Ev(7, NOW - 61), Ev(9, NOW - 61)), rules(10, 60, 100, 30),
                     14, [(8, False), (6, False), (7, True), (5, False)], id="different-periods"),
        pytest.param((Ev(7, NOW - 58), Ev(6, NOW - 59)), rules(10, 120, 100, 30), 13,
                     [(7, False), (6, False), (5, False)], id="both-actual"),
    ],
)
def test_store_scale_events(previous, policy_rules, in_last_60s, stored):
    assert hb.changed_within(previous, NOW, 60) == in_last_60s
    recorded = hb.record_event(previous, NOW, 5, policy_rules)
    assert [(e.change, e.outdated) for e in recorded] == stored
