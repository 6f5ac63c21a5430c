"""The HPA engine (``dask_operator.core.hpa_policy.decide``) against the real HPA
controller on the sandbox: same metrics in, same replicas out.

Three scripted scenarios, run at the same time in three namespaces, each a real
``autoscaling/v2`` HPA on a Deployment of kwok-simulated pods with one Pods
metric (``DCGM_FI_DEV_GPU_UTIL``, AverageValue 100) served by prometheus-adapter
(``adapter-rules/gpu.yaml``) from a stand-in DCGM exporter keyed by pod name:

1. tolerance (no ``behavior``): a usage ratio of 1.05 holds, 1.5 scales up;
2. scale-up policy: ``scaleUp.policies [{Pods, 1, 30 s}]`` under a large demand;
3. scale-down stabilization: ``scaleDown.stabilizationWindowSeconds 20``.

The test scripts a *demand* D per scenario; each pod reports D / (pods not being
deleted), as load spread over the pods would, so that a scenario comes to rest
once the replicas match the demand. No replica count is written down here: the
engine computes every expectation from what the controller was observed to see.

What is recorded (monotonic clock): every ~0.25 s (0.25-2 s on a loaded 2-core
machine; the tolerances below use the longest gap measured) a sample of what the
controller reads at a sync, in its order: ``/scale`` (spec and status replicas),
the custom metrics API's per-pod values (the very answer the controller gets from
the same adapter), the target's pods (phase, Ready, deletion); a sample across
which ``/scale`` changed (read again at its end) is dropped, since no sync of the
controller sees such a mix; a watch on the HPA (every status
write: ``currentMetrics``, ``currentReplicas``, ``desiredReplicas``,
``lastScaleTime``, conditions); at the end the HPA's ``SuccessfulRescale`` Events.

Replay: ``decide`` is called at every sample with that sample's inputs, with its
``History`` carried from step to step and a ``ControllerConfig`` read from the
running kube-controller-manager's flags. The controller's sync instants are not
observable, so the replay is *teacher-forced*: ``current`` is the observed
``/scale`` replicas, and the scale events in the history are the controller's
observed rescales (at the first sample showing them), not the engine's own
wishes; otherwise a sync that the engine places a little earlier than the
controller would compound into a different trajectory. Then:

- the rescales agree: the sequence of replica counts of ``/scale``, the Events'
  new sizes and the engine's (its decision whenever it differs from the current
  count) are the same; each Event's reason is the engine's rescale message;
- timing: each real rescale happens no later than LATE after the engine first
  decided it, and no earlier than EARLY before the engine allows it (when the
  controller was first, the engine is probed at later instants on the same
  inputs to find when it allows it). When the controller reacted to a new value
  between two samples (the first sample showing the value already shows the
  rescale), the engine is given, at the rescale, the count and pods of the last
  sample before it and the values the first sample after it serves for those
  same pods ("bridged"; printed when used). LATE = sync period + scrape interval +
  adapter relist interval + longest sample gap: the controller syncs once per
  period, and the value it reads is at most a scrape (+ relist) old.
  EARLY = sync period + sample gap: the engine samples every 0.25 s where the
  controller records a recommendation once per period (its last "high"
  recommendation before a drop can be up to a period older than ours), and it
  dates a scale event at our observation, after the controller's write. Both
  are small next to the 30 s policy period and the 20 s window under test;
- conditions: each status the HPA writes (while ScalingActive is True) is one
  the engine produced at a sample within [write - 1.5 s, write + sample
  interval]: same desired replicas, same current metric value, same
  ScalingLimited reason and same AbleToScale reason (``SucceededRescale`` when
  the engine's decision rescales, as the controller sets it after its write).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from helpers import ROOT, Kube, wait_for
from test_autoscaling_api import StandInDcgm, load_adapter_rules

from dask_operator.core import hpa_behavior as hb
from dask_operator.core.hpa_inputs import ControllerConfig, MetricSample, Pod
from dask_operator.core.hpa_policy import ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED, Decision, History, decide
from dask_operator.core.hpa_quantity import milli
from dask_operator.core.hpa_spec import HpaSpec

pytestmark = pytest.mark.e2e

METRIC = "DCGM_FI_DEV_GPU_UTIL"
TARGET = 100  # AverageValue of every scenario's Pods metric
SAMPLE_INTERVAL = 0.25


# ------------------------------------------------------------------ the sandbox's flags


def go_duration(text: str) -> float:
    """Seconds in a Go duration ("2s", "5m0s", "300ms")."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([\d.]+)(ms|us|ns|h|m|s)", text)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def flags(pid: int) -> dict[str, str]:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return dict(a.decode()[2:].partition("=")[::2] for a in args if a.startswith(b"--"))


