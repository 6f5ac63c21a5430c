"""Level-based scaling: from desired replicas and observed worker pods to a plan.

A worker pod is *live* when it is not being deleted, not retiring (the
scheduler reported it retired) and not terminal (phase Succeeded or Failed,
e.g. evicted). Live pods are what ``status.workers.count`` counts and what the
plan compares with the desired replicas.

A worker pod is *outdated* when its template-hash label names another worker
template than the Cluster's current one (`manifests.worker_template_hash`);
pods without the label (made before the label existed) count as current, so
an operator upgrade alone replaces nothing. Outdated workers are replaced
gracefully, new first (`plan_workers`, "Replacement").
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dask_operator import constants as c
from dask_operator.core.manifests import worker_pod_name
from dask_operator.core.pods import pod_ready

RUNNING = "Running"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class WorkerPod:
    """What scaling needs to know about one worker pod."""

    name: str
    phase: str
    ready: bool
    deleting: bool
    retiring_since: str | None
    created: str
    template_hash: str | None = None

    @classmethod
    def from_pod(cls, pod: Mapping) -> WorkerPod:
        """Read a Pod object (a dict as the API returns it)."""
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        annotations = metadata.get("annotations") or {}
        return cls(
            name=metadata["name"],
            phase=status.get("phase") or "Pending",
            ready=pod_ready(pod),
            deleting=bool(metadata.get("deletionTimestamp")),
            retiring_since=annotations.get(c.ANNOTATION_RETIRING),
            created=str(metadata.get("creationTimestamp") or ""),
            template_hash=(metadata.get("labels") or {}).get(c.LABEL_TEMPLATE_HASH),
        )

    @property
    def retiring(self) -> bool:
        """The scheduler reported this worker retired; the pod is to be deleted."""
        return self.retiring_since is not None

    @property
    def terminal(self) -> bool:
        """The pod's containers have stopped for good."""
        return self.phase in TERMINAL_PHASES

    @property
    def live(self) -> bool:
        """Counted as a worker: not deleting, not retiring, not terminal."""
        return not (self.deleting or self.retiring or self.terminal)

    def outdated(self, template_hash: str | None) -> bool:
        """Made from another worker template than ``template_hash`` (None: nothing is)."""
        return template_hash is not None and self.template_hash not in (None, template_hash)

    @property
    def serving(self) -> bool:
        """Running and Ready: it may hold data, so only the scheduler may retire it."""
        return self.phase == RUNNING and self.ready


@dataclass(frozen=True)
class ScalePlan:
    """Pods to create and delete, and how many workers to ask the scheduler to retire."""

    create: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    retire: int = 0
    replace: tuple[str, ...] = ()  # outdated serving workers to retire by name

    @property
    def empty(self) -> bool:
        """Nothing to do."""
        return not (self.create or self.delete or self.retire or self.replace)


