"""Backend `kuberay`: KubeRay's `RayCluster` (`ray.io/v1`, tested against KubeRay v1.6.2).

- scale: `spec.workerGroupSpecs[i].replicas` of one worker group (the only
  one, or the one named); a RayCluster has no `/scale`. A scale-down names
  the pods to remove in the group's `scaleStrategy.workersToDelete`: workers
  that are not Ready first; then Ready workers that Ray itself released. For
  those the backend asks the Ray GCS (`ray_gcs.py`) which nodes are idle,
  then drains each chosen one (DrainNode, IDLE_TERMINATION), and names only
  the pods whose raylet accepted -- it accepts only when nothing is in use on
  the node, and then leaves Ray. When the idle workers cannot cover the
  surplus it raises `ScaleDownUnsafe` and changes nothing, draining nothing.
  When Ray refuses some drains (a worker got work between the two calls) and
  no other idle worker takes their place, the released ones are still named
  and the group's replicas lowered by that many only (their raylets have
  left Ray), and then `ScaleDownPartial` (a `ScaleDownUnsafe`) says so: the
  one error that follows a write. When Ray released none, nothing is written. `ClusterStatus.scale_down` is `NamedIdle`. A cluster
  with in-tree autoscaling is the Ray autoscaler's: `NotScalable`. The rules
  are `core/kuberay.py`'s.
- shape: the group's pod template's first container and pod (new workers get it).
- head: the `ray.io/node-type=head` pod, which KubeRay recreates when it is
  deleted; a head shape changes `headGroupSpec.template`, which KubeRay does
  not roll by itself, so the head pod is then deleted (`head_rolls` False).
- The patch carries `metadata.resourceVersion`, so a concurrent change fails
  instead of being overwritten; on that conflict the choice is made again from
  a fresh read (KubeRay's own status writes bump the version), at most 3
  times; workers already released stay chosen first.
"""

from __future__ import annotations

import logging
import time

