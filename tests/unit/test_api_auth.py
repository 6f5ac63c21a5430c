"""Authentication and authorization decisions: the matrix through the routes,
then the pure parts (credential parsing, review answers, the cache, API keys)."""

from __future__ import annotations

import base64
import contextlib

import pytest
from api_fakes import FakeReviews, review
from api_world import ADMIN_KEY, AUDIENCE, OWNER_KEY, SecretKube, World, keys_secret, serve, sha

from dask_operator.api.auth import Authenticator, Identity, KeyStore, TTLCache, credential, identity_from_review
from dask_operator.api.auth import parse_keys
from dask_operator.api.errors import AuthUnavailable, Unauthenticated
from dask_operator.api.reviews import KubeReviews
from dask_operator.errors import ScalingError

GET, SCALE = "/cluster/daskclusters/mine", "/cluster/scale/daskclusters/mine"


@pytest.fixture
def world() -> World:
    w = World()
    w.dask.add("ns", "mine", owner="u-owner")
    return w


@pytest.mark.parametrize("headers, get_status, scale_status", [
    pytest.param({}, 401, 401, id="no-credentials"),
    pytest.param({"Authorization": "Basic dXNlcjpwdw=="}, 401, 401, id="not-bearer"),
    pytest.param({"Authorization": "Bearer "}, 401, 401, id="empty-token"),
    pytest.param({"Authorization": "Bearer not-a-token"}, 401, 401, id="malformed-token"),
    pytest.param({"Authorization": "Bearer other-audience-token"}, 401, 401, id="wrong-audience"),
    pytest.param({"Authorization": "Bearer owner-token", "X-Domino-Api-Key": OWNER_KEY}, 401, 401, id="two"),
    pytest.param({"Authorization": "Bearer stranger-token"}, 403, 403, id="non-owner"),
    pytest.param({"Authorization": "Bearer owner-token"}, 200, 200, id="owner"),
    pytest.param({"Authorization": "bearer owner-token"}, 200, 200, id="scheme-any-case"),
    pytest.param({"Authorization": "Bearer group-admin-token"}, 200, 200, id="admin-by-group"),
    pytest.param({"Authorization": "Bearer sar-admin-token"}, 200, 200, id="admin-by-sar"),
    pytest.param({"X-Domino-Api-Key": OWNER_KEY}, 200, 200, id="owner-api-key"),
    pytest.param({"X-Api-Key": OWNER_KEY}, 200, 200, id="owner-x-api-key"),
    pytest.param({"X-Domino-Api-Key": ADMIN_KEY}, 200, 200, id="admin-api-key"),
    pytest.param({"X-Domino-Api-Key": "not-a-key-at-all"}, 401, 401, id="unknown-api-key"),
])
async def test_auth_matrix(world: World, headers: dict, get_status: int, scale_status: int) -> None:
    async with serve(world) as api:
        status, body, got = await api.call("GET", GET, headers=headers)
        assert status == get_status, body
        status, body, got = await api.call("POST", SCALE, headers=headers, body={"replicas": 4})
        assert status == scale_status, body
    if scale_status == 401:
        assert body["error"] == "unauthenticated" and got["WWW-Authenticate"].startswith("Bearer")
    if scale_status != 200:
        assert world.writes() == []
    else:
        assert world.writes() == [("scale", "ns", "mine", 4, None)]


async def test_401_comes_before_every_other_error(world: World) -> None:
    async with serve(world) as api:
        for path in ("/cluster/pods/x", "/cluster/daskclusters/absent", "/ddl_cluster_scaler_api/list/pods"):
            assert (await api.call("GET", path))[0] == 401


