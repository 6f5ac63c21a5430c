"""`dask-operator sandbox`: a real Kubernetes control plane built from Go modules."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from .cluster import Sandbox, SandboxConfig, SandboxInfo

__all__ = ["API_ADDRESS", "Sandbox", "SandboxConfig", "SandboxInfo", "run_sandbox"]

# Shell commands that export BASE, the cluster-scaler API's URL as this host
# reaches it (deploy/api's pod IP on the sandbox bridge; there is no
# kube-proxy for its Service). `--example` prints them; README uses them.
API_ADDRESS = (
    "kubectl rollout status deployment/ddl-cluster-scaler -n domino-field --timeout=180s\n"
    "export BASE=http://$(kubectl get pods -n domino-field -l app.kubernetes.io/name=ddl-cluster-scaler"
    " -o jsonpath='{.items[0].status.podIP}'):8080\n"
)

log = logging.getLogger(__name__)


def run_sandbox(
    *,
    state_dir: Path | None,
    nodes: int,
    crds: list[Path],
    adapter_rules: list[Path],
    hpa_sync_period: str,
    scrape_interval: str,
    example: bool = False,
    operators: tuple[str, ...] = (),
    kcm_api_rate: tuple[int, int] = (200, 400),
) -> int:
    config = SandboxConfig(
        state_dir=state_dir, nodes=nodes, crds=crds, adapter_rules=adapter_rules,
        hpa_sync_period=hpa_sync_period, scrape_interval=scrape_interval, operators=operators,
        kcm_api_rate=kcm_api_rate,
    )
    sandbox = Sandbox(config)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGTERM during start-up unwinds through `finally` like Ctrl-C does;
    # `serve()` installs its own handlers on the event loop once running.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        info = sandbox.start()
        print(f"sandbox ready: export KUBECONFIG={info.kubeconfig}", flush=True)
        print(f"prometheus: {info.prometheus}  state: {info.state_dir}", flush=True)
        if example:
            sandbox.run_example(Path.cwd())
            print("example: deploy/, example/ and deploy/api applied; the operator and the cluster-scaler "
                  "API run as their own pods. Try:\n"
                  "  kubectl get daskclusters,pods\n"
                  "  kubectl scale clusters.dask.charmtx.com/example-dask --replicas=2\n"
                  "  dask-operator sandbox address example-dask   # a scheduler address for distributed.Client\n"
                  "The cluster-scaler API's address from this host (its pod's IP; README: The cluster-scaler "
                  "API):\n" + "".join(f"  {line}\n" for line in API_ADDRESS.splitlines()),
                  end="", flush=True)
        asyncio.run(sandbox.serve())
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        print("sandbox stopped", file=sys.stderr, flush=True)
    return 0
