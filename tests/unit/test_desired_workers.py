"""DesiredWorkersPoller: `dask_operator_cluster_desired_workers` follows each scheduler's adaptive target.

Rules:
- a scheduler that answers sets its Cluster's series to its adaptive target;
- a Cluster without a Ready scheduler (URL None) or whose scheduler is
  unreachable has no series at all: removed, never set to 0;
- each Cluster's series depends only on its own scheduler;
- `run` keeps polling after a scheduler fails.
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
from dask_operator.desired_workers import DesiredWorkersPoller
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
