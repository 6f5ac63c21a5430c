"""The manifests under deploy/, example/ and adapter-rules/, checked without a cluster."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
import yaml
from pss_check import restricted_violations

from dask_operator import constants as c
from dask_operator.core.plan import WorkerPod
from dask_operator.core.spec import MAX_NAME_LENGTH, ClusterSpec
from dask_operator.core.status import PHASE_PENDING, PHASE_RUNNING, PHASE_SCALING, compute_status

ROOT = pathlib.Path(__file__).resolve().parents[2]
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def load_all(path: pathlib.Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


def kustomize(directory: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / directory)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def crd() -> dict:
    return find(load_all(ROOT / "deploy" / "crd.yaml"), "CustomResourceDefinition")


@pytest.fixture(scope="module")
def version(crd) -> dict:
    (v,) = crd["spec"]["versions"]
    return v


@pytest.fixture(scope="module")
def schema(version) -> dict:
    return version["schema"]["openAPIV3Schema"]


def walk(schema: dict, path: str = ""):
    """Yield (path, schema) of every property and array item below ``schema``."""
    for name, prop in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", prop
        yield from walk(prop, f"{path}.{name}")
    if "items" in schema:
        yield f"{path}[]", schema["items"]
        yield from walk(schema["items"], f"{path}[]")


def at(schema: dict, path: str) -> dict:
    for part in path.strip(".").split("."):
        schema = schema["items"] if part == "[]" else schema["properties"][part]
    return schema


# ---------------------------------------------------------------- CRD


@pytest.mark.parametrize(
    "path, expected",
    [
        pytest.param("metadata.name", c.CRD_NAME, id="name"),
        pytest.param("spec.group", c.GROUP, id="group"),
        pytest.param("spec.scope", "Namespaced", id="scope"),
        pytest.param("spec.names.kind", c.KIND, id="kind"),
        pytest.param("spec.names.listKind", "ClusterList", id="list-kind"),
        pytest.param("spec.names.plural", c.PLURAL, id="plural"),
        pytest.param("spec.names.singular", "cluster", id="singular"),
        pytest.param("spec.names.shortNames", ["daskcluster", "daskclusters", "dc"], id="short-names"),
        pytest.param("spec.names.categories", ["dask"], id="categories"),
    ],
)
def test_crd_identity(crd, path, expected):
    value = crd
    for part in path.split("."):
        value = value[part]
    assert value == expected


def test_version_and_subresources(version):
    assert (version["name"], version["served"], version["storage"]) == (c.VERSION, True, True)
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.workers.replicas",
            "statusReplicasPath": ".status.workers.count",
            "labelSelectorPath": ".status.workers.selector",
        },
    }


@pytest.mark.parametrize(
    "name, json_path, type_",
    [
        pytest.param("Desired", ".spec.workers.replicas", "integer", id="desired"),
        pytest.param("Workers", ".status.workers.count", "integer", id="workers"),
        pytest.param("Ready", ".status.workers.ready", "integer", id="ready"),
        pytest.param("Phase", ".status.phase", "string", id="phase"),
        pytest.param("Age", ".metadata.creationTimestamp", "date", id="age"),
    ],
)
def test_printer_columns(version, name, json_path, type_):
    columns = {col["name"]: col for col in version["additionalPrinterColumns"]}
    assert (columns[name]["jsonPath"], columns[name]["type"]) == (json_path, type_)


def test_every_field_is_documented(schema):
    # The API server forbids anything but `type` on the root metadata.
    undocumented = [path for path, prop in walk(schema) if not prop.get("description") and path != ".metadata"]
    assert undocumented == []
    assert schema["description"]


@pytest.mark.parametrize(
    "path, expected",
    [
        pytest.param("spec", {"type": "object", "default": {}}, id="spec-defaults"),
        pytest.param("spec.workers", {"type": "object", "default": {}}, id="workers-defaults"),
        pytest.param(
            "spec.workers.replicas",
            {"type": "integer", "format": "int32", "default": 1, "minimum": 0, "maximum": 10000},
            id="replicas",
        ),
        pytest.param("spec.scheduler.service", {"type": "object", "x-kubernetes-preserve-unknown-fields": True}, id="service-open"),
        pytest.param("status.phase", {"enum": [PHASE_PENDING, PHASE_SCALING, PHASE_RUNNING]}, id="phase-enum"),
        # what the renderer reads or the children need is checked by the API server (test_render_properties)
        pytest.param("metadata.name", {"maxLength": MAX_NAME_LENGTH, "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
                     id="name-makes-valid-child-names"),
        pytest.param("spec.workers.template.spec.containers.[].name", {"pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                     id="container-name-dns-label"),
        pytest.param("spec.workers.template.spec.containers.[].ports.[].name", {"type": "string"}, id="port-name"),
        pytest.param("spec.workers.template.spec.containers.[].env.[]", {"type": "object", "required": ["name"]},
                     id="env-item"),
        pytest.param("spec.scheduler.template.spec.containers.[].securityContext", {"type": "object"},
                     id="container-security"),
        pytest.param("spec.scheduler.template.spec.initContainers.[].securityContext", {"type": "object"},
                     id="init-container-security"),
        pytest.param("spec.workers.template.spec.securityContext", {"type": "object"}, id="pod-security"),
        pytest.param("spec.scheduler.service.ports.[]", {"type": "object"}, id="service-ports"),
        pytest.param("spec.autoscaling.behavior.scaleUp.policies", {"minItems": 1}, id="policies-not-empty"),
        pytest.param("spec.autoscaling.behavior.scaleDown.tolerance", {"minimum": 0, "maxLength": 32},
                     id="tolerance-bounded"),
        pytest.param("status.conditions", {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}, id="conditions-map"),
    ],
)
def test_schema_fields(schema, path, expected):
    prop = at(schema, path)
    assert {k: prop.get(k) for k in expected} == expected


@pytest.mark.parametrize("template", ["spec.scheduler.template", "spec.workers.template"])
def test_pod_templates_open_only_where_they_must(schema, template):
    tpl = at(schema, template)
    assert tpl["x-kubernetes-preserve-unknown-fields"] is True
    assert at(schema, f"{template}.metadata.labels")["additionalProperties"] == {"type": "string"}
    pod_spec = at(schema, f"{template}.spec")
    assert pod_spec["required"] == ["containers"]
    rules = [v["rule"] for v in pod_spec["x-kubernetes-validations"]]
    assert "self.containers.all(c, self.containers.exists_one(d, d.name == c.name))" in rules
    containers = pod_spec["properties"]["containers"]
    assert containers["type"] == "array" and containers["maxItems"] > 0, "bounded for CEL cost"
    assert containers["items"]["required"] == ["name"]


def test_status_schema_covers_computed_status(schema):
    """Every field compute_status writes is in the schema, or the API server would prune it."""
    spec = ClusterSpec("dask", "ns", "u", 1, 2, {}, {}, {})
    pods = [WorkerPod("dask-worker-0", "Running", True, False, "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z")]
    status = compute_status(spec, pods, "tcp://x:8786", True, "SchedulerUnreachable", None, "2024-01-01T00:00:00Z")

    def paths(value, path="status"):
        if isinstance(value, dict):
            for k, v in value.items():
                yield f"{path}.{k}"
                yield from paths(v, f"{path}.{k}")
        elif isinstance(value, list):
            for item in value:
                yield from paths(item, f"{path}.[]")

    for path in paths(status):
        at(schema, path)


# ---------------------------------------------------------------- deploy/


@pytest.fixture(scope="module")
def deploy_docs() -> list[dict]:
    return load_all(ROOT / "deploy" / "rbac.yaml") + load_all(ROOT / "deploy" / "operator.yaml")


def test_cluster_role_is_least_privilege(deploy_docs):
    rules = find(deploy_docs, "ClusterRole", "dask-operator")["rules"]
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("", "pods", "delete") in granted
    assert (c.GROUP, "clusters/status", "patch") in granted
    assert not any(r == "secrets" for _, r, _ in granted)
    assert not any(v in {"delete", "deletecollection"} for g, r, v in granted if r != "pods")


def test_binding_targets_the_service_account(deploy_docs):
    binding = find(deploy_docs, "ClusterRoleBinding", "dask-operator")
    assert binding["roleRef"]["name"] == "dask-operator"
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [("ServiceAccount", "dask-operator")]
    find(deploy_docs, "ServiceAccount", "dask-operator")


def test_operator_deployment(deploy_docs):
    deployment = find(deploy_docs, "Deployment", "dask-operator")
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert deployment["spec"]["replicas"] == 1
    assert pod_spec["serviceAccountName"] == "dask-operator"
    assert container["image"] == "ghcr.io/charmtx/dask-operator:0.1.0"
    assert container["args"] == ["run", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "8000"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8000, "health": 8080}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["port"] in (8080, "health")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert restricted_violations(pod_spec) == []


def test_metrics_service(deploy_docs):
    service = find(deploy_docs, "Service", "dask-operator-metrics")
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "dask-operator"
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]


@pytest.mark.parametrize(
    "bad_pod, violation",
    [
        pytest.param({"containers": [{"name": "x"}]}, "allowPrivilegeEscalation", id="bare"),
        pytest.param(
            {
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "x", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}],
            },
            "NET_BIND_SERVICE",
            id="adds-capability",
        ),
        pytest.param(
            {
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "Unconfined"}},
                "containers": [{"name": "x", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
            },
            "seccompProfile",
            id="unconfined",
        ),
        pytest.param(
            {
                "hostNetwork": True,
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "x", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
            },
            "hostNetwork",
            id="host-network",
        ),
    ],
)
def test_pss_checker_catches(bad_pod, violation):
    assert any(violation in problem for problem in restricted_violations(bad_pod))


def test_dockerfile():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "FROM python:3.12-slim" in text
    assert "USER 1000" in text
    assert 'ENTRYPOINT ["dask-operator"]' in text


# ---------------------------------------------------------------- kustomize


@needs_kubectl
@pytest.mark.parametrize("directory", [".", "deploy"])
def test_operator_kustomizations_render(directory):
    kinds = sorted(doc["kind"] for doc in kustomize(directory))
    assert kinds == sorted(
        ["CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
    )


@needs_kubectl
def test_crd_renders_with_anchor_expanded():
    crd = find(kustomize("deploy"), "CustomResourceDefinition")
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert props["workers"]["properties"]["template"] == props["scheduler"]["properties"]["template"]


@needs_kubectl
def test_example_is_the_cluster_and_its_scheduler_policy():
    """`kubectl apply -k example/` then `kubectl scale` (seed 003): no HPA to undo the scale; the
    NetworkPolicy fencing the scheduler comes along (its semantics: test_network_policy.py)."""
    docs = kustomize("example")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("Cluster", "example-dask"), ("NetworkPolicy", "example-dask-scheduler")]


@needs_kubectl
def test_example_autoscaling_renders_with_prefix():
    docs = kustomize("example/autoscaling")
    cluster = find(docs, "Cluster")
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert cluster["apiVersion"] == c.API_VERSION
    assert cluster["metadata"]["name"] == "example-dask"
    assert hpa["metadata"]["name"] == "example-dask"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": c.API_VERSION, "kind": "Cluster", "name": "example-dask"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Object"
    assert metric["object"]["metric"] == {"name": "desired_workers"}
    assert metric["object"]["describedObject"] == {"apiVersion": c.API_VERSION, "kind": "Cluster", "name": "example-dask"}
    assert metric["object"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)
    assert cluster["spec"]["workers"]["replicas"] == 1


# ---------------------------------------------------------------- adapter-rules/


@pytest.mark.parametrize(
    "role, series_query, matches, as_, cluster_label",
    [
        pytest.param(
            "scheduler",
            'dask_scheduler_desired_workers{namespace!="",service!=""}',
            "^(dask)_scheduler_(.*)$",
            "$1_$2",
            "job",
            id="scheduler",
        ),
        pytest.param(
            "operator",
            'dask_operator_cluster_desired_workers{namespace!="",cluster!=""}',
            "^dask_operator_cluster_(desired_workers)$",
            "${1}",
            "cluster",
            id="operator",
        ),
    ],
)
def test_adapter_rules(role, series_query, matches, as_, cluster_label):
    text = (ROOT / "adapter-rules" / f"{role}.yaml").read_text()
    (rule,) = yaml.safe_load(text)["rules"]
    assert rule["seriesQuery"] == series_query
    assert rule["name"] == {"matches": matches, "as": as_}
    assert rule["resources"]["overrides"] == {
        cluster_label: {"group": c.GROUP, "resource": "cluster"},
        "namespace": {"resource": "namespace"},
    }
    configmap = yaml.safe_load((ROOT / "adapter-rules" / f"{role}-configmap.yaml").read_text())
    assert configmap["kind"] == "ConfigMap"
    assert configmap["data"]["config.yaml"] == text, "the ConfigMap holds the rule file verbatim"
