"""Hypothesis strategies of Cluster resources (dask.charmtx.com/v1alpha1), shared by
tests/unit/test_render_properties.py and tests/e2e/test_crd_properties.py.

`clusters()`: bodies deploy/crd.yaml accepts whose pod templates and Service
overrides are ones Kubernetes accepts too (the CRD leaves the rest of a PodSpec
to the API server when the pods are made): any DNS-1035 name up to 53
characters, sidecars and init containers, ports (some named or numbered as the
Dask defaults), env, resources, security contexts, labels and annotations,
Service overrides, replicas 0-10000, `spec.autoscaling`.

`bad_clusters()`: a valid body broken in one place, as a `Bad`: the body, the
field the API server's message must name, and which pure parser must refuse it
too (`spec`: ClusterSpec.from_resource, `autoscaling`: hpa_spec_of, None: the
API server alone checks it).
"""

from __future__ import annotations

import copy
import string
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
NAME = st.from_regex(r"[a-z]([-a-z0-9]{0,51}[a-z0-9])?", fullmatch=True)
DNS_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?", fullmatch=True)
LABEL_NAME = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,14}[A-Za-z0-9])?", fullmatch=True)
LABEL_KEY = st.builds("{}{}".format, st.sampled_from(["", "example.com/", "app.kubernetes.io/", "dask.charmtx.com/"]),
                      LABEL_NAME)
LABEL_VALUE = st.one_of(st.just(""), LABEL_NAME)
IMAGES = st.sampled_from(["ghcr.io/dask/dask:latest", "busybox", "registry.example.com:5000/team/img@sha256:"
                          + "a" * 64])
PORT_NAMES = ["tcp-comm", "http-dashboard", "metrics"]  # two of three are the defaults' names
PORT_NUMBERS = st.one_of(st.sampled_from([8786, 8787, 8788]), st.integers(1, 65535))
ROLES = ("scheduler", "workers")


def crd_schema() -> dict:
    """The openAPIV3Schema of deploy/crd.yaml."""
    crd = yaml.safe_load((ROOT / "deploy" / "crd.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


TOLERANCE_PATTERN = crd_schema()["properties"]["spec"]["properties"]["autoscaling"]["properties"]["behavior"][
    "properties"]["scaleUp"]["properties"]["tolerance"]["pattern"]


def _optional(draw, target: dict, key: str, strategy) -> None:
    if draw(st.booleans()):
        target[key] = draw(strategy)


@st.composite
def resources(draw) -> dict:
    cpu, memory = draw(st.integers(1, 4000)), draw(st.integers(1, 4096))
    requests = {"cpu": f"{cpu}m", "memory": f"{memory}Mi"}
    limits = {"cpu": f"{cpu + draw(st.integers(0, 4000))}m", "memory": f"{memory + draw(st.integers(0, 4096))}Mi"}
    return draw(st.sampled_from([{}, {"requests": requests}, {"limits": limits},
                                 {"requests": requests, "limits": limits}]))


@st.composite
def security_context(draw) -> dict:
    ctx: dict = {}
    _optional(draw, ctx, "runAsUser", st.sampled_from([0, 1000, 65534]))
    _optional(draw, ctx, "privileged", st.booleans())
    if not ctx.get("privileged"):  # privileged with allowPrivilegeEscalation false is refused
        _optional(draw, ctx, "allowPrivilegeEscalation", st.booleans())
    _optional(draw, ctx, "readOnlyRootFilesystem", st.booleans())
    _optional(draw, ctx, "capabilities", st.just({"add": ["NET_BIND_SERVICE"]}))
    return ctx


@st.composite
def container(draw, name: str, main: bool, ports: list[tuple[str, int]]) -> dict:
    ct: dict = {"name": name}
    if not main or draw(st.booleans()):  # the operator defaults only the main container's image
        ct["image"] = draw(IMAGES)
    _optional(draw, ct, "command", st.lists(TEXT, min_size=1, max_size=3))
    _optional(draw, ct, "args", st.lists(TEXT, max_size=3))
    if ports:
        ct["ports"] = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports]
    _optional(draw, ct, "env", st.lists(st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["DASK_WORKER_NAME", "DASK_SCHEDULER_ADDRESS"]),
                           st.from_regex(r"[A-Z_][A-Z0-9_]{0,15}", fullmatch=True)),
         "value": TEXT}), max_size=3))
    _optional(draw, ct, "resources", resources())
    _optional(draw, ct, "securityContext", security_context())
    return ct


