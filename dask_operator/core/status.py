"""The whole ``status`` of a Cluster, computed from observations.

Phase:
  - ``Pending``: the scheduler is not ready;
  - ``Scaling``: the scheduler is ready, and live workers run an outdated
    worker template, or the live worker count differs from the desired
    replicas, or some live workers are not ready, or pods of retired workers
    still exist;
  - ``Running``: the scheduler is ready and count == ready == desired.

Conditions (each with ``observedGeneration``; ``lastTransitionTime`` changes
only when ``status`` does):
  - ``Available``: the scheduler is ready (clients can connect);
  - ``Progressing``: True while the phase is not ``Running``; the reason says
    what it waits for;
  - ``ScaleDownBlocked``: True while the operator cannot scale down (the
    scheduler is unreachable, or it retired fewer workers than asked).

Conditions of other types (the autoscaler's ``Autoscaling``) are carried over
from ``previous`` as they are.

Events (`scheduler_lost`, `cluster_event`): ``Available`` turning from True to
False is a lost scheduler (its pod deleted, restarted or on a lost node): one
Warning ``SchedulerLost``. Its workers keep their pods; nothing is deleted for
it, and they register again once the scheduler is back.

Values that are unknown are ``None``: in a merge patch ``None`` removes the
field, and ``status_changed`` treats ``None`` and absent alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from dask_operator import constants as c
from dask_operator.core.manifests import worker_selector
from dask_operator.core.plan import WorkerPod, live_pods
from dask_operator.core.spec import ClusterSpec

OWN_CONDITIONS = frozenset({c.COND_AVAILABLE, c.COND_PROGRESSING, c.COND_SCALE_DOWN_BLOCKED})
PHASE_PENDING = "Pending"
PHASE_SCALING = "Scaling"
PHASE_RUNNING = "Running"


def compute_status(
    spec: ClusterSpec,
    pods: Sequence[WorkerPod],
    scheduler_address: str | None,
    scheduler_ready: bool,
    blocked_reason: str | None,
    previous: Mapping | None,
    now: str,
    blocked_message: str | None = None,
) -> dict[str, Any]:
    """The whole status of the Cluster.

    ``now`` is an RFC 3339 time (e.g. ``2024-05-01T12:00:00Z``), used as
    ``lastTransitionTime`` of conditions whose status changed since
    ``previous`` (the current status). ``blocked_reason`` is a CamelCase
    reason such as ``SchedulerUnreachable`` (an error's ``reason``), None when
    scale-down is not blocked; ``blocked_message`` details it.
    """
    live = live_pods(pods)
    count = len(live)
    ready = sum(1 for p in live if p.ready)
    outdated = sum(1 for p in live if p.outdated(spec.worker_template_hash))
    retiring = sorted((p for p in pods if p.retiring), key=lambda p: p.name)
    progress = _progress(scheduler_ready, spec.replicas, count, ready, len(retiring), outdated)
    old = conditions_by_type(previous)
    cond = partial(condition, old, spec.generation, now)
    foreign = [dict(x) for t, x in old.items() if t not in OWN_CONDITIONS]
    return {
        "observedGeneration": spec.generation,
        "phase": _phase(scheduler_ready, progress),
        "scheduler": {"address": scheduler_address},
        "workers": {
            "count": count,
            "ready": ready,
            "outdated": outdated,
            "selector": worker_selector(spec.name),
            "retiring": [_retiring_entry(p) for p in retiring],
        },
        "conditions": [
            cond(
                c.COND_AVAILABLE,
                scheduler_ready,
                "SchedulerReady" if scheduler_ready else "SchedulerNotReady",
                f"scheduler is {'ready' if scheduler_ready else 'not ready'}; "
                f"{ready}/{spec.replicas} workers ready",
            ),
            cond(
                c.COND_PROGRESSING,
                progress is not None,
                progress[0] if progress else "Complete",
                progress[1] if progress else f"{count} workers running and ready",
            ),
            cond(
                c.COND_SCALE_DOWN_BLOCKED,
                blocked_reason is not None,
                blocked_reason or "NotBlocked",
                (blocked_message or f"scale-down blocked: {blocked_reason}")
                if blocked_reason
                else "",
            ),
            *foreign,
        ],
    }


def _phase(scheduler_ready: bool, progress: tuple[str, str] | None) -> str:
    if not scheduler_ready:
        return PHASE_PENDING
    return PHASE_SCALING if progress else PHASE_RUNNING


def _retiring_entry(pod: WorkerPod) -> dict[str, str]:
    """``{name, since}``; ``since`` is left out when the annotation is empty."""
    entry = {"name": pod.name}
    if pod.retiring_since:
        entry["since"] = pod.retiring_since
    return entry


def _progress(
    scheduler_ready: bool, desired: int, count: int, ready: int, retiring: int, outdated: int = 0
) -> tuple[str, str] | None:
    """(reason, message) of what the cluster still waits for, or None when done."""
    if not scheduler_ready:
        return "WaitingForScheduler", "waiting for the scheduler to become ready"
    if outdated:
        return "ReplacingWorkers", (f"{outdated} of {count} workers run an outdated template; "
                                    f"replacing them new-first ({desired} desired)")
    if count < desired:
        return "ScalingUp", f"{count} of {desired} workers exist"
    if count > desired:
        return "ScalingDown", f"{count} workers exist, {desired} desired"
    if retiring:
        return "RemovingRetired", f"{retiring} retired workers are being removed"
    if ready < count:
        return "WaitingForWorkers", f"{ready} of {count} workers ready"
    return None


def scheduler_lost(previous: Mapping | None, status: Mapping) -> str | None:
    """The message of a ``SchedulerLost`` Event when ``Available`` went from True to False, else None."""
    before = conditions_by_type(previous).get(c.COND_AVAILABLE) or {}
    after = conditions_by_type(status).get(c.COND_AVAILABLE) or {}
    if before.get("status") != "True" or after.get("status") != "False":
        return None
    count = status.get("workers", {}).get("count", 0)
    return (f"the scheduler is not ready (its pod deleted, restarting or on a lost node); the {count} "
            f"workers keep their pods and register again once it is back")


def cluster_event(spec: ClusterSpec, reason: str, message: str, now: str, type_: str = "Warning") -> dict[str, Any]:
    """A core/v1 Event about the Cluster, as the operator posts it."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{spec.name}.", "namespace": spec.namespace},
        "involvedObject": {"apiVersion": c.API_VERSION, "kind": c.KIND, "name": spec.name,
                           "namespace": spec.namespace, "uid": spec.uid},
        "type": type_,
        "reason": reason,
        "message": message,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": "dask-operator"},
    }


