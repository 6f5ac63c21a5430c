"""Replica proposals from metric values, as the HPA's replica calculator makes them.

Values are milli-units (``hpa_quantity.milli``); Utilization in percent. A
*usage ratio* r is within tolerance when ``1 - down <= r <= 1 + up`` (0.1
each by default; ``behavior.<direction>.tolerance`` overrides). Go's integer
divisions (truncating) and float64 arithmetic are kept, so results match the
controller's to the replica (``replica_calculator.go``).

Pods (``Pod``) are grouped first: deleting or Failed: ignored; Pending:
unready; no sample: missing; for the ``cpu`` resource only, also unready: no
Ready condition or no start time, or within the CPU initialization period
(300 s) either not Ready or sampled less than one metric window after the
last Ready transition, or after it not Ready and never Ready since start (the
transition within the initial readiness delay, 30 s); the rest are ready.

- Resource Utilization: utilization = ``trunc(100 * sum(usage) / sum(request))``
  over the sampled pods that are not ignored or unready, r = utilization /
  target. Resource AverageValue and Pods: usage = ``trunc(sum / n)``, r =
  usage / target. With no missing pod, and not (unready pods and r > 1):
  within tolerance -> current replicas, else ``ceil(r * ready pods)``.
  Otherwise the controller assumes the worst for the scaling direction: when
  r < 1 a missing pod counts at ``max(100, target)`` % of its request
  (Utilization) or at the target (AverageValue); when r > 1 missing pods, and
  unready pods, count 0. It recomputes r'; within tolerance or the direction
  flipped -> current replicas; else ``ceil(r' * counted pods)``, unless that
  goes against the direction (then current replicas).
- Object and External Value: r = value / target (External: the sum of the
  series); at 0 replicas ``ceil(r)``; else within tolerance -> current
  replicas, else ``ceil(r * pods Running and Ready)``.
- Object and External AverageValue: r = value / (target * status replicas);
  within tolerance -> status replicas, else ``ceil(value / target)``.
- Several metrics (``combine``): the highest proposal. A metric without a
  value, or whose value cannot be used, fails with ``FailedGet<Type>Metric``;
  when every metric failed, or some failed and the highest proposal is below
  the current replicas, there is no proposal: no scale-down on partial data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dask_operator.core.hpa_inputs import ControllerConfig, MetricSample, Pod, PodSample, Tolerances
from dask_operator.core.hpa_spec import AVERAGE_VALUE, OBJECT, RESOURCE, UTILIZATION, MetricTarget

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
FAILED_REASONS = {RESOURCE: "FailedGetResourceMetric", "Pods": "FailedGetPodsMetric",
                  OBJECT: "FailedGetObjectMetric", "External": "FailedGetExternalMetric"}


@dataclass(frozen=True)
class MetricResult:
    """One metric's proposal, or why there is none; ``current`` is what the HPA
    reports in ``status.currentMetrics`` (percent, or milli-units)."""

    metric: MetricTarget
    replicas: int | None
    current: int | None = None
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.replicas is None

    @property
    def reason(self) -> str:
        return FAILED_REASONS[self.metric.type] if self.failed else ""


@dataclass(frozen=True)
class Proposal:
    """The metrics' combined proposal: ``replicas`` None when the HPA will not scale."""

    replicas: int | None
    metric: str
    reason: str
    message: str
    results: tuple[MetricResult, ...]


class _Unable(Exception):
    """The metric's value cannot be turned into a proposal."""


