"""Latency split of the HPA chain on the sandbox, per metric source.

For each source (the scheduler's own series, the operator's export) and each
run: a fresh Cluster with 1 real worker and an HPA (min 1, max 3, Object metric
desired_workers, AverageValue 1); a burst of 120 half-second tasks is
submitted and the time from the submission to each link is recorded:

    scheduler target rose -> adapter serves it -> HPA wrote /scale
    -> pods created -> workers registered

The figures depend on the sandbox's intervals, printed with them: Prometheus
scrape 2 s, prometheus-adapter relist 2 s, HPA sync 2 s, operator poll of the
scheduler 2 s (`--desired-workers-interval`).

    python tests/benchmarks/bench_hpa.py [--runs 3] [--json marks.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from distributed import Client  # noqa: E402
from helpers import Kube, operator_on_sandbox, wait_for  # noqa: E402
from hpa_chain import (  # noqa: E402
    Timeline, cluster, follow_scale_up, hpa, scheduler_url, served_metric, use_metric_source,
)


LINKS = ["scheduler target rose", "adapter serves it", "HPA wrote /scale", "pods created", "workers registered"]


def _task():
    def slow(i: int) -> int:
        import time
        time.sleep(0.5)
        return i
    return slow


def one_run(kube: Kube, source: str, run: int) -> Timeline:
    ns = f"hpa-{source}-{run}"
    kube.kubectl("create", "namespace", ns)
    try:
        kube.apply(cluster("c", 1), ns)
        ip = wait_for(lambda: scheduler_url(kube, ns, "c"), 60, "a Ready scheduler")
        with Client(f"tcp://{ip}:8786", timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            wait_for(lambda: served_metric(kube, ns, "c") is not None, 90, "the metric served")
            kube.apply(hpa("c", 1, 3), ns)
            wait_for(lambda: any(c["type"] == "ScalingActive" and c["status"] == "True" for c in
                                 kube.get("hpa", "c", "-n", ns).get("status", {}).get("conditions", [])),
                     60, "the HPA reading the metric")
            t0 = time.monotonic()
            futures = client.map(_task(), range(120), pure=False)
            timeline = Timeline(source)
            follow_scale_up(kube, ns, "c", ip, 3, timeline, t0)
            client.cancel(futures)
        return timeline
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write each run's marks here (seconds per link)")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="bench-hpa-"))
    with operator_on_sandbox(state) as (kube, info, op):
        results: dict[str, list[Timeline]] = {}
        for source in ("scheduler", "operator"):
            use_metric_source(info, source, op.metrics_port)
            for run in range(args.runs):
                timeline = one_run(kube, source, run)
                print(f"run {run + 1}: {timeline.line()}", flush=True)
                results.setdefault(source, []).append(timeline)

        print("\nmedian seconds from submitting the burst (scrape 2 s, adapter relist 2 s, HPA sync 2 s, "
              "operator poll 2 s):")
        print(f"{'source':>9}  " + "  ".join(f"{link:>22}" for link in LINKS))
        medians = {}
        for source, timelines in results.items():
            medians[source] = [statistics.median(t.marks[link] for t in timelines) for link in LINKS]
            print(f"{source:>9}  " + "  ".join(f"{v:>22.1f}" for v in medians[source]))
        ratio = medians["operator"][-1] / medians["scheduler"][-1]
        print(f"ratio operator / scheduler source, to workers registered: {ratio:.2f}")
        if args.json:
            args.json.write_text(json.dumps({"links": LINKS, "runs": {
                source: [t.marks for t in timelines] for source, timelines in results.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
