"""The HPA v2 shape: quantities, defaults and validation, table-driven.

Defaults and rules as the API server applies them (autoscaling/v2 defaults.go
and validation.go); every error names the field.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from dask_operator.core.hpa_quantity import InvalidQuantity, format_milli, milli, parse_quantity
from dask_operator.core.hpa_spec import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    HpaSpec,
    MetricTarget,
    ScalingPolicy,
    ScalingRules,
)
from dask_operator.errors import InvalidAutoscaling, InvalidSpec

# ---------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param("100m", 100, id="milli-suffix"),
        pytest.param("200m", 200, id="doc-200m"),
        pytest.param(2, 2000, id="int"),
        pytest.param("1.5", 1500, id="decimal"),
        pytest.param(0.5, 500, id="float"),
        pytest.param("1k", 1_000_000, id="kilo"),
        pytest.param("1Ki", 1_024_000, id="binary-kibi"),
        pytest.param("500Mi", 500 * 2**20 * 1000, id="binary-mebi"),
        pytest.param("1e3", 1_000_000, id="exponent"),
        pytest.param("2E-2", 20, id="negative-exponent"),
        pytest.param("0.0001", 1, id="finer-than-milli-rounds-up"),
        pytest.param("1n", 1, id="nano-rounds-up"),
        pytest.param("10u", 1, id="micro-rounds-up"),
    ],
)
def test_milli_reads_quantities_like_milli_value(value, expected):
    assert milli(value) == expected


@pytest.mark.parametrize("value", [True, None, "abc", "1x", "", "1.2.3", float("inf"), [1]],
                         ids=["bool", "none", "word", "bad-suffix", "empty", "two-dots", "inf", "list"])
def test_not_quantities_are_refused(value):
    with pytest.raises(InvalidQuantity):
        parse_quantity(value)


def test_parse_quantity_is_exact():
    assert parse_quantity("0.1") == Fraction(1, 10)


@pytest.mark.parametrize("value, text", [(1500, "1500m"), (2000, "2"), (0, "0"), (None, "<unknown>")])
def test_format_milli(value, text):
    assert format_milli(value) == text


# ---------------------------------------------------------------- defaults

PODS_METRIC = {"type": "Pods", "pods": {"metric": {"name": "tasks"},
                                        "target": {"type": "AverageValue", "averageValue": "10"}}}


def test_defaults_as_the_api_server_fills_them():
    spec = HpaSpec.from_dict({"maxReplicas": 5})
    assert spec == HpaSpec(max_replicas=5, min_replicas=1,
                           metrics=(MetricTarget("Resource", "cpu", "Utilization", 80),), behavior=None)


def test_behavior_directions_left_out_get_the_defaults():
    spec = HpaSpec.from_dict({"maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}})
    assert spec.behavior == Behavior(
        scale_up=ScalingRules((ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)), "Max", 0),
        scale_down=ScalingRules((ScalingPolicy("Percent", 100, 15),), "Max", 60),
    )


def test_default_scale_down_window_is_left_to_the_controller():
    """defaultHPAScaleDownRules leaves the window nil: the controller's flag (300 s) applies."""
    assert HpaSpec.from_dict({"maxReplicas": 5, "behavior": {}}).behavior == Behavior(DEFAULT_SCALE_UP,
                                                                                       DEFAULT_SCALE_DOWN)
    assert DEFAULT_SCALE_DOWN.stabilization_window_seconds is None


def test_a_whole_hpa_object_is_read_from_its_spec():
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
           "spec": {"scaleTargetRef": {"kind": "Cluster", "name": "dask"}, "maxReplicas": 3,
                    "metrics": [PODS_METRIC]}}
    spec = HpaSpec.from_dict(hpa)
    assert (spec.max_replicas, spec.metrics[0].key, spec.metrics[0].target) == (3, "pods/tasks", 10_000)


