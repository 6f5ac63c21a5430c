"""deploy/verda's startup-script server on the sandbox: its manifests, its command on a
loopback port, and tokens for its callers (tests/e2e/test_verda_*.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import ROOT, Kube, service_account_kubeconfig, wait_for, wait_namespace_usable

NAMESPACE = "verda-nodes"  # deploy/verda's
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
SCRIPT_AUDIENCE = "startup-scripts"  # deploy/verda's
SECRETS = ("startup-script-secrets", "verda-credentials")  # the Secrets deploy/verda's --secret flags name


def deploy_verda() -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy" / "verda")], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def script_server_argv(docs: list[dict], logs: Path, port: int, api_url: str) -> list[str]:
    """deploy/verda's startup-script server command, on a loopback port, its template from its ConfigMap."""
    (pod,) = [d["spec"]["template"]["spec"] for d in docs
              if d["kind"] == "Deployment" and d["metadata"]["name"] == "startup-script-server"]
    (template,) = [d["data"]["template.sh"] for d in docs
                   if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "startup-script-template"]
    (logs / "template.sh").write_text(template)
    kept = [a for a in pod["containers"][0]["args"] if not a.startswith(("--port", "--template-file"))]
    return [sys.executable, "-m", "dask_operator", *kept, "--address=127.0.0.1", f"--port={port}",
            f"--template-file={logs / 'template.sh'}", f"--api-url={api_url}", "--reap-interval=1"]


def token(kube: Kube, account: str, audience: str = SCRIPT_AUDIENCE) -> str:
    return kube.kubectl("create", "token", account, "-n", NAMESPACE, f"--audience={audience}",
                        "--duration=1h").stdout.strip()




@contextlib.contextmanager
def script_server(kube: Kube, logs: Path, api, api_url: str, join_token: str):
    """deploy/verda's RBAC and Secrets, and its startup-script server as a host process with its
    ServiceAccount, uploading to the stand-in Verda `api` (started, at `api_url`). Yields (url, log) once
    /healthz answers; the server stopped and the RBAC and Secrets deleted on exit."""
    import httpx

    from dask_operator.sandbox import procs
    from dask_operator.sandbox.cluster import free_ports

    docs = deploy_verda()
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    wait_namespace_usable(kube, NAMESPACE)
    kube.apply(rbac)
    started = []
    try:
        for name, data in zip(SECRETS, ({"join-token": join_token},
                                        {"client-id": api.client_id, "client-secret": api.client_secret})):
            kube.kubectl("create", "secret", "generic", name, "-n", NAMESPACE,
                         *(f"--from-literal={k}={v}" for k, v in data.items()))
        (port,) = free_ports(1)
        kubeconfig = service_account_kubeconfig(kube, logs / "scripts.kubeconfig", NAMESPACE, "startup-script-server")
        env = {**os.environ, "DATACRUNCH_CLIENT_ID": api.client_id, "DATACRUNCH_CLIENT_SECRET": api.client_secret,
               "POD_NAMESPACE": NAMESPACE, "KUBECONFIG": str(kubeconfig)}
        started.append(procs.spawn("scripts", script_server_argv(docs, logs, port, api_url), logs, env=env))
        url, log = f"http://127.0.0.1:{port}", logs / "scripts.log"
        wait_for(lambda: started[0].poll() is None and httpx.get(f"{url}/healthz", timeout=2).status_code == 200,
                 60, "the startup-script server's /healthz")
        yield url, log
    finally:
        procs.stop(started, timeout=15)
        if (logs / "scripts.log").exists():
            print("\n--- startup-scripts log (last 30 lines) ---\n"
                  + "\n".join((logs / "scripts.log").read_text(errors="replace").splitlines()[-30:]))
        kube.kubectl("delete", "secret", "--ignore-not-found", "-n", NAMESPACE, *SECRETS)
        kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(rbac))
