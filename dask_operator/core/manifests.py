"""Builders of the child objects of a Cluster, as plain dicts.

Every child carries the labels ``dask.charmtx.com/role`` (``scheduler`` or
``worker``) and ``dask.charmtx.com/cluster`` (the Cluster's name), plus the
template's own labels, and a controller owner reference to the Cluster (when
the Cluster has a uid), so deleting the Cluster cascades through the garbage
collector.

Defaults, applied only where the template leaves the field out:

Both roles: the Pod Security Standards "restricted" defaults of
``core.pod_security``, on the pod and every container and init container.

Main container (the template's first container, else a new one):
  - ``name``: ``scheduler`` / ``worker``;
  - ``image``: ``constants.DEFAULT_IMAGE``;
  - ``resources`` (only if the container has no ``resources`` at all):
    requests ``cpu: 100m, memory: 256Mi``, limits ``memory: 1Gi``;
  - ``env`` entries are appended unless the template already defines the name;
  - ports (below) are added unless the container declares their name or
    number, or another container of the pod their name.

Scheduler:
  - ``command: [dask, scheduler]`` if neither command nor args are given;
  - ports ``tcp-comm`` 8786 and ``http-dashboard`` 8787;
  - env ``DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES``: the default routes plus
    ``distributed.http.scheduler.api`` (prometheus and health are defaults);
  - ``readinessProbe``: GET ``/health`` on ``http-dashboard``, every 2 s,
    3 failures; ``livenessProbe``: GET ``/health``, after 10 s.

Worker:
  - label ``dask.charmtx.com/worker-template-hash``: the worker template's
    hash (``ClusterSpec.worker_template_hash``), so outdated pods are known;
  - ``command: [dask, worker]`` and
    ``args: [--name, $(DASK_WORKER_NAME), --dashboard-address, :8788]`` if
    neither command nor args are given (``dask worker`` has no env var for its
    name; Kubernetes expands ``$(VAR)`` in args);
  - env ``DASK_SCHEDULER_ADDRESS`` (read by distributed as the
    ``scheduler-address`` config) and ``DASK_WORKER_NAME`` (the pod name);
  - port ``http-dashboard`` 8788;
  - ``restartPolicy: Always``;
  - ``lifecycle``: a preStop hook that retires the worker through the
    scheduler before SIGTERM, whoever deletes the pod (``core.retire_hook``);
  - no readiness probe: Ready then means "started", so a worker that may hold
    data is never mistaken for an unready, disposable one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from dask_operator import constants as c
from dask_operator.core.pod_security import default_security
from dask_operator.core.retire_hook import retire_self_lifecycle
from dask_operator.core.spec import ClusterSpec

DEFAULT_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
ENV_SCHEDULER_ROUTES = "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"
ENV_SCHEDULER_ADDRESS = "DASK_SCHEDULER_ADDRESS"
ENV_WORKER_NAME = "DASK_WORKER_NAME"
DEFAULT_WORKER_ARGS = (
    "--name",
    f"$({ENV_WORKER_NAME})",
    "--dashboard-address",
    f":{c.WORKER_DASHBOARD_PORT}",
)


# ---------------------------------------------------------------- names & labels


def scheduler_name(cluster_name: str) -> str:
    """Name of the scheduler Deployment and Service."""
    return f"{cluster_name}-scheduler"


def worker_pod_name(cluster_name: str, index: int) -> str:
    """Name of the worker pod with this index."""
    return f"{cluster_name}-worker-{index}"


def labels(cluster_name: str, role: str) -> dict[str, str]:
    """The operator's labels for a child of this role."""
    return {c.LABEL_ROLE: role, c.LABEL_CLUSTER: cluster_name}


def cluster_children_selector(cluster_name: str) -> str:
    """Label selector of every child of the Cluster."""
    return f"{c.LABEL_CLUSTER}={cluster_name}"


def scheduler_selector(cluster_name: str) -> str:
    """Label selector of the Cluster's scheduler pods (and Deployment, Service)."""
    return _selector(labels(cluster_name, c.ROLE_SCHEDULER))


