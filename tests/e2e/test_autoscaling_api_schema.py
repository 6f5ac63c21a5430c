"""schemathesis against the OpenAPI document the autoscaling API (seed 004) serves, on the sandbox.

The API runs as `tests/e2e/test_autoscaling_api.py` runs it: a host process
with deploy/autoscaling-api's ServiceAccount and RBAC, real TokenReviews and
SubjectAccessReviews. The caller is a ServiceAccount that RBAC lets create,
get, list and delete HPAs cluster-wide (no --admin-group: every request is
reviewed). Its namespace holds a Deployment, a StatefulSet and a Cluster
(simulated by kwok) to autoscale. schemathesis loads `/openapi.json` and sends
the caller's positive and negative data and an anonymous caller's requests
(tests/schema_run.py); many of the caller's allowed requests are aimed at the
real workloads, their autoscalers' ids and that namespace, so that HPAs are
created, read, listed and deleted for real.

Every response is checked: no 5xx, status code, content type and body valid
for the operation, positive data accepted (a create may be refused with 400
only for the rules the document states in words: max_replicas >= min_replicas,
at least one target, follow_desired_workers for a Cluster only), negative
data refused with a 4xx, and the anonymous caller refused with 401 on every
credentialed route.

At least `DASK_OPERATOR_AUTOSCALING_API_SCHEMA_CASES` (default 1000) requests
are sent; `DASK_OPERATOR_AUTOSCALING_API_SCHEMA_SEED` replays a run (each run
prints its seed):

    DASK_OPERATOR_AUTOSCALING_API_SCHEMA_CASES=10000 pytest tests/e2e/test_autoscaling_api_schema.py -s --timeout=3600
"""

from __future__ import annotations

import os
import random
import time

import pytest
import yaml
from hypothesis import strategies as st
from schema_run import can_succeed, no_server_error, run_schema
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               positive_data_acceptance, response_schema_conformance,
                                               status_code_conformance)

from helpers import ROOT, Kube, host_server, wait_for, wait_namespace_usable

from dask_operator.core.autoscaler_spec import autoscaler_id, hpa_name

pytestmark = pytest.mark.e2e

CASES = int(os.environ.get("DASK_OPERATOR_AUTOSCALING_API_SCHEMA_CASES") or 1000)
SEED = int(os.environ.get("DASK_OPERATOR_AUTOSCALING_API_SCHEMA_SEED") or random.randrange(2 ** 32))
API_NAMESPACE = "dask-autoscaling"  # deploy/autoscaling-api's
CREDENTIALS = {"authorization", "x-api-key", "x-domino-api-key"}
SIMULATE = {"sandbox.dask.charmtx.com/simulate": "true"}
WORKLOADS = (("Deployment", "web"), ("StatefulSet", "db"), ("Cluster", "dc"))
TARGETS = ("target_cpu_percent", "target_memory_percent", "target_gpu_percent")
# the create rules JSON Schema cannot say, which the document states in words
STATED_IN_WORDS = ("max_replicas must be greater than or equal to min_replicas", "at least one target is required",
                   "follow_desired_workers applies to workload_type")


def workloads() -> list[dict]:
    """A Deployment, a StatefulSet and a Cluster of one pod each, simulated by kwok."""
    def template(name: str) -> dict:
        return {"metadata": {"labels": {"app": name, **SIMULATE}},
                "spec": {"containers": [{"name": name, "image": "ghcr.io/dask/dask:latest"}]}}
    apps = [{"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template(name),
                      **({"serviceName": name} if kind == "StatefulSet" else {})}}
            for kind, name in WORKLOADS[:2]]
    cluster = {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "metadata": {"name": "dc"},
               "spec": {"scheduler": {"template": template("scheduler")},
                        "workers": {"replicas": 1, "template": template("worker")}}}
    return [*apps, cluster]


