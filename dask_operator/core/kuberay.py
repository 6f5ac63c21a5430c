"""Pure rules of the KubeRay backend: which worker group, which pods go, the patch.

A KubeRay `RayCluster` (`ray.io/v1`) has no `/scale`: its workers are
`spec.workerGroupSpecs[i].replicas`, one entry per group. Without in-tree
autoscaling a plain decrease makes KubeRay delete arbitrary workers, so a
scale-down here always names the pods to remove in the group's
`scaleStrategy.workersToDelete`, which KubeRay deletes exactly.

- Group: `group=None` means the only group; with several groups a name is
  required (`InvalidScale` naming them); an unknown name is `InvalidScale`.
- Replicas: a non-negative integer within the group's `minReplicas` (0 when
  unset) and `maxReplicas` (no ceiling when unset), else `InvalidScale`.
- A cluster with `spec.enableInTreeAutoscaling: true` is the Ray autoscaler's
  to size: `NotScalable`.
- A worker pod is *live* when it is not being deleted and not terminal
  (Succeeded/Failed: KubeRay replaces those itself). Surplus = live - replicas.
- Pod to Ray node (`ray_nodes_by_pod`): the alive node whose `instance_id` is
  the pod's name (KubeRay sets RAY_CLOUD_INSTANCE_ID to it), else the alive
  node without an instance id at the pod's IP; none when that is not exactly
  one node. A dead node never matches (its IP may be a new pod's).
- Idle (`idle_workers`): a Ready pod whose node the GCS reports IDLE for at
  least `MIN_IDLE_SECONDS` (so a worker between two tasks of a job is left
  alone); its node activity is not looked at (Ray 2.60 leaves the last busy
  reasons there once a node is idle). The raylet has the last word (DrainNode).
- The surplus is covered in this order -- not Running, then Running but not
  Ready (they hold nothing), then Ready pods whose Ray node was already
  released (drained), then Ready pods reported idle (`idle`: pod names; None
  when the GCS could not be asked) -- newest first, then by name, within
  each tier. A Ready pod neither released nor idle is never chosen. A surplus
  that cannot be covered is `ScaleDownUnsafe`, saying how many could not be
  chosen and why, and nothing is chosen; with `partial=True` (after drains)
  whatever can go is chosen instead.
- The patch sets the group's `replicas` and `scaleStrategy.workersToDelete` to
  exactly the chosen pods (KubeRay never clears that list, so names from an
  earlier scale are dropped), applies a `WorkerShape` to the group's template,
  and leaves every other group untouched.
- The GCS address (`gcs_address`): the head pod's `gcs-server` container port
  (6379 by default; `status.endpoints` may hold a NodePort instead) at the head
  Service's DNS name in-cluster, else at the Ready head pod's IP.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from dask_operator.core.pods import pod_ip, pod_ready
from dask_operator.core.scaling import WorkerShape, shape_pod_template, validate_replicas
from dask_operator.errors import InvalidScale, NotScalable, ScaleDownUnsafe
from dask_operator.ray_gcs import GCS_PORT, IDLE, RayNode

RUNNING = "Running"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
GCS_PORT_NAME = "gcs-server"  # the head container's port that KubeRay names
# A Ready worker is offered for release only after the GCS has seen it idle this long.
MIN_IDLE_SECONDS = 5.0
# The deadline a drain carries: by then the pod is gone (KubeRay deletes it at once).
DRAIN_DEADLINE_SECONDS = 60

# Labels KubeRay puts on the pods of a RayCluster.
LABEL_CLUSTER = "ray.io/cluster"
LABEL_NODE_TYPE = "ray.io/node-type"
LABEL_GROUP = "ray.io/group"


def head_selector(cluster: str) -> str:
    return f"{LABEL_CLUSTER}={cluster},{LABEL_NODE_TYPE}=head"


def worker_selector(cluster: str, group: str | None = None) -> str:
    selector = f"{LABEL_CLUSTER}={cluster},{LABEL_NODE_TYPE}=worker"
    return f"{selector},{LABEL_GROUP}={group}" if group is not None else selector


@dataclass(frozen=True)
class RayWorker:
    """What choosing workers needs to know about one worker pod."""

    name: str
    ip: str | None
    phase: str
    ready: bool
    deleting: bool
    created: str

    @classmethod
    def from_pod(cls, pod: Mapping) -> RayWorker:
        metadata = pod.get("metadata") or {}
        return cls(
            name=metadata["name"],
            ip=pod_ip(pod),
            phase=(pod.get("status") or {}).get("phase") or "Pending",
            ready=pod_ready(pod),
            deleting=bool(metadata.get("deletionTimestamp")),
            created=str(metadata.get("creationTimestamp") or ""),
        )

    @property
    def live(self) -> bool:
        """Counted as a worker: not being deleted, not terminal."""
        return not self.deleting and self.phase not in TERMINAL_PHASES

    @property
    def serving(self) -> bool:
        """Running and Ready: it may hold tasks, actors or objects."""
        return self.phase == RUNNING and self.ready


# ---------------------------------------------------------------- the group


def refuse_autoscaled(spec: Mapping, what: str) -> None:
    """NotScalable when the Ray autoscaler owns the worker counts."""
    if spec.get("enableInTreeAutoscaling") is True:
        raise NotScalable(f"{what} has spec.enableInTreeAutoscaling: true: the Ray autoscaler sizes its "
                          "worker groups, so they cannot be scaled from outside")


def find_group(spec: Mapping, group: str | None) -> tuple[int, Mapping]:
    """(index, group spec) of the named group, or of the only one when `group` is None."""
    groups = list(spec.get("workerGroupSpecs") or ())
    names = [str(g.get("groupName")) for g in groups]
    if group is None:
        if len(groups) == 1:
            return 0, groups[0]
        if not groups:
            raise InvalidScale("this RayCluster has no worker group to scale")
        raise InvalidScale(f"this RayCluster has {len(groups)} worker groups ({', '.join(names)}): "
                           "name the one to scale")
    if group not in names:
        known = ", ".join(names) or "none"
        raise InvalidScale(f"unknown worker group {group!r}: this RayCluster's groups are {known}")
    index = names.index(group)
    return index, groups[index]


def group_bounds(group: Mapping) -> tuple[int, int | None]:
    """(minReplicas, maxReplicas) of a worker group; 0 and None when unset."""
    minimum, maximum = group.get("minReplicas"), group.get("maxReplicas")
    return (minimum if isinstance(minimum, int) else 0), (maximum if isinstance(maximum, int) else None)


def group_replicas(value, group: Mapping) -> int:
    """`value` as the group's replicas, within its bounds, or InvalidScale."""
    validate_replicas(value)
    minimum, maximum = group_bounds(group)
    return validate_replicas(value, minimum, maximum)


