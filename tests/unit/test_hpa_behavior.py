"""Stabilization windows and scaling policies, table-driven after the HPA documentation's examples.

The documentation's scale-down example ("Scaling Policies"):

    behavior:
      scaleDown:
        policies:
        - type: Pods
          value: 4
          periodSeconds: 60
        - type: Percent
          value: 10
          periodSeconds: 60

"the second policy will only be used when the number of pod replicas is more
than 40 ... if there are 80 replicas and the target has to be scaled down to
10 replicas then during the first step 8 replicas will be reduced. In the next
iteration when the number of replicas is 72, 10% of the pods is 7.2 but the
number is rounded up to 8."
"""

from __future__ import annotations

import pytest

from dask_operator.core import hpa_behavior as hb
from dask_operator.core.hpa_behavior import Recommendation as Rec
from dask_operator.core.hpa_behavior import ScaleEvent as Ev
from dask_operator.core.hpa_spec import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, Behavior, ScalingPolicy, ScalingRules

T = 10_000.0
DOC_DOWN = (ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60))


def down(*policies, select="Max") -> Behavior:
    return Behavior(scale_up=DEFAULT_SCALE_UP, scale_down=ScalingRules(tuple(policies), select, 300))


def up(*policies, select="Max") -> Behavior:
    return Behavior(scale_up=ScalingRules(tuple(policies), select, 0), scale_down=DEFAULT_SCALE_DOWN)


# ---------------------------------------------------------------- stabilization


@pytest.mark.parametrize(
    "recs, current, desired, up_window, down_window, expected, reason",
    [
        # "stabilizationWindowSeconds: 300 ... all desired states from the past 5 minutes will be considered"
        # and the highest is used on a scale-down
        pytest.param([Rec(5, T - 200), Rec(3, T - 100)], 5, 2, 0, 300, 5, "ScaleDownStabilized",
                     id="doc-highest-of-last-5-minutes"),
        pytest.param([Rec(5, T - 200), Rec(4, T - 100)], 6, 2, 0, 300, 5, "ScaleDownStabilized",
                     id="scale-down-to-the-highest-recommendation"),
        pytest.param([Rec(5, T - 301)], 5, 2, 0, 300, 2, "ReadyForNewScale", id="older-than-window-ignored"),
        pytest.param([Rec(5, T - 300)], 5, 2, 0, 300, 2, "ReadyForNewScale", id="exactly-window-old-ignored"),
        # a higher recommendation in the window never pushes above the current replicas
        pytest.param([Rec(9, T - 100)], 5, 2, 0, 300, 5, "ScaleDownStabilized", id="down-window-never-scales-up"),
        # scale-up window: the lowest recommendation of the window is used
        pytest.param([Rec(3, T - 30)], 2, 6, 60, 300, 3, "ScaleUpStabilized", id="up-window-lowest"),
        pytest.param([Rec(1, T - 30)], 2, 6, 60, 300, 2, "ScaleUpStabilized", id="up-window-never-scales-down"),
        pytest.param([Rec(3, T - 61)], 2, 6, 60, 300, 6, "ReadyForNewScale", id="up-window-expired"),
        # the default scale-up window is 0: "No stabilization is used"
        pytest.param([Rec(1, T - 1)], 2, 6, 0, 300, 6, "ReadyForNewScale", id="default-up-window-zero"),
        pytest.param([], 4, 4, 0, 300, 4, "ReadyForNewScale", id="no-change"),
    ],
)
def test_stabilize(recs, current, desired, up_window, down_window, expected, reason):
    stabilized, got_reason, kept = hb.stabilize(tuple(recs), T, current, desired, up_window, down_window)
    assert (stabilized, got_reason) == (expected, reason)
    assert Rec(desired, T) in kept, "the unstabilized recommendation is recorded"


def test_stabilize_keeps_only_recommendations_a_window_still_reads():
    recs = (Rec(7, T - 900), Rec(5, T - 100), Rec(6, T - 299), Rec(8, T - 301))
    _, _, kept = hb.stabilize(recs, T, 5, 4, 0, 300)
    assert kept == (Rec(5, T - 100), Rec(6, T - 299), Rec(4, T))
    _, _, kept = hb.stabilize(recs, T, 5, 4, 600, 300)
    assert kept == (Rec(5, T - 100), Rec(6, T - 299), Rec(8, T - 301), Rec(4, T)), "the longer window reads it"


def test_stabilize_legacy_keeps_the_window_start():
    _, _, kept = hb.stabilize_legacy((Rec(5, T - 301), Rec(6, T - 300)), T, 4, 300)
    assert kept == (Rec(6, T - 300), Rec(4, T))