async def test_reviews_are_cached_and_failures_are_503_not_cached(world: World) -> None:
    async with serve(world) as api:
        for _ in range(3):
            assert (await api.call("GET", GET, token="sar-admin-token"))[0] == 200
        assert [c[0] for c in world.reviews.calls] == ["token", "access"]
        assert world.reviews.calls[0] == ("token", (AUDIENCE,))
        assert world.reviews.calls[1][2] == {"group": "dask.charmtx.com", "resource": "clusters",
                                             "subresource": "scale", "verb": "update"}
        world.reviews.fail = AuthUnavailable("the tokenreviews API could not be reached", "ConnectError: refused")
        status, body, _ = await api.call("GET", GET, token="owner-token")
        assert (status, body["error"]) == (503, "auth_unavailable")
        world.reviews.fail = None
        assert (await api.call("GET", GET, token="owner-token"))[0] == 200


async def test_credentials_are_redacted_from_error_details(world: World) -> None:
    world.dask.fail["scale"] = ScalingError("echo: Bearer owner-token and key " + OWNER_KEY)
    async with serve(world) as api:  # Client.call asserts the credential is absent from the answer
        status, body, _ = await api.call("POST", SCALE, token="owner-token", body={"replicas": 1})
        assert status == 500 and "[redacted]" in body["details"]
        status, body, _ = await api.call("POST", SCALE, key=OWNER_KEY, body={"replicas": 1})
        assert status == 500 and OWNER_KEY not in body["details"]


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("headers, scheme", [
    ({"Authorization": "Bearer abc.def"}, "bearer"), ({"X-Domino-Api-Key": "k123"}, "api-key"),
    ({"X-Api-Key": " k123 "}, "api-key")])
def test_credential_accepted(headers: dict, scheme: str) -> None:
    assert credential(headers).scheme == scheme


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Token abc"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer a b"},
    {"Authorization": "Bearer " + "x" * 20000}, {"X-Api-Key": ""}, {"X-Api-Key": "a", "X-Domino-Api-Key": "b"}],
    ids=["none", "scheme", "no-token", "space", "huge", "empty-key", "two-keys"])
def test_credential_refused_without_echoing_it(headers: dict) -> None:
    with pytest.raises(Unauthenticated) as e:
        credential(headers)
    assert not any(v and len(v) > 6 and v.split()[-1] in str(e.value) for v in headers.values())


def test_credential_repr_hides_the_secret() -> None:
    assert "s3cret" not in repr(credential({"Authorization": "Bearer s3cret"}))


@pytest.mark.parametrize("status, audiences, user_id", [
    pytest.param(review("alice", "uid-1"), (), "uid-1", id="uid"),
    pytest.param(review("alice"), (), "alice", id="username-without-uid"),
    pytest.param({"authenticated": False}, (), None, id="rejected"),
    pytest.param(review("alice", "u", audiences=("x",)), ("api",), None, id="audience-mismatch"),
    pytest.param(review("alice", "u", audiences=("x", "api")), ("api",), "u", id="audience-match"),
    pytest.param({"authenticated": True, "user": {}}, (), None, id="no-username"),
])
def test_identity_from_review(status: dict, audiences: tuple, user_id: str | None) -> None:
    who = identity_from_review(status, audiences)
    assert (who.user_id if who else None) == user_id


