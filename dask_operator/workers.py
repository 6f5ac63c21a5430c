"""Carry out a Cluster's worker scale plan: create, delete, retire.

Every deletion is one of three kinds, and only these:
1. pods that hold no data: not Running and Ready, retiring or terminal
   (`core.plan_workers`);
2. serving pods whose worker the scheduler has not registered
   (`core.unregistered_surplus`), read from the scheduler right before they
   are deleted;
3. pods whose workers the scheduler reports retired (it moved their keys to
   the remaining workers first); they are annotated before they are deleted,
   so that after a crash they are deleted without asking again. The
   scheduler chooses which workers go for a plain surplus; outdated workers
   being replaced (`ScalePlan.replace`) are retired by name, and those it has
   not registered are deleted like (2).
A failure to reach the scheduler, or a retirement of fewer workers than asked,
deletes nothing more and comes back as `Scaled.blocked`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from . import constants as c
from . import metrics
from .core import ClusterSpec, ScalePlan, WorkerPod, plan_workers, select_retired, worker_pod, worker_selector
from .core.plan import unregistered_surplus
from .dask_scheduler import DaskSchedulerClient
from .errors import DaskOperatorError, RetireIncomplete, SchedulerUnreachable
from .kube import Kube

log = logging.getLogger(__name__)

# Concurrent API calls when creating or deleting many pods at once (one HTTP/2
# connection carries them; 100 measured best for a 0->100 scale on 2 cores).
API_CONCURRENCY = int(os.environ.get("DASK_OPERATOR_API_CONCURRENCY", "100"))


def utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def bounded(calls: Iterable[Awaitable], limit: int | None = None) -> list:
    semaphore = asyncio.Semaphore(limit or API_CONCURRENCY)

    async def one(call: Awaitable):
        async with semaphore:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


@dataclass(frozen=True)
class Scaled:
    """What one scaling step did, and the worker pods as they are after it."""

    plan: ScalePlan
    pods: list[WorkerPod]
    created: tuple[str, ...] = ()  # pods created (a name taken meanwhile is not)
    deleted: tuple[str, ...] = ()  # pods holding no data that were deleted
    unregistered: tuple[str, ...] = ()  # pods deleted whose workers the scheduler had not registered
    retired: tuple[str, ...] = ()  # pods of workers the scheduler retired
    replaced: tuple[str, ...] = ()  # pods of outdated workers retired (or never registered) and deleted
    blocked: DaskOperatorError | None = None
    waiting: bool = False  # outdated workers wait for new ones to register: no pod event will say when


@dataclass(frozen=True)
class Outcome:
    desired: int
    status: dict
    scaled: Scaled

    @property
    def blocked(self) -> DaskOperatorError | None:
        return self.scaled.blocked

    def summary(self) -> str | None:
        """One line for the Event of a real action, None when nothing changed."""
        s = self.scaled
        parts = [f"{what} {len(names)} {noun}" for what, names, noun in (
            ("created", s.created, "worker pods"),
            ("deleted", s.deleted, "worker pods holding no data or already retired"),
            ("deleted", s.unregistered, "worker pods the scheduler had not registered"),
            ("retired", s.retired, "workers through the scheduler and deleted their pods"),
            ("replaced", s.replaced, "outdated workers: retired through the scheduler once new ones served"),
        ) if names]
        return "; ".join(parts) + f" (desired {self.desired})" if parts else None


class WorkerScaler:
    def __init__(self, kube: Kube, dask: DaskSchedulerClient) -> None:
        self.kube = kube
        self.dask = dask

    async def scale(self, spec: ClusterSpec, scheduler_url: str | None) -> Scaled:
        """One step towards `spec.replicas` live workers."""
        pods, foreign = await self._pods(spec)
        observed = [WorkerPod.from_pod(p) for p in pods]
        registered, unreachable = await self._registered_if_replacing(spec, scheduler_url, observed)
        plan = plan_workers(spec.name, spec.replicas, observed, reserved=foreign,
                            template_hash=spec.worker_template_hash, registered=registered)
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
        created: tuple[str, ...] = ()
        if plan.create:
            done = await bounded(self.kube.create("v1", "pods", spec.namespace, worker_pod(spec, n))
                                 for n in plan.create)
            created = tuple(n for n, ok in zip(plan.create, done) if ok)
            metrics.SCALE_OPERATIONS.labels("up").inc(len(created))
            log.info("%s/%s: created %d worker pods to reach %d", spec.namespace, spec.name, len(created),
                     spec.replicas)
        deleted = await self._delete(spec, plan.delete, uids, "holding no data or already retired")
        unregistered: tuple[str, ...] = ()
        retired: tuple[str, ...] = ()
        replaced: tuple[str, ...] = ()
        blocked: DaskOperatorError | None = None
        try:
            if (plan.retire or plan.replace) and scheduler_url is None:
                raise SchedulerUnreachable("no Ready scheduler pod")
            if plan.replace:  # a replacement plan retires nothing else
                if unreachable or registered is None:
                    raise unreachable or SchedulerUnreachable("the scheduler's workers are not known")
                replaced = await self._replace(spec, scheduler_url, plan.replace, registered, observed, uids)
            elif plan.retire:
                unregistered = await self._delete_unregistered(spec, scheduler_url, plan.retire, observed, uids)
                if plan.retire > len(unregistered):
                    retired = await self._retire(spec, scheduler_url, plan.retire - len(unregistered), observed,
                                                 uids)
        except RetireIncomplete as e:
            blocked = e
            if plan.replace:
                replaced = tuple(e.retired)
            else:
                retired = tuple(e.retired)
        except DaskOperatorError as e:
            blocked = e
        waiting = registered is not None and any(
            p.live and p.serving and not p.outdated(spec.worker_template_hash) and p.name not in registered
            for p in observed)
        if not plan.empty:
            pods, _ = await self._pods(spec)
            observed = [WorkerPod.from_pod(p) for p in pods]
        return Scaled(plan, observed, created, deleted, unregistered, retired, replaced, blocked, waiting)

    async def _pods(self, spec: ClusterSpec) -> tuple[list[dict], list[str]]:
        """This Cluster's worker pods, and the names of same-labelled pods owned by another
        object (a deleted Cluster of the same name whose pods await garbage collection)."""
        pods = await self.kube.list("v1", "pods", spec.namespace, worker_selector(spec.name))
        ours, foreign = [], []
        for pod in pods:
            owners = {o.get("uid") for o in pod["metadata"].get("ownerReferences") or ()}
            (ours if not spec.uid or spec.uid in owners else foreign).append(pod)
        return ours, [p["metadata"]["name"] for p in foreign]

    async def _delete(self, spec: ClusterSpec, names: Iterable[str], uids: dict[str, str],
                      why: str) -> tuple[str, ...]:
        """Delete these pods (uid preconditions); the names actually deleted."""
        names = list(names)
        if not names:
            return ()
        done = await bounded(self.kube.delete("v1", "pods", spec.namespace, n, uids.get(n)) for n in names)
        deleted = tuple(n for n, ok in zip(names, done) if ok)
        metrics.SCALE_OPERATIONS.labels("down").inc(len(deleted))
        log.info("%s/%s: deleted %d worker pods %s: %s", spec.namespace, spec.name, len(deleted), why,
                 ", ".join(deleted) or "-")
        return deleted

    async def _delete_unregistered(self, spec: ClusterSpec, url: str, n: int, observed: list[WorkerPod],
                                   uids: dict[str, str]) -> tuple[str, ...]:
        """Delete up to `n` surplus pods whose workers the scheduler has not registered.

        The scheduler is asked right before the deletion, which also serves as
        the quick liveness check before a retirement that may take minutes. A
        worker that registers between that answer and its pod's SIGTERM is
        reported (Dask then recomputes whatever it was given).
        """
        unknown = unregistered_surplus(spec.name, n, observed, set(await self.dask.workers(url)))
        deleted = await self._delete(spec, unknown, uids, "whose workers the scheduler never registered")
        if deleted:
            try:
                raced = sorted(set(deleted) & set(await self.dask.workers(url)))
            except SchedulerUnreachable as e:
                log.warning("%s/%s: could not re-check the registration of deleted workers: %s",
                            spec.namespace, spec.name, e)
            else:
                if raced:
                    log.warning("%s/%s: workers %s registered as their pods were deleted; their preStop "
                                "hooks have the scheduler retire them", spec.namespace, spec.name, ", ".join(raced))
        return unknown

    async def _registered_if_replacing(
            self, spec: ClusterSpec, url: str | None, observed: list[WorkerPod],
    ) -> tuple[dict[str, str] | None, SchedulerUnreachable | None]:
        """While outdated workers serve, the scheduler's workers ({name: address}), else None (not
        needed). When it cannot be asked: (None, why): registration unknown, so no outdated worker
        counts as holding no data; replacements are made, and retiring any is blocked."""
        if not any(p.live and p.serving and p.outdated(spec.worker_template_hash) for p in observed):
            return None, None
        try:
            if url is None:
                raise SchedulerUnreachable("no Ready scheduler pod")
            return await self.dask.workers(url), None
        except SchedulerUnreachable as e:
            return None, e

    async def _replace(self, spec: ClusterSpec, url: str, names: tuple[str, ...], registered: dict[str, str],
                       observed: list[WorkerPod], uids: dict[str, str]) -> tuple[str, ...]:
        """Retire these outdated workers by name; delete the pods of those it retired or never registered."""
        unknown = tuple(n for n in names if n not in registered)
        gone = await self._delete(spec, unknown, uids, "outdated, whose workers the scheduler never registered")
        asked = [n for n in names if n in registered]
        if not asked:
            return gone
        report = await self.dask.retire(url, addresses=[registered[n] for n in asked])
        retired = await self._delete_retired(spec, select_retired(asked, report, observed), uids,
                                             f"outdated, whose workers the scheduler retired once their "
                                             f"replacements served ({{}} of {len(asked)} asked)")
        if len(retired) < len(asked):
            raise RetireIncomplete(len(asked), list(gone + retired))
        return gone + retired

    async def _retire(self, spec: ClusterSpec, url: str, n: int, observed: list[WorkerPod],
                      uids: dict[str, str]) -> tuple[str, ...]:
        """Retire `n` workers through the scheduler; delete only what it retired."""
        report = await self.dask.retire(url, n)
        retired = await self._delete_retired(spec, select_retired(None, report, observed), uids,
                                             f"whose workers the scheduler retired ({{}} of {n} asked)")
        if len(retired) < n:
            raise RetireIncomplete(n, list(retired))
        return retired

    async def _delete_retired(self, spec: ClusterSpec, retired: tuple[str, ...], uids: dict[str, str],
                              why: str) -> tuple[str, ...]:
        """Annotate the pods of retired workers (so a crash cannot ask again), then delete them."""
        since = utcnow()
        await bounded(
            self.kube.patch("v1", "pods", spec.namespace, name,
                            {"metadata": {"annotations": {c.ANNOTATION_RETIRING: since}}})
            for name in retired
        )
        await self._delete(spec, retired, uids, why.format(len(retired)))
        return retired
