"""Seed 001's quick start, run as written (import path aside), against the real API on a sandbox.

One `--with kuberay,dco` sandbox (shared with test_backend_dco.py and the
contract suite through `thirdparty_sandbox`) runs KubeRay, Domino's DCO and
our operator (deploy/, installed here); the API runs as a host process with
deploy/api's ServiceAccount and default backends: daskclusters by our
operator, rayclusters by KubeRay, sparkclusters by DCO.

The user is a ServiceAccount of the clusters' namespace whose uid is the
clusters' owner label; its token is served by a token proxy on loopback, as
Domino's `DOMINO_API_PROXY`. Per kind, the quick start's code block is taken
from the seed file, its import path replaced by `dask_operator.client` and
its `"rayclusters"` by the kind, and run in a fresh Python process with seed
001's environment. Then, seen with kubectl and independently of the API:
two Ready workers where there was one, a new one carrying the "Medium"
tier's requests, and a new Ready head.
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from helpers import API_NAMESPACE as FIELD
from helpers import ROOT, Kube, host_api, install_deploy, wait_for, wait_operator_ready
from test_backend_dco import DCO_RESOURCES, WANTED, dco_cluster, dco_selector, live, thirdparty_sandbox
from test_backends_contract import kuberay_cluster, our_cluster

from dask_operator.core.pods import pod_ready

# The client's waits give up after 600 s each: let a stuck step fail with its own message.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

OPERATORS = ("dco", "kuberay")
WANTED.update(OPERATORS)  # one sandbox for this module, test_backend_dco.py and the contract suite
SEED = next((ROOT.parent / "shared" / "seeds").glob("001_*.txt"))
SEED_IMPORT = "from client.client.ddl_cluster_scaling_client import ("
MEDIUM = {"cpu": "500m", "memory": "1Gi"}  # deploy/api/tiers.yaml's "Medium" requests
QUICK_START_TIMEOUT = 1320


@dataclass(frozen=True)
class Kind:
    make: Callable[[str, str], dict]  # (name, owner) -> a cluster with one worker
    resource: str
    workers: str  # selector formats, {name} filled in
    head: str


def dask_cluster(name: str, owner: str) -> dict:
    """Our Cluster with one real Dask worker: a tier's new template replaces running workers new-first,
    retiring each old one once a new one has registered with the scheduler, so kwok's workers, which
    never register, would stay forever (tests/e2e/test_operator.py's worker command)."""
    obj = our_cluster(name, 1, owner)
    obj["spec"]["workers"]["template"] = {"spec": {"containers": [{
        "name": "worker", "image": "ghcr.io/dask/dask:latest", "command": ["dask", "worker"],
        "args": ["--name", "$(DASK_WORKER_NAME)", "--nthreads", "1", "--dashboard-address", ":8788"]}]}}
    return obj


KINDS = {
    "daskclusters": Kind(dask_cluster, "clusters.dask.charmtx.com",
                         "dask.charmtx.com/cluster={name},dask.charmtx.com/role=worker",
                         "dask.charmtx.com/cluster={name},dask.charmtx.com/role=scheduler"),
    "rayclusters": Kind(lambda name, owner: kuberay_cluster(name, 1, owner), "rayclusters.ray.io",
                        "ray.io/cluster={name},ray.io/node-type=worker",
                        "ray.io/cluster={name},ray.io/node-type=head"),
    "sparkclusters": Kind(lambda name, owner: dco_cluster("spark", name, 1, owner=owner),
                          "sparkclusters.distributed-compute.dominodatalab.com",
                          dco_selector("spark", "{name}", "worker"), dco_selector("spark", "{name}", "master")),
}


def quick_start(kind: str) -> str:
    """Seed 001's quick start, the import path and the kind aside, as the seed writes it."""
    text = SEED.read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Quick Start"):], re.S).group(1)
    assert SEED_IMPORT in code and '"rayclusters"' in code
    return code.replace(SEED_IMPORT, "from dask_operator.client import (").replace('"rayclusters"', f'"{kind}"')


class TokenProxy(http.server.ThreadingHTTPServer):
    """Domino's API proxy, as much as the client uses: `GET /access-token` answers the user's token."""

    def __init__(self, token: str) -> None:
        self.token = token

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N802 -- http.server's name
                ok = handler.path == "/access-token"
                body = (self.token if ok else "not found").encode()
                handler.send_response(200 if ok else 404)
                handler.send_header("Content-Type", "text/plain")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args) -> None:  # quiet
                pass
        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(10)


@dataclass
class Stage:
    kube: Kube
    namespace: str
    run_id: str
    env: dict[str, str]  # seed 001's environment for the quick start
    log: Path
    token: str

    def name(self, kind: str) -> str:
        return f"{kind.removesuffix('clusters')}-{self.run_id}"

    def pods(self, kind: str, role: str) -> list[dict]:
        selector = getattr(KINDS[kind], role).format(name=self.name(kind))
        return live(self.kube.pods(self.namespace, selector))

    def ready(self, kind: str, role: str) -> list[dict]:
        return [p for p in self.pods(kind, role) if pod_ready(p)]


