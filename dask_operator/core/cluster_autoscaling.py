"""A Cluster's own autoscaler (``spec.autoscaling``), as pure rules around the HPA engine.

- The metric is the scheduler's adaptive target, ``desired_workers``, as an
  HPA Object metric on the Cluster with target ``AverageValue: 1``
  (`hpa_spec_of`): the engine (`hpa_policy.decide`) then proposes the
  scheduler's target, with the HPA's tolerance, stabilization windows,
  policies and bounds, exactly as a real HPA on that metric would.
- A sync without a target (the scheduler did not answer) is a missing
  metric: the engine changes nothing, and nothing is invented.
- An HPA whose ``scaleTargetRef`` is the Cluster wins (`hpas_targeting`):
  the Cluster's own autoscaler stands aside and says so in its condition.
- What a sync records (`autoscaling_status`): ``status.autoscaling`` (the
  target, the decided replicas, reason, message, when the decision last
  changed, when it last scaled) and the ``Autoscaling`` condition (True while
  the autoscaler is in control; False with ``HPAConflict``,
  ``InvalidAutoscaling`` or the engine's failure reason). Only a changed
  decision is written (`status_changed`), so an idle Cluster costs no writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dask_operator import constants as c
from dask_operator.core.hpa_inputs import MetricSample
from dask_operator.core.hpa_policy import SCALING_ACTIVE, Decision
from dask_operator.core.hpa_spec import HpaSpec
from dask_operator.core.status import condition, conditions_by_type

METRIC = "desired_workers"
HPA_CONFLICT = "HPAConflict"


def hpa_spec_of(cluster_name: str, autoscaling: Mapping) -> HpaSpec:
    """The HPA the Cluster's ``spec.autoscaling`` stands for; InvalidAutoscaling names a bad field."""
    doc: dict[str, Any] = {
        "minReplicas": autoscaling.get("minReplicas", 1),
        "maxReplicas": autoscaling.get("maxReplicas"),
        "metrics": [{"type": "Object", "object": {
            "describedObject": {"apiVersion": c.API_VERSION, "kind": c.KIND, "name": cluster_name},
            "metric": {"name": METRIC}, "target": {"type": "AverageValue", "averageValue": "1"}}}],
    }
    if autoscaling.get("behavior") is not None:
        doc["behavior"] = autoscaling["behavior"]
    return HpaSpec.from_dict(doc, path="spec.autoscaling")


def samples(spec: HpaSpec, target: int | None) -> dict[str, MetricSample]:
    """The engine's metric input: the target in milli-units, or nothing (missing)."""
    if target is None:
        return {}
    return {spec.metrics[0].key: MetricSample(value=target * 1000)}


def hpas_targeting(hpas: Iterable[Mapping], cluster_name: str) -> list[str]:
    """Names of the HPAs (same namespace) whose scaleTargetRef is this Cluster, sorted."""
    found = []
    for hpa in hpas:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        group = str(ref.get("apiVersion") or "").partition("/")[0]
        if ref.get("kind") == c.KIND and ref.get("name") == cluster_name and group == c.GROUP:
            found.append(hpa["metadata"]["name"])
    return sorted(found)


def autoscaling_status(previous: Mapping | None, generation: int, now: str, *, target: int | None,
                       decision: Decision | None = None, conflict: Iterable[str] = (),
                       invalid: str | None = None) -> dict[str, Any]:
    """The status fields a sync owns: ``autoscaling`` and the full ``conditions`` list
    (the others carried over). Exactly one of `decision`, `conflict`, `invalid` says
    what the sync did; ``now`` (RFC 3339) stamps what changed."""
    previous = previous or {}
    before = previous.get("autoscaling") or {}
    conflict = list(conflict)
    if conflict:
        value, reason = False, HPA_CONFLICT
        message = (f"HorizontalPodAutoscaler {', '.join(conflict)} targets this Cluster; it wins and "
                   "spec.autoscaling is not applied")
        record = {"desiredWorkers": target, "replicas": None, "reason": reason, "message": message}
    elif invalid is not None:
        value, reason, message = False, "InvalidAutoscaling", invalid
        record = {"desiredWorkers": target, "replicas": None, "reason": reason, "message": message}
    else:
        assert decision is not None
        active = decision.condition(SCALING_ACTIVE)
        value = active is None or active.status
        reason, message = decision.reason, decision.message
        record = {"desiredWorkers": target, "replicas": decision.replicas, "reason": reason, "message": message}
    same = all(before.get(k) == v for k, v in record.items())
    record["lastDecisionTime"] = before.get("lastDecisionTime") if same else now
    record["lastScaleTime"] = now if decision is not None and decision.scaled else before.get("lastScaleTime")
    old = conditions_by_type(previous)
    mine = condition(old, generation, now, c.COND_AUTOSCALING, value, reason, message)
    others = [dict(x) for t, x in old.items() if t != c.COND_AUTOSCALING]
    return {"autoscaling": record, "conditions": [*others, mine]}
