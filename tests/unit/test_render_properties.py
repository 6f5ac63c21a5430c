"""ClusterSpec.from_resource and the renderers on generated Clusters (hypothesis).

Rules, for every body of `cluster_strategies.clusters()` (what deploy/crd.yaml
accepts, as the API server stores it: namespace, uid and generation set):

- it parses, and renders (scheduler Service and Deployment, worker pods) without
  raising, twice to the same objects, without changing the body;
- names: ``<name>-scheduler`` is a DNS-1035 label, worker pods' names DNS
  subdomains; every label value is a valid label value;
- every object carries ``dask.charmtx.com/role`` and ``dask.charmtx.com/cluster
  = <name>`` (the user's labels too, never over the operator's) and one
  controller owner reference to the Cluster;
- replicas, the user's containers (names, order, images, resources, env
  values) are as given, the operator's defaults only where the template
  leaves them out; port names are unique in each pod and in the Service;
- ``spec.autoscaling`` turns into an HPA spec with the bounds as given.

For every body of `bad_clusters()` (one field broken): parsing and rendering
raise nothing but InvalidSpec (never a crash of the operator), and the parser
that owns the field (`Bad.parser`) refuses it naming that field.

Examples are derandomized (a fixed seed): CI runs the same cases every time.
"""

from __future__ import annotations

import copy
import re

import pytest
from cluster_strategies import Bad, bad_clusters, clusters
from hypothesis import HealthCheck, given, settings

from dask_operator import constants as c
from dask_operator.core import manifests as m
from dask_operator.core.cluster_autoscaling import hpa_spec_of
from dask_operator.core.hpa_quantity import InvalidQuantity, parse_quantity
from dask_operator.core.k8s_names import DNS_LABEL_RE, DNS_SUBDOMAIN_RE
from dask_operator.core.spec import ClusterSpec
from dask_operator.errors import InvalidAutoscaling, InvalidSpec

LABEL_VALUE_RE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
DNS1035_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
PROPERTIES = settings(derandomize=True, database=None, deadline=None, max_examples=100,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def stored(body: dict) -> dict:
    """The body as the API server hands it to the operator."""
    body = copy.deepcopy(body)
    body["metadata"].update(namespace="ns", uid="0b8c1f6e-3c1a-4b7e-9d1e-2f0a6c3b5d7e", generation=1)
    return body


def render(spec: ClusterSpec) -> list[dict]:
    last = max(spec.replicas - 1, 0)
    return [m.scheduler_service(spec), m.scheduler_deployment(spec),
            m.worker_pod(spec, m.worker_pod_name(spec.name, 0)), m.worker_pod(spec, m.worker_pod_name(spec.name, last))]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]


def user_containers(body: dict, role: str) -> list[dict]:
    template = ((body["spec"].get(role) or {}).get("template") or {})
    return (template.get("spec") or {}).get("containers") or []


