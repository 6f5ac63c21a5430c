"""Child manifests: names, labels, owner references and documented defaults."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import dask.config
import distributed
import pytest
import yaml
from distributed.cli.dask_worker import main as dask_worker_cli
from pss_check import restricted_violations

from dask_operator import constants as c
from dask_operator.core import manifests as m
from dask_operator.core.pod_security import DEFAULT_CONTAINER_SECURITY_CONTEXT
from dask_operator.core.spec import ClusterSpec

CORE = pathlib.Path(m.__file__).parent
SCHED = {c.LABEL_ROLE: "scheduler", c.LABEL_CLUSTER: "dask"}
WORKER = {c.LABEL_ROLE: "worker", c.LABEL_CLUSTER: "dask"}


def make_spec(scheduler=None, service=None, worker=None, uid="u-1") -> ClusterSpec:
    return ClusterSpec("dask", "ns", uid, 1, 2, scheduler or {}, service or {}, worker or {})


def with_containers(*containers, **pod) -> dict:
    return {"spec": {"containers": list(containers), **pod}}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def main_container(obj: dict) -> dict:
    pod_spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]
    return pod_spec["containers"][0]


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "fn, args, expected",
    [
        pytest.param(m.worker_pod_name, ("dask", 0), "dask-worker-0", id="worker-name"),
        pytest.param(m.worker_pod_name, ("a-b", 17), "a-b-worker-17", id="worker-name-index"),
        pytest.param(m.scheduler_name, ("dask",), "dask-scheduler", id="scheduler-name"),
        pytest.param(m.cluster_children_selector, ("dask",), "dask.charmtx.com/cluster=dask", id="children"),
        pytest.param(
            m.worker_selector, ("dask",), "dask.charmtx.com/cluster=dask,dask.charmtx.com/role=worker", id="workers"
        ),
        pytest.param(
            m.scheduler_selector,
            ("dask",),
            "dask.charmtx.com/cluster=dask,dask.charmtx.com/role=scheduler",
            id="scheduler",
        ),
        pytest.param(m.scheduler_address, (make_spec(),), "tcp://dask-scheduler.ns.svc:8786", id="address"),
        pytest.param(m.scheduler_http_url, (make_spec(),), "http://dask-scheduler.ns.svc:8787", id="http-url"),
        pytest.param(m.scheduler_http_url, (make_spec(), "10.0.0.7"), "http://10.0.0.7:8787", id="http-url-pod-ip"),
    ],
)
def test_names_and_selectors(fn, args, expected):
    assert fn(*args) == expected


# ---------------------------------------------------------------- labels and owners


@pytest.mark.parametrize(
    "build, role_labels",
    [
        pytest.param(lambda s: m.scheduler_deployment(s), SCHED, id="deployment"),
        pytest.param(lambda s: m.scheduler_service(s), SCHED, id="service"),
        pytest.param(lambda s: m.worker_pod(s, "dask-worker-0"), WORKER, id="worker"),
    ],
)
def test_children_have_labels_and_owner(build, role_labels):
    obj = build(make_spec())
    assert obj["metadata"]["labels"].items() >= role_labels.items()
    assert obj["metadata"]["namespace"] == "ns"
    assert obj["metadata"]["ownerReferences"] == [
        {
            "apiVersion": c.API_VERSION,
            "kind": "Cluster",
            "name": "dask",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert "ownerReferences" not in build(make_spec(uid=""))["metadata"]


def test_deployment_shape():
    template = {"metadata": {"labels": {"team": "a", c.LABEL_ROLE: "hijack"}, "annotations": {"x": "y"}}}
    deployment = m.scheduler_deployment(make_spec(scheduler=template))
    assert deployment["metadata"]["name"] == "dask-scheduler"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["selector"] == {"matchLabels": SCHED}
    pod_meta = deployment["spec"]["template"]["metadata"]
    assert pod_meta["labels"] == {**SCHED, "team": "a"}
    assert pod_meta["annotations"] == {"x": "y"}
    assert deployment["metadata"]["labels"] == {**SCHED, "team": "a"}


# ---------------------------------------------------------------- scheduler container


def test_scheduler_container_defaults():
    container = main_container(m.scheduler_deployment(make_spec()))
    assert container["name"] == "scheduler"
    assert container["image"] == c.DEFAULT_IMAGE
    assert container["command"] == ["dask", "scheduler"]
    assert "args" not in container
    assert container["ports"] == [
        {"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
        {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"},
    ]
    assert container["resources"] == m.DEFAULT_RESOURCES
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/health", "port": "http-dashboard"},
        "periodSeconds": 2,
        "failureThreshold": 3,
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http-dashboard"}
    assert container["livenessProbe"]["initialDelaySeconds"] == 10


def test_scheduler_routes_env_parses_as_dask_config():
    container = main_container(m.scheduler_deployment(make_spec()))
    config = dask.config.collect_env(env_of(container))
    routes = config["distributed"]["scheduler"]["http"]["routes"]
    assert routes == list(c.SCHEDULER_HTTP_ROUTES)
    defaults = yaml.safe_load(
        (pathlib.Path(distributed.__file__).parent / "distributed.yaml").read_text()
    )["distributed"]["scheduler"]["http"]["routes"]
    assert set(defaults) <= set(routes), "the default routes are kept"
    assert {"distributed.http.scheduler.api", "distributed.http.scheduler.prometheus", "distributed.http.health"} <= set(routes)


@pytest.mark.parametrize(
    "container, expect",
    [
        pytest.param({"command": ["python", "-m", "x"]}, {"command": ["python", "-m", "x"]}, id="own-command"),
        pytest.param({"args": ["dask", "scheduler", "--port", "1"]}, {"command": None}, id="args-only-no-command"),
        pytest.param({"name": "main", "image": "me/dask:1"}, {"name": "main", "image": "me/dask:1"}, id="name-image-kept"),
        pytest.param(
            {"resources": {"requests": {"memory": "8Gi"}}},
            {"resources": {"requests": {"memory": "8Gi"}}},
            id="resources-kept-whole",
        ),
        pytest.param(
            {"readinessProbe": {"tcpSocket": {"port": 8786}}},
            {"readinessProbe": {"tcpSocket": {"port": 8786}}},
            id="own-probe",
        ),
    ],
)
def test_scheduler_template_wins(container, expect):
    got = main_container(m.scheduler_deployment(make_spec(scheduler=with_containers(container))))
    for key, value in expect.items():
        assert got.get(key) == value


def test_scheduler_env_and_ports_not_duplicated():
    own = {
        "name": "scheduler",
        "env": [{"name": m.ENV_SCHEDULER_ROUTES, "value": "['distributed.http.health']"}, {"name": "A", "value": "1"}],
        "ports": [{"name": "comm", "containerPort": 8786}],
    }
    got = main_container(m.scheduler_deployment(make_spec(scheduler=with_containers(own))))
    assert env_of(got) == {m.ENV_SCHEDULER_ROUTES: "['distributed.http.health']", "A": "1"}
    assert [p["containerPort"] for p in got["ports"]] == [8786, 8787]


def test_sidecars_keep_their_settings():
    sidecar = {"name": "sidecar", "image": "busybox"}
    pod = m.scheduler_deployment(make_spec(scheduler=with_containers({"name": "s"}, sidecar)))["spec"]["template"]["spec"]
    assert pod["containers"][1]["image"] == "busybox"
    assert "env" not in pod["containers"][1]
    assert pod["containers"][1]["securityContext"] == DEFAULT_CONTAINER_SECURITY_CONTEXT


# ---------------------------------------------------------------- service


@pytest.mark.parametrize(
    "overrides, expected_spec",
    [
        pytest.param(
            {},
            {
                "selector": SCHED,
                "ports": [
                    {"name": "tcp-comm", "port": 8786, "targetPort": "tcp-comm", "protocol": "TCP"},
                    {"name": "http-dashboard", "port": 8787, "targetPort": "http-dashboard", "protocol": "TCP"},
                ],
            },
            id="defaults",
        ),
        pytest.param(
            {
                "type": "NodePort",
                "selector": {"app": "other"},
                "ports": [
                    {"name": "http-dashboard", "port": 80, "targetPort": "http-dashboard"},
                    {"name": "extra", "port": 9000},
                ],
            },
            {
                "type": "NodePort",
                "selector": SCHED,
                "ports": [
                    {"name": "tcp-comm", "port": 8786, "targetPort": "tcp-comm", "protocol": "TCP"},
                    {"name": "http-dashboard", "port": 80, "targetPort": "http-dashboard"},
                    {"name": "extra", "port": 9000},
                ],
            },
            id="overrides-merge-ports-by-name-selector-forced",
        ),
    ],
)
def test_scheduler_service(overrides, expected_spec):
    service = m.scheduler_service(make_spec(service=overrides))
    assert service["metadata"]["name"] == "dask-scheduler"
    assert service["metadata"]["labels"] == SCHED, "the seed's ServiceMonitor selects and names jobs by these"
    assert service["spec"] == expected_spec


# ---------------------------------------------------------------- workers


def test_worker_pod_defaults():
    spec = make_spec()
    pod = m.worker_pod(spec, "dask-worker-4")
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == "dask-worker-4"
    assert pod["metadata"]["labels"] == {**WORKER, c.LABEL_TEMPLATE_HASH: spec.worker_template_hash}
    assert pod["spec"]["restartPolicy"] == "Always"
    container = pod["spec"]["containers"][0]
    assert container["name"] == "worker"
    assert container["image"] == c.DEFAULT_IMAGE
    assert container["command"] == ["dask", "worker"]
    assert container["args"] == ["--name", "$(DASK_WORKER_NAME)", "--dashboard-address", ":8788"]
    assert container["ports"] == [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}]
    assert container["resources"] == m.DEFAULT_RESOURCES
    assert env_of(container) == {
        "DASK_SCHEDULER_ADDRESS": "tcp://dask-scheduler.ns.svc:8786",
        "DASK_WORKER_NAME": "dask-worker-4",
    }
    assert "readinessProbe" not in container


def test_worker_command_is_accepted_by_dask_worker():
    container = main_container(m.worker_pod(make_spec(), "dask-worker-0"))
    env = env_of(container)
    args = [a.replace("$(DASK_WORKER_NAME)", env["DASK_WORKER_NAME"]) for a in container["args"]]
    ctx = dask_worker_cli.make_context("dask worker", args)
    assert ctx.params["name"] == "dask-worker-0"
    assert ctx.params["dashboard_address"] == ":8788"
    assert not ctx.params["scheduler"], "the address comes from the environment"
    config = dask.config.collect_env(env)
    assert dask.config.get("scheduler-address", config=config) == "tcp://dask-scheduler.ns.svc:8786"


@pytest.mark.parametrize(
    "template, check",
    [
        pytest.param(
            with_containers({"name": "w", "env": [{"name": "DASK_SCHEDULER_ADDRESS", "value": "tcp://elsewhere:1"}]}),
            lambda pod: env_of(pod["spec"]["containers"][0])
            == {"DASK_SCHEDULER_ADDRESS": "tcp://elsewhere:1", "DASK_WORKER_NAME": "dask-worker-0"},
            id="own-scheduler-address",
        ),
        pytest.param(
            with_containers({"name": "w"}, restartPolicy="OnFailure"),
            lambda pod: pod["spec"]["restartPolicy"] == "OnFailure",
            id="own-restart-policy",
        ),
        pytest.param(
            with_containers({"name": "w", "command": ["my-worker"]}),
            lambda pod: pod["spec"]["containers"][0]["command"] == ["my-worker"]
            and "args" not in pod["spec"]["containers"][0],
            id="own-command-no-default-args",
        ),
        pytest.param(
            {"metadata": {"labels": {"team": "a", c.LABEL_CLUSTER: "x"}, "annotations": {"note": "n"}}},
            lambda pod: pod["metadata"]["labels"] == {**WORKER, "team": "a",
                                                      c.LABEL_TEMPLATE_HASH: pod["metadata"]["labels"][
                                                          c.LABEL_TEMPLATE_HASH]}
            and pod["metadata"]["annotations"] == {"note": "n"},
            id="template-labels-annotations",
        ),
    ],
)
def test_worker_template_wins(template, check):
    """The template's own labels, annotations and fields win over the defaults."""
    assert check(m.worker_pod(make_spec(worker=template), "dask-worker-0"))


