"""The churn soak's record (tests/e2e/test_churn.py): each worker pod's life as
the pod watch saw it, each Dask worker as its scheduler recorded it (mapped to
its pod by IP and time), and why each deleted pod could go."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dask_operator import constants as c
from dask_operator.core.pods import pod_ready


@dataclass
class PodLife:
    """One worker pod (one uid), as the watch saw it."""

    name: str
    uid: str
    seen: float  # its first event
    ip: str | None = None
    gone: float = math.inf  # its DELETED event
    deletion: tuple[float, dict] | None = None  # (time, the pod) when its deletion began
    annotated: float | None = None  # when first seen annotated as retired


def pod_lives(events: list[tuple[float, str, dict]]) -> dict[str, PodLife]:
    lives: dict[str, PodLife] = {}
    for t, kind, pod in events:
        meta = pod["metadata"]
        life = lives.setdefault(meta["uid"], PodLife(meta["name"], meta["uid"], t))
        life.ip = life.ip or (pod.get("status") or {}).get("podIP")
        if life.annotated is None and c.ANNOTATION_RETIRING in (meta.get("annotations") or {}):
            life.annotated = t
        if life.deletion is None and (kind == "DELETED" or meta.get("deletionTimestamp")):
            life.deletion = (t, pod)
        if kind == "DELETED":
            life.gone = t
    return lives


@dataclass
class Worker:
    """One Dask worker (one address) of one scheduler (`epoch`), as that scheduler recorded it."""

    epoch: int
    address: str
    added: float
    removed: float  # its remove-worker event, else when the scheduler's record was read for the last time
    uid: str | None = None  # its pod
    retired: bool = False  # named in a retire-workers event
    lost: list = field(default_factory=list)  # keys it left with

    def registered_at(self, t: float) -> bool:
        return self.added <= t < self.removed


def scheduler_workers(epoch: int, events: list[tuple[float, dict]], end: float,
                      lives: dict[str, PodLife]) -> list[Worker]:
    """The workers one scheduler's "all" events tell of, each mapped to its pod by IP."""
    found: dict[str, Worker] = {}
    for t, e in events:
        action = e.get("action")
        if action == "add-worker":
            found[e["worker"]] = Worker(epoch, e["worker"], t, end)
        elif action == "remove-worker" and e["worker"] in found:
            w = found[e["worker"]]
            w.removed = t
            w.lost = sorted(map(str, [*e.get("lost-computed-tasks", ()), *e.get("lost-scattered-tasks", ())]))
        elif action == "retire-workers":
            for address in e["retired"]:
                assert address in found, f"retired worker {address} was added to scheduler {epoch}"
                found[address].retired = True
    for w in found.values():
        host = w.address.split("://")[-1].rsplit(":", 1)[0]
        pods = [p for p in lives.values() if p.ip == host and p.seen <= w.added <= p.gone]
        assert len(pods) == 1, f"worker {w.address} (added at {w.added:.3f}) maps to one pod, not {pods}"
        w.uid = pods[0].uid
    return list(found.values())


def deletion_kind(life: PodLife, mine: list[Worker], unrecorded: tuple[float, float],
                  outage: tuple[float, float]) -> str:
    """Why a deleted pod could go; a kind starting with "VIOLATION" fails the test. `unrecorded`:
    from the last read of the first scheduler's events to its SIGKILL; `outage`: from that
    SIGKILL to the start of the second scheduler."""
    t, pod = life.deletion
    if c.ANNOTATION_RETIRING in (pod["metadata"].get("annotations") or {}):
        if any(w.retired for w in mine):
            return "retired"
        if unrecorded[0] <= life.annotated <= unrecorded[1]:
            return "retired (the scheduler's record of it died with the scheduler)"
        return "VIOLATION: annotated as retired, but the scheduler never retired its worker"
    if not pod_ready({"status": pod.get("status") or {}}):  # the Ready condition as the deletion began
        return "not Ready"
    registered = [w for w in mine if w.registered_at(t)]
    if not registered:
        return "Ready, no scheduler running" if outage[0] <= t <= outage[1] else "Ready, its worker not registered"
    if all(w.retired for w in registered):
        return "retired by its preStop hook"
    return f"VIOLATION: Ready, worker {[w.address for w in registered]} registered and not retired"
