"""schemathesis against the OpenAPI document the API serves, on the sandbox.

The API runs as `tests/e2e/test_api.py` runs it: a host process with deploy/api's
ServiceAccount, real TokenReviews, deploy/api's RBAC, the operator from deploy/
reconciling. schemathesis loads `/openapi.json` from it and, for every
operation, Hypothesis generates requests three ways:

- admin (a bearer token of a ServiceAccount in an --admin-group namespace),
  positive data: requests the document allows, many aimed at the real
  Cluster, its namespace and real tiers, so that they reach the backend;
- admin, negative data: requests the document forbids;
- anonymous, positive data: no credentials, or the garbage ones schemathesis
  makes up for the security schemes.

Every response is checked: no 5xx (but head-hw-tier's documented
`501 not_supported`, from a backend that cannot reshape its head), status
code, content type and body valid for the operation, positive data accepted
(not refused with a 400 where the operation can succeed), negative data
refused, and the anonymous caller refused with 401 on every credentialed
route. A positive request may get a 400 about the cluster's configuration
rather than the request's form (an unknown tier or worker group), as it may
get a 404. The Cluster's scheduler and workers are simulated by kwok, and the
server caps replicas at 2, so hundreds of scales and head restarts stay cheap.

At least `DASK_OPERATOR_API_SCHEMA_CASES` (default 1000) requests are sent;
`DASK_OPERATOR_API_SCHEMA_SEED` replays a run (each run prints its seed):

    DASK_OPERATOR_API_SCHEMA_CASES=10000 pytest tests/e2e/test_api_schema.py -s --timeout=3600
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import strategies as st
from schema_run import can_succeed, run_schema
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               positive_data_acceptance, response_schema_conformance,
                                               status_code_conformance)

from helpers import API_NAMESPACE, ROOT, Kube, host_api, wait_for

pytestmark = pytest.mark.e2e

CASES = int(os.environ.get("DASK_OPERATOR_API_SCHEMA_CASES") or 1000)
SEED = int(os.environ.get("DASK_OPERATOR_API_SCHEMA_SEED") or random.randrange(2 ** 32))
CLUSTER = "fuzzed"
TIERS = ("Small", "medium-k8s", "GPU Small", "large-k8s")
CREDENTIALS = {"authorization", "x-api-key", "x-domino-api-key"}
SIMULATE = {"sandbox.dask.charmtx.com/simulate": "true"}
KEEP = "keep"  # a drawn choice: keep the generated tier fields


def simulated_cluster(owner: str) -> dict:
    def template(role: str) -> dict:
        return {"metadata": {"labels": dict(SIMULATE)},
                "spec": {"containers": [{"name": role, "image": "ghcr.io/dask/dask:latest"}]}}
    return {"apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster",
            "metadata": {"name": CLUSTER, "labels": {"dominodatalab.com/starting-user-id": owner}},
            "spec": {"scheduler": {"template": template("scheduler")},
                     "workers": {"replicas": 1, "template": template("worker")}}}


@pytest.fixture(scope="module")
def target(kube: Kube, deployed: Path, tmp_path_factory) -> dict:
    """deploy/api applied, a simulated Cluster, an admin's token, and the API on the host."""
    suffix = str(int(time.time() * 1000) % 100000)
    ns, adm = f"api-schema-{suffix}", f"api-schema-adm-{suffix}"
    kube.kubectl("apply", "-k", str(ROOT / "deploy" / "api"))
    try:
        for name in (ns, adm):
            kube.kubectl("create", "namespace", name)
        kube.kubectl("create", "serviceaccount", "boss", "-n", adm)
        # a keys Secret, as a deployment with API keys has: generated keys are looked up in it
        entry = [{"sha256": hashlib.sha256(os.urandom(16)).hexdigest(), "user": "nobody", "groups": []}]
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ddl-cluster-scaler-keys"},
                    "data": {"keys.yaml": base64.b64encode(yaml.safe_dump(entry).encode()).decode()}},
                   API_NAMESPACE)
        kube.apply(simulated_cluster("nobody"), ns)
        token = kube.kubectl("create", "token", "boss", "-n", adm, "--duration=1h").stdout.strip()
        with host_api(kube, tmp_path_factory.mktemp("api-schema"), "--namespace", ns, "--max-replicas", "2",
                      "--admin-group", f"system:serviceaccounts:{adm}",
                      "--tiers-configmap", "ddl-cluster-scaler-tiers",
                      "--keys-secret", "ddl-cluster-scaler-keys") as (url, log):
            wait_for(lambda: kube.pods(ns, f"dask.charmtx.com/cluster={CLUSTER},dask.charmtx.com/role=scheduler"),
                     120, "the Cluster's scheduler pod")
            yield {"url": url, "log": log, "namespace": ns, "token": token}
    finally:
        for name in (ns, adm):
            kube.kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", "--ignore-not-found")
        kube.kubectl("delete", "-k", str(ROOT / "deploy" / "api"), "--wait=true", "--timeout=180s",
                     "--ignore-not-found")