@pytest.fixture(scope="module")
def target(kube: Kube, tmp_path_factory, namespace_sweeper: list[str]) -> dict:
    """deploy/autoscaling-api's RBAC, a caller allowed HPAs everywhere, workloads, and the API on the host."""
    suffix = str(int(time.time() * 1000) % 100000)
    ns, role = f"as-schema-{suffix}", f"as-schema-caller-{suffix}"
    rendered = kube.kubectl("kustomize", str(ROOT / "deploy" / "autoscaling-api")).stdout
    wait_namespace_usable(kube, API_NAMESPACE)  # test_autoscaling_api.py's may be finalizing
    kube.apply([d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "Deployment"])
    try:
        kube.kubectl("create", "namespace", ns)
        kube.kubectl("create", "serviceaccount", "caller", "-n", ns)
        kube.kubectl("create", "clusterrole", role, "--verb=create,get,list,delete",
                     "--resource=horizontalpodautoscalers.autoscaling")
        kube.kubectl("create", "clusterrolebinding", role, f"--clusterrole={role}", f"--serviceaccount={ns}:caller")
        kube.apply(workloads(), ns)
        token = kube.kubectl("create", "token", "caller", "-n", ns, "--duration=1h").stdout.strip()
        with host_server(kube, tmp_path_factory.mktemp("autoscaling-api-schema"), ["autoscaling-api"],
                         API_NAMESPACE, "dask-autoscaling-api") as (url, log):
            wait_for(lambda: kube.get("deployment", "web", "-n", ns).get("status", {}).get("readyReplicas") == 1,
                     60, "the Deployment's pod Ready")
            yield {"url": url, "log": log, "namespace": ns, "token": token}
    finally:
        for kind in ("clusterrolebinding", "clusterrole"):
            kube.kubectl("delete", kind, role, "--ignore-not-found")
            kube.kubectl("delete", kind, "dask-autoscaling-api", "--ignore-not-found")
        kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")
        namespace_sweeper.append(ns)  # gone by the session's end
        kube.kubectl("delete", "namespace", API_NAMESPACE, "--wait=false", "--ignore-not-found")


def refused_for_a_rule_stated_in_words(response) -> bool:
    if response.status_code != 400:
        return False
    body = response.json()
    return body["error"] == "Validation failed" and all(
        problem.startswith(STATED_IN_WORDS) for problem in body["details"].split("; "))


def positive_data_accepted(ctx, response, case):
    """schemathesis's check, but for the create rules the document states in words."""
    if can_succeed(case) and not refused_for_a_rule_stated_in_words(response):
        return positive_data_acceptance(ctx, response, case)
    return None


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          positive_data_accepted, negative_data_rejection]


def _aim(case, namespace: str, choice: tuple[bool, tuple[str, str]] | None) -> None:
    """Point a positive case at a real workload (a create that the rules let succeed), its id or the namespace."""
    if not choice or not choice[0]:
        return
    kind, name = choice[1]
    if "id" in (case.path_parameters or {}):
        case.path_parameters["id"] = autoscaler_id(namespace, hpa_name(kind, name))
    if case.query is not None and "namespace" in case.query:
        case.query["namespace"] = namespace
    if isinstance(case.body, dict):
        case.body.update(workload_namespace=namespace, workload_type=kind, workload_name=name)
        low, high = case.body.get("min_replicas"), case.body.get("max_replicas")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and high < low:
            case.body["min_replicas"], case.body["max_replicas"] = high, low
        if kind != "Cluster":
            case.body.pop("follow_desired_workers", None)
        if not any(case.body.get(t) for t in TARGETS) and not case.body.get("follow_desired_workers"):
            case.body["target_cpu_percent"] = 50


def test_generated_requests_conform_to_the_served_document(target: dict) -> None:
    often = st.sampled_from((True, True, True, False))
    outcome = run_schema(target["url"], target["token"], cases=CASES, seed_=SEED, checks=CHECKS,
                         credentials=CREDENTIALS, aim=st.tuples(often, st.sampled_from(WORKLOADS)),
                         apply=lambda case, choice: _aim(case, target["namespace"], choice), margin=1.05,
                         token_in_case=True)
    outcome.report(CASES)
    statuses, reached = outcome.statuses, outcome.reached()
    assert {200, 201, 400, 404} <= reached, f"the caller's requests did not reach Kubernetes: {sorted(reached)}"
    assert statuses["admin", "DELETE", 200] > 0, "no autoscaler was deleted"
    assert target["token"] not in target["log"].read_text(errors="replace"), "the token reached the API's log"
