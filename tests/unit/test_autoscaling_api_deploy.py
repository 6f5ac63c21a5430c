"""deploy/autoscaling-api/ and adapter-rules/gpu.yaml: they render, are least
privilege and Pod Security restricted, and agree with the code."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest
import yaml
from pss_check import restricted_violations

from dask_operator.autoscaling_api import main
from dask_operator.autoscaling_api.access import GROUP, RESOURCE
from dask_operator.core.autoscaler_spec import GPU_METRIC, WORKLOADS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy" / "autoscaling-api")], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def test_renders_the_whole_service_in_its_namespace(docs: list[dict]) -> None:
    assert sorted(d["kind"] for d in docs) == sorted(["Namespace", "ServiceAccount", "ClusterRole",
                                                      "ClusterRoleBinding", "Role", "RoleBinding", "Deployment",
                                                      "Service"])
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in (
        "Namespace", "ClusterRole", "ClusterRoleBinding")} == {"dask-autoscaling"}
    assert find(docs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert find(docs, "ClusterRoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "dask-autoscaling-api", "namespace": "dask-autoscaling"}]
    assert find(docs, "Service")["spec"]["ports"][0]["port"] == 8080  # seed 004's base URL


def test_deployment_is_restricted_probed_and_runs_autoscaling_api(docs: list[dict]) -> None:
    pod = find(docs, "Deployment")["spec"]["template"]
    spec = pod["spec"]
    assert restricted_violations(spec) == []
    assert spec["serviceAccountName"] == find(docs, "ServiceAccount")["metadata"]["name"]
    (container,) = spec["containers"]
    assert container["command"] == ["dask-operator"] and container["args"][0] == "autoscaling-api"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    p = argparse.ArgumentParser()
    main.add_arguments(p)
    args = p.parse_args(container["args"][1:])
    assert args.port == container["ports"][0]["containerPort"]
    rules = find(docs, "Role")["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [args.keys_secret],
                      "verbs": ["get"]}]


def test_cluster_role_grants_exactly_what_the_service_uses(docs: list[dict]) -> None:
    rules = find(docs, "ClusterRole")["rules"]
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not rule.get("resourceNames")
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    workloads = {(w.api_version.rpartition("/")[0], w.plural, "get") for w in WORKLOADS.values()}
    hpas = {(GROUP, RESOURCE, v) for v in ("get", "list", "create", "delete")}
    reviews = {("authentication.k8s.io", "tokenreviews", "create"),
               ("authorization.k8s.io", "subjectaccessreviews", "create")}
    assert granted == workloads | hpas | reviews | {("", "events", "list")}


def test_gpu_rule_serves_dcgm_utilization_per_pod_and_its_configmap_matches() -> None:
    text = (ROOT / "adapter-rules" / "gpu.yaml").read_text()
    (rule,) = yaml.safe_load(text)["rules"]
    assert rule["seriesQuery"].startswith(GPU_METRIC + "{")
    assert rule["name"] == {"matches": f"^{GPU_METRIC}$", "as": GPU_METRIC}
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    configmap = yaml.safe_load((ROOT / "adapter-rules" / "gpu-configmap.yaml").read_text())
    assert configmap["data"]["config.yaml"] == text
