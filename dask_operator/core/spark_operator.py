"""Pure rules for Apache spark-kubernetes-operator's `SparkCluster`
(`spark.apache.org/v1`, the CRD of its 1.0.0 release).

The operator builds a master StatefulSet (`<name>-master`, one pod) and a
worker StatefulSet (`<name>-worker`) whose replicas start at
`spec.clusterTolerations.instanceConfig.initWorkers`; when
`minWorkers < maxWorkers` it also runs an HPA between those bounds over the
workers. Pods carry `spark.operator/spark-cluster-name=<name>` and
`spark-role=master|worker`. Its Java operator is not run in our sandbox: these
rules were checked against its CRD (the API server validates the patches) and
its source, not against the operator itself.

Scale (`scale_patch`, a JSON merge patch), nothing sent unless every check
passes:
- replicas are a non-negative integer (`validate_replicas`); 0 is allowed
  (the CRD has no lower bound, unlike Domino's);
- the object has `spec.clusterTolerations.instanceConfig`, else NotScalable;
- replicas above `maxWorkers` are refused (InvalidScale naming the bound);
  the maximum is the cluster owner's to raise, not the scaler's;
- the patch sets `initWorkers = minWorkers = replicas` and keeps `maxWorkers`,
  so min <= init <= max stays coherent and the operator's HPA (when
  min < max) never scales below what was asked (as seed 000 pins Domino's
  minReplicas);
- a `WorkerShape` applies to the container named `worker` of
  `spec.workerSpec.statefulSetSpec.template` (the container the operator fills
  in; added when absent), and to that pod template's nodeSelector and
  tolerations; maps are replaced, not merged.

Status (`observed_status`): the desired count is what the spec says
(`initWorkers`); ready workers and the head's readiness come from the pods, so
with no operator running there is no master pod and `head_ready` is False.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from dask_operator.core.pods import pod_ready
from dask_operator.core.scaling import WorkerShape, replacing, validate_replicas
from dask_operator.errors import NotScalable

API_VERSION = "spark.apache.org/v1"
MAX_REPLICAS = 10000
LABEL_CLUSTER = "spark.operator/spark-cluster-name"
LABEL_ROLE = "spark-role"
MASTER = "master"
WORKER = "worker"


def pod_selector(name: str, role: str | None = None) -> str:
    """Label selector of a SparkCluster's pods (all, or one role's)."""
    return f"{LABEL_CLUSTER}={name}" + (f",{LABEL_ROLE}={role}" if role else "")


def instance_config(obj: Mapping) -> Mapping:
    """`spec.clusterTolerations.instanceConfig` (with its maxWorkers), or NotScalable."""
    config = ((obj.get("spec") or {}).get("clusterTolerations") or {}).get("instanceConfig")
    if not isinstance(config, Mapping) or not _is_int(config.get("maxWorkers")):
        meta = obj.get("metadata") or {}
        raise NotScalable(f"Cannot scale this cluster: SparkCluster {meta.get('namespace')}/{meta.get('name')} "
                          "has no spec.clusterTolerations.instanceConfig with an integer maxWorkers")
    return config


def scale_patch(obj: Mapping, replicas: Any, shape: WorkerShape | None = None) -> dict:
    """The merge patch that scales a SparkCluster to `replicas` workers (see the module's rules)."""
    replicas = validate_replicas(replicas, maximum=MAX_REPLICAS)
    config = instance_config(obj)
    validate_replicas(replicas, maximum=config["maxWorkers"])
    spec: dict = {"clusterTolerations": {"instanceConfig": {"initWorkers": replicas, "minWorkers": replicas}}}
    if shape is not None and not shape.empty:
        old = ((((obj.get("spec") or {}).get("workerSpec") or {}).get("statefulSetSpec") or {})
               .get("template") or {})
        spec["workerSpec"] = {"statefulSetSpec": {"template": replacing(old, shape_worker_template(old, shape))}}
    patch: dict = {"spec": spec}
    version = (obj.get("metadata") or {}).get("resourceVersion")
    if version:
        patch["metadata"] = {"resourceVersion": version}
    return patch


def shape_worker_template(template: Mapping | None, shape: WorkerShape) -> dict:
    """A copy of the worker pod template with the shape on its `worker` container and pod."""
    result = copy.deepcopy(dict(template or {}))
    spec = result.setdefault("spec", {})
    containers = spec.setdefault("containers", [])
    worker = next((c for c in containers if c.get("name") == WORKER), None)
    if worker is None:
        worker = {"name": WORKER}
        containers.append(worker)
    if shape.resources is not None:
        worker["resources"] = copy.deepcopy(dict(shape.resources))
    if shape.node_selector is not None:
        spec["nodeSelector"] = dict(shape.node_selector)
    if shape.tolerations is not None:
        spec["tolerations"] = [dict(t) for t in shape.tolerations]
    return result


def observed_status(obj: Mapping, pods: Iterable[Mapping]) -> dict:
    """The fields of the uniform ClusterStatus (all but `scale_down`), from the
    object and its pods (those of `pod_selector(name)`)."""
    name = (obj.get("metadata") or {}).get("name")
    config = ((obj.get("spec") or {}).get("clusterTolerations") or {}).get("instanceConfig") or {}
    workers, head_ready = 0, False
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_CLUSTER) != name:
            continue
        if labels.get(LABEL_ROLE) == WORKER:
            workers += pod_ready(pod)
        elif labels.get(LABEL_ROLE) == MASTER:
            head_ready = head_ready or pod_ready(pod)
    state = ((obj.get("status") or {}).get("currentState") or {})
    conditions: tuple[dict, ...] = ()
    if state.get("currentStateSummary"):
        summary = state["currentStateSummary"]
        conditions = ({"type": "Running", "status": "True" if summary == "RunningHealthy" else "False",
                       "reason": summary, "message": state.get("message") or ""},)
    init = config.get("initWorkers")
    return {
        "desired": init if _is_int(init) else 0,
        "ready_workers": workers,
        "head_ready": head_ready,
        "min_replicas": config.get("minWorkers"),
        "max_replicas": config.get("maxWorkers"),
        "conditions": conditions,
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
