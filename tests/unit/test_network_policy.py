"""The example's NetworkPolicy (example/network-policy.yaml), judged by what it lets through.

`admits` evaluates networking.k8s.io/v1 ingress rules as Kubernetes defines them:

1. A policy applies to the pods of its own namespace that its ``podSelector``
   selects, and isolates them for ingress when ``policyTypes`` holds Ingress.
   A pod no policy isolates accepts everything; an isolated pod accepts a
   connection that some rule of some policy isolating it allows.
2. A rule allows a connection when its ``from`` allows the source AND its
   ``ports`` allow the destination port; an absent or empty list allows all.
3. ``from`` is a list of peers, any of which may match (OR). In one peer:
   ``podSelector`` alone means pods of the policy's namespace;
   ``namespaceSelector`` alone, every pod of the namespaces it selects; both,
   the pods it selects in those namespaces (AND). ``ipBlock`` is not used by
   the policy and is refused here rather than evaluated.
4. A label selector holds when every ``matchLabels`` pair and every
   ``matchExpressions`` requirement hold (In, NotIn, Exists, DoesNotExist;
   NotIn and DoesNotExist hold for an absent key); an empty one holds for all.
   Every namespace carries ``kubernetes.io/metadata.name: <its name>``.
5. A port entry matches the protocol (TCP if unset) and the destination port:
   a number (through ``endPort`` if set), a name resolved against the
   destination pod's container ports of that name and protocol, or any port
   when unset.

Not modelled: a pod reaching itself and its node reaching it (the kubelet's
probes) are always allowed, whatever a policy says.

The pods are real: the example Cluster from ``kubectl kustomize example/``
rendered by ``dask_operator.core`` as the operator renders it (and a second
Cluster beside it), the operator's pod template and namespace (its
ClusterRoleBinding subject) from ``deploy/``, the scaling API's and the
autoscaling API's from ``deploy/api`` and ``deploy/autoscaling-api``. The
rest (Prometheus, a Client, strangers) are made up here. Each row runs with
the example applied in ``default`` (as the README does) and in another
namespace.
"""

from __future__ import annotations

import copy
import pathlib
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import pytest
import yaml

from dask_operator import constants as c
from dask_operator.core import (ClusterSpec, scheduler_deployment, scheduler_name, scheduler_service, worker_pod,
                                worker_pod_name)

ROOT = pathlib.Path(__file__).resolve().parents[2]
NS_NAME = "kubernetes.io/metadata.name"
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


# ---------------------------------------------------------------- the evaluator


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: Mapping[str, str]
    ports: tuple[tuple[str, int, str], ...] = ()  # (name, containerPort, protocol)

    @classmethod
    def of(cls, obj: Mapping, namespace: str, name: str | None = None) -> Pod:
        """A Pod or a pod template (its metadata and spec) as it runs in ``namespace``."""
        spec = obj["spec"]
        ports = tuple((p.get("name", ""), p["containerPort"], p.get("protocol", "TCP"))
                      for ct in spec.get("containers") or [] for p in ct.get("ports") or [])
        return cls(name or obj["metadata"]["name"], namespace, dict(obj["metadata"].get("labels") or {}), ports)


def selects(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_requirement(e, labels) for e in selector.get("matchExpressions") or [])


def _requirement(expression: Mapping, labels: Mapping[str, str]) -> bool:
    key, op, values = expression["key"], expression["operator"], expression.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown operator {op!r}")


def isolates(policy: Mapping, pod: Pod) -> bool:
    spec = policy["spec"]
    return (policy["metadata"]["namespace"] == pod.namespace and selects(spec["podSelector"], pod.labels)
            and "Ingress" in spec.get("policyTypes", ["Ingress"]))


def _peer_matches(peer: Mapping, source: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        raise NotImplementedError("ipBlock peers are not evaluated")
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {NS_NAME: source.namespace})
    else:
        in_namespace = source.namespace == policy_namespace
    return in_namespace and selects(peer.get("podSelector"), source.labels)


