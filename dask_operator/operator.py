"""Run the operator: kopf with our handlers, kr8s for I/O, a /metrics port."""

from __future__ import annotations

import logging

import kopf
from prometheus_client import start_http_server

from . import handlers
from .cluster_autoscaler import ClusterAutoscaler
from .dask_scheduler import DaskSchedulerClient
from .desired_workers import DesiredWorkersPoller
from .kube import Kube
from .pod_watch import PodWatch
from .reconcile import Reconciler
from .scheduler_access import SchedulerAccess, SchedulerEndpoints

log = logging.getLogger(__name__)


async def run(
    *,
    namespaces: list[str],
    clusterwide: bool,
    liveness: str | None,
    metrics_port: int | None,
    metrics_address: str,
    access: SchedulerAccess,
    desired_workers_interval: float = 5.0,
    autoscale_interval: float = 15.0,
) -> None:
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_address)
        log.info("serving /metrics on %s:%d", metrics_address, metrics_port)
    dask = DaskSchedulerClient()
    kube = await Kube.connect()
    endpoints = SchedulerEndpoints()
    reconciler = Reconciler(kube, dask, access, endpoints)
    handlers.Runtime.reconciler = reconciler
    handlers.Runtime.pod_watch = PodWatch(kube, reconciler.reconcile_by_name)
    poller = DesiredWorkersPoller(endpoints, dask) if desired_workers_interval > 0 else None
    handlers.Runtime.poller = poller
    handlers.Runtime.autoscaler = (ClusterAutoscaler(kube, poller.targets.get)
                                   if poller is not None and autoscale_interval > 0 else None)
    handlers.Runtime.autoscale_interval = autoscale_interval
    handlers.Runtime.namespaces = None if clusterwide else namespaces
    handlers.Runtime.desired_workers_interval = desired_workers_interval
    log.info("reaching schedulers by %s", access.value)
    try:
        await kopf.operator(
            clusterwide=clusterwide,
            namespaces=namespaces,
            liveness_endpoint=liveness,
            standalone=True,  # no kopf.dev peering objects: one replica, no extra RBAC
        )
    finally:
        await dask.aclose()
        await kube.aclose()
