"""deploy/api/: renders, Pod Security restricted, least privilege, and agrees with the code."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest
import yaml
from pss_check import restricted_violations

from dask_operator.api import main
from dask_operator.api.tiers import parse_tiers
from dask_operator.backends import dask_cluster, dco, kuberay, spark_operator

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [dask_cluster.DaskClusterBackend, kuberay.KubeRayBackend, dco.DcoDaskBackend, dco.DcoRayBackend,
            dco.DcoSparkBackend, spark_operator.SparkOperatorBackend]


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy" / "api")], check=True, capture_output=True,
                         text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def test_renders_the_whole_service(docs: list[dict]) -> None:
    assert sorted(d["kind"] for d in docs) == sorted([
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment",
        "Service", "ConfigMap"])
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in ("Namespace", "ClusterRole",
                                                                           "ClusterRoleBinding")} == {"domino-field"}
    assert find(docs, "ClusterRoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "ddl-cluster-scaler", "namespace": "domino-field"}]


def test_service_has_the_seeds_address(docs: list[dict]) -> None:
    svc = find(docs, "Service")
    assert svc["metadata"]["name"] == "ddl-cluster-scaler-svc" and svc["spec"]["ports"][0]["port"] == 80


def test_deployment_is_restricted_probed_and_runs_dask_operator_api(docs: list[dict]) -> None:
    pod = find(docs, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/part-of"] == "dask-operator"
    spec = pod["spec"]
    assert restricted_violations(spec) == []
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["command"] == ["dask-operator"] and container["args"][0] == "api"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    p = argparse.ArgumentParser()
    main.add_arguments(p)
    args = p.parse_args(container["args"][1:])
    role = find(docs, "Role")
    names = {r["resources"][0]: r["resourceNames"] for r in role["rules"]}
    assert names == {"configmaps": [args.tiers_configmap], "secrets": [args.keys_secret]}
    assert args.tiers_configmap == find(docs, "ConfigMap")["metadata"]["name"]


def test_cluster_role_is_least_privilege_and_covers_every_backend(docs: list[dict]) -> None:
    rules = find(docs, "ClusterRole")["rules"]
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not rule.get("resourceNames")
        assert set(rule["verbs"]) <= {"get", "list", "patch", "delete", "create"}
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    for backend in BACKENDS:
        group = backend.api_version.rpartition("/")[0]
        for verb in ("get", "list", "patch"):
            assert (group, backend.resource, verb) in granted, backend.name
            assert (group, f"{backend.resource}/scale", verb) in granted, backend.name
    assert {("", "pods", "list"), ("", "pods", "delete"), ("authentication.k8s.io", "tokenreviews", "create"),
            ("authorization.k8s.io", "subjectaccessreviews", "create")} <= granted
    assert not [g for g in granted if g[1] in ("secrets", "configmaps")]
    assert not [g for g in granted if g[1] == "pods" and g[2] not in ("list", "delete")]


def test_example_tiers_parse_and_hold_the_seed_clients_defaults(docs: list[dict]) -> None:
    tiers = parse_tiers(find(docs, "ConfigMap")["data"])
    assert {"Small", "Medium"} <= {t.name for t in tiers}


def test_namespace_enforces_restricted(docs: list[dict]) -> None:
    labels = find(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["domino-compute"] == "true" and labels["domino-platform"] == "true"
