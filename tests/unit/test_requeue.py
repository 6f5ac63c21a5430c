"""`requeue`: when a Cluster is reconciled again by the operator itself.

Rules (the module's docstring): one pending pass per Cluster; a pass failed
n times in a row waits `retry_delay(n)` = 0.5 s doubling, at most 30 s; a
blocked pass counts as failed; a success resets the count; a failed pass
that was to apply the children makes the retries apply them until one that
applied them passes; `forget` cancels and drops all.
"""

from __future__ import annotations

import asyncio

import pytest

from dask_operator.requeue import Requeue, retry_delay

KEY = ("ns", "dask")


@pytest.mark.parametrize("failures, delay", [
    pytest.param(1, 0.5, id="first"), pytest.param(2, 1.0, id="doubling"), pytest.param(6, 16.0, id="sixth"),
    pytest.param(7, 30.0, id="capped"), pytest.param(10_000, 30.0, id="no-overflow"),
])
def test_retry_delay(failures, delay):
    assert retry_delay(failures) == delay


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.ran = asyncio.Event()

    async def __call__(self, namespace: str, name: str) -> None:
        self.calls.append((namespace, name))
        self.ran.set()


async def test_one_pending_pass_however_often_asked():
    recorder = Recorder()
    q = Requeue(recorder)
    for _ in range(3):
        q.later(KEY, 0.01)
    assert q.pending() == [KEY]
    await asyncio.wait_for(recorder.ran.wait(), 5)
    assert recorder.calls == [KEY] and q.pending() == []


async def test_failures_and_blocked_passes_back_off_and_a_success_resets_them(monkeypatch):
    delays: list[float] = []
    q = Requeue(Recorder())
    monkeypatch.setattr(q, "later", lambda key, delay: delays.append(delay))
    for _ in range(3):
        q.failed(KEY, apply_children=False)
    q.passed(KEY, applied_children=False, blocked=True)
    q.passed(KEY, applied_children=False)
    q.failed(KEY, apply_children=False)
    assert delays == [0.5, 1.0, 2.0, 4.0, 0.5], "a blocked pass backs off further"


def test_children_are_due_until_a_pass_that_applied_them_succeeds(monkeypatch):
    q = Requeue(Recorder())
    monkeypatch.setattr(q, "later", lambda key, delay: None)
    q.failed(KEY, apply_children=True)
    q.failed(KEY, apply_children=False)
    assert q.children_due(KEY)
    q.passed(KEY, applied_children=False)
    assert q.children_due(KEY), "a refresh that did not apply them does not clear the debt"
    q.passed(KEY, applied_children=True)
    assert not q.children_due(KEY)


async def test_forget_cancels_the_pending_pass_and_the_debt():
    recorder = Recorder()
    q = Requeue(recorder)
    q.failed(KEY, apply_children=True)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "requeue ns/dask"]
    q.forget(KEY)
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and recorder.calls == []
    assert q.pending() == [] and not q.children_due(KEY)
