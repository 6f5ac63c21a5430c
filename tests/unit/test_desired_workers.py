"""DesiredWorkersPoller: `dask_operator_cluster_desired_workers` follows each scheduler's adaptive target.

Rules:
- a scheduler that answers sets its Cluster's series to its adaptive target;
- a Cluster without a Ready scheduler (URL None) or whose scheduler is
  unreachable has no series at all: removed, never set to 0;
- each Cluster's series depends only on its own scheduler;
- `run` keeps polling after a scheduler fails;
- a scheduler failing more than `FAILURES_BEFORE_BACKOFF` times in a row is
  asked at a doubling interval (at most `MAX_BACKOFF_SECONDS`), until it
  answers or its Cluster gets a new URL; others keep their interval;
- at most `POLL_CONCURRENCY` schedulers are asked at once.
Each test uses its own namespace: the registry is process-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import pytest
from fakes import FakeDask
from prometheus_client import REGISTRY

from dask_operator.constants import METRIC_CLUSTER_DESIRED_WORKERS
from dask_operator.dask_scheduler import DaskSchedulerClient
from dask_operator.desired_workers import (
    FAILURES_BEFORE_BACKOFF,
    MAX_BACKOFF_SECONDS,
    POLL_CONCURRENCY,
    DesiredWorkersPoller,
    backoff_seconds,
)
from dask_operator.errors import SchedulerUnreachable
from dask_operator.scheduler_access import SchedulerEndpoints

URL_A, URL_B = "http://10.0.0.10:8787", "http://10.0.0.11:8787"
TIMEOUT = 2.0


def series(key: tuple[str, str]) -> float | None:
    """The exported value, None when the series is absent."""
    namespace, cluster = key
    return REGISTRY.get_sample_value(METRIC_CLUSTER_DESIRED_WORKERS, {"namespace": namespace, "cluster": cluster})


@pytest.fixture
def key(request) -> tuple[str, str]:
    return (f"dw-{request.node.name}", "dask")


def poller(dask) -> tuple[DesiredWorkersPoller, SchedulerEndpoints]:
    endpoints = SchedulerEndpoints()
    return DesiredWorkersPoller(endpoints, dask), endpoints


async def test_sets_the_series_from_the_adaptive_target(key):
    dask = FakeDask()
    dask.targets[URL_A] = 4
    p, endpoints = poller(dask)
    endpoints.update(key, URL_A)
    await p.poll_once()
    assert series(key) == 4
    assert dask.calls == [("adaptive_target", URL_A)]
    dask.targets[URL_A] = 1
    await p.poll_once()
    assert series(key) == 1


def no_url(endpoints, dask, key):
    endpoints.update(key, None)


def unreachable(endpoints, dask, key):
    dask.unreachable = True


def fails_once(endpoints, dask, key):
    dask.fail_next("adaptive_target", SchedulerUnreachable("GET adaptive_target: ReadTimeout"))


@pytest.mark.parametrize(
    "cause, asked",
    [
        pytest.param(no_url, 1, id="no-ready-scheduler"),
        pytest.param(unreachable, 2, id="scheduler-unreachable"),
        pytest.param(fails_once, 2, id="one-failed-answer"),
    ],
)
async def test_series_is_removed_not_zeroed_without_an_answer(key, cause, asked, caplog):
    dask = FakeDask(target=3)
    p, endpoints = poller(dask)
    endpoints.update(key, URL_A)
    await p.poll_once()
    assert series(key) == 3
    cause(endpoints, dask, key)
    with caplog.at_level(logging.INFO, logger="dask_operator.desired_workers"):
        await p.poll_once()
    assert series(key) is None
    assert len(dask.calls) == asked
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.name == "dask_operator.desired_workers"] == [
        f"{key[0]}/{key[1]}"
    ]


async def test_never_answered_scheduler_has_no_series_and_logs_nothing(key, caplog):
    dask = FakeDask()
    dask.unreachable = True
    p, endpoints = poller(dask)
    endpoints.update(key, URL_A)
    with caplog.at_level(logging.INFO, logger="dask_operator.desired_workers"):
        await p.poll_once()
        await p.poll_once()
    assert series(key) is None
    assert not [r for r in caplog.records if r.name == "dask_operator.desired_workers"]


async def test_each_cluster_follows_only_its_own_scheduler(key):
    other = (key[0], "other")
    dask = FakeDask()
    dask.targets[URL_A] = 2
    dask.unreachable_urls.add(URL_B)
    p, endpoints = poller(dask)
    endpoints.update(key, URL_A)
    endpoints.update(other, URL_B)
    await p.poll_once()
    assert (series(key), series(other)) == (2, None)


async def test_forgotten_cluster_is_not_polled(key):
    dask = FakeDask(target=1)
    p, endpoints = poller(dask)
    endpoints.update(key, URL_A)
    endpoints.forget(key)
    await p.poll_once()
    assert dask.calls == []


async def test_run_keeps_polling_after_a_failure(key):
    dask = FakeDask(target=5)
    dask.fail_next("adaptive_target", SchedulerUnreachable("GET adaptive_target: ConnectError"))
    answered = asyncio.Event()
    dask.after("adaptive_target", answered.set)  # the first answer that gets through
    p, endpoints = poller(dask)
    endpoints.update(key, URL_A)
    task = asyncio.create_task(p.run(0))
    try:
        await asyncio.wait_for(answered.wait(), TIMEOUT)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)
    assert series(key) == 5
    assert [m for m, *_ in dask.calls][:2] == ["adaptive_target", "adaptive_target"]


# ---------------------------------------------------------------- with the real client over MockTransport


def real_client(response: httpx.Response | Exception) -> DaskSchedulerClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    return DaskSchedulerClient(httpx.AsyncClient(transport=httpx.MockTransport(answer)))


async def test_http_error_from_the_real_client_removes_the_series(key):
    p, endpoints = poller(real_client(httpx.Response(200, json={"workers": 2})))
    endpoints.update(key, URL_A)
    await p.poll_once()
    assert series(key) == 2
    p.dask = real_client(httpx.ConnectError("connection refused"))
    await p.poll_once()
    assert series(key) is None


async def test_malformed_answer_removes_the_series_and_polling_goes_on(key):
    p, endpoints = poller(real_client(httpx.Response(200, json={"workers": 2})))
    endpoints.update(key, URL_A)
    await p.poll_once()
    p.dask = real_client(httpx.Response(200, json={"Error": "Internal Server Error"}))
    await p.poll_once()
    assert series(key) is None


# ---------------------------------------------------------------- back-off for schedulers that keep failing


@pytest.mark.parametrize(
    "interval, failures, expected",
    [
        pytest.param(5, 1, 0, id="first-failure-next-round"),
        pytest.param(5, FAILURES_BEFORE_BACKOFF, 0, id="last-failure-before-backoff"),
        pytest.param(5, FAILURES_BEFORE_BACKOFF + 1, 10, id="backoff-starts-at-twice-the-interval"),
        pytest.param(5, FAILURES_BEFORE_BACKOFF + 2, 20, id="then-doubles"),
        pytest.param(5, FAILURES_BEFORE_BACKOFF + 30, MAX_BACKOFF_SECONDS, id="capped"),
        pytest.param(0, FAILURES_BEFORE_BACKOFF + 1, 2, id="zero-interval-backs-off-from-1s"),
    ],
)
def test_backoff_seconds(interval, failures, expected):
    assert backoff_seconds(interval, failures) == expected


def test_backoff_never_shrinks_and_never_exceeds_the_cap():
    for interval in (0, 0.5, 1, 5, 15, 120):
        delays = [backoff_seconds(interval, f) for f in range(1, 40)]
        assert delays == sorted(delays)
        assert all(0 <= d <= MAX_BACKOFF_SECONDS for d in delays)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing(key, **dask_kw) -> tuple[DesiredWorkersPoller, SchedulerEndpoints, Clock, FakeDask]:
    """A poller on a fake clock whose Cluster `key` has a scheduler at URL_A that does not answer."""
    dask = FakeDask(**dask_kw)
    dask.unreachable_urls.add(URL_A)
    endpoints, clock = SchedulerEndpoints(), Clock()
    endpoints.update(key, URL_A)
    return DesiredWorkersPoller(endpoints, dask, clock=clock), endpoints, clock, dask


async def rounds(p: DesiredWorkersPoller, clock: Clock, n: int, step: float) -> None:
    for _ in range(n):
        await p.poll_once(5)
        clock.now += step


def asked(dask: FakeDask, url: str = URL_A) -> int:
    return sum(1 for call in dask.calls if call[1] == url)


async def test_a_scheduler_that_keeps_failing_is_asked_less_often(key):
    p, _, clock, dask = failing(key)
    await rounds(p, clock, FAILURES_BEFORE_BACKOFF + 1, 5)
    assert asked(dask) == FAILURES_BEFORE_BACKOFF + 1
    await p.poll_once(5)  # 5 s after the last failure; its back-off is 10 s
    assert asked(dask) == FAILURES_BEFORE_BACKOFF + 1
    clock.now += 5
    await p.poll_once(5)
    assert asked(dask) == FAILURES_BEFORE_BACKOFF + 2


async def test_an_answer_restores_the_normal_interval(key):
    p, _, clock, dask = failing(key, target=2)
    await rounds(p, clock, FAILURES_BEFORE_BACKOFF + 3, MAX_BACKOFF_SECONDS)
    dask.unreachable_urls.clear()
    await p.poll_once(5)
    assert series(key) == 2
    before = asked(dask)
    await p.poll_once(5)  # no time passed: asked again at once
    assert asked(dask) == before + 1


async def test_a_new_url_is_asked_at_once_however_long_the_old_one_failed(key):
    p, endpoints, clock, dask = failing(key, target=3)
    await rounds(p, clock, FAILURES_BEFORE_BACKOFF + 3, 1)
    endpoints.update(key, URL_B)  # the scheduler pod became Ready again elsewhere
    await p.poll_once(5)
    assert dask.calls[-1] == ("adaptive_target", URL_B)
    assert series(key) == 3


async def test_one_failing_scheduler_does_not_slow_the_others(key):
    p, endpoints, clock, dask = failing(key)
    dask.targets[URL_B] = 1
    endpoints.update((key[0], "other"), URL_B)
    await rounds(p, clock, FAILURES_BEFORE_BACKOFF + 5, 5)
    assert asked(dask, URL_B) == FAILURES_BEFORE_BACKOFF + 5
    assert asked(dask) < FAILURES_BEFORE_BACKOFF + 5


async def test_a_forgotten_clusters_failures_are_forgotten_too(key):
    p, endpoints, clock, dask = failing(key)
    await rounds(p, clock, FAILURES_BEFORE_BACKOFF + 1, 0)
    endpoints.forget(key)
    await p.poll_once(5)
    assert p._failing == {}
    endpoints.update(key, URL_A)  # a new Cluster of the same name
    before = asked(dask)
    await p.poll_once(5)
    assert asked(dask) == before + 1


async def test_at_most_poll_concurrency_schedulers_are_asked_at_once(key):
    in_flight = peak = 0

    class Slow(FakeDask):
        async def adaptive_target(self, url: str) -> int:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1
            return 1

    p, endpoints = poller(Slow())
    for i in range(POLL_CONCURRENCY * 3):
        endpoints.update((key[0], f"c{i}"), f"http://10.0.{i // 250}.{i % 250}:8787")
    await p.poll_once()
    assert peak == POLL_CONCURRENCY