@dataclass(frozen=True)
class Timing:
    sync: float
    scrape: float
    relist: float
    gap: float = SAMPLE_INTERVAL  # the longest interval between two samples, as measured

    @property
    def late(self) -> float:
        return self.sync + self.scrape + self.relist + self.gap

    @property
    def early(self) -> float:
        return self.sync + self.gap


def current_pids(sandbox) -> dict[str, int]:
    """The sandbox's process ids now, from its sandbox.json: the session's `SandboxInfo` is
    a snapshot from its start, and other tests restart prometheus-adapter."""
    return json.loads((Path(sandbox.state_dir) / "sandbox.json").read_text())["pids"]


def controller_setup(sandbox) -> tuple[ControllerConfig, Timing]:
    """The engine's ControllerConfig from kube-controller-manager's flags (their
    defaults where not given), and the sync, scrape and relist intervals."""
    pids = current_pids(sandbox)
    kcm = flags(pids["kube-controller-manager"])
    prefix = "horizontal-pod-autoscaler-"
    default = ControllerConfig()
    config = ControllerConfig(
        tolerance=float(kcm.get(prefix + "tolerance", default.tolerance)),
        cpu_initialization_period=go_duration(kcm[prefix + "cpu-initialization-period"])
        if prefix + "cpu-initialization-period" in kcm else default.cpu_initialization_period,
        initial_readiness_delay=go_duration(kcm[prefix + "initial-readiness-delay"])
        if prefix + "initial-readiness-delay" in kcm else default.initial_readiness_delay,
        downscale_stabilization=go_duration(kcm[prefix + "downscale-stabilization"])
        if prefix + "downscale-stabilization" in kcm else default.downscale_stabilization)
    prometheus = yaml.safe_load(Path(flags(pids["prometheus"])["config.file"]).read_text())
    adapter = flags(pids["prometheus-adapter"])
    timing = Timing(sync=go_duration(kcm.get(prefix + "sync-period", "15s")),
                    scrape=go_duration(prometheus["global"]["scrape_interval"]),
                    relist=go_duration(adapter.get("metrics-relist-interval", "10m")))
    return config, timing


# ------------------------------------------------------------------ API access (httpx, the sandbox's admin)


class Api:
    """Plain HTTPS to the API server with the kubeconfig's client certificate; one client per thread."""

    def __init__(self, kubeconfig: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
        self.server = cluster["server"]
        self.dir = Path(tempfile.mkdtemp(prefix="hpa-parity-"))
        for name, key in (("ca", "certificate-authority-data"), ("crt", "client-certificate-data"),
                          ("key", "client-key-data")):
            (self.dir / name).write_bytes(base64.b64decode(cluster[key] if name == "ca" else user[key]))
        self.local = threading.local()

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            ctx = ssl.create_default_context(cafile=str(self.dir / "ca"))
            ctx.load_cert_chain(str(self.dir / "crt"), str(self.dir / "key"))
            self.local.client = httpx.Client(base_url=self.server, verify=ctx, timeout=10)
        return self.local.client

    def get(self, path: str, **params) -> dict:
        r = self.client().get(path, params=params)
        r.raise_for_status()
        return r.json()


# ------------------------------------------------------------------ demand -> per-pod values


class Feeder:
    """Per scenario a demand D; every pod not being deleted reports D / their number."""

    def __init__(self, api: Api, exporter: StandInDcgm) -> None:
        self.api, self.exporter = api, exporter
        self.demand: dict[tuple[str, str], float] = {}  # (namespace, app) -> D
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            series: dict[tuple[str, str], float] = {}
            for (ns, app), demand in list(self.demand.items()):
                try:
                    pods = self.api.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"app={app}")["items"]
                except httpx.HTTPError:
                    continue
                live = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
                for name in live:
                    series[(ns, name)] = round(demand / len(live), 3)
            self.exporter.series = series  # replaced, never mutated: the exporter reads it concurrently
            self.stop.wait(0.25)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


