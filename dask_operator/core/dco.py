"""Pure rules for Domino's distributed-compute-operator (DCO v0.8.2) kinds:
`DaskCluster`, `RayCluster` and `SparkCluster`
(`distributed-compute.dominodatalab.com/v1alpha1`), as seed 000's scaler
scales them.

Scale (`scale_patch`, a JSON merge patch), checked in this order, nothing
sent unless every check passes:
- replicas are a non-negative integer (`validate_replicas`), at most
  `MAX_REPLICAS`, and at least 1: Domino does not permit a cluster at 0
  workers (seed 000), and DCO's webhook requires 1 <= minReplicas (InvalidScale);
- the object has `spec.image`: DCO v0.8.2 dereferences it unchecked (a
  DaskCluster without one panics the whole operator process), so an object
  without one is never touched (NotScalable);
- a RayCluster or SparkCluster with `spec.podSecurityPolicy` is refused:
  DCO then reconciles a policy/v1beta1 PodSecurityPolicy, an API Kubernetes
  removed in 1.25, and that cluster's reconcile stalls (NotScalable);
- the object has `spec.autoscaling`, else seed 000's 409
  "Cannot scale this cluster: autoscaling not enabled" (NotScalable);
- the patch sets `spec.worker.replicas = replicas`,
  `spec.autoscaling.minReplicas = replicas` and
  `spec.autoscaling.maxReplicas = max(old max, replicas + 1)`: max >= min
  with at least +1 headroom (seed 000), so the CPU HPA DCO builds from these
  bounds never scales the cluster below what was asked;
- a `WorkerShape` replaces `spec.worker.resources`, `nodeSelector` and
  `tolerations` (maps are replaced, not merged: keys the new value lacks are
  deleted with JSON null).

Head shape (`head_patch`): the same three fields of the head's section
(`spec.scheduler`, `spec.head`, `spec.master`); None when they are already so.
DCO renders the head as a StatefulSet, which rolls the head pod on a change.

Status (`observed_status`): the desired count is `spec.worker.replicas`
(DCO's StatefulSet defaults it to 1); ready workers and head readiness are
counted from the pods (DCO's `status.workerReplicas` copies the StatefulSet's
*desired* replicas, and `status.nodes` lists every pod, head included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dask_operator.core.pods import pod_ready
from dask_operator.core.scaling import WorkerShape, replacing, validate_replicas
from dask_operator.errors import InvalidScale, NotScalable

API_VERSION = "distributed-compute.dominodatalab.com/v1alpha1"
MAX_REPLICAS = 10000  # a sanity ceiling; the bounds are int32 in DCO's CRDs

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
WORKER = "worker"

# kind -> (framework label value, head component)
KINDS: dict[str, tuple[str, str]] = {
    "DaskCluster": ("dask", "scheduler"),
    "RayCluster": ("ray", "head"),
    "SparkCluster": ("spark", "master"),
}
PSP_STALLS = frozenset({"RayCluster", "SparkCluster"})

NOT_SCALABLE = "Cannot scale this cluster: autoscaling not enabled"


def pod_selector(framework: str, name: str, component: str | None = None) -> str:
    """Label selector of a DCO cluster's pods (all of them, or one component's)."""
    selector = f"{LABEL_INSTANCE}={name},{LABEL_NAME}={framework}"
    return f"{selector},{LABEL_COMPONENT}={component}" if component else selector


def check_replicas(value: Any) -> int:
    """`value` as DCO replicas: a non-negative integer, and at least 1."""
    replicas = validate_replicas(value, maximum=MAX_REPLICAS)
    if replicas < 1:
        raise InvalidScale("replicas must be at least 1: Domino does not permit scaling a cluster to 0 "
                           "workers (DCO requires 1 <= minReplicas); scale to 1 with the smallest "
                           "hardware tier instead")
    return replicas


def check_scalable(kind: str, obj: Mapping) -> Mapping:
    """The object's `spec.autoscaling`, or NotScalable saying why it cannot be scaled."""
    if kind not in KINDS:
        raise ValueError(f"not a DCO kind: {kind!r}")
    spec = obj.get("spec") or {}
    ref = _ref(kind, obj)
    if not spec.get("image"):
        raise NotScalable(f"Cannot scale this cluster: {ref} has no spec.image, and DCO v0.8.2 crashes "
                          "(nil dereference) on such an object; set spec.image first")
    if kind in PSP_STALLS and spec.get("podSecurityPolicy"):
        raise NotScalable(f"Cannot scale this cluster: {ref} sets spec.podSecurityPolicy; PodSecurityPolicy "
                          "was removed from Kubernetes in 1.25 and DCO's reconcile of this cluster stalls "
                          "on it; remove spec.podSecurityPolicy (use Pod Security admission instead)")
    autoscaling = spec.get("autoscaling")
    if not isinstance(autoscaling, Mapping):
        raise NotScalable(NOT_SCALABLE)
    return autoscaling


