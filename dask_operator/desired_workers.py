"""Export each scheduler's adaptive target as `dask_operator_cluster_desired_workers`.

The poller reads the scheduler URLs the reconcile pass hands over through
`SchedulerEndpoints`. A scheduler that does not answer has no value: the
series is removed, never set to a made-up number, so an HPA holds instead of
collapsing.

A scheduler that keeps failing is asked less often: after
`FAILURES_BEFORE_BACKOFF` failures in a row its interval doubles per failure,
up to `MAX_BACKOFF_SECONDS`; an answer, or a new URL for its Cluster (a
scheduler pod that became Ready again), restores the normal interval. At most
`POLL_CONCURRENCY` schedulers are asked at once. Without these, a fleet of
schedulers that never answer cost the operator a third of a core (benchmark
B5: 200 Clusters whose kwok schedulers time out, each asked every 5 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from . import metrics
from .dask_scheduler import DaskSchedulerClient
from .errors import SchedulerUnreachable
from .scheduler_access import Key, SchedulerEndpoints

log = logging.getLogger(__name__)

POLL_CONCURRENCY = 50
FAILURES_BEFORE_BACKOFF = 3
MAX_BACKOFF_SECONDS = 60.0


def backoff_seconds(interval: float, failures: int) -> float:
    """Seconds until a scheduler that failed `failures` times in a row is asked again."""
    if failures <= FAILURES_BEFORE_BACKOFF:
        return 0.0  # the next round
    return min(MAX_BACKOFF_SECONDS, max(interval, 1.0) * 2 ** (failures - FAILURES_BEFORE_BACKOFF))


class DesiredWorkersPoller:
    def __init__(self, endpoints: SchedulerEndpoints, dask: DaskSchedulerClient,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoints = endpoints
        self.dask = dask
        self.clock = clock
        self._exported: set[Key] = set()  # Clusters whose series exists
        self.targets: dict[Key, int] = {}  # the last answer of each scheduler that answered
        self._failing: dict[Key, tuple[str, int, float]] = {}  # key -> (url, failures in a row, due)
        self._limit = asyncio.Semaphore(POLL_CONCURRENCY)

    async def run(self, interval: float) -> None:
        while True:
            await self.poll_once(interval)
            await asyncio.sleep(interval)

    async def poll_once(self, interval: float = 0.0) -> None:
        snapshot = self.endpoints.snapshot()
        now = self.clock()
        await asyncio.gather(*(self._poll(key, url, interval) for key, url in snapshot
                               if self._due(key, url, now)))
        known = {key for key, _ in snapshot}
        for key in self._exported - known:  # Clusters forgotten since
            self._withdraw(key, "the Cluster is gone")
        for key in set(self._failing) - known:
            del self._failing[key]

    def _due(self, key: Key, url: str | None, now: float) -> bool:
        failing = self._failing.get(key)
        return failing is None or failing[0] != url or now >= failing[2]

    async def _poll(self, key: Key, url: str | None, interval: float) -> None:
        try:
            if url is None:
                raise SchedulerUnreachable("no Ready scheduler pod")
            async with self._limit:
                target = await self.dask.adaptive_target(url)
            # The value first: `labels()` creates the series, and it must not
            # exist (as 0) while the scheduler has not answered.
            metrics.DESIRED_WORKERS.labels(*key).set(target)
            self._exported.add(key)
            self.targets[key] = target
            self._failing.pop(key, None)
        except SchedulerUnreachable as e:
            self._withdraw(key, str(e))
            if url is not None:
                previous = self._failing.get(key)
                failures = previous[1] + 1 if previous and previous[0] == url else 1
                self._failing[key] = (url, failures, self.clock() + backoff_seconds(interval, failures))

    def _withdraw(self, key: Key, why: str) -> None:
        """Remove the series (absent, not 0); log once, when there was one."""
        self.targets.pop(key, None)
        if key in self._exported:
            self._exported.discard(key)
            metrics.forget_desired_workers(*key)
            log.info("%s/%s: desired_workers withdrawn: %s", *key, why)
