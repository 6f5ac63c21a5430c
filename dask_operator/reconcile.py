"""Level-based reconcile of one Cluster: desired (spec) against observed (API).

The steps, each idempotent:
1. apply the scheduler Service and Deployment (server-side apply) when asked;
2. list the worker pods; `core.plan_workers` says what to create, delete and
   how many workers the scheduler should retire;
3. create missing pods (deterministic names, bounded concurrency: a re-run
   after a crash re-creates the same names and never exceeds desired);
4. delete pods that hold no data (not Running and Ready) or that the
   scheduler already reported retired;
5. ask the scheduler to retire the rest of the surplus; annotate and delete
   only the pods whose workers it reports retired;
6. compute the whole status and patch it only when it changed.

Blocking conditions come back in `Outcome.blocked`; the kopf layer turns them
into a condition, an Event and a retry. No kopf here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import os
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from . import constants as c
from . import metrics
from .core import (
    ClusterSpec,
    ScalePlan,
    WorkerPod,
    compute_status,
    plan_workers,
    scheduler_address,
    scheduler_deployment,
    scheduler_http_url,
    scheduler_selector,
    scheduler_service,
    select_retired,
    status_changed,
    worker_pod,
    worker_selector,
)
from .errors import DaskOperatorError, RetireIncomplete, SchedulerUnreachable
from .kube import Kube
from .scheduler import SchedulerClient

log = logging.getLogger(__name__)

# Concurrent API calls when creating or deleting many pods at once (one HTTP/2
# connection carries them; 100 measured best for a 0->100 scale on 2 cores).
API_CONCURRENCY = int(os.environ.get("DASK_OPERATOR_API_CONCURRENCY", "100"))


class SchedulerAccess(enum.Enum):
    """How the operator reaches a scheduler's HTTP API."""

    SERVICE = "service"  # <cluster>-scheduler.<ns>.svc: in-cluster DNS
    POD_IP = "pod-ip"  # the ready scheduler pod's IP: the operator runs outside the cluster


@dataclass(frozen=True)
class Outcome:
    desired: int
    status: dict
    plan: ScalePlan
    blocked: DaskOperatorError | None
    retired: tuple[str, ...] = ()

    def summary(self) -> str | None:
        """One line for the Event of a real action, None when nothing changed."""
        parts = []
        if self.plan.create:
            parts.append(f"created {len(self.plan.create)} worker pods")
        if self.plan.delete:
            parts.append(f"deleted {len(self.plan.delete)} worker pods holding no data or already retired")
        if self.retired:
            parts.append(f"retired {len(self.retired)} workers through the scheduler and deleted their pods")
        if not parts:
            return None
        return "; ".join(parts) + f" (desired {self.desired})"


def utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def bounded(calls: Iterable[Awaitable], limit: int = API_CONCURRENCY) -> list:
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Awaitable):
        async with semaphore:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


def _ready(pod: dict) -> bool:
    return any(
        cond.get("type") == "Ready" and cond.get("status") == "True"
        for cond in (pod.get("status") or {}).get("conditions") or ()
    ) and not pod["metadata"].get("deletionTimestamp")


