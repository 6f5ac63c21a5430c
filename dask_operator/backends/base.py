"""One scaling interface over Dask, Ray and Spark clusters.

A backend adapts one custom resource -- our `Cluster`, KubeRay's `RayCluster`,
Domino's `DaskCluster`/`RayCluster`/`SparkCluster`, Apache's `SparkCluster` --
to the same few verbs. The HTTP APIs and the client sit on top of this
protocol and never look inside a resource themselves.

Rules every backend keeps (the contract suite, tests/e2e/test_backends.py,
holds each one to them):
- Every failure is a `errors.ScalingError` (not found, operator not
  installed, invalid input, not scalable, scale-down unsafe), raised before
  anything is changed.
- `scale` never removes a worker the backend's rules did not choose: workers
  that hold no data (not Ready) first, then only workers the framework itself
  released (Dask's scheduler retires them) or reports idle (Ray's head);
  where the framework's own operator picks the pod (a StatefulSet's highest
  ordinal), `ClusterStatus.scale_down` says so; where the backend cannot know,
  it raises `ScaleDownUnsafe` rather than guess.
- The pure parts (which workers go, the patch to send) live in `core/` and are
  table-tested; a backend file holds only the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..core.scaling import WorkerShape

__all__ = ["Backend", "ClusterStatus", "WorkerShape"]

# Who chooses the workers a scale-down removes (`ClusterStatus.scale_down`).
SCALE_DOWN_FRAMEWORK = "Framework"  # the framework releases them first (Dask's retire_workers)
SCALE_DOWN_NAMED = "NamedIdle"  # the backend names idle workers to the operator (KubeRay workersToDelete)
SCALE_DOWN_OPERATOR = "OperatorChooses"  # the resource's operator picks (StatefulSet: highest ordinal)


@dataclass(frozen=True)
class ClusterStatus:
    """The uniform view of one cluster, whatever its kind."""

    desired: int  # desired workers
    ready_workers: int
    head_ready: bool
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_down: str = SCALE_DOWN_FRAMEWORK
    conditions: tuple[Mapping, ...] = field(default=())


class Backend(Protocol):
    """One kind of cluster resource behind the scaling interface."""

    name: str  # the backend's own name, e.g. "kuberay"
    plural: str  # the API's kind: "daskclusters", "rayclusters" or "sparkclusters"
    api_version: str  # of the resource, e.g. "ray.io/v1"
    resource: str  # the resource's plural, e.g. "rayclusters"

    async def get(self, namespace: str, name: str) -> dict:
        """The resource; ClusterNotFound / OperatorNotInstalled."""

    async def list(self, namespace: str | None, label_selector: str | None = None) -> list[dict]:
        """The resources in a namespace (None: all), optionally by label selector."""

    async def status(self, obj: dict) -> ClusterStatus:
        """The uniform status of a resource got from `get` or `list`."""

    async def scale(self, namespace: str, name: str, replicas: int, *, shape: WorkerShape | None = None,
                    group: str | None = None) -> dict:
        """Set the desired workers (and their shape); returns the updated resource."""

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        """The head pod (Dask scheduler, Ray head, Spark master), None when there is none."""

    async def restart_head(self, namespace: str, name: str) -> dict:
        """Delete the head pod for its controller to replace; returns the deleted pod."""

    async def shape_head(self, namespace: str, name: str, shape: WorkerShape) -> tuple[dict, bool]:
        """Give the head a hardware shape: (the updated resource, whether the head restarts:
        False when it had that shape already). NotSupported where a backend cannot."""
