"""`dask-operator scaler` (`dask_operator/client_cli.py`) against the real API app over loopback HTTP.

Each test builds its own parser with `add_arguments` and calls `main`, as
`dask_operator/cli.py` does; the server and its worlds are test_client.py's.
"""

from __future__ import annotations

import argparse
import io
import json
import re
from collections.abc import Iterator

import pytest
from api_world import World
from test_client import configure, converging_world, populate, serving, without_variables

from dask_operator.client_cli import ProgressLine, add_arguments, main


def scaler(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dask-operator scaler")
    add_arguments(parser)
    return main(parser.parse_args(list(argv)))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return without_variables(monkeypatch)


@pytest.fixture
def world() -> World:
    return populate(World())


@pytest.fixture
def converging() -> World:
    return converging_world()


@pytest.fixture
def api(world: World, clean_env: pytest.MonkeyPatch) -> Iterator[str]:
    with serving(world.app()) as url:
        configure(clean_env, url, DOMINO_TOKEN="owner-token")
        yield url


@pytest.fixture
def converging_api(converging: World, clean_env: pytest.MonkeyPatch) -> Iterator[str]:
    with serving(converging.app()) as url:
        configure(clean_env, url, DOMINO_TOKEN="owner-token")
        yield url


def test_list_prints_the_servers_answer(api: str, capsys: pytest.CaptureFixture) -> None:
    assert scaler("list", "daskclusters") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["count"] == 1 and body["clusters"][0]["metadata"]["name"] == "dask-run1"


@pytest.mark.parametrize("argv, namespace, name", [
    pytest.param(["get", "daskclusters"], "ns", "dask-run1", id="the-runs-cluster"),
    pytest.param(["get", "daskclusters", "--name", "dask-run1"], "ns", "dask-run1", id="by-name"),
    pytest.param(["--namespace", "other", "get", "daskclusters"], "other", "dask-run1", id="namespace-flag"),
    pytest.param(["get", "rayclusters"], "ns", "ray-run1", id="another-kind"),
])
def test_get(api: str, capsys: pytest.CaptureFixture, argv: list[str], namespace: str, name: str) -> None:
    assert scaler(*argv) == 0
    meta = json.loads(capsys.readouterr().out)["metadata"]
    assert (meta["namespace"], meta["name"]) == (namespace, name)


def test_url_flag_overrides_the_environment(api: str, clean_env: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    clean_env.setenv("CLUSTER_SCALER_BASE_URL", "http://127.0.0.1:9/nowhere")
    assert scaler("--url", api + "/", "get", "daskclusters") == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["name"] == "dask-run1"


def test_scale_waits_with_a_progress_line(converging_api: str, converging: World,
                                          capsys: pytest.CaptureFixture) -> None:
    assert scaler("scale", "daskclusters", "4", "--tier", "Small", "--timeout", "30", "--interval", "0.01") == 0
    out, err = capsys.readouterr()
    answer = json.loads(out)
    assert (answer["replicas"], answer["worker_hw_tier"]["name"]) == (4, "Small")
    assert [re.sub(r" \(\d+s\)$", "", line) for line in err.splitlines()] == [
        "daskclusters/dask-run1: 2 of 4 workers, 2 Ready, head Ready",  # the scale's answer brought one up
        "daskclusters/dask-run1: 3 of 4 workers, 3 Ready, head Ready",
        "daskclusters/dask-run1: scaled: 4 of 4 workers, 4 Ready, head Ready",
    ], "not a terminal: one line per new state"
    assert converging.dask.statuses[("ns", "dask-run1")]["ready_workers"] == 4


def test_scale_no_wait(api: str, world: World, capsys: pytest.CaptureFixture) -> None:
    assert scaler("scale", "daskclusters", "3", "--no-wait") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["replicas"] == 3 and err == ""
    assert world.dask.writes == [("scale", "ns", "dask-run1", 3, None)]


def test_scale_wait_times_out_with_exit_124(api: str, capsys: pytest.CaptureFixture) -> None:
    assert scaler("scale", "daskclusters", "3", "--timeout", "0.3", "--interval", "0.05") == 124
    out, err = capsys.readouterr()
    assert json.loads(out)["replicas"] == 3, "the accepted scale is printed before the wait"
    assert "error: timeout: daskclusters/dask-run1 scaled: not done after 0.3s" in err
    assert "1 of 3 workers" in err


def test_restart_head_waits_until_ready(converging_api: str, capsys: pytest.CaptureFixture) -> None:
    assert scaler("restart-head", "daskclusters", "--interval", "0.01") == 0
    out, err = capsys.readouterr()
    kick = json.loads(out)
    assert kick["ok"] is True and kick["started_at"] == "2025-09-02T15:40:00Z"
    assert [re.sub(r" \(\d+s\)$", "", line) for line in err.splitlines()] == [
        "daskclusters/dask-run1: head restarted_not_ready (dask-run1-head-2)",
        "daskclusters/dask-run1: head dask-run1-head-2 restarted and Ready",
    ]


def test_status_of_a_scale_and_of_a_restart(api: str, world: World, capsys: pytest.CaptureFixture) -> None:
    assert scaler("status", "daskclusters") == 0
    assert json.loads(capsys.readouterr().out) == {"kind": "daskclusters", "name": "dask-run1", "desired": 1,
                                                   "workers": 1, "complete": True}
    assert scaler("scale", "daskclusters", "2", "--no-wait") == 0
    capsys.readouterr()
    assert scaler("status", "daskclusters") == 0
    assert json.loads(capsys.readouterr().out)["complete"] is False
    world.dask.statuses[("ns", "dask-run1")]["ready_workers"] = 2
    assert scaler("status", "daskclusters", "--wait", "--timeout", "5", "--interval", "0.01") == 0
    assert json.loads(capsys.readouterr().out)["complete"] is True

    assert scaler("restart-head", "daskclusters", "--no-wait") == 0
    since = json.loads(capsys.readouterr().out)["started_at"]
    assert scaler("status", "daskclusters", "--since", since) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "restarted_not_ready"
    assert scaler("status", "daskclusters", "--since", since, "--wait", "--timeout", "0.2", "--interval",
                  "0.05") == 124


@pytest.mark.parametrize("argv, env, code, message", [
    pytest.param(["scale", "daskclusters", "2", "--name", "dask-run1"], {"DOMINO_TOKEN": "stranger-token"}, 1,
                 "HTTP 403 unauthorized: Not authorized to update cluster dask-run1", id="403"),
    pytest.param(["get", "pods", "--name", "x"], {}, 1, "HTTP 400 invalid_kind: kind must be one of", id="400"),
    pytest.param(["get", "daskclusters"], {"DOMINO_TOKEN": "bad-token-0000"}, 1, "HTTP 401 unauthenticated",
                 id="401"),
    pytest.param(["get", "daskclusters"], {"DOMINO_RUN_ID": ""}, 2, "DOMINO_RUN_ID is not set", id="no-run-id"),
    pytest.param(["get", "daskclusters"], {"DOMINO_TOKEN": ""}, 2, "no_credentials", id="no-credentials"),
])
def test_errors_and_exit_codes(api: str, world: World, clean_env: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture, argv: list[str], env: dict, code: int,
                               message: str) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    result = scaler(*argv)
    out, err = capsys.readouterr()
    assert result == code and out == ""
    assert err.startswith("error: ") and message in err
    assert not [s for s in ("owner-token", "stranger-token", "bad-token-0000") if s in err + out]


def test_progress_line_rewrites_itself_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    stream = Terminal()
    progress = ProgressLine("k/c", stream)
    progress("1 of 2 workers")
    progress("1 of 2 workers")
    progress("2 of 2 workers")
    progress.end("scaled")
    assert stream.getvalue() == ("\r\x1b[Kk/c: 1 of 2 workers (0s)" * 2 + "\r\x1b[Kk/c: 2 of 2 workers (0s)"
                                 + "\r\x1b[Kk/c: scaled\n")