def test_builders_do_not_share_state_with_spec():
    spec = make_spec(worker=with_containers({"name": "w"}))
    m.worker_pod(spec, "dask-worker-0")["spec"]["containers"][0]["image"] = "mutated"
    assert spec.worker_template == with_containers({"name": "w"})
    assert m.worker_pod(spec, "dask-worker-1")["spec"]["containers"][0]["image"] == c.DEFAULT_IMAGE


# ---------------------------------------------------------------- Pod Security Standards


def pod_specs_of(spec: ClusterSpec) -> list[dict]:
    return [
        m.scheduler_deployment(spec)["spec"]["template"]["spec"],
        m.worker_pod(spec, "dask-worker-0")["spec"],
    ]


@pytest.mark.parametrize(
    "template",
    [
        pytest.param({}, id="empty-template"),
        pytest.param(with_containers({"name": "main"}, {"name": "sidecar"}), id="sidecar"),
        pytest.param(with_containers({"name": "main"}, initContainers=[{"name": "init"}]), id="init-container"),
        pytest.param(
            with_containers({"name": "main"}, securityContext={"runAsUser": 2000, "fsGroup": 2000}),
            id="own-user",
        ),
    ],
)
def test_pods_pass_restricted_profile(template):
    for pod_spec in pod_specs_of(make_spec(scheduler=template, worker=template)):
        assert restricted_violations(pod_spec) == []


