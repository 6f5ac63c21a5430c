"""`dask-operator render`: the objects for a Cluster file, without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dask_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_render_prints_the_children_of_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(ROOT / "example" / "cluster" / "cluster.yaml")]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert kinds == [("Service", "dask-scheduler"), ("Deployment", "dask-scheduler"), ("Pod", "dask-worker-0")]
    env = {e["name"]: e.get("value") for e in docs[2]["spec"]["containers"][0]["env"]}
    assert env["DASK_WORKER_NAME"] == "dask-worker-0"


@pytest.mark.parametrize(
    "manifest, message",
    [
        pytest.param("kind: ConfigMap\nmetadata: {name: x}\n", "no Cluster", id="no-cluster"),
        pytest.param("kind: Cluster\nmetadata: {name: x}\nspec: {workers: {replicas: -1}}\n",
                     "spec.workers.replicas", id="negative-replicas"),
    ],
)
def test_render_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest, message) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(manifest)
    assert main(["render", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_api_command_is_wired(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["api", "--help"])
    assert e.value.code == 0
    assert "--tiers-configmap" in capsys.readouterr().out


@pytest.mark.parametrize("argv, flag", [(["autoscale", "simulate", "--help"], "--trace"),
                                        (["nodes", "serve", "--help"], "--nodes"),
                                        (["scaler", "scale", "--help"], "--tier"),
                                        (["autoscaling-api", "--help"], "--port")],
                         ids=["autoscale", "nodes", "scaler", "autoscaling-api"])
def test_subcommands_are_wired(capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and flag in capsys.readouterr().out
