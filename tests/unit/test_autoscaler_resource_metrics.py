"""The sandbox's per-pod CPU and memory (sandbox/resource_metrics.py), measured for real:
a process in a network namespace of its own, read from /proc, and the adapter
config that turns the series into metrics.k8s.io."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from helpers import wait_for

from dask_operator.sandbox.resource_metrics import PodUsage, Usage, adapter_config, exposition, window

BURN = "import time\nwhile time.process_time() < 0.6: pass\ntime.sleep(60)\n"  # 0.6 s of CPU, however busy


@pytest.fixture
def pod_netns():
    name = f"dsbtest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    procs: list[subprocess.Popen] = []
    try:
        yield name, procs
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_a_pods_cpu_and_memory_come_from_its_processes_and_the_counter_never_drops(pod_netns) -> None:
    name, procs = pod_netns
    runner = SimpleNamespace(pods={"u1": SimpleNamespace(uid="u1", namespace="ns", name="burner", netns=name,
                                                         container="burn"),
                                   "u2": SimpleNamespace(uid="u2", namespace="ns", name="kwok-pod",
                                                         netns="dsbtest-absent", container="c")})
    usage = PodUsage(runner)
    assert usage.sample() == []  # no process yet: no series, not a zero
    procs.append(subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", BURN]))
    def burnt() -> Usage | None:
        (sample,) = usage.sample() or [None]
        return sample if sample and sample.cpu_seconds >= 0.5 else None

    first = wait_for(burnt, 30, "the burner's 0.5 s of CPU to show", interval=0.1)
    assert (first.namespace, first.pod, first.container) == ("ns", "burner", "burn")
    assert 0.5 <= first.cpu_seconds < 5 and first.rss_bytes > 1_000_000
    procs[0].kill()
    procs[0].wait()
    procs.append(subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", "import time; time.sleep(60)"]))
    wait_for(usage.sample, 30, "the new process to be seen", interval=0.05)
    (after,) = usage.sample()
    assert after.cpu_seconds >= first.cpu_seconds  # the exited process still counts


def test_exposition_and_rules_agree_on_names_and_labels() -> None:
    text = exposition([Usage("ns", "p-1", "c", 12.5, 1024)])
    assert 'container_cpu_usage_seconds_total{namespace="ns",pod="p-1",container="c"} 12.500' in text
    assert 'container_memory_rss{namespace="ns",pod="p-1",container="c"} 1024' in text
    rules = adapter_config("10s")["resourceRules"]
    assert rules["window"] == "10s"
    assert rules["cpu"]["containerLabel"] == rules["memory"]["containerLabel"] == "container"
    assert rules["cpu"]["containerQuery"] == ('sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,'
                                              'container!=""}[10s])) by (<<.GroupBy>>)')
    assert 'id="/"' in rules["cpu"]["nodeQuery"] and 'id="/"' in rules["memory"]["nodeQuery"]  # nothing for nodes


@pytest.mark.parametrize("scrape, expected", [("2s", "10s"), ("5s", "25s"), ("1m", "300s"), ("500ms", "10s")])
def test_rate_window_spans_five_scrapes(scrape: str, expected: str) -> None:
    assert window(scrape) == expected
