"""core.cluster_autoscaling (pure) and the ClusterAutoscaler over a fake API, table-driven.

The engine itself is tested in test_hpa_*; here: that a Cluster's
spec.autoscaling is the HPA it claims to be (an Object metric desired_workers,
target AverageValue 1), that an HPA on the Cluster wins, and what a sync
writes: the scale subresource when the engine rescales, status only when the
decision changed.
"""

from __future__ import annotations

import pytest
from fakes import FakeKube

from dask_operator import constants as c
from dask_operator.cluster_autoscaler import ClusterAutoscaler
from dask_operator.core.cluster_autoscaling import (
    HPA_CONFLICT,
    autoscaling_status,
    hpa_spec_of,
    hpas_targeting,
    samples,
)
from dask_operator.core.hpa_policy import decide
from dask_operator.errors import InvalidAutoscaling

NS, NAME = "ns", "dask"
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:15Z"


# ---------------------------------------------------------------- the HPA it stands for


def test_spec_is_an_object_metric_on_the_cluster_with_target_one():
    spec = hpa_spec_of(NAME, {"maxReplicas": 10})
    (metric,) = spec.metrics
    assert (metric.type, metric.name, metric.described_kind, metric.described_name) == (
        "Object", "desired_workers", c.KIND, NAME)
    assert (spec.min_replicas, spec.max_replicas) == (1, 10), "minReplicas defaults to 1, as an HPA's"


@pytest.mark.parametrize(
    "current, target, expected",
    [
        pytest.param(2, 7, 7, id="follows-the-scheduler-up"),
        pytest.param(10, 11, 10, id="within-the-0.1-tolerance"),
        pytest.param(2, 40, 10, id="capped-at-max"),
        pytest.param(3, None, 3, id="no-target-no-change"),
    ],
)
def test_the_engine_proposes_the_schedulers_target(current, target, expected):
    spec = hpa_spec_of(NAME, {"minReplicas": 1, "maxReplicas": 10,
                              "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 100,
                                                                     "periodSeconds": 15}]}}})
    decision = decide(0.0, current, samples(spec, target), spec, None)
    assert decision.replicas == expected


@pytest.mark.parametrize(
    "autoscaling, field",
    [
        pytest.param({"maxReplicas": 2, "minReplicas": 3}, "spec.autoscaling.maxReplicas", id="max-below-min"),
        pytest.param({"maxReplicas": 2, "behavior": {"scaleUp": {"selectPolicy": "Most"}}},
                     "spec.autoscaling.behavior.scaleUp.selectPolicy", id="bad-select-policy"),
        pytest.param({}, "spec.autoscaling.maxReplicas", id="no-max"),
    ],
)
def test_invalid_autoscaling_names_the_field(autoscaling, field):
    with pytest.raises(InvalidAutoscaling) as raised:
        hpa_spec_of(NAME, autoscaling)
    assert raised.value.field == field


