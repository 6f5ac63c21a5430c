"""`dask-operator autoscale simulate`, through its add_arguments/main, on the shipped examples."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from dask_operator.autoscale_cli import add_arguments, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example" / "simulate"
PNG = b"\x89PNG\r\n\x1a\n"
LINE = re.compile(r"^t=\s*(?P<t>[\d.]+)s\s+demand=\s*(?P<demand>\S+)\s+replicas\s+(?P<before>\d+) -> (?P<after>\d+)\s+"
                  r"(?P<reason>[A-Za-z]+)\s+(?P<message>.*)$")


def simulate(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return main(parser.parse_args(["simulate", *argv]))


def decisions(out: str) -> list[dict]:
    return [m.groupdict() for m in map(LINE.match, out.splitlines()) if m]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_burst_example_prints_every_sync_and_writes_the_plot(tmp_path, capsys):
    out_png = tmp_path / "burst.png"
    assert simulate("--trace", str(EXAMPLE / "burst.csv"), "--policy", str(EXAMPLE / "policy.yaml"),
                    "--plot", str(out_png)) == 0
    out = capsys.readouterr().out
    rows = decisions(out)
    assert len(rows) == 1500 // 15 + 1, "one line per 15 s sync from 0 s to 1500 s"
    assert out_png.read_bytes().startswith(PNG) and f"plot written to {out_png}" in out
    by_time = {float(r["t"]): r for r in rows}
    # the burst (180 tasks at 10 per worker) reaches 1 worker at 120 s: the default-shaped scale-up
    # policy allows max(+4 pods, +100 %) per 15 s: 1 -> 5 -> 10 -> 18
    assert [(by_time[t]["before"], by_time[t]["after"], by_time[t]["reason"]) for t in (120, 135, 150)] == [
        ("1", "5", "ScaleUpLimit"), ("5", "10", "ScaleUpLimit"), ("10", "18", "DesiredWithinRange")]
    # 18 was last recommended at 285 s; the 300 s scale-down window holds 18 until 585 s
    first_down = min(float(r["t"]) for r in rows if int(r["after"]) < int(r["before"]))
    assert first_down == 285 + 300
    assert all(by_time[t]["reason"] == "ScaleDownStabilized" for t in range(300, 585, 15))
    assert all(1 <= int(r["after"]) <= 20 for r in rows)


def test_changes_only(capsys):
    assert simulate("--trace", str(EXAMPLE / "burst.csv"), "--policy", str(EXAMPLE / "policy.yaml"),
                    "--changes-only") == 0
    rows = decisions(capsys.readouterr().out)
    assert rows and all(r["before"] != r["after"] for r in rows)
    # scale-down: at most half the workers per 60 s (Percent 50), and never before the window allows
    downs = [(float(r["t"]), int(r["before"]), int(r["after"])) for r in rows if int(r["after"]) < int(r["before"])]
    assert all(after >= before // 2 for _, before, after in downs)
    assert all(b[0] - a[0] >= 60 for a, b in zip(downs, downs[1:]))


def test_daily_example_holds_replicas_while_the_metric_is_missing(capsys):
    assert simulate("--trace", str(EXAMPLE / "daily.csv"), "--policy", str(EXAMPLE / "policy.yaml")) == 0
    rows = decisions(capsys.readouterr().out)
    gap = [r for r in rows if r["demand"] == "missing"]
    assert gap, "the daily trace has a metrics outage"
    assert all(r["before"] == r["after"] and r["reason"] == "FailedGetPodsMetric" for r in gap)
    assert all(r["message"].endswith("[missing: pods/dask_tasks_per_worker]") for r in gap)
    assert max(int(r["after"]) for r in rows) > 10 and rows[-1]["after"] == "1", "grows by day, shrinks at night"


def test_a_column_per_metric_overrides_demand(tmp_path, capsys):
    trace = write(tmp_path / "t.csv", "time,demand,pods/dask_tasks_per_worker\n0,100,5\n30,100,\n")
    assert simulate("--trace", str(trace), "--policy", str(EXAMPLE / "policy.yaml")) == 0
    rows = decisions(capsys.readouterr().out)
    assert [(r["after"], r["reason"]) for r in rows] == [("1", "DesiredWithinRange"), ("1", "DesiredWithinRange"),
                                                         ("1", "FailedGetPodsMetric")]


def test_utilization_policy_uses_the_request(tmp_path, capsys):
    policy = write(tmp_path / "p.yaml", yaml.safe_dump({"minReplicas": 1, "maxReplicas": 10, "metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}
    ]}))
    trace = write(tmp_path / "t.csv", "time,demand\n0,2\n")  # 2 cores of demand
    assert simulate("--trace", str(trace), "--policy", str(policy), "--request", "500m") == 0
    # 2 cores on 1 pod requesting 500m: 400 % of request, 8 x the 50 % target; no behavior: the legacy
    # rule allows max(2 x 1, 4) = 4 per sync
    assert [(r["after"], r["reason"]) for r in decisions(capsys.readouterr().out)] == [("4", "ScaleUpLimit")]


def test_pods_starting_up_are_unready(tmp_path, capsys):
    trace = write(tmp_path / "t.csv", "time,demand\n0,40\n60,40\n")
    assert simulate("--trace", str(trace), "--policy", str(EXAMPLE / "policy.yaml"), "--pod-startup", "60") == 0
    rows = decisions(capsys.readouterr().out)
    # 0 s: 40 tasks on 1 worker: 4 wanted, +4 allowed; 15-45 s: 3 new workers are Pending: they count 0,
    # (40 + 0 + 0 + 0) / 4 = 10 per worker: at target, no change; 60 s: all ready, 10 each: no change
    assert [r["after"] for r in rows] == ["4", "4", "4", "4", "4"]


@pytest.mark.parametrize(
    "policy, trace, message",
    [
        pytest.param("maxReplicas: 0\n", "time,demand\n0,1\n", "policy.yaml: maxReplicas: must be greater than",
                     id="invalid-policy"),
        pytest.param("maxReplicas: [\n", "time,demand\n0,1\n", "policy.yaml", id="not-yaml"),
        pytest.param("maxReplicas: 3\nbehavior: {scaleUp: {policies: [{type: Pods, value: 1, periodSeconds: 0}]}}\n",
                     "time,demand\n0,1\n", "behavior.scaleUp.policies[0].periodSeconds", id="policy-field-named"),
        pytest.param("maxReplicas: 3\n", "when,load\n0,1\n", "t.csv: the first row must be the header",
                     id="bad-header"),
        pytest.param("maxReplicas: 3\n", "time,demand\n0,1\n0,2\n", "line 3: time must be set and greater",
                     id="time-not-increasing"),
        pytest.param("maxReplicas: 3\n", "time,demand\n0,lots\n", "line 2, column demand: not a number",
                     id="not-a-number"),
        pytest.param("maxReplicas: 3\n", "time,demand\n0,-1\n", "must be a finite number >= 0", id="negative"),
        pytest.param("maxReplicas: 3\n", "time,demand\n0,1,2\n", "line 2: 3 values for 2 columns", id="ragged"),
        pytest.param("maxReplicas: 3\n", "time,demand\n", "no rows after the header", id="empty"),
    ],
)
def test_bad_input_is_refused_naming_what(tmp_path, capsys, policy, trace, message):
    policy_path, trace_path = write(tmp_path / "policy.yaml", policy), write(tmp_path / "t.csv", trace)
    assert simulate("--trace", str(trace_path), "--policy", str(policy_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_missing_file_is_an_error(tmp_path, capsys):
    assert simulate("--trace", str(tmp_path / "nope.csv"), "--policy", str(EXAMPLE / "policy.yaml")) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_autoscale_needs_a_sub_command():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_the_committed_plot_is_a_png():
    assert (EXAMPLE / "burst.png").read_bytes().startswith(PNG)