class Reconciler:
    """Reconciles Clusters; one lock per Cluster serialises its scaling."""

    def __init__(self, kube: Kube, scheduler: SchedulerClient, access: SchedulerAccess) -> None:
        self.kube = kube
        self.scheduler = scheduler
        self.access = access
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._dirty: set[tuple[str, str]] = set()
        # Where each known Cluster's scheduler API answers (None: no Ready scheduler).
        self._scheduler_urls: dict[tuple[str, str], str | None] = {}
        self._draining: dict[tuple[str, str], asyncio.Task] = {}

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop((namespace, name), None)
        self._scheduler_urls.pop((namespace, name), None)
        self._dirty.discard((namespace, name))
        metrics.forget_cluster(namespace, name)

    # ------------------------------------------------------ desired workers
    async def poll_desired_workers(self, interval: float) -> None:
        """Export each scheduler's adaptive target as `dask_operator_cluster_desired_workers`.

        A scheduler that does not answer has no value: the series is removed,
        never set to a made-up number, so an HPA holds instead of collapsing.
        """
        while True:
            await asyncio.gather(*(self._poll(key, url) for key, url in list(self._scheduler_urls.items())))
            await asyncio.sleep(interval)

    async def _poll(self, key: tuple[str, str], url: str | None) -> None:
        try:
            if url is None:
                raise SchedulerUnreachable("no Ready scheduler pod")
            metrics.DESIRED_WORKERS.labels(*key).set(await self.scheduler.adaptive_target(url))
        except SchedulerUnreachable as e:
            if metrics.forget_desired_workers(*key):
                log.info("%s/%s: desired_workers withdrawn: %s", *key, e)

    # ------------------------------------------------------- pod-driven
    async def watch_pods(self, namespaces: list[str] | None) -> None:
        """Reconcile a Cluster whenever one of its pods changes (coalesced).

        A plain watch rather than a kopf handler: a 100-pod scale makes ~300
        pod events, and kopf's per-event machinery cost the scale-up ~0.4 s of
        the operator's event loop.
        """
        selector = f"{c.LABEL_CLUSTER},{c.LABEL_ROLE}"

        async def one(namespace: str | None) -> None:
            while True:
                try:
                    async for _, pod in self.kube.watch("v1", "pods", namespace, selector):
                        meta = pod["metadata"]
                        self.request(meta["namespace"], meta["labels"][c.LABEL_CLUSTER])
                except Exception as e:  # API restarts, network blips: re-list and go on
                    log.warning("pod watch failed, restarting in 1 s: %s", e)
                    await asyncio.sleep(1)

        await asyncio.gather(*(one(ns) for ns in (namespaces or [None])))

    def request(self, namespace: str, name: str) -> None:
        """Ask for a reconcile of this Cluster; bursts collapse into one or two."""
        key = (namespace, name)
        self._dirty.add(key)
        task = self._draining.get(key)
        if task is None or task.done():
            self._draining[key] = asyncio.create_task(self._drain(key))

    async def _drain(self, key: tuple[str, str]) -> None:
        namespace, name = key
        while key in self._dirty:
            self._dirty.discard(key)
            try:
                body = await self.kube.get(c.API_VERSION, c.PLURAL, namespace, name)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    return
                await self.reconcile(body, apply_children=False)
            except Exception as e:  # the resync timer and the next event retry
                log.warning("reconcile of %s/%s after a pod change failed: %s", namespace, name, e)

    def scheduler_url(self, spec: ClusterSpec, scheduler_pods: list[dict]) -> str:
        """The scheduler API's base URL, given the Cluster's scheduler pods."""
        if self.access is SchedulerAccess.SERVICE:
            return scheduler_http_url(spec)
        ready = [p for p in scheduler_pods if _ready(p) and p["status"].get("podIP")]
        if not ready:
            raise SchedulerUnreachable("no Ready scheduler pod")
        return scheduler_http_url(spec, host=ready[0]["status"]["podIP"])

    async def reconcile(self, body: dict, *, apply_children: bool) -> Outcome:
        spec = ClusterSpec.from_resource(body)
        start = time.perf_counter()
        async with self.lock(spec.namespace, spec.name):
            try:
                return await self._reconcile(spec, body.get("status") or {}, apply_children)
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - start)

    async def _reconcile(self, spec: ClusterSpec, previous: dict, apply_children: bool) -> Outcome:
        ns = spec.namespace
        if apply_children:
            await self.kube.apply("v1", "services", ns, scheduler_service(spec))
            await self.kube.apply("apps/v1", "deployments", ns, scheduler_deployment(spec))

        pods, foreign = await self._worker_pods(spec)
        observed = [WorkerPod.from_pod(p) for p in pods]
        plan = plan_workers(spec.name, spec.replicas, observed, reserved=foreign)
        blocked: DaskOperatorError | None = None
        retired: tuple[str, ...] = ()

        if plan.create:
            created = await bounded(self.kube.create("v1", "pods", ns, worker_pod(spec, n)) for n in plan.create)
            metrics.SCALE_OPERATIONS.labels("up").inc(sum(created))
            log.info("%s/%s: created %d worker pods to reach %d", ns, spec.name, sum(created), spec.replicas)
        if plan.delete:
            uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
            await bounded(self.kube.delete("v1", "pods", ns, n, uids.get(n)) for n in plan.delete)
            metrics.SCALE_OPERATIONS.labels("down").inc(len(plan.delete))
            log.info("%s/%s: deleted %d worker pods holding no data or already retired: %s",
                     ns, spec.name, len(plan.delete), ", ".join(plan.delete))

        scheduler_pods = await self.kube.list("v1", "pods", ns, scheduler_selector(spec.name))
        try:
            self._scheduler_urls[(ns, spec.name)] = self.scheduler_url(spec, scheduler_pods)
        except SchedulerUnreachable:
            self._scheduler_urls[(ns, spec.name)] = None
        if plan.retire:
            try:
                retired = await self._retire(spec, plan.retire, observed, pods, scheduler_pods)
            except RetireIncomplete as e:
                retired, blocked = tuple(e.retired), e
            except DaskOperatorError as e:
                blocked = e

        if not plan.empty:
            pods, _ = await self._worker_pods(spec)
            observed = [WorkerPod.from_pod(p) for p in pods]
        status = compute_status(
            spec, observed,
            scheduler_address=scheduler_address(spec),
            scheduler_ready=any(_ready(p) for p in scheduler_pods),
            blocked_reason=blocked.reason if blocked else None,
            blocked_message=str(blocked) if blocked else None,
            previous=previous,
            now=utcnow(),
        )
        if status_changed(previous, status):
            await self.kube.patch(c.API_VERSION, c.PLURAL, ns, spec.name, {"status": status}, "status")
        metrics.record_status(ns, spec.name, status)
        return Outcome(desired=spec.replicas, status=status, plan=plan, blocked=blocked, retired=retired)

    async def _worker_pods(self, spec: ClusterSpec) -> tuple[list[dict], list[str]]:
        """This Cluster's worker pods, and the names of same-labelled pods owned by another
        object (a deleted Cluster of the same name whose pods await garbage collection)."""
        pods = await self.kube.list("v1", "pods", spec.namespace, worker_selector(spec.name))
        ours, foreign = [], []
        for pod in pods:
            owners = {o.get("uid") for o in pod["metadata"].get("ownerReferences") or ()}
            (ours if not spec.uid or spec.uid in owners else foreign).append(pod)
        return ours, [p["metadata"]["name"] for p in foreign]

    async def _retire(self, spec: ClusterSpec, n: int, observed: list[WorkerPod], pods: list[dict],
                      scheduler_pods: list[dict]) -> tuple[str, ...]:
        """Retire `n` workers through the scheduler; delete only what it retired."""
        url = self.scheduler_url(spec, scheduler_pods)
        # A quick query first: a hung scheduler fails it in seconds, while the
        # retire call itself may legitimately take minutes of data movement.
        await self.scheduler.workers(url)
        report = await self.scheduler.retire(url, n)
        retired = select_retired(None, report, observed)
        since = utcnow()
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
        # Record the scheduler's word first: after a crash these pods are
        # deleted without asking again.
        await bounded(
            self.kube.patch("v1", "pods", spec.namespace, name,
                            {"metadata": {"annotations": {c.ANNOTATION_RETIRING: since}}})
            for name in retired
        )
        await bounded(self.kube.delete("v1", "pods", spec.namespace, name, uids.get(name)) for name in retired)
        metrics.SCALE_OPERATIONS.labels("down").inc(len(retired))
        log.info("%s/%s: scheduler retired %d of %d requested workers; deleted their pods: %s",
                 spec.namespace, spec.name, len(retired), n, ", ".join(retired) or "-")
        if len(retired) < n:
            raise RetireIncomplete(n, list(retired))
        return retired