# ------------------------------------------------------------------ recording what the controller sees and does


@dataclass(frozen=True)
class Sample:
    t: float
    current: int
    status: int
    pods: tuple[Pod, ...]
    values: dict[str, int] | None  # pod -> milli, None: the metrics API answered with an error


def engine_pod(p: dict) -> Pod:
    ready = next((c["status"] == "True" for c in p.get("status", {}).get("conditions", []) if c["type"] == "Ready"),
                 None)
    return Pod(p["metadata"]["name"], phase=p.get("status", {}).get("phase", "Pending"), ready=ready,
               deleting=bool(p["metadata"].get("deletionTimestamp")))


class Recorder:
    def __init__(self, api: Api, ns: str, name: str) -> None:
        self.api, self.ns, self.name = api, ns, name
        self.samples: list[Sample] = []
        self.hpa: list[tuple[float, dict]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.sample, self.watch)]
        for t in self.threads:
            t.start()

    def sample(self) -> None:
        base = f"/namespaces/{self.ns}"
        while not self.stop.is_set():
            try:
                t = time.monotonic()
                # in the controller's order: /scale, the metrics, then the pods (its lister)
                scale = self.api.get(f"/apis/apps/v1{base}/deployments/{self.name}/scale")
                r = self.api.client().get(f"/apis/custom.metrics.k8s.io/v1beta2{base}/pods/*/{METRIC}",
                                          params={"labelSelector": f"app={self.name}"})
                pods = self.api.get(f"/api/v1{base}/pods", labelSelector=f"app={self.name}")["items"]
                if self.api.get(f"/apis/apps/v1{base}/deployments/{self.name}/scale")["spec"].get("replicas", 0) \
                        != scale["spec"].get("replicas", 0):
                    continue  # a rescale in the middle: no sync of the controller sees such a mix
                values = {i["describedObject"]["name"]: milli(i["value"]) for i in r.json()["items"]} \
                    if r.status_code == 200 else None
                self.samples.append(Sample(t, scale["spec"].get("replicas", 0), scale["status"].get("replicas", 0),
                                           tuple(engine_pod(p) for p in pods), values))
            except httpx.HTTPError:
                pass
            self.stop.wait(max(0.0, t + SAMPLE_INTERVAL - time.monotonic()))

    def watch(self) -> None:
        path = f"/apis/autoscaling/v2/namespaces/{self.ns}/horizontalpodautoscalers"
        version = None
        while not self.stop.is_set():
            params = {"watch": "1", "fieldSelector": f"metadata.name={self.name}", "timeoutSeconds": "2"}
            if version:
                params["resourceVersion"] = version
            try:
                with self.api.client().stream("GET", path, params=params) as r:
                    for line in r.iter_lines():
                        if not line:
                            continue
                        event, t = json.loads(line), time.monotonic()
                        if event["type"] == "ERROR":
                            version = None
                            break
                        version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self.hpa.append((t, event["object"]))
            except httpx.HTTPError:
                pass

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def rescale_events(self) -> list[tuple[int, str]]:
        """The HPA's SuccessfulRescale Events, in order: (new size, reason)."""
        items = self.api.get(f"/api/v1/namespaces/{self.ns}/events",
                             fieldSelector=f"involvedObject.name={self.name},reason=SuccessfulRescale")["items"]
        out = []
        for e in sorted(items, key=lambda e: int(e["metadata"]["resourceVersion"])):
            m = re.fullmatch(r"New size: (\d+); reason: (.*)", e["message"])
            assert m, e["message"]
            out += [(int(m[1]), m[2])] * e.get("count", 1)
        return out


# ------------------------------------------------------------------ replay


@dataclass(frozen=True)
class Step:
    sample: Sample
    history_in: History | None
    decision: Decision


