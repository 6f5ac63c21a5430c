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

import asyncio
import time

from contenders import Contender
from observer import Observer, check

from dask_operator.core.pods import pod_ready


def plural(obj: dict) -> str:
    kinds = {"Cluster": "clusters", "DaskCluster": "daskclusters", "Deployment": "deployments"}
    return kinds[obj["kind"]]


def collection(obj: dict, namespace: str) -> str:
    group_version = obj["apiVersion"]
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{base}/namespaces/{namespace}/{plural(obj)}"


async def wait_pods(obs: Observer, namespace: str, selector: str, predicate, timeout: float, what: str) -> list:
    deadline = time.monotonic() + timeout
    while True:
        pods = (await obs.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector))["items"]
        if predicate(pods):
            return pods
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} ({len(pods)} pods)")
        await asyncio.sleep(0.2)


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
    deadline = time.monotonic() + timeout
    while (await obs.http.get(path)).status_code != 404:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} still there after {timeout} s")
        await asyncio.sleep(0.2)


async def wait_registered(address: str, n: int, timeout: float, interval: float = 0.02) -> float:
    """Poll the scheduler at `address` (one connection) until `n` workers are registered;
    the monotonic time it first answered n."""
    from distributed.core import rpc

    deadline = time.monotonic() + timeout
    async with rpc(address) as scheduler:
        while True:
            count = len(await scheduler.ncores())
            t = time.monotonic()
            if count >= n:
                return t
            if t > deadline:
                raise AssertionError(f"{count} of {n} workers registered at {address} after {timeout} s")
            await asyncio.sleep(interval)