def hpa(name: str, kind="Cluster", target=NAME, api_version=c.API_VERSION) -> dict:
    return {"metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target}}}


@pytest.mark.parametrize(
    "hpas, expected",
    [
        pytest.param([hpa("b"), hpa("a")], ["a", "b"], id="sorted"),
        pytest.param([hpa("x", kind="Deployment")], [], id="other-kind"),
        pytest.param([hpa("x", target="other")], [], id="other-cluster"),
        pytest.param([hpa("x", api_version="other.io/v1")], [], id="other-group"),
        pytest.param([hpa("x", api_version="dask.charmtx.com/v1")], ["x"], id="any-version-of-ours"),
    ],
)
def test_hpas_targeting(hpas, expected):
    assert hpas_targeting(hpas, NAME) == expected


# ---------------------------------------------------------------- what a sync records


def decision_for(current: int, target: int | None):
    spec = hpa_spec_of(NAME, {"maxReplicas": 10})
    return decide(0.0, current, samples(spec, target), spec, None)


def test_a_decision_is_recorded_with_its_reason_and_a_true_condition():
    fields = autoscaling_status({}, 3, T0, target=4, decision=decision_for(2, 4))
    record = fields["autoscaling"]
    assert (record["desiredWorkers"], record["replicas"], record["lastDecisionTime"], record["lastScaleTime"]) == (
        4, 4, T0, T0)
    (cond,) = fields["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (c.COND_AUTOSCALING, "True", record["reason"])


def test_the_same_decision_again_keeps_its_times():
    first = autoscaling_status({}, 3, T0, target=4, decision=decision_for(4, 4))
    again = autoscaling_status(first, 3, T1, target=4, decision=decision_for(4, 4))
    assert again == first, "nothing changed: nothing to write"


def test_a_missing_target_makes_the_condition_false():
    fields = autoscaling_status({}, 1, T0, target=None, decision=decision_for(2, None))
    cond = fields["conditions"][0]
    assert cond["status"] == "False" and cond["reason"].startswith("FailedGet")
    assert fields["autoscaling"]["replicas"] == 2 and fields["autoscaling"]["desiredWorkers"] is None


def test_an_hpa_conflict_is_named_and_other_conditions_are_kept():
    previous = {"conditions": [{"type": "Available", "status": "True"}]}
    fields = autoscaling_status(previous, 1, T0, target=3, conflict=["my-hpa"])
    available, mine = fields["conditions"]
    assert available == {"type": "Available", "status": "True"}
    assert (mine["status"], mine["reason"]) == ("False", HPA_CONFLICT) and "my-hpa" in mine["message"]


# ---------------------------------------------------------------- the autoscaler over a fake API


def cluster(replicas: int, autoscaling: dict | None = None, count: int | None = None) -> dict:
    spec: dict = {"workers": {"replicas": replicas}}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    body = {"apiVersion": c.API_VERSION, "kind": c.KIND,
            "metadata": {"name": NAME, "namespace": NS, "generation": 1}, "spec": spec}
    if count is not None:
        body["status"] = {"workers": {"count": count}}
    return body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(autoscaling: dict | None, replicas: int = 2, target: int | None = 5):
    kube = FakeKube()
    kube.add(c.API_VERSION, c.PLURAL, cluster(replicas, autoscaling, count=replicas))
    targets = {(NS, NAME): target} if target is not None else {}
    clock = Clock()
    scaler = ClusterAutoscaler(kube, targets.get, clock=clock, wallclock=lambda: T0)
    scaler.track(kube.object(c.API_VERSION, c.PLURAL, NS, NAME))
    return kube, scaler, targets, clock


def replicas(kube: FakeKube) -> int:
    return kube.object(c.API_VERSION, c.PLURAL, NS, NAME)["spec"]["workers"]["replicas"]


async def test_a_sync_scales_through_the_scale_subresource():
    """Without behavior, an HPA's legacy rule: at most max(2 x current, 4) per sync."""
    kube, scaler, _, clock = make({"maxReplicas": 10})
    await scaler.sync_once()
    assert replicas(kube) == 4
    clock.now += 15
    await scaler.sync_once()
    assert replicas(kube) == 5
    scale = [call for call in kube.calls_of("patch") if call.subresource == "scale"]
    assert [call.body for call in scale] == [{"spec": {"replicas": 4}}, {"spec": {"replicas": 5}}]
    status = kube.object(c.API_VERSION, c.PLURAL, NS, NAME)["status"]
    assert status["autoscaling"]["replicas"] == 5 and status["autoscaling"]["lastScaleTime"] == T0


async def test_an_idle_cluster_costs_no_writes():
    kube, scaler, _, _ = make({"maxReplicas": 10}, replicas=5, target=5)
    await scaler.sync_once()
    writes = len(kube.writes())
    for _ in range(3):
        await scaler.sync_once()
    assert len(kube.writes()) == writes, "the same decision is not written again"


async def test_scale_down_waits_for_the_window():
    kube, scaler, targets, clock = make({"maxReplicas": 10}, replicas=5, target=5)
    await scaler.sync_once()
    targets[(NS, NAME)] = 1
    clock.now += 60
    await scaler.sync_once()
    assert replicas(kube) == 5, "held by the 300 s scale-down window"
    clock.now += 300
    await scaler.sync_once()
    assert replicas(kube) == 1


async def test_an_hpa_on_the_cluster_wins():
    kube, scaler, _, _ = make({"maxReplicas": 10})
    kube.add("autoscaling/v2", "horizontalpodautoscalers", {**hpa("their-hpa"), "metadata": {
        "name": "their-hpa", "namespace": NS}})
    await scaler.sync_once()
    assert replicas(kube) == 2, "not scaled"
    cond = kube.object(c.API_VERSION, c.PLURAL, NS, NAME)["status"]["conditions"][-1]
    assert (cond["reason"], "their-hpa" in cond["message"]) == (HPA_CONFLICT, True)


async def test_clusters_without_autoscaling_are_not_touched():
    kube, scaler, _, _ = make(None)
    await scaler.sync_once()
    assert kube.calls == [], "not tracked: not even read"


async def test_removing_spec_autoscaling_stops_it():
    kube, scaler, targets, _ = make({"maxReplicas": 10})
    body = kube.object(c.API_VERSION, c.PLURAL, NS, NAME)
    del body["spec"]["autoscaling"]
    kube.add(c.API_VERSION, c.PLURAL, body)
    await scaler.sync_once()
    assert replicas(kube) == 2
    await scaler.sync_once()
    assert [call.verb for call in kube.calls] == ["get"], "read once, then forgotten"


async def test_one_hpa_list_per_namespace_per_pass():
    kube, scaler, _, _ = make({"maxReplicas": 10})
    other = cluster(2, {"maxReplicas": 10}, count=2)
    other["metadata"]["name"] = "other"
    kube.add(c.API_VERSION, c.PLURAL, other)
    scaler.track(other)
    await scaler.sync_once()
    assert len(kube.calls_of("list", "horizontalpodautoscalers")) == 1