def worker_selector(cluster_name: str) -> str:
    """Label selector of the Cluster's worker pods."""
    return _selector(labels(cluster_name, c.ROLE_WORKER))


def _selector(match: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match.items()))


def owner_reference(spec: ClusterSpec) -> dict[str, Any]:
    """Controller owner reference to the Cluster."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": spec.name,
        "uid": spec.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# ---------------------------------------------------------------- addresses


def scheduler_address(spec: ClusterSpec) -> str:
    """The scheduler's comm address through its Service's cluster DNS name."""
    return f"tcp://{_service_host(spec)}:{c.SCHEDULER_PORT}"


def scheduler_http_url(spec: ClusterSpec, host: str | None = None) -> str:
    """Base URL of the scheduler's HTTP server; ``host`` (e.g. a pod IP) replaces the Service DNS name."""
    return f"http://{host or _service_host(spec)}:{c.DASHBOARD_PORT}"


def _service_host(spec: ClusterSpec) -> str:
    return f"{scheduler_name(spec.name)}.{spec.namespace}.svc"


# ---------------------------------------------------------------- scheduler


def scheduler_deployment(spec: ClusterSpec) -> dict[str, Any]:
    """The scheduler: an apps/v1 Deployment of one replica."""
    # A Deployment of 1 rather than a bare Pod: the scheduler is a singleton
    # with no state worth choosing about, so the Deployment controller may
    # recreate it wherever it likes when its pod or node dies. Workers are the
    # opposite: bare pods, so the operator alone chooses which worker goes.
    # Strategy Recreate: two schedulers must never run at once behind one
    # Service, or workers and clients would split between them.
    match = labels(spec.name, c.ROLE_SCHEDULER)
    template = _pod_template(
        spec.scheduler_template, match, c.SCHEDULER_CONTAINER, _scheduler_container_defaults
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, scheduler_name(spec.name), template["metadata"]["labels"]),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(match)},
            "template": template,
        },
    }


def _scheduler_container_defaults(container: dict[str, Any]) -> None:
    _default_command(container, c.DEFAULT_SCHEDULER_COMMAND, ())
    _default_ports(
        container,
        [
            _port(c.PORT_NAME_COMM, c.SCHEDULER_PORT),
            _port(c.PORT_NAME_DASHBOARD, c.DASHBOARD_PORT),
        ],
    )
    _default_env(container, {ENV_SCHEDULER_ROUTES: json.dumps(list(c.SCHEDULER_HTTP_ROUTES))})
    container.setdefault(
        "readinessProbe",
        {
            "httpGet": {"path": "/health", "port": c.PORT_NAME_DASHBOARD},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
    )
    container.setdefault(
        "livenessProbe",
        {
            "httpGet": {"path": "/health", "port": c.PORT_NAME_DASHBOARD},
            "initialDelaySeconds": 10,
        },
    )


def scheduler_service(spec: ClusterSpec) -> dict[str, Any]:
    """The scheduler's Service; ``spec.scheduler_service`` overrides ServiceSpec keys.

    Overrides are shallow, except ``ports`` (merged by port name) and
    ``selector`` (always the operator's).
    """
    match = labels(spec.name, c.ROLE_SCHEDULER)
    overrides = copy.deepcopy(spec.scheduler_service)
    ports = _merge_by_name(
        [
            _service_port(c.PORT_NAME_COMM, c.SCHEDULER_PORT),
            _service_port(c.PORT_NAME_DASHBOARD, c.DASHBOARD_PORT),
        ],
        overrides.pop("ports", None) or [],
    )
    service_spec = {**overrides, "selector": dict(match), "ports": ports}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, scheduler_name(spec.name), match),
        "spec": service_spec,
    }


def _service_port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}


