"""An autoscaler's status body from its HPA and the HPA controller's Events. Table-driven.

The HPA statuses and Event messages below are worded as the HPA controller
(kubernetes v1.36, pkg/controller/podautoscaler/horizontal.go) writes them.
"""

from __future__ import annotations

import copy

import pytest

from dask_operator.core.autoscaler_spec import hpa_manifest, parse_request
from dask_operator.core.autoscaler_status import (autoscaler_view, count_rescales, current_values, failed_metric,
                                                  rescale_direction, summary)

UID = "0b6c7a3e-1111-4a4a-9c9c-000000000001"
CREATE = {"workload_name": "web", "workload_namespace": "shop", "workload_type": "Deployment", "min_replicas": 1,
          "max_replicas": 5, "target_cpu_percent": 50, "target_gpu_percent": 80}
ACTIVE = {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
          "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization "
                     "(percentage of request)", "lastTransitionTime": "2025-12-15T10:31:00Z"}
ABLE = {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
        "message": "recommended size matches current size", "lastTransitionTime": "2025-12-15T10:31:00Z"}
GPU_FAILED = ("failed to get pods metric value: unable to get metric DCGM_FI_DEV_GPU_UTIL: unable to fetch metrics "
              "from custom metrics API: the server could not find the metric DCGM_FI_DEV_GPU_UTIL for pods")
CPU = {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 75, "averageValue": "75m"}}}
GPU = {"type": "Pods", "pods": {"metric": {"name": "DCGM_FI_DEV_GPU_UTIL"}, "current": {"averageValue": "82500m"}}}


def hpa(status: dict | None = None, **create) -> dict:
    obj = hpa_manifest(parse_request({**CREATE, **create}))
    obj["metadata"].update(uid=UID, creationTimestamp="2025-12-15T10:30:00Z", managedFields=[
        {"manager": "dask-operator-autoscaling-api", "operation": "Update", "time": "2025-12-15T10:30:00Z"},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "time": "2025-12-15T10:35:00Z"}])
    if status is not None:
        obj["status"] = status
    return obj


def event(reason: str, message: str, count: int = 1, when: str = "2025-12-15T10:34:00Z", uid: str = UID,
          kind: str = "Normal") -> dict:
    return {"involvedObject": {"kind": "HorizontalPodAutoscaler", "uid": uid}, "reason": reason,
            "message": message, "count": count, "lastTimestamp": when, "type": kind}


def rescale(size: int, reason: str, count: int = 1, uid: str = UID) -> dict:
    return event("SuccessfulRescale", f"New size: {size}; reason: {reason}", count, uid=uid)


# ------------------------------------------------------------------ rescale events


@pytest.mark.parametrize("reason, direction", [
    ("cpu resource utilization (percentage of request) above target", "up"),
    ("pods metric DCGM_FI_DEV_GPU_UTIL above target", "up"),
    ("external metric queue_length(nil) above target", "up"),
    (" above target", "up"),  # from zero: no metric name
    ("Current number of replicas below Spec.MinReplicas", "up"),
    ("All metrics below target", "down"),
    ("Current number of replicas above Spec.MaxReplicas", "down"),
    ("something else", None),
])
def test_rescale_direction_from_the_controllers_reason(reason: str, direction: str | None) -> None:
    assert rescale_direction(f"New size: 3; reason: {reason}") == direction


def test_counts_add_each_events_count_and_ignore_other_reasons() -> None:
    events = [rescale(3, "cpu resource utilization (percentage of request) above target", count=2),
              rescale(5, "cpu resource utilization (percentage of request) above target"),
              rescale(1, "All metrics below target", count=4),
              event("FailedGetPodsMetric", GPU_FAILED, count=9, kind="Warning")]
    assert count_rescales(events) == (3, 4)


def test_events_v1_series_count_wins() -> None:
    e = {**rescale(2, "All metrics below target"), "count": None, "series": {"count": 6}}
    assert count_rescales([e]) == (0, 6)


# ------------------------------------------------------------------ metric values


