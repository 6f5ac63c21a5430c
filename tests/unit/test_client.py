"""The Python client (`dask_operator/client.py`) against the real API app over loopback HTTP.

The server is `api.app.build_app` wired to `api_world`'s fake backends,
served by aiohttp on 127.0.0.1 in a thread of its own (the client is
synchronous). Nothing of the server is mocked: statuses, codes and bodies
are the server's. `Converging` stands in for an operator: each status read
brings one more worker up, each head read after a restart makes the new
head Ready, so a wait completes only by polling.

The run is `run1`: its clusters are `dask-run1` (ns, the server's default
namespace, and another in `other`) and `ray-run1`, owned by u-owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from api_fakes import FakeBackend, ShapingBackend
from api_world import ADMIN_KEY, OWNER_KEY, World
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_operator import client
from dask_operator.api import views
from dask_operator.backends.base import ClusterStatus
from dask_operator.client import ClientError, ScalerClient, scaling_complete
from dask_operator.errors import KubeApiError, NotScalable

VARIABLES = ("CLUSTER_SCALER_BASE_URL", "DOMINO_API_PROXY", "DOMINO_TOKEN", "DOMINO_API_KEY", "DOMINO_RUN_ID",
             "COMPUTE_NAMESPACE")
SECRETS = ("owner-token", "stranger-token", "bad-token-0000", OWNER_KEY, ADMIN_KEY, "proxy-secret-token")
KIND_MESSAGE = "kind must be one of [rayclusters, daskclusters, sparkclusters]"


# ------------------------------------------------------------------ the server, in a thread


@contextlib.contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """`app` on 127.0.0.1, a free port, its own event loop in a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app, shutdown_timeout=1)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner.addresses[0][1]

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Converging(FakeBackend):
    """Each status read brings one more worker up (or retires one) toward the desired count,
    after answering; each head read after a restart makes the new head Ready, after answering."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.status_reads = self.head_reads = 0

    async def status(self, obj: dict) -> ClusterStatus:
        answer = await super().status(obj)
        self.status_reads += 1
        st = self.statuses[(obj["metadata"]["namespace"], obj["metadata"]["name"])]
        st["ready_workers"] += (answer.desired > st["ready_workers"]) - (answer.desired < st["ready_workers"])
        return answer

    async def head_pod(self, namespace: str, name: str) -> dict | None:
        answer = await super().head_pod(namespace, name)
        self.head_reads += 1
        head = self.heads.get((namespace, name))
        if head is not None:
            head["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        return answer


def populate(w: World) -> World:
    w.dask.add("ns", "dask-run1", owner="u-owner", replicas=1, ready=1)
    w.dask.add("ns", "dask-theirs", owner="u-stranger", replicas=2, ready=2)
    w.dask.add("other", "dask-run1", owner="u-owner", replicas=4, ready=4)
    w.ray.add("ns", "ray-run1", owner="u-owner", max_replicas=4)
    return w


@pytest.fixture
def world() -> World:
    return populate(World())


def converging_world() -> World:
    w = World()
    w.dask = Converging()
    return populate(w)


@pytest.fixture
def converging() -> World:
    return converging_world()


def without_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return without_variables(monkeypatch)


def configure(monkeypatch: pytest.MonkeyPatch, url: str, **env: str) -> None:
    monkeypatch.setenv("CLUSTER_SCALER_BASE_URL", url)
    monkeypatch.setenv("DOMINO_RUN_ID", "run1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def api(world: World, clean_env: pytest.MonkeyPatch) -> Iterator[str]:
    """The run's environment, the owner's token, against `world`'s server."""
    with serving(world.app()) as url:
        configure(clean_env, url, DOMINO_TOKEN="owner-token")
        yield url


def assert_no_secret(e: BaseException) -> None:
    text = f"{e} {e!r} {getattr(e, 'details', '')} {getattr(e, 'message', '')}"
    assert not [s for s in SECRETS if s in text], f"a credential leaked into {text!r}"


# ------------------------------------------------------------------ seed 001's functions


def test_health_needs_no_credentials(world: World, clean_env: pytest.MonkeyPatch) -> None:
    with serving(world.app()) as url:
        clean_env.setenv("CLUSTER_SCALER_BASE_URL", url)
        assert client.is_cluster_auto_scaler_healthy() == (200, {"status": "ok"})


