"""Backend `spark-operator`: Apache spark-kubernetes-operator's `SparkCluster`
(`spark.apache.org/v1`, CRD of its 1.0.0 release).

Its operator is Java and was not run here: this backend is proven against the
CRD on a real API server (which validates every patch), and against the
operator's source for the pod labels.

- scale: `spec.clusterTolerations.instanceConfig` (`core.spark_operator`):
  `initWorkers = minWorkers = replicas`, refused above `maxWorkers`. One
  worker group, `worker`. A shape goes on the `worker` container of
  `spec.workerSpec.statefulSetSpec.template`.
- scale-down: **the operator chooses.** The workers are a StatefulSet (and an
  HPA when min < max), which removes the highest ordinals;
  `ClusterStatus.scale_down` is `OperatorChooses`.
- head: the Spark master pod (`spark-role=master`,
  `spark.operator/spark-cluster-name=<name>`) of the `<name>-master`
  StatefulSet, which recreates it when deleted. Without the operator there is
  no master pod: `head_ready` is False and a head restart raises HeadNotFound.
- status: the desired count is what the spec says; ready workers and head
  readiness are counted from the pods.
"""

from __future__ import annotations

from ..core import spark_operator as rules
from ..core.scaling import WorkerShape, validate_replicas
from ..errors import InvalidScale
from ..kube import Kube
from .base import SCALE_DOWN_OPERATOR, ClusterStatus
from .resource import Resource, ResourceBackend, newest

GROUP = rules.WORKER


class SparkOperatorBackend(ResourceBackend):
    name = "spark-operator"
    plural = "sparkclusters"
    api_version = rules.API_VERSION
    resource = "sparkclusters"
    head_noun = "master"

    def __init__(self, kube: Kube) -> None:
        self.api = Resource(kube, self.api_version, self.resource, f"Apache SparkCluster ({self.api_version})")

    async def status(self, obj: dict) -> ClusterStatus:
        meta = obj["metadata"]
        pods = await self.api.pods(meta["namespace"], rules.pod_selector(meta["name"]))
        return ClusterStatus(**rules.observed_status(obj, pods), scale_down=SCALE_DOWN_OPERATOR)

    async def scale(self, namespace: str, name: str, replicas: int, *, shape: WorkerShape | None = None,
                    group: str | None = None) -> dict:
        if group not in (None, GROUP):
            raise InvalidScale(f"unknown worker group {group!r}: a SparkCluster has one group, {GROUP!r}")
        validate_replicas(replicas, maximum=rules.MAX_REPLICAS)  # before the cluster is looked up

        async def change(obj: dict) -> dict:  # the rules may refuse: then nothing is sent
            return rules.scale_patch(obj, replicas, shape)

        return await self.api.update(namespace, name, change)

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        return newest(await self.api.pods(namespace, rules.pod_selector(name, rules.MASTER)))
