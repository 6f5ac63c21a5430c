"""Export each scheduler's adaptive target as `dask_operator_cluster_desired_workers`.

The poller reads the scheduler URLs the reconcile pass hands over through
`SchedulerEndpoints`. A scheduler that does not answer has no value: the
series is removed, never set to a made-up number, so an HPA holds instead of
collapsing.
"""

from __future__ import annotations

import asyncio
import logging

from . import metrics
from .dask_scheduler import DaskSchedulerClient
from .errors import SchedulerUnreachable
from .scheduler_access import Key, SchedulerEndpoints

log = logging.getLogger(__name__)


class DesiredWorkersPoller:
    def __init__(self, endpoints: SchedulerEndpoints, dask: DaskSchedulerClient) -> None:
        self.endpoints = endpoints
        self.dask = dask
        self._exported: set[Key] = set()  # Clusters whose series exists
        self.targets: dict[Key, int] = {}  # the last answer of each scheduler that answered

    async def run(self, interval: float) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(interval)

    async def poll_once(self) -> None:
        snapshot = self.endpoints.snapshot()
        await asyncio.gather(*(self._poll(key, url) for key, url in snapshot))
        for key in self._exported - {key for key, _ in snapshot}:  # Clusters forgotten since
            self._withdraw(key, "the Cluster is gone")

    async def _poll(self, key: Key, url: str | None) -> None:
        try:
            if url is None:
                raise SchedulerUnreachable("no Ready scheduler pod")
            # The value first: `labels()` creates the series, and it must not
            # exist (as 0) while the scheduler has not answered.
            target = await self.dask.adaptive_target(url)
            metrics.DESIRED_WORKERS.labels(*key).set(target)
            self._exported.add(key)
            self.targets[key] = target
        except SchedulerUnreachable as e:
            self._withdraw(key, str(e))

    def _withdraw(self, key: Key, why: str) -> None:
        """Remove the series (absent, not 0); log once, when there was one."""
        self.targets.pop(key, None)
        if key in self._exported:
            self._exported.discard(key)
            metrics.forget_desired_workers(*key)
            log.info("%s/%s: desired_workers withdrawn: %s", *key, why)
