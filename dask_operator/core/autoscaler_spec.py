"""Seed 004's autoscaler request, validated, and the HorizontalPodAutoscaler it is.

An autoscaler of the autoscaling API *is* one `autoscaling/v2`
HorizontalPodAutoscaler labelled `LABEL_MANAGED_BY=AUTOSCALING_API_MANAGER`:
the API keeps nothing else, so `request_from_hpa(hpa_manifest(r)) == r`.

Ids: `<namespace>.<hpa name>`. A namespace is a DNS-1123 label (no dot), so
the first dot splits an id unambiguously; the HPA name is
`autoscaler-<type>-<workload>` (shortened with a hash past 253 characters),
one per workload, so a second create for the same workload finds the first.

Request rules (seed 004; 0 or null means "not set" for a target and for
`max_scale_change`, as the seed's int32 zero values do):
- required: workload_name, workload_namespace, workload_type, min_replicas >= 1,
  max_replicas >= min_replicas; unknown fields are refused, at every level;
- targets: target_cpu_percent / target_memory_percent (Resource metrics,
  Utilization), target_gpu_percent (the Pods metric `GPU_METRIC`, DCGM's GPU
  utilization in percent, AverageValue), each 0-100; `follow_desired_workers`
  (Cluster only) is the Object metric `desired_workers` of the Cluster with an
  AverageValue of 1: one worker per desired worker. At least one is required;
- scale_up_policy / scale_down_policy: `stabilization_window_seconds`
  (0-3600; absent: Kubernetes' defaults, 0 up and 300 down) and
  `max_scale_change`, a Pods policy of that many replicas per
  `POLICY_PERIOD_SECONDS` (the HPA's default sync period: one scaling step).
Integers are read as JSON Schema reads them (3 and 3.0; not true, not "3").
Every problem found is reported, joined by "; ", in `InvalidAutoscalerRequest`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import constants as c
from ..errors import InvalidAutoscalerRequest
from .k8s_names import DNS_LABEL_RE, DNS_SUBDOMAIN_RE

# Proposed for constants.py; defined here until then.
LABEL_MANAGED_BY, AUTOSCALING_API_MANAGER = c.LABEL_MANAGED_BY, c.AUTOSCALING_API_MANAGER
AUTOSCALER_SELECTOR = f"{LABEL_MANAGED_BY}={AUTOSCALING_API_MANAGER}"

HPA_API_VERSION = "autoscaling/v2"
GPU_METRIC = "DCGM_FI_DEV_GPU_UTIL"
DESIRED_WORKERS_METRIC = "desired_workers"
POLICY_PERIOD_SECONDS = 15
MAX_WINDOW_SECONDS = 3600
INT32_MAX = 2**31 - 1
MAX_NAME = 253
NAME_PREFIX = "autoscaler-"



@dataclass(frozen=True)
class Workload:
    api_version: str
    plural: str


WORKLOADS: dict[str, Workload] = {
    "Deployment": Workload("apps/v1", "deployments"),
    "StatefulSet": Workload("apps/v1", "statefulsets"),
    "ReplicaSet": Workload("apps/v1", "replicasets"),
    c.KIND: Workload(c.API_VERSION, c.PLURAL),
}
TARGETS = ("target_cpu_percent", "target_memory_percent", "target_gpu_percent")
POLICY_FIELDS = ("stabilization_window_seconds", "max_scale_change")
FIELDS = ("workload_name", "workload_namespace", "workload_type", "min_replicas", "max_replicas", *TARGETS,
          "follow_desired_workers", "scale_up_policy", "scale_down_policy")


@dataclass(frozen=True)
class ScalePolicy:
    stabilization_window_seconds: int | None = None
    max_scale_change: int | None = None  # None: Kubernetes' default policies

    def to_json(self) -> dict:
        return {"stabilization_window_seconds": self.stabilization_window_seconds,
                "max_scale_change": self.max_scale_change}


@dataclass(frozen=True)
class AutoscalerRequest:
    workload_name: str
    workload_namespace: str
    workload_type: str
    min_replicas: int
    max_replicas: int
    target_cpu_percent: int | None = None
    target_memory_percent: int | None = None
    target_gpu_percent: int | None = None
    follow_desired_workers: bool = False
    scale_up_policy: ScalePolicy | None = None
    scale_down_policy: ScalePolicy | None = None

    @property
    def workload(self) -> Workload:
        return WORKLOADS[self.workload_type]

    def to_json(self) -> dict:
        """The request as a create body (normalized: every field, null where unset)."""
        out: dict[str, Any] = {f: getattr(self, f) for f in FIELDS}
        for f in ("scale_up_policy", "scale_down_policy"):
            out[f] = out[f].to_json() if out[f] else None
        return out


# ------------------------------------------------------------------ validation


def _int(value: Any) -> int | None:
    """An integer as JSON Schema reads one (3 and 3.0, not True), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if isinstance(value, int) or value.is_integer() else None


