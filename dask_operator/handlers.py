"""kopf handlers: thin glue from Kubernetes events to `reconcile.Reconciler`.

* Cluster created, resumed or its spec changed (`kubectl scale` included):
  full reconcile, children applied; a blocked scale-down raises
  `kopf.TemporaryError` so kopf retries with back-off.
* A Cluster's worker or scheduler pod changed (`pod_watch.PodWatch`, a
  plain watch started here): a coalesced reconcile of that Cluster (status
  refresh, replacing lost pods), children not re-applied.
* `desired_workers.DesiredWorkersPoller`, started here, exports each
  scheduler's adaptive target; `cluster_autoscaler.ClusterAutoscaler`,
  started here too, applies it to Clusters with `spec.autoscaling`.
* A timer re-reconciles every Cluster as a safety net.

Errors from the domain are translated here and nowhere else. A pass that
failed on an API error, or whose scale-down is blocked, is retried by the
`Reconciler` itself (with back-off), so the handler only logs it and posts
the Warning: a kopf retry would hold every later change of that Cluster back
until its delay ran out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from . import constants as c
from .core.spec import scale_only
from .errors import DaskOperatorError, InvalidSpec
from .cluster_autoscaler import ClusterAutoscaler
from .desired_workers import DesiredWorkersPoller
from .pod_watch import PodWatch
from .reconcile import Reconciler
from .workers import Outcome

# Pod events drive reconciles; the resync only catches what a watch missed. Each
# costs two LISTs per Cluster, so at 300 s an idle fleet asks the API server
# about 0.007 times a second per Cluster (benchmark B5).
RESYNC_SECONDS = 300.0


class Runtime:
    """What the handlers share; set by `operator.run` before kopf starts."""

    reconciler: Reconciler | None = None
    pod_watch: PodWatch | None = None
    poller: DesiredWorkersPoller | None = None
    autoscaler: ClusterAutoscaler | None = None
    autoscale_interval: float = 15.0
    namespaces: list[str] | None = None  # None: cluster-wide
    desired_workers_interval: float = 5.0  # 0: not polled
    tasks: list[asyncio.Task] = []


def _reconciler() -> Reconciler:
    assert Runtime.reconciler is not None, "operator.run() sets the reconciler"
    return Runtime.reconciler


def _report(body: kopf.Body, outcome: Outcome, logger: logging.Logger) -> None:
    """One Event per real action; a blocked scale-down is a Warning (the reconciler retries it).

    Events are posted explicitly, with a reason of their own, rather than from
    every log line: pod events fire hundreds of times during a large scale.
    """
    if summary := outcome.summary():
        kopf.info(body, reason="Scaled", message=summary)
    blocked = outcome.blocked
    if blocked is None:
        return
    message = f"{blocked}; keeping the pods and retrying"
    logger.warning(f"ScaleDownBlocked: {message}")
    # Every blocking cause (scheduler unreachable, fewer retired than asked, an
    # API error mid-retirement) can clear by itself: the reconciler retries it.
    kopf.warn(body, reason=c.COND_SCALE_DOWN_BLOCKED, message=message)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress and diff-base in annotations: the status schema is strict and
    # belongs to the Cluster's own fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration",
    )
    settings.posting.level = logging.INFO
    settings.batching.batch_window = 0.01
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    if Runtime.pod_watch is not None:
        Runtime.tasks.append(asyncio.create_task(Runtime.pod_watch.run(Runtime.namespaces)))
    if Runtime.poller is not None:
        Runtime.tasks.append(asyncio.create_task(Runtime.poller.run(Runtime.desired_workers_interval)))
    if Runtime.autoscaler is not None:
        Runtime.tasks.append(asyncio.create_task(Runtime.autoscaler.run(Runtime.autoscale_interval)))


@kopf.on.cleanup()
async def stop_background_tasks(**_: Any) -> None:
    for task in Runtime.tasks:
        task.cancel()


@kopf.on.create(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.resume(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.PLURAL, field="spec")
async def cluster_reconcile(body: kopf.Body, logger: logging.Logger, diff: Any = (), **_: Any) -> None:
    if Runtime.autoscaler is not None:
        Runtime.autoscaler.track(body)
    try:
        # A `/scale` write changes only the replica count: the scheduler's Service
        # and Deployment stay as applied, which saves two requests before the first pod.
        outcome = await _reconciler().reconcile(dict(body), apply_children=not scale_only(diff))
    except InvalidSpec as e:
        raise kopf.PermanentError(f"invalid spec: {e}") from e
    except DaskOperatorError as e:
        logger.warning(f"reconcile failed, the operator retries it: {e}")
        return
    _report(body, outcome, logger)


@kopf.timer(c.GROUP, c.VERSION, c.PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def cluster_resync(body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
    if Runtime.autoscaler is not None:
        Runtime.autoscaler.track(body)
    try:
        outcome = await _reconciler().reconcile(dict(body), apply_children=False)
    except DaskOperatorError as e:
        logger.warning(f"resync failed: {e}")
        return
    if outcome.blocked:
        logger.warning(f"ScaleDownBlocked: {outcome.blocked}")


@kopf.on.delete(c.GROUP, c.VERSION, c.PLURAL, optional=True)
def cluster_delete(name: str, namespace: str, uid: str | None = None, **_: Any) -> None:
    # Children carry owner references: the garbage collector removes them.
    _reconciler().forget(namespace, name, uid)
    if Runtime.autoscaler is not None:
        Runtime.autoscaler.forget((namespace, name))
    if Runtime.pod_watch is not None:
        Runtime.pod_watch.forget((namespace, name))
