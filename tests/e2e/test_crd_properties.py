"""deploy/crd.yaml and the renderers on the real API server, with generated Clusters (hypothesis).

- Every body of `cluster_strategies.bad_clusters()` (a valid one broken in one
  field) POSTed is refused with 422 (or 400) and a message naming that field,
  and a GET then finds nothing stored.
- Every body of `cluster_strategies.clusters()` is accepted (201), and what the
  API server would store renders (ClusterSpec.from_resource, the scheduler
  Service and Deployment, a worker pod) to children it accepts too: "renders
  and applies". Both the Cluster and its children are created with
  `dryRun=All`, so that an operator running in the same session makes nothing
  of them; dry runs pass the same validation and admission as real writes.

The examples are derandomized (the same every run). DASK_OPERATOR_CRD_CASES
sets the number per property (default 100); a longer run:
`DASK_OPERATOR_CRD_CASES=2000 pytest tests/e2e/test_crd_properties.py`.
"""

from __future__ import annotations

import base64
import os
import ssl
from pathlib import Path

import httpx
import pytest
import yaml
from cluster_strategies import Bad, bad_clusters, clusters
from hypothesis import HealthCheck, given, settings

from helpers import Kube, wait_for

from dask_operator import constants as c
from dask_operator.core import manifests as m
from dask_operator.core.spec import ClusterSpec

pytestmark = pytest.mark.e2e

CASES = int(os.environ.get("DASK_OPERATOR_CRD_CASES", "100"))
PROPERTIES = settings(derandomize=True, database=None, deadline=None, max_examples=CASES,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                             HealthCheck.data_too_large])
PATHS = {"Service": "/api/v1/namespaces/{ns}/services", "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
         "Pod": "/api/v1/namespaces/{ns}/pods", "Cluster": f"/apis/{c.API_VERSION}/namespaces/{{ns}}/{c.PLURAL}"}


def http_client(kubeconfig: Path, scratch: Path) -> httpx.Client:
    """An HTTP client with the kubeconfig's current credentials (client certificate or token)."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(x["context"] for x in config["contexts"] if x["name"] == config["current-context"])
    cluster = next(x["cluster"] for x in config["clusters"] if x["name"] == context["cluster"])
    user = next(x["user"] for x in config["users"] if x["name"] == context["user"])
    if cluster.get("insecure-skip-tls-verify"):
        verify = ssl.create_default_context()
        verify.check_hostname, verify.verify_mode = False, ssl.CERT_NONE
    elif "certificate-authority-data" in cluster:
        verify = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    else:
        verify = ssl.create_default_context(cafile=cluster["certificate-authority"])
    headers = {}
    if "token" in user:
        headers["Authorization"] = f"Bearer {user['token']}"
    if "client-certificate-data" in user:
        for key in ("client-certificate-data", "client-key-data"):
            (scratch / key).write_bytes(base64.b64decode(user[key]))
        verify.load_cert_chain(scratch / "client-certificate-data", scratch / "client-key-data")
    elif "client-certificate" in user:
        verify.load_cert_chain(user["client-certificate"], user["client-key"])
    return httpx.Client(base_url=cluster["server"], verify=verify, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def api(kube: Kube, tmp_path_factory) -> httpx.Client:
    with http_client(kube.kubeconfig, tmp_path_factory.mktemp("crd-properties")) as client:
        yield client


@pytest.fixture
def ready_namespace(kube: Kube, api: httpx.Client, namespace: str) -> str:
    """The test's namespace once its default ServiceAccount exists (pods are admitted only then)."""
    wait_for(lambda: api.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default").status_code == 200,
             60, "the namespace's default ServiceAccount")
    return namespace


def post(api: httpx.Client, obj: dict, namespace: str, dry_run: bool) -> httpx.Response:
    return api.post(PATHS[obj["kind"]].format(ns=namespace), json=obj, params={"dryRun": "All"} if dry_run else None)


@PROPERTIES
@given(bad=bad_clusters())
def test_an_invalid_cluster_is_refused_naming_the_field_and_nothing_is_stored(
        api: httpx.Client, ready_namespace: str, bad: Bad) -> None:
    response = post(api, bad.body, ready_namespace, dry_run=False)
    if response.is_success:  # taken: removed, so that the next examples report their own answers
        api.delete(f"{PATHS['Cluster'].format(ns=ready_namespace)}/{bad.body['metadata']['name']}")
    assert response.status_code in (400, 422), f"{bad}: {response.status_code} {response.text}"
    message = response.json()["message"]
    assert bad.field in message, f"{bad}: the message does not name {bad.field}: {message}"
    name = bad.body["metadata"]["name"]
    assert api.get(f"{PATHS['Cluster'].format(ns=ready_namespace)}/{name}").status_code == 404, "nothing stored"


@PROPERTIES
@given(body=clusters())
def test_a_valid_cluster_is_accepted_and_renders_to_children_the_api_server_accepts(
        api: httpx.Client, ready_namespace: str, body: dict) -> None:
    response = post(api, body, ready_namespace, dry_run=True)
    assert response.status_code == 201, f"{body}: {response.status_code} {response.text}"
    stored = response.json()
    assert stored["metadata"]["uid"], "a dry run answers with the object as it would be stored"
    spec = ClusterSpec.from_resource(stored)
    assert spec.replicas == (body["spec"].get("workers") or {}).get("replicas", 1), "defaulted as the parser does"
    children = [m.scheduler_service(spec), m.scheduler_deployment(spec),
                m.worker_pod(spec, m.worker_pod_name(spec.name, max(spec.replicas - 1, 0)))]
    for child in children:
        answer = post(api, child, ready_namespace, dry_run=True)
        assert answer.status_code == 201, f"{child['kind']} of {body}:\n{child}\n{answer.status_code} {answer.text}"
        assert answer.json()["metadata"]["labels"][c.LABEL_CLUSTER] == spec.name