@pytest.mark.parametrize("metrics, expected", [
    pytest.param([CPU, GPU], {"cpu": 75, "gpu": 82.5}, id="cpu-and-gpu"),
    pytest.param([{"type": "Pods", "pods": {"metric": {"name": "DCGM_FI_DEV_GPU_UTIL"},
                                            "current": {"averageValue": "82"}}}], {"gpu": 82}, id="gpu-integer"),
    pytest.param([{"type": ""}, CPU], {"cpu": 75}, id="failed-metric-is-an-empty-entry"),
    pytest.param([{"type": "Resource", "resource": {"name": "memory", "current": {"averageUtilization": 60,
                                                                                  "averageValue": "20Mi"}}}],
                 {"memory": 60}, id="memory"),
    pytest.param([{"type": "Object", "object": {"metric": {"name": "desired_workers"},
                                                "current": {"averageValue": "2"}}}],
                 {"desired_workers": 2}, id="object"),
    pytest.param([], {}, id="none-yet"),
])
def test_current_values(metrics: list, expected: dict) -> None:
    assert current_values({"currentMetrics": metrics}) == expected


@pytest.mark.parametrize("reason, message, metric", [
    ("FailedGetPodsMetric", GPU_FAILED, "gpu"),
    ("FailedGetResourceMetric", "failed to get cpu utilization: unable to get metrics for resource cpu", "cpu"),
    ("FailedGetResourceMetric", "failed to get memory utilization: missing request for memory", "memory"),
    ("FailedGetObjectMetric", "failed to get object metric value: unable to get metric desired_workers",
     "desired_workers"),
    ("FailedGetScale", "deployments/scale.apps \"web\" not found", None),
])
def test_which_metric_a_failure_is_about(reason: str, message: str, metric: str | None) -> None:
    assert failed_metric(reason, message) == metric


# ------------------------------------------------------------------ the view


def test_seed_shaped_view_of_an_active_autoscaler() -> None:
    status = {"currentReplicas": 3, "desiredReplicas": 3, "lastScaleTime": "2025-12-15T10:34:00Z",
              "currentMetrics": [CPU, GPU], "conditions": [ABLE, ACTIVE]}
    events = [rescale(2, "cpu resource utilization (percentage of request) above target"),
              rescale(3, "cpu resource utilization (percentage of request) above target"),
              rescale(9, "All metrics below target", uid="someone-elses-hpa")]
    view = autoscaler_view(hpa(status), events)
    assert {k: view[k] for k in ("autoscaling_id", "status", "message")} == {
        "autoscaling_id": "shop.autoscaler-deployment-web", "status": "active", "message": "Autoscaler is active"}
    d = view["details"]
    assert {k: d[k] for k in ("created_at", "updated_at", "current_replicas", "desired_replicas",
                              "current_cpu_percent", "current_memory_percent", "current_gpu_percent",
                              "last_scale_time", "scale_up_count", "scale_down_count", "hpa_name")} == {
        "created_at": "2025-12-15T10:30:00Z", "updated_at": "2025-12-15T10:35:00Z", "current_replicas": 3,
        "desired_replicas": 3, "current_cpu_percent": 75, "current_memory_percent": None,
        "current_gpu_percent": 82.5, "last_scale_time": "2025-12-15T10:34:00Z", "scale_up_count": 2,
        "scale_down_count": 0, "hpa_name": "autoscaler-deployment-web"}
    assert d["unavailable_metrics"] == {} and d["spec"]["target_gpu_percent"] == 80
    assert d["conditions"][1] == {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
                                  "message": ACTIVE["message"], "last_transition_time": "2025-12-15T10:31:00Z"}


