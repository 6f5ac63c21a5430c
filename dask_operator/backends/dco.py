"""Backends `dco-dask`, `dco-ray`, `dco-spark`: Domino's distributed-compute-operator
(DCO, run here at v0.8.2) `DaskCluster`, `RayCluster` and `SparkCluster`
(`distributed-compute.dominodatalab.com/v1alpha1`), the resources seed 000's
scaler was written for. One class, three configurations.

- scale: seed 000's patch (`core.dco`): `spec.worker.replicas`, with
  `spec.autoscaling.minReplicas = replicas` and `maxReplicas` at least one
  above; refused without `spec.autoscaling`, at 0 replicas, without
  `spec.image`, and with `spec.podSecurityPolicy` on Ray or Spark. One worker
  group, `worker`. A shape sets `spec.worker.resources`, `nodeSelector` and
  `tolerations`; DCO rolls them out through the worker StatefulSet.
- scale-down: **DCO's operator chooses.** DCO runs the workers as a
  StatefulSet, and a StatefulSet always removes its highest ordinals
  (`<name>-<framework>-worker-N` for the largest N), whatever they hold; neither
  DCO nor this backend can name other pods. `ClusterStatus.scale_down` is
  `OperatorChooses` to say so.
- concurrency: the patch carries the resourceVersion it was computed from;
  when DCO wrote the object's status in between (409), `Resource.update`
  recomputes it from a fresh read.
- head: the single pod of the scheduler / head / master StatefulSet, found by
  the labels DCO puts on every pod: `app.kubernetes.io/instance=<name>`,
  `app.kubernetes.io/name=dask|ray|spark`, `app.kubernetes.io/component=
  scheduler|head|master` (workers: `worker`). A head restart deletes it; the
  StatefulSet recreates it under the same name with a new uid and
  creationTimestamp.
- status: counted from those pods (DCO's `status.workerReplicas` is the
  desired count, not the observed one).
"""

from __future__ import annotations

from ..core import dco
from ..core.scaling import WorkerShape
from ..errors import InvalidScale
from ..kube import Kube
from .base import SCALE_DOWN_OPERATOR, ClusterStatus
from .resource import Resource, ResourceBackend, newest

GROUP = dco.WORKER


class DcoBackend(ResourceBackend):
    """One of DCO's kinds; subclasses name which (`kind`, `name`, `plural`)."""

    kind: str
    name: str
    plural: str  # the API's kind
    resource: str  # the resource's plural (the same word for DCO)
    api_version = dco.API_VERSION

    def __init__(self, kube: Kube) -> None:
        self.framework, self.head_role = dco.KINDS[self.kind]
        self.head_noun = self.head_role
        self.api = Resource(kube, self.api_version, self.resource, f"Domino {self.kind} ({self.api_version})")

    async def status(self, obj: dict) -> ClusterStatus:
        meta = obj["metadata"]
        pods = await self.api.pods(meta["namespace"], dco.pod_selector(self.framework, meta["name"]))
        return ClusterStatus(**dco.observed_status(self.kind, obj, pods), scale_down=SCALE_DOWN_OPERATOR)

    async def scale(self, namespace: str, name: str, replicas: int, *, shape: WorkerShape | None = None,
                    group: str | None = None) -> dict:
        if group not in (None, GROUP):
            raise InvalidScale(f"unknown worker group {group!r}: a Domino {self.kind} has one group, {GROUP!r}")
        dco.check_replicas(replicas)  # bad input is refused before the cluster is looked up

        async def change(obj: dict) -> dict:  # the rules may refuse: then nothing is sent
            return dco.scale_patch(self.kind, obj, replicas, shape)

        return await self.api.update(namespace, name, change)

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        return newest(await self.api.pods(namespace, dco.pod_selector(self.framework, name, self.head_role)))

    def head_patch(self, obj: dict, shape: WorkerShape) -> dict | None:
        return dco.head_patch(self.kind, obj, shape)


class DcoDaskBackend(DcoBackend):
    kind = "DaskCluster"
    name = "dco-dask"
    plural = resource = "daskclusters"


class DcoRayBackend(DcoBackend):
    kind = "RayCluster"
    name = "dco-ray"
    plural = resource = "rayclusters"


class DcoSparkBackend(DcoBackend):
    kind = "SparkCluster"
    name = "dco-spark"
    plural = resource = "sparkclusters"
