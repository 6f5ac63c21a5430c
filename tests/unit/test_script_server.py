"""The startup-script server's HTTP edge against its OpenAPI document.

The real app and `ScriptIssuer` over stand-ins: reviews as a table
(`api_fakes.FakeReviews`), Secrets in a dict, and a Verda that records
uploads. Checked: the document lists exactly the routes the app serves; every
answer is valid for its route and status in the document; the request schema
accepts exactly what the server accepts (one row per rule).
"""

from __future__ import annotations

import base64
import contextlib
import json

import jsonschema_rs
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_fakes import FakeReviews, check_response, review

from dask_operator.api.auth import Authenticator
from dask_operator.core import startup_scripts as ss
from dask_operator.errors import StartupScriptError, VerdaError
from dask_operator.nodes import script_openapi
from dask_operator.nodes.script_server import MAX_BODY_BYTES, ScriptIssuer, build_app

DOC = script_openapi.document()
GOOD = {"script_name": "autoscaler-startup-script-gpu-1", "hostname": "gpu-1", "node_group": "spot",
        "instance_type": "8H100.80S.176V", "location": "FIN-01"}
TOKENS = {"provider-token": review("system:serviceaccount:verda-nodes:verda-provider"),
          "stranger-token": review("stranger")}


class Secrets:
    async def get(self, api_version, plural, namespace, name):
        return {"data": {"join-token": base64.b64encode(b"join-123").decode()}} if name == "s" else None


class Cloud:
    def __init__(self) -> None:
        self.uploaded: list[tuple[str, str]] = []
        self.fail: BaseException | None = None

    def create_script(self, name: str, script: str) -> str:
        if self.fail:
            raise self.fail
        self.uploaded.append((name, script))
        return f"script-{len(self.uploaded)}"

    def scripts(self) -> list:
        return []

    def instances(self) -> list:
        return []


@contextlib.asynccontextmanager
async def serve(cloud: Cloud | None = None):
    template = ss.parse_template("#!/bin/sh\necho {{ .HOSTNAME }} {{ .JOIN_TOKEN }}\n")
    issuer = ScriptIssuer(template, {}, {"JOIN_TOKEN": ("s", "join-token")}, "verda-nodes", Secrets(),
                          cloud or Cloud())
    reviews = FakeReviews(TOKENS, scale_admins={"system:serviceaccount:verda-nodes:verda-provider"})
    http = TestClient(TestServer(build_app(issuer, Authenticator(reviews), reap_interval=3600)))
    await http.start_server()
    try:
        yield http
    finally:
        await http.close()


async def call(http: TestClient, method: str, path: str, token: str | None = None, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, path, headers=headers, data=raw) as r:
        text = await r.text()
        if r.status == 200 and path == "/script":
            assert r.content_type in DOC["paths"]["/script"]["post"]["responses"]["200"]["content"]
            return r.status, text
        check_response(DOC, method, path, r.status, json.loads(text))
        return r.status, json.loads(text)


def _request_documented(body) -> bool:
    schema = {**DOC["components"]["schemas"]["ScriptRequest"], "components": DOC["components"]}
    return jsonschema_rs.validator_for(schema).is_valid(body)


def _request_served(body) -> bool:
    try:
        ss.parse_request(json.dumps(body).encode())
    except StartupScriptError:
        return False
    return True


async def test_the_document_lists_exactly_the_routes_served() -> None:
    async with serve() as http:
        served = {(r.method, r.resource.canonical) for r in http.server.app.router.routes() if r.method != "HEAD"}
        status, doc = await call(http, "GET", "/openapi.json")
    documented = {(m.upper(), p) for p, ops in DOC["paths"].items() for m in ops}
    assert served == documented == {("POST", "/script"), ("GET", "/healthz"), ("GET", "/openapi.json")}
    assert status == 200 and doc == DOC


@pytest.mark.parametrize("token, raw, status, title", [
    ("provider-token", json.dumps(GOOD).encode(), 200, None),
    (None, json.dumps(GOOD).encode(), 401, "Unauthenticated"),
    ("nobody-token", json.dumps(GOOD).encode(), 401, "Unauthenticated"),
    ("stranger-token", json.dumps(GOOD).encode(), 403, "Forbidden"),
    ("provider-token", b"\xff", 400, "Invalid request"),
    ("provider-token", b"[]", 400, "Invalid request"),
    ("provider-token", json.dumps({**GOOD, "extra": 1}).encode(), 400, "Invalid request"),
    ("provider-token", b"{" + b" " * MAX_BODY_BYTES + b"}", 400, "Invalid request"),
], ids=["ok", "anonymous", "unknown-token", "not-allowed", "not-utf8", "not-an-object", "unknown-field", "too-big"])
async def test_answers_are_documented(token, raw, status: int, title: str | None) -> None:
    async with serve() as http:
        got, body = await call(http, "POST", "/script", token, raw)
    assert got == status
    assert body == "script-1" if status == 200 else body["error"] == title


async def test_healthz() -> None:
    async with serve() as http:
        assert await call(http, "GET", "/healthz") == (200, {"status": "ok"})


async def test_verda_refusing_is_the_documented_502() -> None:
    cloud = Cloud()
    cloud.fail = VerdaError("quota", "no more scripts")
    async with serve(cloud) as http:
        status, body = await call(http, "POST", "/script", "provider-token", json.dumps(GOOD).encode())
    assert (status, body["error"]) == (502, "Verda refused the script")


@pytest.mark.parametrize("change", [
    {}, {"script_name": "autoscaler-startup-script-a"}, {"script_name": "startup-script-gpu-1"},
    {"script_name": "autoscaler-startup-script-Gpu"}, {"script_name": "autoscaler-startup-script-gpu-1\n"},
    {"hostname": "gpu-1-"}, {"hostname": "a" * 64}, {"hostname": "a" * 63}, {"node_group": "Spot"},
    {"node_group": ""}, {"instance_type": "1A100.22V"}, {"instance_type": ".x"}, {"instance_type": "x" * 64},
    {"location": "FIN_01"}, {"location": "FIN 01"}, {"location": None}, {"location": 1}, {"extra": "x"},
])
def test_the_request_schema_accepts_what_the_server_accepts(change: dict) -> None:
    body = {**GOOD, **change}
    assert _request_documented(body) is _request_served(body)


def test_every_field_is_required() -> None:
    for field in ss.REQUEST_FIELDS:
        body = {k: v for k, v in GOOD.items() if k != field}
        assert not _request_documented(body) and not _request_served(body)
