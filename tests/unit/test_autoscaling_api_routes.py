"""The autoscaling API's routes against the real app: seed 004's bodies, codes and errors.

The world: the real `Authenticator` and `HpaAccess` over fake reviews (RBAC
as a table: user -> {(verb, namespace)}), and an in-memory Kubernetes
(`FakeKube`) holding workloads, HPAs and Events. Every answer is checked: JSON,
`Cache-Control: no-store`, valid for its route and status in the OpenAPI
document, no credential in it. Refused requests are checked to write nothing.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from api_fakes import check_response, review

from dask_operator.api.auth import Authenticator, KeyStore
from dask_operator.api.errors import AuthUnavailable
from dask_operator.autoscaling_api import openapi
from dask_operator.autoscaling_api.access import HpaAccess
from dask_operator.autoscaling_api.app import build_app
from dask_operator.autoscaling_api.service import AutoscalingService
from dask_operator.core.autoscaler_spec import LABEL_MANAGED_BY, hpa_manifest, parse_request
from dask_operator.errors import KubeApiError

KEY = "key-of-alice-0123456789"
TOKENS = {"alice-token": review("alice", "u-alice"), "bob-token": review("bob", "u-bob"),
          "boss-token": review("boss", "u-boss", groups=("autoscaling-admins",))}
RBAC = {"alice": {("create", "shop"), ("get", "shop"), ("list", "shop"), ("delete", "shop")},
        "bob": {("get", "lab"), ("list", "lab")}}
SEED = {"workload_name": "web", "workload_namespace": "shop", "workload_type": "Deployment", "min_replicas": 2,
        "max_replicas": 10, "target_cpu_percent": 70, "target_memory_percent": 80, "target_gpu_percent": 75,
        "scale_up_policy": {"stabilization_window_seconds": 60, "max_scale_change": 3},
        "scale_down_policy": {"stabilization_window_seconds": 300, "max_scale_change": 2}}
WEB_ID = "shop.autoscaler-deployment-web"


class FakeReviews:
    def __init__(self) -> None:
        self.access: list[dict] = []
        self.fail: BaseException | None = None

    async def token_review(self, token, audiences=()):
        return TOKENS.get(token, {"authenticated": False})

    async def access_review(self, user, groups, uid, extra, attributes) -> bool:
        self.access.append(dict(attributes, user=user))
        if self.fail:
            raise self.fail
        return (attributes["verb"], attributes["namespace"]) in RBAC.get(user, set())


class FakeKube:
    """get / list / create / delete over dicts; `fail[verb]` raises; writes recorded."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.events: list[dict] = []
        self.writes: list[tuple] = []
        self.fail: dict[str, BaseException] = {}
        self.uids = 0

    def add(self, plural: str, obj: dict) -> dict:
        self.uids += 1
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", f"uid-{self.uids}")
        obj["metadata"].setdefault("creationTimestamp", "2025-12-15T10:30:00Z")
        self.objects[(plural, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return obj

    async def get(self, version, plural, namespace, name):
        if "get" in self.fail:
            raise self.fail["get"]
        return copy.deepcopy(self.objects.get((plural, namespace, name)))

    async def list(self, version, plural, namespace, label_selector=None, field_selector=None):
        if plural == "events":
            return [e for e in self.events if namespace in (None, e["metadata"]["namespace"])]
        want = dict(t.split("=", 1) for t in label_selector.split(",")) if label_selector else {}
        return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.objects.items()) if p == plural and namespace in (
            None, ns) and all(o["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]

    async def create(self, version, plural, namespace, body):
        if "create" in self.fail:
            raise self.fail["create"]
        if (plural, namespace, body["metadata"]["name"]) in self.objects:
            raise KubeApiError(409, "already exists")
        self.writes.append(("create", namespace, body["metadata"]["name"]))
        return self.add(plural, body)

    async def delete(self, version, plural, namespace, name, uid=None):
        obj = self.objects.get((plural, namespace, name))
        if obj is None or uid and obj["metadata"]["uid"] != uid:
            return False
        self.writes.append(("delete", namespace, name))
        del self.objects[(plural, namespace, name)]
        return True


def deployment(namespace: str, name: str, replicas: int = 2) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": namespace, "name": name},
            "spec": {"replicas": replicas}}


class World:
    def __init__(self) -> None:
        self.kube, self.reviews = FakeKube(), FakeReviews()
        self.kube.add("deployments", deployment("shop", "web"))
        self.kube.add("deployments", deployment("shop", "api"))
        self.kube.add("deployments", deployment("lab", "notebook", 1))
        digest = hashlib.sha256(KEY.encode()).hexdigest()
        entries = yaml.safe_dump([{"sha256": digest, "user": "alice"}])
        self.kube.add("secrets", {"metadata": {"namespace": "ops", "name": "keys"},
                                  "data": {"keys.yaml": base64.b64encode(entries.encode()).decode()}})

    def hpa(self, namespace: str, name: str, ours: bool = True, **create) -> dict:
        obj = hpa_manifest(parse_request({**SEED, "workload_namespace": namespace, "workload_name": name, **create}))
        if not ours:
            obj["metadata"]["labels"] = {}
            obj["metadata"]["name"] = f"{name}-hpa"
        obj["status"] = {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 64}}}],
            "conditions": [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": "ok"}]}
        return self.kube.add("horizontalpodautoscalers", obj)

    def app(self):
        auth = Authenticator(self.reviews, KeyStore(self.kube, "ops", "keys"), admin_groups=["autoscaling-admins"])
        return build_app(AutoscalingService(self.kube, HpaAccess(auth)), auth)


class Client:
    def __init__(self, http: TestClient) -> None:
        self.http, self.doc = http, openapi.document()

    async def call(self, method: str, path: str, token: str | None = None, key: str | None = None,
                   body: object = None, raw: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key:
            headers["X-Api-Key"] = key
        data = raw if raw is not None else json.dumps(body) if body is not None else None
        async with self.http.request(method, path, headers=headers, data=data) as r:
            text = await r.text()
            assert r.headers["Cache-Control"] == "no-store"
            answer = json.loads(text)
            assert not any(s and s in text for s in (token, key)), "a credential leaked"
            if "no route" not in answer.get("details", ""):
                check_response(self.doc, method, r.url.path, r.status, answer)
            return r.status, answer


@contextlib.asynccontextmanager
async def serve(world: World):
    http = TestClient(TestServer(world.app()))
    await http.start_server()
    try:
        yield Client(http)
    finally:
        await http.close()


@pytest.fixture
def world() -> World:
    return World()


# ------------------------------------------------------------------ public routes


async def test_public_routes_need_no_credentials(world: World) -> None:
    async with serve(world) as api:
        assert await api.call("GET", "/healthz") == (200, {"status": "ok"})
        status, doc = await api.call("GET", "/openapi.json")
        assert status == 200 and set(doc["paths"]) >= {"/api/v1/autoscaling", "/api/v1/autoscaling/{id}"}
        await api.call("GET", "/api/v1/autoscaling", token="alice-token")
        async with api.http.get("/metrics") as r:
            text = await r.text()
    assert 'dask_operator_autoscaling_api_requests_total{code="200",method="GET",route="/api/v1/autoscaling"} 1.0' \
        in text


async def test_unknown_route_and_method(world: World) -> None:
    async with serve(world) as api:
        assert (await api.call("GET", "/nope"))[0] == 404
        status, body = await api.call("PUT", "/api/v1/autoscaling", token="alice-token")
    assert status == 405 and body["error"] == "Method not allowed"


# ------------------------------------------------------------------ create


async def test_create_the_seed_example(world: World) -> None:
    async with serve(world) as api:
        status, body = await api.call("POST", "/api/v1/autoscaling", token="alice-token", body=SEED)
    assert status == 201
    assert (body["autoscaling_id"], body["status"], body["message"]) == (WEB_ID, "pending",
                                                                         "Autoscaler created successfully")
    d = body["details"]
    assert d["hpa_name"] == "autoscaler-deployment-web" and d["current_replicas"] == 2  # the Deployment's own
    assert d["desired_replicas"] is None and d["current_cpu_percent"] is None  # not evaluated: nothing invented
    assert (d["scale_up_count"], d["scale_down_count"]) == (0, 0) and d["spec"] == {**SEED, "follow_desired_workers":
                                                                                      False}
    stored = world.kube.objects[("horizontalpodautoscalers", "shop", "autoscaler-deployment-web")]
    assert stored["spec"] == hpa_manifest(parse_request(SEED))["spec"]
    assert stored["metadata"]["labels"] == {LABEL_MANAGED_BY: "dask-operator-autoscaling-api"}
    assert world.reviews.access[-1] == {"group": "autoscaling", "resource": "horizontalpodautoscalers",
                                        "verb": "create", "namespace": "shop", "user": "alice"}


@pytest.mark.parametrize("change, details", [
    pytest.param({"min_replicas": 0}, "min_replicas must be at least 1", id="min"),
    pytest.param({"max_replicas": 1}, "max_replicas must be greater than or equal to min_replicas", id="max"),
    pytest.param({"target_cpu_percent": 120}, "target_cpu_percent must be an integer between 0 and 100", id="percent"),
    pytest.param({"workload_type": "Job"}, "workload_type must be one of Deployment, StatefulSet, ReplicaSet, Cluster",
                 id="type"),
    pytest.param({"workload_type": {"n": [{}]}},  # schemathesis: was a 500, "unhashable type: 'dict'"
                 "workload_type must be one of Deployment, StatefulSet, ReplicaSet, Cluster", id="type-object"),
    pytest.param({"target_cpu_percent": None, "target_memory_percent": 0, "target_gpu_percent": None},
                 "at least one target is required: target_cpu_percent, target_memory_percent, target_gpu_percent "
                 "(or follow_desired_workers for a Cluster)", id="no-target"),
    pytest.param({"cooldown": 15}, "unknown field(s): cooldown", id="unknown-field"),
])
async def test_create_validation_is_400_with_details_and_asks_nothing(world: World, change, details: str) -> None:
    async with serve(world) as api:
        status, body = await api.call("POST", "/api/v1/autoscaling", token="alice-token", body={**SEED, **change})
    assert (status, body) == (400, {"error": "Validation failed", "details": details})
    assert world.kube.writes == [] and world.reviews.access == []


@pytest.mark.parametrize("raw", ["not json", "[1]", ""], ids=["garbage", "array", "empty"])
async def test_create_body_must_be_a_json_object(world: World, raw: str) -> None:
    async with serve(world) as api:
        status, body = await api.call("POST", "/api/v1/autoscaling", token="alice-token", raw=raw)
    assert (status, body) == (400, {"error": "Validation failed", "details": "request body must be a JSON object"})


@pytest.mark.parametrize("token, key, status, error", [
    pytest.param(None, None, 401, "Unauthenticated", id="no-credentials-401-before-400"),
    pytest.param("forged-token", None, 401, "Unauthenticated", id="rejected-token"),
    pytest.param("bob-token", None, 403, "Forbidden", id="no-rbac-in-that-namespace"),
    pytest.param(None, KEY, 201, None, id="api-key"),
    pytest.param("boss-token", None, 201, None, id="admin-group-unasked"),
])
async def test_create_who_may(world: World, token, key, status: int, error: str | None) -> None:
    body = {**SEED, "min_replicas": 0} if status == 401 else SEED
    async with serve(world) as api:
        got, answer = await api.call("POST", "/api/v1/autoscaling", token=token, key=key, body=body)
    assert got == status and (error is None or answer["error"] == error)
    assert len(world.kube.writes) == (status == 201)
    if status == 403:
        assert answer["details"] == "bob may not create horizontalpodautoscalers in namespace shop"


async def test_create_for_a_missing_workload_is_404(world: World) -> None:
    async with serve(world) as api:
        status, body = await api.call("POST", "/api/v1/autoscaling", token="alice-token",
                                      body={**SEED, "workload_name": "nginx"})
    assert (status, body) == (404, {"error": "Workload not found",
                                    "details": 'Deployment "nginx" not found in namespace "shop"'})
    assert world.kube.writes == []


async def test_a_workload_has_one_autoscaler(world: World) -> None:
    world.hpa("shop", "api", ours=False)
    async with serve(world) as api:
        assert (await api.call("POST", "/api/v1/autoscaling", token="alice-token", body=SEED))[0] == 201
        again = await api.call("POST", "/api/v1/autoscaling", token="alice-token", body=SEED)
        foreign = await api.call("POST", "/api/v1/autoscaling", token="alice-token",
                                 body={**SEED, "workload_name": "api"})
    assert again == (409, {"error": "Autoscaler already exists",
                           "details": f"Deployment shop/web is already autoscaled by autoscaler {WEB_ID}"})
    assert foreign == (409, {"error": "Autoscaler already exists", "details": "Deployment shop/api is already "
                             "autoscaled by HorizontalPodAutoscaler api-hpa (not made by this API)"})
    assert len(world.kube.writes) == 1


async def test_create_failure_is_the_seeds_500_without_the_token(world: World) -> None:
    world.kube.fail["create"] = KubeApiError(500, "POST horizontalpodautoscalers: etcd down (caller alice-token)")
    async with serve(world) as api:
        status, body = await api.call("POST", "/api/v1/autoscaling", token="alice-token", body=SEED)
    assert (status, body) == (500, {"error": "Failed to create autoscaler", "details":
                                    "HTTP 500: POST horizontalpodautoscalers: etcd down (caller [redacted])"})


# ------------------------------------------------------------------ get, list, delete, metrics


async def test_get_reads_the_hpa_and_its_events(world: World) -> None:
    hpa = world.hpa("shop", "web")
    world.kube.events.append({"metadata": {"namespace": "shop"}, "involvedObject": {"uid": hpa["metadata"]["uid"]},
                              "reason": "SuccessfulRescale", "count": 2,
                              "message": "New size: 3; reason: cpu resource utilization (percentage of request) "
                                         "above target"})
    async with serve(world) as api:
        status, body = await api.call("GET", f"/api/v1/autoscaling/{WEB_ID}", token="alice-token")
    assert status == 200 and body["status"] == "active"
    assert {k: body["details"][k] for k in ("current_replicas", "current_cpu_percent", "scale_up_count")} == {
        "current_replicas": 3, "current_cpu_percent": 64, "scale_up_count": 2}
    assert body["details"]["unavailable_metrics"].keys() == {"memory", "gpu"}


@pytest.mark.parametrize("path, token, status, body", [
    pytest.param("/api/v1/autoscaling/autoscaler-xyz123", "alice-token", 404,
                 {"error": "Autoscaler not found", "details": "autoscaler autoscaler-xyz123 not found"}, id="seed-404"),
    pytest.param("/api/v1/autoscaling/shop.absent", "alice-token", 404,
                 {"error": "Autoscaler not found", "details": "autoscaler shop.absent not found"}, id="no-such-hpa"),
    pytest.param("/api/v1/autoscaling/shop.api-hpa", "alice-token", 404,
                 {"error": "Autoscaler not found", "details": "autoscaler shop.api-hpa not found"}, id="not-ours"),
    pytest.param(f"/api/v1/autoscaling/{WEB_ID}", "bob-token", 403,
                 {"error": "Forbidden", "details": "bob may not get horizontalpodautoscaler autoscaler-deployment-web "
                                                   "in namespace shop"}, id="forbidden"),
    pytest.param("/api/v1/autoscaling/shop.absent", "bob-token", 403, None, id="403-before-404"),
])
async def test_get_errors(world: World, path: str, token: str, status: int, body) -> None:
    world.hpa("shop", "web")
    world.hpa("shop", "api", ours=False)
    async with serve(world) as api:
        got, answer = await api.call("GET", path, token=token)
    assert got == status and (body is None or answer == body)


async def test_list_shows_what_the_caller_may_list(world: World) -> None:
    for ns, name in (("shop", "web"), ("shop", "api"), ("lab", "notebook")):
        world.hpa(ns, name)
    world.hpa("lab", "foreign", ours=False)
    async with serve(world) as api:
        alice = await api.call("GET", "/api/v1/autoscaling", token="alice-token")
        bob = await api.call("GET", "/api/v1/autoscaling", token="bob-token")
        boss = await api.call("GET", "/api/v1/autoscaling", token="boss-token")
        lab = await api.call("GET", "/api/v1/autoscaling?namespace=lab", token="bob-token")
        refused = await api.call("GET", "/api/v1/autoscaling?namespace=shop", token="bob-token")
        bad = await api.call("GET", "/api/v1/autoscaling?namespace=Not_A_Namespace", token="boss-token")
    ids = {who: [a["autoscaling_id"] for a in body["autoscalers"]] for who, (_, body) in
           (("alice", alice), ("bob", bob), ("boss", boss), ("lab", lab))}
    assert ids == {"alice": ["shop.autoscaler-deployment-api", WEB_ID], "bob": ["lab.autoscaler-deployment-notebook"],
                   "boss": ["lab.autoscaler-deployment-notebook", "shop.autoscaler-deployment-api", WEB_ID],
                   "lab": ["lab.autoscaler-deployment-notebook"]}
    assert alice[1]["count"] == 2 and refused[0] == 403 and bad[0] == 400


async def test_delete_removes_the_hpa_and_only_ours(world: World) -> None:
    world.hpa("shop", "web")
    world.hpa("shop", "api", ours=False)
    async with serve(world) as api:
        denied = await api.call("DELETE", f"/api/v1/autoscaling/{WEB_ID}", token="bob-token")
        foreign = await api.call("DELETE", "/api/v1/autoscaling/shop.api-hpa", token="alice-token")
        deleted = await api.call("DELETE", f"/api/v1/autoscaling/{WEB_ID}", token="alice-token")
        gone = await api.call("GET", f"/api/v1/autoscaling/{WEB_ID}", token="alice-token")
        again = await api.call("DELETE", f"/api/v1/autoscaling/{WEB_ID}", token="alice-token")
    assert denied[0] == 403 and foreign[0] == 404
    assert deleted == (200, {"message": "Autoscaler deleted successfully", "autoscaler_id": WEB_ID})
    assert gone[0] == again[0] == 404
    assert world.kube.writes == [("delete", "shop", "autoscaler-deployment-web")]
    assert ("horizontalpodautoscalers", "shop", "api-hpa") in world.kube.objects


async def test_metrics_aggregate_what_the_caller_may_see(world: World) -> None:
    world.hpa("shop", "web")
    world.hpa("lab", "notebook")
    async with serve(world) as api:
        status, body = await api.call("GET", "/api/v1/autoscaling/metrics", token="bob-token")
    assert (status, body) == (200, {"total_autoscalers": 1, "active_autoscalers": 1, "total_scale_ups": 0,
                                    "total_scale_downs": 0, "average_cpu_utilization": 64.0})


async def test_reviews_down_is_503(world: World) -> None:
    world.reviews.fail = AuthUnavailable("the subjectaccessreviews API could not be reached", "boom")
    async with serve(world) as api:
        status, body = await api.call("GET", f"/api/v1/autoscaling/{WEB_ID}", token="alice-token")
    assert (status, body["error"]) == (503, "Authorization unavailable")


async def test_kube_down_on_list_is_the_routes_500(world: World) -> None:
    async def broken(*a, **k):
        raise KubeApiError(0, "GET horizontalpodautoscalers: ConnectError: refused")
    world.kube.list = broken
    async with serve(world) as api:
        status, body = await api.call("GET", "/api/v1/autoscaling", token="boss-token")
    assert (status, body) == (500, {"error": "Failed to list autoscalers",
                                    "details": "HTTP 0: GET horizontalpodautoscalers: ConnectError: refused"})
