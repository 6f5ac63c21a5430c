"""decide(): one HPA sync end to end, in scenarios worded after the HPA documentation, and its invariants.

The invariants are checked on random specs and random metric histories
(hypothesis), from the outside: the replicas never leave [min, max]; over any
policy period the change from the replicas in force at the period's start is
at most what the policies allow; a scale-down never goes below a
recommendation of the scale-down window; the same inputs give the same
decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_operator.core.hpa_behavior import Recommendation, ScaleEvent
from dask_operator.core.hpa_inputs import ControllerConfig, MetricSample
from dask_operator.core.hpa_policy import Decision, History, decide, ready_pods
from dask_operator.core.hpa_quantity import milli
from dask_operator.core.hpa_spec import Behavior, HpaSpec, MetricTarget, ScalingPolicy, ScalingRules

TASKS = MetricTarget("Pods", "tasks", "AverageValue", milli(1))
CPU = MetricTarget("Resource", "cpu", "Utilization", 50)


def spec(minimum=1, maximum=20, behavior: Behavior | None = Behavior(), metrics=(TASKS,)) -> HpaSpec:
    return HpaSpec(max_replicas=maximum, min_replicas=minimum, metrics=metrics, behavior=behavior)


def spread(total: int, replicas: int) -> dict[str, MetricSample]:
    """``total`` milli-tasks split evenly over ``replicas`` ready pods (the Pods metric is tasks per pod)."""
    share, rest = divmod(total, replicas)
    return {TASKS.key: MetricSample(pods={p.name: share + (i < rest) for i, p in enumerate(ready_pods(replicas))})}


def tasks(total: float, replicas: int) -> dict[str, MetricSample]:
    return spread(milli(repr(total)), replicas)


def run(hpa: HpaSpec, replicas: int, demand_by_time: list[tuple[float, float | None]]) -> list[Decision]:
    """Syncs at the given times; the demand (total tasks) is spread over the pods; None: metric missing."""
    history, decisions = None, []
    for now, demand in demand_by_time:
        metrics = {} if demand is None else tasks(demand, replicas)
        decision = decide(now, replicas, metrics, hpa, history)
        decisions.append(decision)
        history, replicas = decision.history, decision.replicas
    return decisions


def every(period: float, until: float, value: float | None, start: float = 0.0):
    return [(start + i * period, value) for i in range(int((until - start) // period) + 1)]


# ---------------------------------------------------------------- scenarios


def test_doc_200m_of_100m_doubles_the_replicas():
    d = decide(0, 3, tasks(6, 3), spec())  # 2 tasks per pod, target 1
    assert (d.replicas, d.reason, d.message) == (6, "DesiredWithinRange", "pods metric tasks above target")


def test_a_new_hpa_does_not_scale_down_before_its_window():
    """The first sync records the current replicas, so the default 300 s scale-down window holds them."""
    decisions = run(spec(), 5, every(15, 300, 2.0))  # 2 tasks: 2 replicas wanted from t=0
    assert [d.desired for d in decisions] == [2] * 21
    assert [d.replicas for d in decisions[:-1]] == [5] * 20, "t=0..285 s: the recorded 5 is in the window"
    assert {d.reason for d in decisions[:-1]} == {"ScaleDownStabilized"}
    assert (decisions[-1].replicas, decisions[-1].message) == (2, "All metrics below target"), "t=300 s"


def test_doc_stabilization_uses_the_highest_recommendation_of_the_window():
    """"the algorithm looks into previously computed desired states, and uses the highest value from the
    specified interval": a burst wanting 8 keeps 8 for 300 s after it, whatever came since."""
    burst = every(15, 60, 8.0)  # 8 tasks: 8 replicas wanted
    after = every(15, 600, 2.0, start=75)  # 2 wanted
    decisions = run(spec(), 4, burst + after)
    replicas = {t: d.replicas for (t, _), d in zip(burst + after, decisions)}
    assert all(replicas[t] == 8 for t in range(0, 75, 15))
    assert all(replicas[t] == 8 for t in range(75, 360, 15)), "held while 8 is within the last 300 s"
    assert replicas[360] == 2, "the last 8 was recommended at 60 s: at 360 s it is no longer within 300 s"


def test_doc_pods_policy_of_4_per_60s_across_syncs():
    hpa = spec(behavior=Behavior(scale_up=ScalingRules((ScalingPolicy("Pods", 4, 60),), "Max", 0)))
    decisions = run(hpa, 2, every(15, 75, 20.0))  # 20 replicas wanted
    assert [d.replicas for d in decisions] == [6, 6, 6, 6, 10, 10]
    assert [d.reason for d in decisions[:5]] == ["ScaleUpLimit"] * 5
    assert decisions[0].history.scale_up_events == (ScaleEvent(4, 0),)


