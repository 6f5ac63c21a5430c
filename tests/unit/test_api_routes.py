"""The HTTP API's routes: status codes and bodies as seeds 000 and 001 write them.

Every answer is checked by `api_world.Client` (JSON, no-store, valid against
the OpenAPI document, no credential in it). Each refused request is also
checked to have changed nothing (`world.writes()`).
"""

from __future__ import annotations

import pytest
from api_world import World, serve

from dask_operator.errors import KubeApiError, NotScalable, ScalingError

KIND_ERROR = {"error": "invalid_kind", "message": "kind must be one of [rayclusters, daskclusters, sparkclusters]"}
REPLICAS_ERROR = {"error": "bad_request", "message": "replicas must be a non-negative integer"}
OWNER, STRANGER, ADMIN, SAR_ADMIN = "owner-token", "stranger-token", "group-admin-token", "sar-admin-token"


@pytest.fixture
def world() -> World:
    w = World()
    w.dask.add("ns", "mine", owner="u-owner", replicas=1, ready=1)
    w.dask.add("ns", "theirs", owner="u-stranger", replicas=2, ready=2)
    w.dask.add("other", "elsewhere", owner="u-owner")
    w.ray.add("ns", "ray-1", owner="u-owner", max_replicas=4)
    return w


# ------------------------------------------------------------------ public routes


async def test_healthz_openapi_and_metrics_need_no_credentials(world: World) -> None:
    async with serve(world) as api:
        assert (await api.call("GET", "/healthz"))[:2] == (200, {"status": "ok"})
        status, doc, _ = await api.call("GET", "/openapi.json")
        assert status == 200 and doc["openapi"].startswith("3.1") and "/cluster/scale/{kind}/{name}" in doc["paths"]
        async with api.http.get("/metrics") as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
            assert "dask_operator_api_requests_total" in await r.text()


async def test_unknown_route_and_method_answer_json(world: World) -> None:
    async with serve(world) as api:
        status, body, _ = await api.call("GET", "/nope")
        assert status == 404 and body["error"] == "not_found"
        status, body, headers = await api.call("DELETE", "/healthz")
        assert status == 405 and body["error"] == "method_not_allowed" and "GET" in headers["Allow"]


# ------------------------------------------------------------------ list


@pytest.mark.parametrize("path", ["/ddl_cluster_scaler_api/list/daskclusters", "/ddl_cluster_scaler/list/daskclusters"],
                         ids=["seed-000", "seed-001"])
@pytest.mark.parametrize("token, names", [
    pytest.param(OWNER, ["mine"], id="owner-sees-own"),
    pytest.param(STRANGER, ["theirs"], id="stranger-sees-own"),
    pytest.param(ADMIN, ["mine", "theirs"], id="group-admin-sees-all"),
    pytest.param(SAR_ADMIN, ["mine", "theirs"], id="sar-admin-sees-all"),
])
async def test_list_filters_by_owner(world: World, path: str, token: str, names: list[str]) -> None:
    async with serve(world) as api:
        status, body, _ = await api.call("GET", path, token=token)
    assert status == 200
    assert body["kind"] == "daskclusters" and body["count"] == len(names)
    assert [c["metadata"]["name"] for c in body["clusters"]] == names


async def test_list_asks_the_backend_for_the_owners_label_only(world: World) -> None:
    async with serve(world) as api:
        await api.call("GET", "/ddl_cluster_scaler_api/list/daskclusters?namespace=other", token=OWNER)
    assert world.dask.selectors == ["dominodatalab.com/starting-user-id=u-owner"]


async def test_list_in_another_namespace_and_raw(world: World) -> None:
    async with serve(world) as api:
        _, body, _ = await api.call("GET", "/ddl_cluster_scaler_api/list/daskclusters?namespace=other", token=OWNER)
        assert [c["metadata"]["namespace"] for c in body["clusters"]] == ["other"]
        assert body["clusters"][0]["status"]["scaler"]["compat"] == ["spec.worker.replicas", "status.nodes"]
        _, body, _ = await api.call("GET", "/ddl_cluster_scaler_api/list/daskclusters?raw=true", token=OWNER)
    assert body["clusters"][0] == world.dask.objects[("ns", "mine")]


