"""Run the benchmarks B1-B5: dask-operator beside dask-kubernetes, in one run.

    python -m tests.benchmarks [--runs 5] [--only B1,B2,B3,B4,B5] [--idle-seconds 300] [--keep]

Starts its own sandboxes (8 kwok nodes of 250 pods): one with
kube-controller-manager at the sandbox's 200 QPS / 400 burst for B1, B2, B3
and B5, then one at Kubernetes' default 20 / 30 for B1 again; B4 runs
`bench_hpa.py` on a sandbox of its own. Both operators run as pods in the
sandbox with their own ServiceAccounts and namespaces (`contenders.py`,
`peer.py`). Writes `results.json`, `RESULTS.md` and the plots `b1.png`,
`b5.png` to `--out` (default: this directory) after every benchmark, so a
failure late in the run keeps what was measured. Takes about an hour and a
half with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import b1_scale_out  # noqa: E402
import b2_overhead  # noqa: E402
import b3_safety  # noqa: E402
import b5_fleet  # noqa: E402
import report  # noqa: E402
from contenders import DaskOperator, ReplicaSetController  # noqa: E402
from helpers import Kube, start_sandbox  # noqa: E402
from observer import Observer  # noqa: E402
from peer import DaskKubernetes, ensure_peer_venv  # noqa: E402
from stats import Row  # noqa: E402

SANDBOX_RATE, DEFAULT_RATE = "200/400", "20/30"
NODES = 8


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


@contextlib.contextmanager
def sandbox(rate: str):
    state = Path(tempfile.mkdtemp(prefix=f"bench-{rate.replace('/', '-')}-"))
    log(f"sandbox (kube-controller-manager {rate} QPS/burst) in {state}")
    sb = start_sandbox(state, "--nodes", str(NODES), "--kcm-api-rate", rate)
    try:
        yield Kube(Path(sb.info.kubeconfig)), sb.info
    finally:
        sb.stop()


def b4_rows(runs: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hpa.json"
        subprocess.run([sys.executable, str(HERE / "bench_hpa.py"), "--runs", str(runs), "--json", str(out)],
                       check=True)
        data = json.loads(out.read_text())
    names = {"scheduler": "dask-operator (scheduler's series)", "operator": "dask-operator (operator's export)"}
    rows = []
    for link in data["links"]:
        row = Row("B4", "HPA chain, burst of 120 tasks, 1 → 3 workers", f"to {link}", "s",
                  names["scheduler"], "dask-kubernetes")
        for source, marks in data["runs"].items():
            row.samples[names[source]] = [m[link] for m in marks if link in m]
        rows.append(row)
    return rows


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions per contender (default 5)")
    parser.add_argument("--only", default="B1,B2,B3,B4,B5", help="which benchmarks (default all)")
    parser.add_argument("--idle-seconds", type=float, default=300, help="B5's idle window (default 300)")
    parser.add_argument("--sizes", default="10,100,1000", help="B1's kwok sizes (default 10,100,1000)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results go (default tests/benchmarks)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the other benchmarks' rows from --out's results.json (re-run some only)")
    args = parser.parse_args()
    only = set(args.only.upper().split(","))
    sizes = tuple(int(s) for s in args.sizes.split(","))
    venv = ensure_peer_venv()
    env = report.environment(venv, {
        "repetitions": args.runs, "kwok nodes": f"{NODES} × 250 pods",
        "kwok": "client without rate limit (kwok v0.8.0 uses a fake always-allow limiter), "
                "podPlayStageParallelism 16, no stage delays",
        "kube-controller-manager QPS/burst": f"{SANDBOX_RATE} (sandbox) and {DEFAULT_RATE} (Kubernetes default) "
                                             "for B1; B2-B5 at the sandbox's",
        "B5 idle window": f"{args.idle_seconds:.0f} s",
    })
    rows: list[Row] = []
    if args.keep and (args.out / "results.json").exists():
        previous = json.loads((args.out / "results.json").read_text())
        rows = [Row.from_json(r) for r in previous["rows"] if r["bench"] not in only]
        env["settings"] = {**previous["environment"]["settings"],
                           f"{','.join(sorted(only))} measured again": env["date"]}
        env["date"] = previous["environment"]["date"]

    def save() -> None:
        rows.sort(key=lambda r: r.bench)  # stable: a benchmark's rows keep their order
        args.out.mkdir(parents=True, exist_ok=True)
        plots = [p for p in (report.plot_b1(rows, args.out / "b1.png"), report.plot_b5(rows, args.out / "b5.png"))
                 if p]
        report.write_json(args.out / "results.json", env, rows)
        report.write_markdown(args.out / "RESULTS.md", env, rows, plots)
        log(f"wrote {args.out / 'RESULTS.md'}")

    async def on_sandbox(rate: str, benches: set[str]) -> None:
        with sandbox(rate) as (kube, info):
            obs = await Observer.connect(info.kubeconfig)
            try:
                ours, peer, rs = DaskOperator(), DaskKubernetes(), ReplicaSetController()
                for who in (ours, peer, rs):
                    who.install(kube)
                if "B1" in benches:
                    rows.extend(await b1_scale_out.run(obs, [ours, peer, rs], args.runs, rate, sizes=sizes, log=log))
                    save()
                if "B2" in benches:
                    rows.extend(await b2_overhead.run(obs, [ours, peer], args.runs, log=log))
                    save()
                if "B3" in benches:
                    rows.extend(await b3_safety.run(obs, [ours, peer], args.runs, log=log))
                    save()
                if "B5" in benches:
                    rows.extend(await b5_fleet.run(obs, info.network, kube, [ours, peer], args.runs,
                                                   args.idle_seconds, log=log))
                    save()
            finally:
                await obs.aclose()

    if only & {"B1", "B2", "B3", "B5"}:
        await on_sandbox(SANDBOX_RATE, only)
    if "B1" in only:
        await on_sandbox(DEFAULT_RATE, {"B1"})
    if "B4" in only:
        rows.extend(b4_rows(max(3, args.runs)))
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