def metric_inputs(s: Sample, key: str) -> dict[str, MetricSample]:
    return {} if s.values is None else {key: MetricSample(pods=s.values)}


def replay(samples: list[Sample], spec: HpaSpec, config: ControllerConfig,
           real: list[Rescale] | None = None) -> list[Step]:
    """``decide`` at every sample, teacher-forced: current from ``/scale``, scale events
    from the controller's observed rescales (``real``), recommendations the engine's own."""
    key = spec.metrics[0].key
    steps: list[Step] = []
    history: History | None = None
    up: tuple[hb.ScaleEvent, ...] = ()
    down: tuple[hb.ScaleEvent, ...] = ()
    pending = list(rescales(samples) if real is None else real)
    for s in samples:
        while pending and pending[0].t <= s.t:
            r = pending.pop(0)
            if spec.behavior is not None and r.new > r.old:
                up = hb.record_event(up, r.t, r.new - r.old, spec.behavior.scale_up)
            elif spec.behavior is not None:
                down = hb.record_event(down, r.t, r.old - r.new, spec.behavior.scale_down)
        if history is not None:
            history = History(history.recommendations, up, down)
        d = decide(s.t, s.current, metric_inputs(s, key), spec, history, pods=s.pods, status_replicas=s.status,
                   config=config)
        steps.append(Step(s, history, d))
        history = d.history
    return steps


@dataclass(frozen=True)
class Rescale:
    t: float
    old: int
    new: int


def rescales(samples: list[Sample], hpa: list[tuple[float, dict]] = ()) -> list[Rescale]:
    """The controller's rescales, dated by the first sample that shows the new count or,
    when earlier, by the HPA status write that reports it (SucceededRescale, written
    right after the write to /scale)."""
    out = []
    for p, s in zip(samples, samples[1:]):
        if s.current == p.current:
            continue
        writes = [t for t, h in hpa if p.t - 2.5 < t < s.t and h.get("status", {}).get("desiredReplicas") == s.current
                  and h["status"].get("currentReplicas") == p.current
                  and (condition(h["status"], ABLE_TO_SCALE) or {}).get("reason") == "SucceededRescale"]
        out.append(Rescale(min([s.t, *writes]), p.current, s.current))
    return out


def condition(status: dict, type_: str) -> dict | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


@dataclass
class Outcome:
    name: str
    spec: HpaSpec
    steps: list[Step]
    real: list[Rescale]
    events: list[tuple[int, str]]
    hpa: list[tuple[float, dict]]
    t0: float
    lines: list[str] = field(default_factory=list)