@st.composite
def pod_template(draw, role: str) -> dict:
    names = draw(st.lists(DNS_LABEL, min_size=1, max_size=3, unique=True))
    # port names are unique in a pod; each (name, number) goes to one container
    ports = draw(st.lists(st.tuples(st.sampled_from(PORT_NAMES), PORT_NUMBERS), max_size=4, unique_by=lambda p: p[0]))
    owner = [draw(st.integers(0, len(names) - 1)) for _ in ports]
    containers = [draw(container(n, i == 0, [p for p, o in zip(ports, owner) if o == i])) for i, n in enumerate(names)]
    pod: dict = {"containers": containers}
    _optional(draw, pod, "initContainers", st.lists(
        st.builds(lambda i, image, ctx: {"name": f"init-{i}", "image": image, "securityContext": ctx},
                  st.integers(0, 99), IMAGES, security_context()), max_size=2, unique_by=lambda c: c["name"]))
    _optional(draw, pod, "securityContext", st.fixed_dictionaries(
        {}, optional={"runAsUser": st.sampled_from([0, 1000]), "fsGroup": st.integers(0, 65535),
                      "runAsNonRoot": st.booleans()}))
    _optional(draw, pod, "terminationGracePeriodSeconds", st.integers(0, 600))
    _optional(draw, pod, "nodeSelector", st.dictionaries(LABEL_KEY, LABEL_VALUE, max_size=2))
    if role == "workers":  # a Deployment's pods must restart Always
        _optional(draw, pod, "restartPolicy", st.sampled_from(["Always", "OnFailure", "Never"]))
    template: dict = {}
    _optional(draw, template, "metadata", st.fixed_dictionaries(
        {}, optional={"labels": st.dictionaries(LABEL_KEY, LABEL_VALUE, max_size=3),
                      "annotations": st.dictionaries(LABEL_KEY, TEXT, max_size=2)}))
    if draw(st.booleans()) or "metadata" not in template:
        template["spec"] = pod
    return template


@st.composite
def service(draw) -> dict:
    svc: dict = {}
    _optional(draw, svc, "type", st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    _optional(draw, svc, "sessionAffinity", st.sampled_from(["None", "ClientIP"]))
    _optional(draw, svc, "publishNotReadyAddresses", st.booleans())
    names = draw(st.lists(st.sampled_from(["tcp-comm", "http-dashboard", "extra"]), unique=True))
    numbers = draw(st.lists(st.integers(9000, 9999), min_size=len(names), max_size=len(names), unique=True))
    if names:
        svc["ports"] = [{"name": n, "port": p, "protocol": "TCP"} for n, p in zip(names, numbers)]
    return svc


@st.composite
def scaling_rules(draw) -> dict:
    rules: dict = {}
    _optional(draw, rules, "stabilizationWindowSeconds", st.integers(0, 3600))
    _optional(draw, rules, "selectPolicy", st.sampled_from(["Max", "Min", "Disabled"]))
    _optional(draw, rules, "tolerance", st.one_of(
        st.integers(0, 10), st.from_regex(TOLERANCE_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 32)))
    _optional(draw, rules, "policies", st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["Pods", "Percent"]), "value": st.integers(1, 1000),
         "periodSeconds": st.integers(1, 1800)}), min_size=1, max_size=3))
    return rules


