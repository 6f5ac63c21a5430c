"""metrics.k8s.io for the sandbox: what each runner pod's processes really use.

The chain, all real:
  pod runner pods (processes in network namespaces)
  -> `PodUsage`: at each scrape, /proc is read once; every process whose network
     namespace is a runner pod's counts for that pod
  -> a loopback /metrics (`serve`), found by Prometheus through its file_sd
     directory
  -> a second prometheus-adapter, with resource rules only (`adapter_config`)
  -> APIService `v1beta1.metrics.k8s.io` -> the HPA controller, `kubectl top pods`.

Series, named as cAdvisor's so the rules are the usual ones:
- `container_cpu_usage_seconds_total{namespace, pod, container}`: utime +
  stime of the pod's processes, in seconds. A counter: each process's last
  reading stays counted after it exits, so the sum never goes back.
- `container_memory_rss{namespace, pod, container}`: the sum of the pod's
  processes' resident set sizes (the sandbox has no per-pod cgroup, so there is
  no cgroup working set to report; RSS is what /proc measures).
`container` is the pod's first container, the one the runner runs.

Nothing is made up: pods kwok simulates have no processes, hence no series,
so the resource metrics API leaves them out (the HPA treats them as missing),
and nodes get nothing (the node queries ask for the root cgroup, `id="/"`,
which nothing exports: a fake node's usage cannot be measured).

Why a second adapter rather than resource rules in the first: tests rewrite
the first one's rules and restart it (SIGHUP) to switch metric sources, and
the resource metrics API must not blink meanwhile. Why not metrics-server: it
scrapes kubelets' /metrics/resource, and the sandbox has no kubelet.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import web

log = logging.getLogger(__name__)

ADAPTER = "resource-metrics-adapter"  # its process name and its Service's
API_SERVICE = "v1beta1.metrics.k8s.io"
NETNS_DIR = Path("/run/netns")
PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIN_WINDOW_SECONDS = 10


@dataclass(frozen=True)
class Usage:
    namespace: str
    pod: str
    container: str
    cpu_seconds: float
    rss_bytes: int


def process_stat(pid: str) -> tuple[int, float] | None:
    """(start time, CPU seconds) of a process, None when it is gone."""
    try:
        fields = (PROC / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the command: state is fields[0], utime fields[11], stime fields[12], starttime fields[19]
    return int(fields[19]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss(pid: str) -> int:
    try:
        return int((PROC / pid / "statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


class PodUsage:
    """CPU and memory of the runner's pods, read from /proc."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self._lock = threading.Lock()
        self._spent: dict[str, float] = {}  # pod uid -> CPU seconds of processes already counted
        self._seen: dict[tuple[str, int, int], float] = {}  # (uid, pid, start) -> last CPU seconds read

    def sample(self) -> list[Usage]:
        with self._lock:
            return self._sample()

    def _sample(self) -> list[Usage]:
        pods = {}
        for rp in list(self.runner.pods.values()):
            try:
                pods[os.stat(NETNS_DIR / rp.netns).st_ino] = rp
            except OSError:
                continue  # not created yet, or being removed
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        seen: dict[tuple[str, int, int], float] = {}
        for pid in (p for p in os.listdir(PROC) if p.isdigit()):
            try:
                rp = pods.get(os.stat(PROC / pid / "ns" / "net").st_ino)
            except OSError:
                continue
            stat = rp and process_stat(pid)
            if not stat:
                continue
            seen[(rp.uid, int(pid), stat[0])] = stat[1]
            cpu[rp.uid] = cpu.get(rp.uid, 0.0) + stat[1]
            rss[rp.uid] = rss.get(rp.uid, 0) + process_rss(pid)
        for key, seconds in self._seen.items():  # exited since the last sample: keep what they used
            if key not in seen and key[0] in {r.uid for r in pods.values()}:
                self._spent[key[0]] = self._spent.get(key[0], 0.0) + seconds
        self._seen = seen
        live = {r.uid for r in pods.values()}
        self._spent = {uid: s for uid, s in self._spent.items() if uid in live}
        return [Usage(rp.namespace, rp.name, rp.container, cpu[rp.uid] + self._spent.get(rp.uid, 0.0), rss[rp.uid])
                for rp in pods.values() if rp.uid in cpu]


