"""A way into the sandbox's Dask clusters from its host.

`status.scheduler.address` names the scheduler's Service, which resolves only
inside pods; from the host, the Ready scheduler pod's IP on the sandbox bridge
is reachable (and no name is ever looked up in the machine's own resolver).
"""

from __future__ import annotations

import kr8s

from ..constants import SCHEDULER_PORT
from ..core import scheduler_selector
from ..core.pods import pod_ip, pod_ready


def scheduler_address(cluster: str, namespace: str | None = None) -> str:
    """`tcp://<scheduler pod IP>:8786` for the Cluster; KUBECONFIG names the sandbox."""
    api = kr8s.api()
    namespace = namespace or api.namespace
    pods = [p.raw for p in api.get("pods", namespace=namespace, label_selector=scheduler_selector(cluster))]
    ready = [p for p in pods if pod_ready(p) and pod_ip(p)]
    if not ready:
        raise LookupError(f"Cluster {namespace}/{cluster} has no Ready scheduler pod")
    return f"tcp://{pod_ip(ready[0])}:{SCHEDULER_PORT}"
