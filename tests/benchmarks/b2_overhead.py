"""B2 reconcile overhead: +1 replica, 100 times, each followed to its first pod.

For each step the observer writes replicas+1 through `/scale` and records:

- `ack`: the write's acknowledgement;
- `F`: when a bare watcher of the cluster objects (this observer's own watch,
  opened before) receives the event carrying the write's resourceVersion: the
  API server's own write -> watch delivery time, which every controller pays;
- `pod`: when the pod watch first sees the step's new pod (its POST committed).

overhead = (pod - ack) - (F - ack) = pod - F: what the operator adds between
being told and creating the pod. Workers are simulated (kwok), so nothing
else competes for the cores. Each repetition is a fresh cluster and 100 steps;
contenders alternate between repetitions.
"""

from __future__ import annotations

from contenders import Contender
from observer import Observer
from runs import alternate, collection, delete_cluster, fresh_cluster
from stats import Row, Target

STEPS = 100


async def one(obs: Observer, who: Contender, name: str, steps: int = STEPS) -> list[float]:
    await fresh_cluster(obs, who, name, real_workers=False, real_scheduler=False)
    try:
        body = who.cluster(name, 0, False, False)
        objects = await obs.watch(collection(body, who.namespace), pods=False)
        pods = await obs.watch(f"/api/v1/namespaces/{who.namespace}/pods", who.workers(name))
        try:
            overheads = []
            for i in range(1, steps + 1):
                t_ack, scale = await obs.scale_answer(who.scale_path(name), i)
                rv = scale["metadata"]["resourceVersion"]
                t_f = await objects.until(lambda w: next((t for t, _, o in w.events
                                                          if o["metadata"]["resourceVersion"] == rv), None),
                                          30, f"the watch event of {who.name}'s write {i}")
                await pods.until(lambda w: len(w.pods.added) >= i, 60, f"{who.name}'s pod {i}")
                overheads.append((pods.pods.nth("added", i) - t_f) * 1000)
            return overheads
        finally:
            objects.stop()
            pods.stop()
    finally:
        await delete_cluster(obs, who, name)


async def run(obs: Observer, contenders: list[Contender], runs: int, log=print) -> list[Row]:
    ours, peer = contenders[0].name, contenders[1].name
    row = Row("B2", f"+1 replica × {STEPS}, kwok", "(first pod − ack) − F", "ms", ours, peer,
              targets=(Target("median", 20, text="p50 ≤ 20 ms"), Target("p99", 100, text="p99 ≤ 100 ms")))
    for rep in range(runs):
        order = alternate(contenders[:2], rep)
        for who in order:
            values = await one(obs, who, f"b2-{rep}")
            row.samples.setdefault(who.name, []).extend(values)
            log(f"B2 rep {rep + 1}/{runs} {who.name}: median {sorted(values)[len(values) // 2]:.1f} ms, "
                f"max {max(values):.1f} ms")
    return [row]
