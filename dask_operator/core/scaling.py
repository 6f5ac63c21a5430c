"""Pure rules shared by every scaling backend.

- Replicas are a non-negative integer (not a bool, not a float, not a
  string); a backend's maximum, when it has one, is a ceiling, never silently
  applied here: `validate_replicas` raises `InvalidScale` naming the bound.
- A `WorkerShape` (what a hardware tier sets) changes a pod template's first
  container's `resources` and the pod's `nodeSelector` and `tolerations`;
  fields left None stay as they are; the template given is not modified.
- Patches are JSON merge patches, which merge maps: `replacing` makes a map
  equal to its new value (keys it lacks become null, so a GPU limit or a
  node label of the old tier does not linger); `template_patch` is the
  patch value that shapes a pod template, None when it is shaped already.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dask_operator.errors import InvalidScale


@dataclass(frozen=True)
class WorkerShape:
    """What a hardware tier sets on the workers; None leaves a field as it is."""

    resources: Mapping | None = None
    node_selector: Mapping | None = None
    tolerations: Sequence[Mapping] | None = None

    @property
    def empty(self) -> bool:
        return self.resources is None and self.node_selector is None and self.tolerations is None


def validate_replicas(value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    """`value` as replicas, or InvalidScale saying what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidScale(f"replicas must be a non-negative integer, got {value!r}")
    if value < 0:
        raise InvalidScale("replicas must be a non-negative integer")
    if value < minimum:
        raise InvalidScale(f"replicas must be at least {minimum} for this cluster, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidScale(f"replicas must be at most {maximum} for this cluster, got {value}")
    return value


def shape_pod_template(template: Mapping | None, shape: WorkerShape) -> dict:
    """A copy of a PodTemplateSpec with the shape applied to its pod and first container."""
    result = copy.deepcopy(dict(template or {}))
    spec = result.setdefault("spec", {})
    containers = spec.setdefault("containers", [{}]) or [{}]
    spec["containers"] = containers
    if shape.resources is not None:
        containers[0]["resources"] = copy.deepcopy(dict(shape.resources))
    if shape.node_selector is not None:
        spec["nodeSelector"] = dict(shape.node_selector)
    if shape.tolerations is not None:
        spec["tolerations"] = [dict(t) for t in shape.tolerations]
    return result


def replacing(old: Any, new: Mapping) -> dict:
    """A merge-patch value that makes a map equal to `new`: keys of `old` that `new`
    lacks become None (deleted), nested maps likewise."""
    result = copy.deepcopy(dict(new))
    if isinstance(old, Mapping):
        for key, value in old.items():
            if key not in result:
                result[key] = None
            elif isinstance(value, Mapping) and isinstance(result[key], Mapping):
                result[key] = replacing(value, result[key])
    return result


def template_patch(template: Mapping | None, shape: WorkerShape) -> dict | None:
    """The merge-patch value that gives a PodTemplateSpec `shape`; None when it has it already."""
    old = dict(template or {})
    new = shape_pod_template(old, shape)
    return None if new == old else replacing(old, new)
