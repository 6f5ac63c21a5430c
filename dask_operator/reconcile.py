"""Level-based reconcile of one Cluster: desired (spec) against observed (API).

The pass, in order, each step idempotent:
1. scheduler: apply its Service and Deployment (server-side apply) when
   asked, find its pods and the URL of its HTTP API, and hand that URL over
   to the desired-workers poller (`SchedulerEndpoints`);
2. workers: one scaling step (`workers.WorkerScaler`: create, delete what
   holds no data, retire the rest of the surplus through the scheduler);
3. status: compute the whole status, patch it only when it changed, and post
   a `SchedulerLost` Event when the scheduler stopped being ready.

A blocked scale-down comes back in `Outcome.blocked` and in the status as a
condition (the kopf layer adds an Event). While outdated workers wait for
their replacements to register with the scheduler (which no pod event
announces), the Cluster is reconciled again after `REQUEUE_SECONDS`. A pass
that fails on an API error (a conflict `Kube` did not retry away, a timeout,
an outage), or is blocked, is retried here with back-off (`requeue.Requeue`);
whoever asked for it (kopf, the pod watch, the resync) only logs it. Nothing
of a deleted Cluster is left (`forget`), even by a late pass. No kopf here.
"""

from __future__ import annotations

import asyncio
import logging
import time

from . import constants as c
from . import metrics
from .core import (
    ClusterSpec,
    compute_status,
    scheduler_address,
    scheduler_deployment,
    scheduler_selector,
    scheduler_service,
    status_changed,
)
from .core.pods import pod_ready
from .core.status import cluster_event, scheduler_lost
from .dask_scheduler import DaskSchedulerClient
from .errors import DaskOperatorError, InvalidSpec, SchedulerUnreachable
from .kube import Kube
from .requeue import Requeue
from .scheduler_access import SchedulerAccess, SchedulerEndpoints
from .workers import Outcome, Scaled, WorkerScaler, utcnow

log = logging.getLogger(__name__)

REQUEUE_SECONDS = 2.0
DELETED_REMEMBERED = 10_000  # uids of deleted Clusters kept to recognise a late pass


class Reconciler:
    """Reconciles Clusters; one lock per Cluster serialises its scaling."""

    def __init__(self, kube: Kube, dask: DaskSchedulerClient, access: SchedulerAccess,
                 endpoints: SchedulerEndpoints) -> None:
        self.kube = kube
        self.access = access
        self.endpoints = endpoints
        self.workers = WorkerScaler(kube, dask)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.requeue = Requeue(self.reconcile_by_name)
        self._deleted: dict[str, None] = {}  # uids of deleted Clusters, oldest first

    def forget(self, namespace: str, name: str, uid: str | None = None) -> None:
        """A deleted Cluster: drop its lock, requeue, scheduler URL and series. A pass that read
        it before its deletion may still run, or start after this: its `uid` is remembered so
        that such a pass drops what it recorded once it ends (no URL polled forever)."""
        if uid:
            self._deleted[uid] = None
            while len(self._deleted) > DELETED_REMEMBERED:
                del self._deleted[next(iter(self._deleted))]
        self._drop((namespace, name))

    def _drop(self, key: tuple[str, str]) -> None:
        self._locks.pop(key, None)
        self.requeue.forget(key)
        self.endpoints.forget(key)
        metrics.forget_cluster(*key)

    async def reconcile_by_name(self, namespace: str, name: str) -> None:
        """Refresh a Cluster after one of its pods changed (children not re-applied)."""
        try:
            body = await self.kube.get(c.API_VERSION, c.PLURAL, namespace, name)
        except DaskOperatorError:
            self.requeue.failed((namespace, name), apply_children=False)
            raise
        if body is not None and not body["metadata"].get("deletionTimestamp"):
            await self.reconcile(body, apply_children=False)

    async def reconcile(self, body: dict, *, apply_children: bool) -> Outcome:
        spec = ClusterSpec.from_resource(body)
        key = (spec.namespace, spec.name)
        apply_children = apply_children or self.requeue.children_due(key)
        start = time.perf_counter()
        try:
            async with self._locks.setdefault(key, asyncio.Lock()):
                try:
                    scheduler_pods, url = await self._scheduler(spec, apply_children)
                    scaled = await self.workers.scale(spec, url)
                    status = await self._status(spec, body.get("status") or {}, scheduler_pods, scaled)
                finally:
                    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - start)
        except InvalidSpec:
            raise
        except DaskOperatorError:
            if spec.uid not in self._deleted:
                self.requeue.failed(key, apply_children)
            raise
        else:
            self.requeue.passed(key, apply_children, blocked=scaled.blocked is not None)
        finally:
            if spec.uid and spec.uid in self._deleted:  # deleted while this pass ran
                self._drop(key)
        if scaled.waiting and spec.uid not in self._deleted:
            self.requeue.later(key, REQUEUE_SECONDS)
        return Outcome(spec.replicas, status, scaled)

    async def _scheduler(self, spec: ClusterSpec, apply_children: bool) -> tuple[list[dict], str | None]:
        if apply_children:
            await self.kube.apply("v1", "services", spec.namespace, scheduler_service(spec))
            await self.kube.apply("apps/v1", "deployments", spec.namespace, scheduler_deployment(spec))
        pods = await self.kube.list("v1", "pods", spec.namespace, scheduler_selector(spec.name))
        try:
            url = self.access.url(spec, pods)
        except SchedulerUnreachable:
            url = None
        self.endpoints.update((spec.namespace, spec.name), url)
        return pods, url

    async def _status(self, spec: ClusterSpec, previous: dict, scheduler_pods: list[dict], scaled: Scaled) -> dict:
        blocked = scaled.blocked
        status = compute_status(
            spec, scaled.pods,
            scheduler_address=scheduler_address(spec),
            scheduler_ready=any(pod_ready(p) for p in scheduler_pods),
            blocked_reason=blocked.reason if blocked else None,
            blocked_message=str(blocked) if blocked else None,
            previous=previous,
            now=(now := utcnow()),
        )
        if status_changed(previous, status):
            await self.kube.patch(c.API_VERSION, c.PLURAL, spec.namespace, spec.name, {"status": status}, "status")
        if lost := scheduler_lost(previous, status):  # a Warning Event, and its log line
            log.warning("%s/%s: SchedulerLost: %s", spec.namespace, spec.name, lost)
            await self.kube.create("v1", "events", spec.namespace, cluster_event(spec, "SchedulerLost", lost, now))
        metrics.record_status(spec.namespace, spec.name, status)
        return status