@PROPERTIES
@given(clusters())
def test_valid_clusters_parse_and_render(body):
    body = stored(body)
    before = copy.deepcopy(body)
    spec = ClusterSpec.from_resource(body)
    objects = render(spec)
    assert objects == render(ClusterSpec.from_resource(body)), "rendering is deterministic"
    assert body == before, "rendering leaves the body alone"
    name = body["metadata"]["name"]
    assert spec.replicas == (body["spec"].get("workers") or {}).get("replicas", 1)

    service, deployment, *workers = objects
    assert service["metadata"]["name"] == deployment["metadata"]["name"] == f"{name}-scheduler"
    assert len(service["metadata"]["name"]) <= 63 and DNS1035_RE.fullmatch(service["metadata"]["name"])
    for pod in workers:
        assert DNS_SUBDOMAIN_RE.fullmatch(pod["metadata"]["name"])
    assert deployment["spec"]["replicas"] == 1
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == m.labels(name, "scheduler")
    ports = service["spec"]["ports"]
    assert len({p["name"] for p in ports}) == len({p["port"] for p in ports}) == len(ports)
    assert {c.PORT_NAME_COMM, c.PORT_NAME_DASHBOARD} <= {p["name"] for p in ports}

    for obj, role, carriers in [(service, "scheduler", [service["metadata"]]),
                                (deployment, "scheduler", [deployment["metadata"], deployment["spec"]["template"]["metadata"]]),
                                *[(w, "workers", [w["metadata"]]) for w in workers]]:
        assert obj["metadata"]["ownerReferences"] == [m.owner_reference(spec)]
        assert obj["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
        template = (body["spec"].get(role) or {}).get("template") or {}
        mine = (template.get("metadata") or {}).get("labels") or {}
        for meta in carriers:
            labels = meta["labels"]
            assert labels[c.LABEL_CLUSTER] == name and labels[c.LABEL_ROLE] == role.rstrip("s")
            assert all(len(v) <= 63 and LABEL_VALUE_RE.fullmatch(v) for v in labels.values())
            if obj is not service:
                assert {k: v for k, v in mine.items() if not k.startswith(c.LABEL_PREFIX)}.items() <= labels.items()
        if obj is not service:
            check_pod(pod_spec(obj), user_containers(body, role), role)

    if "autoscaling" in body["spec"]:
        hpa = hpa_spec_of(name, body["spec"]["autoscaling"])
        assert hpa.max_replicas == body["spec"]["autoscaling"]["maxReplicas"]
        assert hpa.min_replicas == body["spec"]["autoscaling"].get("minReplicas", 1)


def check_pod(pod: dict, given: list[dict], role: str) -> None:
    containers = pod["containers"]
    assert [ct["name"] for ct in containers[:len(given)]] == [ct["name"] for ct in given]
    assert len(containers) == max(len(given), 1)
    main = containers[0]
    assert main["name"] == (given[0]["name"] if given else role.rstrip("s"))
    assert main["image"] == (given[0].get("image", c.DEFAULT_IMAGE) if given else c.DEFAULT_IMAGE)
    assert main["resources"] == (given[0].get("resources", m.DEFAULT_RESOURCES) if given else m.DEFAULT_RESOURCES)
    env = {e["name"]: e.get("value") for e in main["env"]}
    for e in (given[0].get("env") or []) if given else []:
        assert e["name"] in env
    if role == "workers":
        assert {m.ENV_SCHEDULER_ADDRESS, m.ENV_WORKER_NAME} <= env.keys()
    port_names = [p["name"] for ct in containers + pod.get("initContainers", []) for p in ct.get("ports", [])]
    assert len(port_names) == len(set(port_names)), f"port names repeat in the pod: {port_names}"
    for ct in containers + pod.get("initContainers", []):
        ctx = ct["securityContext"]
        assert "capabilities" in ctx
        assert ctx.get("privileged") or "allowPrivilegeEscalation" in ctx


@PROPERTIES
@given(bad_clusters())
def test_invalid_clusters_are_refused_naming_the_field(bad: Bad):
    body = stored(bad.body)
    try:
        render(ClusterSpec.from_resource(body))
    except InvalidSpec as e:
        assert bad.parser == "spec" and bad.field in str(e), f"{bad}: {e}"
    else:
        assert bad.parser != "spec", f"the parser took {bad}"
    if bad.parser == "autoscaling":
        with pytest.raises(InvalidAutoscaling) as refused:
            hpa_spec_of("bad", body["spec"]["autoscaling"])
        assert refused.value.field.startswith(bad.field), f"{bad}: {refused.value}"


# ---------------------------------------------------------------- the bugs these properties found


@pytest.mark.parametrize("name, ok", [
    pytest.param("a" * 53, True, id="53-chars"),
    pytest.param("a" * 54, False, id="54-chars-service-name-over-63"),
    pytest.param("1dask", False, id="leading-digit-not-a-dns-1035-service-name"),
    pytest.param("a.b", False, id="dots-not-a-service-name"),
    pytest.param("Dask", False, id="upper-case"),
])
def test_cluster_name_must_make_valid_child_names(name, ok):
    body = stored({"metadata": {"name": name}, "spec": {}})
    if ok:
        assert DNS_LABEL_RE.fullmatch(m.scheduler_service(ClusterSpec.from_resource(body))["metadata"]["name"])
    else:
        with pytest.raises(InvalidSpec, match="metadata.name"):
            ClusterSpec.from_resource(body)


CT = "spec.workers.template.spec.containers[0]"


@pytest.mark.parametrize("workers, field", [
    pytest.param({"template": {"spec": {"containers": [{"name": "w", "ports": "x"}]}}}, f"{CT}.ports", id="ports"),
    pytest.param({"template": {"spec": {"containers": [{"name": "w", "ports": [{"name": ["x"]}]}]}}},
                 f"{CT}.ports[0].name", id="port-name-unhashable"),
    pytest.param({"template": {"spec": {"containers": [{"name": "w", "ports": [{"containerPort": "1"}]}]}}},
                 f"{CT}.ports[0].containerPort", id="container-port"),
    pytest.param({"template": {"spec": {"containers": [{"name": "w", "env": [1]}]}}}, f"{CT}.env[0]", id="env-item"),
    pytest.param({"template": {"spec": {"containers": [{"name": "w", "securityContext": "x"}]}}},
                 f"{CT}.securityContext", id="container-security"),
    pytest.param({"template": {"spec": {"containers": [{"name": "w"}], "securityContext": 1}}},
                 "spec.workers.template.spec.securityContext", id="pod-security"),
    pytest.param({"template": {"spec": {"containers": [{"name": "w"}], "initContainers": "x"}}},
                 "spec.workers.template.spec.initContainers", id="init-containers"),
    pytest.param({"template": {"spec": {"containers": [{"name": "w"}], "initContainers": [1]}}},
                 "spec.workers.template.spec.initContainers[0]", id="init-container-item"),
    pytest.param({"replicas": 10001}, "spec.workers.replicas", id="replicas-over-the-crd-maximum"),
])
def test_fields_the_renderer_reads_are_typed(workers, field):
    """Each of these crashed the renderer (AttributeError/TypeError: kopf retried forever)."""
    with pytest.raises(InvalidSpec, match=re.escape(field)):
        ClusterSpec.from_resource(stored({"metadata": {"name": "d"}, "spec": {"workers": workers}}))


def test_service_ports_are_typed():
    body = stored({"metadata": {"name": "d"}, "spec": {"scheduler": {"service": {"ports": [1]}}}})
    with pytest.raises(InvalidSpec, match=re.escape("spec.scheduler.service.ports[0]")):
        ClusterSpec.from_resource(body)


@pytest.mark.parametrize("role, build", [
    pytest.param("scheduler", m.scheduler_deployment, id="scheduler"),
    pytest.param("workers", lambda spec: m.worker_pod(spec, "d-worker-0"), id="worker"),
])
def test_a_default_port_name_a_sidecar_declares_is_left_out(role, build):
    """A sidecar's port named http-dashboard made two ports of that name in the pod: refused."""
    sidecar = {"name": "side", "image": "busybox", "ports": [{"name": "http-dashboard", "containerPort": 9}]}
    body = stored({"metadata": {"name": "d"}, "spec": {role: {"template": {"spec": {"containers": [
        {"name": "main"}, sidecar]}}}}})
    main, side = pod_spec(build(ClusterSpec.from_resource(body)))["containers"]
    assert "http-dashboard" not in [p["name"] for p in main["ports"]]
    assert side["ports"] == sidecar["ports"]


@pytest.mark.parametrize("value", ["1e999999999", "1e-101", "5E101"])
def test_a_huge_exponent_is_refused_at_once(value):
    """'1e999999999' as a tolerance took the operator's event loop hours and gigabytes."""
    with pytest.raises(InvalidQuantity, match="exponent"):
        parse_quantity(value)
    assert parse_quantity("1e100") == 10**100
