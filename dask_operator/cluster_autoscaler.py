"""The operator's own autoscaler: Clusters with ``spec.autoscaling``, without Prometheus or an HPA.

Every `SYNC_SECONDS` (the HPA controller's default sync period), for each
tracked Cluster: read it; stand aside if an HPA targets it; run the HPA
engine on the scheduler's last adaptive target (`DesiredWorkersPoller`
keeps it; none: a missing metric, nothing changes); write a new replica count
through the scale subresource, the same path as ``kubectl scale`` and an HPA;
record the decision in status when it changed (`core.cluster_autoscaling`).
The engine's history is kept in memory, as the controller keeps it: after a
restart the first sync records the current replicas, so nothing scales down
before the scale-down window has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from . import constants as c
from .core.cluster_autoscaling import autoscaling_status, hpa_spec_of, hpas_targeting, samples
from .core.hpa_policy import History, decide
from .core.status import status_changed
from .errors import DaskOperatorError, InvalidAutoscaling
from .kube import Kube
from .scheduler_access import Key
from .workers import utcnow

log = logging.getLogger(__name__)

SYNC_SECONDS = 15.0


class ClusterAutoscaler:
    def __init__(self, kube: Kube, targets: Callable[[Key], int | None],
                 clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], str] = utcnow) -> None:
        """`targets(key)` is the scheduler's last adaptive target, None when it has none."""
        self.kube = kube
        self.targets = targets
        self.clock = clock
        self.wallclock = wallclock
        self._tracked: set[Key] = set()
        self._history: dict[Key, History] = {}

    def track(self, body: Mapping) -> None:
        """Follow a Cluster while its spec has ``autoscaling``; forget it when not."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta["name"])
        if (body.get("spec") or {}).get("autoscaling") is not None and not meta.get("deletionTimestamp"):
            self._tracked.add(key)
        else:
            self.forget(key)

    def forget(self, key: Key) -> None:
        self._tracked.discard(key)
        self._history.pop(key, None)

    async def run(self, interval: float = SYNC_SECONDS) -> None:
        while True:
            await self.sync_once()
            await asyncio.sleep(interval)

    async def sync_once(self) -> None:
        hpas: dict[str, list[dict]] = {}  # per namespace, listed once per pass
        for key in sorted(self._tracked):
            try:
                await self.sync(key, hpas)
            except DaskOperatorError as e:
                log.warning("%s/%s: autoscaling sync failed: %s", *key, e)
            except Exception:  # a bug in one Cluster's sync must not stop the others'
                log.exception("%s/%s: autoscaling sync crashed", *key)

    async def sync(self, key: Key, hpas: dict[str, list[dict]] | None = None) -> None:
        """One sync of one Cluster; `hpas` caches each namespace's HPAs within a pass."""
        namespace, name = key
        hpas = {} if hpas is None else hpas
        body = await self.kube.get(c.API_VERSION, c.PLURAL, namespace, name)
        if body is None:
            return self.forget(key)
        self.track(body)
        if key not in self._tracked:
            return None
        spec = body.get("spec") or {}
        previous = body.get("status") or {}
        generation = int(body["metadata"].get("generation") or 0)
        now, target = self.wallclock(), self.targets(key)
        if namespace not in hpas:
            hpas[namespace] = await self.kube.list("autoscaling/v2", "horizontalpodautoscalers", namespace, None)
        conflict = hpas_targeting(hpas[namespace], name)
        try:
            hpa = hpa_spec_of(name, spec["autoscaling"])
        except InvalidAutoscaling as e:
            return await self._record(key, previous, autoscaling_status(
                previous, generation, now, target=target, invalid=str(e)))
        if conflict:
            self._history.pop(key, None)
            return await self._record(key, previous, autoscaling_status(
                previous, generation, now, target=target, conflict=conflict))
        current = int((spec.get("workers") or {}).get("replicas", 1))
        observed = (previous.get("workers") or {}).get("count")
        decision = decide(self.clock(), current, samples(hpa, target), hpa, self._history.get(key),
                          status_replicas=current if observed is None else int(observed))
        self._history[key] = decision.history
        if decision.scaled:
            await self.kube.patch(c.API_VERSION, c.PLURAL, namespace, name,
                                  {"spec": {"replicas": decision.replicas}}, "scale")
            log.info("%s/%s: autoscaled workers %d -> %d: %s (%s; desired_workers %s)", namespace, name,
                     current, decision.replicas, decision.reason, decision.message, target)
        await self._record(key, previous, autoscaling_status(previous, generation, now, target=target,
                                                             decision=decision))
        return None

    async def _record(self, key: Key, previous: Mapping, fields: dict) -> None:
        if status_changed(previous, fields):
            await self.kube.patch(c.API_VERSION, c.PLURAL, *key, {"status": fields}, "status")
