"""Reconcile a Cluster whenever one of its pods changes, coalescing bursts.

A plain watch rather than a kopf handler: a 100-pod scale makes ~300 pod
events, and kopf's per-event machinery cost the scale-up ~0.4 s of the
operator's event loop. Each burst of events for one Cluster collapses into one
or two reconciles (`request` marks the Cluster dirty; one drain task per
Cluster reconciles until it is clean).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from . import constants as c
from .kube import Kube
from .scheduler_access import Key

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0


class PodWatch:
    def __init__(self, kube: Kube, reconcile: Callable[[str, str], Awaitable[None]]) -> None:
        """`reconcile(namespace, name)` refreshes one Cluster; its errors are logged."""
        self.kube = kube
        self.reconcile = reconcile
        self._dirty: set[Key] = set()
        self._draining: dict[Key, asyncio.Task] = {}

    async def run(self, namespaces: list[str] | None) -> None:
        """Watch the Dask pods of these namespaces (None: all) until cancelled."""
        await asyncio.gather(*(self._watch(ns) for ns in (namespaces or [None])))

    async def _watch(self, namespace: str | None) -> None:
        selector = f"{c.LABEL_CLUSTER},{c.LABEL_ROLE}"
        while True:
            try:
                async for _, pod in self.kube.watch("v1", "pods", namespace, selector):
                    meta = pod["metadata"]
                    self.request(meta["namespace"], meta["labels"][c.LABEL_CLUSTER])
            except Exception as e:  # API restarts, network blips: re-list and go on
                log.warning("pod watch failed, restarting in %.0f s: %s", RESTART_DELAY_SECONDS, e)
                await asyncio.sleep(RESTART_DELAY_SECONDS)

    def request(self, namespace: str, name: str) -> None:
        """Ask for a reconcile of this Cluster; bursts collapse into one or two."""
        key = (namespace, name)
        self._dirty.add(key)
        task = self._draining.get(key)
        if task is None or task.done():
            self._draining[key] = asyncio.create_task(self._drain(key))

    def forget(self, key: Key) -> None:
        """A deleted Cluster: no further reconcile, no bookkeeping left."""
        self._dirty.discard(key)
        self._draining.pop(key, None)

    async def _drain(self, key: Key) -> None:
        while key in self._dirty:
            self._dirty.discard(key)
            try:
                await self.reconcile(*key)
            except Exception as e:  # the resync timer and the next event retry
                log.warning("reconcile of %s/%s after a pod change failed: %s", *key, e)
        # Done: no entry outlives its drain (a deleted Cluster's pods keep sending events).
        if self._draining.get(key) is asyncio.current_task():
            del self._draining[key]
