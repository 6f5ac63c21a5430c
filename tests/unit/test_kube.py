"""Kube against httpx.MockTransport: the exact requests, and what each answer becomes.

Rules:
- core `v1` lives under /api/v1, every group version under /apis/<group>/<version>;
  a namespace adds /namespaces/<ns>, None means cluster-scoped (or all namespaces);
- create -> False on 409 AlreadyExists, get/patch -> None on 404, delete ->
  False on 404/409, delete sends propagationPolicy Background and the uid
  precondition when given;
- a write answered 409 Conflict is sent again up to CONFLICT_RETRIES times
  (the same request: ours carry no resourceVersion), then raises; a failed uid
  precondition (also 409 Conflict) is final;
- apply is a server-side apply (application/apply-patch+yaml, fieldManager, force);
- a 401 re-authenticates once and retries once with the new token;
- any other error raises KubeApiError(code) and counts in dask_operator_api_errors_total;
- watch yields the listed items as ADDED, then the streamed events without
  BOOKMARKs; it lists again only after an ERROR event (410 Gone), and resumes a
  broken or ended stream from the last resourceVersion seen (bookmarks count),
  and a stream silent for WATCH_INACTIVITY_SECONDS counts as broken;
- httpcore finds sniffio (a dependency): without it, each request pays ~11
  failed imports, each a search of sys.path.
The last section checks that the fakes other unit tests use keep this contract.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fakes import FakeDask, FakeKube, Server, prefer, selector_matches
from prometheus_client import REGISTRY

from dask_operator import constants as c
from dask_operator.errors import KubeApiError
from dask_operator import kube as kube_module
from dask_operator.kube import CONFLICT_RETRIES, FIELD_MANAGER, WATCH_INACTIVITY_SECONDS, Kube

SERVER = "https://k8s.test:6443"


class FakeAuth:
    def __init__(self, token: str | None = "token-1") -> None:
        self.server = SERVER
        self.token = token
        self.reauthentications = 0

    async def ssl_context(self):
        return False

    async def reauthenticate(self) -> None:
        self.reauthentications += 1
        self.token = f"token-{self.reauthentications + 1}"


class FakeApi:
    def __init__(self, token: str | None = "token-1") -> None:
        self.auth = FakeAuth(token)



def kube_for(server: Server, token: str | None = "token-1") -> Kube:
    return Kube(FakeApi(token), transport=httpx.MockTransport(server))


def status(code: int, message: str = "nope", reason: str | None = None) -> httpx.Response:
    body = {"kind": "Status", "code": code, "message": message}
    return httpx.Response(code, json=body | ({"reason": reason} if reason else {}))


def errors_total(method: str, code: int) -> float:
    return REGISTRY.get_sample_value("dask_operator_api_errors_total", {"method": method, "code": str(code)}) or 0.0


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusters.dask.charmtx.com"


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    "call, method, path",
    [
        pytest.param(lambda k: k.list("v1", "pods", "ns", "a=b"), "GET", "/api/v1/namespaces/ns/pods",
                     id="core-namespaced-list"),
        pytest.param(lambda k: k.list("v1", "pods", None, "a=b"), "GET", "/api/v1/pods", id="core-all-namespaces"),
        pytest.param(lambda k: k.get("v1", "namespaces", None, "default"), "GET", "/api/v1/namespaces/default",
                     id="core-cluster-scoped"),
        pytest.param(lambda k: k.get("apps/v1", "deployments", "ns", "d"), "GET",
                     "/apis/apps/v1/namespaces/ns/deployments/d", id="group-namespaced"),
        pytest.param(lambda k: k.get(c.API_VERSION, c.PLURAL, "ns", "dask"), "GET",
                     "/apis/dask.charmtx.com/v1alpha1/namespaces/ns/clusters/dask", id="custom-resource"),
        pytest.param(lambda k: k.get("apiextensions.k8s.io/v1", "customresourcedefinitions", None,
                                     "clusters.dask.charmtx.com"), "GET", CRD_PATH, id="group-cluster-scoped"),
        pytest.param(lambda k: k.create("v1", "pods", "ns", POD), "POST", "/api/v1/namespaces/ns/pods",
                     id="create"),
        pytest.param(lambda k: k.apply("apps/v1", "deployments", "ns", {"metadata": {"name": "d"}}), "PATCH",
                     "/apis/apps/v1/namespaces/ns/deployments/d", id="apply"),
        pytest.param(lambda k: k.patch("v1", "pods", "ns", "p", {"metadata": {}}), "PATCH",
                     "/api/v1/namespaces/ns/pods/p", id="patch"),
        pytest.param(lambda k: k.patch(c.API_VERSION, c.PLURAL, "ns", "dask", {"status": {}}, "status"), "PATCH",
                     "/apis/dask.charmtx.com/v1alpha1/namespaces/ns/clusters/dask/status",
                     id="patch-status-subresource"),
        pytest.param(lambda k: k.delete("v1", "pods", "ns", "p"), "DELETE", "/api/v1/namespaces/ns/pods/p",
                     id="delete"),
    ],
)
async def test_request_method_and_path(call, method, path):
    server = Server(httpx.Response(200, json={"items": [], "metadata": {}}))
    await call(kube_for(server))
    assert (server.last.method, server.last.url.path) == (method, path)
    assert str(server.last.url).startswith(SERVER)
    assert server.last.headers["authorization"] == "Bearer token-1"


async def test_list_sends_the_label_selector_and_returns_the_items():
    server = Server(httpx.Response(200, json={"items": [POD], "metadata": {"resourceVersion": "5"}}))
    assert await kube_for(server).list("v1", "pods", "ns", "a=b,c") == [POD]
    assert dict(server.last.url.params) == {"labelSelector": "a=b,c"}


async def test_no_token_sends_no_authorization_header():
    server = Server(httpx.Response(200, json=POD))
    await kube_for(server, token=None).get("v1", "pods", "ns", "p")
    assert "authorization" not in server.last.headers


# ---------------------------------------------------------------- what each answer becomes


@pytest.mark.parametrize(
    "code, expected",
    [pytest.param(201, True, id="created"), pytest.param(409, False, id="409-exists")],
)
async def test_create(code, expected):
    server = Server(httpx.Response(code, json=POD) if code < 400 else status(code, reason="AlreadyExists"))
    assert await kube_for(server).create("v1", "pods", "ns", POD) is expected
    assert json.loads(server.last.content) == POD
    assert server.last.headers["content-type"] == "application/json"


CONFLICT = status(409, "Operation cannot be fulfilled on pods: the object has been modified", "Conflict")
PRECONDITION = status(409, "Precondition failed: UID in precondition: u-1, UID in object meta: u-2", "Conflict")


@pytest.mark.parametrize(
    "call, answers, result, requests",
    [
        pytest.param(lambda k: k.create("v1", "pods", "ns", POD), [CONFLICT, httpx.Response(201, json=POD)],
                     True, 2, id="create-conflict-then-created"),
        pytest.param(lambda k: k.create("v1", "pods", "ns", POD), [CONFLICT], KubeApiError, 1 + CONFLICT_RETRIES,
                     id="create-conflict-every-time-raises-not-exists"),
        pytest.param(lambda k: k.patch("v1", "pods", "ns", "p", {}), [CONFLICT, CONFLICT, httpx.Response(200, json=POD)],
                     POD, 3, id="patch-conflict-twice-then-patched"),
        pytest.param(lambda k: k.apply("v1", "services", "ns", {"metadata": {"name": "s"}}),
                     [CONFLICT, httpx.Response(200, json=POD)], POD, 2, id="apply-conflict-then-applied"),
        pytest.param(lambda k: k.delete("v1", "pods", "ns", "p", "u-1"), [CONFLICT, httpx.Response(200, json={})],
                     True, 2, id="delete-conflict-then-deleted"),
        pytest.param(lambda k: k.delete("v1", "pods", "ns", "p", "u-1"), [PRECONDITION], False, 1,
                     id="delete-failed-precondition-is-final"),
        pytest.param(lambda k: k.create("v1", "pods", "ns", POD), [status(409, reason="AlreadyExists")], False, 1,
                     id="create-already-exists-is-final"),
    ],
)
async def test_conflicting_writes_are_sent_again(call, answers, result, requests, monkeypatch):
    monkeypatch.setattr(kube_module, "CONFLICT_BACKOFF_SECONDS", 0.0)
    server = Server(*answers)
    if result is KubeApiError:
        with pytest.raises(KubeApiError) as raised:
            await call(kube_for(server))
        assert raised.value.code == 409 and raised.value.status_reason == "Conflict"
    else:
        assert await call(kube_for(server)) == result
    assert len(server.requests) == requests
    assert len({r.content for r in server.requests}) == 1, "the same request each time"


@pytest.mark.parametrize(
    "response, expected",
    [pytest.param(httpx.Response(200, json=POD), POD, id="found"), pytest.param(status(404), None, id="404")],
)
async def test_get(response, expected):
    assert await kube_for(Server(response)).get("v1", "pods", "ns", "p") == expected


@pytest.mark.parametrize(
    "response, expected",
    [pytest.param(httpx.Response(200, json=POD), POD, id="patched"), pytest.param(status(404), None, id="404")],
)
async def test_patch_is_a_merge_patch(response, expected):
    server = Server(response)
    patch = {"metadata": {"annotations": {c.ANNOTATION_RETIRING: "2024-01-01T00:00:00Z"}}}
    assert await kube_for(server).patch("v1", "pods", "ns", "p", patch) == expected
    assert server.last.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(server.last.content) == patch


@pytest.mark.parametrize(
    "response, expected",
    [
        pytest.param(httpx.Response(200, json={"kind": "Status", "status": "Success"}), True, id="deleted"),
        pytest.param(status(404), False, id="404-already-gone"),
        pytest.param(status(409, "Precondition failed: UID in precondition: u-1, UID in object meta: u-2"),
                     False, id="409-uid-mismatch"),
    ],
)
async def test_delete(response, expected):
    server = Server(response)
    assert await kube_for(server).delete("v1", "pods", "ns", "p", "u-1") is expected
    assert json.loads(server.last.content) == {"propagationPolicy": "Background", "preconditions": {"uid": "u-1"}}


async def test_delete_without_uid_sends_no_precondition():
    server = Server(httpx.Response(200, json={}))
    await kube_for(server).delete("v1", "pods", "ns", "p")
    assert json.loads(server.last.content) == {"propagationPolicy": "Background"}


async def test_apply_is_a_forced_server_side_apply_as_the_operators_field_manager():
    server = Server(lambda request: httpx.Response(200, content=request.content))
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dask-scheduler"}, "spec": {}}
    assert await kube_for(server).apply("v1", "services", "ns", body) == body
    assert server.last.url.path == "/api/v1/namespaces/ns/services/dask-scheduler"
    assert dict(server.last.url.params) == {"fieldManager": FIELD_MANAGER, "force": "true"}
    assert server.last.headers["content-type"] == "application/apply-patch+yaml"
    assert json.loads(server.last.content) == body


async def test_empty_success_body_is_none():
    assert await kube_for(Server(httpx.Response(200))).patch("v1", "pods", "ns", "p", {}) is None


@pytest.mark.parametrize(
    "call, method, code",
    [
        pytest.param(lambda k: k.create("v1", "pods", "ns", POD), "POST", 500, id="create-500"),
        pytest.param(lambda k: k.create("v1", "pods", "ns", POD), "POST", 422, id="create-422-invalid"),
        pytest.param(lambda k: k.get("v1", "pods", "ns", "p"), "GET", 403, id="get-403"),
        pytest.param(lambda k: k.list("v1", "pods", "ns", ""), "GET", 503, id="list-503"),
        pytest.param(lambda k: k.patch("v1", "pods", "ns", "p", {}), "PATCH", 409, id="patch-409"),
        pytest.param(lambda k: k.apply("v1", "services", "ns", {"metadata": {"name": "s"}}), "PATCH", 500,
                     id="apply-500"),
        pytest.param(lambda k: k.delete("v1", "pods", "ns", "p"), "DELETE", 500, id="delete-500"),
    ],
)
async def test_errors_raise_kube_api_error_with_the_code_and_are_counted(call, method, code):
    before = errors_total(method, code)
    with pytest.raises(KubeApiError) as raised:
        await call(kube_for(Server(status(code, "the server said no"))))
    assert raised.value.code == code
    assert "the server said no" in str(raised.value)
    assert errors_total(method, code) == before + 1


async def test_error_without_a_json_body_keeps_the_text():
    with pytest.raises(KubeApiError, match="upstream connect error"):
        await kube_for(Server(httpx.Response(502, text="upstream connect error"))).get("v1", "pods", "ns", "p")


# ---------------------------------------------------------------- 401: re-authenticate once


async def test_401_reauthenticates_once_and_retries_with_the_new_token():
    server = Server(lambda r: status(401) if r.headers["authorization"] == "Bearer token-1"
                    else httpx.Response(200, json=POD))
    kube = kube_for(server)
    assert await kube.get("v1", "pods", "ns", "p") == POD
    assert kube.api.auth.reauthentications == 1
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer token-1", "Bearer token-2"]
    await kube.get("v1", "pods", "ns", "p")  # the new client keeps the new token
    assert server.last.headers["authorization"] == "Bearer token-2"
    assert kube.api.auth.reauthentications == 1


async def test_second_401_raises_without_another_reauthentication():
    server = Server(status(401))
    kube = kube_for(server)
    with pytest.raises(KubeApiError) as raised:
        await kube.create("v1", "pods", "ns", POD)
    assert raised.value.code == 401
    assert kube.api.auth.reauthentications == 1
    assert len(server.requests) == 2
    assert json.loads(server.requests[1].content) == POD  # the retry resends the body


# ---------------------------------------------------------------- watch


def listed(rv: str, *names: str) -> httpx.Response:
    return httpx.Response(200, json={"items": [{"metadata": {"name": n}} for n in names],
                                     "metadata": {"resourceVersion": rv}})


def event(type_: str, name: str = "", rv: str | None = None, **extra) -> dict:
    meta = {"name": name, **({"resourceVersion": rv} if rv else {})}
    return {"type": type_, "object": {"metadata": meta, **extra}}


def streamed(*events: dict) -> httpx.Response:
    return httpx.Response(200, content="".join(json.dumps(e) + "\n\n" for e in events).encode())


class BrokenStream(httpx.AsyncByteStream):
    """A watch stream that delivers some lines, then breaks."""

    def __init__(self, *events: dict) -> None:
        self.events = events

    async def __aiter__(self):
        for e in self.events:
            yield (json.dumps(e) + "\n").encode()
        raise httpx.ReadError("connection reset")


class WatchServer:
    """Answers list requests and watch requests from separate scripts."""

    def __init__(self, lists: list[httpx.Response], watches: list[httpx.Response]) -> None:
        self.lists, self.watches = lists, watches
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        script = self.watches if request.url.params.get("watch") == "true" else self.lists
        return script.pop(0) if script else httpx.Response(500)  # out of script: the test has failed


async def take(stream, n: int) -> list[tuple[str, str]]:
    got = []
    async for type_, obj in stream:
        got.append((type_, obj["metadata"]["name"]))
        if len(got) == n:
            break
    await stream.aclose()
    return got


async def test_watch_yields_listed_items_as_added_then_events_without_bookmarks():
    server = WatchServer([listed("10", "a", "b")],
                         [streamed(event("BOOKMARK"), event("MODIFIED", "a"), event("DELETED", "b"),
                                   event("ADDED", "c"))])
    kube = kube_for(server)
    got = await asyncio.wait_for(take(kube.watch("v1", "pods", "ns", "x,y=z"), 5), 2)
    assert got == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
    watch_request = server.requests[1]
    assert watch_request.url.path == "/api/v1/namespaces/ns/pods"
    assert dict(watch_request.url.params) == {
        "labelSelector": "x,y=z", "watch": "true", "resourceVersion": "10", "allowWatchBookmarks": "true",
        "timeoutSeconds": "300",
    }
    # a stalled stream (no bytes, no reset) is given up well before the server would end it
    assert watch_request.extensions["timeout"]["read"] == WATCH_INACTIVITY_SECONDS
    assert WATCH_INACTIVITY_SECONDS < int(watch_request.url.params["timeoutSeconds"]) / 2


async def test_watch_relists_after_an_error_event():
    gone = event("ERROR", code=410, message="too old resource version")
    server = WatchServer([listed("10", "a"), listed("20", "b")],
                         [streamed(event("MODIFIED", "a"), gone, event("MODIFIED", "never")),
                          streamed(event("MODIFIED", "b"))])
    got = await asyncio.wait_for(take(kube_for(server).watch("v1", "pods", None, "x"), 4), 2)
    assert got == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b"), ("MODIFIED", "b")]
    assert [(r.url.path, r.url.params.get("watch"), r.url.params.get("resourceVersion"))
            for r in server.requests] == [("/api/v1/pods", None, None), ("/api/v1/pods", "true", "10"),
                                          ("/api/v1/pods", None, None), ("/api/v1/pods", "true", "20")]


async def test_watch_resumes_a_broken_stream_from_the_last_version_without_listing():
    server = WatchServer([listed("10", "a")],
                         [httpx.Response(200, stream=BrokenStream(event("MODIFIED", "a", rv="11"))),
                          streamed(event("BOOKMARK", rv="15")),  # the server's timeout ends it
                          streamed(event("DELETED", "a", rv="16"))])
    got = await asyncio.wait_for(take(kube_for(server).watch("v1", "pods", "ns", "x"), 3), 2)
    assert got == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert [(r.url.params.get("watch"), r.url.params.get("resourceVersion")) for r in server.requests] == [
        (None, None), ("true", "10"), ("true", "11"), ("true", "15")]


async def test_watch_list_error_raises():
    server = WatchServer([status(403)], [])
    with pytest.raises(KubeApiError) as raised:
        await asyncio.wait_for(take(kube_for(server).watch("v1", "pods", "ns", "x"), 1), 2)
    assert raised.value.code == 403



async def test_watch_error_status_raises_kube_api_error_with_its_code():
    server = WatchServer([listed("10", "a")], [status(429, "too many requests")])
    with pytest.raises(KubeApiError) as raised:
        await asyncio.wait_for(take(kube_for(server).watch("v1", "pods", "ns", "x"), 2), 2)
    assert raised.value.code == 429

# ---------------------------------------------------------------- FakeKube keeps Kube's contract
# (the unit tests of reconcile and the pod watch rely on it)


@pytest.mark.parametrize(
    "selector, labels, matches",
    [
        pytest.param("", {}, True, id="empty-matches-all"),
        pytest.param("a=1", {"a": "1", "b": "2"}, True, id="equality"),
        pytest.param("a==1", {"a": "1"}, True, id="double-equals"),
        pytest.param("a=1", {"a": "2"}, False, id="other-value"),
        pytest.param("a=1,b", {"a": "1", "b": ""}, True, id="equality-and-existence"),
        pytest.param("a=1,b", {"a": "1"}, False, id="missing-key"),
        pytest.param("a", None, False, id="no-labels"),
    ],
)
def test_fake_selector(selector, labels, matches):
    assert selector_matches(selector, labels) is matches


@pytest.mark.parametrize("selector", ["a!=1", "a in (1,2)", "!a"])
def test_fake_selector_refuses_what_it_does_not_implement(selector):
    with pytest.raises(ValueError):
        selector_matches(selector, {"a": "1"})


async def test_fake_kube_answers_like_kube():
    kube = FakeKube()
    assert await kube.create("v1", "pods", "ns", POD) is True
    stored = await kube.get("v1", "pods", "ns", "p")
    assert stored["metadata"]["namespace"] == "ns" and stored["metadata"]["uid"]
    assert await kube.create("v1", "pods", "ns", POD) is False  # 409
    assert await kube.get("v1", "pods", "ns", "nope") is None  # 404
    assert await kube.patch("v1", "pods", "ns", "nope", {}) is None  # 404
    assert await kube.delete("v1", "pods", "ns", "p", "another-uid") is False  # 409: precondition
    assert await kube.delete("v1", "pods", "ns", "p", stored["metadata"]["uid"]) is True
    assert await kube.delete("v1", "pods", "ns", "p") is False  # 404
    assert kube.log() == ["create pods/p", "get pods/p", "create pods/p", "get pods/nope", "patch pods/nope",
                          "delete pods/p", "delete pods/p", "delete pods/p"]


async def test_fake_kube_stamps_newer_objects_later_and_bumps_resource_versions():
    kube = FakeKube()
    await kube.create("v1", "pods", "ns", {"metadata": {"name": "a"}})
    await kube.create("v1", "pods", "ns", {"metadata": {"name": "b"}})
    a, b = await kube.list("v1", "pods", "ns", "")
    assert a["metadata"]["creationTimestamp"] < b["metadata"]["creationTimestamp"]
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    patched = await kube.patch("v1", "pods", "ns", "a", {"metadata": {"annotations": {"x": "1"}}})
    assert int(patched["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])


async def test_fake_kube_merge_patches_status_or_the_rest():
    kube = FakeKube()
    kube.add(c.API_VERSION, c.PLURAL, {"metadata": {"name": "d", "namespace": "ns", "annotations": {"k": "v"}},
                                       "spec": {"x": 1}, "status": {"phase": "Pending", "workers": {"count": 1}}})
    await kube.patch(c.API_VERSION, c.PLURAL, "ns", "d", {"status": {"workers": {"count": 2}, "phase": None}},
                     "status")
    await kube.patch(c.API_VERSION, c.PLURAL, "ns", "d",
                     {"metadata": {"annotations": {"k": None, "n": "1"}}, "status": {"phase": "ignored"}})
    obj = kube.object(c.API_VERSION, c.PLURAL, "ns", "d")
    assert obj["status"] == {"workers": {"count": 2}}
    assert obj["metadata"]["annotations"] == {"n": "1"}
    assert obj["spec"] == {"x": 1}


async def test_fake_kube_injected_failure_is_logged_then_raised_once():
    kube = FakeKube()
    kube.fail_next("create", KubeApiError(500, "boom"), name="b")
    assert await kube.create("v1", "pods", "ns", {"metadata": {"name": "a"}}) is True
    with pytest.raises(KubeApiError):
        await kube.create("v1", "pods", "ns", {"metadata": {"name": "b"}})
    assert await kube.create("v1", "pods", "ns", {"metadata": {"name": "b"}}) is True
    assert kube.writes() == ["create pods/a", "create pods/b", "create pods/b"]


async def test_fake_dask_retires_by_its_rule_and_answers_like_the_scheduler():
    dask = FakeDask(["w-0", "w-1", "w-2"], choose=prefer("w-2"))
    address = dask.registered["w-2"]
    report = await dask.retire("http://s", 2)
    assert [info["name"] for info in report.values()] == ["w-2", "w-0"]
    assert report[address]["name"] == "w-2"
    assert await dask.workers("http://s") == {"w-1": dask.registered["w-1"]}
    dask.retire_limit = 0
    assert await dask.retire("http://s", 1) == {}
    assert dask.methods() == ["retire(2)", "workers", "retire(1)"]


# ---------------------------------------------------------------- transport failures


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize("verb, call", [
    pytest.param("GET", lambda k: k.get("v1", "pods", "ns", "p"), id="get"),
    pytest.param("POST", lambda k: k.create("v1", "pods", "ns", POD), id="create"),
    pytest.param("DELETE", lambda k: k.delete("v1", "pods", "ns", "p"), id="delete"),
])
async def test_unreachable_api_raises_kube_api_error_with_code_0(verb, call):
    before = errors_total(verb, "transport")
    with pytest.raises(KubeApiError) as raised:
        await call(kube_for(Server(_refuse)))
    assert raised.value.code == 0 and "ConnectError" in str(raised.value)
    assert errors_total(verb, "transport") == before + 1


def test_httpcore_detects_asyncio_through_sniffio_not_a_failed_import():
    import importlib.util
    import sys

    import httpcore._synchronization as sync

    assert importlib.util.find_spec("sniffio") is not None, "sniffio is a dependency (see pyproject.toml)"

    async def detect() -> bool:
        sys.modules.pop("sniffio", None)
        sync.current_async_library()
        return "sniffio" in sys.modules

    assert asyncio.run(detect()), "httpcore found no sniffio: every request would search sys.path for it"

