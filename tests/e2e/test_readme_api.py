"""README's cluster-scaler API examples, run as written against the sandbox.

The README's `bash` blocks marked `<!-- tested: test_readme_api -->` are run in
order, in one bash (`-euo pipefail`), with the sandbox's KUBECONFIG, after what
`dask-operator sandbox --example` applies (`sandbox.cluster.EXAMPLE`: deploy/,
example/, deploy/api). Every JSON line they print is checked, in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import API_NAMESPACE, ROOT, Kube, OperatorPod, wait_for
from secrets_seen import remember

from dask_operator.sandbox import API_ADDRESS
from dask_operator.sandbox.cluster import EXAMPLE

pytestmark = pytest.mark.e2e

MARK = "<!-- tested: test_readme_api -->"
NAME = "example-dask"
OWNER_LABEL = "dominodatalab.com/starting-user-id"


def readme_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return [part.split("```bash\n", 1)[1].split("```", 1)[0] for part in readme.split(MARK)[1:]]


@pytest.fixture
def example(kube: Kube, sandbox, operator: OperatorPod):
    """The state `sandbox --example` leaves (deploy/ is the session's), removed afterwards."""
    for directory, namespace in EXAMPLE:
        kube.kubectl("apply", "-k", str(ROOT / directory), *(["-n", namespace] if namespace else []))
    yield
    kube.kubectl("delete", "serviceaccount", "alice", "bob", "-n", "default", "--ignore-not-found")
    kube.kubectl("delete", "-k", str(ROOT / "example"), "--wait=true", "--ignore-not-found")
    kube.kubectl("delete", "-k", str(ROOT / "deploy" / "api"), "--wait=true", "--timeout=180s", "--ignore-not-found")
    wait_for(lambda: not kube.pods("default", f"dask.charmtx.com/cluster={NAME}"), 120, "the example's pods gone")


def test_readme_blocks_are_the_ones_the_sandbox_prints() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 4, "the README's API section has its tested bash blocks"
    assert API_ADDRESS in blocks[0], "the README finds the API as `sandbox --example` says"


def test_readme_curl_examples_work_as_written(kube: Kube, example, tmp_path: Path) -> None:
    # and the token and the API key the blocks made, to be looked for at the session's end
    script = "".join(readme_blocks()) + 'printf "%s\\n" "$TOKEN" "$KEY" > "$SECRETS_MADE"\n'
    env = {**kube.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SECRETS_MADE": str(tmp_path / "secrets")}
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    for secret in (tmp_path / "secrets").read_text().split():
        remember(secret, "a README curl example's token or API key")
    answers = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 7, out.stdout
    listed, got, scaled, restart, status, stranger, by_key = answers
    alice = kube.get("serviceaccount", "alice", "-n", "default")["metadata"]["uid"]
    cluster = kube.get("clusters.dask.charmtx.com", NAME, "-n", "default")

    assert cluster["metadata"]["labels"][OWNER_LABEL] == alice
    assert (listed["kind"], listed["count"], [c["metadata"]["name"] for c in listed["clusters"]]) == (
        "daskclusters", 1, [NAME])
    assert got["metadata"]["name"] == NAME and got["spec"]["worker"]["replicas"] >= 1
    assert (scaled["name"], scaled["replicas"], scaled["capped"], scaled["worker_hw_tier"]) == (
        NAME, 2, False, {"id": "small-k8s", "name": "Small"})
    assert cluster["spec"]["workers"]["replicas"] == 2
    assert restart["ok"] is True and restart["pod"].startswith(f"{NAME}-scheduler-")
    assert status["status"] == "restarted_and_ready" and status["pod"] != restart["pod"]
    assert stranger == {"error": "unauthorized", "message": f"Not authorized to access cluster {NAME}"}
    assert by_key["metadata"]["name"] == NAME
    assert kube.get("secret", "ddl-cluster-scaler-keys", "-n", API_NAMESPACE)["data"]["keys.yaml"]