def _unknown(body: Mapping, known: tuple[str, ...], where: str = "") -> list[str]:
    extra = sorted(str(k) for k in body if k not in known)
    return [f"unknown field(s){' in ' + where if where else ''}: {', '.join(extra)}"] if extra else []


def _percent(body: Mapping, field: str, problems: list[str]) -> int | None:
    raw = body.get(field)
    value = _int(raw)
    if raw is not None and (value is None or not 0 <= value <= 100):
        problems.append(f"{field} must be an integer between 0 and 100")
        return None
    return value or None


def _policy(body: Mapping, field: str, problems: list[str]) -> ScalePolicy | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append(f"{field} must be an object")
        return None
    problems += _unknown(value, POLICY_FIELDS, field)
    raw_window, raw_change = value.get("stabilization_window_seconds"), value.get("max_scale_change")
    window, change = _int(raw_window), _int(raw_change)
    if raw_window is not None and (window is None or not 0 <= window <= MAX_WINDOW_SECONDS):
        problems.append(f"{field}.stabilization_window_seconds must be an integer between 0 and {MAX_WINDOW_SECONDS}")
        window = None
    if raw_change is not None and (change is None or not 0 <= change <= INT32_MAX):
        problems.append(f"{field}.max_scale_change must be a non-negative integer (0: no limit)")
        change = None
    if window is None and not change:
        return None
    return ScalePolicy(window, change or None)


def _name(body: Mapping, field: str, pattern: re.Pattern, what: str, problems: list[str]) -> str:
    value = body.get(field)
    if value is None or value == "":
        problems.append(f"{field} is required")
    elif not isinstance(value, str) or not pattern.fullmatch(value):
        problems.append(f"{field} must be {what}")
    else:
        return value
    return ""


def _replicas(body: Mapping, problems: list[str]) -> tuple[int, int]:
    found = []
    for field in ("min_replicas", "max_replicas"):
        raw, value = body.get(field), _int(body.get(field))
        if raw is None:
            problems.append(f"{field} is required")
        elif value is None or value > INT32_MAX:
            problems.append(f"{field} must be an integer")
            value = None
        found.append(value)
    low, high = found
    if low is not None and low < 1:
        problems.append("min_replicas must be at least 1")
    if low is not None and high is not None and high < low:
        problems.append("max_replicas must be greater than or equal to min_replicas")
    return low or 0, high or 0


def parse_request(body: Any) -> AutoscalerRequest:
    """The request in `body` (a decoded JSON value), or InvalidAutoscalerRequest."""
    if not isinstance(body, Mapping):
        raise InvalidAutoscalerRequest("request body must be a JSON object")
    problems = _unknown(body, FIELDS)
    name = _name(body, "workload_name", DNS_SUBDOMAIN_RE, "a Kubernetes object name (DNS-1123 subdomain)",
                 problems)
    namespace = _name(body, "workload_namespace", DNS_LABEL_RE, "a Kubernetes namespace name (DNS-1123 label)",
                      problems)
    kind = body.get("workload_type")
    known = isinstance(kind, str) and kind in WORKLOADS  # an object or array is not a key (nor hashable)
    if kind is None or kind == "":
        problems.append("workload_type is required")
    elif not known:
        problems.append(f"workload_type must be one of {', '.join(WORKLOADS)}")
    low, high = _replicas(body, problems)
    cpu, memory, gpu = (_percent(body, f, problems) for f in TARGETS)
    follow = body.get("follow_desired_workers")
    if follow is not None and not isinstance(follow, bool):
        problems.append("follow_desired_workers must be true or false")
    elif follow and known and kind != c.KIND:
        problems.append(f"follow_desired_workers applies to workload_type {c.KIND} only")
    follow = follow is True
    up, down = _policy(body, "scale_up_policy", problems), _policy(body, "scale_down_policy", problems)
    target_problem = any(p.startswith((*TARGETS, "follow_desired_workers")) for p in problems)
    if cpu is None and memory is None and gpu is None and not follow and not target_problem:
        problems.append("at least one target is required: target_cpu_percent, target_memory_percent, "
                        f"target_gpu_percent (or follow_desired_workers for a {c.KIND})")
    if problems:
        raise InvalidAutoscalerRequest("; ".join(problems))
    return AutoscalerRequest(name, namespace, kind, low, high, cpu, memory, gpu, follow, up, down)


# ------------------------------------------------------------------ names and ids