def scale_patch(kind: str, obj: Mapping, replicas: Any, shape: WorkerShape | None = None) -> dict:
    """The merge patch that scales a DCO cluster to `replicas` workers (see the module's rules)."""
    replicas = check_replicas(replicas)
    autoscaling = check_scalable(kind, obj)
    old_max = autoscaling.get("maxReplicas")
    old_max = old_max if isinstance(old_max, int) and not isinstance(old_max, bool) else 0
    worker: dict = {"replicas": replicas}
    if shape is not None:
        worker.update(_shaped((obj.get("spec") or {}).get("worker") or {}, shape))
    patch: dict = {"spec": {
        "worker": worker,
        "autoscaling": {"minReplicas": replicas, "maxReplicas": max(old_max, replicas + 1)},
    }}
    version = (obj.get("metadata") or {}).get("resourceVersion")
    if version:  # fail on a concurrent change rather than overwrite it
        patch["metadata"] = {"resourceVersion": version}
    return patch


def observed_status(kind: str, obj: Mapping, pods: Iterable[Mapping]) -> dict:
    """The fields of the uniform ClusterStatus (all but `scale_down`), from the
    object and its pods (those of `pod_selector(framework, name)`)."""
    framework, head = KINDS[kind]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    name = (obj.get("metadata") or {}).get("name")
    workers = 0
    head_ready = False
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_INSTANCE) != name or labels.get(LABEL_NAME) != framework:
            continue
        if labels.get(LABEL_COMPONENT) == WORKER:
            workers += pod_ready(pod)
        elif labels.get(LABEL_COMPONENT) == head:
            head_ready = head_ready or pod_ready(pod)
    autoscaling = spec.get("autoscaling") or {}
    replicas = (spec.get("worker") or {}).get("replicas")
    conditions: tuple[dict, ...] = ()
    if status.get("clusterStatus"):
        conditions = ({"type": "Running", "status": "True" if status["clusterStatus"] == "Running" else "False",
                       "reason": status["clusterStatus"], "message": status.get("reason") or ""},)
    return {
        "desired": int(replicas) if isinstance(replicas, int) else 1,
        "ready_workers": workers,
        "head_ready": head_ready,
        "min_replicas": autoscaling.get("minReplicas"),
        "max_replicas": autoscaling.get("maxReplicas"),
        "conditions": conditions,
    }


def head_patch(kind: str, obj: Mapping, shape: WorkerShape) -> dict | None:
    """The merge patch that gives a DCO cluster's head `shape`, None when it has it already."""
    section = KINDS[kind][1]
    old = (obj.get("spec") or {}).get(section) or {}
    fields = {k: v for k, v in _shaped(old, shape).items() if _plain(v) != old.get(k)}
    return {"spec": {section: fields}} if fields else None


def _shaped(old: Mapping, shape: WorkerShape) -> dict:
    """Merge-patch values of `resources`, `nodeSelector` and `tolerations` for `shape`."""
    fields: dict = {}
    if shape.resources is not None:
        fields["resources"] = replacing(old.get("resources"), shape.resources)
    if shape.node_selector is not None:
        fields["nodeSelector"] = replacing(old.get("nodeSelector"), shape.node_selector)
    if shape.tolerations is not None:
        fields["tolerations"] = [dict(t) for t in shape.tolerations]
    return fields


def _plain(value: Any) -> Any:
    """A merge-patch value as the object would hold it afterwards (null entries gone)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def _ref(kind: str, obj: Mapping) -> str:
    meta = obj.get("metadata") or {}
    return f"{kind} {meta.get('namespace', '?')}/{meta.get('name', '?')}"
