"""deploy/verda/: renders, Pod Security restricted, least-privilege RBAC, and its parts point at each other."""

from __future__ import annotations

import argparse
import json
import posixpath
import subprocess
from pathlib import Path

import pytest
import yaml
from pss_check import restricted_violations

from dask_operator import constants as c_
from dask_operator.core import startup_scripts as ss
from dask_operator.core.nodegroups import build_node_groups
from dask_operator.nodes import cli, scripts_cli
from dask_operator.nodes.config import cluster_config

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "verda-nodes"
RBAC_KINDS = ("ClusterRole", "Role")
# What cluster-autoscaler 1.35 does to the cluster (upstream's ClusterRole):
# the simulation's informers, node taints and updates, draining, events.
AUTOSCALER_NEEDS = {
    ("", "nodes", v) for v in ("get", "list", "watch", "update")
} | {
    ("", r, v) for r in ("pods", "namespaces", "services", "replicationcontrollers", "persistentvolumeclaims",
                         "persistentvolumes") for v in ("get", "list", "watch")
} | {
    ("", "pods/eviction", "create"), ("", "pods/status", "update"), ("", "events", "create"),
    ("", "events", "patch"), ("policy", "poddisruptionbudgets", "list"), ("policy", "poddisruptionbudgets", "watch"),
} | {
    ("apps", r, v) for r in ("daemonsets", "replicasets", "statefulsets") for v in ("get", "list", "watch")
} | {
    ("storage.k8s.io", r, v) for r in ("storageclasses", "csinodes", "csidrivers", "csistoragecapacities",
                                       "volumeattachments") for v in ("get", "list", "watch")
} | {
    ("batch", r, v) for r in ("jobs", "cronjobs") for v in ("get", "list", "watch")
} | {
    ("resource.k8s.io", r, v) for r in ("resourceslices", "deviceclasses", "resourceclaims")
    for v in ("get", "list", "watch")
}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy" / "verda")], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


def container(docs: list[dict], deployment: str) -> tuple[dict, dict]:
    pod = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return pod, c


def mounted(pod: dict, c: dict, path: str) -> tuple[dict, str]:
    """The volume under which ``path`` is mounted, and the path inside it."""
    for mount in c["volumeMounts"]:
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            return volume, path[len(root):]
    raise AssertionError(f"{path} is on no volume of {c['name']}")


def flags(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in args if a.startswith("--") and "=" in a)


def provider_args(c: dict) -> argparse.Namespace:
    assert c["command"] == ["dask-operator"] and c["args"][:1] == ["nodes"]
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return p.parse_args(c["args"][1:])