def test_ttl_cache_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache = TTLCache(size=2, ttl=10, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert (cache.get("b"), cache.get("a"), len(cache)) == (None, 1, 2)
    now[0] = 10.0
    assert cache.get("a") is None and cache.get("c", "gone") == "gone"


async def test_token_cache_is_keyed_by_digest_not_token() -> None:
    auth = Authenticator(FakeReviews({"tok-123456": review("a", "u")}))
    await auth.authenticate({"Authorization": "Bearer tok-123456"})
    assert "tok-123456" not in repr(list(auth._tokens._items))


async def test_admin_group_needs_no_access_review() -> None:
    reviews = FakeReviews()
    auth = Authenticator(reviews, admin_groups=["admins"])
    assert await auth.is_admin(Identity("bob", groups=("admins",)), "ray.io", "rayclusters")
    assert not await auth.is_admin(Identity("eve"), "ray.io", "rayclusters")
    assert [c[0] for c in reviews.calls] == ["access"]


def _encoded(text: str) -> dict:
    return {"keys.yaml": base64.b64encode(text.encode()).decode()}


@pytest.mark.parametrize("text, error", [
    pytest.param("- {sha256: abc, user: u}", "64 hex", id="short-hash"),
    pytest.param(f"- {{sha256: {'z' * 64}, user: u}}", "64 hex", id="not-hex"),
    pytest.param(f"- {{sha256: {'a' * 64}}}", "user", id="no-user"),
    pytest.param(f"- {{sha256: {'a' * 64}, user: u, groups: x}}", "groups", id="groups-not-list"),
    pytest.param("{a: 1}", "a list", id="not-a-list"),
])
def test_parse_keys_refuses(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_keys(_encoded(text))


def test_parse_keys_accepts_hash_prefix() -> None:
    keys = parse_keys(_encoded(f"- {{hash: 'sha256:{'A' * 64}', user: u, groups: [g]}}"))
    assert keys == {"a" * 64: Identity("u", groups=("g",), via="api-key")}


async def test_key_store_rereads_after_ttl_and_reports_bad_secrets() -> None:
    now = [0.0]
    kube = SecretKube({("secrets", "ops", "keys"): keys_secret([{"sha256": sha("k1"), "user": "u1"}])})
    store = KeyStore(kube, "ops", "keys", ttl=30, clock=lambda: now[0])
    assert (await store.lookup(sha("k1"))).user_id == "u1"
    assert await store.lookup(sha("k2")) is None and kube.reads == 1
    kube.objects[("secrets", "ops", "keys")] = {"data": _encoded("- nonsense")}
    now[0] = 31
    with pytest.raises(AuthUnavailable):
        await store.lookup(sha("k1"))
    assert await KeyStore(kube, None, None).lookup(sha("k1")) is None


class FakeKr8s:
    """`call_api` of a kr8s Api: records the body, answers `answer` or raises `error`."""

    def __init__(self, answer: dict | None = None, error: Exception | None = None) -> None:
        self.answer, self.error, self.sent = answer, error, []

    @contextlib.asynccontextmanager
    async def call_api(self, method, version, base, url, **kwargs):
        import json

        import httpx

        self.sent.append((method, f"{base}/{version}/{url}", json.loads(kwargs["content"])))
        if self.error:
            raise self.error
        yield httpx.Response(201, json=self.answer)


async def test_kube_reviews_send_the_review_and_read_its_status() -> None:
    api = FakeKr8s({"status": {"authenticated": True, "user": {"username": "a"}}})
    status = await KubeReviews(api).token_review("tok-abcdef", ["aud"])
    assert status["authenticated"] is True
    assert api.sent == [("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": "tok-abcdef", "audiences": ["aud"]}})]
    api = FakeKr8s({"status": {"allowed": True}})
    assert await KubeReviews(api).access_review("u", ["g"], "uid", {}, {"verb": "update"})
    assert api.sent[0][2]["spec"] == {"user": "u", "groups": ["g"], "uid": "uid",
                                      "resourceAttributes": {"verb": "update"}}


async def test_kube_reviews_failures_are_auth_unavailable() -> None:
    import httpx

    with pytest.raises(AuthUnavailable) as e:
        await KubeReviews(FakeKr8s(error=httpx.ConnectError("refused"))).token_review("tok-abcdef")
    assert "tok-abcdef" not in str(e.value) + str(e.value.details)
    with pytest.raises(AuthUnavailable):
        await KubeReviews(FakeKr8s({"kind": "Status"})).token_review("tok-abcdef")


async def test_unexpected_errors_are_logged_without_the_credential(world: World, caplog) -> None:
    world.dask.fail["get"] = RuntimeError("a bug that echoes owner-token")
    async with serve(world) as api:
        status, body, _ = await api.call("GET", GET, token="owner-token")
    assert status == 500 and body["error"] == "get_failed"
    assert "Traceback" in caplog.text and "owner-token" not in caplog.text