@pytest.mark.parametrize("path, status, body", [
    pytest.param("/ddl_cluster_scaler_api/list/pods", 400, KIND_ERROR, id="invalid-kind"),
    pytest.param("/ddl_cluster_scaler_api/list/sparkclusters", 501, None, id="backend-missing"),
    pytest.param("/ddl_cluster_scaler_api/list/daskclusters?namespace=Bad_NS", 400, None, id="bad-namespace"),
    pytest.param("/ddl_cluster_scaler_api/list/daskclusters?raw=maybe", 400, None, id="bad-flag"),
])
async def test_list_errors(world: World, path: str, status: int, body: dict | None) -> None:
    async with serve(world) as api:
        got, answer, _ = await api.call("GET", path, token=OWNER)
    assert got == status
    if body:
        assert answer == body
    if status == 501:
        assert answer["error"] == "backend_unavailable" and "dco-spark" in answer["message"]


async def test_list_failure_is_seed_000s_500(world: World) -> None:
    world.dask.fail["list"] = ScalingError("cannot list Cluster: HTTP 500: etcd is down")
    async with serve(world) as api:
        status, body, _ = await api.call("GET", "/ddl_cluster_scaler_api/list/daskclusters", token=ADMIN)
    assert status == 500
    assert body == {"error": "list_failed", "message": "Failed to list clusters",
                    "details": "cannot list Cluster: HTTP 500: etcd is down"}


# ------------------------------------------------------------------ get


@pytest.mark.parametrize("path", ["/cluster/daskclusters/mine", "/ddl_cluster_scaler/cluster/daskclusters/mine"],
                         ids=["seed-000", "seed-001"])
async def test_get_own_cluster_in_the_compatibility_view(world: World, path: str) -> None:
    async with serve(world) as api:
        status, body, _ = await api.call("GET", path, token=OWNER)
    assert status == 200
    assert body["spec"]["worker"]["replicas"] == 1 and len(body["status"]["nodes"]) - 1 == 1
    assert body["status"]["scaler"]["complete"] is True


@pytest.mark.parametrize("token, status", [
    pytest.param(STRANGER, 403, id="stranger"), pytest.param(ADMIN, 200, id="group-admin"),
    pytest.param(SAR_ADMIN, 200, id="sar-admin")])
async def test_get_someone_elses_cluster(world: World, token: str, status: int) -> None:
    async with serve(world) as api:
        got, body, _ = await api.call("GET", "/cluster/daskclusters/mine", token=token)
    assert got == status
    if status == 403:
        assert body == {"error": "unauthorized", "message": "Not authorized to access cluster mine"}


@pytest.mark.parametrize("path, fail, status, body", [
    pytest.param("/cluster/daskclusters/absent", None, 404, None, id="not-found"),
    pytest.param("/cluster/sparkclusters/x", None, 501, None, id="backend-missing"),
    pytest.param("/cluster/pods/mine", None, 400, KIND_ERROR, id="invalid-kind"),
    pytest.param("/cluster/daskclusters/Not_A_Name", None, 400, None, id="bad-name"),
    pytest.param("/cluster/daskclusters/mine", KubeApiError(500, "GET clusters/mine: boom"), 500,
                 {"error": "get_failed", "message": "Failed to fetch cluster mine",
                  "details": "HTTP 500: GET clusters/mine: boom"}, id="get-failed"),
])
async def test_get_errors(world: World, path: str, fail, status: int, body: dict | None) -> None:
    if fail:
        world.dask.fail["get"] = fail
    async with serve(world) as api:
        got, answer, _ = await api.call("GET", path, token=OWNER)
    assert got == status
    if body:
        assert answer == body


# ------------------------------------------------------------------ scale


@pytest.mark.parametrize("method, path", [("POST", "/cluster/scale/daskclusters/mine"),
                                          ("PATCH", "/ddl_cluster_scaler/scale/daskclusters/mine")],
                         ids=["seed-000", "seed-001"])