@pytest.mark.parametrize(
    "metric, key, description",
    [
        pytest.param({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 50}}},
            "cpu", "cpu resource utilization (percentage of request)", id="resource-utilization"),
        pytest.param({"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "AverageValue", "averageValue": "500Mi"}}}, "memory", "memory resource", id="resource-value"),
        pytest.param(PODS_METRIC, "pods/tasks", "pods metric tasks", id="pods"),
        pytest.param({"type": "Object", "object": {
            "metric": {"name": "desired_workers"},
            "describedObject": {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "name": "dask"},
            "target": {"type": "AverageValue", "averageValue": "1"}}},
            "object/Cluster/dask/desired_workers", "Cluster metric desired_workers", id="object"),
        pytest.param({"type": "External", "external": {
            "metric": {"name": "queue_messages_ready", "selector": {"matchLabels": {"queue": "worker_tasks"}}},
            "target": {"type": "AverageValue", "averageValue": "30"}}},
            "external/queue_messages_ready{queue=worker_tasks}",
            "external metric queue_messages_ready(queue=worker_tasks)", id="external-with-selector"),
        pytest.param({"type": "External", "external": {
            "metric": {"name": "q", "selector": {"matchExpressions": [
                {"key": "a", "operator": "In", "values": ["x", "y"]}, {"key": "b", "operator": "Exists"},
                {"key": "c", "operator": "DoesNotExist"}, {"key": "d", "operator": "NotIn", "values": ["z"]}]}},
            "target": {"type": "Value", "value": "3"}}},
            "external/q{a in (x,y),b,!c,d notin (z)}", "external metric q(a in (x,y),b,!c,d notin (z))",
            id="external-match-expressions"),
    ],
)
def test_metric_keys_and_descriptions(metric, key, description):
    target = HpaSpec.from_dict({"maxReplicas": 3, "metrics": [metric]}).metrics[0]
    assert (target.key, target.description) == (key, description)


# ---------------------------------------------------------------- validation


def with_metric(**target) -> dict:
    return {"maxReplicas": 3, "metrics": [{"type": "Pods", "pods": {"metric": {"name": "t"}, "target": target}}]}


def with_up(**rules) -> dict:
    return {"maxReplicas": 3, "behavior": {"scaleUp": rules}}


POLICY = {"type": "Pods", "value": 1, "periodSeconds": 15}


