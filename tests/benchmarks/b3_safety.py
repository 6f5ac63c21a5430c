"""B3 scale-down safety: 20 real workers holding 2,000 results of 1 MiB, scaled to 5.

Each repetition: a fresh cluster of real processes (scheduler and 20 `dask
worker`s under the pod runner) computes 2,000 tasks of 1 MiB each, whose
futures the observer holds; a scheduler plugin (`remote.LossCounter`) then counts
every result that leaves worker memory; the observer writes 5 through
`/scale` and waits until only 5 worker pods are left. Figures: lost keys
(results that left memory: the scheduler must recompute them, or they would be
gone for good had they been scattered data) and the time from the write's
acknowledgement to the 15th worker pod gone.
"""

from __future__ import annotations

import cloudpickle
from distributed import Client, wait

import remote
from contenders import Contender
from observer import Observer
from runs import alternate, delete_cluster, fresh_cluster, wait_registered
from stats import Row, Target

WORKERS, TARGET, RESULTS, SIZE = 20, 5, 2000, 2**20

cloudpickle.register_pickle_by_value(remote)


async def one(obs: Observer, who: Contender, name: str) -> dict[str, float]:
    scheduler = await fresh_cluster(obs, who, name, real_workers=True, real_scheduler=True)
    address = f"tcp://{scheduler['status']['podIP']}:8786"
    try:
        await obs.scale(who.scale_path(name), WORKERS)
        await wait_registered(address, WORKERS, 300, interval=0.2)
        async with Client(address, asynchronous=True, timeout=60) as client:
            prefix = f"{name}-result"
            task = remote.result_task()
            futures = [client.submit(task, i, SIZE, key=f"{prefix}-{i}") for i in range(RESULTS)]
            await wait(futures)
            failed = [f for f in futures if f.status != "finished"]
            if failed:
                raise RuntimeError(f"{len(failed)} of {RESULTS} tasks did not finish: {await failed[0].exception()}")
            await client.register_plugin(remote.LossCounter(prefix))
            watch = await obs.watch(f"/api/v1/namespaces/{who.namespace}/pods", who.workers(name))
            try:
                t0 = await obs.scale(who.scale_path(name), TARGET)
                surplus = WORKERS - TARGET
                await watch.until(lambda w: len(w.pods.deleted) >= surplus, 600,
                                  f"{surplus} of {who.name}'s worker pods gone")
                gone = watch.pods.nth("deleted", surplus) - t0
            finally:
                watch.stop()
            lost = await client.run_on_scheduler(remote.lost_keys)
            held = await client.run_on_scheduler(remote.in_memory, prefix=prefix)
            del futures
        return {"lost": float(lost), "gone": gone, "held": float(held)}
    finally:
        await delete_cluster(obs, who, name)


async def run(obs: Observer, contenders: list[Contender], runs: int, log=print) -> list[Row]:
    ours, peer = contenders[0].name, contenders[1].name
    case = f"{WORKERS} real workers, {RESULTS} × 1 MiB results → {TARGET}"
    lost = Row("B3", case, "lost keys", "keys", ours, peer,
               targets=(Target("max", 0, text="0 lost keys every run"),))
    gone = Row("B3", case, "last surplus pod gone", "s", ours, peer)
    for rep in range(runs):
        order = alternate(contenders[:2], rep)
        for who in order:
            result = await one(obs, who, f"b3-{rep}")
            lost.samples.setdefault(who.name, []).append(result["lost"])
            gone.samples.setdefault(who.name, []).append(result["gone"])
            log(f"B3 rep {rep + 1}/{runs} {who.name}: lost {result['lost']:.0f} keys, last surplus pod gone "
                f"after {result['gone']:.2f} s, {result['held']:.0f} of {RESULTS} results in memory after")
    return [lost, gone]
