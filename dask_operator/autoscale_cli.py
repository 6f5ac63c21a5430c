"""``dask-operator autoscale simulate``: replay a demand trace through the HPA engine.

    dask-operator autoscale simulate --trace demand.csv --policy policy.yaml --plot out.png

The trace is a CSV file with a header row:

- ``time``: seconds (any origin), strictly increasing;
- ``demand``: the total load from that time on (it holds until the next row),
  in the unit of the policy's metric targets: tasks queued, requests per
  second, CPU cores, ...;
- optionally one column per metric key (``cpu``, ``pods/<name>``,
  ``object/<Kind>/<name>/<metric>``, ``external/<name>``) that feeds that
  metric instead of ``demand``. An empty cell means the metric is missing
  from that time on (the metrics API returned nothing for it).

The policy is the HPA v2 shape: ``minReplicas``, ``maxReplicas``,
``metrics``, ``behavior`` (or a whole HorizontalPodAutoscaler object).

Every ``--sync-period`` seconds (15, like the controller), from the first
row's time to the last's, the simulator turns the demand into each metric's
value for the pods it has at that time, and runs the engine
(``core.hpa_policy.decide``):

- Pods and Resource AverageValue: the demand is split evenly over the Running
  and Ready pods, so their average is demand / ready pods;
- Resource Utilization: the same per-pod usage, over a request of
  ``--request`` per pod (default 1);
- Object and External: the demand itself (for AverageValue the HPA divides it
  by the replicas).

The replicas the engine sets exist at once; a new pod is Pending for
``--pod-startup`` seconds (default 0, so Pending pods report nothing) and
then Running and Ready; a scale-down removes the newest pods first. One line
per sync is printed: time, demand, replicas before and after, the reason and
the message. ``--plot`` draws replicas against demand (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from dask_operator.core.hpa_inputs import ControllerConfig, MetricSample, Pod
from dask_operator.core.hpa_policy import Decision, History, decide
from dask_operator.core.hpa_quantity import InvalidQuantity, format_milli, milli
from dask_operator.core.hpa_spec import AVERAGE_VALUE, OBJECT, RESOURCE, UTILIZATION, HpaSpec
from dask_operator.errors import InvalidAutoscaling


class InvalidTrace(ValueError):
    """The trace CSV cannot be replayed."""


@dataclass(frozen=True)
class Trace:
    """Rows of (time, {column: value or None}), sorted by time."""

    name: str
    times: tuple[float, ...]
    columns: dict[str, tuple[float | None, ...]]

    def at(self, column: str, t: float) -> float | None:
        """The column's value in force at ``t`` (the last row at or before it)."""
        index = max(i for i, row_time in enumerate(self.times) if row_time <= t)
        return self.columns[column][index]


