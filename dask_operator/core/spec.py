"""The desired state of one Cluster, read from its resource body.

Defaults when the resource leaves a field out:

- ``metadata.namespace``: ``"default"``;
- ``metadata.uid``: ``""`` (no owner references are rendered without a uid);
- ``metadata.generation``: ``0``;
- ``spec.workers.replicas``: ``1`` (also when null);
- ``spec.scheduler.template``, ``spec.scheduler.service``,
  ``spec.workers.template``: ``{}``.

Checked here, as the CRD checks them, so that rendering never fails on a
stored spec: ``metadata.name`` is a DNS-1035 label of at most
`MAX_NAME_LENGTH` characters (``<name>-scheduler`` names the Service), and
the fields the renderer reads have their types: in each pod template,
``metadata``, its ``labels`` and ``annotations``, ``spec`` and its
``securityContext`` are objects; ``containers`` and ``initContainers`` lists
of objects whose ``securityContext`` is an object and whose ``ports`` and
``env`` are lists of objects with a string ``name`` (and an integer
``containerPort``); the service's ``ports`` a list of objects with a string
``name``. The API server validates the rest when it gets the children.

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

from dask_operator.constants import MAX_WORKERS
from dask_operator.core.k8s_names import DNS_LABEL_RE
from dask_operator.errors import InvalidSpec

DEFAULT_REPLICAS = 1
DEFAULT_NAMESPACE = "default"
# 63 (a DNS label, a label value) less len("-scheduler").
MAX_NAME_LENGTH = 53


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
        if len(name) > MAX_NAME_LENGTH or not DNS_LABEL_RE.fullmatch(name) or not name[0].isalpha():
            raise InvalidSpec(f"metadata.name must be a DNS-1035 label (a-z, 0-9 and '-', starting with a "
                              f"letter) of at most {MAX_NAME_LENGTH} characters, got {name!r}")
        spec = _mapping(body, "spec", "spec")
        scheduler = _mapping(spec, "scheduler", "spec.scheduler")
        workers = _mapping(spec, "workers", "spec.workers")
        return cls(
            name=name,
            namespace=metadata.get("namespace") or DEFAULT_NAMESPACE,
            uid=metadata.get("uid") or "",
            generation=int(metadata.get("generation") or 0),
            replicas=_replicas(workers.get("replicas")),
            scheduler_template=_pod_template(scheduler, "template", "spec.scheduler.template"),
            scheduler_service=_service(scheduler, "service", "spec.scheduler.service"),
            worker_template=_pod_template(workers, "template", "spec.workers.template"),
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


def _pod_template(parent: Mapping, key: str, path: str) -> dict[str, Any]:
    """A copy of a pod template whose fields the renderer reads have their types."""
    template = _template(parent, key, path)
    metadata = _mapping(template, "metadata", f"{path}.metadata")
    _mapping(metadata, "labels", f"{path}.metadata.labels")
    _mapping(metadata, "annotations", f"{path}.metadata.annotations")
    pod = _mapping(template, "spec", f"{path}.spec")
    _mapping(pod, "securityContext", f"{path}.spec.securityContext")
    for field_name in ("containers", "initContainers"):
        for i, container in enumerate(_objects(pod, field_name, f"{path}.spec.{field_name}")):
            where = f"{path}.spec.{field_name}[{i}]"
            _mapping(container, "securityContext", f"{where}.securityContext")
            for port_path, port in _named(container, "ports", f"{where}.ports"):
                if not isinstance(port.get("containerPort", 0), int):
                    raise InvalidSpec(f"{port_path}.containerPort must be an integer, got {port['containerPort']!r}")
            list(_named(container, "env", f"{where}.env"))
    return template


def _service(parent: Mapping, key: str, path: str) -> dict[str, Any]:
    service = _template(parent, key, path)
    list(_named(service, "ports", f"{path}.ports"))
    return service


def _objects(parent: Mapping, key: str, path: str) -> list:
    """``parent[key]`` as a list of objects; a missing or null value is ``[]``."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSpec(f"{path} must be a list, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InvalidSpec(f"{path}[{i}] must be an object, got {type(item).__name__}")
    return value


def _named(parent: Mapping, key: str, path: str):
    """(path, item) of a list of objects whose ``name``, when set, is a string."""
    for i, item in enumerate(_objects(parent, key, path)):
        if not isinstance(item.get("name", ""), str):
            raise InvalidSpec(f"{path}[{i}].name must be a string, got {item['name']!r}")
        yield f"{path}[{i}]", item


def _replicas(value: Any) -> int:
    """Validate spec.workers.replicas: an int in [0, MAX_WORKERS], not a bool; None is the default."""
    if value is None:
        return DEFAULT_REPLICAS
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(
            f"spec.workers.replicas must be a non-negative integer, got {value!r}"
        )
    if value < 0:
        raise InvalidSpec(f"spec.workers.replicas must be >= 0, got {value}")
    if value > MAX_WORKERS:
        raise InvalidSpec(f"spec.workers.replicas must be <= {MAX_WORKERS}, got {value}")
    return value
