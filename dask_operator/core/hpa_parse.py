"""Reading and validating the HPA v2 shape into an ``HpaSpec``.

``parse_hpa_spec`` (also ``HpaSpec.from_dict``) reads a bare spec
(``minReplicas``, ``maxReplicas``, ``metrics``, ``behavior``) or a whole
HorizontalPodAutoscaler object, whose ``spec`` is read, and raises
``InvalidAutoscaling`` naming the first bad field, e.g.
``behavior.scaleUp.policies[0].periodSeconds: must be less than or equal to
1800, got 3600``. Unknown fields are refused, not ignored; ``scaleTargetRef``
is accepted and not read.

The API server's validation (``pkg/apis/autoscaling/validation``):

- ``minReplicas`` >= 1, or 0 with at least one Object or External metric
  (scaling to zero, the ``HPAScaleToZero`` gate); ``maxReplicas`` >= 1 and
  >= ``minReplicas``;
- Resource targets Utilization (``averageUtilization`` >= 1, may exceed 100)
  or AverageValue; Pods target AverageValue; Object and External target Value
  or AverageValue; every value > 0; only the field the type names is set.
  ContainerResource metrics are not supported by this engine. Two entries for
  the same metric (same ``MetricTarget.key``) are refused;
- ``stabilizationWindowSeconds`` in 0..3600; ``selectPolicy`` Max, Min or
  Disabled; ``policies``, when given, at least one; a policy's ``type`` Pods
  or Percent, ``value`` >= 1, ``periodSeconds`` in 1..1800; ``tolerance`` >= 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dask_operator.core.hpa_quantity import InvalidQuantity, milli, parse_quantity
from dask_operator.core.hpa_spec import (
    AVERAGE_VALUE,
    DEFAULT_METRICS,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    EXTERNAL,
    MAX_PERIOD_SECONDS,
    MAX_WINDOW_SECONDS,
    OBJECT,
    PODS,
    POLICY_PERCENT,
    POLICY_PODS,
    RESOURCE,
    SELECT_DISABLED,
    SELECT_MAX,
    SELECT_MIN,
    UTILIZATION,
    VALUE,
    Behavior,
    HpaSpec,
    MetricTarget,
    ScalingPolicy,
    ScalingRules,
)
from dask_operator.errors import InvalidAutoscaling

_TARGET_TYPES = {RESOURCE: (UTILIZATION, AVERAGE_VALUE), PODS: (AVERAGE_VALUE,),
                 OBJECT: (VALUE, AVERAGE_VALUE), EXTERNAL: (VALUE, AVERAGE_VALUE)}
_TARGET_FIELD = {UTILIZATION: "averageUtilization", AVERAGE_VALUE: "averageValue", VALUE: "value"}


def parse_hpa_spec(doc: Any, path: str = "") -> HpaSpec:
    """Read and validate the HPA v2 shape; ``path`` prefixes field names in errors."""
    if isinstance(doc, Mapping) and doc.get("kind") == "HorizontalPodAutoscaler":
        return parse_hpa_spec(doc.get("spec"), _join(path, "spec"))
    spec = _mapping(doc, path or "policy")
    _known(spec, {"minReplicas", "maxReplicas", "metrics", "behavior", "scaleTargetRef"}, path)
    minimum = _int(spec, "minReplicas", path, default=1, low=0)
    maximum = _int(spec, "maxReplicas", path, low=1)
    if maximum < minimum:
        raise InvalidAutoscaling(_join(path, "maxReplicas"),
                                 f"must be greater than or equal to minReplicas ({minimum}), got {maximum}")
    metrics = _metrics(spec.get("metrics"), _join(path, "metrics"))
    if minimum == 0 and not any(m.type in (OBJECT, EXTERNAL) for m in metrics):
        raise InvalidAutoscaling(_join(path, "minReplicas"), "may be 0 only with at least one Object or "
                                 "External metric (scaling to zero, the HPAScaleToZero feature gate)")
    behavior = spec.get("behavior")
    return HpaSpec(max_replicas=maximum, min_replicas=minimum, metrics=metrics,
                   behavior=None if behavior is None else _behavior(behavior, _join(path, "behavior")))


def _metrics(raw: Any, path: str) -> tuple[MetricTarget, ...]:
    if raw is None or raw == []:
        return DEFAULT_METRICS
    if not isinstance(raw, list):
        raise InvalidAutoscaling(path, f"must be a list, got {type(raw).__name__}")
    metrics = tuple(_metric(item, f"{path}[{i}]") for i, item in enumerate(raw))
    seen: dict[str, int] = {}
    for i, metric in enumerate(metrics):
        if metric.key in seen:
            raise InvalidAutoscaling(f"{path}[{i}]", f"the same metric as {path}[{seen[metric.key]}] ({metric.key})")
        seen[metric.key] = i
    return metrics


def _metric(raw: Any, path: str) -> MetricTarget:
    item = _mapping(raw, path)
    kind = item.get("type")
    if kind not in _TARGET_TYPES:
        raise InvalidAutoscaling(_join(path, "type"), f"must be one of Resource, Pods, Object, External, got {kind!r}")
    source_key = kind[0].lower() + kind[1:]
    _known(item, {"type", source_key}, path)
    source_path = _join(path, source_key)
    source = _mapping(item.get(source_key), source_path)
    if kind == RESOURCE:
        _known(source, {"name", "target"}, source_path)
        name, selector, described = _string(source, "name", source_path), "", ("", "")
    else:
        fields = {"metric", "target"} | ({"describedObject"} if kind == OBJECT else set())
        _known(source, fields, source_path)
        metric_path = _join(source_path, "metric")
        metric = _mapping(source.get("metric"), metric_path)
        _known(metric, {"name", "selector"}, metric_path)
        name = _string(metric, "name", metric_path)
        selector = _selector(metric.get("selector"), _join(metric_path, "selector"))
        described = ("", "")
        if kind == OBJECT:
            described_path = _join(source_path, "describedObject")
            obj = _mapping(source.get("describedObject"), described_path)
            _known(obj, {"apiVersion", "kind", "name"}, described_path)
            described = (_string(obj, "kind", described_path), _string(obj, "name", described_path))
    target_type, target = _target(source.get("target"), _join(source_path, "target"), _TARGET_TYPES[kind])
    return MetricTarget(kind, name, target_type, target, selector, *described)


def _target(raw: Any, path: str, allowed: tuple[str, ...]) -> tuple[str, int]:
    target = _mapping(raw, path)
    _known(target, {"type", "averageUtilization", "averageValue", "value"}, path)
    kind = target.get("type")
    if kind not in allowed:
        raise InvalidAutoscaling(_join(path, "type"), f"must be {' or '.join(allowed)}, got {kind!r}")
    key = _TARGET_FIELD[kind]
    if extra := sorted(k for k in target if k not in ("type", key)):
        raise InvalidAutoscaling(_join(path, extra[0]), f"may not be set with type {kind} (set {key})")
    if kind == UTILIZATION:
        return kind, _int(target, key, path, low=1)
    if key not in target:
        raise InvalidAutoscaling(_join(path, key), f"is required with type {kind}")
    try:
        value = milli(target[key])
    except InvalidQuantity as e:
        raise InvalidAutoscaling(_join(path, key), str(e)) from None
    if value <= 0:
        raise InvalidAutoscaling(_join(path, key), f"must be positive, got {target[key]!r}")
    return kind, value


def _selector(raw: Any, path: str) -> str:
    """A label selector as its canonical string (``a=b,c in (d,e)``); "" for none."""
    if raw is None:
        return ""
    selector = _mapping(raw, path)
    _known(selector, {"matchLabels", "matchExpressions"}, path)
    labels = _mapping(selector.get("matchLabels") or {}, _join(path, "matchLabels"))
    parts = [f"{k}={labels[k]}" for k in sorted(labels)]
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        expr_path = f"{_join(path, 'matchExpressions')}[{i}]"
        expr = _mapping(expr, expr_path)
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if not isinstance(key, str) or op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise InvalidAutoscaling(expr_path, "needs a key and an operator In, NotIn, Exists or DoesNotExist")
        parts.append({"Exists": key, "DoesNotExist": f"!{key}"}.get(
            op, f"{key} {'in' if op == 'In' else 'notin'} ({','.join(map(str, values))})"))
    return ",".join(parts)


def _behavior(raw: Any, path: str) -> Behavior:
    behavior = _mapping(raw, path)
    _known(behavior, {"scaleUp", "scaleDown"}, path)
    return Behavior(scale_up=_rules(behavior.get("scaleUp"), _join(path, "scaleUp"), DEFAULT_SCALE_UP),
                    scale_down=_rules(behavior.get("scaleDown"), _join(path, "scaleDown"), DEFAULT_SCALE_DOWN))


def _rules(raw: Any, path: str, default: ScalingRules) -> ScalingRules:
    if raw is None:
        return default
    rules = _mapping(raw, path)
    _known(rules, {"stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance"}, path)
    select = rules.get("selectPolicy", default.select_policy)
    if select not in (SELECT_MAX, SELECT_MIN, SELECT_DISABLED):
        raise InvalidAutoscaling(_join(path, "selectPolicy"), f"must be Max, Min or Disabled, got {select!r}")
    window = default.stabilization_window_seconds
    if rules.get("stabilizationWindowSeconds") is not None:
        window = _int(rules, "stabilizationWindowSeconds", path, low=0, high=MAX_WINDOW_SECONDS)
    policies = default.policies
    if "policies" in rules:
        raw_policies = rules["policies"]
        policies_path = _join(path, "policies")
        if not isinstance(raw_policies, list) or not raw_policies:
            raise InvalidAutoscaling(policies_path, "must be a list of at least one policy")
        policies = tuple(_policy(p, f"{policies_path}[{i}]") for i, p in enumerate(raw_policies))
    tolerance = default.tolerance
    if rules.get("tolerance") is not None:
        try:
            tolerance = parse_quantity(rules["tolerance"])
        except InvalidQuantity as e:
            raise InvalidAutoscaling(_join(path, "tolerance"), str(e)) from None
        if tolerance < 0:
            raise InvalidAutoscaling(_join(path, "tolerance"), f"must be >= 0, got {rules['tolerance']!r}")
    return ScalingRules(policies, select, window, tolerance)


def _policy(raw: Any, path: str) -> ScalingPolicy:
    policy = _mapping(raw, path)
    _known(policy, {"type", "value", "periodSeconds"}, path)
    kind = policy.get("type")
    if kind not in (POLICY_PODS, POLICY_PERCENT):
        raise InvalidAutoscaling(_join(path, "type"), f"must be Pods or Percent, got {kind!r}")
    return ScalingPolicy(kind, _int(policy, "value", path, low=1),
                         _int(policy, "periodSeconds", path, low=1, high=MAX_PERIOD_SECONDS))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(value: Any, path: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InvalidAutoscaling(path, f"must be a mapping, got {'nothing' if value is None else repr(value)}")
    return value


def _known(mapping: Mapping, known: set[str], path: str) -> None:
    if unknown := sorted(str(k) for k in mapping if k not in known):
        raise InvalidAutoscaling(_join(path, unknown[0]), f"unknown field (known: {', '.join(sorted(known))})")


def _string(mapping: Mapping, key: str, path: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidAutoscaling(_join(path, key), f"must be a non-empty string, got {value!r}")
    return value


def _int(mapping: Mapping, key: str, path: str, default: int | None = None,
         low: int | None = None, high: int | None = None) -> int:
    value = mapping.get(key, default)
    where = _join(path, key)
    if value is None:
        raise InvalidAutoscaling(where, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAutoscaling(where, f"must be an integer, got {value!r}")
    if low is not None and value < low:
        raise InvalidAutoscaling(where, f"must be greater than or equal to {low}, got {value}")
    if high is not None and value > high:
        raise InvalidAutoscaling(where, f"must be less than or equal to {high}, got {value}")
    return value