def _api_objects(kube: Kube) -> list[dict]:
    """deploy/api without its Deployment and Service: the API runs on the host instead."""
    docs = yaml.safe_load_all(kube.kubectl("kustomize", str(ROOT / "deploy" / "api")).stdout)
    return [d for d in docs if d and d["kind"] not in ("Deployment", "Service")]


def _operator_objects(kube: Kube) -> list[dict]:
    """deploy/ without the CRD, which the sandbox installed and keeps."""
    docs = yaml.safe_load_all(kube.kubectl("kustomize", str(ROOT / "deploy")).stdout)
    return [d for d in docs if d and d["kind"] != "CustomResourceDefinition"]


@pytest.fixture(scope="module")
def stage(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Stage]:
    tp = thirdparty_sandbox(request.config, tmp_path_factory, OPERATORS)
    kube, state = tp.kube, tmp_path_factory.mktemp("quickstart")
    suffix = str(int(time.time() * 1000) % 100000)
    ns, run_id = f"quickstart-{suffix}", f"qs{suffix}"
    proxy = None
    try:
        install_deploy(kube)
        kube.apply(_api_objects(kube))
        wait_operator_ready(kube, timeout=300)
        kube.kubectl("create", "namespace", ns)
        kube.kubectl("create", "serviceaccount", "user", "-n", ns)
        owner = kube.get("serviceaccount", "user", "-n", ns)["metadata"]["uid"]
        for kind, k in KINDS.items():
            kube.apply(k.make(f"{kind.removesuffix('clusters')}-{run_id}", owner), ns)
        proxy = TokenProxy(kube.kubectl("create", "token", "user", "-n", ns, "--duration=2h").stdout.strip())
        with host_api(kube, state, "--namespace", ns, "--tiers-configmap", f"{FIELD}/ddl-cluster-scaler-tiers",
                      "--backend", "daskclusters=dask-operator", "--backend", "rayclusters=kuberay",
                      "--backend", "sparkclusters=dco-spark") as (url, log):
            env = {k: v for k, v in os.environ.items() if k not in ("DOMINO_TOKEN", "DOMINO_API_KEY", "KUBECONFIG")}
            env.update(CLUSTER_SCALER_BASE_URL=url, DOMINO_API_PROXY=proxy.url, DOMINO_RUN_ID=run_id,
                       COMPUTE_NAMESPACE=ns, PYTHONPATH=str(ROOT))
            yield Stage(kube, ns, run_id, env, log, proxy.token)
            tp.check_alive()
    finally:
        if proxy is not None:
            proxy.stop()
        resources = sorted({*DCO_RESOURCES, *(k.resource for k in KINDS.values())})
        kube.kubectl("delete", ",".join(resources), "--all", "-n", ns, "--wait=true", "--timeout=120s",
                     "--ignore-not-found", check=False)
        kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=180s", "--ignore-not-found")
        for objects in (_api_objects(kube), _operator_objects(kube)):
            kube.kubectl("delete", "-f", "-", "--wait=true", "--timeout=180s", "--ignore-not-found",
                         input=yaml.safe_dump_all(objects))


@pytest.mark.parametrize("kind", list(KINDS))
def test_seed_001_quick_start_runs_unchanged(stage: Stage, kind: str, tmp_path: Path) -> None:
    wait_for(lambda: len(stage.ready(kind, "workers")) == 1 and len(stage.ready(kind, "head")) == 1, 180,
             f"{kind}: a Ready head and one Ready worker")
    workers_before = {p["metadata"]["uid"] for p in stage.pods(kind, "workers")}
    (head_before,) = [p["metadata"]["uid"] for p in stage.pods(kind, "head")]
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start(kind))

    started = time.monotonic()
    run = subprocess.run([sys.executable, str(script)], env=stage.env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=QUICK_START_TIMEOUT)
    print(f"--- quick start for {kind}: exit {run.returncode} in {time.monotonic() - started:.0f}s ---\n"
          f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("health: 200 {'status': 'ok'}\n")
    assert f"'name': '{stage.name(kind)}', 'replicas': 2" in run.stdout, "step 3 printed the scale's answer"
    assert "'worker_hw_tier': {'id': 'medium-k8s', 'name': 'Medium'}" in run.stdout

    # The worker pods, seen by their operator's labels: two Ready, new ones with the tier's requests.
    def scaled() -> list[dict] | None:
        pods = stage.pods(kind, "workers")
        return pods if len(pods) == 2 and all(pod_ready(p) for p in pods) else None
    pods = wait_for(scaled, 180, f"{kind}: two Ready worker pods and no other")
    new = [p for p in pods if p["metadata"]["uid"] not in workers_before]
    assert new, f"{kind}: the scale created worker pods"
    assert all(p["spec"]["containers"][0]["resources"]["requests"] == MEDIUM for p in new), \
        f"{kind}: the new workers carry the Medium tier's requests"
    (head,) = wait_for(lambda: (lambda h: h if len(h) == 1 else None)(stage.ready(kind, "head")), 60,
                       f"{kind}: a Ready head")
    assert head["metadata"]["uid"] != head_before, f"{kind}: the head was replaced"
    assert stage.token not in run.stdout + run.stderr + stage.log.read_text(errors="replace")