def test_without_behavior_the_legacy_rule_doubles_per_sync():
    """No behavior: max(2 x current, 4) per sync; the default behavior allows max(current + 4, 2 x current)."""
    assert [d.replicas for d in run(spec(behavior=None), 1, every(15, 30, 20.0))] == [4, 8, 16]  # 20 wanted
    assert [d.replicas for d in run(spec(), 1, every(15, 30, 20.0))] == [5, 10, 20]


def test_without_behavior_no_scale_events_are_kept():
    d = decide(0, 2, tasks(3, 2), spec(behavior=None))
    assert d.replicas == 3 and d.history.scale_up_events == () and d.history.scale_down_events == ()


@pytest.mark.parametrize(
    "current, minimum, maximum, replicas, reason, message",
    [
        pytest.param(12, 1, 10, 10, "TooManyReplicas", "Current number of replicas above Spec.MaxReplicas",
                     id="above-max"),
        pytest.param(1, 2, 10, 2, "TooFewReplicas", "Current number of replicas below Spec.MinReplicas",
                     id="below-min"),
        pytest.param(0, 1, 10, 0, "ScalingDisabled", "scaling is disabled since the replica count of the target "
                     "is zero", id="zero-replicas-disables-scaling"),
    ],
)
def test_bounds_apply_before_metrics_are_read(current, minimum, maximum, replicas, reason, message):
    d = decide(0, current, {}, spec(minimum, maximum))  # every metric missing: not even read
    assert (d.replicas, d.reason, d.message, d.metrics) == (replicas, reason, message, ())
    assert d.history.recommendations == (Recommendation(current, 0),), "no stabilization on this path"


def test_out_of_bounds_rescale_is_a_scale_event():
    assert decide(0, 12, {}, spec(1, 10)).history.scale_down_events == (ScaleEvent(2, 0),)


def test_missing_metric_means_no_scaling_and_nothing_recorded():
    d = decide(30, 4, {}, spec(), History((Recommendation(4, 0),)))
    assert (d.replicas, d.scaled, d.reason, d.missing) == (4, False, "FailedGetPodsMetric", ("pods/tasks",))
    assert d.condition("ScalingActive") == d.conditions[0] and d.conditions[0].status is False
    assert d.message.startswith("invalid metrics (1 invalid out of 1), first error is: failed to get pods metric")
    assert d.history == History((Recommendation(4, 0),))


def test_a_missing_metric_does_not_block_a_scale_up():
    d = decide(0, 2, tasks(6, 2), spec(metrics=(CPU, TASKS)))
    assert (d.replicas, d.missing, d.condition("ScalingActive").status) == (6, ("cpu",), True)


def test_a_missing_metric_blocks_a_scale_down():
    d = decide(600, 4, tasks(0.4, 4), spec(metrics=(CPU, TASKS)), History())
    assert (d.replicas, d.reason, d.missing) == (4, "FailedGetResourceMetric", ("cpu",))


def test_conditions_of_a_limited_scale_up():
    d = decide(0, 2, tasks(20, 2), spec())
    assert [(c.type, c.status, c.reason) for c in d.conditions] == [
        ("AbleToScale", True, "ReadyForNewScale"),
        ("ScalingActive", True, "ValidMetricFound"),
        ("ScalingLimited", True, "ScaleUpLimit"),
    ]
    assert d.condition("ScalingLimited").message == "the desired replica count is increasing faster than the " \
                                                   "maximum scale rate"
    assert (d.replicas, d.desired, d.reason) == (6, 20, "ScaleUpLimit")


def test_behavior_tolerance_per_direction():
    loose = spec(behavior=Behavior(scale_up=ScalingRules((ScalingPolicy("Pods", 4, 15),), "Max", 0)))
    tight = spec(behavior=Behavior(scale_up=ScalingRules((ScalingPolicy("Pods", 4, 15),), "Max", 0, 0.01)))
    assert decide(0, 10, tasks(10.5, 10), loose).replicas == 10  # ratio 1.05
    assert decide(0, 10, tasks(10.5, 10), tight).replicas == 11


def test_controller_tolerance_flag():
    assert decide(0, 10, tasks(10.5, 10), spec(), config=ControllerConfig(tolerance=0.01)).replicas == 11


def test_history_round_trips_through_plain_data():
    d = run(spec(), 2, every(15, 120, 3.0) + every(15, 300, 0.5, start=135))[-1]
    assert d.history.scale_up_events and d.history.recommendations
    assert History.from_dict(d.history.to_dict()) == d.history


