"""Run the operator: kopf with our handlers, kr8s for I/O, a /metrics port."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import kopf
from prometheus_client import start_http_server

from . import handlers
from .kube import Kube
from .reconcile import Reconciler, SchedulerAccess
from .scheduler import SchedulerClient

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ and SERVICE_ACCOUNT_TOKEN.exists()


def scheduler_access(choice: str) -> SchedulerAccess:
    """`auto`: Service DNS inside the cluster, the scheduler pod's IP outside."""
    if choice == "auto":
        return SchedulerAccess.SERVICE if in_cluster() else SchedulerAccess.POD_IP
    return SchedulerAccess(choice)


async def run(
    *,
    namespaces: list[str],
    clusterwide: bool,
    liveness: str | None,
    metrics_port: int | None,
    metrics_address: str,
    access: SchedulerAccess,
    desired_workers_interval: float = 5.0,
) -> None:
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_address)
        log.info("serving /metrics on %s:%d", metrics_address, metrics_port)
    scheduler = SchedulerClient()
    handlers.Runtime.reconciler = Reconciler(await Kube.connect(), scheduler, access)
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
        await scheduler.aclose()
