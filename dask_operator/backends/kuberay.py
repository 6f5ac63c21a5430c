"""Backend `kuberay`: KubeRay's `RayCluster` (`ray.io/v1`, tested against KubeRay v1.6.2).

- scale: `spec.workerGroupSpecs[i].replicas` of one worker group (the only
  one, or the one named); a RayCluster has no `/scale`. A scale-down names
  the pods to remove in the group's `scaleStrategy.workersToDelete`: workers
  that are not Ready first, then Ready workers the Ray head reports idle
  (`ray_head.py`); when that does not cover the surplus it raises
  `ScaleDownUnsafe` and changes nothing (`ClusterStatus.scale_down` is
  `NamedIdle`). A cluster with in-tree autoscaling is the Ray autoscaler's:
  `NotScalable`. The rules are `core/kuberay.py`'s.
- shape: the group's pod template's first container and pod (new workers get it).
- head: the `ray.io/node-type=head` pod, which KubeRay recreates when it is deleted.
- The patch carries `metadata.resourceVersion`, so a concurrent change fails
  instead of being overwritten; on that conflict the choice is made again from
  a fresh read (KubeRay's own status writes bump the version), at most 3 times.
"""

from __future__ import annotations

import logging

from ..core import kuberay as rules
from ..core.pods import pod_ip, pod_ready
from ..core.scaling import WorkerShape, validate_replicas
from ..errors import ScaleDownUnsafe
from ..kube import Kube
from ..ray_head import RayHeadClient, RayHeadUnreachable
from ..scheduler_access import in_cluster
from .base import SCALE_DOWN_NAMED, ClusterStatus
from .resource import Resource, ResourceBackend, newest, ready_count

log = logging.getLogger(__name__)

API_VERSION = "ray.io/v1"


class KubeRayBackend(ResourceBackend):
    name = "kuberay"
    plural = "rayclusters"
    api_version = API_VERSION
    resource = "rayclusters"

    def __init__(self, kube: Kube, ray_head: RayHeadClient | None = None, via_service: bool | None = None) -> None:
        """`via_service`: reach the Ray head by its Service's DNS name (default: when
        running in a cluster), else by the Ready head pod's IP."""
        self.api = Resource(kube, self.api_version, self.resource, f"RayCluster ({API_VERSION})")
        self.ray_head = ray_head or RayHeadClient()
        self.via_service = in_cluster() if via_service is None else via_service

    async def aclose(self) -> None:
        await self.ray_head.aclose()

    async def status(self, obj: dict, group: str | None = None) -> ClusterStatus:
        """Desired: the replicas of every group (or of `group`); min/max: the single or named group's."""
        meta, spec = obj["metadata"], obj.get("spec") or {}
        groups = list(spec.get("workerGroupSpecs") or ())
        if group is not None:
            groups = [rules.find_group(spec, group)[1]]
        minimum, maximum = rules.group_bounds(groups[0]) if len(groups) == 1 else (None, None)
        workers = await self.api.pods(meta["namespace"], rules.worker_selector(meta["name"], group))
        head = await self.head_pod(meta["namespace"], meta["name"])
        return ClusterStatus(
            desired=sum(int(g.get("replicas") or 0) for g in groups),
            ready_workers=ready_count(workers),
            head_ready=head is not None and pod_ready(head),
            min_replicas=minimum,
            max_replicas=maximum,
            scale_down=SCALE_DOWN_NAMED,
            conditions=tuple((obj.get("status") or {}).get("conditions") or ()),
        )

    async def scale(self, namespace: str, name: str, replicas: int, *, shape: WorkerShape | None = None,
                    group: str | None = None) -> dict:
        """Choose and patch from one read (`Resource.update`: when the RayCluster changed in
        between -- KubeRay writes its status too -- it is read and chosen again)."""
        validate_replicas(replicas)
        what = f"RayCluster {namespace}/{name}"
        decided: dict = {}

        async def change(obj: dict) -> dict:
            spec = obj.get("spec") or {}
            rules.refuse_autoscaled(spec, what)
            index, group_spec = rules.find_group(spec, group)
            group_name = str(group_spec.get("groupName"))
            wanted = rules.group_replicas(replicas, group_spec)
            pods = await self.api.pods(namespace, rules.worker_selector(name, group_name))
            workers = [rules.RayWorker.from_pod(p) for p in pods]
            idle: frozenset[str] | None = frozenset()
            unknown = ""
            if rules.needs_head(workers, wanted):
                idle, unknown = await self._idle_workers(obj)
            try:
                remove = rules.choose_removals(workers, wanted, idle)
            except ScaleDownUnsafe as e:
                raise ScaleDownUnsafe(f"{what}, group {group_name!r}, to {wanted} workers: {e}"
                                      + (f" ({unknown})" if unknown else "")) from None
            decided.update(group=group_name, replicas=wanted, remove=remove,
                           live=sum(1 for w in workers if w.live))
            return {"spec": {"workerGroupSpecs": rules.scaled_groups(spec, index, wanted, remove, shape)}}

        updated = await self.api.update(namespace, name, change)
        remove = decided["remove"]
        reason = (f"removing {len(remove)} named worker(s) {list(remove)}" if remove
                  else "no worker to remove" + (", new template shape" if shape and not shape.empty else ""))
        log.info("scaled %s group %r from %d live workers to %d: %s", what, decided["group"], decided["live"],
                 decided["replicas"], reason)
        return updated

    async def _idle_workers(self, obj: dict) -> tuple[frozenset[str] | None, str]:
        """(what the Ray head reports idle, ""), or (None, why) when it cannot say:
        then only unready workers may go."""
        meta = obj["metadata"]
        head = await self.head_pod(meta["namespace"], meta["name"])
        url = rules.head_url(obj, pod_ip(head) if head else None, self.via_service)
        if head is None or not pod_ready(head) or url is None:
            return None, "no Ready head pod"
        try:
            return await self.ray_head.idle_workers(url), ""
        except RayHeadUnreachable as e:
            return None, str(e)

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        return newest(await self.api.pods(namespace, rules.head_selector(name)))