@st.composite
def autoscaling(draw) -> dict:
    maximum = draw(st.integers(1, 10000))
    spec: dict = {"maxReplicas": maximum}
    _optional(draw, spec, "minReplicas", st.integers(0, maximum))
    _optional(draw, spec, "behavior", st.fixed_dictionaries(
        {}, optional={"scaleUp": scaling_rules(), "scaleDown": scaling_rules()}))
    return spec


@st.composite
def clusters(draw) -> dict:
    spec: dict = {}
    for role in ROLES:
        section: dict = {}
        _optional(draw, section, "template", pod_template(role))
        if role == "scheduler":
            _optional(draw, section, "service", service())
        else:
            _optional(draw, section, "replicas", st.integers(0, 10000))
        _optional(draw, spec, role, st.just(section))
    _optional(draw, spec, "autoscaling", autoscaling())
    return {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "metadata": {"name": draw(NAME)},
            "spec": spec}


# ---------------------------------------------------------------- invalid


@dataclass(frozen=True)
class Bad:
    body: dict
    field: str  # the API server's message and the parser's must name it
    parser: str | None  # "spec", "autoscaling" or None

    def __repr__(self) -> str:
        return f"Bad({self.field!r}, parser={self.parser}, body={self.body!r})"


BAD_NAMES = st.one_of(
    st.from_regex(r"[0-9][-a-z0-9]{0,20}", fullmatch=True), st.from_regex(r"[a-z]{1,10}[.A-Z_][a-z]{1,10}", fullmatch=True),
    st.from_regex(r"[a-z][-a-z0-9]{53,61}[a-z]", fullmatch=True), st.from_regex(r"[a-z]{1,10}-", fullmatch=True))
NOT_OBJECT = st.one_of(st.integers(), TEXT, st.lists(st.integers(), min_size=1, max_size=2))
NOT_LIST = st.one_of(st.integers(), TEXT, st.just({"a": 1}))
NOT_INTEGER = st.one_of(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)), TEXT,
                        st.booleans(), st.just([1]))
BAD_CONTAINER_NAMES = st.one_of(st.just(""), st.from_regex(r"[a-z]{0,5}[A-Z_.][a-z]{0,5}", fullmatch=True),
                                st.from_regex(r"[a-z]{64,70}", fullmatch=True))


def _with(body: dict, path: str, value) -> dict:
    """A copy of body with the dotted path set (missing objects made on the way)."""
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[int(last) if isinstance(node, list) else last] = value
    return body