def test_history_stays_bounded_over_a_long_run():
    """Old entries' slots are reused: about one recommendation per sync of the 300 s window."""
    values = [(t, 3.0 if (t // 900) % 2 else 1.0) for t in range(0, 15 * 2000, 15)]
    history = run(spec(), 2, values)[-1].history
    assert len(history.recommendations) <= 300 // 15 + 2
    assert len(history.scale_up_events) <= 15 // 15 + 2 and len(history.scale_down_events) <= 15 // 15 + 2


# ---------------------------------------------------------------- invariants

PERIODS = st.sampled_from([15, 30, 60, 120])
POLICY = st.one_of(st.builds(ScalingPolicy, st.just("Pods"), st.integers(1, 6), PERIODS),
                   st.builds(ScalingPolicy, st.just("Percent"), st.integers(1, 200), PERIODS))
RULES = st.builds(ScalingRules, st.lists(POLICY, min_size=1, max_size=3).map(tuple),
                  st.sampled_from(["Max", "Min", "Disabled"]), st.sampled_from([None, 0, 30, 60, 300]))
BEHAVIOR = st.one_of(st.none(), st.builds(Behavior, RULES, RULES))


@st.composite
def scenarios(draw):
    minimum = draw(st.integers(1, 5))
    hpa = HpaSpec(max_replicas=draw(st.integers(minimum, 30)), min_replicas=minimum, metrics=(TASKS,),
                  behavior=draw(BEHAVIOR))
    start = draw(st.integers(minimum, hpa.max_replicas))
    steps, now = [], 0.0
    for dt, value in draw(st.lists(st.tuples(st.sampled_from([1, 5, 15, 15, 30, 60]),
                                             st.one_of(st.none(), st.integers(0, 40_000))), min_size=1, max_size=40)):
        now += dt
        steps.append((now, value))
    return hpa, start, steps


@dataclass
class Replay:
    hpa: HpaSpec
    start: int
    steps: list[tuple[float, int | None]]
    decisions: list[Decision]

    def replicas_at(self, t: float) -> int:
        """The replicas in force at ``t``: after the last sync at or before it."""
        before = [d.replicas for (now, _), d in zip(self.steps, self.decisions) if now <= t]
        return before[-1] if before else self.start


def replay(hpa: HpaSpec, start: int, steps) -> Replay:
    history, replicas, decisions = None, start, []
    for now, value in steps:
        metrics = {} if value is None else spread(value, replicas)
        decision = decide(now, replicas, metrics, hpa, history)
        decisions.append(decision)
        history, replicas = decision.history, decision.replicas
    return Replay(hpa, start, steps, decisions)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_never_outside_min_and_max(scenario):
    r = replay(*scenario)
    assert all(r.hpa.min_replicas <= d.replicas <= r.hpa.max_replicas for d in r.decisions)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_never_faster_than_the_policies_allow_within_any_period(scenario):
    r = replay(*scenario)
    if r.hpa.behavior is None:
        return
    for (now, _), d in zip(r.steps, r.decisions):
        if d.replicas == d.current:
            continue
        rules = r.hpa.behavior.scale_up if d.replicas > d.current else r.hpa.behavior.scale_down
        assert rules.select_policy != "Disabled", "a disabled direction never changes"
        allowed = []
        for p in rules.policies:
            start = r.replicas_at(now - p.period_seconds)
            if d.replicas > d.current:
                allowed.append(start + p.value if p.type == "Pods" else -(-start * (100 + p.value) // 100) + 1)
            else:
                allowed.append(start - p.value if p.type == "Pods" else start * (100 - p.value) // 100 - 1)
        # Max picks the policy allowing the biggest change, Min the smallest (the float64 rounding of
        # Percent policies is allowed one replica of slack here)
        if d.replicas > d.current:
            assert d.replicas <= (max(allowed) if rules.select_policy == "Max" else min(allowed))
        else:
            assert d.replicas >= (min(allowed) if rules.select_policy == "Max" else max(allowed))


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_stabilization_never_scales_down_below_a_recommendation_of_the_window(scenario):
    r = replay(*scenario)
    behavior = r.hpa.behavior
    window = 300.0 if behavior is None or behavior.scale_down.stabilization_window_seconds is None \
        else behavior.scale_down.stabilization_window_seconds
    recommended = [(r.steps[0][0], r.start)]  # the first sync records the current replicas
    for (now, _), d in zip(r.steps, r.decisions):
        if d.desired is not None:
            recommended.append((now, d.desired))
        if d.replicas < d.current:
            in_window = [n for t, n in recommended if (t > now - window if behavior else t >= now - window)]
            assert d.replicas >= max(in_window, default=0)


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_same_inputs_same_outputs(scenario):
    assert replay(*scenario).decisions == replay(*scenario).decisions