@pytest.mark.parametrize(
    "doc, field, message",
    [
        pytest.param(None, "policy", "must be a mapping", id="not-a-mapping"),
        pytest.param({}, "maxReplicas", "is required", id="no-max"),
        pytest.param({"maxReplicas": 0}, "maxReplicas", "greater than or equal to 1", id="max-zero"),
        pytest.param({"maxReplicas": 2, "minReplicas": 3}, "maxReplicas", "minReplicas (3)", id="max-below-min"),
        pytest.param({"maxReplicas": "3"}, "maxReplicas", "must be an integer", id="max-string"),
        pytest.param({"maxReplicas": 3, "minReplicas": True}, "minReplicas", "must be an integer", id="min-bool"),
        pytest.param({"maxReplicas": 3, "minReplicas": 0}, "minReplicas", "Object or External",
                     id="zero-min-needs-object-or-external"),
        pytest.param({"maxReplicas": 3, "replicas": 2}, "replicas", "unknown field", id="unknown-field"),
        pytest.param({"maxReplicas": 3, "metrics": {}}, "metrics", "must be a list", id="metrics-not-list"),
        pytest.param({"maxReplicas": 3, "metrics": [{"type": "ContainerResource"}]}, "metrics[0].type",
                     "Resource, Pods, Object, External", id="container-resource-unsupported"),
        pytest.param({"maxReplicas": 3, "metrics": [{"type": "Pods"}]}, "metrics[0].pods", "must be a mapping",
                     id="source-missing"),
        pytest.param({"maxReplicas": 3, "metrics": [{"type": "Pods", "resource": {}, "pods": {}}]},
                     "metrics[0].resource", "unknown field", id="other-source-set"),
        pytest.param(with_metric(type="Value", value=1), "metrics[0].pods.target.type", "must be AverageValue",
                     id="pods-value-target"),
        pytest.param(with_metric(type="AverageValue"), "metrics[0].pods.target.averageValue", "is required",
                     id="average-value-missing"),
        pytest.param(with_metric(type="AverageValue", averageValue="0"), "metrics[0].pods.target.averageValue",
                     "must be positive", id="average-value-zero"),
        pytest.param(with_metric(type="AverageValue", averageValue="ten"), "metrics[0].pods.target.averageValue",
                     "quantity", id="average-value-not-quantity"),
        pytest.param(with_metric(type="AverageValue", averageValue=1, value=2), "metrics[0].pods.target.value",
                     "may not be set with type AverageValue", id="two-target-fields"),
        pytest.param({"maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 0}}}]},
            "metrics[0].resource.target.averageUtilization", "greater than or equal to 1", id="utilization-zero"),
        pytest.param({"maxReplicas": 3, "metrics": [{"type": "Object", "object": {
            "metric": {"name": "m"}, "target": {"type": "Value", "value": 1}}}]},
            "metrics[0].object.describedObject", "must be a mapping", id="object-without-described-object"),
        pytest.param({"maxReplicas": 3, "metrics": [PODS_METRIC, PODS_METRIC]}, "metrics[1]",
                     "the same metric as metrics[0]", id="duplicate-metric"),
        pytest.param({"maxReplicas": 3, "metrics": [{"type": "Pods", "pods": {
            "metric": {"name": "t", "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
            "target": {"type": "AverageValue", "averageValue": 1}}}]},
            "metrics[0].pods.metric.selector.matchExpressions[0]", "operator", id="bad-selector-operator"),
        pytest.param(with_up(selectPolicy="Fastest"), "behavior.scaleUp.selectPolicy", "Max, Min or Disabled",
                     id="select-policy"),
        pytest.param(with_up(stabilizationWindowSeconds=3601), "behavior.scaleUp.stabilizationWindowSeconds",
                     "less than or equal to 3600", id="window-over-an-hour"),
        pytest.param(with_up(stabilizationWindowSeconds=-1), "behavior.scaleUp.stabilizationWindowSeconds",
                     "greater than or equal to 0", id="window-negative"),
        pytest.param(with_up(policies=[]), "behavior.scaleUp.policies", "at least one policy", id="no-policies"),
        pytest.param(with_up(policies=[{**POLICY, "type": "Replicas"}]), "behavior.scaleUp.policies[0].type",
                     "Pods or Percent", id="policy-type"),
        pytest.param(with_up(policies=[{**POLICY, "value": 0}]), "behavior.scaleUp.policies[0].value",
                     "greater than or equal to 1", id="policy-value-zero"),
        pytest.param(with_up(policies=[POLICY, {**POLICY, "periodSeconds": 1801}]),
                     "behavior.scaleUp.policies[1].periodSeconds", "less than or equal to 1800",
                     id="period-over-30-minutes"),
        pytest.param(with_up(policies=[{**POLICY, "periodSeconds": 0}]),
                     "behavior.scaleUp.policies[0].periodSeconds", "greater than or equal to 1", id="period-zero"),
        pytest.param(with_up(policies=[{**POLICY, "every": 1}]), "behavior.scaleUp.policies[0].every",
                     "unknown field", id="policy-unknown-field"),
        pytest.param(with_up(tolerance="-0.1"), "behavior.scaleUp.tolerance", ">= 0", id="negative-tolerance"),
        pytest.param({"maxReplicas": 3, "behavior": {"scaleSideways": {}}}, "behavior.scaleSideways",
                     "unknown field", id="behavior-unknown-direction"),
    ],
)
def test_invalid_specs_name_the_field(doc, field, message):
    with pytest.raises(InvalidAutoscaling) as raised:
        HpaSpec.from_dict(doc)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ") and message in str(raised.value)
    assert isinstance(raised.value, InvalidSpec) and raised.value.reason == "InvalidAutoscaling"


def test_path_prefixes_the_field_for_a_cluster_spec():
    with pytest.raises(InvalidAutoscaling) as raised:
        HpaSpec.from_dict({"maxReplicas": 3, "behavior": {"scaleDown": {"selectPolicy": "x"}}}, "spec.autoscaling")
    assert raised.value.field == "spec.autoscaling.behavior.scaleDown.selectPolicy"


def test_zero_min_replicas_with_an_external_metric_is_scale_to_zero():
    doc = {"minReplicas": 0, "maxReplicas": 3, "metrics": [{"type": "External", "external": {
        "metric": {"name": "q"}, "target": {"type": "Value", "value": "5"}}}]}
    assert HpaSpec.from_dict(doc).min_replicas == 0


def test_tolerance_is_kept_exact():
    spec = HpaSpec.from_dict(with_up(tolerance="0.05"))
    assert spec.behavior.scale_up.tolerance == Fraction(1, 20)
