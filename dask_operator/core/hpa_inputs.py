"""What the HPA controller observes and how it is configured: pods, metric samples, flags.

All inputs of the engine besides the spec and the history: frozen, with times
in seconds (floats, on the same clock as ``now``) and values in milli-units
(``hpa_quantity.milli``). A metric is sampled as the metrics APIs return it:
per pod (Resource, Pods), one value for the described object (Object), or one
value per matching series (External, summed by the controller).

Readiness: ``Pod`` carries what the controller reads (phase, deletion, the
Ready condition and its last transition, start time), so its rules for
missing and unready pods apply as they are. A caller that knows only a count
passes ``hpa_policy.ready_pods(n)``: n Running and Ready pods, none missing
or unready, which is the plain ``ceil(ratio * n)`` case. Requests are per pod
(the caller sums its containers'); ContainerResource metrics, per-container
requests and pod-level resources are not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ControllerConfig:
    """The kube-controller-manager flags the HPA's arithmetic depends on (their defaults)."""

    tolerance: float = 0.1
    cpu_initialization_period: float = 300.0
    initial_readiness_delay: float = 30.0
    downscale_stabilization: float = 300.0


@dataclass(frozen=True)
class Tolerances:
    """The band around 1.0 in which a usage ratio changes nothing."""

    down: float = 0.1
    up: float = 0.1

    def within(self, ratio: float) -> bool:
        return (1.0 - self.down) <= ratio <= (1.0 + self.up)


@dataclass(frozen=True)
class Pod:
    """A pod of the scale target as the HPA sees it; times are seconds, like ``now``.

    ``ready`` is the Ready condition's status (None: no Ready condition),
    ``ready_since`` its last transition, ``started`` the pod's start time (None:
    not started), ``requests`` the sum of its containers' requests per resource
    in milli-units (a resource left out: no request for it).
    """

    name: str
    phase: str = "Running"
    ready: bool | None = True
    deleting: bool = False
    started: float | None = 0.0
    ready_since: float = 0.0
    requests: Mapping[str, int] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class PodSample:
    """One pod's value; ``timestamp`` None: taken at ``now``; ``window``: its collection window."""

    value: int
    timestamp: float | None = None
    window: float = 0.0


@dataclass(frozen=True)
class MetricSample:
    """What the metrics API returned for one metric: per-pod values (Resource,
    Pods), the described object's value (Object), or every matching series (External)."""

    pods: Mapping[str, int | PodSample] = field(default_factory=dict, hash=False)
    value: int | None = None
    series: tuple[int, ...] = ()