# ---------------------------------------------------------------- which pods go


def surplus(workers: Sequence[RayWorker], replicas: int) -> int:
    return max(0, sum(1 for w in workers if w.live) - replicas)


def needs_head(workers: Sequence[RayWorker], replicas: int) -> bool:
    """Whether the surplus reaches Ready workers, so only Ray can say which may go."""
    return surplus(workers, replicas) > sum(1 for w in workers if w.live and not w.serving)


def ray_nodes_by_pod(workers: Sequence[RayWorker], nodes: Sequence[RayNode]) -> dict[str, RayNode]:
    """Each live worker pod's Ray node, where exactly one alive node is its own."""
    alive = [n for n in nodes if n.alive]
    found: dict[str, RayNode] = {}
    for w in workers:
        if not w.live:
            continue
        mine = [n for n in alive if n.instance_id == w.name]
        if not mine and w.ip:
            mine = [n for n in alive if not n.instance_id and n.ip == w.ip]
        if len(mine) == 1:
            found[w.name] = mine[0]
    return found


def idle_workers(workers: Sequence[RayWorker], nodes_by_pod: Mapping[str, RayNode],
                 min_idle_seconds: float = MIN_IDLE_SECONDS) -> frozenset[str]:
    """The Ready pods whose Ray node is IDLE for at least `min_idle_seconds`."""
    def idle(node: RayNode | None) -> bool:
        return node is not None and node.status == IDLE and node.idle_ms >= min_idle_seconds * 1000
    return frozenset(w.name for w in workers if w.live and w.serving and idle(nodes_by_pod.get(w.name)))


