"""B5 fleet: 200 clusters of 1 scheduler + 3 workers (kwok), then 5 idle minutes.

Each repetition creates the 200 clusters at once (20 concurrent POSTs over the
observer's connection; the clock starts before the first) and waits until
every one of their 800 pods is Ready. The operator's CPU seconds over that
span and its resident memory at the end are read from /proc for every process
in the operator pod's network namespace (the pod runner's container).

After the last repetition of each contender, the fleet stays: once the
operator has caught up (`settle`: two 10 s steps at or below the target rate,
at most 300 s; the time is reported too), the idle window begins. The operator's API requests are read from the API server's own
metrics before and after -- `apiserver_flowcontrol_dispatched_requests_total`
of a FlowSchema that matches exactly that operator's ServiceAccount (API
Priority and Fairness classifies every request, watches included, by user;
`apiserver_request_total` has no user label) -- and divided by the window and
by the number of clusters.
"""

from __future__ import annotations

import asyncio
import re
import time

from contenders import Contender
from observer import Observer, check
from runs import alternate, collection, wait_gone, wait_pods

from dask_operator.sandbox.netns import Network, pod_pids
from dask_operator.sandbox.resource_metrics import process_rss, process_stat
from stats import Row, Target

CLUSTERS, WORKERS = 200, 3
IDLE_TARGET = 0.01  # API requests per second per cluster


def flow_schema(who: Contender) -> dict:
    namespace, account = who.user.split(":")[2:4]
    return {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": {"name": schema_name(who)},
            "spec": {"matchingPrecedence": 500, "priorityLevelConfiguration": {"name": "workload-high"},
                     "distinguisherMethod": {"type": "ByUser"},
                     "rules": [{"subjects": [{"kind": "ServiceAccount",
                                              "serviceAccount": {"name": account, "namespace": namespace}}],
                                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                   "clusterScope": True, "namespaces": ["*"]}],
                                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}}


def schema_name(who: Contender) -> str:
    return f"benchmark-{who.name.replace(' ', '-').lower()}"


async def requests_so_far(obs: Observer, who: Contender) -> float:
    r = await obs.http.get("/metrics")
    check(r)
    pattern = re.compile(r'^apiserver_flowcontrol_dispatched_requests_total\{[^}]*flow_schema="'
                         + re.escape(schema_name(who)) + r'"[^}]*\} (\S+)$', re.M)
    return sum(float(v) for v in pattern.findall(r.text))


def usage(network: Network, pod: dict) -> tuple[float, float]:
    """(CPU seconds, resident MiB) of every process in the pod (the sandbox's /proc readers)."""
    cpu = rss = 0.0
    for pid in map(str, pod_pids(network, pod["metadata"]["uid"])):
        stat = process_stat(pid)
        if stat:
            cpu += stat[1]
            rss += process_rss(pid) / 2**20
    return cpu, rss


async def create_fleet(obs: Observer, who: Contender, prefix: str) -> float:
    sem = asyncio.Semaphore(20)

    async def create(i: int) -> None:
        body = who.cluster(f"{prefix}-{i}", WORKERS, real_workers=False, real_scheduler=False)
        async with sem:
            r = await obs.http.post(collection(body, who.namespace), json=body)
            check(r)

    t0 = time.monotonic()
    await asyncio.gather(*(create(i) for i in range(CLUSTERS)))
    return t0


async def delete_fleet(obs: Observer, who: Contender, prefix: str) -> None:
    body = who.cluster(prefix, 0, False, False)
    await asyncio.gather(*(obs.http.delete(f"{collection(body, who.namespace)}/{prefix}-{i}")
                           for i in range(CLUSTERS)))
    ns = who.namespace
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments", f"/apis/apps/v1/namespaces/{ns}/replicasets",
                 f"/api/v1/namespaces/{ns}/pods"):
        await obs.http.delete(path, params={"labelSelector": who.pods()})
    await wait_pods(obs, ns, who.pods(), lambda ps: not ps, 900, f"{who.name}'s fleet pods gone")
    for i in range(CLUSTERS):
        await wait_gone(obs, f"{collection(body, ns)}/{prefix}-{i}", 300)


