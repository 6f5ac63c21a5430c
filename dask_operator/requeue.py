"""Reconcile a Cluster again later: after a failed pass (with back-off), or
while it waits for something no event announces.

Rules:
- at most one pending pass per Cluster, however often asked;
- a pass that failed `n` times in a row is retried after `retry_delay(n)`:
  0.5 s, doubling, at most 30 s; a blocked pass counts as failed; a pass
  that succeeds resets the count;
- if a failed pass was to apply the Cluster's children, the retry applies
  them (`children_due`) until a pass that applied them succeeds;
- `forget` cancels the pending pass and drops the count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .errors import DaskOperatorError
from .scheduler_access import Key

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


def retry_delay(failures: int) -> float:
    """Seconds before retrying a pass that failed `failures` (>= 1) times in a row."""
    return min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** min(failures - 1, 16))


class Requeue:
    def __init__(self, reconcile: Callable[[str, str], Awaitable[None]]) -> None:
        """`reconcile(namespace, name)` runs the later pass; its errors are logged."""
        self.reconcile = reconcile
        self._pending: dict[Key, asyncio.Task] = {}
        self._failures: dict[Key, int] = {}  # passes failed in a row
        self._children_due: set[Key] = set()

    def later(self, key: Key, delay: float) -> None:
        """Reconcile this Cluster again in `delay` seconds, unless a pass is pending already."""
        async def run() -> None:
            await asyncio.sleep(delay)
            del self._pending[key]
            try:
                await self.reconcile(*key)
            except DaskOperatorError as e:
                log.warning("%s/%s: requeued reconcile failed: %s", *key, e)

        if key not in self._pending:
            self._pending[key] = asyncio.get_running_loop().create_task(run(), name="requeue %s/%s" % key)

    def failed(self, key: Key, apply_children: bool) -> None:
        self._failures[key] = failures = self._failures.get(key, 0) + 1
        if apply_children:
            self._children_due.add(key)
        self.later(key, retry_delay(failures))

    def passed(self, key: Key, applied_children: bool, blocked: bool = False) -> None:
        """A pass ended; a blocked one (a scale-down waiting on the scheduler) is retried like a failure."""
        if applied_children:
            self._children_due.discard(key)
        if blocked:
            self.failed(key, apply_children=False)
        else:
            self._failures.pop(key, None)

    def children_due(self, key: Key) -> bool:
        """A failed pass was to apply the children: the next one must."""
        return key in self._children_due

    def forget(self, key: Key) -> None:
        if task := self._pending.pop(key, None):
            task.cancel()
        self._failures.pop(key, None)
        self._children_due.discard(key)

    def pending(self) -> list[Key]:
        """The Clusters with a pass pending."""
        return list(self._pending)