def removal_order(workers: Sequence[RayWorker], idle: Collection[str] | None,
                  released: Collection[str] = ()) -> list[RayWorker]:
    """Every live worker that may go, in the order they go (see the module's rules)."""
    live = [w for w in workers if w.live]
    unready = _newest_first([w for w in live if not w.serving])
    unready.sort(key=lambda w: w.phase == RUNNING)  # not Running before Running-unready (stable)
    serving = [w for w in live if w.serving]
    gone = _newest_first([w for w in serving if w.name in released])
    reported = set(idle or ())
    quiet = _newest_first([w for w in serving if w not in gone and w.name in reported])
    return unready + gone + quiet


def choose_removals(workers: Sequence[RayWorker], replicas: int, idle: Collection[str] | None,
                    released: Collection[str] = (), *, partial: bool = False) -> tuple[str, ...]:
    """The pods a scale to `replicas` removes, or ScaleDownUnsafe when the surplus cannot be covered
    (with `partial`: as many as can go)."""
    needed = surplus(workers, replicas)
    if needed == 0:
        return ()
    order = removal_order(workers, idle, released)
    chosen = order[:needed]
    if len(chosen) < needed and not partial:
        missing = needed - len(chosen)
        serving = [w for w in workers if w.live and w.serving]
        if idle is None:
            why = ("the Ray head could not be asked which workers are idle, and without it only workers "
                   "that are not Ready may go")
        else:
            busy = sorted(w.name for w in serving if w not in order)
            shown = ", ".join(busy[:5]) + (f" and {len(busy) - 5} more" if len(busy) > 5 else "")
            why = (f"the Ray head reports {len(serving) - len(busy)} of {len(serving)} Ready workers idle "
                   f"(busy: {shown})")
        raise ScaleDownUnsafe(f"cannot choose {missing} of the {needed} workers to remove: {why}; "
                              "nothing was changed")
    return tuple(w.name for w in chosen)


def _newest_first(workers: list[RayWorker]) -> list[RayWorker]:
    ordered = sorted(workers, key=lambda w: w.name)
    ordered.sort(key=lambda w: w.created, reverse=True)
    return ordered


# ---------------------------------------------------------------- the patch


def scaled_groups(spec: Mapping, index: int, replicas: int, remove: Sequence[str],
                  shape: WorkerShape | None = None) -> list[dict]:
    """A copy of `spec.workerGroupSpecs` with group `index` set to `replicas`,
    `scaleStrategy.workersToDelete` = exactly `remove`, and `shape` applied."""
    groups = copy.deepcopy(list(spec.get("workerGroupSpecs") or ()))
    group = groups[index]
    group["replicas"] = replicas
    strategy = dict(group.get("scaleStrategy") or {})
    strategy["workersToDelete"] = list(remove)
    group["scaleStrategy"] = strategy
    if shape is not None and not shape.empty:
        group["template"] = shape_pod_template(group.get("template"), shape)
    return groups


def gcs_address(obj: Mapping, head: Mapping | None, via_service: bool) -> str | None:
    """`host:port` of the Ray GCS: the head Service's DNS name in-cluster, else the
    head pod's IP (None when there is no head pod, or it has no IP yet)."""
    if head is None:
        return None
    port = GCS_PORT
    for container in (head.get("spec") or {}).get("containers") or ():
        for p in container.get("ports") or ():
            if p.get("name") == GCS_PORT_NAME and isinstance(p.get("containerPort"), int):
                port = p["containerPort"]
    if via_service:
        meta = obj["metadata"]
        service = ((obj.get("status") or {}).get("head") or {}).get("serviceName") or f"{meta['name']}-head-svc"
        return f"{service}.{meta['namespace']}.svc:{port}"
    ip = pod_ip(head)
    return f"{ip}:{port}" if ip else None