async def one(obs: Observer, network: Network, who: Contender, prefix: str, kube) -> dict[str, float]:
    total = CLUSTERS * (1 + WORKERS)
    pods = await obs.watch(f"/api/v1/namespaces/{who.namespace}/pods", who.pods())
    operator = who.operator_pod(kube)
    try:
        cpu0, _ = usage(network, operator)
        t0 = await create_fleet(obs, who, prefix)
        await pods.until(lambda w: len(w.pods.ready) >= total, 1800, f"{total} {who.name} pods Ready")
        cpu1, rss = usage(network, operator)
        return {"ready": pods.pods.nth("ready", total) - t0, "cpu": cpu1 - cpu0, "rss": rss}
    finally:
        pods.stop()


async def settle(obs: Observer, who: Contender, limit: float = 300, step: float = 10) -> float:
    """Seconds until the operator has caught up with the fleet's creation: two
    consecutive `step`s at or below the idle target's rate (0.01/s per cluster),
    at most `limit` seconds. The same rule for both operators."""
    t0 = time.monotonic()
    quiet, last = 0, await requests_so_far(obs, who)
    while quiet < 2 and time.monotonic() - t0 < limit:
        await asyncio.sleep(step)
        now = await requests_so_far(obs, who)
        quiet = quiet + 1 if now - last <= IDLE_TARGET * CLUSTERS * step else 0
        last = now
    return time.monotonic() - t0


async def idle(obs: Observer, network: Network, who: Contender, kube, seconds: float) -> dict[str, float]:
    operator = who.operator_pod(kube)
    settled = await settle(obs, who)
    n0, (cpu0, _) = await requests_so_far(obs, who), usage(network, operator)
    await asyncio.sleep(seconds)
    n1, (cpu1, rss) = await requests_so_far(obs, who), usage(network, operator)
    return {"requests_per_s_per_cluster": (n1 - n0) / seconds / CLUSTERS, "idle_cpu": cpu1 - cpu0,
            "idle_rss": rss, "requests": n1 - n0, "settled": settled}


async def run(obs: Observer, network: Network, kube, contenders: list[Contender], runs: int,
              idle_seconds: float, log=print) -> list[Row]:
    ours, peer = contenders[0].name, contenders[1].name
    case = f"{CLUSTERS} clusters × (1 scheduler + {WORKERS} workers), kwok"
    le = (Target("ratio", 1.0, text="ours ≤ peer"),)
    rows = {
        "ready": Row("B5", case, "all pods Ready", "s", ours, peer, targets=le),
        "cpu": Row("B5", case, "operator CPU to Ready", "s", ours, peer, targets=le),
        "rss": Row("B5", case, "operator RSS at Ready", "MiB", ours, peer, targets=le),
        "idle": Row("B5", case, f"idle API requests/s per cluster ({idle_seconds:.0f} s)", "req/s", ours, peer,
                    targets=(Target("max", IDLE_TARGET, text=f"≤ {IDLE_TARGET}"), *le)),
        "settle": Row("B5", case, "after Ready, until the operator is quiet", "s", ours, peer, targets=le),
        "idle_cpu": Row("B5", case, f"operator CPU while idle ({idle_seconds:.0f} s)", "s", ours, peer,
                        targets=le),
    }
    for who in contenders:
        kube.apply(flow_schema(who))
    for rep in range(runs):
        order = alternate(contenders[:2], rep)
        for who in order:
            prefix = f"b5-{rep}"
            result = await one(obs, network, who, prefix, kube)
            for key in ("ready", "cpu", "rss"):
                rows[key].samples.setdefault(who.name, []).append(result[key])
            log(f"B5 rep {rep + 1}/{runs} {who.name}: all Ready after {result['ready']:.2f} s, "
                f"operator CPU {result['cpu']:.2f} s, RSS {result['rss']:.0f} MiB")
            if rep == runs - 1 and idle_seconds > 0:  # each contender's last repetition
                quiet = await idle(obs, network, who, kube, idle_seconds)
                rows["idle"].samples.setdefault(who.name, []).append(quiet["requests_per_s_per_cluster"])
                rows["idle_cpu"].samples.setdefault(who.name, []).append(quiet["idle_cpu"])
                rows["settle"].samples.setdefault(who.name, []).append(quiet["settled"])
                log(f"B5 idle {idle_seconds:.0f} s {who.name} (quiet after {quiet['settled']:.0f} s): "
                    f"{quiet['requests']:.0f} requests "
                    f"({quiet['requests_per_s_per_cluster']:.5f}/s per cluster), CPU {quiet['idle_cpu']:.2f} s")
            await delete_fleet(obs, who, prefix)
    return list(rows.values())
