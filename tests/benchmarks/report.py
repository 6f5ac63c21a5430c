"""The benchmarks' outputs: results.json, RESULTS.md and the B1 / B5 plots.

The environment block (date, machine, versions, settings) is collected once
per run and written into both files, so a table is never read without the
machine and versions it was measured on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from stats import Row, table


def environment(peer_venv: Path | None, settings: dict) -> dict:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    def peer_version(dist: str) -> str:
        if not peer_venv:
            return "–"
        out = subprocess.run([str(peer_venv / "bin" / "python"), "-c",
                              f"from importlib.metadata import version; print(version({dist!r}))"],
                             capture_output=True, text=True)
        return out.stdout.strip() or "?"

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
                    "kernel": platform.release(), "python": platform.python_version()},
        "versions": {
            "dask-operator": f"{version('dask-operator')} ({rev})", "kopf (ours)": version("kopf"),
            "kr8s (ours)": version("kr8s"), "dask / distributed": f"{version('dask')} / {version('distributed')}",
            "dask-kubernetes (peer)": peer_version("dask-kubernetes"), "kopf (peer)": peer_version("kopf"),
            "kr8s (peer)": peer_version("kr8s"),
        },
        "settings": settings,
    }


def write_json(path: Path, env: dict, rows: list[Row]) -> None:
    path.write_text(json.dumps({"environment": env, "rows": [r.to_json() for r in rows]}, indent=2) + "\n")


def write_markdown(path: Path, env: dict, rows: list[Row], plots: list[Path], notes: str = "") -> None:
    lines = [
        "# Benchmarks: dask-operator beside dask-kubernetes",
        "",
        f"Measured {env['date']} by `python -m tests.benchmarks` (raw samples: `results.json`).",
        "",
        f"**Machine:** {env['machine']['cpu']}, {env['machine']['cores']} cores, "
        f"{env['machine']['memory_gib']} GiB, Linux {env['machine']['kernel']}, Python {env['machine']['python']}.",
        "",
        "**Versions:** " + "; ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        "**Settings:** " + "; ".join(f"{k}: {v}" for k, v in env["settings"].items()) + ".",
        "",
        table(rows),
    ]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    if notes:
        lines += ["", notes]
    path.write_text("\n".join(lines) + "\n")


def plot_b1(rows: list[Row], path: Path) -> Path | None:
    rows = [r for r in rows if r.bench == "B1" and r.metric in ("all created", "all running")]
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["all created", "all running"]
    cases = list(dict.fromkeys(r.case for r in rows))
    who = list(dict.fromkeys(w for r in rows for w in r.samples))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, metric in zip(axes, metrics):
        width = 0.8 / len(who)
        for i, name in enumerate(who):
            medians, errs = [], []
            for case in cases:
                row = next((r for r in rows if r.case == case and r.metric == metric), None)
                s = row.summary(name) if row else None
                medians.append(s.median if s else 0)
                errs.append((s.max - s.median) if s else 0)
            ax.bar([x + i * width for x in range(len(cases))], medians, width, yerr=[[0] * len(errs), errs],
                   label=name, capsize=2)
        ax.set_xticks([x + width * (len(who) - 1) / 2 for x in range(len(cases))])
        ax.set_xticklabels(cases, rotation=30, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"B1 scale-out: seconds to {metric} (median, bar to max)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("seconds (log)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_b5(rows: list[Row], path: Path) -> Path | None:
    rows = [r for r in rows if r.bench == "B5"]
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 4))
    for ax, row in zip(axes if len(rows) > 1 else [axes], rows):
        names = [w for w in row.samples if row.samples[w]]
        summaries = [row.summary(w) for w in names]
        ax.bar(range(len(names)), [s.median for s in summaries],
               yerr=[[0] * len(names), [s.max - s.median for s in summaries]], capsize=3,
               color=["tab:blue", "tab:orange", "tab:green"][:len(names)])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_title(f"{row.metric} ({row.unit})", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"B5 fleet: {rows[0].case} (median, bar to max)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