def compare(o: Outcome, config: ControllerConfig, timing: Timing) -> list[str]:
    """Every disagreement between the controller and the engine, as text (empty: they agree)."""
    problems: list[str] = []
    steps, real = o.steps, o.real
    gap = max(b.sample.t - a.sample.t for a, b in zip(steps, steps[1:]))
    timing = Timing(timing.sync, timing.scrape, timing.relist, max(gap, SAMPLE_INTERVAL))
    o.lines.append(f"  {len(steps)} samples, longest gap {gap:.2f}s: LATE {timing.late:.2f}s, "
                   f"EARLY {timing.early:.2f}s")
    key = o.spec.metrics[0].key
    rel = lambda t: f"{t - o.t0:6.2f}s"  # noqa: E731

    # 2. Each real rescale: the engine decided it, not more than LATE before; or allows it
    #    at most EARLY after (probed on the same inputs at later instants).
    previous = steps[0].sample.t
    bridged: list[Step] = []
    for j, r in enumerate(real):
        window = [st for st in steps if previous <= st.sample.t < r.t and st.sample.current == r.old]
        first = next((st for st in window if st.decision.replicas == r.new), None)
        if first is not None:
            lead, decision = r.t - first.sample.t, first.decision
        else:
            lead, decision = None, None
            # the controller was first: when would the engine allow it, on the inputs of
            # the samples just before (probed at later instants, 50 ms apart)?
            for last in [st for st in window if st.sample.t >= r.t - timing.early]:
                for k in range(1, int((r.t - last.sample.t + timing.early) / 0.05) + 1):
                    at = last.sample.t + 0.05 * k
                    d = decide(at, last.sample.current, metric_inputs(last.sample, key), o.spec, last.history_in,
                               pods=last.sample.pods, status_replicas=last.sample.status, config=config)
                    if d.replicas == r.new:
                        if lead is None or r.t - at > lead:
                            lead, decision = r.t - at, d
                            probed = Step(Sample(at, *[getattr(last.sample, f) for f in (
                                "current", "status", "pods", "values")]), last.history_in, d)
                        break
            if decision is not None:
                bridged.append(probed)
        if lead is None and window:
            # The controller reacted between two samples to a value we saw only after its
            # rescale: give the engine what it read then: the count and pods of the last
            # sample before, the values the first sample after serves for those same pods.
            before = window[-1]
            after = next((st for st in steps if st.sample.t >= r.t and st.sample.values is not None), None)
            names = {p.name for p in before.sample.pods}
            if after is not None and names <= set(after.sample.values):
                bridged_sample = Sample(r.t, r.old, before.sample.status, before.sample.pods,
                                        {n: v for n, v in after.sample.values.items() if n in names})
                d = decide(r.t, r.old, metric_inputs(bridged_sample, key), o.spec, before.decision.history,
                           pods=bridged_sample.pods, status_replicas=bridged_sample.status, config=config)
                if d.replicas == r.new:
                    lead, decision = 0.0, d
                    bridged.append(Step(bridged_sample, before.decision.history, d))
                    o.lines.append(f"  (rescale {r.old}->{r.new}: decided on the values first seen at "
                                   f"{rel(after.sample.t)} for the pods of {rel(before.sample.t)})")
        if lead is None:
            problems.append(f"rescale {r.old}->{r.new} at {rel(r.t)}: the engine never decides it")
        elif not -timing.early <= lead <= timing.late:
            problems.append(f"rescale {r.old}->{r.new} at {rel(r.t)}: the engine decided it {lead:.2f}s before "
                            f"(allowed: -{timing.early:.2f}..{timing.late:.2f})")
        reason = o.events[j][1] if j < len(o.events) else None
        if decision is not None and reason is not None and decision.message != reason:
            problems.append(f"rescale {r.old}->{r.new}: event reason {reason!r}, engine {decision.message!r}")
        o.lines.append(f"  rescale {r.old}->{r.new} seen at {rel(r.t)}; engine first decided it "
                       f"{'never' if lead is None else f'{lead:+.2f}s before'}; event reason {reason!r}")
        previous = r.t

    # 1. (after 2, which adds bridged syncs) The same sequence of replica counts: /scale, the Events, the engine.
    initial = steps[0].sample.current
    engine_seq = [initial]
    for st in sorted([*steps, *bridged], key=lambda st: st.sample.t):
        if st.decision.replicas != st.sample.current and st.decision.replicas != engine_seq[-1]:
            engine_seq.append(st.decision.replicas)
    real_seq = [initial] + [r.new for r in real]
    o.lines.append(f"{o.name}: /scale {real_seq}, Events {[initial] + [n for n, _ in o.events]}, "
                   f"engine {engine_seq}")
    if not (real_seq == [initial] + [n for n, _ in o.events] == engine_seq):
        problems.append(f"sequences differ: /scale {real_seq}, events {[n for n, _ in o.events]}, "
                        f"engine {engine_seq}")

    # 3. Whenever the engine would change the replicas, the controller does so within LATE.
    for st in steps:
        if st.decision.replicas == st.sample.current:
            continue
        # (a sample can still show the old count shortly after the HPA reported the rescale)
        nxt = next((r for r in real if r.t > st.sample.t or (r.old == st.sample.current and
                                                              r.t > st.sample.t - timing.early)), None)
        if st.sample.t > steps[-1].sample.t - timing.late:
            continue  # the end of the recording: the controller's reaction may not be in it
        if nxt is None or nxt.new != st.decision.replicas or nxt.t - st.sample.t > timing.late:
            problems.append(f"at {rel(st.sample.t)} the engine decides {st.sample.current}->{st.decision.replicas}"
                            f" ({st.decision.reason}); the controller's next rescale is "
                            f"{'none' if nxt is None else f'{nxt.old}->{nxt.new} at {rel(nxt.t)}'}")

    # 4. Every status the HPA wrote is one the engine produced at about that time.
    checked = 0
    for t, hpa in o.hpa:
        status = hpa.get("status", {})
        active = condition(status, SCALING_ACTIVE)
        if not active or active["status"] != "True":
            continue
        limited, able = condition(status, SCALING_LIMITED), condition(status, ABLE_TO_SCALE)
        value = next((m["pods"]["current"]["averageValue"] for m in status.get("currentMetrics") or []
                      if m.get("type") == "Pods"), None)
        want = (status.get("desiredReplicas"), status.get("currentReplicas"), limited and limited["reason"],
                able and able["reason"], None if value is None else milli(value))

        def seen(st: Step) -> tuple:
            d = st.decision
            lim, abl = d.condition(SCALING_LIMITED), d.condition(ABLE_TO_SCALE)
            result = next((m for m in d.metrics if m.metric.key == key), None)
            return (d.replicas, st.sample.current, lim and lim.reason,
                    "SucceededRescale" if d.scaled else abl and abl.reason, result and result.current)

        near = [seen(st) for st in [*steps, *bridged] if t - timing.gap - 1.0 <= st.sample.t <= t + timing.gap]
        checked += 1
        if want not in near:
            problems.append(f"HPA status at {rel(t)} (desired, current, ScalingLimited, AbleToScale, metric m) = "
                            f"{want}; the engine near then: {sorted(set(near), key=str)}")
    o.lines.append(f"  {checked} HPA status writes compared (desired, current, ScalingLimited, AbleToScale, "
                   f"metric value)")
    if checked == 0:
        problems.append("the HPA wrote no active status")
    if problems:  # the whole timeline, to see where they part
        events = sorted([(st.sample.t, "sample", f"current {st.sample.current} pods {len(st.sample.pods)} values "
                          f"{sorted((st.sample.values or {}).values())} -> desired {st.decision.desired} "
                          f"replicas {st.decision.replicas} {st.decision.reason}") for st in steps]
                        + [(t, "HPA", json.dumps({k: h.get("status", {}).get(k) for k in (
                            "currentReplicas", "desiredReplicas", "lastScaleTime", "currentMetrics")})
                            + " " + str([(c["type"], c["reason"]) for c in h.get("status", {}).get("conditions", [])]))
                           for t, h in o.hpa])
        o.lines += [f"    {rel(t)} {kind:6} {text}" for t, kind, text in events]
    return problems


