"""How the operator reaches each Cluster's Dask scheduler, and the hand-over of
those addresses from the reconcile pass to the desired-workers poller.

Inside the cluster the scheduler's Service DNS name works; outside it (the
operator run on a workstation or on the sandbox's host) only the Ready
scheduler pod's IP does. `auto` decides by where the operator runs, never by
trying a DNS lookup: asking the machine's resolver for `.svc` names from
outside the cluster would send cluster names to a resolver that must not see
them.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from pathlib import Path

from .core import ClusterSpec, scheduler_http_url
from .core.pods import pod_ip, pod_ready
from .errors import SchedulerUnreachable

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

Key = tuple[str, str]  # (namespace, cluster name)


class SchedulerAccess(enum.Enum):
    SERVICE = "service"  # <cluster>-scheduler.<ns>.svc: in-cluster DNS
    POD_IP = "pod-ip"  # the Ready scheduler pod's IP: the operator runs outside the cluster

    @classmethod
    def choose(cls, choice: str) -> SchedulerAccess:
        """`auto`: Service DNS inside the cluster, the scheduler pod's IP outside."""
        if choice == "auto":
            return cls.SERVICE if in_cluster() else cls.POD_IP
        return cls(choice)

    def url(self, spec: ClusterSpec, scheduler_pods: Sequence[dict]) -> str:
        """The scheduler API's base URL; raises SchedulerUnreachable without a Ready pod."""
        ready = [p for p in scheduler_pods if pod_ready(p) and pod_ip(p)]
        if not ready:
            raise SchedulerUnreachable("no Ready scheduler pod")
        if self is SchedulerAccess.SERVICE:
            return scheduler_http_url(spec)
        return scheduler_http_url(spec, host=pod_ip(ready[0]))


def in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ and SERVICE_ACCOUNT_TOKEN.exists()


class SchedulerEndpoints:
    """Each known Cluster's scheduler URL (None: no Ready scheduler), written by
    the reconcile pass and read by the desired-workers poller."""

    def __init__(self) -> None:
        self._urls: dict[Key, str | None] = {}

    def update(self, key: Key, url: str | None) -> None:
        self._urls[key] = url

    def forget(self, key: Key) -> None:
        self._urls.pop(key, None)

    def snapshot(self) -> list[tuple[Key, str | None]]:
        return list(self._urls.items())