@pytest.mark.parametrize(
    "recs, desired, expected, reason",
    [
        pytest.param([Rec(5, T - 299)], 2, 5, "ScaleDownStabilized", id="highest-in-window"),
        pytest.param([Rec(5, T - 300)], 2, 5, "ScaleDownStabilized", id="window-start-included"),
        pytest.param([Rec(5, T - 301)], 2, 2, "ReadyForNewScale", id="older-ignored"),
        # after a manual scale-down to 3, recommendations of 5 bring it back (legacy rules only)
        pytest.param([Rec(5, T - 60)], 3, 5, "ScaleDownStabilized", id="legacy-window-can-raise"),
    ],
)
def test_stabilize_legacy(recs, desired, expected, reason):
    stabilized, got_reason, kept = hb.stabilize_legacy(tuple(recs), T, desired, 300)
    assert (stabilized, got_reason) == (expected, reason)
    assert kept[-1] == Rec(desired, T)


# ---------------------------------------------------------------- policies


@pytest.mark.parametrize(
    "behavior, current, desired, minimum, maximum, up_events, down_events, expected, reason",
    [
        # "if there are 80 replicas and the target has to be scaled down to 10 replicas then during the
        # first step 8 replicas will be reduced"
        pytest.param(down(*DOC_DOWN), 80, 10, 1, 100, [], [], 72, "ScaleDownLimit", id="doc-80-to-72"),
        # within the same 60 s period nothing more may go: the period started at 80, 80 - 8 = 72
        pytest.param(down(*DOC_DOWN), 72, 10, 1, 100, [], [Ev(8, T - 15)], 72, "ScaleDownLimit",
                     id="doc-same-period-holds"),
        # "In the next iteration when the number of replicas is 72, 10% of the pods is 7.2 but the number is
        # rounded up to 8" (the next period: the first step's event is older than 60 s)
        pytest.param(down(*DOC_DOWN), 72, 10, 1, 100, [], [Ev(8, T - 61)], 64, "ScaleDownLimit",
                     id="doc-72-to-64"),
        # "With 40 or less replicas, the first policy will be applied": 4 at a time
        pytest.param(down(*DOC_DOWN), 30, 10, 1, 100, [], [], 26, "ScaleDownLimit", id="doc-below-40-pods-policy"),
        # "selectPolicy to Min ... select the policy which allows the minimum change": 4 pods, not 8
        pytest.param(down(*DOC_DOWN, select="Min"), 80, 10, 1, 100, [], [], 76, "ScaleDownLimit",
                     id="doc-select-min"),
        # "selectPolicy to Disabled turns off scaling the given direction"
        pytest.param(down(*DOC_DOWN, select="Disabled"), 80, 10, 1, 100, [], [], 80, "ScaleDownLimit",
                     id="doc-scale-down-disabled"),
        pytest.param(down(*DOC_DOWN), 12, 2, 10, 100, [], [], 10, "TooFewReplicas", id="min-before-policy"),
        pytest.param(down(*DOC_DOWN), 80, 76, 1, 100, [], [], 76, "DesiredWithinRange", id="within-policy"),
        # default scale-down: "allow all pods to be removed in a 15s window"
        pytest.param(Behavior(), 80, 1, 1, 100, [], [], 1, "DesiredWithinRange", id="default-down-all-at-once"),
        # a Percent policy of 10 % per 60 s on a scale-up: ceil(10 x 1.1) = 11
        pytest.param(up(ScalingPolicy("Percent", 10, 60)), 10, 20, 1, 100, [], [], 11, "ScaleUpLimit",
                     id="percent-10-per-60s-up"),
        # ...the period's added replicas count: started at 10, 11 reached, still ceil(10 x 1.1) = 11
        pytest.param(up(ScalingPolicy("Percent", 10, 60)), 11, 20, 1, 100, [Ev(1, T - 30)], [], 11,
                     "ScaleUpLimit", id="percent-10-per-60s-period-used"),
        # the controller's float64 arithmetic: 50 x (1 + 10 / 100) = 55.00000000000001, so ceil gives 56
        pytest.param(up(ScalingPolicy("Percent", 10, 60)), 50, 80, 1, 100, [], [], 56, "ScaleUpLimit",
                     id="percent-float64-like-the-controller"),
        # a Pods policy of 4 per 60 s
        pytest.param(up(ScalingPolicy("Pods", 4, 60)), 2, 20, 1, 100, [], [], 6, "ScaleUpLimit", id="pods-4-per-60s"),
        pytest.param(up(ScalingPolicy("Pods", 4, 60)), 6, 20, 1, 100, [Ev(4, T - 15)], [], 6, "ScaleUpLimit",
                     id="pods-4-per-60s-used-up"),
        pytest.param(up(ScalingPolicy("Pods", 4, 60)), 6, 20, 1, 100, [Ev(4, T - 60)], [], 10, "ScaleUpLimit",
                     id="pods-4-per-60s-period-over"),
        # replicas removed within the period give room back: started at 6 + 2 = 8 -> 12
        pytest.param(up(ScalingPolicy("Pods", 4, 60)), 6, 20, 1, 100, [], [Ev(2, T - 10)], 12, "ScaleUpLimit",
                     id="removed-within-period-counted"),
        # selectPolicy Max (default) vs Min between Pods 4 and Percent 100
        pytest.param(up(ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 100, 60)), 10, 50, 1, 100, [], [],
                     20, "ScaleUpLimit", id="select-max-biggest-change"),
        pytest.param(up(ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 100, 60), select="Min"), 10, 50,
                     1, 100, [], [], 14, "ScaleUpLimit", id="select-min-smallest-change"),
        pytest.param(up(ScalingPolicy("Pods", 4, 60), select="Disabled"), 10, 50, 1, 100, [], [], 10,
                     "ScaleUpLimit", id="scale-up-disabled"),
        # default scale-up: "the higher of 4 pods or 100 % per 15 s"
        pytest.param(Behavior(), 1, 50, 1, 100, [], [], 5, "ScaleUpLimit", id="default-up-4-pods-from-1"),
        pytest.param(Behavior(), 10, 50, 1, 100, [], [], 20, "ScaleUpLimit", id="default-up-doubles-from-10"),
        pytest.param(Behavior(), 10, 50, 1, 15, [], [], 15, "TooManyReplicas", id="max-below-the-policy"),
        pytest.param(Behavior(), 10, 12, 1, 15, [], [], 12, "DesiredWithinRange", id="within"),
        # more was added within the period than the policy allows (3 > 1, e.g. under an earlier policy):
        # the limit is the current count, no scale-up until those events age out
        pytest.param(up(ScalingPolicy("Pods", 1, 60)), 5, 9, 1, 100, [Ev(3, T - 10)], [], 5, "ScaleUpLimit",
                     id="limit-never-below-current"),
    ],
)
def test_limit(behavior, current, desired, minimum, maximum, up_events, down_events, expected, reason):
    limited = hb.limit(behavior, T, current, desired, minimum, maximum, tuple(up_events), tuple(down_events))
    assert (limited.replicas, limited.reason) == (expected, reason)
    assert limited.limited == (reason != "DesiredWithinRange")