@pytest.mark.parametrize("status, events, phase, message, unavailable", [
    pytest.param(None, [], "pending", "Autoscaler created; the HPA controller has not evaluated it yet",
                 {"cpu": "the HPA reports no current value for this metric",
                  "gpu": "the HPA reports no current value for this metric"}, id="not-evaluated-yet"),
    pytest.param({"currentReplicas": 1, "desiredReplicas": 1, "currentMetrics": [CPU, {"type": ""}],
                  "conditions": [ABLE, ACTIVE]},
                 [event("FailedGetPodsMetric", GPU_FAILED, kind="Warning")], "active",
                 "Autoscaler is active; no current value for: gpu",
                 {"gpu": f"FailedGetPodsMetric: {GPU_FAILED}"}, id="gpu-series-missing-cpu-fine"),
    pytest.param({"currentReplicas": 1, "desiredReplicas": 1, "currentMetrics": [{"type": ""}, {"type": ""}],
                  "conditions": [ABLE, {"type": "ScalingActive", "status": "False", "reason": "FailedGetPodsMetric",
                                        "message": f"the HPA was unable to compute the replica count: {GPU_FAILED}"}]},
                 [], "inactive",
                 f"Autoscaler is inactive: FailedGetPodsMetric: the HPA was unable to compute the replica count: "
                 f"{GPU_FAILED}",
                 {"gpu": f"FailedGetPodsMetric: the HPA was unable to compute the replica count: {GPU_FAILED}",
                  "cpu": "the HPA reports no current value for this metric"}, id="nothing-readable"),
    pytest.param({"currentReplicas": 0, "desiredReplicas": 0, "conditions": [
        {"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
         "message": "the HPA controller was unable to get the target's current scale: not found"}]}, [], "inactive",
                 "Autoscaler is inactive: FailedGetScale: the HPA controller was unable to get the target's current "
                 "scale: not found", None, id="workload-gone"),
])
def test_status_and_unavailable_metrics(status, events, phase: str, message: str, unavailable) -> None:
    view = autoscaler_view(hpa(status), events)
    assert (view["status"], view["message"]) == (phase, message)
    if unavailable is not None:
        assert view["details"]["unavailable_metrics"] == unavailable
    assert view["details"]["current_gpu_percent"] is None  # never made up


def test_latest_failure_event_explains_a_missing_metric() -> None:
    old = event("FailedGetPodsMetric", "old reason", when="2025-12-15T10:00:00Z", kind="Warning")
    new = event("FailedGetPodsMetric", "new reason", when="2025-12-15T10:30:00Z", kind="Warning")
    view = autoscaler_view(hpa({"conditions": [ABLE, ACTIVE], "currentMetrics": [CPU]}), [new, old])
    assert view["details"]["unavailable_metrics"] == {"gpu": "FailedGetPodsMetric: new reason"}


def test_until_the_controller_evaluates_the_hpa_its_default_zeros_are_not_shown() -> None:
    created = autoscaler_view(hpa({"desiredReplicas": 0}), observed_replicas=2)["details"]  # as the API server answers
    assert (created["current_replicas"], created["desired_replicas"]) == (2, None)
    evaluated = autoscaler_view(hpa({"currentReplicas": 4, "desiredReplicas": 4, "conditions": [ABLE, ACTIVE]}),
                                observed_replicas=2)["details"]
    assert (evaluated["current_replicas"], evaluated["desired_replicas"]) == (4, 4)
    scaled_to_zero = autoscaler_view(hpa({"desiredReplicas": 0, "conditions": [ABLE]}))["details"]
    assert (scaled_to_zero["current_replicas"], scaled_to_zero["desired_replicas"]) == (0, 0)  # omitempty: 0


def test_view_does_not_change_its_inputs() -> None:
    obj = hpa({"currentMetrics": [CPU], "conditions": [ABLE, ACTIVE]})
    before = copy.deepcopy(obj)
    autoscaler_view(obj, [rescale(2, "All metrics below target")])
    assert obj == before


# ------------------------------------------------------------------ summary


def test_summary_of_seed_metrics() -> None:
    busy = autoscaler_view(hpa({"currentMetrics": [CPU], "conditions": [ABLE, ACTIVE]}),
                           [rescale(2, "cpu resource utilization (percentage of request) above target", count=3),
                            rescale(1, "All metrics below target")])
    idle = autoscaler_view(hpa({"currentMetrics": [{**CPU, "resource": {"name": "cpu", "current": {
        "averageUtilization": 62}}}], "conditions": [ABLE, ACTIVE]}))
    new = autoscaler_view(hpa())
    assert summary([busy, idle, new]) == {"total_autoscalers": 3, "active_autoscalers": 2, "total_scale_ups": 3,
                                          "total_scale_downs": 1, "average_cpu_utilization": 68.5}


def test_summary_without_cpu_values_is_null_not_zero() -> None:
    assert summary([autoscaler_view(hpa())])["average_cpu_utilization"] is None
    assert summary([]) == {"total_autoscalers": 0, "active_autoscalers": 0, "total_scale_ups": 0,
                           "total_scale_downs": 0, "average_cpu_utilization": None}