def test_get_cluster_status_is_the_runs_cluster_in_the_compatibility_view(api: str) -> None:
    obj = client.get_cluster_status("daskclusters")
    assert (obj["metadata"]["namespace"], obj["metadata"]["name"]) == ("ns", "dask-run1")
    assert obj["spec"]["worker"]["replicas"] == 1 and len(obj["status"]["nodes"]) == 2


def test_list_clusters_shows_the_callers_own(api: str) -> None:
    body = client.list_clusters("daskclusters")
    assert (body["kind"], body["count"]) == ("daskclusters", 1)
    assert [c["metadata"]["name"] for c in body["clusters"]] == ["dask-run1"]


def test_scale_with_a_tier_sends_it_and_changes_the_cluster(api: str, world: World) -> None:
    answer = client.scale_cluster("daskclusters", worker_hw_tier_name="Medium", replicas=3)
    assert (answer["name"], answer["replicas"], answer["capped"]) == ("dask-run1", 3, False)
    assert answer["worker_hw_tier"] == {"id": "medium-k8s", "name": "Medium"}
    (write,) = world.dask.writes
    assert write[:4] == ("scale", "ns", "dask-run1", 3)
    assert write[4].resources["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert client.get_cluster_status("daskclusters")["spec"]["worker"]["replicas"] == 3


def test_scale_without_a_tier_and_capped_at_the_maximum(api: str, world: World) -> None:
    answer = client.scale_cluster("rayclusters", worker_hw_tier_name=None, replicas=9)
    assert (answer["replicas"], answer["requested"], answer["capped"], answer["max_replicas"]) == (4, 9, True, 4)
    assert world.ray.writes == [("scale", "ns", "ray-run1", 4, None)]


def test_is_scaling_complete_follows_the_server(api: str, world: World) -> None:
    assert client.is_scaling_complete("daskclusters") is True
    client.scale_cluster("daskclusters", replicas=2)
    assert client.is_scaling_complete("daskclusters") is False
    world.dask.statuses[("ns", "dask-run1")]["ready_workers"] = 2
    assert client.is_scaling_complete("daskclusters") is True


def test_wait_until_scaling_complete_polls_until_the_workers_are_up(converging: World,
                                                                    clean_env: pytest.MonkeyPatch) -> None:
    with serving(converging.app()) as url:
        configure(clean_env, url, DOMINO_TOKEN="owner-token")
        client.scale_cluster("daskclusters", replicas=4)
        reads, ready = converging.dask.status_reads, converging.dask.statuses[("ns", "dask-run1")]["ready_workers"]
        assert ready <= 2, "the wait has at least two workers to see come up"
        assert client.wait_until_scaling_complete("daskclusters", timeout=30, poll_seconds=0.01) is True
    assert converging.dask.statuses[("ns", "dask-run1")]["ready_workers"] == 4
    assert converging.dask.status_reads - reads == 4 - ready + 1, "one read per new worker, then the complete one"


def test_wait_until_scaling_complete_times_out_with_what_it_saw(api: str) -> None:
    client.scale_cluster("daskclusters", replicas=3)
    started = time.monotonic()
    with pytest.raises(ClientError) as e:
        client.wait_until_scaling_complete("daskclusters", timeout=0.5, poll_seconds=0.05)
    elapsed = time.monotonic() - started
    assert e.value.code == "timeout" and e.value.status is None
    assert "daskclusters/dask-run1 scaled: not done after 0.5s" in str(e.value)
    assert "1 of 3 workers, 1 Ready, head Ready" in str(e.value)
    assert 0.5 <= elapsed < 5


def test_restart_head_and_its_status(api: str, world: World) -> None:
    kick = client.restart_head_node("daskclusters")
    # the server never echoes a time after its own clock (api_world's NOW, 15:40:00.5)
    assert (kick["ok"], kick["pod"], kick["started_at"]) == (True, "dask-run1-head", "2025-09-02T15:40:00Z")
    assert world.dask.writes == [("restart_head", "ns", "dask-run1")]
    status = client.restart_head_node_status("daskclusters", restarted_since=kick["started_at"])
    assert (status["restarted"], status["ready"], status["status"]) == (True, False, "restarted_not_ready")
    assert client.restart_head_node_status("daskclusters")["status"] == "not_restarted", "seed's default: 2099"


def test_wait_until_node_restarted_polls_until_ready(converging: World, clean_env: pytest.MonkeyPatch) -> None:
    with serving(converging.app()) as url:
        configure(clean_env, url, DOMINO_TOKEN="owner-token")
        started_at = client.restart_head_node("daskclusters")["started_at"]
        assert client.wait_until_node_restarted("daskclusters", started_at, timeout=30, poll_seconds=0.01) is None
    assert converging.dask.head_reads == 2, "restarted_not_ready seen first, then restarted_and_ready"


def test_wait_until_node_restarted_times_out(api: str) -> None:
    with pytest.raises(ClientError) as e:
        client.wait_until_node_restarted("daskclusters", timeout=0.3, poll_seconds=0.05)
    assert e.value.code == "timeout" and "head not_restarted" in str(e.value)


def test_head_hw_tier_where_the_backend_can_and_cannot(world: World, clean_env: pytest.MonkeyPatch) -> None:
    world.ray = ShapingBackend("kuberay", "rayclusters", "ray.io/v1", "rayclusters")
    world.ray.add("ns", "ray-run1", owner="u-owner")
    with serving(world.app()) as url:
        configure(clean_env, url, DOMINO_TOKEN="owner-token")
        answer = client.update_hw_tier_of_head_node("rayclusters", head_hw_tier_name="GPU")
        assert answer["head_hw_tier"] == {"id": "gpu-k8s", "name": "GPU"}
        assert world.ray.writes[0][:3] == ("shape_head", "ns", "ray-run1")
        with pytest.raises(ClientError) as e:
            client.update_hw_tier_of_head_node("daskclusters")
    assert (e.value.status, e.value.code) == (501, "not_supported")


# ------------------------------------------------------------------ environment


@pytest.mark.parametrize("kind, name", [
    pytest.param("rayclusters", "ray-abc123", id="ray"),
    pytest.param("daskclusters", "dask-abc123", id="dask"),
    pytest.param("sparkclusters", "spark-abc123", id="spark"),
])
def test_cluster_name_from_run_id(clean_env: pytest.MonkeyPatch, kind: str, name: str) -> None:
    clean_env.setenv("DOMINO_RUN_ID", "abc123")
    assert client.cluster_name_from_run_id(kind) == name


def test_no_run_id_is_a_configuration_error(api: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.delenv("DOMINO_RUN_ID")
    with pytest.raises(ClientError) as e:
        client.get_cluster_status("daskclusters")
    assert (e.value.code, e.value.status) == ("config", None) and "DOMINO_RUN_ID" in e.value.message


def test_base_url_defaults_to_seed_001s_service(clean_env: pytest.MonkeyPatch) -> None:
    with ScalerClient.from_env() as c:
        assert c.base_url == "http://ddl-cluster-scaler-svc.domino-field.svc.cluster.local"
        assert c.namespace is None


def test_compute_namespace_chooses_the_namespace(api: str, clean_env: pytest.MonkeyPatch) -> None:
    assert client.get_cluster_status("daskclusters")["metadata"]["namespace"] == "ns", "unset: the server's default"
    clean_env.setenv("COMPUTE_NAMESPACE", "other")
    obj = client.get_cluster_status("daskclusters")
    assert obj["metadata"]["namespace"] == "other" and obj["spec"]["worker"]["replicas"] == 4


def _proxy(tokens: list[str], status: int = 200) -> web.Application:
    """A token proxy serving `/access-token` (Domino's DOMINO_API_PROXY); each request pops a token."""
    app = web.Application()

    async def access_token(request: web.Request) -> web.Response:
        return web.Response(text=tokens.pop(0) if tokens else "", status=status)
    app.router.add_get("/access-token", access_token)
    return app


@pytest.mark.parametrize("proxy, token, key, headers", [
    pytest.param(True, "stranger-token", "k-1234", {"Authorization": "Bearer owner-token"}, id="proxy-first"),
    pytest.param(False, "owner-token", "k-1234", {"Authorization": "Bearer owner-token"}, id="token-before-key"),
    pytest.param(False, None, OWNER_KEY, {"X-Domino-Api-Key": OWNER_KEY}, id="key-last"),
    pytest.param(False, "", OWNER_KEY, {"X-Domino-Api-Key": OWNER_KEY}, id="empty-token-is-unset"),
])
def test_auth_header_choice(clean_env: pytest.MonkeyPatch, proxy: bool, token, key, headers) -> None:
    with serving(_proxy(["owner-token"])) as proxy_url:
        if proxy:
            clean_env.setenv("DOMINO_API_PROXY", proxy_url + "/")
        if token is not None:
            clean_env.setenv("DOMINO_TOKEN", token)
        clean_env.setenv("DOMINO_API_KEY", key)
        assert client.get_auth_headers() == headers


@pytest.mark.parametrize("source, owner, admin", [
    pytest.param("DOMINO_API_PROXY", "owner-token", "group-admin-token", id="proxy-bearer"),
    pytest.param("DOMINO_TOKEN", "owner-token", "group-admin-token", id="bearer"),
    pytest.param("DOMINO_API_KEY", OWNER_KEY, ADMIN_KEY, id="api-key"),
])
def test_the_server_identifies_the_caller_by_the_chosen_credential(world: World, clean_env: pytest.MonkeyPatch,
                                                                   source: str, owner: str, admin: str) -> None:
    """The owner sees their cluster and not another's; an admin (same source) sees both."""
    tokens = [owner, owner, admin]
    with serving(world.app()) as url, serving(_proxy(tokens)) as proxy_url:
        configure(clean_env, url)
        clean_env.setenv(source, proxy_url if source == "DOMINO_API_PROXY" else owner)
        assert client.get_cluster_status("daskclusters")["metadata"]["name"] == "dask-run1"
        clean_env.setenv("DOMINO_RUN_ID", "theirs")
        with pytest.raises(ClientError) as e:
            client.get_cluster_status("daskclusters")
        assert (e.value.status, e.value.code) == (403, "unauthorized")
        clean_env.setenv(source, proxy_url if source == "DOMINO_API_PROXY" else admin)
        assert client.get_cluster_status("daskclusters")["metadata"]["name"] == "dask-theirs"
    if source == "DOMINO_API_PROXY":
        assert tokens == [], "a token asked of the proxy at every request"


def test_no_credentials_sends_nothing(clean_env: pytest.MonkeyPatch) -> None:
    configure(clean_env, closed_port_url())  # a request would fail as `unreachable`
    with pytest.raises(ClientError) as e:
        client.get_cluster_status("daskclusters")
    assert (e.value.code, e.value.status) == ("no_credentials", None)
    assert "DOMINO_API_PROXY, DOMINO_TOKEN or DOMINO_API_KEY" in e.value.message


@pytest.mark.parametrize("tokens, status", [
    pytest.param(["proxy-secret-token"], 500, id="proxy-error"),
    pytest.param([""], 200, id="empty-token"),
    pytest.param(["proxy secret token"], 200, id="not-a-token"),
])
def test_a_failing_token_proxy_is_auth_failed(clean_env: pytest.MonkeyPatch, tokens: list[str], status: int) -> None:
    with serving(_proxy(tokens, status)) as proxy_url:
        configure(clean_env, closed_port_url(), DOMINO_API_PROXY=proxy_url)
        with pytest.raises(ClientError) as e:
            client.get_cluster_status("daskclusters")
    assert e.value.code == "auth_failed" and f"HTTP {status}" in e.value.message
    assert_no_secret(e.value)


def test_an_unreachable_token_proxy_is_auth_failed(clean_env: pytest.MonkeyPatch) -> None:
    configure(clean_env, closed_port_url(), DOMINO_API_PROXY=closed_port_url())
    with pytest.raises(ClientError) as e:
        client.get_cluster_status("daskclusters")
    assert e.value.code == "auth_failed" and "ConnectError" in e.value.message


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("call, env, fail, status, code, message", [
    pytest.param(lambda: client.get_cluster_status("pods"), {}, None, 400, "invalid_kind", KIND_MESSAGE,
                 id="400-invalid-kind"),
    pytest.param(lambda: client.scale_cluster("daskclusters", replicas=-1), {}, None, 400, "bad_request",
                 "replicas must be a non-negative integer", id="400-replicas"),
    pytest.param(lambda: client.scale_cluster("daskclusters", "Huge", 2), {}, None, 400, "invalid_hw_tier",
                 "unknown hardware tier 'Huge'; tiers for daskclusters: Small, Medium", id="400-tier"),
    pytest.param(lambda: client.get_cluster_status("daskclusters"), {"DOMINO_TOKEN": "bad-token-0000"}, None,
                 401, "unauthenticated", None, id="401-bad-token"),
    pytest.param(lambda: client.scale_cluster("daskclusters", replicas=2), {"DOMINO_TOKEN": "stranger-token"},
                 None, 403, "unauthorized", "Not authorized to update cluster dask-run1", id="403-not-owner"),
    pytest.param(lambda: client.restart_head_node("daskclusters"), {"DOMINO_RUN_ID": "absent"}, None, 404,
                 "not_found", "Cluster ns/dask-absent does not exist", id="404-no-cluster"),
    pytest.param(lambda: client.scale_cluster("daskclusters", replicas=2), {},
                 ("scale", NotScalable("Cannot scale this cluster: autoscaling not enabled")), 409, "not_scalable",
                 "Cannot scale this cluster: autoscaling not enabled", id="409-not-scalable"),
    pytest.param(lambda: client.get_cluster_status("sparkclusters"), {}, None, 501, "backend_unavailable", None,
                 id="501-backend-missing"),
    pytest.param(lambda: client.get_cluster_status("daskclusters"), {},
                 ("get", KubeApiError(500, "GET clusters/dask-run1: etcd is down")), 500, "get_failed",
                 "Failed to fetch cluster dask-run1", id="500-with-details"),
])
def test_server_errors_become_client_errors(api: str, world: World, clean_env: pytest.MonkeyPatch, call, env: dict,
                                            fail, status: int, code: str, message: str | None) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    if fail:
        world.dask.fail[fail[0]] = fail[1]
    before = copy.deepcopy(world.dask.objects)
    with pytest.raises(ClientError) as e:
        call()
    assert (e.value.status, e.value.code) == (status, code)
    if message is not None:
        assert e.value.message == message
    assert str(e.value).startswith(f"{e.value.request}: HTTP {status} {code}: ")
    if status == 500:
        assert e.value.details == "HTTP 500: GET clusters/dask-run1: etcd is down"
    assert world.writes() == [] and world.dask.objects == before, "a refused request changed nothing"
    assert_no_secret(e.value)


def _gateway(status: int = 502) -> web.Application:
    """Something between the client and the API that answers HTML, as an ingress does."""
    app = web.Application()

    async def anything(request: web.Request) -> web.Response:
        return web.Response(status=status, text="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html")
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


def test_a_non_json_error_is_http_error(clean_env: pytest.MonkeyPatch) -> None:
    with serving(_gateway()) as url:
        configure(clean_env, url, DOMINO_TOKEN="owner-token")
        with pytest.raises(ClientError) as e:
            client.get_cluster_status("daskclusters")
        assert client.is_cluster_auto_scaler_healthy() == (502, "<html><h1>502 Bad Gateway</h1></html>"), \
            "seed 001: the health probe answers (status, body), JSON or text"
    assert (e.value.status, e.value.code, e.value.transient) == (502, "http_error", True)
    assert "502 Bad Gateway" in e.value.message


def test_a_wait_retries_transient_failures_until_its_deadline(clean_env: pytest.MonkeyPatch) -> None:
    with serving(_gateway()) as url:
        configure(clean_env, url, DOMINO_TOKEN="owner-token")
        with pytest.raises(ClientError) as e:
            client.wait_until_scaling_complete("daskclusters", timeout=0.3, poll_seconds=0.05)
    assert e.value.code == "timeout" and "HTTP 502 http_error" in str(e.value)


def test_a_wait_ends_at_once_on_a_lasting_error(api: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOMINO_RUN_ID", "absent")
    started = time.monotonic()
    with pytest.raises(ClientError) as e:
        client.wait_until_scaling_complete("daskclusters", timeout=30, poll_seconds=0.05)
    assert (e.value.status, e.value.code) == (404, "not_found") and time.monotonic() - started < 5


def test_unreachable_server(clean_env: pytest.MonkeyPatch) -> None:
    configure(clean_env, closed_port_url(), DOMINO_TOKEN="owner-token")
    with pytest.raises(ClientError) as e:
        client.get_cluster_status("daskclusters")
    assert (e.value.status, e.value.code, e.value.transient) == (None, "unreachable", True)
    with pytest.raises(ClientError) as e:
        client.is_cluster_auto_scaler_healthy()
    assert e.value.code == "unreachable"
    assert_no_secret(e.value)


class Stuck(FakeBackend):
    """A backend whose reads hang until released (an API server that stopped answering)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()  # set by the test's thread

    async def get(self, namespace: str, name: str) -> dict:
        await asyncio.to_thread(self.release.wait, 10)
        return await super().get(namespace, name)


def test_a_request_without_answer_times_out(world: World) -> None:
    world.dask = Stuck()
    world.dask.add("ns", "dask-run1", owner="u-owner")
    with serving(world.app()) as url:
        c = ScalerClient(url, credentials=lambda: {"Authorization": "Bearer owner-token"}, timeout=0.3)
        started = time.monotonic()
        try:
            with pytest.raises(ClientError) as e:
                c.get("daskclusters", "dask-run1")
            elapsed = time.monotonic() - started
        finally:
            world.dask.release.set()
            c.close()
    assert (e.value.code, e.value.status) == ("request_timeout", None)
    assert 0.3 <= elapsed < 3


def test_an_injected_http_client_is_used_and_left_open(api: str) -> None:
    seen: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: seen.append(f"{r.method} {r.url.path}")]}) as http:
        c = ScalerClient(api, credentials=lambda: {"Authorization": "Bearer owner-token"}, namespace="other",
                         http=http)
        with c:
            assert c.get("daskclusters", "dask-run1")["metadata"]["namespace"] == "other"
        assert seen == ["GET /ddl_cluster_scaler/cluster/daskclusters/dask-run1"] and not http.is_closed


@pytest.mark.parametrize("name", ["a/b", "dask-run1?namespace=other", "../cluster/daskclusters/dask-run1"])
def test_a_name_stays_one_path_segment(api: str, name: str) -> None:
    """A name reaches the server as the name: it is refused as one, never routed elsewhere."""
    with ScalerClient(api, credentials=lambda: {"Authorization": "Bearer owner-token"}) as c:
        with pytest.raises(ClientError) as e:
            c.get("daskclusters", name)
    assert (e.value.status, e.value.code) == (400, "bad_request")
    assert e.value.message == "cluster name must be a Kubernetes object name (DNS-1123 subdomain)"


# ------------------------------------------------------------------ completion rule


def our_cluster(replicas: int) -> dict:
    return {"metadata": {"name": "c"}, "spec": {"workers": {"replicas": replicas}}, "status": {}}


def dco_cluster(replicas: int, pods: int) -> dict:
    """Domino's resource: its own spec.worker.replicas and status.nodes (every pod, head included)."""
    return {"metadata": {"name": "c"}, "spec": {"worker": {"replicas": replicas}},
            "status": {"nodes": [f"c-{i}" for i in range(pods)]}}


@pytest.mark.parametrize("obj, status, complete", [
    pytest.param(our_cluster(2), ClusterStatus(2, 2, True), True, id="all-ready"),
    pytest.param(our_cluster(2), ClusterStatus(2, 1, True), False, id="one-missing"),
    pytest.param(our_cluster(1), ClusterStatus(1, 2, True), False, id="one-too-many"),
    pytest.param(our_cluster(2), ClusterStatus(2, 2, False), False, id="head-not-ready"),
    pytest.param(our_cluster(0), ClusterStatus(0, 0, True), True, id="zero-workers"),
    pytest.param(dco_cluster(2, 3), ClusterStatus(2, 2, True), True, id="dco-ready"),
    pytest.param(dco_cluster(2, 3), ClusterStatus(2, 1, True), False, id="dco-pods-listed-before-ready"),
    pytest.param(dco_cluster(2, 2), ClusterStatus(2, 2, True), False, id="dco-nodes-behind"),
])
def test_scaling_complete_on_the_servers_view(obj: dict, status: ClusterStatus, complete: bool) -> None:
    assert scaling_complete(views.compat_view(obj, status)) is complete


@pytest.mark.parametrize("obj, complete", [
    pytest.param(dco_cluster(2, 3), True, id="seed-rule-nodes-minus-head"),
    pytest.param(dco_cluster(2, 2), False, id="seed-rule-one-short"),
    pytest.param(our_cluster(1), False, id="no-worker-replicas"),
    pytest.param({"spec": {"worker": {"replicas": True}}, "status": {"nodes": ["h", "w"]}}, False, id="bool"),
    pytest.param({"spec": {"worker": {"replicas": 0}}, "status": {"nodes": []}}, False, id="no-head"),
    pytest.param({"spec": [], "status": "x"}, False, id="malformed"),
])
def test_scaling_complete_on_a_raw_object(obj: dict, complete: bool) -> None:
    """An object without the uniform status (`?raw=true`, or a server of seed 000's): the seed's rule alone."""
    assert scaling_complete(obj) is complete


@settings(max_examples=200, deadline=None)
@given(desired=st.integers(0, 50), ready=st.integers(0, 50), head=st.booleans())
def test_scaling_complete_agrees_with_the_servers_uniform_status(desired: int, ready: int, head: bool) -> None:
    status = ClusterStatus(desired, ready, head)
    view = views.compat_view(our_cluster(desired), status)
    assert scaling_complete(view) is views.uniform(status)["complete"]