@pytest.mark.parametrize(
    "current, desired, minimum, maximum, expected, reason",
    [
        # without behavior the controller allows max(2 x current, 4) per sync
        pytest.param(1, 10, 1, 100, 4, "ScaleUpLimit", id="legacy-at-least-4"),
        pytest.param(3, 10, 1, 100, 6, "ScaleUpLimit", id="legacy-doubles"),
        pytest.param(3, 10, 1, 5, 5, "TooManyReplicas", id="legacy-max"),
        pytest.param(3, 1, 2, 5, 2, "TooFewReplicas", id="legacy-min"),
        pytest.param(8, 1, 1, 10, 1, "DesiredWithinRange", id="legacy-scale-down-unlimited"),
        pytest.param(4, 4, 1, 10, 4, "DesiredWithinRange", id="legacy-no-change"),
    ],
)
def test_limit_legacy(current, desired, minimum, maximum, expected, reason):
    assert hb.limit_legacy(current, desired, minimum, maximum) == hb.Limited(expected, reason)


def test_record_event_reuses_an_outdated_slot_and_keeps_its_flag():
    rules = ScalingRules((ScalingPolicy("Pods", 4, 60),))
    events = (Ev(1, T - 100), Ev(2, T - 30), Ev(3, T - 90))
    recorded = hb.record_event(events, T, 5, rules)
    assert recorded == (Ev(1, T - 100, True), Ev(2, T - 30), Ev(5, T)), "the last outdated slot is reused"
    assert hb.record_event((Ev(2, T - 30),), T, 5, rules) == (Ev(2, T - 30), Ev(5, T))


def test_changed_within_counts_strictly_newer_events():
    events = (Ev(1, T - 60), Ev(2, T - 59.5), Ev(4, T))
    assert hb.changed_within(events, T, 60) == 6