async def test_owner_scales(world: World, method: str, path: str) -> None:
    async with serve(world) as api:
        status, body, _ = await api.call(method, path, token=OWNER, body={"replicas": 3})
    assert status == 200
    assert {k: body[k] for k in ("kind", "name", "replicas", "requested", "capped")} == {
        "kind": "daskclusters", "name": "mine", "replicas": 3, "requested": 3, "capped": False}
    assert body["object"]["spec"]["workers"]["replicas"] == 3 and body["object"]["spec"]["worker"]["replicas"] == 3
    assert world.writes() == [("scale", "ns", "mine", 3, None)]


@pytest.mark.parametrize("body", [
    pytest.param({}, id="missing"), pytest.param({"replicas": -1}, id="negative"),
    pytest.param({"replicas": "3"}, id="string"), pytest.param({"replicas": 1.5}, id="float"),
    pytest.param({"replicas": True}, id="bool"), pytest.param({"replicas": None}, id="null"),
])
async def test_scale_refuses_bad_replicas_with_the_seeds_message(world: World, body: dict) -> None:
    async with serve(world) as api:
        status, answer, _ = await api.call("POST", "/cluster/scale/daskclusters/mine", token=OWNER, body=body)
    assert (status, answer) == (400, REPLICAS_ERROR)
    assert world.writes() == []


@pytest.mark.parametrize("raw_body", ["not json", "[1, 2]", '"x"'], ids=["garbage", "array", "string"])
async def test_scale_body_must_be_an_object(world: World, raw_body: str) -> None:
    async with serve(world) as api:
        status, answer, _ = await api.call("POST", "/cluster/scale/daskclusters/mine", token=OWNER, raw_body=raw_body)
    assert status == 400 and answer["error"] == "bad_request" and world.writes() == []


@pytest.mark.parametrize("method, path", [
    ("POST", "/cluster/scale/daskclusters/"), ("POST", "/cluster/scale/daskclusters"),
    ("PATCH", "/ddl_cluster_scaler/scale/daskclusters/"), ("PATCH", "/ddl_cluster_scaler/scale/daskclusters")])
async def test_scale_without_a_name(world: World, method: str, path: str) -> None:
    async with serve(world) as api:
        status, answer, _ = await api.call(method, path, token=OWNER, body={"replicas": 1})
        assert (status, answer) == (400, {"error": "bad_request", "message": "cluster_name is required"})
        status, answer, _ = await api.call(method, path.replace("daskclusters", "pods"), token=OWNER)
        assert (status, answer) == (400, KIND_ERROR)


async def test_stranger_cannot_scale_and_nothing_changes(world: World) -> None:
    async with serve(world) as api:
        status, body, _ = await api.call("POST", "/cluster/scale/daskclusters/mine", token=STRANGER,
                                         body={"replicas": 5, "worker_hw_tier_name": "Small"})
    assert (status, body) == (403, {"error": "unauthorized", "message": "Not authorized to update cluster mine"})
    assert world.writes() == []


@pytest.mark.parametrize("kind, name, backend_name, backend_max, server_max, requested, sent, limit", [
    pytest.param("rayclusters", "ray-1", "kuberay", 4, None, 9, 4, 4, id="backend-max"),
    pytest.param("daskclusters", "mine", "dask-operator", None, 6, 9, 6, 6, id="server-max"),
    pytest.param("rayclusters", "ray-1", "kuberay", 4, 3, 9, 3, 3, id="lower-of-both"),
    pytest.param("rayclusters", "ray-1", "kuberay", 4, None, 4, 4, None, id="at-max-not-capped"),
    pytest.param("rayclusters", "ray-1", "dco-ray", 4, None, 9, 9, None, id="dco-max-moves-with-scale"),
])
async def test_scale_is_capped_and_says_so(world: World, kind, name, backend_name, backend_max, server_max,
                                          requested, sent, limit) -> None:
    import dataclasses

    world.ray.name = backend_name
    world.ray.statuses[("ns", "ray-1")]["max_replicas"] = backend_max
    world.settings = dataclasses.replace(world.settings, max_replicas=server_max)
    async with serve(world) as api:
        status, body, _ = await api.call("POST", f"/cluster/scale/{kind}/{name}", token=OWNER,
                                         body={"replicas": requested})
    assert status == 200
    assert (body["replicas"], body["requested"], body["capped"], body.get("max_replicas")) == (
        sent, requested, limit is not None, limit)
    assert world.writes()[-1][3] == sent


