"""The desired state of one Cluster, read from its resource body.

Defaults when the resource leaves a field out:

- ``metadata.namespace``: ``"default"``;
- ``metadata.uid``: ``""`` (no owner references are rendered without a uid);
- ``metadata.generation``: ``0``;
- ``spec.workers.replicas``: ``1`` (also when null);
- ``spec.scheduler.template``, ``spec.scheduler.service``,
  ``spec.workers.template``: ``{}``.

`scale_only(diff)` tells a change of the replica count alone (a `/scale`
write) from any other change of the spec, in kopf's diff of ``spec``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dask_operator.errors import InvalidSpec

DEFAULT_REPLICAS = 1
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class ClusterSpec:
    """A Cluster's identity and desired state; templates are private deep copies."""

    name: str
    namespace: str
    uid: str
    generation: int
    replicas: int
    scheduler_template: dict = field(default_factory=dict, hash=False)
    scheduler_service: dict = field(default_factory=dict, hash=False)
    worker_template: dict = field(default_factory=dict, hash=False)

    @classmethod
    def from_resource(cls, body: Mapping) -> ClusterSpec:
        """Read a Cluster resource body; raise InvalidSpec naming the bad field."""
        metadata = _mapping(body, "metadata", "metadata")
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidSpec("metadata.name is missing")
        spec = _mapping(body, "spec", "spec")
        scheduler = _mapping(spec, "scheduler", "spec.scheduler")
        workers = _mapping(spec, "workers", "spec.workers")
        return cls(
            name=name,
            namespace=metadata.get("namespace") or DEFAULT_NAMESPACE,
            uid=metadata.get("uid") or "",
            generation=int(metadata.get("generation") or 0),
            replicas=_replicas(workers.get("replicas")),
            scheduler_template=_template(scheduler, "template", "spec.scheduler.template"),
            scheduler_service=_template(scheduler, "service", "spec.scheduler.service"),
            worker_template=_template(workers, "template", "spec.workers.template"),
        )

    @functools.cached_property
    def worker_template_hash(self) -> str:
        """12 hex digits naming the worker template (key order does not matter); computed once
        per spec, though every worker pod, the plan and the status ask for it."""
        text = json.dumps(self.worker_template, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


REPLICAS_IN_SPEC = ("workers", "replicas")


def scale_only(diff: Any) -> bool:
    """True when the diff of ``spec`` (kopf's (op, path, old, new) items, paths
    relative to ``spec``) is non-empty and touches nothing but
    ``spec.workers.replicas``: the scheduler's objects need no re-apply."""
    items = list(diff or ())
    return bool(items) and all(tuple(item[1]) == REPLICAS_IN_SPEC for item in items)


def _mapping(parent: Mapping, key: str, path: str) -> Mapping:
    """``parent[key]`` as a mapping; a missing or null value is ``{}``."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{path} must be an object, got {type(value).__name__}")
    return value


def _template(parent: Mapping, key: str, path: str) -> dict[str, Any]:
    """A deep, plain-dict copy of an object field."""
    return copy.deepcopy(dict(_mapping(parent, key, path)))


def _replicas(value: Any) -> int:
    """Validate spec.workers.replicas: a non-negative int, not a bool; None is the default."""
    if value is None:
        return DEFAULT_REPLICAS
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(
            f"spec.workers.replicas must be a non-negative integer, got {value!r}"
        )
    if value < 0:
        raise InvalidSpec(f"spec.workers.replicas must be >= 0, got {value}")
    return value
