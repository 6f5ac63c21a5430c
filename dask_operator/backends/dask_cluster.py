"""Backend `dask-operator`: our own `Cluster` (`clusters.dask.charmtx.com`).

- scale: `spec.workers.replicas` (what `/scale` sets); this operator then
  creates workers, or has the Dask scheduler retire the surplus before their
  pods go (`ClusterStatus.scale_down` is `Framework`). One group, `workers`.
- shape: the worker template's first container and pod; the operator then
  replaces running workers new-first, each old one retired through the
  scheduler (`core.plan`, "Replacement").
- head: the scheduler pod of the `<cluster>-scheduler` Deployment, which
  replaces it when it is deleted, or rolls it when a head shape changes
  `spec.scheduler.template`.
"""

from __future__ import annotations

from .. import constants as c
from ..core import scheduler_selector
from ..core.scaling import WorkerShape, template_patch, validate_replicas
from ..errors import InvalidScale
from ..kube import Kube
from .base import SCALE_DOWN_FRAMEWORK, ClusterStatus
from .resource import Resource, ResourceBackend, newest

GROUP = "workers"


class DaskClusterBackend(ResourceBackend):
    name = "dask-operator"
    plural = "daskclusters"
    api_version = c.API_VERSION
    resource = c.PLURAL
    head_noun = "scheduler"

    def __init__(self, kube: Kube) -> None:
        self.api = Resource(kube, self.api_version, self.resource, f"Cluster ({c.API_VERSION})")

    async def status(self, obj: dict) -> ClusterStatus:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        conditions = tuple(status.get("conditions") or ())
        available = any(cd.get("type") == c.COND_AVAILABLE and cd.get("status") == "True" for cd in conditions)
        return ClusterStatus(
            desired=int((spec.get("workers") or {}).get("replicas", 1)),
            ready_workers=int((status.get("workers") or {}).get("ready") or 0),
            head_ready=available,
            scale_down=SCALE_DOWN_FRAMEWORK,
            conditions=conditions,
        )

    async def scale(self, namespace: str, name: str, replicas: int, *, shape: WorkerShape | None = None,
                    group: str | None = None) -> dict:
        if group not in (None, GROUP):
            raise InvalidScale(f"unknown worker group {group!r}: a Cluster has one group, {GROUP!r}")
        replicas = validate_replicas(replicas, maximum=c.MAX_WORKERS)

        async def change(obj: dict) -> dict:
            workers: dict = {"replicas": replicas}
            if shape is not None and not shape.empty:
                template = ((obj.get("spec") or {}).get("workers") or {}).get("template")
                if (patch := template_patch(template, shape)) is not None:
                    workers["template"] = patch
            return {"spec": {"workers": workers}}

        return await self.api.update(namespace, name, change)

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        return newest(await self.api.pods(namespace, scheduler_selector(name)))

    def head_patch(self, obj: dict, shape: WorkerShape) -> dict | None:
        template = ((obj.get("spec") or {}).get("scheduler") or {}).get("template")
        patch = template_patch(template, shape)
        return None if patch is None else {"spec": {"scheduler": {"template": patch}}}