@pytest.mark.parametrize("field, value", [("worker_hw_tier_name", "Medium"), ("worker_hw_tier", "medium"),
                                          ("worker_hw_tier_id", "medium-k8s")])
async def test_scale_with_a_tier_by_any_field(world: World, field: str, value: str) -> None:
    async with serve(world) as api:
        status, body, _ = await api.call("PATCH", "/ddl_cluster_scaler/scale/daskclusters/mine", token=OWNER,
                                         body={"replicas": 2, field: value})
    assert status == 200 and body["worker_hw_tier"] == {"id": "medium-k8s", "name": "Medium"}
    shape = world.writes()[0][4]
    assert shape.resources["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert body["object"]["spec"]["workers"]["template"]["spec"]["containers"][0]["resources"] == shape.resources


async def test_seed_001_client_sends_the_name_in_two_fields(world: World) -> None:
    async with serve(world) as api:
        status, _, _ = await api.call("PATCH", "/ddl_cluster_scaler/scale/rayclusters/ray-1", token=OWNER,
                                      body={"replicas": 2, "worker_hw_tier": "GPU", "worker_hw_tier_id": "GPU"})
    assert status == 200
    assert world.writes()[0][4].node_selector == {"pool": "gpu"}


@pytest.mark.parametrize("kind, name, tier_body", [
    pytest.param("daskclusters", "mine", {"worker_hw_tier_name": "Huge"}, id="unknown"),
    pytest.param("daskclusters", "mine", {"worker_hw_tier_name": "GPU"}, id="not-for-this-kind"),
    pytest.param("daskclusters", "mine", {"worker_hw_tier": "Small", "worker_hw_tier_id": "medium-k8s"},
                 id="conflicting"),
])
async def test_scale_refuses_bad_tiers_and_changes_nothing(world: World, kind, name, tier_body) -> None:
    async with serve(world) as api:
        status, body, _ = await api.call("POST", f"/cluster/scale/{kind}/{name}", token=OWNER,
                                         body={"replicas": 2, **tier_body})
    assert status == 400 and body["error"] == "invalid_hw_tier"
    assert world.writes() == []


@pytest.mark.parametrize("error, status, body", [
    pytest.param(NotScalable("Cannot scale this cluster: autoscaling not enabled"), 409,
                 {"error": "not_scalable", "message": "Cannot scale this cluster: autoscaling not enabled"},
                 id="not-scalable"),
    pytest.param(ScalingError("cannot update Cluster ns/mine: HTTP 409: conflict"), 500,
                 {"error": "scale_failed", "message": "Failed to scale cluster mine",
                  "details": "cannot update Cluster ns/mine: HTTP 409: conflict"}, id="scale-failed"),
    pytest.param(RuntimeError("bug"), 500, {"error": "scale_failed", "message": "Failed to scale cluster mine",
                                            "details": "bug"}, id="unexpected"),
])
async def test_scale_backend_errors(world: World, error, status: int, body: dict) -> None:
    world.dask.fail["scale"] = error
    async with serve(world) as api:
        got, answer, _ = await api.call("POST", "/cluster/scale/daskclusters/mine", token=OWNER, body={"replicas": 2})
    assert (got, answer) == (status, body)


async def test_backend_refusal_of_replicas_is_400(world: World) -> None:
    world.dask.maximum = 2
    async with serve(world) as api:
        status, body, _ = await api.call("POST", "/cluster/scale/daskclusters/mine", token=OWNER, body={"replicas": 3})
    assert status == 400 and body["error"] == "bad_request" and "at most 2" in body["message"]


@pytest.mark.parametrize("group, status", [("workers", 200), ("gpu", 400), ("", 400), (3, 400)])
async def test_scale_passes_the_worker_group(world: World, group, status: int) -> None:
    async with serve(world) as api:
        got, body, _ = await api.call("POST", "/cluster/scale/daskclusters/mine", token=OWNER,
                                      body={"replicas": 2, "worker_group": group})
    assert got == status, body
    assert len(world.writes()) == (status == 200)
