"""B1 scale-out: 0 -> N workers, from the `/scale` write to all pods created and Running.

Cases: 0 -> 10, 100 and 1,000 simulated workers (kwok runs the pods; the
scheduler is simulated too, Ready before the clock starts) with the
ReplicaSet controller scaling a Deployment of the same pods as a third column,
and 0 -> 20 real workers (`dask worker` processes under the pod runner, with a
real scheduler), where "registered" is when the scheduler first counts 20
workers (polled every 20 ms over one connection).

Each repetition creates a fresh cluster at 0, opens the pod watch, writes the
replica count through `/scale` (the clock starts at the write's
acknowledgement), waits for every pod to be Running (and, real, registered),
then deletes the cluster. Contenders alternate within a repetition, and the
order alternates between repetitions, so neither always runs first.
"""

from __future__ import annotations

import asyncio

from contenders import Contender
from observer import Observer
from runs import alternate, delete_cluster, fresh_cluster, wait_registered
from stats import Row, Target

KWOK_SIZES = (10, 100, 1000)
REAL_SIZE = 20


async def one(obs: Observer, who: Contender, name: str, n: int, real: bool) -> dict[str, float]:
    scheduler = await fresh_cluster(obs, who, name, real_workers=real, real_scheduler=real)
    timeout = 120 + n * 0.6
    try:
        watch = await obs.watch(f"/api/v1/namespaces/{who.namespace}/pods", who.workers(name))
        try:
            t0 = await obs.scale(who.scale_path(name), n)
            registered = None
            if real:
                address = f"tcp://{scheduler['status']['podIP']}:8786"
                registered = asyncio.create_task(wait_registered(address, n, timeout))
            await watch.until(lambda w: len(w.pods.running) >= n, timeout, f"{n} {who.name} pods Running")
            out = {"created": watch.pods.nth("added", n) - t0, "running": watch.pods.nth("running", n) - t0}
            if registered:
                out["registered"] = await registered - t0
            return out
        finally:
            watch.stop()
    finally:
        await delete_cluster(obs, who, name)


async def run(obs: Observer, contenders: list[Contender], runs: int, rate: str, real: bool = True,
              sizes=KWOK_SIZES, log=print) -> list[Row]:
    """`rate`: kube-controller-manager's QPS/burst in this sandbox, named in each row's case."""
    ours, peer = contenders[0].name, contenders[1].name
    rows = []
    cases = [(n, False) for n in sizes] + ([(REAL_SIZE, True)] if real else [])
    for n, is_real in cases:
        kind = "real" if is_real else "kwok"
        metrics = ["created", "running"] + (["registered"] if is_real else [])
        case_rows = {m: Row("B1", f"0→{n} {kind}, KCM {rate}", f"all {m}", "s", ours, peer,
                            targets=_targets(n, m, is_real)) for m in metrics}
        for rep in range(runs):
            order = alternate(contenders, rep)
            for who in order:
                if is_real and who.name == "ReplicaSet controller":
                    continue
                result = await one(obs, who, f"b1-{kind}-{n}-{rep}", n, is_real)
                for m, value in result.items():
                    case_rows[m].samples.setdefault(who.name, []).append(value)
                log(f"B1 0→{n} {kind} KCM {rate} rep {rep + 1}/{runs} {who.name}: "
                    + ", ".join(f"{m} {v:.3f}s" for m, v in result.items()))
        rows.extend(case_rows.values())
    return rows


def _targets(n: int, metric: str, real: bool) -> tuple[Target, ...]:
    if real or metric != "created":
        return ()
    if n == 100:
        return (Target("median", 1.0, text="median ≤ 1 s"),)
    if n == 1000:
        return (Target("ratio", 1.1, text="median ≤ 1.1 × ReplicaSet controller's",
                       versus="ReplicaSet controller"),)
    return ()

