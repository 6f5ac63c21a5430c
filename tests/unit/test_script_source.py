"""nodes.script_source: the provider's request to the startup-script server and its one error type.

The server's side is proven on the sandbox (tests/e2e/test_verda_autoscaler.py);
here an httpx.MockTransport answers, to pin down how each answer maps.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dask_operator.core.startup_scripts import ScriptRequest
from dask_operator.errors import NodeGroupConfigError, NodeGroupError
from dask_operator.nodes import script_source
from dask_operator.nodes.script_source import SCRIPT_UNAVAILABLE, ScriptSource
from dask_operator.nodes.servicer import STATUS

URL = "http://scripts.test:8080/script"
REQUEST = ScriptRequest("autoscaler-startup-script-g-1", "g-1", "g", "1A100.22V", "FIN-01")
TOKEN = "token-abc.def"


def source(tmp_path: Path, answer, token: str | None = TOKEN) -> tuple[ScriptSource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    path = tmp_path / "token"
    if token is not None:
        path.write_text(token + "\n")
    return ScriptSource(URL, path, http=httpx.Client(transport=httpx.MockTransport(handle))), seen


def test_posts_the_instance_names_with_the_token_and_returns_the_id(tmp_path):
    src, seen = source(tmp_path, httpx.Response(200, text="6f1c-uuid\n"))
    assert src.fetch(REQUEST) == "6f1c-uuid"
    (request,) = seen
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == REQUEST.body()


def test_the_token_file_is_read_at_each_call(tmp_path):
    src, seen = source(tmp_path, httpx.Response(200, text="id"))
    src.fetch(REQUEST)
    (tmp_path / "token").write_text("rotated")
    src.fetch(REQUEST)
    assert [r.headers["Authorization"] for r in seen] == [f"Bearer {TOKEN}", "Bearer rotated"]


@pytest.mark.parametrize("answer, message", [
    pytest.param(httpx.Response(403, json={"error": "Forbidden", "details": "x may not"}), "HTTP 403: ",
                 id="refused"),
    pytest.param(httpx.Response(503, json={"error": "Secret unavailable"}), "HTTP 503: ", id="unavailable"),
    pytest.param(httpx.Response(200, text="<html>"), "the answer is not a script id", id="not-an-id"),
    pytest.param(httpx.Response(200, text=""), "the answer is not a script id", id="empty"),
    pytest.param(httpx.ConnectError("refused"), "ConnectError: refused", id="unreachable"),
    pytest.param(httpx.ReadTimeout("slow"), "ReadTimeout: slow", id="timeout"),
])
def test_every_failure_is_one_error_kind_the_autoscaler_backs_off_on(tmp_path, answer, message):
    src, _ = source(tmp_path, answer)
    with pytest.raises(NodeGroupError) as e:
        src.fetch(REQUEST)
    assert e.value.kind == SCRIPT_UNAVAILABLE and message in str(e.value)
    assert TOKEN not in str(e.value)
    assert STATUS[SCRIPT_UNAVAILABLE].name == "UNAVAILABLE"


def test_a_missing_token_file_is_that_error_naming_the_file(tmp_path):
    src, seen = source(tmp_path, httpx.Response(200, text="id"), token=None)
    with pytest.raises(NodeGroupError, match="cannot read the token .*token: No such file"):
        src.fetch(REQUEST)
    assert seen == []


@pytest.mark.parametrize("env, expected", [
    pytest.param({}, None, id="unset"),
    pytest.param({"DATACRUNCH_STARTUP_SCRIPT_FETCH_URL": URL}, (URL, script_source.SERVICE_ACCOUNT_TOKEN),
                 id="seed-name"),
    pytest.param({"VERDA_STARTUP_SCRIPT_FETCH_URL": URL, "VERDA_STARTUP_SCRIPT_TOKEN_FILE": "/t"}, (URL, Path("/t")),
                 id="verda-names"),
    pytest.param({"DATACRUNCH_STARTUP_SCRIPT_FETCH_URL": URL, "VERDA_STARTUP_SCRIPT_FETCH_URL": URL}, (URL, None),
                 id="both-alike"),
])
def test_from_env(env, expected):
    found = script_source.from_env(env)
    if expected is None:
        assert found is None
    else:
        assert found.url == expected[0]
        if expected[1] is not None:
            assert found.token_file == expected[1]


@pytest.mark.parametrize("env, field", [
    pytest.param({"DATACRUNCH_STARTUP_SCRIPT_FETCH_URL": "a", "VERDA_STARTUP_SCRIPT_FETCH_URL": "b"},
                 "DATACRUNCH_STARTUP_SCRIPT_FETCH_URL and VERDA_STARTUP_SCRIPT_FETCH_URL", id="conflict"),
    pytest.param({"DATACRUNCH_STARTUP_SCRIPT_FETCH_URL": "scripts:8080"}, "DATACRUNCH_STARTUP_SCRIPT_FETCH_URL",
                 id="not-a-url"),
])
def test_bad_configuration_names_the_variable(env, field):
    with pytest.raises(NodeGroupConfigError) as e:
        script_source.from_env(env)
    assert e.value.field == field
