"""The pure core: spec parsing, child manifests, scale planning and status.

Nothing here does I/O or reads the clock: callers pass observations and
``now`` in, and get plain dicts and frozen dataclasses back.
"""

from dask_operator.core.manifests import (
    cluster_children_selector,
    scheduler_address,
    scheduler_deployment,
    scheduler_http_url,
    scheduler_name,
    scheduler_selector,
    scheduler_service,
    worker_pod,
    worker_pod_name,
    worker_selector,
)
from dask_operator.core.plan import ScalePlan, WorkerPod, plan_workers, select_retired
from dask_operator.core.spec import ClusterSpec
from dask_operator.core.status import compute_status, status_changed

__all__ = [
    "ClusterSpec",
    "ScalePlan",
    "WorkerPod",
    "cluster_children_selector",
    "compute_status",
    "plan_workers",
    "scheduler_address",
    "scheduler_deployment",
    "scheduler_http_url",
    "scheduler_name",
    "scheduler_selector",
    "scheduler_service",
    "select_retired",
    "status_changed",
    "worker_pod",
    "worker_pod_name",
    "worker_selector",
]