def exposition(usages: list[Usage]) -> str:
    lines = ["# HELP container_cpu_usage_seconds_total CPU time of the pod's processes (sandbox pod runner).",
             "# TYPE container_cpu_usage_seconds_total counter"]
    labels = [f'namespace="{u.namespace}",pod="{u.pod}",container="{u.container}"' for u in usages]
    lines += [f"container_cpu_usage_seconds_total{{{lab}}} {u.cpu_seconds:.3f}" for lab, u in zip(labels, usages)]
    lines += ["# HELP container_memory_rss Resident set size of the pod's processes (sandbox pod runner).",
              "# TYPE container_memory_rss gauge"]
    lines += [f"container_memory_rss{{{lab}}} {u.rss_bytes}" for lab, u in zip(labels, usages)]
    return "\n".join(lines) + "\n"


def window(scrape_interval: str) -> str:
    """The rate window: five scrapes, at least `MIN_WINDOW_SECONDS`."""
    m = re.fullmatch(r"(\d+)(ms|s|m)", scrape_interval)
    seconds = int(m[1]) * {"ms": 0.001, "s": 1, "m": 60}[m[2]] if m else MIN_WINDOW_SECONDS
    return f"{max(MIN_WINDOW_SECONDS, round(5 * seconds))}s"


def adapter_config(rate_window: str) -> dict:
    """prometheus-adapter's config: resource rules over the series above, no custom rules."""
    def resources() -> dict:
        return {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"},
                              "node": {"resource": "node"}}}

    cpu = "sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,%s}[" + rate_window + "])) by (<<.GroupBy>>)"
    return {"rules": [], "resourceRules": {
        "cpu": {"containerQuery": cpu % 'container!=""', "nodeQuery": cpu % 'id="/"',
                "resources": resources(), "containerLabel": "container"},
        "memory": {"containerQuery": 'sum(container_memory_rss{<<.LabelMatchers>>,container!=""}) by (<<.GroupBy>>)',
                   "nodeQuery": 'sum(container_memory_rss{<<.LabelMatchers>>,id="/"}) by (<<.GroupBy>>)',
                   "resources": resources(), "containerLabel": "container"},
        "window": rate_window}}


class ResourceMetrics:
    """The sandbox's wiring: the adapter's config and objects, the exporter."""

    def __init__(self, state_dir: Path, exporter_port: int, adapter_port: int) -> None:
        self.dir, self.exporter_port, self.adapter_port = state_dir, exporter_port, adapter_port

    def prepare(self, scrape_interval: str, file_sd_dir: Path) -> Path:
        """Write the adapter's config and announce the exporter to Prometheus; the config's path."""
        config = self.dir / "resource-metrics-adapter.yaml"
        config.write_text(yaml.safe_dump(adapter_config(window(scrape_interval))))
        (file_sd_dir / "resource-metrics.json").write_text(json.dumps(
            [{"targets": [f"127.0.0.1:{self.exporter_port}"], "labels": {"job": "sandbox-pod-resources"}}]))
        return config

    def objects(self, namespace: str) -> list[dict]:
        """The ExternalName Service and the APIService (`namespace` must exist or come first)."""
        return [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": ADAPTER, "namespace": namespace},
             "spec": {"type": "ExternalName", "externalName": "localhost",
                      "ports": [{"name": "https", "port": self.adapter_port}]}},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": API_SERVICE},
             "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                      "service": {"namespace": namespace, "name": ADAPTER, "port": self.adapter_port},
                      "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100, "versionPriority": 100}},
        ]

    @staticmethod
    def available(client, server: str) -> bool:
        """Whether the APIService is Available (`client`: an httpx.Client with admin credentials)."""
        obj = client.get(f"{server}/apis/apiregistration.k8s.io/v1/apiservices/{API_SERVICE}").json()
        return any(c["type"] == "Available" and c["status"] == "True" for c in obj["status"]["conditions"])

    async def serve(self, runner) -> web.AppRunner:
        """Serve /metrics on 127.0.0.1 for the runner's pods; `cleanup()` the result to stop."""
        import asyncio

        usage = PodUsage(runner)

        async def metrics(_request: web.Request) -> web.Response:
            text = exposition(await asyncio.to_thread(usage.sample))
            return web.Response(text=text, content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        served = web.AppRunner(app, access_log=None)
        await served.setup()
        await web.TCPSite(served, "127.0.0.1", self.exporter_port).start()
        log.info("pod resource usage on http://127.0.0.1:%d/metrics", self.exporter_port)
        return served
