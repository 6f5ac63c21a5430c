"""`dask-operator sandbox`: a real Kubernetes control plane built from Go modules."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from .cluster import Sandbox, SandboxConfig, SandboxInfo

__all__ = ["Sandbox", "SandboxConfig", "SandboxInfo", "run_sandbox"]

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
) -> int:
    config = SandboxConfig(
        state_dir=state_dir, nodes=nodes, crds=crds, adapter_rules=adapter_rules,
        hpa_sync_period=hpa_sync_period, scrape_interval=scrape_interval, operators=operators,
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
            print("example: deploy/ and example/ applied; the operator runs as its own pod. Try:\n"
                  "  kubectl get daskclusters,pods\n"
                  "  kubectl scale clusters.dask.charmtx.com/example-dask --replicas=2\n"
                  "  dask-operator sandbox address example-dask   # a scheduler address for distributed.Client",
                  flush=True)
        asyncio.run(sandbox.serve())
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        print("sandbox stopped", file=sys.stderr, flush=True)
    return 0