from ..core import kuberay as rules
from ..core.pods import pod_ready
from ..core.scaling import WorkerShape, template_patch, validate_replicas
from ..errors import ScaleDownPartial, ScaleDownUnsafe
from ..kube import Kube
from ..ray_gcs import RayGcsClient, RayGcsUnreachable, RayNode
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
    head_rolls = False  # KubeRay does not replace the head when headGroupSpec.template changes

    def __init__(self, kube: Kube, gcs: RayGcsClient | None = None, via_service: bool | None = None) -> None:
        """`via_service`: reach the Ray GCS by the head Service's DNS name (default: when
        running in a cluster), else by the Ready head pod's IP."""
        self.api = Resource(kube, self.api_version, self.resource, f"RayCluster ({API_VERSION})")
        self.gcs = gcs or RayGcsClient()
        self.via_service = in_cluster() if via_service is None else via_service

    async def aclose(self) -> None:
        await self.gcs.aclose()

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
        """Choose (draining what Ray must release) and patch from one read (`Resource.update`:
        when the RayCluster changed in between -- KubeRay writes its status too -- it is read
        and chosen again)."""
        validate_replicas(replicas)
        what = f"RayCluster {namespace}/{name}"
        decided: dict = {}
        released: set[str] = set()  # pods whose Ray node accepted a drain (kept across attempts)
        refused: dict[str, str] = {}  # pods whose drain Ray refused: why

        async def change(obj: dict) -> dict:
            spec = obj.get("spec") or {}
            rules.refuse_autoscaled(spec, what)
            index, group_spec = rules.find_group(spec, group)
            group_name = str(group_spec.get("groupName"))
            wanted = rules.group_replicas(replicas, group_spec)
            pods = await self.api.pods(namespace, rules.worker_selector(name, group_name))
            workers = [rules.RayWorker.from_pod(p) for p in pods]
            where = f"{what}, group {group_name!r}, to {wanted} workers"
            idle: frozenset[str] | None = frozenset()
            address, nodes, unknown = None, {}, ""
            if rules.needs_head(workers, wanted):
                address, nodes, unknown = await self._ray_nodes(obj, workers)
                idle = None if address is None else rules.idle_workers(workers, nodes)
            try:
                chosen = rules.choose_removals(workers, wanted, idle, released)
            except ScaleDownUnsafe as e:
                if not released:  # nothing drained yet: refuse, unchanged
                    raise ScaleDownUnsafe(f"{where}: {e}" + (f" ({unknown})" if unknown else "")) from None
                chosen = ()  # a retry: drain no more, name those already released
            serving = {w.name for w in workers if w.live and w.serving}
            to_drain = [n for n in chosen if n in serving and n not in released]
            if to_drain:
                spares = [w.name for w in rules.removal_order(workers, idle, released)
                          if w.name in serving and w.name not in chosen and w.name not in released]
                await self._release(address, to_drain + spares, len(to_drain), nodes, released, refused, where)
                if not released:  # nothing left Ray: refuse, unchanged
                    raise ScaleDownUnsafe(f"{where}: Ray released none of the idle workers: {_kept(refused)}; "
                                          "nothing was changed")
            remove = rules.choose_removals(workers, wanted, frozenset(), released, partial=True) \
                if to_drain or released else chosen
            live = sum(1 for w in workers if w.live)
            target = max(wanted, live - len(remove))  # wanted, unless Ray kept some of the chosen
            decided.update(group=group_name, replicas=target, wanted=wanted, remove=remove, live=live,
                           where=where, needed=rules.surplus(workers, wanted))
            return {"spec": {"workerGroupSpecs": rules.scaled_groups(spec, index, target, remove, shape)}}

        updated = await self.api.update(namespace, name, change)
        remove = decided["remove"]
        reason = (f"removing {len(remove)} named worker(s) {list(remove)}" if remove
                  else "no worker to remove" + (", new template shape" if shape and not shape.empty else ""))
        log.info("scaled %s group %r from %d live workers to %d: %s", what, decided["group"], decided["live"],
                 decided["replicas"], reason)
        if decided["replicas"] != decided["wanted"]:
            raise ScaleDownPartial(
                f"{decided['where']}: only {len(remove)} of the {decided['needed']} workers could be removed, so "
                f"the group now wants {decided['replicas']}: Ray did not release the others: {_kept(refused)}")
        return updated

    async def _ray_nodes(self, obj: dict, workers: list[rules.RayWorker]
                         ) -> tuple[str | None, dict[str, RayNode], str]:
        """(GCS address, each worker pod's Ray node, ""), or (None, {}, why) when the GCS
        cannot say: then only unready workers may go."""
        meta = obj["metadata"]
        head = await self.head_pod(meta["namespace"], meta["name"])
        if head is None or not pod_ready(head):
            return None, {}, "no Ready head pod"
        address = rules.gcs_address(obj, head, self.via_service)
        if address is None:
            return None, {}, "the head pod has no IP"
        try:
            nodes = await self.gcs.nodes(address)
        except RayGcsUnreachable as e:
            return None, {}, str(e)
        return address, rules.ray_nodes_by_pod(workers, nodes), ""

    async def _release(self, address: str | None, candidates: list[str], need: int, nodes: dict[str, RayNode],
                       released: set[str], refused: dict[str, str], where: str) -> None:
        """Drain `candidates` in order, one at a time, until `need` were accepted: each accepted
        pod joins `released`, each refused one `refused` with Ray's reason."""
        accepted = 0
        deadline_ms = int((time.time() + rules.DRAIN_DEADLINE_SECONDS) * 1000)
        for pod in candidates:
            if accepted == need or address is None:
                break
            node = nodes[pod]
            try:
                drain = await self.gcs.drain_idle(address, node.node_id, f"dask-operator: {where}: pod {pod} "
                                                  f"idle for {node.idle_ms / 1000:.1f} s", deadline_ms)
            except RayGcsUnreachable as e:
                refused[pod] = f"drain not answered: {e}"
                log.warning("%s: drain of worker %s (Ray node %s) not answered, worker kept: %s", where, pod,
                            node.short_id, e)
                break
            if drain.accepted:
                released.add(pod)
                refused.pop(pod, None)
                accepted += 1
                log.info("%s: Ray released worker %s (node %s, idle %.1f s): it goes by name", where, pod,
                         node.short_id, node.idle_ms / 1000)
            else:
                refused[pod] = drain.reason or "refused"
                log.info("%s: Ray refused to release worker %s (node %s), kept: %s", where, pod, node.short_id,
                         refused[pod])

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        return newest(await self.api.pods(namespace, rules.head_selector(name)))

    def head_patch(self, obj: dict, shape: WorkerShape) -> dict | None:
        head = (obj.get("spec") or {}).get("headGroupSpec") or {}
        patch = template_patch(head.get("template"), shape)
        return None if patch is None else {"spec": {"headGroupSpec": {"template": patch}}}


def _kept(refused: dict[str, str]) -> str:
    return "; ".join(f"{pod} ({why})" for pod, why in sorted(refused.items())) or "none is idle any more"
