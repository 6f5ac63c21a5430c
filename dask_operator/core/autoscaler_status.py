"""An autoscaler's status body (seed 004) from its HPA and the HPA's Events.

Everything comes from what Kubernetes recorded; nothing is estimated:
- replicas, `lastScaleTime` and conditions: the HPA's status once the
  controller has evaluated it (it has conditions); before, `desired_replicas` is
  null and `current_replicas` the workload's own count when the caller read it;
- `current_cpu_percent` / `current_memory_percent`: the Resource metrics'
  `averageUtilization` in `status.currentMetrics`; `current_gpu_percent`: the
  Pods metric `GPU_METRIC`'s `averageValue`. A target without a current value
  is null and is listed in `unavailable_metrics` with the HPA's own reason
  (its ScalingActive condition, else its latest FailedGet*Metric Event), never 0;
- `scale_up_count` / `scale_down_count`: the HPA controller's
  `SuccessfulRescale` Events (each Event's `count`), told apart by the reason the
  controller writes ("<metric> above target" and "below Spec.MinReplicas" are
  up, "All metrics below target" and "above Spec.MaxReplicas" down). They count
  the Events the API server still holds (`--event-ttl`, 1 h by default);
- `status`: `pending` until the controller has evaluated the HPA, `inactive`
  while AbleToScale or ScalingActive is False, else `active`;
- `updated_at`: the latest time any manager wrote the HPA (`managedFields`).

Pure: timestamps are compared as the RFC 3339 strings Kubernetes writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .autoscaler_spec import GPU_METRIC, AutoscalerRequest, autoscaler_id, request_from_hpa
from .hpa_quantity import InvalidQuantity, parse_quantity

RESCALE = "SuccessfulRescale"
FAILED = {"FailedGetResourceMetric", "FailedGetPodsMetric", "FailedGetObjectMetric"}


def _number(value: Any) -> int | float | None:
    try:
        exact = parse_quantity(value)
    except InvalidQuantity:
        return None
    return int(exact) if exact.denominator == 1 else round(float(exact), 2)


def current_values(status: Mapping) -> dict[str, int | float]:
    """{"cpu", "memory", "gpu", "desired_workers"} -> the HPA's current value of each it read."""
    out: dict[str, int | float] = {}
    for m in status.get("currentMetrics") or ():
        kind = m.get("type")
        body = m.get(str(kind).lower()) or {}
        current = body.get("current") or {}
        if kind == "Resource" and body.get("name") in ("cpu", "memory") and "averageUtilization" in current:
            out[body["name"]] = current["averageUtilization"]
        elif kind == "Pods" and (body.get("metric") or {}).get("name") == GPU_METRIC:
            value = _number(current.get("averageValue"))
            if value is not None:
                out["gpu"] = value
        elif kind == "Object" and (current.get("value") is not None or current.get("averageValue") is not None):
            out["desired_workers"] = _number(current.get("value", current.get("averageValue")))
    return out


def wanted(req: AutoscalerRequest) -> list[str]:
    """The metrics the request targets, by the keys of `current_values`."""
    return [key for key, on in (("cpu", req.target_cpu_percent), ("memory", req.target_memory_percent),
                                ("gpu", req.target_gpu_percent), ("desired_workers", req.follow_desired_workers))
            if on]


def failed_metric(reason: str, message: str) -> str | None:
    """Which of our metrics a FailedGet* condition or Event is about."""
    if reason == "FailedGetPodsMetric":
        return "gpu"
    if reason == "FailedGetObjectMetric":
        return "desired_workers"
    if reason == "FailedGetResourceMetric":
        for name in ("cpu", "memory"):
            if f"failed to get {name} " in message:
                return name
    return None


def _when(event: Mapping) -> str:
    return event.get("lastTimestamp") or (event.get("series") or {}).get("lastObservedTime") \
        or event.get("eventTime") or event.get("firstTimestamp") or ""


def _count(event: Mapping) -> int:
    return int((event.get("series") or {}).get("count") or event.get("count") or 1)


def rescale_direction(message: str) -> str | None:
    """"up" or "down" for a SuccessfulRescale message ("New size: 3; reason: ...")."""
    reason = message.partition("reason: ")[2]
    if "below Spec.MinReplicas" in reason or reason.endswith("above target"):
        return "up"
    if "above Spec.MaxReplicas" in reason or "All metrics below target" in reason:
        return "down"
    return None


def own_events(events: Iterable[Mapping], uid: str) -> list[Mapping]:
    return [e for e in events if (e.get("involvedObject") or {}).get("uid") == uid]