def conditions_by_type(previous: Mapping | None) -> dict[str, Mapping]:
    conditions = (previous or {}).get("conditions") or ()
    return {cond.get("type"): cond for cond in conditions if isinstance(cond, Mapping)}


def condition(
    old: Mapping[str, Mapping],
    generation: int,
    now: str,
    type_: str,
    value: bool,
    reason: str,
    message: str,
) -> dict[str, Any]:
    status = "True" if value else "False"
    before = old.get(type_) or {}
    same = before.get("status") == status and before.get("lastTransitionTime")
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": before["lastTransitionTime"] if same else now,
        "observedGeneration": generation,
    }


def status_changed(old: Mapping | None, new: Mapping) -> bool:
    """Whether patching ``new`` would change the fields of ``old`` that ``new`` owns.

    Keys of ``old`` that ``new`` lacks (written by others) are ignored; ``None``
    counts as absent.
    """
    old = old or {}
    return any(_pruned(old.get(key)) != _pruned(value) for key, value in new.items())


def _pruned(value: Any) -> Any:
    """``value`` without ``None`` entries in nested dicts; empty dicts become None."""
    if isinstance(value, Mapping):
        pruned = {k: _pruned(v) for k, v in value.items()}
        pruned = {k: v for k, v in pruned.items() if v is not None}
        return pruned or None
    if isinstance(value, (list, tuple)):
        return [_pruned(v) for v in value]
    return value