@pytest.mark.parametrize(
    "template, key, value",
    [
        pytest.param(with_containers({"name": "main"}, securityContext={"runAsUser": 0}), "runAsNonRoot", None, id="root-user"),
        pytest.param(
            with_containers({"name": "main", "securityContext": {"privileged": True}}),
            "allowPrivilegeEscalation",
            None,
            id="privileged",
        ),
        pytest.param(
            with_containers({"name": "main", "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}),
            "capabilities",
            {"add": ["SYS_PTRACE"]},
            id="own-capabilities",
        ),
    ],
)
def test_security_defaults_yield_to_template(template, key, value):
    pod_spec = m.worker_pod(make_spec(worker=template), "dask-worker-0")["spec"]
    merged = {**pod_spec["securityContext"], **pod_spec["containers"][0]["securityContext"]}
    assert merged.get(key) == value


@pytest.mark.parametrize(
    "a, b, same",
    [
        pytest.param({}, {}, True, id="empty"),
        pytest.param({"spec": {"a": 1, "b": 2}}, {"spec": {"b": 2, "a": 1}}, True, id="key-order-ignored"),
        pytest.param({"spec": {"containers": [{"image": "x"}]}}, {"spec": {"containers": [{"image": "y"}]}},
                     False, id="image-changes-it"),
        pytest.param({}, {"metadata": {"labels": {"team": "a"}}}, False, id="labels-change-it"),
    ],
)
def test_worker_template_hash(a, b, same):
    """Equal templates hash alike, any change to the template changes the hash; a label value."""
    ha, hb = make_spec(worker=a).worker_template_hash, make_spec(worker=b).worker_template_hash
    assert (ha == hb) is same
    assert len(ha) == 12 and all(ch in "0123456789abcdef" for ch in ha)


# ---------------------------------------------------------------- purity


FORBIDDEN_IMPORTS = {"kopf", "kr8s", "asyncio", "time", "datetime", "httpx", "os", "subprocess"}


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_nothing_impure(path):
    tree = ast.parse(path.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & FORBIDDEN_IMPORTS


def test_core_import_loads_no_framework():
    code = "import sys, dask_operator.core; print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kr8s', 'asyncio')))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- preStop hook


def test_workers_retire_themselves_before_sigterm_by_default():
    from dask_operator.core.retire_hook import RETIRE_SELF

    container = m.worker_pod(make_spec(), "dask-worker-0")["spec"]["containers"][0]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command == ["python", "-c", RETIRE_SELF]
    compile(RETIRE_SELF, "<preStop>", "exec")  # valid Python for the worker's interpreter
    env = {e["name"] for e in container["env"]}
    assert {"DASK_SCHEDULER_ADDRESS", "DASK_WORKER_NAME"} <= env, "what the hook reads is set"
    assert f":{c.DASHBOARD_PORT}/api/v1" in RETIRE_SELF


def test_template_lifecycle_replaces_the_hook():
    own = {"preStop": {"exec": {"command": ["true"]}}}
    template = {"spec": {"containers": [{"name": "worker", "lifecycle": own}]}}
    container = m.worker_pod(make_spec(worker=template), "dask-worker-0")["spec"]["containers"][0]
    assert container["lifecycle"] == own
    scheduler = m.scheduler_deployment(make_spec())["spec"]["template"]["spec"]["containers"][0]
    assert "lifecycle" not in scheduler
