"""One small world for the HTTP API's route tests, and a client that checks every answer.

The world: namespace `ns` (the server's default); backends for daskclusters
(`dask`) and rayclusters (`ray`); sparkclusters configured but missing (501);
the real `Authenticator` over `FakeReviews` and a keys Secret; three tiers.

Callers (tokens and keys):
| who | credential | user id | admin |
|---|---|---|---|
| owner | `owner-token` | u-owner | no |
| stranger | `stranger-token` | u-stranger | no |
| group admin | `group-admin-token` | u-boss | by group `scaler-admins` |
| SAR admin | `sar-admin-token` | u-ops | by SubjectAccessReview |
| wrong audience | `other-audience-token` | (rejected) | |
| owner's key | `OWNER_KEY` | u-owner | no |

`Client.call` sends one request and returns (status, body, headers) after
checking: JSON, `Cache-Control: no-store`, the body valid for the route and
status in the OpenAPI document, and no credential anywhere in the answer.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json

import yaml
from aiohttp.test_utils import TestClient, TestServer
from api_fakes import FakeBackend, FakeReviews, check_response, review

from dask_operator.api import openapi
from dask_operator.api.app import build_app
from dask_operator.api.auth import Authenticator, KeyStore
from dask_operator.api.service import ScalerService, Settings
from dask_operator.backends.registry import Registry
from dask_operator.api.tiers import StaticTiers, parse_tiers

AUDIENCE = "ddl-cluster-scaler"
NOW = dt.datetime(2025, 9, 2, 15, 40, 0, 500000, tzinfo=dt.timezone.utc)
OWNER_KEY = "key-of-the-owner-0123456789"
ADMIN_KEY = "key-of-an-admin-0123456789"
TOKENS = {
    "owner-token": review("system:serviceaccount:team:owner", "u-owner", audiences=(AUDIENCE,)),
    "stranger-token": review("system:serviceaccount:team:stranger", "u-stranger", audiences=(AUDIENCE,)),
    "group-admin-token": review("boss", "u-boss", groups=("scaler-admins",), audiences=(AUDIENCE,)),
    "sar-admin-token": review("system:serviceaccount:ops:sar-admin", "u-ops", audiences=(AUDIENCE,)),
    "other-audience-token": review("system:serviceaccount:team:owner", "u-owner", audiences=("other",)),
}
TIERS = """
tiers:
  - {id: small-k8s, name: Small, resources: {requests: {cpu: "1", memory: 2Gi}, limits: {memory: 2Gi}}}
  - {id: medium-k8s, name: Medium, resources: {requests: {cpu: "2", memory: 8Gi}, limits: {memory: 8Gi}}}
  - id: gpu-k8s
    name: GPU
    resources: {requests: {cpu: "4", memory: 16Gi}, limits: {memory: 16Gi}}
    gpus: 1
    nodeSelector: {pool: gpu}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    kinds: [rayclusters]
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SecretKube:
    """`Kube.get` over a few objects; counts reads."""

    def __init__(self, objects: dict) -> None:
        self.objects, self.reads = objects, 0

    async def get(self, version, plural, namespace, name):
        self.reads += 1
        return self.objects.get((plural, namespace, name))


def keys_secret(entries: list[dict]) -> dict:
    return {"data": {"keys.yaml": base64.b64encode(yaml.safe_dump(entries).encode()).decode()}}


class World:
    def __init__(self) -> None:
        self.dask = FakeBackend()
        self.ray = FakeBackend("kuberay", "rayclusters", "ray.io/v1", "rayclusters")
        self.reviews = FakeReviews(TOKENS, {"system:serviceaccount:ops:sar-admin"})
        self.kube = SecretKube({("secrets", "ops", "keys"): keys_secret([
            {"sha256": sha(OWNER_KEY), "user": "u-owner", "groups": []},
            {"sha256": sha(ADMIN_KEY), "user": "u-keyadmin", "groups": ["scaler-admins"]}])})
        self.tiers = StaticTiers(parse_tiers({"tiers.yaml": TIERS}))
        self.settings = Settings(namespace="ns")
        self.missing = {"sparkclusters": "dco-spark"}

    def app(self):
        kinds = Registry({"daskclusters": self.dask, "rayclusters": self.ray}, self.missing)
        auth = Authenticator(self.reviews, KeyStore(self.kube, "ops", "keys"), admin_groups=["scaler-admins"],
                             audiences=[AUDIENCE])
        return build_app(ScalerService(kinds, auth, self.tiers, self.settings, now=lambda: NOW), auth)

    def writes(self) -> list[tuple]:
        return self.dask.writes + self.ray.writes


class Client:
    def __init__(self, http: TestClient) -> None:
        self.http = http
        self.doc = openapi.document()

    async def call(self, method: str, path: str, *, token: str | None = None, key: str | None = None,
                   headers: dict | None = None, body: object = None, raw_body: str | None = None):
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if key is not None:
            sent["X-Domino-Api-Key"] = key
        data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        async with self.http.request(method, path, headers=sent, data=data) as r:
            text = await r.text()
            assert r.headers["Cache-Control"] == "no-store", path
            assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
            answer = json.loads(text)
            for secret in (token, key):
                assert not secret or len(secret) < 4 or secret not in text, "a credential leaked into the answer"
            if r.status not in (404, 405) or "error" not in answer or answer["error"] not in (
                    "not_found", "method_not_allowed") or "no route" not in answer["message"]:
                check_response(self.doc, method, r.url.path, r.status, answer)
            return r.status, answer, r.headers


@contextlib.asynccontextmanager
async def serve(world: World):
    http = TestClient(TestServer(world.app()))
    await http.start_server()
    try:
        yield Client(http)
    finally:
        await http.close()