def propose(metric: MetricTarget, sample: MetricSample | None, pods: Sequence[Pod], spec_replicas: int,
            status_replicas: int, tolerances: Tolerances, now: float, config: ControllerConfig) -> MetricResult:
    """One metric's proposal (``computeReplicasForMetric``)."""
    prefix = {RESOURCE: f"failed to get {metric.name} resource metric value",
              "Pods": "failed to get pods metric value", OBJECT: "failed to get object metric value",
              "External": "failed to get external metric value"}[metric.type]
    try:
        if sample is None:
            raise _Unable(f"no value for {metric.key}: the metrics API returned nothing")
        if metric.type == RESOURCE and metric.target_type == UTILIZATION:
            replicas, current = _per_pod_replicas(metric, sample, pods, spec_replicas, tolerances, now, config,
                                                  _Utilization(metric.name, metric.target))
        elif metric.type in (RESOURCE, "Pods"):
            replicas, current = _per_pod_replicas(metric, sample, pods, spec_replicas, tolerances, now, config,
                                                  _AverageValue(metric.target))
        elif metric.target_type == AVERAGE_VALUE:
            replicas, current = _per_replica_replicas(_usage(metric, sample), metric.target, status_replicas,
                                                      tolerances)
        else:
            usage = _usage(metric, sample)
            current = usage
            replicas = _ratio_replicas(spec_replicas, usage / metric.target, tolerances, pods)
    except _Unable as e:
        return MetricResult(metric, None, None, f"{prefix}: {e}")
    return MetricResult(metric, replicas, current)


def combine(results: Sequence[MetricResult], spec_replicas: int) -> Proposal:
    """The highest proposal (``computeReplicasForMetrics``); none on partial data that scales down."""
    replicas, metric = 0, ""
    for result in results:
        if not result.failed and (replicas == 0 or result.replicas > replicas):
            replicas, metric = result.replicas, result.metric.description
    failed = [r for r in results if r.failed]
    if len(failed) >= len(results) or (failed and replicas < spec_replicas):
        message = f"invalid metrics ({len(failed)} invalid out of {len(results)}), first error is: {failed[0].error}"
        return Proposal(None, "", failed[0].reason, message, tuple(results))
    return Proposal(replicas, metric, "ValidMetricFound",
                    f"the HPA was able to successfully calculate a replica count from {metric}", tuple(results))


# ---------------------------------------------------------------- per-pod metrics (Resource, Pods)

@dataclass(frozen=True)
class _Utilization:
    """Resource Utilization: the percentage of the pods' requests, truncated."""

    resource: str
    target: int

    def ratio(self, values: Mapping[str, int], requests: Mapping[str, int]) -> tuple[float, int]:
        known = [name for name in values if name in requests]  # values of unknown pods are extraneous
        total, requested = sum(values[n] for n in known), sum(requests[n] for n in known)
        if requested == 0:
            raise _Unable(f"failed to get {self.resource} utilization: no metrics returned matched known pods")
        utilization = _trunc_div(total * 100, requested)
        return utilization / self.target, utilization

    def fallback(self, request: int) -> int:
        """A missing pod's value on a scale-down: all its request, or the target if above 100 %."""
        return request * max(100, self.target) // 100


@dataclass(frozen=True)
class _AverageValue:
    """Resource AverageValue and Pods: the pods' average value, truncated."""

    target: int

    def ratio(self, values: Mapping[str, int], requests: Mapping[str, int]) -> tuple[float, int]:
        usage = _trunc_div(sum(values.values()), len(values))
        return usage / self.target, usage

    def fallback(self, request: int) -> int:
        """A missing pod's value on a scale-down: exactly the target."""
        return self.target


