"""Seed 004's create request: validation, the HPA it becomes, and back. Table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dask_operator.core.autoscaler_spec import (
    AUTOSCALING_API_MANAGER, GPU_METRIC, LABEL_MANAGED_BY, AutoscalerRequest, ScalePolicy, hpa_manifest, hpa_name,
    parse_id, parse_request, request_from_hpa)
from dask_operator.errors import InvalidAutoscalerRequest

BASE = {"workload_name": "nginx-deployment", "workload_namespace": "default", "workload_type": "Deployment",
        "min_replicas": 2, "max_replicas": 10, "target_cpu_percent": 70}
SEED_CREATE = {**BASE, "target_memory_percent": 80, "target_gpu_percent": 75,
               "scale_up_policy": {"stabilization_window_seconds": 60, "max_scale_change": 3},
               "scale_down_policy": {"stabilization_window_seconds": 300, "max_scale_change": 2}}
NO_TARGET = ("at least one target is required: target_cpu_percent, target_memory_percent, target_gpu_percent "
             "(or follow_desired_workers for a Cluster)")


def body(**changes) -> dict:
    out = {**BASE, **changes}
    return {k: v for k, v in out.items() if v is not ...}


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("given, details", [
    pytest.param(body(min_replicas=0), "min_replicas must be at least 1", id="seed-min-below-1"),
    pytest.param(body(min_replicas=-3), "min_replicas must be at least 1", id="min-negative"),
    pytest.param(body(min_replicas=5, max_replicas=4), "max_replicas must be greater than or equal to min_replicas",
                 id="max-below-min"),
    pytest.param(body(target_cpu_percent=101), "target_cpu_percent must be an integer between 0 and 100",
                 id="cpu-over-100"),
    pytest.param(body(target_memory_percent=-1), "target_memory_percent must be an integer between 0 and 100",
                 id="memory-negative"),
    pytest.param(body(target_gpu_percent=150), "target_gpu_percent must be an integer between 0 and 100",
                 id="gpu-over-100"),
    pytest.param(body(target_cpu_percent=50.5), "target_cpu_percent must be an integer between 0 and 100",
                 id="cpu-fraction"),
    pytest.param(body(workload_type="DaemonSet"),
                 "workload_type must be one of Deployment, StatefulSet, ReplicaSet, Cluster", id="unknown-type"),
    # schemathesis (tests/e2e/test_autoscaling_api_schema.py): an object or array was a 500 (unhashable)
    pytest.param(body(workload_type={"n": []}),
                 "workload_type must be one of Deployment, StatefulSet, ReplicaSet, Cluster", id="type-object"),
    pytest.param(body(workload_type=["Deployment"], follow_desired_workers=True),
                 "workload_type must be one of Deployment, StatefulSet, ReplicaSet, Cluster", id="type-array"),
    pytest.param(body(target_cpu_percent=...), NO_TARGET, id="no-target"),
    pytest.param(body(target_cpu_percent=0, target_gpu_percent=None), NO_TARGET, id="zero-and-null-are-no-target"),
    pytest.param(body(replicas=3), "unknown field(s): replicas", id="unknown-field"),
    pytest.param(body(scale_up_policy={"window": 3}), "unknown field(s) in scale_up_policy: window",
                 id="unknown-policy-field"),
    pytest.param(body(workload_name=...), "workload_name is required", id="no-name"),
    pytest.param(body(workload_name="Nginx_1"), "workload_name must be a Kubernetes object name (DNS-1123 subdomain)",
                 id="bad-name"),
    pytest.param(body(workload_namespace="a.b"),
                 "workload_namespace must be a Kubernetes namespace name (DNS-1123 label)", id="bad-namespace"),
    pytest.param(body(min_replicas="2"), "min_replicas must be an integer", id="min-string"),
    pytest.param(body(max_replicas=True), "max_replicas must be an integer", id="max-bool"),
    pytest.param(body(max_replicas=...), "max_replicas is required", id="no-max"),
    pytest.param(body(max_replicas=2**31), "max_replicas must be an integer", id="max-over-int32"),
    pytest.param(body(scale_down_policy={"stabilization_window_seconds": 3601}),
                 "scale_down_policy.stabilization_window_seconds must be an integer between 0 and 3600",
                 id="window-over-an-hour"),
    pytest.param(body(scale_up_policy={"max_scale_change": -1}),
                 "scale_up_policy.max_scale_change must be a non-negative integer (0: no limit)", id="change-negative"),
    pytest.param(body(scale_up_policy=[1]), "scale_up_policy must be an object", id="policy-not-object"),
    pytest.param(body(follow_desired_workers=True), "follow_desired_workers applies to workload_type Cluster only",
                 id="follow-needs-cluster"),
    pytest.param(body(follow_desired_workers="yes"), "follow_desired_workers must be true or false",
                 id="follow-not-bool"),
    pytest.param([BASE], "request body must be a JSON object", id="not-an-object"),
    pytest.param(body(min_replicas=0, max_replicas=-1, target_cpu_percent=200, extra=1),
                 "unknown field(s): extra; min_replicas must be at least 1; max_replicas must be greater than or equal"
                 " to min_replicas; target_cpu_percent must be an integer between 0 and 100", id="every-problem"),
])
def test_invalid_requests_say_what_is_wrong(given, details: str) -> None:
    with pytest.raises(InvalidAutoscalerRequest) as e:
        parse_request(given)
    assert str(e.value) == details


@pytest.mark.parametrize("given, expected", [
    pytest.param(SEED_CREATE, AutoscalerRequest(
        "nginx-deployment", "default", "Deployment", 2, 10, 70, 80, 75, False, ScalePolicy(60, 3), ScalePolicy(300, 2)),
        id="seed-create"),
    pytest.param(body(min_replicas=1, max_replicas=1), AutoscalerRequest(
        "nginx-deployment", "default", "Deployment", 1, 1, 70), id="min-equals-max"),
    pytest.param(body(target_cpu_percent=100, target_memory_percent=0, target_gpu_percent=None), AutoscalerRequest(
        "nginx-deployment", "default", "Deployment", 2, 10, 100), id="zero-and-null-are-unset"),
    pytest.param(body(min_replicas=2.0, max_replicas=4.0), AutoscalerRequest(
        "nginx-deployment", "default", "Deployment", 2, 4, 70), id="integral-floats-are-integers"),
    pytest.param(body(workload_type="Cluster", target_cpu_percent=..., follow_desired_workers=True),
                 AutoscalerRequest("nginx-deployment", "default", "Cluster", 2, 10, follow_desired_workers=True),
                 id="cluster-following-desired-workers"),
    pytest.param(body(scale_up_policy={}, scale_down_policy={"max_scale_change": 0}), AutoscalerRequest(
        "nginx-deployment", "default", "Deployment", 2, 10, 70), id="empty-policies-are-none"),
    pytest.param(body(scale_down_policy={"stabilization_window_seconds": 0}), AutoscalerRequest(
        "nginx-deployment", "default", "Deployment", 2, 10, 70, scale_down_policy=ScalePolicy(0)),
        id="window-zero-is-kept"),
])
def test_valid_requests(given: dict, expected: AutoscalerRequest) -> None:
    assert parse_request(given) == expected


# ------------------------------------------------------------------ the HPA


def test_the_seed_example_becomes_this_hpa() -> None:
    assert hpa_manifest(parse_request(SEED_CREATE)) == {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "autoscaler-deployment-nginx-deployment", "namespace": "default",
                     "labels": {LABEL_MANAGED_BY: AUTOSCALING_API_MANAGER}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "nginx-deployment"},
            "minReplicas": 2, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                            "averageUtilization": 70}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization",
                                                                               "averageUtilization": 80}}},
                {"type": "Pods", "pods": {"metric": {"name": GPU_METRIC},
                                          "target": {"type": "AverageValue", "averageValue": "75"}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 60,
                            "policies": [{"type": "Pods", "value": 3, "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]}}}}


@pytest.mark.parametrize("changes, spec_part", [
    pytest.param({}, {}, id="no-policy-no-behavior"),
    pytest.param({"scale_up_policy": {"stabilization_window_seconds": 30}},
                 {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 30}}},
                 id="window-only-keeps-default-policies"),
    pytest.param({"scale_down_policy": {"max_scale_change": 1}},
                 {"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}}},
                 id="change-only-keeps-default-window"),
])
def test_behavior(changes: dict, spec_part: dict) -> None:
    spec = hpa_manifest(parse_request(body(**changes)))["spec"]
    assert {k: spec[k] for k in ("behavior",) if k in spec} == spec_part


@pytest.mark.parametrize("kind, api_version", [
    ("Deployment", "apps/v1"), ("StatefulSet", "apps/v1"), ("ReplicaSet", "apps/v1"),
    ("Cluster", "dask.charmtx.com/v1alpha1")])
def test_scale_target_of_each_workload_type(kind: str, api_version: str) -> None:
    hpa = hpa_manifest(parse_request(body(workload_type=kind)))
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": api_version, "kind": kind, "name": "nginx-deployment"}
    assert hpa["metadata"]["name"] == f"autoscaler-{kind.lower()}-nginx-deployment"


def test_cluster_follows_desired_workers_as_an_object_metric() -> None:
    hpa = hpa_manifest(parse_request(body(workload_type="Cluster", target_cpu_percent=None,
                                          follow_desired_workers=True)))
    ref = {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "name": "nginx-deployment"}
    assert hpa["spec"]["metrics"] == [{"type": "Object", "object": {
        "metric": {"name": "desired_workers"}, "describedObject": ref,
        "target": {"type": "AverageValue", "averageValue": "1"}}}]


# ------------------------------------------------------------------ names and ids


@pytest.mark.parametrize("kind, name, expected", [
    ("Deployment", "web", "autoscaler-deployment-web"),
    ("StatefulSet", "a" * 230, "autoscaler-statefulset-" + "a" * 230),
    ("StatefulSet", "a" * 231, None),
])
def test_hpa_names_fit_and_stay_apart(kind: str, name: str, expected: str | None) -> None:
    got = hpa_name(kind, name)
    assert len(got) <= 253 and got[-1].isalnum()
    if expected:
        assert got == expected
    else:
        assert got != hpa_name(kind, name[:-1] + "b") and got.startswith("autoscaler-statefulset-aaa")


@pytest.mark.parametrize("text, expected", [
    ("default.autoscaler-deployment-web", ("default", "autoscaler-deployment-web")),
    ("ml.autoscaler-deployment-web.v2", ("ml", "autoscaler-deployment-web.v2")),
    ("autoscaler-a1b2c3d4", None), ("metrics", None), ("Default.x", None), (".x", None), ("ns.", None), ("", None),
])
def test_ids(text: str, expected) -> None:
    assert parse_id(text) == expected


# ------------------------------------------------------------------ round trip

names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
percent = st.one_of(st.none(), st.integers(1, 100))
policy = st.one_of(st.none(), st.builds(ScalePolicy, st.one_of(st.none(), st.integers(0, 3600)),
                                        st.integers(1, 50))
                   | st.builds(ScalePolicy, st.integers(0, 3600), st.none()))


@st.composite
def requests(draw) -> AutoscalerRequest:
    kind = draw(st.sampled_from(["Deployment", "StatefulSet", "ReplicaSet", "Cluster"]))
    low = draw(st.integers(1, 100))
    follow = kind == "Cluster" and draw(st.booleans())
    cpu, memory, gpu = draw(percent), draw(percent), draw(percent)
    if not (cpu or memory or gpu or follow):
        cpu = 50
    return AutoscalerRequest(draw(names), draw(names), kind, low, draw(st.integers(low, 1000)), cpu, memory, gpu,
                             follow, draw(policy), draw(policy))


@given(requests())
def test_an_hpa_stands_for_exactly_its_request(req: AutoscalerRequest) -> None:
    hpa = hpa_manifest(req)
    assert request_from_hpa(hpa) == req
    assert parse_request(req.to_json()) == req
