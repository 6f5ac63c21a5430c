"""The kopf edge: how outcomes and errors become Events, retries and permanent failures."""

from __future__ import annotations

import logging

import kopf
import pytest

from dask_operator import handlers
from dask_operator.core.plan import ScalePlan
from dask_operator.errors import InvalidSpec, KubeApiError, RetireIncomplete, SchedulerUnreachable
from dask_operator.workers import Outcome
from dask_operator.workers import Scaled

BODY = {"metadata": {"name": "dask", "namespace": "ns"}}
LOG = logging.getLogger("test")


def outcome(created=(), blocked=None) -> Outcome:
    return Outcome(2, {}, Scaled(ScalePlan(create=tuple(created)), [], tuple(created), blocked=blocked))


class FakeReconciler:
    def __init__(self, result=None, error: Exception | None = None) -> None:
        self.result, self.error, self.calls = result, error, []

    async def reconcile(self, body, *, apply_children):
        self.calls.append(apply_children)
        if self.error:
            raise self.error
        return self.result


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, str, str]]:
    posted: list[tuple[str, str, str]] = []
    monkeypatch.setattr(kopf, "info", lambda body, reason, message: posted.append(("Normal", reason, message)))
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: posted.append(("Warning", reason, message)))
    return posted


@pytest.fixture
def reconciler(monkeypatch):
    def use(**kwargs) -> FakeReconciler:
        fake = FakeReconciler(**kwargs)
        monkeypatch.setattr(handlers.Runtime, "reconciler", fake)
        return fake
    return use


async def test_a_real_action_posts_one_scaled_event(events, reconciler):
    fake = reconciler(result=outcome(created=["dask-worker-0"]))
    await handlers.cluster_reconcile(body=BODY, logger=LOG)
    assert events == [("Normal", "Scaled", "created 1 worker pods (desired 2)")]
    assert fake.calls == [True], "spec changes re-apply the children"


async def test_a_scale_alone_does_not_reapply_the_scheduler(events, reconciler):
    fake = reconciler(result=outcome(created=["dask-worker-0"]))
    await handlers.cluster_reconcile(body=BODY, logger=LOG,
                                     diff=[("change", ("workers", "replicas"), 1, 2)])
    await handlers.cluster_reconcile(body=BODY, logger=LOG,
                                     diff=[("change", ("scheduler", "template"), {}, {"spec": {}})])
    assert fake.calls == [False, True], "only a change beyond the replica count re-applies the children"


async def test_nothing_done_posts_nothing(events, reconciler):
    reconciler(result=outcome())
    await handlers.cluster_reconcile(body=BODY, logger=LOG)
    assert events == []


@pytest.mark.parametrize("blocked", [
    pytest.param(SchedulerUnreachable("no Ready scheduler pod"), id="unreachable"),
    pytest.param(RetireIncomplete(2, ["dask-worker-1"]), id="fewer-retired"),
    pytest.param(KubeApiError(500, "PATCH pods"), id="api-error"),
])
async def test_blocked_scale_down_warns_and_leaves_the_retry_to_the_reconciler(events, reconciler, blocked):
    """No kopf retry: it would hold a later scale-up back for its delay."""
    reconciler(result=outcome(blocked=blocked))
    await handlers.cluster_reconcile(body=BODY, logger=LOG)
    assert events == [("Warning", "ScaleDownBlocked", f"{blocked}; keeping the pods and retrying")]


async def test_invalid_spec_is_a_permanent_error(events, reconciler):
    reconciler(error=InvalidSpec("spec.workers must be an object, got str"))
    with pytest.raises(kopf.PermanentError, match="invalid spec: spec.workers must be an object"):
        await handlers.cluster_reconcile(body=BODY, logger=LOG)


async def test_resync_logs_errors_and_does_not_reapply_children(events, reconciler, caplog):
    fake = reconciler(error=KubeApiError(0, "GET pods: ConnectError"))
    with caplog.at_level(logging.WARNING, logger="test"):
        await handlers.cluster_resync(body=BODY, logger=LOG)
    assert fake.calls == [False]
    assert "resync failed: HTTP 0: GET pods: ConnectError" in caplog.text
    assert events == []


async def test_an_api_error_is_logged_not_retried_by_kopf(events, reconciler, caplog):
    """The reconciler retries a failed pass itself; a kopf retry would hold every
    later change of the Cluster back until its delay ran out."""
    fake = reconciler(error=KubeApiError(409, "PATCH clusters/status: conflict", "Conflict"))
    with caplog.at_level(logging.WARNING, logger="test"):
        await handlers.cluster_reconcile(body=BODY, logger=LOG)
    assert fake.calls == [True]
    assert "reconcile failed, the operator retries it: HTTP 409" in caplog.text
    assert events == []
