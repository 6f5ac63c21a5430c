"""What every benchmark run does around its measurement: a fresh cluster, cleanup.

A run's cluster is created at 0 workers and waited for (its scheduler pod
Ready, if it has one) before anything is timed, so the scheduler's start-up
does not compete for the 2 cores with the scale being measured. Cleanup deletes
the cluster and then, as the admin, the pods, ReplicaSets and Deployments it
left in the namespace (the garbage collector would do the same through
kube-controller-manager's rate limit, which at Kubernetes' default 20 QPS takes
minutes for a thousand pods), and waits until no pod is left.
"""

from __future__ import annotations

import time

from contenders import Contender
from helpers import async_wait_for
from observer import Observer, check

from dask_operator.core.pods import pod_ready


def alternate(contenders: list, rep: int) -> list:
    """The contenders in this repetition's order: the first two swap every other one."""
    return contenders if rep % 2 == 0 else [contenders[1], contenders[0], *contenders[2:]]


def plural(obj: dict) -> str:
    kinds = {"Cluster": "clusters", "DaskCluster": "daskclusters", "Deployment": "deployments"}
    return kinds[obj["kind"]]


def collection(obj: dict, namespace: str) -> str:
    group_version = obj["apiVersion"]
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{base}/namespaces/{namespace}/{plural(obj)}"


async def wait_pods(obs: Observer, namespace: str, selector: str, predicate, timeout: float, what: str) -> list:
    async def pods() -> tuple[list] | None:  # a tuple: "no pods" is an empty list, and falsy
        items = (await obs.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector))["items"]
        return (items,) if predicate(items) else None
    (items,) = await async_wait_for(pods, timeout, what)
    return items


async def fresh_cluster(obs: Observer, who: Contender, name: str, real_workers: bool,
                        real_scheduler: bool) -> dict:
    """Create `name` at 0 workers; return its scheduler pod once Ready (or {} if it has none)."""
    body = who.cluster(name, 0, real_workers, real_scheduler)
    r = await obs.http.post(collection(body, who.namespace), json=body)
    check(r)
    if not hasattr(who, "scheduler"):
        return {}
    pods = await wait_pods(obs, who.namespace, who.scheduler(name),
                           lambda ps: any(pod_ready(p) for p in ps), 120, f"{who.name}'s scheduler Ready")
    return next(p for p in pods if pod_ready(p))


async def delete_cluster(obs: Observer, who: Contender, name: str, timeout: float = 600) -> None:
    body = who.cluster(name, 0, False, False)
    ns = who.namespace
    r = await obs.http.delete(f"{collection(body, ns)}/{name}")
    if r.status_code not in (200, 202, 404):
        check(r)
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments", f"/apis/apps/v1/namespaces/{ns}/replicasets",
                 f"/api/v1/namespaces/{ns}/pods"):
        r = await obs.http.delete(path, params={"labelSelector": who.pods(name)})
        if r.status_code not in (200, 404):
            check(r)
    await wait_pods(obs, ns, who.pods(name), lambda ps: not ps, timeout, f"{who.name}'s {name} pods gone")
    await wait_gone(obs, f"{collection(body, ns)}/{name}", timeout)


async def wait_gone(obs: Observer, path: str, timeout: float) -> None:
    """Until GET `path` answers 404 (finalizers done)."""
    async def gone() -> bool:
        return (await obs.http.get(path)).status_code == 404
    await async_wait_for(gone, timeout, f"{path} gone")


async def wait_registered(address: str, n: int, timeout: float, interval: float = 0.02) -> float:
    """Poll the scheduler at `address` (one connection) until `n` workers are registered;
    the monotonic time it first answered n."""
    from distributed.core import rpc

    async with rpc(address) as scheduler:
        async def registered() -> float | None:
            count = len(await scheduler.ncores())
            return time.monotonic() if count >= n else None
        return await async_wait_for(registered, timeout, f"{n} workers registered at {address}", interval)
