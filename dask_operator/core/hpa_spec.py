"""The ``autoscaling/v2`` HorizontalPodAutoscaler spec the engine runs: bounds, metrics, behavior.

``HpaSpec.from_dict`` reads and validates the HPA v2 shape (see ``hpa_parse``).

Defaults, as the API server fills them (``pkg/apis/autoscaling/v2/defaults.go``):

- ``minReplicas``: 1; ``metrics``: one Resource metric, cpu at 80 % Utilization;
- no ``behavior``: ``None``; the controller then runs its legacy rules (see
  ``hpa_behavior``), which are *not* the same as the default behavior below;
- a ``behavior`` with a direction or a field left out gets, per direction:
  scaleUp: window 0 s, ``selectPolicy: Max``, policies Pods 4 / 15 s and
  Percent 100 / 15 s; scaleDown: ``selectPolicy: Max``, Percent 100 / 15 s and
  *no* window (``None``): the controller then uses its
  ``--horizontal-pod-autoscaler-downscale-stabilization`` (300 s by default).

Values and targets are kept in milli-units (``hpa_quantity.milli``), as the
controller compares them; Utilization targets in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any


RESOURCE, PODS, OBJECT, EXTERNAL = "Resource", "Pods", "Object", "External"
UTILIZATION, AVERAGE_VALUE, VALUE = "Utilization", "AverageValue", "Value"
POLICY_PODS, POLICY_PERCENT = "Pods", "Percent"
SELECT_MAX, SELECT_MIN, SELECT_DISABLED = "Max", "Min", "Disabled"
MAX_WINDOW_SECONDS, MAX_PERIOD_SECONDS = 3600, 1800


@dataclass(frozen=True)
class MetricTarget:
    """One entry of ``spec.metrics``; ``target`` is in percent (Utilization) or milli-units."""

    type: str
    name: str
    target_type: str
    target: int
    selector: str = ""
    described_kind: str = ""
    described_name: str = ""

    @property
    def key(self) -> str:
        """How the metric's observations are looked up: ``cpu``, ``pods/<name>``,
        ``object/<Kind>/<name>/<metric>``, ``external/<name>``, with ``{selector}`` if any."""
        base = {RESOURCE: self.name, PODS: f"pods/{self.name}", EXTERNAL: f"external/{self.name}",
                OBJECT: f"object/{self.described_kind}/{self.described_name}/{self.name}"}[self.type]
        return f"{base}{{{self.selector}}}" if self.selector else base

    @property
    def description(self) -> str:
        """The metric's name in the controller's messages and events."""
        if self.type == RESOURCE:
            suffix = " utilization (percentage of request)" if self.target_type == UTILIZATION else ""
            return f"{self.name} resource{suffix}"
        if self.type == PODS:
            return f"pods metric {self.name}"
        if self.type == OBJECT:
            return f"{self.described_kind} metric {self.name}"
        return f"external metric {self.name}({self.selector or 'nil'})"


@dataclass(frozen=True)
class ScalingPolicy:
    """At most ``value`` pods (Pods) or percent (Percent) of change per ``period_seconds``."""

    type: str
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """One direction of ``behavior``; ``stabilization_window_seconds`` None: the controller's default."""

    policies: tuple[ScalingPolicy, ...]
    select_policy: str = SELECT_MAX
    stabilization_window_seconds: int | None = None
    tolerance: Fraction | None = None


DEFAULT_SCALE_UP = ScalingRules(
    policies=(ScalingPolicy(POLICY_PODS, 4, 15), ScalingPolicy(POLICY_PERCENT, 100, 15)),
    stabilization_window_seconds=0,
)
DEFAULT_SCALE_DOWN = ScalingRules(policies=(ScalingPolicy(POLICY_PERCENT, 100, 15),))


@dataclass(frozen=True)
class Behavior:
    """``spec.behavior``, defaulted per direction as the API server does."""

    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


DEFAULT_METRICS = (MetricTarget(RESOURCE, "cpu", UTILIZATION, 80),)


@dataclass(frozen=True)
class HpaSpec:
    """What the controller reads from an HPA: bounds, metrics and (optional) behavior."""

    max_replicas: int
    min_replicas: int = 1
    metrics: tuple[MetricTarget, ...] = DEFAULT_METRICS
    behavior: Behavior | None = None

    @classmethod
    def from_dict(cls, doc: Any, path: str = "") -> HpaSpec:
        """Read and validate the HPA v2 shape (see ``hpa_parse``); ``path`` prefixes field names in errors."""
        from dask_operator.core.hpa_parse import parse_hpa_spec

        return parse_hpa_spec(doc, path)
