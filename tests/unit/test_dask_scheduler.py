"""DaskSchedulerClient against httpx.MockTransport: routes, bodies, and every failure.

Rules:
- `workers`: GET /api/v1/get_workers -> {name: address} (names as strings);
- `retire`: POST /api/v1/retire_workers with {"n": n} or {"workers": [addresses]} -> the
  scheduler's report as is; exactly one of the two must be given;
- `adaptive_target`: GET /api/v1/adaptive_target -> int;
- queries time out after QUERY_TIMEOUT_SECONDS, a retirement after RETIRE_TIMEOUT_SECONDS;
- every failure (connect error, timeout, non-200, non-JSON, wrong shape)
  raises SchedulerUnreachable naming the route, never anything else.
"""

from __future__ import annotations

import json

import httpx
import pytest

from fakes import Server

from dask_operator.dask_scheduler import QUERY_TIMEOUT_SECONDS, RETIRE_TIMEOUT_SECONDS, DaskSchedulerClient
from dask_operator.errors import SchedulerUnreachable

BASE = "http://10.0.0.10:8787"
RETIRED = {
    "tcp://10.1.0.1:40000": {"type": "Worker", "id": "dask-worker-0", "name": "dask-worker-0", "nthreads": 1},
    "tcp://10.1.0.2:40000": {"type": "Worker", "id": "dask-worker-1", "name": "dask-worker-1", "nthreads": 1},
}



def client_for(server: Server) -> DaskSchedulerClient:
    return DaskSchedulerClient(httpx.AsyncClient(transport=httpx.MockTransport(server)))


async def call(client: DaskSchedulerClient, method: str):
    if method == "workers":
        return await client.workers(BASE)
    if method == "retire":
        return await client.retire(BASE, 2)
    return await client.adaptive_target(BASE)


ROUTES = {
    "workers": ("GET", "/api/v1/get_workers", QUERY_TIMEOUT_SECONDS),
    "retire": ("POST", "/api/v1/retire_workers", RETIRE_TIMEOUT_SECONDS),
    "adaptive_target": ("GET", "/api/v1/adaptive_target", QUERY_TIMEOUT_SECONDS),
}


# ---------------------------------------------------------------- routes and answers


@pytest.mark.parametrize(
    "method, answer, expected",
    [
        pytest.param("workers", {"num_workers": 2, "workers": [
            {"name": "dask-worker-0", "address": "tcp://10.1.0.1:40000"},
            {"name": 7, "address": "tcp://10.1.0.2:40000"},
        ]}, {"dask-worker-0": "tcp://10.1.0.1:40000", "7": "tcp://10.1.0.2:40000"}, id="workers"),
        pytest.param("workers", {"num_workers": 0, "workers": []}, {}, id="workers-none"),
        pytest.param("retire", RETIRED, RETIRED, id="retire"),
        pytest.param("retire", {}, {}, id="retire-nothing"),
        pytest.param("adaptive_target", {"workers": 3}, 3, id="adaptive-target"),
        pytest.param("adaptive_target", {"workers": 0}, 0, id="adaptive-target-zero"),
    ],
)
async def test_route_and_answer(method, answer, expected):
    server = Server(httpx.Response(200, json=answer))
    assert await call(client_for(server), method) == expected
    verb, path, timeout = ROUTES[method]
    (request,) = server.requests
    assert (request.method, str(request.url)) == (verb, BASE + path)
    assert request.extensions["timeout"]["read"] == timeout


async def test_retire_asks_for_n_workers():
    server = Server(httpx.Response(200, json={}))
    await client_for(server).retire(BASE, 3)
    assert json.loads(server.requests[0].content) == {"n": 3}


async def test_retire_names_workers_by_address():
    server = Server(httpx.Response(200, json={}))
    await client_for(server).retire(BASE, addresses=["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"])
    assert json.loads(server.requests[0].content) == {"workers": ["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"]}


@pytest.mark.parametrize("kwargs", [{}, {"n": 1, "addresses": ["tcp://x:1"]}], ids=["neither", "both"])
async def test_retire_takes_exactly_one_of_n_and_addresses(kwargs):
    server = Server(httpx.Response(200, json={}))
    with pytest.raises(ValueError):
        await client_for(server).retire(BASE, **kwargs)
    assert server.requests == []


async def test_aclose_closes_the_http_client():
    http = httpx.AsyncClient(transport=httpx.MockTransport(Server(httpx.Response(200))))
    await DaskSchedulerClient(http).aclose()
    assert http.is_closed


# ---------------------------------------------------------------- failures


def raises(error: type[httpx.HTTPError]):
    def answer(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)
    return answer


TRANSPORT_FAILURES = [
    pytest.param(raises(httpx.ConnectError), id="connect-error"),
    pytest.param(raises(httpx.ConnectTimeout), id="connect-timeout"),
    pytest.param(raises(httpx.ReadTimeout), id="read-timeout"),
    pytest.param(raises(httpx.RemoteProtocolError), id="protocol-error"),
    pytest.param(httpx.Response(500, json={"Error": "Internal Server Error"}), id="http-500"),
    pytest.param(httpx.Response(404, text="404: Not Found"), id="http-404-route-disabled"),
    pytest.param(httpx.Response(403, json={"workers": 1}), id="http-403-with-json"),
    pytest.param(httpx.Response(200, text="<html>dashboard</html>"), id="not-json"),
]


@pytest.mark.parametrize("method", ["workers", "retire", "adaptive_target"])
@pytest.mark.parametrize("answer", TRANSPORT_FAILURES)
async def test_failure_raises_scheduler_unreachable_naming_the_route(method, answer):
    with pytest.raises(SchedulerUnreachable) as raised:
        await call(client_for(Server(answer)), method)
    verb, path, _ = ROUTES[method]
    assert f"{verb} {BASE}{path}" in str(raised.value)


async def test_non_200_message_carries_the_status_and_the_start_of_the_body():
    server = Server(httpx.Response(503, text="x" * 1000))
    with pytest.raises(SchedulerUnreachable) as raised:
        await client_for(server).workers(BASE)
    assert str(raised.value) == f"GET {BASE}/api/v1/get_workers: HTTP 503: {'x' * 200}"


@pytest.mark.parametrize(
    "method, body",
    [
        pytest.param("retire", [], id="retire-list"),
        pytest.param("retire", "ok", id="retire-string"),
        pytest.param("retire", None, id="retire-null"),
        pytest.param("workers", [], id="workers-list"),
        pytest.param("workers", {"workers": [{"address": "tcp://10.1.0.1:40000"}]}, id="workers-without-name"),
        pytest.param("workers", {"workers": "dask-worker-0"}, id="workers-not-a-list"),
        pytest.param("adaptive_target", {}, id="adaptive-target-missing"),
        pytest.param("adaptive_target", {"workers": None}, id="adaptive-target-null"),
        pytest.param("adaptive_target", {"workers": "many"}, id="adaptive-target-not-a-number"),
        pytest.param("adaptive_target", [3], id="adaptive-target-list"),
    ],
)
async def test_wrong_shape_raises_scheduler_unreachable_naming_the_route(method, body):
    with pytest.raises(SchedulerUnreachable) as raised:
        await call(client_for(Server(httpx.Response(200, json=body))), method)
    assert ROUTES[method][1].rsplit("/", 1)[1] in str(raised.value)
