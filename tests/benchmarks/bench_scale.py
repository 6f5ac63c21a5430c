"""Benchmark: `kubectl scale` 0 -> 100 workers on the sandbox.

For each of N runs (default 5) a fresh Cluster with simulated workers (kwok
runs the pods; the scheduler is real) is scaled from 0 to 100 with
`kubectl scale`; the clock starts when kubectl returns (the API server
acknowledged the new replica count) and a pod watch, opened before, records
when the 100th worker pod was created and when the 100th was Running.

The peer in the same run is the built-in ReplicaSet controller: a Deployment
of the same pods scaled 0 -> 100 with the same `kubectl scale`. The figures
are medians and maxima, and the ratio of medians operator / ReplicaSet.

    python tests/benchmarks/bench_scale.py [--runs 5] [--replicas 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import kr8s.asyncio  # noqa: E402
from helpers import Kube, operator_on_sandbox, wait_for  # noqa: E402


SIMULATE = {"sandbox.dask.charmtx.com/simulate": "true"}
NAMESPACE = "bench"


def cluster(name: str) -> dict:
    return {
        "apiVersion": "dask.charmtx.com/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
        "spec": {"workers": {"replicas": 0, "template": {"metadata": {"labels": dict(SIMULATE)}}}},
    }


def deployment(name: str) -> dict:
    labels = {"app": name, **SIMULATE}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "w", "image": "ghcr.io/dask/dask:latest",
                                     "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}]}}},
    }


async def timed_scale(kube: Kube, resource: str, selector: str, replicas: int) -> tuple[float, float]:
    """Seconds from kubectl scale's acknowledgement to `replicas` pods created / Running."""
    api = await kr8s.asyncio.api(kubeconfig=str(kube.kubeconfig))
    async with api.call_api("GET", url="pods", namespace=NAMESPACE, params={"labelSelector": selector}) as r:
        since = r.json()["metadata"]["resourceVersion"]
    created: set[str] = set()
    running: set[str] = set()
    t_created = t_running = None
    t0: float | None = None

    async def watch() -> None:
        nonlocal t_created, t_running
        nonlocal since
        async for event, pod in api.async_watch("pods", namespace=NAMESPACE, label_selector=selector, since=since):
            now = time.monotonic()
            since = pod.raw["metadata"]["resourceVersion"]
            name = pod.raw["metadata"]["name"]
            if event == "ADDED":
                created.add(name)
            if pod.raw.get("status", {}).get("phase") == "Running":
                running.add(name)
            if t_created is None and len(created) >= replicas:
                t_created = now
            if t_running is None and len(running) >= replicas:
                t_running = now
                return

    async def watch_until_done() -> None:
        # A watch may end (server timeout); resume from the last seen version.
        nonlocal since
        while t_running is None:
            await watch()

    task = asyncio.create_task(watch_until_done())
    await asyncio.sleep(0)  # let the watch connect; events since `since` are replayed anyway
    await asyncio.to_thread(kube.kubectl, "scale", resource, f"--replicas={replicas}", "-n", NAMESPACE)
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(task, 120)
    except asyncio.TimeoutError:
        raise RuntimeError(f"{resource}: {len(created)} created, {len(running)} Running after 120 s") from None
    return t_created - t0, t_running - t0


def summarize(label: str, samples: list[tuple[float, float]]) -> dict:
    created = [s[0] for s in samples]
    running = [s[1] for s in samples]
    row = {
        "who": label,
        "created_median_s": statistics.median(created), "created_max_s": max(created),
        "running_median_s": statistics.median(running), "running_max_s": max(running),
    }
    print(f"{label:>22}: created median {row['created_median_s']:.3f}s max {row['created_max_s']:.3f}s | "
          f"Running median {row['running_median_s']:.3f}s max {row['running_max_s']:.3f}s")
    return row


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    with operator_on_sandbox(state, "--nodes", "4") as (kube, _, _op):
        kube.kubectl("create", "namespace", NAMESPACE)

        ours, peer = [], []
        for run in range(args.runs):
            name = f"bench{run}"
            kube.apply(cluster(name), NAMESPACE)
            # Steady state first: the real scheduler's start-up (imports) would
            # otherwise compete for the 2 cores with the scale being timed.
            wait_for(lambda: kube.get("clusters.dask.charmtx.com", name, "-n", NAMESPACE)
                     .get("status", {}).get("phase") == "Running", 60, "the Cluster Running (scheduler Ready)")
            ours.append(await timed_scale(kube, f"clusters.dask.charmtx.com/{name}",
                                          f"dask.charmtx.com/cluster={name},dask.charmtx.com/role=worker",
                                          args.replicas))
            kube.kubectl("delete", "clusters.dask.charmtx.com", name, "-n", NAMESPACE)

            kube.apply(deployment(f"rs{run}"), NAMESPACE)
            peer.append(await timed_scale(kube, f"deployment/rs{run}", f"app=rs{run}", args.replicas))
            kube.kubectl("delete", "deployment", f"rs{run}", "-n", NAMESPACE)
            wait_for(lambda: not kube.get("pods", "-n", NAMESPACE, "-l", "sandbox.dask.charmtx.com/simulate")
                     ["items"], 120, "the run's pods gone", interval=0.5)
            print(f"run {run + 1}/{args.runs}: operator created {ours[-1][0]:.3f}s Running {ours[-1][1]:.3f}s; "
                  f"ReplicaSet created {peer[-1][0]:.3f}s Running {peer[-1][1]:.3f}s", flush=True)

        print(f"\nkubectl scale 0 -> {args.replicas}, {args.runs} runs, sandbox control plane:")
        rows = [summarize("dask-operator", ours), summarize("ReplicaSet controller", peer)]
        ratio = rows[0]["created_median_s"] / rows[1]["created_median_s"]
        print(f"ratio of medians to created, dask-operator / ReplicaSet: {ratio:.2f}")
        print("target: median <= 1 s to created (dask-kubernetes, measured on a similar control plane "
              "elsewhere, not in this run: 18.3 s)")
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "ratio_created": ratio,
                                             "samples": {"operator": ours, "replicaset": peer}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