def _merge_by_name(defaults: list[dict], overrides: list[dict]) -> list[dict]:
    """Defaults with same-named overrides replacing them, then the new overrides."""
    by_name = {o.get("name"): o for o in overrides}
    merged = [by_name.pop(d["name"], d) for d in defaults]
    return merged + [o for o in overrides if o.get("name") in by_name]


# ---------------------------------------------------------------- workers


def worker_pod(spec: ClusterSpec, name: str) -> dict[str, Any]:
    """One worker: a bare Pod named ``name``."""
    template = _pod_template(
        spec.worker_template,
        {**labels(spec.name, c.ROLE_WORKER), c.LABEL_TEMPLATE_HASH: spec.worker_template_hash},
        c.WORKER_CONTAINER,
        lambda container: _worker_container_defaults(container, spec, name),
    )
    template["spec"].setdefault("restartPolicy", "Always")
    metadata = _metadata(spec, name, template["metadata"]["labels"])
    if template["metadata"].get("annotations"):
        metadata["annotations"] = template["metadata"]["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def _worker_container_defaults(container: dict[str, Any], spec: ClusterSpec, name: str) -> None:
    _default_command(container, c.DEFAULT_WORKER_COMMAND, DEFAULT_WORKER_ARGS)
    _default_ports(container, [_port(c.PORT_NAME_DASHBOARD, c.WORKER_DASHBOARD_PORT)])
    _default_env(
        container,
        {ENV_SCHEDULER_ADDRESS: scheduler_address(spec), ENV_WORKER_NAME: name},
    )
    container.setdefault("lifecycle", retire_self_lifecycle())


# ---------------------------------------------------------------- shared pieces


def _metadata(spec: ClusterSpec, name: str, object_labels: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": spec.namespace,
        "labels": dict(object_labels),
    }
    if spec.uid:
        metadata["ownerReferences"] = [owner_reference(spec)]
    return metadata


def _pod_template(
    template: dict[str, Any],
    match: dict[str, str],
    container_name: str,
    container_defaults: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """A PodTemplateSpec from a user template with the operator's labels and defaults."""
    template = copy.deepcopy(template)
    metadata = template.get("metadata") or {}
    result_metadata: dict[str, Any] = {"labels": {**(metadata.get("labels") or {}), **match}}
    if metadata.get("annotations"):
        result_metadata["annotations"] = dict(metadata["annotations"])
    pod_spec = template.get("spec") or {}
    containers = pod_spec["containers"] = pod_spec.get("containers") or [{}]
    main = containers[0]
    main.setdefault("name", container_name)
    main.setdefault("image", c.DEFAULT_IMAGE)
    main.setdefault("resources", copy.deepcopy(DEFAULT_RESOURCES))
    declared = len(main.get("ports") or [])
    container_defaults(main)
    # Port names are unique in a pod: a default port whose name another container declares is left out.
    others = {p.get("name") for ct in containers[1:] + (pod_spec.get("initContainers") or [])
              for p in ct.get("ports") or []}
    main["ports"] = main["ports"][:declared] + [p for p in main["ports"][declared:] if p["name"] not in others]
    default_security(pod_spec)
    return {"metadata": result_metadata, "spec": pod_spec}


def _default_command(container: dict[str, Any], command: tuple[str, ...], args: tuple[str, ...]) -> None:
    if "command" in container or "args" in container:
        return
    container["command"] = list(command)
    if args:
        container["args"] = list(args)


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def _default_ports(container: dict[str, Any], ports: list[dict[str, Any]]) -> None:
    """Append each default port unless its name or number is already declared."""
    existing = container["ports"] = container.get("ports") or []
    names = {p.get("name") for p in existing}
    numbers = {p.get("containerPort") for p in existing}
    existing.extend(
        p for p in ports if p["name"] not in names and p["containerPort"] not in numbers
    )


def _default_env(container: dict[str, Any], values: dict[str, str]) -> None:
    """Append each env var unless the container already sets it."""
    env = container["env"] = container.get("env") or []
    present = {e.get("name") for e in env}
    env.extend({"name": k, "value": v} for k, v in values.items() if k not in present)
