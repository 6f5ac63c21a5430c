"""The operator's Prometheus metrics (served on `--metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .constants import METRIC_CLUSTER_DESIRED_WORKERS

_CLUSTER = ("namespace", "cluster")

RECONCILE_SECONDS = Histogram(
    "dask_operator_reconcile_duration_seconds", "Time to reconcile one Cluster",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
API_ERRORS = Counter(
    "dask_operator_api_errors_total", "Kubernetes API calls that failed", ("method", "code"),
)
SCALE_OPERATIONS = Counter(
    "dask_operator_scale_operations_total", "Worker pods created (up) or retired and deleted (down)",
    ("direction",),
)
DESIRED_WORKERS = Gauge(
    METRIC_CLUSTER_DESIRED_WORKERS, "The scheduler's adaptive target (absent while unreachable)", _CLUSTER,
)
WORKERS = Gauge("dask_operator_cluster_workers", "Worker pods that exist and are not retiring", _CLUSTER)
READY_WORKERS = Gauge("dask_operator_cluster_ready_workers", "Worker pods that are Ready", _CLUSTER)
RETIRING_WORKERS = Gauge("dask_operator_cluster_retiring_workers", "Worker pods being retired", _CLUSTER)


def record_status(namespace: str, cluster: str, status: dict) -> None:
    workers = status.get("workers", {})
    WORKERS.labels(namespace, cluster).set(workers.get("count", 0))
    READY_WORKERS.labels(namespace, cluster).set(workers.get("ready", 0))
    RETIRING_WORKERS.labels(namespace, cluster).set(len(workers.get("retiring", [])))


def _remove(gauge: Gauge, namespace: str, cluster: str) -> None:
    try:
        gauge.remove(namespace, cluster)
    except KeyError:  # older prometheus_client versions raise for an absent series
        pass


def forget_cluster(namespace: str, cluster: str) -> None:
    for gauge in (DESIRED_WORKERS, WORKERS, READY_WORKERS, RETIRING_WORKERS):
        _remove(gauge, namespace, cluster)


def forget_desired_workers(namespace: str, cluster: str) -> None:
    """Remove the series: absent, not 0."""
    _remove(DESIRED_WORKERS, namespace, cluster)