def hpa_name(workload_type: str, workload_name: str) -> str:
    """`autoscaler-<type>-<name>`, at most 253 characters (a hash keeps long names apart)."""
    name = f"{NAME_PREFIX}{workload_type.lower()}-{workload_name}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:MAX_NAME - 11].rstrip('-.')}-{digest}"


def autoscaler_id(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


def parse_id(text: str) -> tuple[str, str] | None:
    """(namespace, HPA name) of an id, None when it cannot be one."""
    namespace, dot, name = (text or "").partition(".")
    if not dot or not DNS_LABEL_RE.fullmatch(namespace) or not DNS_SUBDOMAIN_RE.fullmatch(name):
        return None
    return namespace, name


# ------------------------------------------------------------------ request <-> HPA


def _behavior(policy: ScalePolicy) -> dict:
    rules: dict[str, Any] = {}
    if policy.stabilization_window_seconds is not None:
        rules["stabilizationWindowSeconds"] = policy.stabilization_window_seconds
    if policy.max_scale_change:
        rules["policies"] = [{"type": "Pods", "value": policy.max_scale_change,
                              "periodSeconds": POLICY_PERIOD_SECONDS}]
    return rules


def hpa_manifest(req: AutoscalerRequest) -> dict:
    """The HorizontalPodAutoscaler that is this autoscaler."""
    ref = {"apiVersion": req.workload.api_version, "kind": req.workload_type, "name": req.workload_name}
    metrics: list[dict] = [
        {"type": "Resource", "resource": {"name": name, "target": {"type": "Utilization",
                                                                   "averageUtilization": value}}}
        for name, value in (("cpu", req.target_cpu_percent), ("memory", req.target_memory_percent)) if value]
    if req.target_gpu_percent:
        metrics.append({"type": "Pods", "pods": {"metric": {"name": GPU_METRIC}, "target": {
            "type": "AverageValue", "averageValue": str(req.target_gpu_percent)}}})
    if req.follow_desired_workers:
        metrics.append({"type": "Object", "object": {
            "metric": {"name": DESIRED_WORKERS_METRIC}, "describedObject": ref,
            "target": {"type": "AverageValue", "averageValue": "1"}}})
    spec: dict[str, Any] = {"scaleTargetRef": ref, "minReplicas": req.min_replicas,
                            "maxReplicas": req.max_replicas, "metrics": metrics}
    behavior = {key: _behavior(p) for key, p in (("scaleUp", req.scale_up_policy),
                                                 ("scaleDown", req.scale_down_policy)) if p}
    if behavior:
        spec["behavior"] = behavior
    return {"apiVersion": HPA_API_VERSION, "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": hpa_name(req.workload_type, req.workload_name),
                         "namespace": req.workload_namespace,
                         "labels": {LABEL_MANAGED_BY: AUTOSCALING_API_MANAGER}},
            "spec": spec}


def _policy_from(rules: Mapping | None) -> ScalePolicy | None:
    if not rules:
        return None
    pods = [p.get("value") for p in rules.get("policies") or () if p.get("type") == "Pods"]
    policy = ScalePolicy(rules.get("stabilizationWindowSeconds"), pods[0] if pods else None)
    return policy if policy != ScalePolicy() else None


def request_from_hpa(hpa: Mapping) -> AutoscalerRequest:
    """The request an HPA of ours stands for (metrics we do not make are left out)."""
    spec, ref = hpa.get("spec") or {}, (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    found: dict[str, Any] = {}
    for m in spec.get("metrics") or ():
        kind = m.get("type")
        target = ((m.get(str(kind).lower()) or {}).get("target") or {})
        if kind == "Resource" and m["resource"].get("name") in ("cpu", "memory"):
            found[f"target_{m['resource']['name']}_percent"] = target.get("averageUtilization")
        elif kind == "Pods" and m["pods"].get("metric", {}).get("name") == GPU_METRIC:
            value = str(target.get("averageValue", ""))
            found["target_gpu_percent"] = int(value) if value.isdigit() else None
        elif kind == "Object" and m["object"].get("metric", {}).get("name") == DESIRED_WORKERS_METRIC:
            found["follow_desired_workers"] = True
    behavior = spec.get("behavior") or {}
    return AutoscalerRequest(
        ref.get("name", ""), (hpa.get("metadata") or {}).get("namespace", ""), ref.get("kind", ""),
        spec.get("minReplicas", 1), spec.get("maxReplicas", 0), **found,
        scale_up_policy=_policy_from(behavior.get("scaleUp")),
        scale_down_policy=_policy_from(behavior.get("scaleDown")))


def is_ours(hpa: Mapping) -> bool:
    return ((hpa.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY) == AUTOSCALING_API_MANAGER