@dataclass(frozen=True)
class Step:
    """One sync of the simulation."""

    time: float
    demand: float | None
    decision: Decision


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``autoscale`` command's sub-commands and options."""
    sub = parser.add_subparsers(dest="autoscale_command", required=True)
    p = sub.add_parser("simulate", help="replay a demand trace through the HPA policy engine",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trace", type=Path, required=True, help="CSV: time (s), demand[, one column per metric key]")
    p.add_argument("--policy", type=Path, required=True, help="YAML: minReplicas, maxReplicas, metrics, behavior")
    p.add_argument("--plot", type=Path, help="write a PNG of replicas against demand")
    p.add_argument("--sync-period", type=float, default=15.0, help="seconds between syncs (default 15)")
    p.add_argument("--initial-replicas", type=int, help="replicas at the start (default: minReplicas)")
    p.add_argument("--pod-startup", type=float, default=0.0, help="seconds a new pod is Pending (default 0)")
    p.add_argument("--request", default="1", help="per-pod request for Utilization targets (default 1)")
    p.add_argument("--tolerance", type=float, default=0.1, help="the controller's tolerance (default 0.1)")
    p.add_argument("--downscale-stabilization", type=float, default=300.0,
                   help="the controller's scale-down window when behavior does not set one (default 300)")
    p.add_argument("--changes-only", action="store_true", help="print only syncs that change the replicas")


def main(args: argparse.Namespace) -> int:
    """Run ``autoscale <command>``; 0 on success, 2 on bad input."""
    if args.autoscale_command != "simulate":
        print(f"error: unknown autoscale command {args.autoscale_command}", file=sys.stderr)
        return 2
    try:
        spec, trace, request = _load(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    config = ControllerConfig(tolerance=args.tolerance, downscale_stabilization=args.downscale_stabilization)
    initial = spec.min_replicas if args.initial_replicas is None else args.initial_replicas
    steps = simulate(trace, spec, initial, args.sync_period, args.pod_startup, request, config)
    for step in steps:
        if not args.changes_only or step.decision.scaled:
            print(format_step(step))
    if args.plot:
        try:
            plot(steps, trace, spec, args.plot, request, config)
        except ImportError as e:
            print(f"error: --plot needs matplotlib ({e}): pip install 'dask-operator[plot]'", file=sys.stderr)
            return 2
        print(f"plot written to {args.plot}")
    return 0


def _load(args: argparse.Namespace) -> tuple[HpaSpec, Trace, int]:
    """The policy, the trace and the request; ValueError saying which file or option is wrong."""
    import yaml

    for option, ok in (("--sync-period", args.sync_period > 0), ("--pod-startup", args.pod_startup >= 0),
                       ("--initial-replicas", args.initial_replicas is None or args.initial_replicas >= 0),
                       ("--tolerance", args.tolerance >= 0)):
        if not ok:
            raise ValueError(f"{option} must be {'> 0' if option == '--sync-period' else '>= 0'}")
    try:
        request = milli(args.request)
    except InvalidQuantity as e:
        raise ValueError(f"--request {e}") from None
    try:
        spec = HpaSpec.from_dict(yaml.safe_load(args.policy.read_text()))
        return spec, read_trace(args.trace), request
    except OSError as e:
        raise ValueError(f"{e.filename}: {e.strerror}") from None
    except (yaml.YAMLError, InvalidAutoscaling) as e:
        raise ValueError(f"{args.policy}: {e}") from None
    except InvalidTrace as e:
        raise ValueError(f"{args.trace}: {e}") from None


def read_trace(path: Path) -> Trace:
    """The trace CSV; InvalidTrace naming the line and column."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0][:2]] != ["time", "demand"]:
        raise InvalidTrace("the first row must be the header: time,demand[,<metric key>...]")
    header = [c.strip() for c in rows[0]]
    times: list[float] = []
    columns: dict[str, list[float | None]] = {name: [] for name in header[1:]}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidTrace(f"line {line}: {len(row)} values for {len(header)} columns")
        time = _number(row[0], line, "time")
        if time is None or (times and time <= times[-1]):
            raise InvalidTrace(f"line {line}: time must be set and greater than the previous row's")
        times.append(time)
        for name, cell in zip(header[1:], row[1:]):
            columns[name].append(_number(cell, line, name))
    if not times:
        raise InvalidTrace("no rows after the header")
    return Trace(path.stem, tuple(times), {k: tuple(v) for k, v in columns.items()})


def _number(cell: str, line: int, column: str) -> float | None:
    if not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        raise InvalidTrace(f"line {line}, column {column}: not a number: {cell!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidTrace(f"line {line}, column {column}: must be a finite number >= 0, got {cell!r}")
    return value


def simulate(trace: Trace, spec: HpaSpec, initial: int, sync_period: float, pod_startup: float,
             request: int, config: ControllerConfig) -> list[Step]:
    """Every sync of the replay, from the trace's first time to its last."""
    created: list[float] = [trace.times[0] - pod_startup] * initial  # the initial pods are up already
    history: History | None = None
    steps, syncs = [], int((trace.times[-1] - trace.times[0]) // sync_period) + 1
    for index in range(syncs):
        now = trace.times[0] + index * sync_period
        pods = tuple(_pod(f"pod-{i}", t, now, pod_startup, request) for i, t in enumerate(created))
        samples = {}
        for metric in spec.metrics:
            value = trace.at(metric.key if metric.key in trace.columns else "demand", now)
            if value is not None:
                samples[metric.key] = _sample(metric, milli(repr(value)), pods)
        decision = decide(now, len(created), samples, spec, history, pods=pods, config=config)
        history = decision.history
        if decision.replicas > len(created):
            created += [now] * (decision.replicas - len(created))
        del created[decision.replicas:]
        steps.append(Step(now, trace.at("demand", now), decision))
    return steps


def _pod(name: str, created: float, now: float, startup: float, request: int) -> Pod:
    up = now - created >= startup
    started = created + startup
    return Pod(name, phase="Running" if up else "Pending", ready=up if up else None, started=started if up else None,
               ready_since=started, requests={"cpu": request, "memory": request})


def _sample(metric, total: int, pods: tuple[Pod, ...]) -> MetricSample:
    if metric.type == OBJECT:
        return MetricSample(value=total)
    if metric.type not in (RESOURCE, "Pods"):
        return MetricSample(series=(total,))
    ready = [p.name for p in pods if p.phase == "Running"]
    if not ready:
        return MetricSample()
    share, rest = divmod(total, len(ready))
    return MetricSample(pods={name: share + (1 if i < rest else 0) for i, name in enumerate(ready)})


def format_step(step: Step) -> str:
    """One line: time, demand, replicas before -> after, reason, message (and missing metrics)."""
    d = step.decision
    demand = "missing" if step.demand is None else f"{step.demand:g}"
    missing = f" [missing: {', '.join(d.missing)}]" if d.missing else ""
    return (f"t={step.time:>7g}s  demand={demand:>8}  replicas {d.current:>3} -> {d.replicas:<3}  "
            f"{d.reason:<20} {d.message}{missing}")


def per_replica(spec: HpaSpec, request: int) -> float | None:
    """Demand one replica takes at the first metric's target, when that target is per pod."""
    metric = spec.metrics[0]
    if metric.target_type == UTILIZATION:
        return request * metric.target / 100 / 1000
    return metric.target / 1000 if metric.target_type == AVERAGE_VALUE else None


SHADES = {"ScaleDownStabilized": ("#cfe3f7", "held by the scale-down window"),
          "ScaleUpStabilized": ("#cfe3f7", "held by the scale-up window"),
          "ScaleUpLimit": ("#f7d9cf", "slowed by a scaling policy"), "ScaleDownLimit": ("#f7d9cf", None),
          "missing": ("#e0e0e0", "metric missing: no scaling")}


def plot(steps: list[Step], trace: Trace, spec: HpaSpec, path: Path, request: int = 1000,
         config: ControllerConfig = ControllerConfig()) -> None:
    """Replicas (left axis) and demand (right axis) over time as step lines; the syncs the
    stabilization windows held, the policies slowed, or a missing metric froze are shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = steps[-1].time - steps[0].time
    scale, unit = (3600.0, "h") if span > 6 * 3600 else (60.0, "min") if span > 1800 else (1.0, "s")
    t0, period = steps[0].time, (steps[1].time - steps[0].time if len(steps) > 1 else 15.0)
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    labelled: set[str] = set()
    for step in steps:
        key = "missing" if step.decision.missing else step.decision.reason
        if key in SHADES:
            color, label = SHADES[key]
            ax.axvspan((step.time - t0) / scale, (step.time + period - t0) / scale, color=color, lw=0,
                       label=None if label in labelled else label)
            labelled.add(label)
    ax.step([(s.time - t0) / scale for s in steps], [s.decision.replicas for s in steps], where="post",
            color="C0", lw=2.2, label="replicas (after each sync)")
    for bound, label in ((spec.min_replicas, "minReplicas"), (spec.max_replicas, "maxReplicas")):
        ax.axhline(bound, color="grey", lw=0.8, ls="--")
        ax.annotate(label, (0, bound), textcoords="offset points", xytext=(4, 3), fontsize=8, color="grey")
    top = spec.max_replicas * 1.15 + 1
    ax.set(ylim=(0, top), xlabel=f"time ({unit})", ylabel="replicas")
    demand_ax = ax.twinx()
    demand_ax.step([(t - t0) / scale for t in trace.times], [math.nan if d is None else d
                   for d in trace.columns["demand"]], where="post", color="C1", lw=1.4, label="demand")
    unit_share = per_replica(spec, request)
    demand_ax.set_ylim(0, top * unit_share if unit_share else None)
    demand_ax.set_ylabel("demand" + (" (scaled: the replicas it needs at target, left)" if unit_share else ""))
    metric = spec.metrics[0]
    window = config.downscale_stabilization if spec.behavior is None or \
        spec.behavior.scale_down.stabilization_window_seconds is None \
        else spec.behavior.scale_down.stabilization_window_seconds
    target = f"{metric.target}%" if metric.target_type == UTILIZATION else format_milli(metric.target)
    ax.set_title(f"HPA simulation: {trace.name}\n{metric.description}, {metric.target_type} target {target}"
                 f" · min {spec.min_replicas}, max {spec.max_replicas} · scale-down window {window:g} s"
                 f"{'' if spec.behavior else ' (no behavior: legacy rules)'}", fontsize=11)
    handles = ax.get_legend_handles_labels()[0] + demand_ax.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper right", fontsize=9, framealpha=0.95)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