def _port_matches(entry: Mapping, target: Pod, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return (wanted, port, protocol) in target.ports
    return wanted <= port <= entry.get("endPort", wanted)


def admits(policies: list[Mapping], source: Pod, target: Pod, port: int, protocol: str = "TCP") -> bool:
    """Whether ``source`` may open a connection to ``target``:``port``."""
    isolating = [p for p in policies if isolates(p, target)]
    if not isolating:
        return True
    return any(
        (not rule.get("from") or any(_peer_matches(peer, source, p["metadata"]["namespace"]) for peer in rule["from"]))
        and (not rule.get("ports") or any(_port_matches(e, target, port, protocol) for e in rule["ports"]))
        for p in isolating for rule in p["spec"].get("ingress") or []
    )


# ---------------------------------------------------------------- the evaluator, pinned

TARGET = Pod("db", "ns", {"app": "db"}, (("sql", 5432, "TCP"), ("dns", 53, "UDP")))


def toy(*rules: dict) -> list[dict]:
    spec = {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"], "ingress": list(rules)}
    return [{"metadata": {"name": "toy", "namespace": "ns"}, "spec": spec}]


AND_PEER = {"namespaceSelector": {"matchLabels": {NS_NAME: "ops"}}, "podSelector": {"matchLabels": {"app": "x"}}}
OR_PEERS = [{"namespaceSelector": {"matchLabels": {NS_NAME: "ops"}}}, {"podSelector": {"matchLabels": {"app": "x"}}}]
NOT_IN = {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}}


@pytest.mark.parametrize("rules, source, port, protocol, allowed", [
    pytest.param([], Pod("a", "ns", {}), 5432, "TCP", False, id="no-rules-deny-all"),
    pytest.param([{}], Pod("a", "other", {}), 1, "TCP", True, id="empty-rule-allows-all"),
    pytest.param([{"from": [AND_PEER]}], Pod("a", "ops", {"app": "x"}), 5432, "TCP", True, id="and-peer-both-hold"),
    pytest.param([{"from": [AND_PEER]}], Pod("a", "ns", {"app": "x"}), 5432, "TCP", False, id="and-peer-wrong-ns"),
    pytest.param([{"from": OR_PEERS}], Pod("a", "ns", {"app": "x"}), 5432, "TCP", True, id="or-peers-pod-in-own-ns"),
    pytest.param([{"from": OR_PEERS}], Pod("a", "ops", {}), 5432, "TCP", True, id="or-peers-any-pod-of-ns"),
    pytest.param([{"from": OR_PEERS}], Pod("a", "dev", {"app": "x"}), 5432, "TCP", False,
                 id="pod-selector-alone-is-own-ns"),
    pytest.param([{"from": [NOT_IN]}], Pod("a", "ns", {}), 5432, "TCP", True, id="not-in-absent-key-holds"),
    pytest.param([{"from": [NOT_IN]}], Pod("a", "ns", {"tier": "web"}), 5432, "TCP", False, id="not-in-value"),
    pytest.param([{"ports": [{"port": "sql"}]}], Pod("a", "ns", {}), 5432, "TCP", True, id="named-port"),
    pytest.param([{"ports": [{"port": "sql"}]}], Pod("a", "ns", {}), 5433, "TCP", False, id="named-port-other-number"),
    pytest.param([{"ports": [{"port": "dns"}]}], Pod("a", "ns", {}), 53, "UDP", False, id="named-port-wrong-protocol"),
    pytest.param([{"ports": [{"port": 5000, "endPort": 6000}]}], Pod("a", "ns", {}), 5432, "TCP", True,
                 id="port-range"),
    pytest.param([{"ports": [{"protocol": "UDP"}]}], Pod("a", "ns", {}), 53, "UDP", True, id="any-port-of-protocol"),
])
def test_evaluator(rules, source, port, protocol, allowed):
    assert admits(toy(*rules), source, TARGET, port, protocol) is allowed


def test_evaluator_leaves_unselected_pods_open():
    assert admits(toy(), Pod("a", "ns", {}), Pod("web", "ns", {"app": "web"}), 80)
    assert admits(toy(), Pod("a", "ns", {}), Pod("db", "other", {"app": "db"}), 5432)


# ---------------------------------------------------------------- the real pods


def kustomize(directory: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / directory)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def template_pod(docs: list[dict], name: str, namespace: str) -> Pod:
    deployment = one(docs, "Deployment")
    return Pod.of(deployment["spec"]["template"], deployment["metadata"].get("namespace", namespace), name)


@pytest.fixture(scope="module")
def example() -> list[dict]:
    return kustomize("example")


@pytest.fixture(scope="module")
def deployed() -> dict[str, Pod]:
    """The pods of deploy/ (the operator, in its ClusterRoleBinding's namespace) and of the two APIs."""
    operator_docs = kustomize("deploy")
    (subject,) = one(operator_docs, "ClusterRoleBinding")["subjects"]
    return {
        "operator": template_pod(operator_docs, "dask-operator-0", subject["namespace"]),
        "scaling-api": template_pod(kustomize("deploy/api"), "ddl-cluster-scaler-0", ""),
        "autoscaling-api": template_pod(kustomize("deploy/autoscaling-api"), "dask-autoscaling-api-0", ""),
    }


def rendered(cluster: dict, namespace: str, name: str | None = None) -> tuple[Pod, Pod]:
    """(scheduler pod, worker pod) of the Cluster applied in ``namespace``, as the operator renders them."""
    body = copy.deepcopy(cluster)
    body["metadata"] = {**body["metadata"], "namespace": namespace, "uid": "u-1", **({"name": name} if name else {})}
    spec = ClusterSpec.from_resource(body)
    scheduler = Pod.of(scheduler_deployment(spec)["spec"]["template"], namespace, f"{scheduler_name(spec.name)}-0")
    return scheduler, Pod.of(worker_pod(spec, worker_pod_name(spec.name, 0)), namespace)


@pytest.fixture(scope="module", params=["default", "team-a"])
def world(request, example, deployed) -> dict:
    """The policy applied with the example in ``home``, and every pod that may knock."""
    home = request.param
    policy = copy.deepcopy(one(example, "NetworkPolicy"))
    policy["metadata"]["namespace"] = home
    scheduler, worker = rendered(one(example, "Cluster"), home)
    other_scheduler, other_worker = rendered(one(example, "Cluster"), home, "other-dask")
    mine = {c.LABEL_CLUSTER: "example-dask"}
    prometheus = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "prometheus-operator"}
    pods = {
        "scheduler": scheduler, "worker": worker, **deployed,
        "client": Pod("my-client", home, mine),
        "prometheus": Pod("prometheus-k8s-0", "monitoring", prometheus),
        "other-cluster-worker": other_worker, "other-cluster-scheduler": other_scheduler,
        "unlabelled-same-ns": Pod("curl", home, {}),
        "example-labels-other-ns": Pod("example-dask-worker-0", "elsewhere", dict(worker.labels)),
        "operator-labels-other-ns": Pod("fake-operator", "elsewhere", dict(deployed["operator"].labels)),
        "prometheus-labels-same-ns": Pod("fake-prometheus", home, prometheus),
        "grafana-in-monitoring": Pod("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"}),
    }
    return {"policy": policy, "pods": pods}


