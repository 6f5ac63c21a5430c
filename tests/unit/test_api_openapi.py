"""The OpenAPI document says what the server does, request side: one test per
disagreement schemathesis found (tests/e2e/test_api_schema.py), each checked
both ways, against the document (jsonschema) and against the server.

- a body that is not UTF-8 was a 500 (`scale_failed`): now 400;
- `replicas: 3.0` is an integer for JSON Schema but was refused: now 3;
- names, namespaces and `raw` were any string in the document, while the
  server refuses what is not DNS-1123 or a flag: the document now carries the
  server's own patterns, and the server matches them whole (a trailing
  newline passed `re.match(...$)`; whitespace around a flag was stripped);
- `worker_group: ""` is refused and `null` means absent: the document says so;
- head-hw-tier needs one non-empty tier field: the document says so.
"""

from __future__ import annotations

import jsonschema_rs
import pytest
from api_world import World, serve

from dask_operator.api import openapi, views
from dask_operator.api.errors import BadRequest

OWNER = "owner-token"
DOC = openapi.document()


def _param(path: str, method: str, name: str) -> dict:
    return next(p for p in DOC["paths"][path][method]["parameters"] if p["name"] == name)["schema"]


def _schema(name: str) -> dict:
    return {**DOC["components"]["schemas"][name], "components": DOC["components"]}


def _documented(schema: dict, value) -> bool:
    """Valid for the document, read as JSON Schema reads patterns (ECMA-262: `$` is the end of the text;
    Python's `jsonschema` would let `$` match before a trailing newline). schemathesis validates so too."""
    return jsonschema_rs.validator_for(schema).is_valid(value)


def _served(check, value) -> bool:
    try:
        check(value)
    except BadRequest:
        return False
    return True


@pytest.fixture
def world() -> World:
    w = World()
    w.dask.add("ns", "mine", owner="u-owner", replicas=1, ready=1)
    return w


async def test_a_body_that_is_not_utf8_is_400_not_500(world: World) -> None:
    async with serve(world) as api:
        status, answer, _ = await api.call("POST", "/cluster/scale/daskclusters/mine", token=OWNER,
                                           raw_body=b'{"replicas": "\xff\xfe"}')
        assert (status, answer["error"]) == (400, "bad_request"), answer
        status, answer, _ = await api.call("PATCH", "/ddl_cluster_scaler/head-hw-tier/daskclusters/mine",
                                           token=OWNER, raw_body=b"\xf6\x00")
        assert (status, answer["error"]) == (400, "bad_request"), answer
    assert world.writes() == []


@pytest.mark.parametrize("replicas, sent", [(3.0, 3), (0.0, 0), (2.5, None), (-1.0, None), (float("inf"), None)])
def test_replicas_with_a_zero_fraction_is_that_integer(replicas: float, sent: int | None) -> None:
    assert _documented(_schema("ScaleRequest"), {"replicas": replicas}) is (sent is not None)
    assert _served(views.parse_replicas, {"replicas": replicas}) is (sent is not None)
    if sent is not None:
        assert views.parse_replicas({"replicas": replicas}) == sent
        assert type(views.parse_replicas({"replicas": replicas})) is int


async def test_scale_with_replicas_as_a_float_integer(world: World) -> None:
    async with serve(world) as api:
        status, answer, _ = await api.call("POST", "/cluster/scale/daskclusters/mine", token=OWNER,
                                           raw_body='{"replicas": 2.0}')
    assert status == 200 and answer["replicas"] == 2, answer
    assert world.writes() == [("scale", "ns", "mine", 2, None)]


NAMES = ["mine", "a", "a.b-c", "x" * 253, "x" * 254, "", "Mine", "-a", "a-", "a_b", "mine\n", "\nmine", "mï"]
NAMESPACES = ["ns", "a-1", "x" * 63, "x" * 64, "a.b", "NS", "ns\n", "-ns"]
FLAGS = ["", "true", "TRUE", "True", "1", "yes", "YES", "false", "0", "no", "No", " true", "true ", "true\n",
         "maybe", "2", "t"]


@pytest.mark.parametrize("name", NAMES)
def test_a_cluster_name_is_documented_as_the_server_checks_it(name: str) -> None:
    schema = _param("/cluster/{kind}/{name}", "get", "name")
    assert _documented(schema, name) is _served(views.check_name, name)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_namespace_is_documented_as_the_server_checks_it(namespace: str) -> None:
    schema = _param("/cluster/{kind}/{name}", "get", "namespace")
    assert _documented(schema, namespace) is _served(views.check_namespace, namespace)


def test_an_empty_namespace_is_the_default_and_documented() -> None:
    assert _documented(_param("/ddl_cluster_scaler_api/list/{kind}", "get", "namespace"), "")


@pytest.mark.parametrize("flag", FLAGS)
def test_a_flag_is_documented_as_the_server_parses_it(flag: str) -> None:
    schema = _param("/cluster/{kind}/{name}", "get", "raw")
    assert _documented(schema, flag) is _served(lambda v: views.parse_flag(v, "raw"), flag)


async def test_names_with_a_trailing_newline_are_refused(world: World) -> None:
    async with serve(world) as api:
        status, answer, _ = await api.call("GET", "/cluster/daskclusters/mine%0A", token=OWNER)
        assert (status, answer["error"]) == (400, "bad_request"), answer
        status, answer, _ = await api.call("GET", "/cluster/daskclusters/mine?namespace=ns%0A", token=OWNER)
        assert (status, answer["error"]) == (400, "bad_request"), answer


@pytest.mark.parametrize("group, accepted", [("workers", True), (None, True), ("", False), (3, False)])
def test_worker_group_is_documented_as_the_server_reads_it(group, accepted: bool) -> None:
    body = {"replicas": 1, "worker_group": group}
    assert _documented(_schema("ScaleRequest"), body) is accepted
    assert _served(views.worker_group, body) is accepted


@pytest.mark.parametrize("body, accepted", [
    ({"head_hw_tier_name": "Small"}, True), ({"head_hw_tier_id": "small-k8s", "head_hw_tier": None}, True),
    ({}, False), ({"head_hw_tier_name": "", "head_hw_tier": None}, False), ({"other": "Small"}, False)])
def test_head_tier_request_needs_one_tier_field(body: dict, accepted: bool) -> None:
    assert _documented(_schema("HeadTierRequest"), body) is accepted
    assert bool(views.tier_fields(body, "head")) is accepted