def no_server_error(ctx, response, case) -> None:
    """No 5xx, but head-hw-tier's documented `501 not_supported`."""
    if response.status_code < 500:
        return
    documented = (response.status_code == 501 and "/head-hw-tier/" in case.operation.path
                  and response.json().get("error") == "not_supported")
    assert documented, f"server error {response.status_code}: {response.text[:500]}"


def refused_for_what_exists(response) -> bool:
    """A 400 about the cluster's configuration, not the request's form: tiers are the
    ConfigMap's and worker groups the resource's, which no document can list (as a
    404 is about which clusters exist)."""
    if response.status_code != 400:
        return False
    body = response.json()
    return body["error"] == "invalid_hw_tier" or body["message"].startswith("unknown worker group")


def positive_data_accepted(ctx, response, case):
    """schemathesis's check, for operations that can succeed (the scale routes without a
    name document only errors: `400 cluster_name is required`)."""
    if can_succeed(case) and not refused_for_what_exists(response):
        return positive_data_acceptance(ctx, response, case)
    return None


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          positive_data_accepted, negative_data_rejection]


def _aim(case, namespace: str, choice: tuple[bool, bool, str | None]) -> None:
    """Point a positive case at the real Cluster, its namespace and a real tier (or none), as drawn."""
    name, here, tier = choice
    if name and "name" in (case.path_parameters or {}):
        case.path_parameters.update(kind="daskclusters", name=CLUSTER)
    if here and case.query is not None and "namespace" in case.query:
        case.query["namespace"] = namespace
    role = "head" if "/head-hw-tier/" in case.operation.path else "worker"
    if tier is not KEEP and isinstance(case.body, dict) and (tier or role == "worker"):  # a head tier is required
        for field in (f"{role}_hw_tier_name", f"{role}_hw_tier", f"{role}_hw_tier_id", "worker_group"):
            case.body.pop(field, None)
        if tier is not None:
            case.body[f"{role}_hw_tier_name"] = tier


def test_generated_requests_conform_to_the_served_document(target: dict) -> None:
    often = st.sampled_from((True, True, True, False))
    outcome = run_schema(target["url"], target["token"], cases=CASES, seed_=SEED, checks=CHECKS,
                         credentials=CREDENTIALS, aim=st.tuples(often, often, st.sampled_from((KEEP, None, *TIERS))),
                         no_aim=st.just((False, False, KEEP)),
                         apply=lambda case, choice: _aim(case, target["namespace"], choice))
    outcome.report(CASES)
    statuses, reached = outcome.statuses, outcome.reached()
    assert {200, 400, 404} <= reached, f"the admin's requests did not reach the backends: {sorted(reached)}"
    assert statuses["admin", "POST", 200] + statuses["admin", "PATCH", 200] > 0, "no scale or restart succeeded"
    assert target["token"] not in target["log"].read_text(errors="replace"), "the token reached the API's log"