COMM, HTTP = c.SCHEDULER_PORT, c.DASHBOARD_PORT
ROWS = [  # (source, port, allowed)
    ("worker", COMM, True), ("worker", HTTP, True),  # the comm; the preStop hook's retire_workers
    ("scheduler", COMM, True), ("scheduler", HTTP, True),
    ("client", COMM, True), ("client", HTTP, True),  # a Client pod carrying the Cluster's label
    ("operator", HTTP, True), ("operator", COMM, False),
    ("prometheus", HTTP, True), ("prometheus", COMM, False),
    ("worker", c.WORKER_DASHBOARD_PORT, False),  # nothing the policy names
    ("other-cluster-worker", COMM, False), ("other-cluster-worker", HTTP, False),
    ("other-cluster-scheduler", HTTP, False),
    ("unlabelled-same-ns", COMM, False), ("unlabelled-same-ns", HTTP, False),
    ("example-labels-other-ns", COMM, False), ("example-labels-other-ns", HTTP, False),
    ("operator-labels-other-ns", HTTP, False),
    ("prometheus-labels-same-ns", HTTP, False),
    ("grafana-in-monitoring", HTTP, False),
    ("scaling-api", HTTP, False), ("autoscaling-api", HTTP, False),  # neither talks to a scheduler
]


@pytest.mark.parametrize("source, port, allowed", [
    pytest.param(s, p, a, id=f"{s}-{p}-{'allowed' if a else 'denied'}") for s, p, a in ROWS])
def test_who_reaches_the_scheduler(world, source, port, allowed):
    pods = world["pods"]
    assert admits([world["policy"]], pods[source], pods["scheduler"], port) is allowed


def test_comm_over_udp_is_denied(world):
    pods = world["pods"]
    assert not admits([world["policy"]], pods["worker"], pods["scheduler"], COMM, "UDP")


def test_policy_isolates_the_scheduler_alone(world):
    """Workers stay open: the scheduler and other workers connect to them, and their dashboards."""
    selected = [name for name, pod in world["pods"].items() if isolates(world["policy"], pod)]
    assert selected == ["scheduler"]
    pods = world["pods"]
    assert admits([world["policy"]], pods["unlabelled-same-ns"], pods["worker"], c.WORKER_DASHBOARD_PORT)


def test_named_ports_are_the_services_target_ports(example):
    """The policy opens exactly the container ports the scheduler Service routes to, numbered as constants."""
    policy = one(example, "NetworkPolicy")
    opened = {e["port"] for rule in policy["spec"]["ingress"] for e in rule["ports"]}
    spec = ClusterSpec.from_resource(one(example, "Cluster"))
    assert opened == {p["targetPort"] for p in scheduler_service(spec)["spec"]["ports"]}
    scheduler, _ = rendered(one(example, "Cluster"), "default")
    assert {(name, number) for name, number, _ in scheduler.ports} >= {
        (c.PORT_NAME_COMM, COMM), (c.PORT_NAME_DASHBOARD, HTTP)}