def count_rescales(events: Iterable[Mapping]) -> tuple[int, int]:
    """(scale ups, scale downs) recorded by the HPA controller's Events."""
    ups = downs = 0
    for e in events:
        if e.get("reason") != RESCALE:
            continue
        direction = rescale_direction(e.get("message") or "")
        ups += _count(e) if direction == "up" else 0
        downs += _count(e) if direction == "down" else 0
    return ups, downs


def _conditions(status: Mapping) -> list[dict]:
    return [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
             "message": c.get("message"), "last_transition_time": c.get("lastTransitionTime")}
            for c in status.get("conditions") or ()]


def unavailable(req: AutoscalerRequest, status: Mapping, events: Sequence[Mapping]) -> dict[str, str]:
    """Each targeted metric without a current value -> why, in the HPA's words."""
    values = current_values(status)
    missing = [m for m in wanted(req) if m not in values]
    why: dict[str, str] = {}
    for cond in status.get("conditions") or ():
        if cond.get("type") == "ScalingActive" and cond.get("status") == "False":
            metric = failed_metric(cond.get("reason", ""), cond.get("message", ""))
            if metric in missing:
                why[metric] = f"{cond.get('reason')}: {cond.get('message')}"
    for e in sorted(events, key=_when, reverse=True):
        metric = failed_metric(e.get("reason", ""), e.get("message", "")) if e.get("reason") in FAILED else None
        if metric in missing and metric not in why:
            why[metric] = f"{e.get('reason')}: {e.get('message')}"
    for m in missing:
        why.setdefault(m, "the HPA reports no current value for this metric")
    return why


def state(status: Mapping, missing: Mapping[str, str]) -> tuple[str, str]:
    """(status, message) of the autoscaler."""
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    for kind in ("AbleToScale", "ScalingActive"):
        cond = conditions.get(kind)
        if cond and cond.get("status") == "False":
            return "inactive", f"Autoscaler is inactive: {cond.get('reason')}: {cond.get('message')}"
    if (conditions.get("ScalingActive") or {}).get("status") != "True":
        return "pending", "Autoscaler created; the HPA controller has not evaluated it yet"
    if missing:
        return "active", f"Autoscaler is active; no current value for: {', '.join(sorted(missing))}"
    return "active", "Autoscaler is active"


def last_update(meta: Mapping) -> str | None:
    times = [f.get("time") for f in meta.get("managedFields") or () if f.get("time")]
    return max(times) if times else None


def autoscaler_view(hpa: Mapping, events: Iterable[Mapping] = (), observed_replicas: int | None = None) -> dict:
    """Seed 004's status body of the autoscaler that `hpa` is (events: any, filtered by the HPA's uid)."""
    meta, status = hpa.get("metadata") or {}, hpa.get("status") or {}
    mine = own_events(events, meta.get("uid", ""))
    req = request_from_hpa(hpa)
    values = current_values(status)
    missing = unavailable(req, status, mine)
    phase, message = state(status, missing)
    ups, downs = count_rescales(mine)
    evaluated = bool(status.get("conditions"))
    details = {
        "created_at": meta.get("creationTimestamp"),
        "updated_at": last_update(meta),
        # Not yet evaluated, the HPA's status holds only defaults (desiredReplicas 0): say nothing.
        "current_replicas": status.get("currentReplicas", 0) if evaluated else observed_replicas,
        "desired_replicas": status.get("desiredReplicas") if evaluated else None,
        "current_cpu_percent": values.get("cpu"),
        "current_memory_percent": values.get("memory"),
        "current_gpu_percent": values.get("gpu"),
        "last_scale_time": status.get("lastScaleTime"),
        "scale_up_count": ups,
        "scale_down_count": downs,
        "hpa_name": meta.get("name"),
        "spec": req.to_json(),
        "conditions": _conditions(status),
        "unavailable_metrics": missing,
    }
    return {"autoscaling_id": autoscaler_id(meta.get("namespace", ""), meta.get("name", "")),
            "status": phase, "message": message, "details": details}


def summary(views: Sequence[Mapping]) -> dict:
    """Seed 004's aggregate metrics over some autoscalers' views; no CPU value: null."""
    cpu = [v["details"]["current_cpu_percent"] for v in views if v["details"]["current_cpu_percent"] is not None]
    return {"total_autoscalers": len(views),
            "active_autoscalers": sum(v["status"] == "active" for v in views),
            "total_scale_ups": sum(v["details"]["scale_up_count"] for v in views),
            "total_scale_downs": sum(v["details"]["scale_down_count"] for v in views),
            "average_cpu_utilization": round(sum(cpu) / len(cpu), 1) if cpu else None}
