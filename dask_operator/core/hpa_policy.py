"""The HPA v2 controller's decision for one sync, as a pure function: ``decide``.

``decide(now, current, metrics, spec, history)`` follows the controller's
``reconcileAutoscaler`` step by step (``horizontal.go``):

0. On the first sync of an HPA (``history`` None) the current replicas are
   recorded as a recommendation, so a new HPA does not scale down before its
   scale-down window has passed.
1. ``current`` 0 while ``minReplicas`` is not: scaling is disabled
   (ScalingActive False, ``ScalingDisabled``); nothing changes.
2. ``current`` above ``maxReplicas`` or below ``minReplicas``: the bound, at
   once, without reading metrics or stabilizing (reason ``TooManyReplicas`` /
   ``TooFewReplicas``, message "Current number of replicas above
   Spec.MaxReplicas" / "... below Spec.MinReplicas").
3. Every metric's proposal, combined (``hpa_metrics``). Without a proposal
   (every metric missing, or some missing and the rest would scale down)
   nothing changes and nothing is recorded; ScalingActive False with the first
   failure's reason, e.g. ``FailedGetPodsMetric``.
4. The proposal through ``behavior`` or, without one, the legacy rules
   (``hpa_behavior``); a rescale is recorded as a scale event.

``Decision.reason`` is one CamelCase word for the sync: ``ScalingDisabled``,
the bound's reason (step 2), the failure's reason (step 3), else the
ScalingLimited reason when the rules limited the change (``ScaleUpLimit``,
``ScaleDownLimit``, ``TooManyReplicas``, ``TooFewReplicas``), else the
stabilization's (``ScaleUpStabilized``, ``ScaleDownStabilized``), else
``DesiredWithinRange``. ``Decision.message`` is the rescale reason of the
controller's ``SuccessfulRescale`` event ("pods metric x above target", "All
metrics below target", ...) or says why nothing changed. ``conditions`` are
those the controller sets during the sync; the ``AbleToScale``
``SucceededRescale`` / ``FailedUpdateScale`` that follow the write to
``/scale`` are the caller's.

No clock: ``now`` and every time in the inputs are seconds on one clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dask_operator.core import hpa_behavior as hb
from dask_operator.core.hpa_inputs import ControllerConfig, MetricSample, Pod, Tolerances
from dask_operator.core.hpa_metrics import MetricResult, combine, propose
from dask_operator.core.hpa_spec import HpaSpec

ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED = "AbleToScale", "ScalingActive", "ScalingLimited"


@dataclass(frozen=True)
class History:
    """What the controller remembers of an HPA between syncs (in memory, per HPA)."""

    recommendations: tuple[hb.Recommendation, ...] = ()
    scale_up_events: tuple[hb.ScaleEvent, ...] = ()
    scale_down_events: tuple[hb.ScaleEvent, ...] = ()

    def to_dict(self) -> dict:
        """Plain lists, e.g. to keep in a status field."""
        return {"recommendations": [[r.replicas, r.at] for r in self.recommendations],
                "scaleUpEvents": [[e.change, e.at, e.outdated] for e in self.scale_up_events],
                "scaleDownEvents": [[e.change, e.at, e.outdated] for e in self.scale_down_events]}

    @classmethod
    def from_dict(cls, data: Mapping) -> History:
        """The inverse of ``to_dict``."""
        return cls(tuple(hb.Recommendation(int(n), float(t)) for n, t in data.get("recommendations", ())),
                   tuple(hb.ScaleEvent(int(c), float(t), bool(o)) for c, t, o in data.get("scaleUpEvents", ())),
                   tuple(hb.ScaleEvent(int(c), float(t), bool(o)) for c, t, o in data.get("scaleDownEvents", ())))


@dataclass(frozen=True)
class Condition:
    """An HPA status condition as the controller sets it."""

    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """The outcome of one sync: the replicas to set, why, and the history to pass next time."""

    replicas: int
    current: int
    reason: str
    message: str
    conditions: tuple[Condition, ...]
    metrics: tuple[MetricResult, ...]
    history: History
    desired: int | None = None

    @property
    def scaled(self) -> bool:
        """The controller writes ``replicas`` to ``/scale``."""
        return self.replicas != self.current

    @property
    def missing(self) -> tuple[str, ...]:
        """Keys of the metrics that had no usable value."""
        return tuple(r.metric.key for r in self.metrics if r.failed)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def ready_pods(count: int, prefix: str = "pod") -> tuple[Pod, ...]:
    """``count`` Running and Ready pods named ``<prefix>-<i>``."""
    return tuple(Pod(f"{prefix}-{i}") for i in range(count))


def tolerances(spec: HpaSpec, config: ControllerConfig) -> Tolerances:
    """The controller's tolerance, or ``behavior``'s per direction."""
    down = up = config.tolerance
    if spec.behavior is not None:
        if spec.behavior.scale_down.tolerance is not None:
            down = float(spec.behavior.scale_down.tolerance)
        if spec.behavior.scale_up.tolerance is not None:
            up = float(spec.behavior.scale_up.tolerance)
    return Tolerances(down=down, up=up)


def decide(now: float, current: int, metrics: Mapping[str, MetricSample], spec: HpaSpec,
           history: History | None = None, *, pods: Sequence[Pod] | None = None,
           status_replicas: int | None = None, config: ControllerConfig = ControllerConfig()) -> Decision:
    """One sync of the HPA controller for ``spec``.

    ``current`` is the target's ``/scale`` ``spec.replicas``; ``status_replicas``
    its ``status.replicas`` (default: ``current``); ``metrics`` the samples by
    ``MetricTarget.key`` (a key left out: that metric is missing); ``pods`` the
    target's pods (default: ``status_replicas`` Running and Ready pods named
    ``pod-<i>``); ``history`` the previous decision's (None on the first sync).
    """
    status = current if status_replicas is None else status_replicas
    pods = ready_pods(status) if pods is None else tuple(pods)
    if history is None:
        history = History(recommendations=(hb.Recommendation(current, now),))

    def outcome(replicas: int, reason: str, message: str, conditions: tuple[Condition, ...] = (),
                results: tuple[MetricResult, ...] = (), kept: History = history, desired: int | None = None):
        if replicas != current and spec.behavior is not None:
            kept = _with_event(kept, spec, now, current, replicas)
        return Decision(replicas, current, reason, message, conditions, results, kept, desired)

    if current == 0 and spec.min_replicas != 0:
        return outcome(0, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero",
                       (Condition(SCALING_ACTIVE, False, "ScalingDisabled",
                                  "scaling is disabled since the replica count of the target is zero"),))
    if current > spec.max_replicas:
        return outcome(spec.max_replicas, hb.TOO_MANY_REPLICAS, "Current number of replicas above Spec.MaxReplicas")
    if current < spec.min_replicas:
        return outcome(spec.min_replicas, hb.TOO_FEW_REPLICAS, "Current number of replicas below Spec.MinReplicas")

    tol = tolerances(spec, config)
    results = tuple(propose(m, metrics.get(m.key), pods, current, status, tol, now, config) for m in spec.metrics)
    proposal = combine(results, current)
    if proposal.replicas is None:
        return outcome(current, proposal.reason, proposal.message,
                       (Condition(SCALING_ACTIVE, False, proposal.reason, proposal.message),), results)
    active = Condition(SCALING_ACTIVE, True, proposal.reason, proposal.message)

    desired = max(proposal.replicas, 0)
    message = ""  # the controller's rescale reason
    if desired > current:
        message = f"{proposal.metric} above target"
    elif desired < current:
        message = "All metrics below target"
    if spec.behavior is None:
        stabilized, able, recs = hb.stabilize_legacy(history.recommendations, now, desired,
                                                     config.downscale_stabilization)
        limited = hb.limit_legacy(current, stabilized, spec.min_replicas, spec.max_replicas)
    else:
        up, down = spec.behavior.scale_up, spec.behavior.scale_down
        down_window = config.downscale_stabilization if down.stabilization_window_seconds is None \
            else down.stabilization_window_seconds
        stabilized, able, recs = hb.stabilize(history.recommendations, now, current, desired,
                                              up.stabilization_window_seconds or 0, down_window)
        limited = hb.limit(spec.behavior, now, current, stabilized, spec.min_replicas, spec.max_replicas,
                           history.scale_up_events, history.scale_down_events)
    conditions = (Condition(ABLE_TO_SCALE, True, able, hb.MESSAGES[able]), active,
                  Condition(SCALING_LIMITED, limited.replicas != stabilized, limited.reason,
                            hb.MESSAGES[limited.reason]))
    reason = limited.reason if limited.replicas != stabilized else (
        able if able != hb.READY_FOR_NEW_SCALE else hb.DESIRED_WITHIN_RANGE)
    if limited.replicas == current or not message:
        message = hb.MESSAGES[reason]
    kept = History(recs, history.scale_up_events, history.scale_down_events)
    return outcome(limited.replicas, reason, message, conditions, results, kept, desired)


def _with_event(history: History, spec: HpaSpec, now: float, current: int, replicas: int) -> History:
    behavior = spec.behavior
    assert behavior is not None
    if replicas > current:
        events = hb.record_event(history.scale_up_events, now, replicas - current, behavior.scale_up)
        return History(history.recommendations, events, history.scale_down_events)
    events = hb.record_event(history.scale_down_events, now, current - replicas, behavior.scale_down)
    return History(history.recommendations, history.scale_up_events, events)