def test_renders_provider_autoscaler_script_server_and_their_rbac_in_one_namespace(docs: list[dict]) -> None:
    assert sorted(d["kind"] for d in docs) == sorted([
        "Namespace", *["ServiceAccount"] * 3, *["ClusterRole", "ClusterRoleBinding"] * 2,
        *["Role", "RoleBinding"] * 3, *["Deployment"] * 3, "Service", "Service", *["ConfigMap"] * 3])
    assert {d["metadata"].get("namespace") for d in docs
            if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")} == {NAMESPACE}
    assert find(docs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_rbac_has_no_wildcard_and_reads_only_the_script_servers_named_secrets(docs: list[dict]) -> None:
    for role in (d for d in docs if d["kind"] in RBAC_KINDS):
        for rule in role["rules"]:
            every = rule["verbs"] + rule["resources"] + rule["apiGroups"] + rule.get("resourceNames", [])
            assert not [x for x in every if "*" in x], (role["metadata"]["name"], rule)
            if "secrets" in rule["resources"]:
                assert (role["kind"], role["metadata"]["name"]) == ("Role", "startup-script-server"), rule
                assert rule["verbs"] == ["get"] and rule["resources"] == ["secrets"], rule
                assert set(rule["resourceNames"]) == {"startup-script-secrets", "verda-credentials"}
            assert not set(rule["verbs"]) & {"delete", "deletecollection", "escalate", "bind", "impersonate"} \
                or rule.get("resourceNames"), rule  # deletes only of named objects


def test_cluster_role_grants_what_the_autoscaler_does_and_only_its_service_account_has_it(docs: list[dict]) -> None:
    rules = find(docs, "ClusterRole", "verda-cluster-autoscaler")["rules"]
    granted = {(g, r, v) for rule in rules if not rule.get("resourceNames")
               for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert AUTOSCALER_NEEDS <= granted, sorted(AUTOSCALER_NEEDS - granted)
    writes = {x for x in granted if x[2] not in ("get", "list", "watch")}
    assert writes == {("", "nodes", "update"), ("", "pods/eviction", "create"), ("", "pods/status", "update"),
                      ("", "events", "create"), ("", "events", "patch"), ("", "endpoints", "create"),
                      ("", "endpoints", "patch"), ("batch", "jobs", "patch"), ("extensions", "jobs", "patch")}
    subject = [{"kind": "ServiceAccount", "name": "cluster-autoscaler", "namespace": NAMESPACE}]
    assert find(docs, "ClusterRoleBinding", "verda-cluster-autoscaler")["subjects"] == subject
    assert find(docs, "RoleBinding", "cluster-autoscaler")["subjects"] == subject
    assert find(docs, "ClusterRoleBinding", "verda-cluster-autoscaler")["roleRef"]["name"] == "verda-cluster-autoscaler"
    assert find(docs, "RoleBinding", "cluster-autoscaler")["roleRef"]["name"] == "cluster-autoscaler"


def test_role_covers_the_autoscalers_status_config_map_and_lease_in_its_namespace(docs: list[dict]) -> None:
    _, c = container(docs, "cluster-autoscaler")
    role = find(docs, "Role", "cluster-autoscaler")
    assert flags(c["args"])["namespace"] == NAMESPACE == role["metadata"]["namespace"]
    named = {(r, v): set(rule["resourceNames"]) for rule in role["rules"] if rule.get("resourceNames")
             for r in rule["resources"] for v in rule["verbs"]}
    # the autoscaler's defaults: --status-config-map-name, --leader-elect-resource-name
    assert {"cluster-autoscaler-status"} == named[("configmaps", "update")] == named[("configmaps", "get")]
    assert {"cluster-autoscaler"} == named[("leases", "update")] == named[("leases", "get")]


def test_provider_may_only_ask_for_startup_scripts_with_a_token_the_api_server_refuses(docs: list[dict]) -> None:
    pod, c = container(docs, "verda-provider")
    account = find(docs, "ServiceAccount", pod["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is False
    bindings = [d for d in docs if d["kind"].endswith("Binding")
                and any(s["name"] == account["metadata"]["name"] for s in d["subjects"])]
    assert [(b["kind"], b["roleRef"]["name"]) for b in bindings] == [("RoleBinding", "startup-script-client")]
    assert find(docs, "Role", "startup-script-client")["rules"] == [
        {"apiGroups": [c_.STARTUP_SCRIPTS_GROUP], "resources": [c_.STARTUP_SCRIPTS_RESOURCE], "verbs": ["create"]}]
    env = {e["name"]: e.get("value") for e in c["env"]}
    volume, key = mounted(pod, c, env["DATACRUNCH_STARTUP_SCRIPT_TOKEN_FILE"])
    (source,) = volume["projected"]["sources"]
    _, server = container(docs, "startup-script-server")
    assert source["serviceAccountToken"]["path"] == key
    assert source["serviceAccountToken"]["audience"] == flags(server["args"])["audience"] == "startup-scripts"
    service = find(docs, "Service", "startup-script-server")
    assert env["DATACRUNCH_STARTUP_SCRIPT_FETCH_URL"] == (
        f"http://startup-script-server.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}/script")


def test_script_server_template_uses_only_variables_its_flags_give(docs: list[dict]) -> None:
    pod, c = container(docs, "startup-script-server")
    assert c["command"] == ["dask-operator"] and c["args"][0] == "startup-scripts"
    p = argparse.ArgumentParser()
    scripts_cli.add_arguments(p)
    args = p.parse_args(c["args"][1:])
    volume, key = mounted(pod, c, str(args.template_file))
    template = ss.parse_template(find(docs, "ConfigMap", volume["configMap"]["name"])["data"][key])
    refs = ss.parse_secret_refs(args.secret)
    ss.check_variables(template, ss.parse_assignments(args.var, "--var"), refs)
    assert {name for name, _ in refs.values()} == set(
        find(docs, "Role", "startup-script-server")["rules"][0]["resourceNames"])
    assert {"SCRIPT_NAME", "HOSTNAME", "PROVIDER_ID_PREFIX", "JOIN_TOKEN"} <= template.names
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


@pytest.mark.parametrize("deployment", ["verda-provider", "cluster-autoscaler", "startup-script-server"])
def test_deployments_are_restricted_and_probed(docs: list[dict], deployment: str) -> None:
    pod, c = container(docs, deployment)
    assert restricted_violations(pod) == []
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    ports = {p["name"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        check = c[probe].get("httpGet") or c[probe].get("tcpSocket")
        assert check and check["port"] in ports, probe


def test_autoscaler_dials_the_provider_service_with_mutual_tls(docs: list[dict]) -> None:
    pod, c = container(docs, "cluster-autoscaler")
    args = flags(c["args"])
    assert args["cloud-provider"] == "externalgrpc"
    volume, key = mounted(pod, c, args["cloud-config"])
    config = yaml.safe_load(find(docs, "ConfigMap", volume["configMap"]["name"])["data"][key])
    host, port = config["address"].rsplit(":", 1)
    service = find(docs, "Service", "verda-provider")
    assert host == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    provider_pod = find(docs, "Deployment", "verda-provider")["spec"]["template"]
    assert service["spec"]["selector"].items() <= provider_pod["metadata"]["labels"].items()
    _, provider = container(docs, "verda-provider")
    (target,) = [p for p in provider["ports"] if p["name"] == service_port["targetPort"]]
    assert provider_args(provider).address == f"0.0.0.0:{target['containerPort']}"
    secrets = {mounted(pod, c, config[f])[0]["secret"]["secretName"] for f in ("cert", "key", "cacert")}
    assert secrets == {"cluster-autoscaler-grpc-client-cert"}
    assert {posixpath.basename(config[f]) for f in ("cert", "key", "cacert")} == {"tls.crt", "tls.key", "ca.crt"}


def test_provider_takes_tls_credentials_and_node_groups_from_their_objects(docs: list[dict]) -> None:
    pod, c = container(docs, "verda-provider")
    args = provider_args(c)
    for path in (args.cert, args.key, args.ca):
        assert mounted(pod, c, str(path))[0]["secret"]["secretName"] == "verda-provider-tls"
    env = {e["name"]: e for e in c["env"]}
    for name, key in (("DATACRUNCH_CLIENT_ID", "client-id"), ("DATACRUNCH_CLIENT_SECRET", "client-secret")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "verda-credentials", "key": key}
    volume, key = mounted(pod, c, env["DATACRUNCH_CLUSTER_CONFIG_FILE"]["value"])
    text = find(docs, "ConfigMap", volume["configMap"]["name"])["data"][key]
    groups = build_node_groups(args.nodes, cluster_config({"DATACRUNCH_CLUSTER_CONFIG_JSON": text}))
    assert set(groups) == set(json.loads(text)["node_configs"]) and len(groups) == len(args.nodes)
