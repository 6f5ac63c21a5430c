"""Stabilization windows and scaling policies, as the HPA controller applies them.

The history is what the controller keeps in memory per HPA: *recommendations*
(each sync's desired replicas before stabilization, with its time) and *scale
events* (each rescale's size, positive, up or down). "Within a window of w
seconds" means strictly newer than ``now - w``.

With ``behavior`` (``normalizeDesiredReplicasWithBehaviors``):

1. Stabilization: ``up`` is the lowest of the desired replicas and the
   recommendations within the scale-up window, ``down`` the highest of the
   desired replicas and those within the scale-down window; the stabilized
   count is the current one raised to ``up``, then lowered to ``down``. So a
   scale-down never goes below a recommendation of the window, and a scale-up
   never above one. The desired replicas are recorded at ``now``. When the
   result differs from the desired replicas, AbleToScale's reason is
   ``ScaleUpStabilized`` (desired >= current) or ``ScaleDownStabilized``,
   otherwise ``ReadyForNewScale``.
2. Rate: scaling up, each scale-up policy starts from the replicas at the start
   of its period (current, minus replicas added, plus replicas removed within
   the period) and allows ``start + value`` (Pods) or ``ceil(start * (1 +
   value / 100))`` (Percent); ``selectPolicy`` Max takes the highest, Min the
   lowest, Disabled allows no change. The limit is never below the current
   replicas. Above ``min(maxReplicas, limit)`` the result is clamped, reason
   ``ScaleUpLimit`` when the limit is the lower, else ``TooManyReplicas``.
   Scaling down, mirrored: ``start - value`` (Pods) or ``trunc(start * (1 -
   value / 100))`` (Percent), Max takes the lowest (the biggest change), Min the
   highest; the limit is never above the current replicas; below
   ``max(minReplicas, limit)``: ``ScaleDownLimit`` or ``TooFewReplicas``.
   Otherwise ``DesiredWithinRange``. Desired equal to current is not clamped.
3. A rescale is recorded as a scale event at ``now``.

Without ``behavior`` (legacy, ``normalizeDesiredReplicas``): the stabilized
count is the highest of the desired replicas and the recommendations not
older than the controller's downscale stabilization (300 s); AbleToScale
``ScaleDownStabilized`` or ``ReadyForNewScale``; then below ``minReplicas``:
``TooFewReplicas``; above ``min(maxReplicas, max(2 * current, 4))``:
``ScaleUpLimit`` or ``TooManyReplicas``; no scale events are kept.

Bounded history: recommendations older than every window that reads them
are dropped when a new one is recorded (the controller instead reuses the
slot of one of them; they are never read again either way, so decisions are
the same). Scale events are kept exactly as the controller keeps them: a new
event takes the slot of the last one older than the longest policy period of
its direction (the "outdated" flag sticks), else it is appended. That keeps
them to about one per rescale within the longest period; dropping more would
change decisions, because the other direction's policies also count them
(``periodStartReplicas``) and the controller loses exactly the events whose
slots it reuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from dask_operator.core.hpa_spec import (
    POLICY_PODS,
    SELECT_DISABLED,
    SELECT_MIN,
    Behavior,
    ScalingRules,
)

SCALE_UP_STABILIZED = "ScaleUpStabilized"
SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
READY_FOR_NEW_SCALE = "ReadyForNewScale"
SCALE_UP_LIMIT, SCALE_DOWN_LIMIT = "ScaleUpLimit", "ScaleDownLimit"
TOO_MANY_REPLICAS, TOO_FEW_REPLICAS = "TooManyReplicas", "TooFewReplicas"
DESIRED_WITHIN_RANGE = "DesiredWithinRange"
MESSAGES = {
    SCALE_UP_STABILIZED: "recent recommendations were lower than current one, "
                         "applying the lowest recent recommendation",
    SCALE_DOWN_STABILIZED: "recent recommendations were higher than current one, "
                           "applying the highest recent recommendation",
    READY_FOR_NEW_SCALE: "recommended size matches current size",
    SCALE_UP_LIMIT: "the desired replica count is increasing faster than the maximum scale rate",
    SCALE_DOWN_LIMIT: "the desired replica count is decreasing faster than the maximum scale rate",
    TOO_MANY_REPLICAS: "the desired replica count is more than the maximum replica count",
    TOO_FEW_REPLICAS: "the desired replica count is less than the minimum replica count",
    DESIRED_WITHIN_RANGE: "the desired count is within the acceptable range",
}
LEGACY_SCALE_UP_FACTOR, LEGACY_SCALE_UP_MINIMUM = 2.0, 4.0


@dataclass(frozen=True)
class Recommendation:
    """One sync's desired replicas, before stabilization."""

    replicas: int
    at: float


@dataclass(frozen=True)
class ScaleEvent:
    """One rescale: ``change`` replicas (positive) at ``at``; ``outdated``: its slot may be reused."""

    change: int
    at: float
    outdated: bool = False


@dataclass(frozen=True)
class Limited:
    """The replicas after the rate and bounds rules, and the ScalingLimited reason."""

    replicas: int
    reason: str

    @property
    def limited(self) -> bool:
        return self.reason != DESIRED_WITHIN_RANGE