def _per_pod_replicas(metric: MetricTarget, sample: MetricSample, pods: Sequence[Pod], current: int,
                      tolerances: Tolerances, now: float, config: ControllerConfig,
                      rule: _Utilization | _AverageValue) -> tuple[int, int]:
    samples = {name: s if isinstance(s, PodSample) else PodSample(s) for name, s in sample.pods.items()}
    if not samples:
        raise _Unable(f"no metrics returned for {metric.key}")
    if not pods:
        raise _Unable("no pods returned by selector while calculating replica count")
    resource = metric.name if metric.type == RESOURCE else ""
    ready, unready, missing, ignored = _group(pods, samples, resource, now, config)
    values = {name: s.value for name, s in samples.items() if name not in ignored and name not in unready}
    if not values:
        raise _Unable("did not receive metrics for targeted pods (pods might be unready)")
    requests = _requests(pods, resource) if metric.target_type == UTILIZATION else {}
    ratio, current_value = rule.ratio(values, requests)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if tolerances.within(ratio):
            return current, current_value
        return math.ceil(ratio * ready), current_value
    if missing and ratio != 1.0:
        for name in missing:
            values[name] = rule.fallback(requests.get(name, 0)) if ratio < 1.0 else 0
    if scale_up_with_unready:
        values.update({name: 0 for name in unready})
    new_ratio, _ = rule.ratio(values, requests)
    if tolerances.within(new_ratio) or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        return current, current_value
    replicas = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current, current_value
    return replicas, current_value


def _group(pods: Sequence[Pod], samples: Mapping[str, PodSample], resource: str, now: float,
           config: ControllerConfig) -> tuple[int, set[str], set[str], set[str]]:
    """(ready count, unready, missing, ignored), as ``groupPods``."""
    ready, unready, missing, ignored = 0, set(), set(), set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        sample = samples.get(pod.name)
        if sample is None:
            missing.add(pod.name)
            continue
        if resource == "cpu" and _cpu_unready(pod, sample, now, config):
            unready.add(pod.name)
            continue
        ready += 1
    return ready, unready, missing, ignored


def _cpu_unready(pod: Pod, sample: PodSample, now: float, config: ControllerConfig) -> bool:
    if pod.ready is None or pod.started is None:
        return True
    if pod.started + config.cpu_initialization_period > now:
        taken = now if sample.timestamp is None else sample.timestamp
        return pod.ready is False or taken < pod.ready_since + sample.window
    return pod.ready is False and pod.started + config.initial_readiness_delay > pod.ready_since


def _requests(pods: Sequence[Pod], resource: str) -> dict[str, int]:
    requests = {}
    for pod in pods:
        if resource not in pod.requests:
            raise _Unable(f"missing request for {resource} in Pod {pod.name}")
        requests[pod.name] = pod.requests[resource]
    return requests


# ---------------------------------------------------------------- Object and External metrics


def _usage(metric: MetricTarget, sample: MetricSample) -> int:
    if metric.type == OBJECT:
        if sample.value is None:
            raise _Unable(f"no value for {metric.key}")
        return sample.value
    if not sample.series:
        raise _Unable(f"no metrics returned from external metrics API for {metric.name}")
    return min(sum(sample.series), MAX_INT64)


def _ratio_replicas(current: int, ratio: float, tolerances: Tolerances, pods: Sequence[Pod]) -> int:
    """``getUsageRatioReplicaCount``: from 0 replicas ``ceil(ratio)``, else ratio times Ready pods."""
    if current == 0:
        return math.ceil(ratio)
    if tolerances.within(ratio):
        return current
    if not pods:
        raise _Unable("unable to calculate ready pods: no pods returned by selector while calculating replica count")
    ready = sum(1 for p in pods if p.phase == "Running" and p.ready is True)
    proposal = ratio * ready
    return MAX_INT32 if proposal > MAX_INT32 else math.ceil(proposal)


def _per_replica_replicas(usage: int, target: int, status_replicas: int,
                          tolerances: Tolerances) -> tuple[int, int | None]:
    """``Get{Object,External}PerPodMetricReplicas``: the value spread over the status replicas."""
    denominator = float(target) * float(status_replicas)
    ratio = float(usage) / denominator if denominator else (math.inf if usage else math.nan)
    replicas = status_replicas
    if not tolerances.within(ratio):
        replicas = min(math.ceil(float(usage) / float(target)), MAX_INT32)
    return replicas, (math.ceil(float(usage) / float(status_replicas)) if status_replicas else None)


def _trunc_div(a: int, b: int) -> int:
    """Go's integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q