def surge_limit(desired: int) -> int:
    """Pods a replacement may run beyond ``desired``: `MAX_SURGE_PERCENT`, rounded up, at least 1."""
    return max(1, -(-desired * c.MAX_SURGE_PERCENT // 100))


def live_pods(pods: Iterable[WorkerPod]) -> list[WorkerPod]:
    """The pods that count as workers."""
    return [p for p in pods if p.live]


def plan_workers(
    cluster_name: str, desired: int, pods: Sequence[WorkerPod], reserved: Iterable[str] = (),
    template_hash: str | None = None, registered: Collection[str] | None = None,
) -> ScalePlan:
    """Plan the step from the observed pods towards ``desired`` live workers.

    ``reserved`` are names held by pods that are not this Cluster's (e.g. a
    deleted Cluster's of the same name, awaiting garbage collection): never
    counted, never touched, never reused.

    - Retiring and terminal pods not yet being deleted are always deleted.
    - Too few live pods: create the missing ones, named with the lowest
      indices no existing pod (even a deleting one) holds.
    - Too many: delete surplus pods that are not Running and Ready (they hold
      no data) -- not-Running first, then newest, then highest index -- and
      leave the rest of the surplus to the scheduler to retire.

    Replacement, when pods are outdated against ``template_hash``. A worker
    *holds data* when its pod is serving and, if ``registered`` (the
    scheduler's worker names) is given, the scheduler has registered it:
    - outdated pods that hold no data are deleted at once;
    - while outdated serving workers remain, current workers are created up
      to ``desired``, with at most ``desired + surge_limit(desired)`` live
      pods in all (new workers first);
    - outdated serving workers are retired by name through the scheduler only
      as far as serving workers stay at ``desired`` or above: each goes once
      a current worker serves in its place (to zero when ``desired`` is 0);
      disposal order, as above. A current worker serves in its place once
      it holds data by the same rule (registered: it can take the data);
    - meanwhile a surplus of current workers only loses pods that are not
      serving; their retirement waits for the replacement to finish.
    """
    def holds(p: WorkerPod) -> bool:
        return p.serving and (registered is None or p.name in registered)

    outdated = [p for p in pods if p.live and p.outdated(template_hash)]
    if any(holds(p) for p in outdated):
        return _replacement(cluster_name, desired, pods, set(reserved), template_hash, holds)
    old = {p.name for p in outdated}
    live = [p for p in live_pods(pods) if p.name not in old]
    doomed = [p.name for p in pods if not p.deleting and (not p.live or p.name in old)]
    if len(live) < desired:
        taken = {p.name for p in pods} | set(reserved)
        create = _free_names(cluster_name, taken, desired - len(live))
        return ScalePlan(create=create, delete=tuple(doomed))
    surplus = len(live) - desired
    idle = _disposal_order(cluster_name, [p for p in live if not p.serving])[:surplus]
    return ScalePlan(
        delete=tuple(doomed + [p.name for p in idle]),
        retire=surplus - len(idle),
    )


def _replacement(cluster_name: str, desired: int, pods: Sequence[WorkerPod], reserved: set[str],
                 template_hash: str | None, holds: Callable[[WorkerPod], bool]) -> ScalePlan:
    """`plan_workers` while outdated serving workers remain (see its docstring)."""
    live = live_pods(pods)
    current = [p for p in live if not p.outdated(template_hash)]
    old_serving = [p for p in live if p.outdated(template_hash) and holds(p)]
    doomed = [p.name for p in pods if not p.deleting and (not p.live or (p.outdated(template_hash)
                                                                          and not holds(p)))]
    room = desired + surge_limit(desired) - len(current) - len(old_serving)
    count = max(0, min(desired - len(current), room))
    create = _free_names(cluster_name, {p.name for p in pods} | reserved, count)
    extra = _disposal_order(cluster_name, [p for p in current if not p.serving])[:max(0, len(current) - desired)]
    serving = sum(holds(p) for p in current) + len(old_serving)
    replace = _disposal_order(cluster_name, old_serving)[:max(0, serving - desired)]
    return ScalePlan(create=create, delete=tuple(doomed + [p.name for p in extra]),
                     replace=tuple(p.name for p in replace))


def unregistered_surplus(
    cluster_name: str, retire: int, pods: Sequence[WorkerPod], registered: Collection[str]
) -> tuple[str, ...]:
    """Of ``retire`` surplus workers, the pods to delete without asking the scheduler.

    A serving pod whose worker the scheduler has not registered (its name is not
    in ``registered``, the scheduler's worker names) holds no data: such pods go
    first, like pods that are not Ready -- newest first, then highest index --
    up to ``retire`` of them. The rest of the surplus is the scheduler's to retire.
    """
    unknown = [p for p in live_pods(pods) if p.serving and p.name not in registered]
    return tuple(p.name for p in _disposal_order(cluster_name, unknown)[:retire])


def _free_names(cluster_name: str, taken: set[str], count: int) -> tuple[str, ...]:
    names: list[str] = []
    index = 0
    while len(names) < count:
        name = worker_pod_name(cluster_name, index)
        if name not in taken:
            names.append(name)
        index += 1
    return tuple(names)


def _disposal_order(cluster_name: str, pods: list[WorkerPod]) -> list[WorkerPod]:
    """Not-Running before Running-unready, then newest first, then highest index first."""
    ordered = sorted(pods, key=lambda p: _index_key(cluster_name, p.name), reverse=True)
    ordered.sort(key=lambda p: p.created, reverse=True)
    ordered.sort(key=lambda p: p.phase == RUNNING)
    return ordered


def worker_index(cluster_name: str, pod_name: str) -> int | None:
    """The index in ``<cluster>-worker-<index>``, or None for other names."""
    prefix = worker_pod_name(cluster_name, 0)[:-1]
    suffix = pod_name[len(prefix):] if pod_name.startswith(prefix) else ""
    return int(suffix) if suffix.isdigit() else None


def _index_key(cluster_name: str, pod_name: str) -> tuple[int, str]:
    index = worker_index(cluster_name, pod_name)
    return (-1 if index is None else index, pod_name)


def select_retired(
    requested_names: Iterable[str] | None,
    retired_report: Mapping,
    pods: Iterable[WorkerPod],
) -> tuple[str, ...]:
    """Names of our pods whose workers the scheduler reports retired.

    ``retired_report`` is the JSON answer of ``POST /api/v1/retire_workers``:
    worker address -> worker info with a ``name``. Only names of ``pods`` (and
    of ``requested_names``, when given) are returned, sorted.
    """
    reported = {
        str(info["name"])
        for info in retired_report.values()
        if isinstance(info, Mapping) and info.get("name") is not None
    }
    ours = {p.name for p in pods}
    if requested_names is not None:
        ours &= set(requested_names)
    return tuple(sorted(reported & ours))
