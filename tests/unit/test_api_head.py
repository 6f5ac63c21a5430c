"""Head restart (seed 001: restart_head and restart_head_status) and head-hw-tier, through the routes."""

from __future__ import annotations

import pytest
from api_fakes import ShapingBackend, pod
from api_world import World, serve

from dask_operator.errors import HeadNotFound

OWNER, STRANGER = "owner-token", "stranger-token"
RESTART = "/ddl_cluster_scaler/restart_head/daskclusters/mine"
STATUS = "/ddl_cluster_scaler/restart_head_status/daskclusters/mine"


@pytest.fixture
def world() -> World:
    w = World()
    w.dask.add("ns", "mine", owner="u-owner", head=pod("mine-head", "2025-09-02T15:00:00Z"))
    return w


@pytest.mark.parametrize("query, echoed", [
    pytest.param("?started_at=2025-09-02T15:39:00Z", "2025-09-02T15:39:00Z", id="client-time-echoed"),
    pytest.param("?started_at=2025-09-02T17:00:00Z", "2025-09-02T15:40:00Z", id="client-clock-ahead-server-now"),
    pytest.param("", "2025-09-02T15:40:00Z", id="absent-server-now"),
])
async def test_restart_deletes_the_head_and_answers_started_at(world: World, query: str, echoed: str) -> None:
    async with serve(world) as api:
        status, body, _ = await api.call("PATCH", RESTART + query, token=OWNER)
    assert status == 200
    assert body == {"ok": True, "kind": "daskclusters", "name": "mine", "namespace": "ns", "started_at": echoed,
                    "pod": "mine-head"}
    assert world.writes() == [("restart_head", "ns", "mine")]


async def test_restart_then_poll_until_restarted_and_ready(world: World) -> None:
    world.dask.next_head_created = "2025-09-02T15:40:00Z"  # same second as the (fractional) server now
    async with serve(world) as api:
        _, before, _ = await api.call("GET", STATUS + "?started_at=2025-09-02T15:40:00Z", token=OWNER)
        assert (before["restarted"], before["ready"], before["status"]) == (False, True, "not_restarted")
        _, kick, _ = await api.call("PATCH", RESTART + "?started_at=2025-09-02T15:40:00Z", token=OWNER)
        since = kick["started_at"]
        _, body, _ = await api.call("GET", f"{STATUS}?started_at={since}", token=OWNER)
        assert (body["ok"], body["restarted"], body["ready"], body["status"]) == (
            True, True, False, "restarted_not_ready")
        assert body["pod"] == "mine-head-2"
        world.dask.heads[("ns", "mine")] = pod("mine-head-2", "2025-09-02T15:40:00Z", ready=True)
        _, body, _ = await api.call("GET", f"{STATUS}?started_at={since}", token=OWNER)
    assert body["status"] == "restarted_and_ready"


@pytest.mark.parametrize("method, path, token, status", [
    pytest.param("PATCH", RESTART, STRANGER, 403, id="restart-stranger"),
    pytest.param("PATCH", RESTART + "?started_at=yesterday", OWNER, 400, id="restart-bad-started-at"),
    pytest.param("GET", STATUS + "?started_at=2025-09-02T15:40:00Z", STRANGER, 403, id="status-stranger"),
    pytest.param("GET", STATUS, OWNER, 400, id="status-without-started-at"),
    pytest.param("PATCH", RESTART.replace("mine", "absent"), OWNER, 404, id="restart-not-found"),
    pytest.param("PATCH", RESTART, None, 401, id="restart-no-credentials"),
])
async def test_restart_refusals_change_nothing(world: World, method, path, token, status) -> None:
    async with serve(world) as api:
        got, body, _ = await api.call(method, path, token=token)
    assert got == status
    if status == 403:
        action = "update" if method == "PATCH" else "access"
        assert body == {"error": "unauthorized", "message": f"Not authorized to {action} cluster mine"}
    assert world.writes() == []


async def test_no_head(world: World) -> None:
    world.dask.heads[("ns", "mine")] = None
    async with serve(world) as api:
        status, body, _ = await api.call("GET", STATUS + "?started_at=2025-09-02T15:40:00Z", token=OWNER)
        assert (status, body["status"], body["pod"]) == (200, "no_head", None)
        status, body, _ = await api.call("PATCH", RESTART, token=OWNER)
    assert (status, body["error"]) == (409, "head_not_found")


async def test_head_tier_needs_a_backend_that_can(world: World) -> None:
    path = "/ddl_cluster_scaler/head-hw-tier/daskclusters/mine"
    async with serve(world) as api:
        status, body, _ = await api.call("PATCH", path, token=OWNER, body={"head_hw_tier_name": "Small"})
        assert (status, body["error"]) == (501, "not_supported")
        status, body, _ = await api.call("PATCH", path, token=OWNER, body={})
        assert (status, body["error"]) == (400, "bad_request")
        status, body, _ = await api.call("PATCH", path, token=OWNER, body={"head_hw_tier_name": "Huge"})
        assert (status, body["error"]) == (400, "invalid_hw_tier")
        status, body, _ = await api.call("PATCH", path, token=STRANGER, body={"head_hw_tier_name": "Small"})
        assert status == 403
    assert world.writes() == []


async def test_head_tier_on_a_backend_that_can(world: World) -> None:
    world.dask = ShapingBackend()
    world.dask.add("ns", "mine", owner="u-owner")
    async with serve(world) as api:
        status, body, _ = await api.call("PATCH", "/ddl_cluster_scaler/head-hw-tier/daskclusters/mine",
                                         token=OWNER, body={"head_hw_tier_id": "small-k8s"})
        assert status == 200 and body["head_hw_tier"] == {"id": "small-k8s", "name": "Small"}
        assert body["restarts"] is True and body["started_at"].endswith("Z")
        assert world.dask.writes[0][3].resources["requests"]["cpu"] == "1"
        status, body, _ = await api.call("PATCH", "/ddl_cluster_scaler/head-hw-tier/daskclusters/mine",
                                         token=OWNER, body={"head_hw_tier_name": "Small"})
        assert status == 200 and body["restarts"] is False, "the same tier again restarts nothing"
    assert len(world.dask.writes) == 1


async def test_head_not_found_during_restart_is_409(world: World) -> None:
    world.dask.fail["restart_head"] = HeadNotFound("Cluster ns/mine has no scheduler pod to restart")
    async with serve(world) as api:
        status, body, _ = await api.call("PATCH", RESTART, token=OWNER)
    assert (status, body) == (409, {"error": "head_not_found",
                                    "message": "Cluster ns/mine has no scheduler pod to restart"})