def stabilize(recommendations: tuple[Recommendation, ...], now: float, current: int, desired: int,
              up_window: float, down_window: float) -> tuple[int, str, tuple[Recommendation, ...]]:
    """(stabilized replicas, AbleToScale reason, recommendations still in a window plus ``desired``)."""
    up = down = desired
    up_cutoff, down_cutoff = now - up_window, now - down_window
    for rec in recommendations:
        if rec.at > up_cutoff:
            up = min(up, rec.replicas)
        if rec.at > down_cutoff:
            down = max(down, rec.replicas)
    stabilized = min(max(current, up), down)
    reason = READY_FOR_NEW_SCALE
    if stabilized != desired:
        reason = SCALE_UP_STABILIZED if desired >= current else SCALE_DOWN_STABILIZED
    kept = tuple(r for r in recommendations if not (r.at < up_cutoff and r.at < down_cutoff))
    return stabilized, reason, (*kept, Recommendation(desired, now))


def stabilize_legacy(recommendations: tuple[Recommendation, ...], now: float, desired: int,
                     window: float) -> tuple[int, str, tuple[Recommendation, ...]]:
    """Without behavior: the highest recommendation of the downscale stabilization window."""
    kept = tuple(r for r in recommendations if not r.at < now - window)
    highest = max([desired, *(r.replicas for r in kept)])
    reason = SCALE_DOWN_STABILIZED if highest != desired else READY_FOR_NEW_SCALE
    return highest, reason, (*kept, Recommendation(desired, now))


def limit(behavior: Behavior, now: float, current: int, desired: int, minimum: int, maximum: int,
          up_events: tuple[ScaleEvent, ...], down_events: tuple[ScaleEvent, ...]) -> Limited:
    """``convertDesiredReplicasWithBehaviorRate``: the policies' rate, then min and max."""
    if desired > current:
        ceiling = max(scale_up_limit(behavior.scale_up, now, current, up_events, down_events), current)
        allowed, reason = (ceiling, SCALE_UP_LIMIT) if maximum > ceiling else (maximum, TOO_MANY_REPLICAS)
        if desired > allowed:
            return Limited(allowed, reason)
    elif desired < current:
        floor = min(scale_down_limit(behavior.scale_down, now, current, up_events, down_events), current)
        allowed, reason = (floor, SCALE_DOWN_LIMIT) if minimum < floor else (minimum, TOO_FEW_REPLICAS)
        if desired < allowed:
            return Limited(allowed, reason)
    return Limited(desired, DESIRED_WITHIN_RANGE)


def limit_legacy(current: int, desired: int, minimum: int, maximum: int) -> Limited:
    """``convertDesiredReplicasWithRules``: min, then max(2 * current, 4) and max."""
    ceiling = int(max(LEGACY_SCALE_UP_FACTOR * current, LEGACY_SCALE_UP_MINIMUM))
    allowed, reason = (ceiling, SCALE_UP_LIMIT) if maximum > ceiling else (maximum, TOO_MANY_REPLICAS)
    if desired < minimum:
        return Limited(minimum, TOO_FEW_REPLICAS)
    if desired > allowed:
        return Limited(allowed, reason)
    return Limited(desired, DESIRED_WITHIN_RANGE)


def scale_up_limit(rules: ScalingRules, now: float, current: int,
                   up_events: tuple[ScaleEvent, ...], down_events: tuple[ScaleEvent, ...]) -> int:
    """The most replicas the scale-up policies allow now."""
    if rules.select_policy == SELECT_DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        start = (current - changed_within(up_events, now, policy.period_seconds)
                 + changed_within(down_events, now, policy.period_seconds))
        if policy.type == POLICY_PODS:
            proposals.append(start + policy.value)
        else:  # rounded up, or a small percentage of a few pods would never add one
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    return min(proposals) if rules.select_policy == SELECT_MIN else max(proposals)


def scale_down_limit(rules: ScalingRules, now: float, current: int,
                     up_events: tuple[ScaleEvent, ...], down_events: tuple[ScaleEvent, ...]) -> int:
    """The fewest replicas the scale-down policies allow now."""
    if rules.select_policy == SELECT_DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        start = (current - changed_within(up_events, now, policy.period_seconds)
                 + changed_within(down_events, now, policy.period_seconds))
        if policy.type == POLICY_PODS:
            proposals.append(start - policy.value)
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    return max(proposals) if rules.select_policy == SELECT_MIN else min(proposals)


def changed_within(events: tuple[ScaleEvent, ...], now: float, period: float) -> int:
    """Replicas changed by ``events`` within the last ``period`` seconds."""
    cutoff = now - period
    return sum(e.change for e in events if e.at > cutoff)


def record_event(events: tuple[ScaleEvent, ...], now: float, change: int,
                 rules: ScalingRules) -> tuple[ScaleEvent, ...]:
    """``events`` with a rescale of ``change`` replicas recorded at ``now`` (``storeScaleEvent``)."""
    cutoff = now - max((p.period_seconds for p in rules.policies), default=0)
    marked = tuple(replace(e, outdated=True) if e.at < cutoff else e for e in events)
    old = max((i for i, e in enumerate(marked) if e.outdated), default=None)
    if old is None:
        return (*marked, ScaleEvent(change, now))
    return (*marked[:old], ScaleEvent(change, now), *marked[old + 1:])