@st.composite
def bad_clusters(draw) -> Bad:
    """One valid body, broken once."""
    body = draw(clusters())
    body["metadata"]["name"] = "bad"  # kept unless the name is what breaks
    role = draw(st.sampled_from(ROLES))
    tpl = f"spec.{role}.template"
    ct = f"{tpl}.spec.containers[0]"
    one = {"name": "c", "image": "busybox"}
    cases = {
        "name": lambda: Bad(_with(body, "metadata.name", draw(BAD_NAMES)), "metadata.name", "spec"),
        "section": lambda: Bad(_with(body, f"spec.{role}", draw(NOT_OBJECT)), f"spec.{role}", "spec"),
        "replicas": lambda: Bad(_with(body, "spec.workers.replicas", draw(st.one_of(
            NOT_INTEGER, st.integers(-2**63, -1), st.integers(10001, 2**63 - 1)))), "spec.workers.replicas", "spec"),
        "template": lambda: Bad(_with(body, tpl, draw(NOT_OBJECT)), tpl, "spec"),
        "labels": lambda: Bad(_with(body, f"{tpl}.metadata.labels", draw(NOT_OBJECT)), f"{tpl}.metadata.labels",
                              "spec"),
        "label-value": lambda: Bad(_with(body, f"{tpl}.metadata.labels", {"a": draw(st.integers())}),
                                   f"{tpl}.metadata.labels.a", None),
        "containers": lambda: Bad(_with(body, f"{tpl}.spec.containers", draw(NOT_LIST)), f"{tpl}.spec.containers",
                                  "spec"),
        "no-containers": lambda: Bad(_with(body, f"{tpl}.spec", {"containers": draw(st.sampled_from([[], None]))}),
                                     f"{tpl}.spec.containers", None),
        "too-many": lambda: Bad(_with(body, f"{tpl}.spec.containers", [{"name": f"c{i}"} for i in range(33)]),
                                f"{tpl}.spec.containers", None),
        "container": lambda: Bad(_with(body, f"{tpl}.spec.containers", [draw(NOT_OBJECT)]),
                                 f"{tpl}.spec.containers[0]", "spec"),
        "unnamed": lambda: Bad(_with(body, f"{tpl}.spec.containers", [{"image": "x"}]), f"{tpl}.spec.containers[0].name",
                               None),
        "container-name": lambda: Bad(_with(body, f"{tpl}.spec.containers", [{"name": draw(BAD_CONTAINER_NAMES)}]),
                                      f"{tpl}.spec.containers[0].name", None),
        "duplicate": lambda: Bad(_with(body, f"{tpl}.spec.containers", [one, one]), f"{tpl}.spec", None),
        "ports": lambda: Bad(_with(body, f"{tpl}.spec.containers", [{**one, "ports": draw(NOT_LIST)}]),
                             f"{ct}.ports", "spec"),
        "port-name": lambda: Bad(_with(body, f"{tpl}.spec.containers", [{**one, "ports": [{"name": [1]}]}]),
                                 f"{ct}.ports[0].name", "spec"),
        "env": lambda: Bad(_with(body, f"{tpl}.spec.containers", [{**one, "env": [draw(NOT_OBJECT)]}]),
                           f"{ct}.env[0]", "spec"),
        "security": lambda: Bad(_with(body, f"{tpl}.spec.containers", [{**one, "securityContext": draw(NOT_OBJECT)}]),
                                f"{ct}.securityContext", "spec"),
        "pod-security": lambda: Bad(_with(body, f"{tpl}.spec", {"containers": [one], "securityContext": draw(NOT_OBJECT)}),
                                    f"{tpl}.spec.securityContext", "spec"),
        "init": lambda: Bad(_with(body, f"{tpl}.spec", {"containers": [one], "initContainers": draw(NOT_LIST)}),
                            f"{tpl}.spec.initContainers", "spec"),
        "service-ports": lambda: Bad(_with(body, "spec.scheduler.service", {"ports": draw(NOT_LIST)}),
                                     "spec.scheduler.service.ports", "spec"),
        "max-replicas": lambda: Bad(_with(body, "spec.autoscaling", {"minReplicas": 1}), "spec.autoscaling.maxReplicas",
                                    "autoscaling"),
        "min-over-max": lambda: Bad(_with(body, "spec.autoscaling", {"minReplicas": 9, "maxReplicas": draw(
            st.integers(1, 8))}), "spec.autoscaling", "autoscaling"),
        "rules": lambda: bad_rules(draw, body),
    }
    return cases[draw(st.sampled_from(sorted(cases)))]()


def bad_rules(draw, body: dict) -> Bad:
    where = f"spec.autoscaling.behavior.{draw(st.sampled_from(['scaleUp', 'scaleDown']))}"
    field, value = draw(st.sampled_from([
        ("stabilizationWindowSeconds", st.one_of(st.integers(-2**31, -1), st.integers(3601, 2**31 - 1))),
        ("selectPolicy", TEXT.filter(lambda s: s not in ("Max", "Min", "Disabled"))),
        ("policies", st.just([])),
        ("tolerance", st.one_of(st.integers(-2**31, -1), st.from_regex(r"-[1-9][0-9]{0,2}(\.[0-9])?", fullmatch=True),
                                st.text(string.ascii_letters, min_size=1, max_size=5), st.just("1e999999999"))),
    ]))
    return Bad(_with(body, "spec.autoscaling", {"maxReplicas": 5, "behavior": {where.rsplit(".", 1)[1]: {
        field: draw(value)}}}), f"{where}.{field}", "autoscaling")