# ------------------------------------------------------------------ the scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    replicas: int
    behavior: dict | None
    demands: tuple[float, ...]  # total demand per phase, in units of the metric


SCENARIOS = {
    # ratio 1.05 (4 pods at 105): within the 0.1 tolerance; then 1.5 (4 pods at 150)
    "tolerance": Scenario("tolerance", 4, None, (4 * 105, 4 * 150)),
    # ratio 1, then 4: a pod per 30 s until the demand is met
    "scale-up-policy": Scenario("scale-up-policy", 1, {"scaleUp": {"policies": [
        {"type": "Pods", "value": 1, "periodSeconds": 30}]}}, (100, 400)),
    # ratio 1 (4 pods at 100), then 0.5: held for the 20 s window, then scaled down
    "scale-down-window": Scenario("scale-down-window", 4, {"scaleDown": {"stabilizationWindowSeconds": 20}},
                                  (400, 200)),
}


def deployment(name: str, replicas: int) -> dict:
    """kwok simulates these pods (no pod-runner label): their GPU use is the stand-in's."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                         {"name": "trainer", "image": "trainer", "resources": {"requests": {"cpu": "10m"}}}]}}}}


def hpa(name: str, scenario: Scenario) -> dict:
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": METRIC},
                                                  "target": {"type": "AverageValue", "averageValue": str(TARGET)}}}]}
    if scenario.behavior is not None:
        spec["behavior"] = scenario.behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": spec}


def run(scenario: Scenario, ns: str, kube: Kube, api: Api, feeder: Feeder, config: ControllerConfig,
        timing: Timing) -> Outcome:
    name = "gpu"
    kube.apply(deployment(name, scenario.replicas), ns)
    feeder.demand[(ns, name)] = scenario.demands[0]
    per_pod = milli(scenario.demands[0] / scenario.replicas)

    def served() -> bool:
        items = api.get(f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{METRIC}",
                        labelSelector=f"app={name}")["items"]
        return len(items) == scenario.replicas and all(abs(milli(i["value"]) - per_pod) <= 1 for i in items)

    wait_for(served, 90, f"{scenario.name}: the stand-in's values served for every pod")
    recorder = Recorder(api, ns, name)
    try:
        wait_for(lambda: recorder.samples, 10, "a first sample")
        t0 = time.monotonic()
        kube.apply(hpa(name, scenario), ns)
        spec = HpaSpec.from_dict(kube.get("hpa", name, "-n", ns)["spec"])
        key = spec.metrics[0].key

        def settled(since: float) -> bool:
            """The controller has been at rest for LATE: the engine, on the latest
            inputs, desires the current count, and nothing changed for LATE seconds."""
            steps = replay([s for s in recorder.samples if s.t >= t0], spec, config)
            last = steps[-1]
            if last.decision.desired != last.sample.current or last.decision.replicas != last.sample.current:
                return False
            quiet = [st for st in steps if st.sample.t >= last.sample.t - timing.late]
            return (quiet[0].sample.t >= since and quiet[0].sample.t <= last.sample.t - timing.late + 1
                    and all(st.sample.current == last.sample.current and st.decision.desired == last.sample.current
                            and st.sample.values == last.sample.values for st in quiet)
                    and any(m.metric.key == key and m.current is not None for m in last.decision.metrics))

        for phase, demand in enumerate(scenario.demands):
            feeder.demand[(ns, name)] = demand
            since = time.monotonic()
            wait_for(lambda: settled(since), 180, f"{scenario.name}: phase {phase} (demand {demand}) at rest",
                     interval=1.0)
    finally:
        recorder.close()
        feeder.demand.pop((ns, name), None)
    samples = [s for s in recorder.samples if s.t >= t0]
    real = rescales(samples, recorder.hpa)
    return Outcome(scenario.name, spec, replay(samples, spec, config, real), real, recorder.rescale_events(),
                   recorder.hpa, t0)


@pytest.fixture(scope="module")
def outcomes(kube: Kube, sandbox, namespace_sweeper) -> dict[str, tuple[Outcome, list[str]]]:
    config, timing = controller_setup(sandbox)
    api = Api(Path(sandbox.kubeconfig))
    exporter = StandInDcgm(sandbox, {})
    feeder = Feeder(api, exporter)
    rules = [ROOT / "adapter-rules" / "scheduler.yaml", ROOT / "adapter-rules" / "gpu.yaml"]
    namespaces = {n: f"t-hpa-parity-{n}-{int(time.time() * 1000) % 100000}" for n in SCENARIOS}
    for ns in namespaces.values():
        kube.kubectl("create", "namespace", ns)
    started = time.monotonic()
    try:
        load_adapter_rules(sandbox, rules)
        with ThreadPoolExecutor(len(SCENARIOS)) as pool:
            futures = {n: pool.submit(run, s, namespaces[n], kube, api, feeder, config, timing)
                       for n, s in SCENARIOS.items()}
            done = {n: f.exception() or f.result() for n, f in futures.items()}
        print(f"\n{config}, {timing}; scenarios ran {time.monotonic() - started:.1f}s")
        yield {n: (o, compare(o, config, timing)) if isinstance(o, Outcome) else (o, []) for n, o in done.items()}
    finally:
        feeder.close()
        exporter.stop()
        load_adapter_rules(sandbox, rules[:1])
        for ns in namespaces.values():
            kube.kubectl("delete", "namespace", ns, "--wait=false")
            namespace_sweeper.append(ns)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_engine_decides_as_the_hpa_controller(outcomes, name: str) -> None:
    outcome, problems = outcomes[name]
    if isinstance(outcome, BaseException):
        raise outcome
    print("\n" + "\n".join(outcome.lines))
    assert not problems, "\n".join(problems)
    assert len(outcome.real) >= 1  # every scenario rescales at least once
